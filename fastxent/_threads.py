"""Thread counts: scikit-learn's ``n_threads`` semantics, without joblib."""

import operator
import os

from fastxent._dispatch import kernels

# Below this many elements a call runs on one thread: starting a parallel region costs more
# than it saves, and a busy core stalls a static schedule.
SERIAL_BELOW = 32768


def _usable_cpus():
    if hasattr(os, "process_cpu_count"):        # Python 3.13+
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):        # honours taskset and cpusets
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _checked(n_threads):
    """Validate a requested thread count; return it as an int (or None)."""
    if n_threads is None:
        return None
    if isinstance(n_threads, bool):
        raise TypeError("n_threads must be an int or None, got bool")
    try:
        n_threads = operator.index(n_threads)
    except TypeError:
        raise TypeError(f"n_threads must be an int or None, got "
                        f"{type(n_threads).__name__}") from None
    if n_threads == 0:
        raise ValueError("n_threads=0 is invalid: use None, a positive or a negative int")
    return n_threads


def effective_n_threads(n_threads=None):
    """Resolve ``n_threads`` to the number of OpenMP threads a kernel will use.

    Parameters
    ----------
    n_threads : int or None
        None: the usable cores, or ``OMP_NUM_THREADS`` when set (and
        ``threadpoolctl`` limits); a positive int: that many; a negative int counts back from
        the usable cores (-1: all, -2: all but one). 0 is an error.

    Returns
    -------
    int
        At least 1; always 1 when fastxent was built without OpenMP.
    """
    n_threads = _checked(n_threads)
    if not kernels.openmp_enabled():
        return 1
    limit = min(kernels.max_threads(), _usable_cpus())
    if os.environ.get("OMP_NUM_THREADS"):
        limit = kernels.max_threads()
    if n_threads is None:
        return limit
    if n_threads < 0:
        return max(1, limit + 1 + n_threads)
    return n_threads


def threads_for(n_elements, n_threads):
    """``effective_n_threads(n_threads)``, or 1 for inputs too small to split."""
    if n_elements < SERIAL_BELOW:
        _checked(n_threads)
        return 1
    return effective_n_threads(n_threads)
