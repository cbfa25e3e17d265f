"""Matrix products through SciPy's BLAS, on arrays as they lie in memory, and BLAS threads.

The fused linear layer (``fastxent.linear_cross_entropy``) multiplies chunks of rows by the
output matrix. ``gemm`` calls SciPy's ``sgemm``/``dgemm`` with each operand passed as the
column-major matrix it already is (a C-contiguous matrix is the column-major transpose), so no
operand is copied, and it can add into its output (BLAS's ``beta = 1``), which ``np.matmul``
cannot. One BLAS library serves every product, so one thread pool runs them.
"""

import contextlib
import threading

import numpy as np
from scipy.linalg import blas as _scipy_blas
from threadpoolctl import ThreadpoolController

_GEMM = {np.dtype(np.float32): _scipy_blas.sgemm, np.dtype(np.float64): _scipy_blas.dgemm}
_controller = None
# BLAS's thread count is process-wide: calls that limit it take turns, so that one call's
# restore cannot undo another's limit (or leave BLAS limited after both).
_limit_lock = threading.Lock()


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
    result = _GEMM[out.dtype](1.0, left, right, beta=1.0 if accumulate else 0.0, c=out.T,
                              trans_a=trans_left, trans_b=trans_right, overwrite_c=1)
    if result.ctypes.data != out.ctypes.data:   # SciPy wrote a copy: never seen, but be sure
        out[...] = result.T


@contextlib.contextmanager
def blas_threads(n_threads):
    """A context that runs BLAS on `n_threads` threads (None: BLAS's own default).

    BLAS's thread count is a process-wide setting: a context with a limit holds a lock, so
    Python threads that each ask for a limit run one after the other.

    Parameters
    ----------
    n_threads : int or None
        Resolved threads (at least 1), or None to leave BLAS as it is.
    """
    global _controller
    if n_threads is None:
        yield
        return
    with _limit_lock:
        if _controller is None:         # made on first use: it scans the loaded libraries
            _controller = ThreadpoolController()
        with _controller.limit(limits=n_threads, user_api="blas"):
            yield
