"""Thread counts: scikit-learn's ``n_threads`` semantics, without joblib."""

import operator
import os

from fastxent._core.dispatch import kernels
from fastxent._warnings import warn

# Below this many elements a call runs on one thread: starting a parallel region costs more
# than it saves, and a busy core stalls a static schedule.
SERIAL_BELOW = 32768
# OpenMP takes a C int: larger requests are refused for every input size alike.
MAX_THREADS = 2**31 - 1


# GNU OpenMP's thread pool does not survive fork(): in a child forked after the parent ran a
# multi-threaded kernel, the first parallel region waits forever for threads that do not
# exist. Such a child runs every kernel on one thread and says so once.
_pool_started = False
_forked_child = False
_fork_warned = False


def _after_fork_in_child():
    global _forked_child, _fork_warned
    _forked_child = _forked_child or _pool_started
    _fork_warned = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _warn_forked_child():
    global _fork_warned
    if not _fork_warned:
        _fork_warned = True
        warn("fastxent runs single-threaded in this process: it was forked after fastxent "
               "had started OpenMP threads, which do not survive fork(). Start worker "
               "processes with the 'spawn' or 'forkserver' method to use threads in them.",
               RuntimeWarning)


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
    if not -MAX_THREADS <= n_threads <= MAX_THREADS:
        raise ValueError(f"n_threads={n_threads} is out of range: at most {MAX_THREADS} "
                         f"threads (an OpenMP thread count is a C int)")
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


def blas_thread_count(n_threads):
    """The thread count a fused call asks BLAS for: None (BLAS's default), a positive int as
    it is, a negative one counted back from the usable cores. Unlike
    ``effective_n_threads``, it does not depend on fastxent's OpenMP build."""
    n_threads = _checked(n_threads)
    if n_threads is None or n_threads > 0:
        return n_threads
    return max(1, _usable_cpus() + 1 + n_threads)


def threads_for(n_elements, n_threads):
    """``effective_n_threads(n_threads)``, or 1 for inputs too small to split."""
    n_threads = _checked(n_threads)
    if n_elements < SERIAL_BELOW:
        return 1
    if _forked_child:
        _warn_forked_child()
        return 1
    threads = effective_n_threads(n_threads)
    if threads > 1 and not _pool_started:
        _note_pool_started()
    return threads


def _note_pool_started():
    global _pool_started
    _pool_started = True
    kernels.note_threads_started()  # the kernels' fork handler then guards the C API too
