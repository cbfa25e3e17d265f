"""The C-level API (see capi.pxd), forwarded to the kernel set chosen at import."""

from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer
from libc.stdint cimport int64_t

from fastxent._dispatch import kernels

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


cdef void *_entry(str name) except NULL:
    """The address of a C function exported by the chosen kernel set."""
    capsule = kernels.__pyx_capi__[name]
    return PyCapsule_GetPointer(capsule, PyCapsule_GetName(capsule))


cdef softmax_ce_f_t _softmax_ce_f = <softmax_ce_f_t>_entry("capi_softmax_cross_entropy_f")
cdef softmax_ce_d_t _softmax_ce_d = <softmax_ce_d_t>_entry("capi_softmax_cross_entropy_d")
cdef bce_f_t _bce_f = <bce_f_t>_entry("capi_binary_cross_entropy_with_logits_f")
cdef bce_d_t _bce_d = <bce_d_t>_entry("capi_binary_cross_entropy_with_logits_d")
cdef lse_f_t _lse_f = <lse_f_t>_entry("capi_logsumexp_f")
cdef lse_d_t _lse_d = <lse_d_t>_entry("capi_logsumexp_d")


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
