"""The C-level API (see capi.pxd), forwarded to the kernel set chosen at import.

Each function is looked up once, by name and C signature, in the chosen kernel set's
``__pyx_capi__``. The kernel set also guards against ``fork()``: a call in a child forked after
threads were started runs on one thread (see _core/_kernels.pxi).
"""

from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer
from libc.stdint cimport int64_t

from fastxent._core.dispatch import kernels

ctypedef int (*softmax_ce_f_t)(const float *, Py_ssize_t, Py_ssize_t, const int64_t *,
                               double *, float *, int) noexcept nogil
ctypedef int (*softmax_ce_d_t)(const double *, Py_ssize_t, Py_ssize_t, const int64_t *,
                               double *, double *, int) noexcept nogil
ctypedef int (*bce_f_t)(const float *, const float *, Py_ssize_t, float *, float *,
                        int) noexcept nogil
ctypedef int (*bce_d_t)(const double *, const double *, Py_ssize_t, double *, double *,
                        int) noexcept nogil
ctypedef int (*lse_f_t)(const float *, Py_ssize_t, Py_ssize_t, float *, int) noexcept nogil
ctypedef int (*lse_d_t)(const double *, Py_ssize_t, Py_ssize_t, double *, int) noexcept nogil

# The C signatures Cython records for the functions above (as the names of their capsules in a
# kernel module's __pyx_capi__); {0} is float or double.
_SOFTMAX_CE_SIGNATURE = ("int ({0} const *, Py_ssize_t, Py_ssize_t, int64_t const *, "
                         "double *, {0} *, int)")
_BCE_SIGNATURE = "int ({0} const *, {0} const *, Py_ssize_t, {0} *, {0} *, int)"
_LSE_SIGNATURE = "int ({0} const *, Py_ssize_t, Py_ssize_t, {0} *, int)"


cdef void *_entry(str name, str signature) except NULL:
    """The address of a C function exported by the chosen kernel set, which must have the C
    signature `signature`."""
    capsule = kernels.__pyx_capi__[name]
    cdef const char *actual = PyCapsule_GetName(capsule)
    found = None if actual == NULL else actual.decode()
    if found != signature:
        raise ImportError(f"fastxent.capi: {kernels.__name__}.{name} has the C signature "
                          f"{found!r}, expected {signature!r}")
    return PyCapsule_GetPointer(capsule, actual)


cdef softmax_ce_f_t _softmax_ce_f = <softmax_ce_f_t>_entry(
    "capi_softmax_cross_entropy_f", _SOFTMAX_CE_SIGNATURE.format("float"))
cdef softmax_ce_d_t _softmax_ce_d = <softmax_ce_d_t>_entry(
    "capi_softmax_cross_entropy_d", _SOFTMAX_CE_SIGNATURE.format("double"))
cdef bce_f_t _bce_f = <bce_f_t>_entry("capi_binary_cross_entropy_with_logits_f",
                                      _BCE_SIGNATURE.format("float"))
cdef bce_d_t _bce_d = <bce_d_t>_entry("capi_binary_cross_entropy_with_logits_d",
                                      _BCE_SIGNATURE.format("double"))
cdef lse_f_t _lse_f = <lse_f_t>_entry("capi_logsumexp_f", _LSE_SIGNATURE.format("float"))
cdef lse_d_t _lse_d = <lse_d_t>_entry("capi_logsumexp_d", _LSE_SIGNATURE.format("double"))


cdef int softmax_cross_entropy_f(const float *logits, Py_ssize_t n_rows, Py_ssize_t n_classes,
                                 const int64_t *labels, double *loss, float *grad,
                                 int n_threads) noexcept nogil:
    return _softmax_ce_f(logits, n_rows, n_classes, labels, loss, grad, n_threads)


cdef int softmax_cross_entropy_d(const double *logits, Py_ssize_t n_rows,
                                 Py_ssize_t n_classes, const int64_t *labels, double *loss,
                                 double *grad, int n_threads) noexcept nogil:
    return _softmax_ce_d(logits, n_rows, n_classes, labels, loss, grad, n_threads)


cdef int binary_cross_entropy_with_logits_f(const float *logits, const float *targets,
                                            Py_ssize_t n, float *loss, float *grad,
                                            int n_threads) noexcept nogil:
    return _bce_f(logits, targets, n, loss, grad, n_threads)


cdef int binary_cross_entropy_with_logits_d(const double *logits, const double *targets,
                                            Py_ssize_t n, double *loss, double *grad,
                                            int n_threads) noexcept nogil:
    return _bce_d(logits, targets, n, loss, grad, n_threads)


cdef int logsumexp_f(const float *x, Py_ssize_t n_rows, Py_ssize_t n_classes, float *out,
                     int n_threads) noexcept nogil:
    return _lse_f(x, n_rows, n_classes, out, n_threads)


cdef int logsumexp_d(const double *x, Py_ssize_t n_rows, Py_ssize_t n_classes, double *out,
                     int n_threads) noexcept nogil:
    return _lse_d(x, n_rows, n_classes, out, n_threads)
