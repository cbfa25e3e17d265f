"""fastxent's C-level API: nogil kernels over raw pointers, for other Cython code.

Usage (build with ``include_dirs=[fastxent.get_include()]``; cythonize finds this file on
sys.path once fastxent is installed)::

    from fastxent.capi cimport softmax_cross_entropy_f

    with nogil:
        status = softmax_cross_entropy_f(&logits[0, 0], n_rows, n_classes, &labels[0],
                                         &loss[0], &grad[0, 0], 0)

Contract, for every function:
- Arrays are C-contiguous; sizes and indices are Py_ssize_t (arrays beyond 2**31 elements work).
- Optional outputs (loss, grad) may be NULL; grad may equal the input (in place).
- ``n_threads``: the OpenMP threads to use; 0 or negative means OpenMP's default
  (``omp_get_max_threads()``, which honours ``OMP_NUM_THREADS``).
- Return value: 0 on success; -1 for invalid sizes or a NULL required pointer; a positive
  count of invalid labels or targets (labels outside [0, n_classes), binary targets outside
  [0, 1] or NaN). Nothing is written unless the result is 0. No function raises.
- The kernels are those of the instruction set fastxent chose at import (see show_config()).
"""

from libc.stdint cimport int64_t

# Softmax cross-entropy over (n_rows, n_classes) logits with integer labels. loss: per-row
# losses (float64, n_rows); grad: d(row loss)/d(logits), i.e. softmax(z) - onehot(label).
cdef int softmax_cross_entropy_f(const float *logits, Py_ssize_t n_rows, Py_ssize_t n_classes,
                                 const int64_t *labels, double *loss, float *grad,
                                 int n_threads) noexcept nogil
cdef int softmax_cross_entropy_d(const double *logits, Py_ssize_t n_rows,
                                 Py_ssize_t n_classes, const int64_t *labels, double *loss,
                                 double *grad, int n_threads) noexcept nogil

# Binary cross-entropy with logits, elementwise over n values: loss and d(loss)/d(logit).
cdef int binary_cross_entropy_with_logits_f(const float *logits, const float *targets,
                                            Py_ssize_t n, float *loss, float *grad,
                                            int n_threads) noexcept nogil
cdef int binary_cross_entropy_with_logits_d(const double *logits, const double *targets,
                                            Py_ssize_t n, double *loss, double *grad,
                                            int n_threads) noexcept nogil

# log(sum(exp(x))) of every row of (n_rows, n_classes) x into out (n_rows).
cdef int logsumexp_f(const float *x, Py_ssize_t n_rows, Py_ssize_t n_classes, float *out,
                     int n_threads) noexcept nogil
cdef int logsumexp_d(const double *x, Py_ssize_t n_rows, Py_ssize_t n_classes, double *out,
                     int n_threads) noexcept nogil
