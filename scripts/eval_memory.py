"""Measure ``fastxent eval`` on a large ``.npy`` file: wall time, throughput and peak RSS.

Usage::

    python scripts/eval_memory.py DIR [--gib 4] [--classes 1000] [--chunk-rows N]
                                      [--threads N] [--keep]

Writes ``DIR/eval_memory_logits.npy`` (about ``--gib`` GiB of float32 logits, written block by
block, never held in memory) and ``DIR/eval_memory_labels.npy`` (int64), then runs
``python -m fastxent.cli eval LOGITS LABELS --json --no-progress`` in a subprocess three
times:

- ``floor``: ``python -S -c pass`` (the least any measured child can show);
- ``baseline``: on a tiny file (the interpreter, NumPy and fastxent alone);
- ``cold``: on the big file after asking the kernel to drop it from the page cache
  (``posix_fadvise(POSIX_FADV_DONTNEED)``; no root needed), so it is read from disk;
- ``warm``: again, with the file in the page cache.

Each run's peak resident set is its own ``ru_maxrss`` from ``os.wait4``, taken by a bare
launcher interpreter (Linux carries the peak RSS of a parent into a child across fork and
exec, so the script, which holds NumPy and the labels, cannot spawn the runs itself; the
``floor`` row is the launcher's share: a bare ``python -S -c pass``). GB/s counts the bytes of
both files over the child's wall time, interpreter start-up included; net GB/s over the wall
time less the baseline run's (start-up, imports). The files are deleted at the end unless
``--keep``.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

BLOCK_BYTES = 64 * 2**20


def write_logits(path, labels, n_classes, seed=0):
    """Write (N, C) float32 logits to `path` block by block (the label's logit gets +2)."""
    rng = np.random.default_rng(seed)
    rows = len(labels)
    block = max(1, BLOCK_BYTES // (4 * n_classes))
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
              "fortran_order": False, "shape": (rows, n_classes)}
    with open(path, "wb") as fp:
        np.lib.format.write_array_header_2_0(fp, header)
        for begin in range(0, rows, block):
            end = min(begin + block, rows)
            x = rng.standard_normal((end - begin, n_classes), dtype=np.float32)
            x[np.arange(end - begin), labels[begin:end]] += 2.0
            fp.write(x.tobytes())
        fp.flush()
        os.fsync(fp.fileno())


def drop_from_page_cache(path):
    """Ask the kernel to evict `path`'s clean pages (a hint; Linux honours it)."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


# Spawns the command and reports its wall time and its own peak RSS. It runs in a bare
# interpreter because Linux carries a process's peak RSS across fork and exec: a child of this
# script (which holds NumPy and the labels) would report at least this script's RSS.
LAUNCHER = """
import json, os, subprocess, sys, time
out, err, *command = sys.argv[1:]
with open(out, "wb") as o, open(err, "wb") as e:
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=o, stderr=e)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
print(json.dumps({"wall": wall, "maxrss_kib": usage.ru_maxrss,
                  "code": os.waitstatus_to_exitcode(status)}))
"""


def run_measured(command):
    """Run `command` under the launcher; return (wall s, peak RSS bytes, stdout, stderr)."""
    with tempfile.TemporaryDirectory() as scratch:
        out, err = os.path.join(scratch, "out"), os.path.join(scratch, "err")
        launched = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, out, err, *command],
                                  capture_output=True, text=True, check=True)
        measured = json.loads(launched.stdout)
        with open(out) as fp_out, open(err) as fp_err:
            stdout, stderr = fp_out.read(), fp_err.read()
    if measured["code"] != 0:
        sys.exit(f"{' '.join(command)} failed ({measured['code']}):\n{stderr}")
    return measured["wall"], measured["maxrss_kib"] * 1024, stdout, stderr


def run_eval(logits, labels, extra):
    """Run ``fastxent eval LOGITS LABELS --json --no-progress`` measured."""
    return run_measured([sys.executable, "-m", "fastxent.cli", "eval", logits, labels,
                         "--json", "--no-progress", *extra])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", help="where to write the files (needs ~GIB free)")
    parser.add_argument("--gib", type=float, default=4.0, help="size of the logits (GiB)")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--chunk-rows", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--keep", action="store_true", help="keep the files")
    args = parser.parse_args(argv)

    n_classes = args.classes
    rows = int(args.gib * 2**30) // (4 * n_classes)
    logits = os.path.join(args.directory, "eval_memory_logits.npy")
    labels = os.path.join(args.directory, "eval_memory_labels.npy")
    tiny_logits = os.path.join(args.directory, "eval_memory_tiny_logits.npy")
    tiny_labels = os.path.join(args.directory, "eval_memory_tiny_labels.npy")
    need = rows * n_classes * 4 + rows * 8
    free = shutil.disk_usage(args.directory).free
    if free < 1.1 * need:
        sys.exit(f"{args.directory}: {free / 2**30:.1f} GiB free, need {need / 2**30:.1f} GiB")
    extra = []
    if args.chunk_rows:
        extra += ["--chunk-rows", str(args.chunk_rows)]
    if args.threads:
        extra += ["--threads", str(args.threads)]

    paths = [logits, labels, tiny_logits, tiny_labels]
    try:
        start = time.perf_counter()
        y = np.random.default_rng(1).integers(0, n_classes, rows)
        np.save(labels, y)
        write_logits(logits, y, n_classes)
        written = time.perf_counter() - start
        np.save(tiny_logits, np.zeros((10, n_classes), np.float32))
        np.save(tiny_labels, np.zeros(10, np.int64))
        total_bytes = os.path.getsize(logits) + os.path.getsize(labels)
        print(f"wrote {logits}: ({rows}, {n_classes}) float32, "
              f"{os.path.getsize(logits) / 2**30:.2f} GiB, and {labels} in {written:.1f} s",
              flush=True)

        runs = {"floor": run_measured([sys.executable, "-S", "-c", "pass"]),
                "baseline": run_eval(tiny_logits, tiny_labels, extra)}
        dropped = drop_from_page_cache(logits) and drop_from_page_cache(labels)
        runs["cold" if dropped else "first"] = run_eval(logits, labels, extra)
        runs["warm"] = run_eval(logits, labels, extra)

        startup = runs["baseline"][0]
        print(f"{'run':<9} {'wall s':>8} {'rows/s':>12} {'GB/s':>7} {'net GB/s':>9} "
              f"{'peak RSS MiB':>13}")
        report = {"rows": rows, "classes": n_classes, "bytes": total_bytes,
                  "command": " ".join(["python -m fastxent.cli eval LOGITS LABELS --json",
                                       "--no-progress", *extra]),
                  "runs": {}}
        for name, (wall, peak, _, _) in runs.items():
            big = name in ("cold", "first", "warm")
            n, size = (rows, total_bytes) if big else (10, 0)
            net = size / max(wall - startup, 1e-9) / 1e9 if big else 0.0
            print(f"{name:<9} {wall:8.2f} {n / wall:12.4g} {size / wall / 1e9:7.2f} "
                  f"{net:9.2f} {peak / 2**20:13.1f}")
            report["runs"][name] = {"wall_s": wall, "rows_per_s": n / wall,
                                    "gb_per_s": size / wall / 1e9, "net_gb_per_s": net,
                                    "peak_rss_mib": peak / 2**20}
        result = json.loads(runs["warm"][2])
        report["result"] = {key: result[key] for key in ("loss", "accuracy", "count")}
        print(f"result: loss {result['loss']:.6f}, accuracy {result['accuracy']:.6f}, "
              f"count {result['count']}")
        print(json.dumps(report))
    finally:
        if not args.keep:
            for path in paths:
                if os.path.exists(path):
                    os.remove(path)


if __name__ == "__main__":
    main()
