"""Peak memory of the fused linear + cross-entropy workloads, each implementation in its own
process.

    python bench/linear_memory.py [--threads T] [--quick] [--json FILE]

For each of ``linear_ce`` (loss and gradients) and ``linear_eval`` (loss alone), each
implementation that has it (fastxent, PyTorch's reference path, PyTorch's chunked path) runs
in a fresh Python process. The process makes the workload's data (hidden states, weight,
labels), makes one call on its first rows (so that one-time allocations, such as BLAS's
buffers, are not counted), prepares the call on all rows, and measures how far one call
raises the peak resident memory above the resident memory before it
(``fastxent._bench.memory.peak_growth``: Linux's ``VmHWM``, reset first). The table shows
that growth minus the bytes of the gradients the call returns (the hidden states' and the
weight's): the memory an implementation needs beyond its inputs and outputs. It also shows
the time of a second call.
"""

import argparse
import json
import subprocess
import sys
import time

from fastxent._bench.implementations import import_required_module, prepare, supports
from fastxent._bench.memory import peak_growth
from fastxent._bench.timing import cpu_model
from fastxent._bench.workloads import LINEAR_CE, LINEAR_EVAL, Data, Workload, make_data

IMPLEMENTATIONS = ("fastxent", "torch", "torch-chunked")
FULL_SHAPE = (4096, 512, 32_000)
QUICK_SHAPE = (512, 64, 4000)
# The warm-up call's rows: enough for BLAS to run its GEMMs on every thread (each thread's
# buffers are made on its first GEMM), few enough to stay far below the call measured.
WARM_UP_ROWS = 256


def measure(name, kind, shape, threads):
    """In this process: (seconds of the second call, peak growth beyond the gradients)."""
    workload = Workload(kind, "float32", shape)
    data = make_data(workload)
    # One call on a few rows first: one-time allocations (BLAS's buffers and thread pools) are
    # not the call's memory.
    few = Data(data.inputs[:WARM_UP_ROWS], data.targets[:WARM_UP_ROWS], data.linear_weight)
    prepare(name, workload, few, threads)()
    run = prepare(name, workload, data, threads)
    growth = peak_growth(run)
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    gradients = data.inputs.nbytes + data.linear_weight.nbytes if kind == LINEAR_CE else 0
    return seconds, growth - gradients


def _in_child(name, kind, shape, threads):
    command = [sys.executable, __file__, "--child", name, kind, "x".join(map(str, shape)),
               "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help=f"shape {QUICK_SHAPE}")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        name, kind, shape = args.child
        seconds, extra = measure(name, kind, tuple(map(int, shape.split("x"))), args.threads)
        print(json.dumps({"seconds": seconds, "extra_bytes": extra}))
        return
    shape = QUICK_SHAPE if args.quick else FULL_SHAPE
    results = []
    for kind in (LINEAR_CE, LINEAR_EVAL):
        for name in IMPLEMENTATIONS:
            if not supports(name, kind) or import_required_module(name) is None:
                continue
            results.append({"kind": kind, "implementation": name,
                            **_in_child(name, kind, shape, args.threads)})
    print(f"cpu: {cpu_model()}  threads={args.threads}  "
          f"shape N x d x V = {' x '.join(map(str, shape))}, float32")
    print(f"{'workload':<12} {'implementation':<15} {'time s':>8} {'x fastxent':>11} "
          f"{'extra MiB':>10}")
    fastest = {r["kind"]: r["seconds"] for r in results if r["implementation"] == "fastxent"}
    for r in results:
        ratio = r["seconds"] / fastest[r["kind"]]
        print(f"{r['kind']:<12} {r['implementation']:<15} {r['seconds']:>8.3f} "
              f"{ratio:>10.2f}x {r['extra_bytes'] / 2**20:>10.1f}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"cpu": cpu_model(), "shape": shape, "threads": args.threads,
                       "results": results}, file, indent=2)


if __name__ == "__main__":
    main()
