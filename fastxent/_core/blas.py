"""Matrix products through SciPy's BLAS, on arrays as they lie in memory, and BLAS threads.

The fused linear layer (``fastxent.linear_cross_entropy``) multiplies chunks of rows by the
output matrix. ``gemm`` calls SciPy's ``sgemm``/``dgemm`` with each operand passed as the
column-major matrix it already is (a C-contiguous matrix is the column-major transpose), so no
operand is copied, and it can add into its output (BLAS's ``beta = 1``), which ``np.matmul``
cannot. One BLAS library serves every product, so one thread pool runs them.
"""

import contextlib
import os
import threading

import numpy as np
from threadpoolctl import ThreadpoolController

_GEMM = {}          # dtype -> SciPy's gemm, filled by _gemm_routines on the first fused call
_controller = None
# BLAS's thread count is process-wide. The first call that asks for a limit sets it and the
# last one to finish restores what was there; calls in between run with the limit in place
# (results do not depend on it beyond rounding). _limits counts them, under _limits_lock.
_limits_lock = threading.Lock()
_limits = {"active": 0, "limiter": None}


def _forget_limits_in_child():
    """A child forked while another thread held the lock or a limit starts afresh."""
    global _limits_lock
    _limits_lock = threading.Lock()
    _limits.update(active=0, limiter=None)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_limits_in_child)


def _gemm_routines():
    """SciPy's sgemm and dgemm by dtype. scipy.linalg is imported here, by the first fused
    call, not by ``import fastxent`` (it takes about 0.2 s, half of fastxent's import)."""
    if not _GEMM:
        from scipy.linalg import blas
        _GEMM.update({np.dtype(np.float32): blas.sgemm, np.dtype(np.float64): blas.dgemm})
    return _GEMM


def _column_major(m):
    """`m` as BLAS reads it: (array, transposed) with the array Fortran-contiguous."""
    if m.flags.f_contiguous:
        return m, 0
    if m.flags.c_contiguous:
        return m.T, 1
    raise ValueError("gemm operands must be C- or Fortran-contiguous")


def gemm(a, b, out, *, accumulate=False):
    """``out = a @ b``, or ``out += a @ b`` with `accumulate`, in `out`'s dtype.

    Parameters
    ----------
    a, b : ndarray
        2-D, C- or Fortran-contiguous, `out`'s dtype (float32 or float64). Neither is copied.
    out : ndarray
        2-D, C-contiguous, of shape ``(a.shape[0], b.shape[1])``; written in place.
    accumulate : bool, default=False
        Add the product to `out` instead of overwriting it.
    """
    if a.shape[1] == 0 or out.size == 0:        # BLAS is not called on empty matrices
        if not accumulate:
            out.fill(0)
        return
    # Column-major: out.T = b.T @ a.T, and out.T is a Fortran-contiguous matrix.
    left, trans_left = _column_major(b.T)
    right, trans_right = _column_major(a.T)
    result = _gemm_routines()[out.dtype](1.0, left, right, beta=1.0 if accumulate else 0.0, c=out.T,
                              trans_a=trans_left, trans_b=trans_right, overwrite_c=1)
    if result.ctypes.data != out.ctypes.data:   # SciPy wrote a copy: never seen, but be sure
        out[...] = result.T


@contextlib.contextmanager
def blas_threads(n_threads):
    """A context in which BLAS runs on `n_threads` threads (None: as it is).

    BLAS's thread count is process-wide: while contexts of several Python threads overlap, the
    first one's limit holds for all of them, and the last one out restores the count that was
    there before. The lock is held only while the count changes, never during the work. The
    limit is set through threadpoolctl, which lets only one Python thread (the first to set
    one, while it lives) change a pthreads OpenBLAS's count: from other threads it is left as
    it is.

    Parameters
    ----------
    n_threads : int or None
        Resolved threads (at least 1), or None to leave BLAS as it is.
    """
    if n_threads is None:
        yield
        return
    global _controller
    with _limits_lock:
        if _limits["active"] == 0:
            if _controller is None:     # made on first use: it scans the loaded libraries,
                _gemm_routines()        # SciPy's BLAS among them
                _controller = ThreadpoolController()
            _limits["limiter"] = _controller.limit(limits=n_threads, user_api="blas")
        _limits["active"] += 1
    try:
        yield
    finally:
        with _limits_lock:
            # max: a child forked inside a context has forgotten it
            _limits["active"] = max(0, _limits["active"] - 1)
            if _limits["active"] == 0 and _limits["limiter"] is not None:
                _limits["limiter"].restore_original_limits()
                _limits["limiter"] = None
