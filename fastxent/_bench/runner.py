"""A ``fastxent bench`` run: every workload timed for fastxent and each available peer.

Every implementation runs on the same seeded data, in the same process, one after the other.
"""

import numpy as np

from fastxent._bench.implementations import available_peers, prepare, supports
from fastxent._bench.timing import copy_bandwidth, machine_info, time_call
from fastxent._bench.workloads import EVALUATE, EXPLAINING_KINDS, bytes_moved, make_data

# The copy that measures the memory bandwidth is as large as the largest input, up to this.
MAX_COPY_BYTES = 256 * 2**20


def benchmark_workload(workload, *, threads, repeat, peers, copy_bytes_per_s):
    """Time fastxent and each peer on one workload.

    Parameters
    ----------
    workload : Workload
    threads : int
        Threads given to fastxent and each peer that accepts a thread count.
    repeat : int
        Timed calls per implementation.
    peers : list of str
        Names of the peers to time.
    copy_bytes_per_s : float
        The copy bandwidth that ``pct_of_copy`` compares with.

    Returns
    -------
    dict
        Workload description, fastxent timings, GB/s, percentage of copy bandwidth, and under
        ``"peers"`` for each peer ``{"median_s", "ratio"}`` (ratio = peer time / fastxent
        time) or ``{"error": message}`` when the peer failed. A peer with no builder for the
        workload's kind (not applicable) is absent from ``"peers"``.
    """
    data = make_data(workload)
    timing = time_call(prepare("fastxent", workload, data, threads), repeat)
    bytes_per_s = bytes_moved(workload, data) / timing.median
    return {
        "workload": workload.kind,
        "dtype": workload.dtype,
        "shape": list(workload.shape),
        "threads": threads,
        "bytes": bytes_moved(workload, data),
        "fastxent_median_s": timing.median,
        "fastxent_min_s": timing.min,
        "gb_per_s": bytes_per_s / 1e9,
        "pct_of_copy": 100 * bytes_per_s / copy_bytes_per_s,
        "peers": {
            peer: _time_peer(peer, workload, data, threads, repeat, timing.median)
            for peer in peers
            if supports(peer, workload.kind)
        },
    }


def _time_peer(peer, workload, data, threads, repeat, fastxent_seconds):
    try:
        seconds = time_call(prepare(peer, workload, data, threads), repeat).median
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"}
    return {"median_s": seconds, "ratio": seconds / fastxent_seconds}


def run_suite(workloads, *, threads, repeat, progress=iter):
    """Benchmark a list of workloads on one machine.

    Parameters
    ----------
    workloads : list of Workload
    threads : int
        Threads given to fastxent, each peer that accepts a thread count, and the copy.
    repeat : int
        Timed calls per implementation and workload.
    progress : callable, default iter
        Wraps the workload list in an iterable, e.g. to report progress.

    Returns
    -------
    dict
        ``{"machine": machine_info(...), "results": [benchmark_workload(...), ...]}``; the
        machine description also holds ``copy_bytes`` and ``copy_gb_per_s``, and the results
        of the explaining kinds ``x_evaluate`` when the run timed the plain ``"evaluate"`` of
        their dtype and shape.
    """
    peers = available_peers()
    largest_input = max(np.dtype(w.dtype).itemsize * int(np.prod(w.shape)) for w in workloads)
    copy_bytes = min(largest_input, MAX_COPY_BYTES)
    copy_bytes_per_s = copy_bandwidth(copy_bytes, threads)
    results = [
        benchmark_workload(
            workload, threads=threads, repeat=repeat, peers=peers,
            copy_bytes_per_s=copy_bytes_per_s,
        )
        for workload in progress(workloads)
    ]
    _add_evaluate_multiples(results)
    machine = machine_info(threads, peers)
    machine.update(copy_bytes=copy_bytes, copy_gb_per_s=copy_bytes_per_s / 1e9)
    return {"machine": machine, "results": results}


def _add_evaluate_multiples(results):
    """Give each result of an explaining kind (``EXPLAINING_KINDS``) ``"x_evaluate"``: its
    time over that of the plain ``"evaluate"`` of the same dtype and shape in the run."""
    plain = {(r["dtype"], tuple(r["shape"])): r["fastxent_median_s"]
             for r in results if r["workload"] == EVALUATE}
    for result in results:
        base = plain.get((result["dtype"], tuple(result["shape"])))
        if result["workload"] in EXPLAINING_KINDS and base:
            result["x_evaluate"] = result["fastxent_median_s"] / base
