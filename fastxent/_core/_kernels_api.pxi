# The C-level entry points every kernel set exports (through its .pxd) for fastxent.capi,
# which forwards to the set chosen at import. See fastxent/capi.pxd for their contract.
from libc.stdint cimport int64_t

cdef int capi_softmax_cross_entropy_f(const float *logits, Py_ssize_t n_rows,
                                      Py_ssize_t n_classes, const int64_t *labels,
                                      double *loss, float *grad, int n_threads) noexcept nogil
cdef int capi_softmax_cross_entropy_d(const double *logits, Py_ssize_t n_rows,
                                      Py_ssize_t n_classes, const int64_t *labels,
                                      double *loss, double *grad, int n_threads) noexcept nogil
cdef int capi_binary_cross_entropy_with_logits_f(const float *logits, const float *targets,
                                                 Py_ssize_t n, float *loss, float *grad,
                                                 int n_threads) noexcept nogil
cdef int capi_binary_cross_entropy_with_logits_d(const double *logits, const double *targets,
                                                 Py_ssize_t n, double *loss, double *grad,
                                                 int n_threads) noexcept nogil
cdef int capi_logsumexp_f(const float *x, Py_ssize_t n_rows, Py_ssize_t n_classes,
                          float *out, int n_threads) noexcept nogil
cdef int capi_logsumexp_d(const double *x, Py_ssize_t n_rows, Py_ssize_t n_classes,
                          double *out, int n_threads) noexcept nogil
