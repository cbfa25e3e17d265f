"""How ``fastxent bench`` measures: timed calls, the copy bandwidth and the machine."""

import concurrent.futures
import os
import platform
import statistics
import time
from dataclasses import dataclass

import numpy as np

import fastxent
from fastxent._bench.implementations import import_required_module


@dataclass(frozen=True)
class Timing:
    """Median and minimum wall time of the repeated calls, in seconds."""

    median: float
    min: float


def time_call(run, repeat):
    """Time ``run()`` after one warm-up call.

    Parameters
    ----------
    run : callable
        Called with no arguments.
    repeat : int
        Number of timed calls.

    Returns
    -------
    Timing
    """
    run()
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return Timing(statistics.median(seconds), min(seconds))


def copy_bandwidth(nbytes, threads, repeat=5):
    """Measure memory copy bandwidth with ``np.copyto`` on ``threads`` threads.

    NumPy copies on one thread, so the buffer is split into ``threads`` chunks that are copied
    concurrently from a thread pool (``np.copyto`` releases the GIL).

    Parameters
    ----------
    nbytes : int
        Size of the source buffer.
    threads : int
    repeat : int, default 5

    Returns
    -------
    float
        Bytes read plus bytes written per second (median over the repeats).
    """
    sources = np.array_split(np.ones(nbytes, dtype=np.uint8), threads)
    destinations = [np.empty_like(chunk) for chunk in sources]
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        timing = time_call(lambda: list(pool.map(np.copyto, destinations, sources)), repeat)
    return 2 * nbytes / timing.median


def machine_info(threads, peers):
    """Describe the build, the machine and the peer versions.

    Parameters
    ----------
    threads : int
    peers : list of str
        Names of the available peers.

    Returns
    -------
    dict
        ``fastxent``, ``isa``, ``openmp`` (from :func:`fastxent.config`), ``threads``,
        ``cpu``, ``logical_cpus``, ``python`` and ``peer_versions`` (peer -> version).
    """
    config = fastxent.config()
    return {
        "fastxent": config["version"],
        "isa": config["isa"],
        "openmp": config["openmp"],
        "threads": threads,
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "peer_versions": {
            peer: getattr(import_required_module(peer), "__version__", "unknown")
            for peer in peers
        },
    }


def cpu_model():
    """Name the CPU model.

    Returns
    -------
    str
        The model name from ``/proc/cpuinfo``, else ``platform.processor()``, else
        ``"unknown"``.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
