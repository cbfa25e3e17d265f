"""Many Python threads calling fastxent at once, and the GIL released during a kernel.

Processes: GNU OpenMP's thread pool does not survive ``fork()``, so a child forked after
fastxent ran threaded runs single-threaded (with one warning) instead of hanging; ``spawn``
and ``forkserver`` children keep their threads. Both routes are tested below.
"""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

import fastxent
from fastxent._core.threads import SERIAL_BELOW

N_WORKERS = 8
CALLS_PER_WORKER = 50


def _shared_inputs():
    rng = np.random.default_rng(70)
    small_x = rng.normal(size=(64, 10))
    small_y = rng.integers(0, 10, 64)
    big_x = rng.normal(size=(SERIAL_BELOW // 8 + 5, 8)).astype(np.float32)  # two OpenMP threads
    big_y = rng.integers(0, 8, big_x.shape[0])
    bx = rng.normal(size=(40, 30))
    bt = rng.uniform(size=(40, 30))
    for a in (small_x, small_y, big_x, big_y, bx, bt):
        a.flags.writeable = False            # shared and read-only
    return small_x, small_y, big_x, big_y, bx, bt


CALLS = [
    ("ce_small", lambda d: fastxent.cross_entropy_loss_and_grad(d[0], d[1], reduction="none")),
    ("ce_big", lambda d: fastxent.cross_entropy_loss_and_grad(d[2], d[3], label_smoothing=0.1)),
    ("ce_big_1thread", lambda d: fastxent.cross_entropy(d[2], d[3], n_threads=1)),
    ("bce", lambda d: fastxent.binary_cross_entropy_loss_and_grad(d[4], d[5], pos_weight=2.0)),
    ("softmax", lambda d: fastxent.softmax(d[2])),
    ("log_softmax", lambda d: fastxent.log_softmax(d[0], axis=0)),
    ("logsumexp", lambda d: fastxent.logsumexp(d[2])),
]


def _as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


def test_many_threads_shared_read_only_inputs():
    """8 Python threads x 50 calls each, all functions interleaved on shared read-only inputs:
    every result is bitwise equal to the one computed alone, and the inputs are unchanged."""
    data = _shared_inputs()
    copies = [np.array(a, copy=True) for a in data]
    expected = {name: _as_tuple(fn(data)) for name, fn in CALLS}

    def worker(seed):
        order = np.random.default_rng(seed).integers(0, len(CALLS), CALLS_PER_WORKER)
        mismatches = []
        for i in order:
            name, fn = CALLS[i]
            got = _as_tuple(fn(data))
            for g, e in zip(got, expected[name], strict=True):
                if not np.array_equal(np.asarray(g), np.asarray(e), equal_nan=True):
                    mismatches.append(name)
        return len(order), mismatches

    with ThreadPoolExecutor(max_workers=N_WORKERS) as pool:
        results = list(pool.map(worker, range(N_WORKERS)))
    assert sum(n for n, _ in results) == N_WORKERS * CALLS_PER_WORKER
    assert [m for _, m in results] == [[]] * N_WORKERS
    for a, c in zip(data, copies, strict=True):
        np.testing.assert_array_equal(a, c)


def test_many_threads_with_private_out_buffers():
    """Threads writing into their own `out` (and in place into their own copy) concurrently."""
    rng = np.random.default_rng(71)
    x = rng.normal(size=(3000, 20))
    y = rng.integers(0, 20, 3000)
    x.flags.writeable = False
    _, ref = fastxent.cross_entropy_loss_and_grad(x, y)

    def worker(k):
        out = np.empty_like(x)
        own = np.array(x, copy=True)
        ok = True
        for _ in range(20):
            fastxent.cross_entropy_grad(x, y, out=out)
            ok &= np.array_equal(out, ref)
            own[:] = x
            fastxent.cross_entropy_grad(own, y, out=own)
            ok &= np.array_equal(own, ref)
        return ok

    with ThreadPoolExecutor(max_workers=N_WORKERS) as pool:
        assert all(pool.map(worker, range(N_WORKERS)))


def test_errors_from_many_threads():
    """Errors raised concurrently stay per-call: bad calls raise, good ones are correct."""
    x = np.random.default_rng(72).normal(size=(50, 4))
    good_y = np.arange(50) % 4
    bad_y = good_y.copy()
    bad_y[17] = 9
    expected = fastxent.cross_entropy(x, good_y)

    def worker(k):
        for i in range(30):
            if (i + k) % 2:
                with pytest.raises(ValueError, match=r"target\[17\] = 9"):
                    fastxent.cross_entropy(x, bad_y)
            else:
                assert fastxent.cross_entropy(x, good_y) == expected
        return True

    with ThreadPoolExecutor(max_workers=N_WORKERS) as pool:
        assert all(pool.map(worker, range(N_WORKERS)))


def test_gil_released_during_kernel():
    """A pure-Python thread runs while one large kernel call is in progress.

    The observer thread loops in Python (it needs the GIL) reading the first and then the last
    row of the call's `out`, pre-filled with a sentinel. With one OpenMP thread the kernel
    writes the rows in order, so reading "first row written" and then "last row not written"
    proves the observer ran while the kernel was between its first and last row: the GIL was
    released. Nothing is timed; a counter also shows the observer's progress.
    """
    rng = np.random.default_rng(73)
    x = rng.normal(size=(2_000_000, 16)).astype(np.float32)
    y = rng.integers(0, 16, x.shape[0])
    out = np.empty_like(x)
    sentinel = np.float32(7.0)                 # gradients of a mean lie in (-1, 1)
    fastxent.cross_entropy_loss_and_grad(x[:1000], y[:1000])          # warm up
    state = {"count": 0, "partial": 0}
    running = threading.Event()
    stop = threading.Event()

    def observe():
        running.set()
        while not stop.is_set():
            state["count"] += 1
            if out[0, 0] != sentinel and out[-1, -1] == sentinel:
                state["partial"] += 1

    t = threading.Thread(target=observe)
    out[...] = sentinel
    t.start()
    running.wait()
    progress = []
    try:
        for _ in range(5):                    # a few tries: the scheduler may starve it once
            out[...] = sentinel
            before = state["count"]
            fastxent.cross_entropy_loss_and_grad(x, y, out=out, n_threads=1)
            progress.append(state["count"] - before)
            if state["partial"]:
                break
    finally:
        stop.set()
        t.join()
    assert not np.any(out == sentinel)
    assert state["partial"] > 0, ("the observer never ran while the kernel was in progress",
                                  progress)
    assert max(progress) > 0


def test_spawn_after_use():
    """After fastxent has run (its OpenMP pool exists), a `spawn` child process works.

    The child runs ``fastxent.cross_entropy`` itself (importable in any child, however pytest
    was started); a child that cannot start breaks the pool at once instead of timing out.
    """
    x = np.arange(12.0).reshape(4, 3)
    y = np.array([0, 1, 2, 0])
    expected = float(fastxent.cross_entropy(x, y, n_threads=2))
    fastxent.cross_entropy(np.zeros((SERIAL_BELOW, 2)), np.zeros(SERIAL_BELOW, int),
                           n_threads=2)                      # the OpenMP pool is up
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    try:
        got = pool.submit(fastxent.cross_entropy, x, y, n_threads=2).result(timeout=30)
    finally:
        for process in list(pool._processes.values()):   # a stuck child must not outlive us
            process.kill()
        pool.shutdown(cancel_futures=True)
    assert float(got) == expected


FORKED_CHILD = """
import json, os, warnings
import numpy as np
import fastxent

x = np.random.default_rng(0).normal(size=(100_000, 10)).astype(np.float32)
y = np.zeros(x.shape[0], dtype=np.int64)
parent = fastxent.cross_entropy(x, y, n_threads=2)   # the parent's OpenMP pool is up
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        child = fastxent.cross_entropy(x, y, n_threads=2)
        fastxent.softmax(x)
    messages = [str(w.message) for w in caught if w.category is RuntimeWarning]
    os.write(write, json.dumps([bool(child == parent), messages]).encode())
    os._exit(0)
os.close(write)
_, status = os.waitpid(pid, 0)
print(json.dumps([os.read(read, 10000).decode(), os.waitstatus_to_exitcode(status)]))
"""


def _run_in_own_session(command, timeout=20):
    """Run `command` in a session of its own; past `timeout` seconds (a safety net, not a
    wait), kill it with every process it forked (a hung child included) and fail."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"hung for {timeout} s (killed with its children): {command[-1][:60]!r}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def test_fork_after_use_runs_single_threaded():
    """A child forked after fastxent ran on two threads used to hang in its first threaded
    call (GNU OpenMP's pool does not survive fork): it now runs on one thread, with one
    RuntimeWarning, and gets the parent's result. Run in a subprocess: a regression hangs
    that process, which the timeout (a safety net, not a wait) then reports."""
    done = _run_in_own_session([sys.executable, "-c", FORKED_CHILD])
    assert done.returncode == 0, done.stderr
    report, child_status = json.loads(done.stdout)
    same_result, messages = json.loads(report)
    assert (child_status, same_result, len(messages)) == (0, True, 1)
    assert "forked after fastxent had started OpenMP threads" in messages[0]


def test_multiprocessing_fork_pool_after_use():
    """``multiprocessing.Pool`` with the fork start method, after fastxent used threads."""
    code = ("import multiprocessing, numpy as np, fastxent\n"
            "x = np.ones((50_000, 4)); y = np.zeros(50_000, dtype=np.int64)\n"
            "want = fastxent.cross_entropy(x, y, n_threads=2)\n"
            "with multiprocessing.get_context('fork').Pool(2) as pool:\n"
            "    got = pool.starmap(fastxent.cross_entropy, [(x, y)] * 2)\n"
            "print(all(g == want for g in got))\n")
    done = _run_in_own_session([sys.executable, "-W", "ignore", "-c", code])
    assert (done.returncode, done.stdout.strip()) == (0, "True"), done.stderr
