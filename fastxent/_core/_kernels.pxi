# fastxent's kernels. This one source is compiled once per instruction set
# (_kernels_baseline.pyx, _kernels_avx2.pyx, _kernels_avx512.pyx include it);
# fastxent/_core/dispatch.py imports the best one the CPU supports.
#
# Design, in three layers (after scikit-learn's sklearn/_loss):
#   1. _loops.h: the vectorised inner loops over one row or segment (C, `omp simd`).
#   2. Row functions here (`cdef inline ... noexcept nogil`, fused float/double): the per-row
#      logic of every option, scalar work per row, calling the loops.
#   3. `def` kernels: `prange` over fixed blocks of rows or elements. Each block's loss sum is
#      stored in its own slot and the slots are added in order afterwards, so sums are the same
#      for every thread count. Nothing inside `prange` raises; the Python layer (fastxent/_api)
#      has validated every argument before a kernel writes anything.
#
# Multiclass rows: with logits z, m = max z at index kmax and rest = sum_{c != kmax} exp(z_c - m),
# every option reduces to target weights a_c = w_c (alpha t_c + beta) + hard [c == y]:
#   loss = sum_{c != kmax} a_c (m - z_c) + A log1p(rest),      A = sum_c a_c
#   grad = A softmax(z) - a, with grad[kmax] = (B - a_kmax rest) / (1 + rest), B = A - a_kmax,
# all terms non-negative, so confident rows keep their small loss and gradient exactly.

from cython.parallel cimport prange, threadid
from libc.limits cimport INT_MAX
from libc.math cimport INFINITY, NAN, exp, log, log1p
from libc.stdint cimport int64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy

cdef extern from "_loops.h" nogil:
    int FASTXENT_LIBMVEC
    enum:
        FX_SHORT_ROW
        FX_SHORT_BATCH
    Py_ssize_t fx_argmax_f(const float *x, Py_ssize_t n, float *m) noexcept
    Py_ssize_t fx_argmax_d(const double *x, Py_ssize_t n, double *m) noexcept
    Py_ssize_t FX_PADDED_ROWS(Py_ssize_t n_rows)
    double fx_expsum_f(const float *z, Py_ssize_t n, float m, float *e,
                       const float *next, Py_ssize_t skip) noexcept
    double fx_expsum_d(const double *z, Py_ssize_t n, double m, double *e,
                       const double *next, Py_ssize_t skip) noexcept
    double fx_expsum_lin_f(const float *z, const float *t, const float *w, Py_ssize_t n,
                           float m, double alpha, double beta, float *e,
                           double *lin, double *asum) noexcept
    double fx_expsum_lin_d(const double *z, const double *t, const double *w, Py_ssize_t n,
                           double m, double alpha, double beta, double *e,
                           double *lin, double *asum) noexcept
    double fx_short_label_rows_f(const float *x, Py_ssize_t R, Py_ssize_t C,
                                 const int64_t *labels, const double *sw, const float *w,
                                 int has_ignore, int64_t ignore, double keep, double beta,
                                 double grad_scale, double *row_loss, float *grad,
                                 float *hess, float *lse, float *E) noexcept
    double fx_short_label_rows_d(const double *x, Py_ssize_t R, Py_ssize_t C,
                                 const int64_t *labels, const double *sw, const double *w,
                                 int has_ignore, int64_t ignore, double keep, double beta,
                                 double grad_scale, double *row_loss, double *grad,
                                 double *hess, double *lse, double *E) noexcept
    void fx_grad_f(float *g, const float *t, const float *w, Py_ssize_t n,
                   float p, float ka, float kb) noexcept
    void fx_grad_d(double *g, const double *t, const double *w, Py_ssize_t n,
                   double p, double ka, double kb) noexcept
    void fx_softmax_hess_f(const float *e, Py_ssize_t n, Py_ssize_t kmax, float inv,
                           float rest_inv, float ka, float *h) noexcept
    void fx_softmax_hess_d(const double *e, Py_ssize_t n, Py_ssize_t kmax, double inv,
                           double rest_inv, double ka, double *h) noexcept
    void fx_prob_hess_f(const float *p, const float *t, const float *w, Py_ssize_t n, float ka,
                        float kb, float lo, float hi, float *h) noexcept
    void fx_prob_hess_d(const double *p, const double *t, const double *w, Py_ssize_t n,
                        double ka, double kb, double lo, double hi, double *h) noexcept
    double fx_prob_row_f(const float *p, const float *t, const float *w, Py_ssize_t n,
                         double alpha, double beta, float lo, float hi, float *g,
                         float k) noexcept
    double fx_prob_row_d(const double *p, const double *t, const double *w, Py_ssize_t n,
                         double alpha, double beta, double lo, double hi, double *g,
                         double k) noexcept
    void fx_log_softmax_f(const float *z, Py_ssize_t n, float m, float l, float *out) noexcept
    void fx_log_softmax_d(const double *z, Py_ssize_t n, double m, double l,
                          double *out) noexcept
    void fx_fill_f(float *x, Py_ssize_t n, float v) noexcept
    void fx_fill_d(double *x, Py_ssize_t n, double v) noexcept
    Py_ssize_t fx_count_outside_f(const float *x, Py_ssize_t n, float lo, float hi,
                                  int has_skip, float skip) noexcept
    Py_ssize_t fx_count_outside_d(const double *x, Py_ssize_t n, double lo, double hi,
                                  int has_skip, double skip) noexcept
    double fx_bce_f(int from_logits, const float *x, const float *y, Py_ssize_t n,
                    const float *w, int w_vec, const float *pw, int pw_vec, float sa, float sb,
                    int has_ignore, float ignore, float lo, float hi, float *loss, float *g,
                    float *h, float gk) noexcept
    double fx_bce_d(int from_logits, const double *x, const double *y, Py_ssize_t n,
                    const double *w, int w_vec, const double *pw, int pw_vec, double sa,
                    double sb, int has_ignore, double ignore, double lo, double hi,
                    double *loss, double *g, double *h, double gk) noexcept

cdef extern from "_option_loops.h" nogil:
    struct fx_row_options:
        double z_loss
        double softcap
        double gamma
    double fx_option_row_f(const float *z, const float *t, const float *w, Py_ssize_t n,
                           Py_ssize_t y, double alpha, double beta, double hard,
                           const fx_row_options *o, double k, float *g, float *h, double *work,
                           double *lse) noexcept
    double fx_option_row_d(const double *z, const double *t, const double *w, Py_ssize_t n,
                           Py_ssize_t y, double alpha, double beta, double hard,
                           const fx_row_options *o, double k, double *g, double *h,
                           double *work, double *lse) noexcept
    double fx_option_prob_row_f(const float *p, const float *t, const float *w, Py_ssize_t n,
                                Py_ssize_t y, double alpha, double beta, double hard, double lo,
                                double hi, double gamma, double k, float *g, float *h) noexcept
    double fx_option_prob_row_d(const double *p, const double *t, const double *w,
                                Py_ssize_t n, Py_ssize_t y, double alpha, double beta,
                                double hard, double lo, double hi, double gamma, double k,
                                double *g, double *h) noexcept
    double fx_bce_option_f(int from_logits, const float *x, const float *y, Py_ssize_t n,
                           const float *w, int w_vec, const float *pw, int pw_vec, float sa,
                           float sb, int has_ignore, float ignore, float lo, float hi,
                           double cap, double gamma, double alpha, float *loss, float *g,
                           float *h, float gk) noexcept
    double fx_bce_option_d(int from_logits, const double *x, const double *y, Py_ssize_t n,
                           const double *w, int w_vec, const double *pw, int pw_vec, double sa,
                           double sb, int has_ignore, double ignore, double lo, double hi,
                           double cap, double gamma, double alpha, double *loss, double *g,
                           double *h, double gk) noexcept

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define FASTXENT_OPENMP 1
    #else
    #define FASTXENT_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    #endif
    #ifndef FASTXENT_CFLAGS
    #define FASTXENT_CFLAGS ""
    #endif
    #ifdef __VERSION__
    #define FASTXENT_COMPILER __VERSION__
    #else
    #define FASTXENT_COMPILER "unknown"
    #endif
    enum { FX_CPU_AVX2, FX_CPU_AVX512 };
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    static int fx_cpu_has(int feature) {
        __builtin_cpu_init();
        switch (feature) {
        case FX_CPU_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        case FX_CPU_AVX512:
            return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
                   && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
        }
        return 0;
    }
    #else
    static int fx_cpu_has(int feature) { (void)feature; return 0; }
    #endif
    """
    enum:
        FX_CPU_AVX2
        FX_CPU_AVX512
    int FASTXENT_OPENMP
    const char *FASTXENT_CFLAGS
    const char *FASTXENT_COMPILER
    int omp_get_max_threads() noexcept nogil
    int fx_cpu_has(int feature) noexcept nogil

ctypedef fused real:
    float
    double

cdef enum:
    # Elements per block of work. Each block's loss sum has its own slot, added in order after
    # the parallel loop, so the size must not depend on the thread count.
    BLOCK_ELEMENTS = 32768
    # Rows of at most SHORT_ROW classes (contiguous logits with labels) are processed
    # SHORT_BATCH rows at a time, vectorised across rows (sizes from _loops.h).
    SHORT_ROW = FX_SHORT_ROW
    SHORT_BATCH = FX_SHORT_BATCH
    # While a row of at least PREFETCH_ROW classes is computed, the next row is prefetched;
    # shorter rows are left to the hardware prefetcher.
    PREFETCH_ROW = 512


cdef inline const real *_next_row(const real *x, Py_ssize_t r, Py_ssize_t n_rows,
                                  Py_ssize_t n_classes) noexcept nogil:
    """Row r + 1 of contiguous rows, to prefetch while row r is computed; NULL when there is
    none or rows are short."""
    if r + 1 < n_rows and n_classes >= PREFETCH_ROW:
        return x + (r + 1) * n_classes
    return NULL


def openmp_enabled():
    """True when this kernel set was compiled with OpenMP."""
    return bool(FASTXENT_OPENMP)


def build_info():
    """The compiler version and the flags this kernel set was compiled with."""
    return {"compiler": FASTXENT_COMPILER.decode(), "cflags": FASTXENT_CFLAGS.decode()}


def max_threads():
    """OpenMP's default thread count (honours OMP_NUM_THREADS); 1 without OpenMP."""
    return omp_get_max_threads()


def uses_libmvec():
    """True when the vector loops call glibc's SIMD exp/log (libmvec)."""
    return bool(FASTXENT_LIBMVEC)


def cpu_supports_avx2():
    """True when the CPU (and OS) support AVX2 and FMA."""
    return bool(fx_cpu_has(FX_CPU_AVX2))


def cpu_supports_avx512():
    """True when the CPU (and OS) support AVX-512 F, DQ, VL and BW."""
    return bool(fx_cpu_has(FX_CPU_AVX512))


# ---- fused wrappers over the C loops --------------------------------------------------------

cdef inline Py_ssize_t _argmax(const real *x, Py_ssize_t n, real *m) noexcept nogil:
    """The row's max into m (NaN ignored) and the first index holding it; when NaN is all
    there is, x at the index returned is not m."""
    if real is float:
        return fx_argmax_f(x, n, m)
    else:
        return fx_argmax_d(x, n, m)


cdef inline double _expsum(const real *z, Py_ssize_t n, real m, real *e, const real *next,
                           Py_ssize_t skip) noexcept nogil:
    if real is float:
        return fx_expsum_f(z, n, m, e, next, skip)
    else:
        return fx_expsum_d(z, n, m, e, next, skip)


cdef inline double _expsum_lin(const real *z, const real *t, const real *w, Py_ssize_t n, real m,
                               double alpha, double beta, real *e, double *lin,
                               double *asum) noexcept nogil:
    if real is float:
        return fx_expsum_lin_f(z, t, w, n, m, alpha, beta, e, lin, asum)
    else:
        return fx_expsum_lin_d(z, t, w, n, m, alpha, beta, e, lin, asum)


cdef inline void _grad(real *g, const real *t, const real *w, Py_ssize_t n, real p, real ka,
                       real kb) noexcept nogil:
    if real is float:
        fx_grad_f(g, t, w, n, p, ka, kb)
    else:
        fx_grad_d(g, t, w, n, p, ka, kb)


cdef inline void _softmax_hess(const real *e, Py_ssize_t n, Py_ssize_t kmax, real inv,
                               real rest_inv, real ka, real *h) noexcept nogil:
    if real is float:
        fx_softmax_hess_f(e, n, kmax, inv, rest_inv, ka, h)
    else:
        fx_softmax_hess_d(e, n, kmax, inv, rest_inv, ka, h)


cdef inline void _prob_hess(const real *p, const real *t, const real *w, Py_ssize_t n, real ka,
                            real kb, real lo, real hi, real *h) noexcept nogil:
    if real is float:
        fx_prob_hess_f(p, t, w, n, ka, kb, lo, hi, h)
    else:
        fx_prob_hess_d(p, t, w, n, ka, kb, lo, hi, h)


cdef inline double _prob_row_loop(const real *p, const real *t, const real *w, Py_ssize_t n,
                                  double alpha, double beta, real lo, real hi, real *g,
                                  real k) noexcept nogil:
    if real is float:
        return fx_prob_row_f(p, t, w, n, alpha, beta, lo, hi, g, k)
    else:
        return fx_prob_row_d(p, t, w, n, alpha, beta, lo, hi, g, k)


cdef inline void _log_softmax(const real *z, Py_ssize_t n, real m, real l,
                              real *out) noexcept nogil:
    if real is float:
        fx_log_softmax_f(z, n, m, l, out)
    else:
        fx_log_softmax_d(z, n, m, l, out)


cdef inline void _fill(real *x, Py_ssize_t n, real v) noexcept nogil:
    if real is float:
        fx_fill_f(x, n, v)
    else:
        fx_fill_d(x, n, v)


cdef inline Py_ssize_t _count_outside(const real *x, Py_ssize_t n, real lo, real hi,
                                      bint has_skip, real skip) noexcept nogil:
    if real is float:
        return fx_count_outside_f(x, n, lo, hi, has_skip, skip)
    else:
        return fx_count_outside_d(x, n, lo, hi, has_skip, skip)


cdef inline const real *_at(const real *p, Py_ssize_t offset) noexcept nogil:
    """p + offset, or NULL for an absent (NULL) array."""
    return p + offset if p != NULL else NULL


cdef inline real *_at_out(real *p, Py_ssize_t offset) noexcept nogil:
    return p + offset if p != NULL else NULL


# ---- blocks of work and strided rows --------------------------------------------------------

cdef inline Py_ssize_t _n_blocks(Py_ssize_t n, Py_ssize_t per_block) noexcept nogil:
    """The number of blocks of per_block items (the last one shorter) that hold n items."""
    return (n + per_block - 1) // per_block


cdef inline int _block_threads(int n_threads, Py_ssize_t n_blocks) noexcept nogil:
    """n_threads, but at least one and no more than there are blocks."""
    return <int>max(1, min(<Py_ssize_t>n_threads, n_blocks))


cdef inline double _ordered_sum(const double *partial, Py_ssize_t n_blocks,
                                Py_ssize_t stride) noexcept nogil:
    """partial[0] + partial[stride] + ... over n_blocks blocks, added in block order: the sum
    of per-block slots, the same for every thread count."""
    cdef double total = 0.0
    cdef Py_ssize_t b
    for b in range(n_blocks):
        total += partial[b * stride]
    return total


cdef inline Py_ssize_t _row_base(Py_ssize_t r, Py_ssize_t n_classes,
                                 Py_ssize_t n_inner) noexcept nogil:
    """Index of row r's first class in (outer, n_classes, n_inner) C-order data (classes
    n_inner elements apart)."""
    cdef Py_ssize_t outer
    if n_inner == 1:
        return r * n_classes
    outer = r // n_inner
    return outer * n_classes * n_inner + (r - outer * n_inner)


cdef inline void _gather(real *row, const real *x, Py_ssize_t base, Py_ssize_t step,
                         Py_ssize_t n) noexcept nogil:
    """row[c] = x[base + c * step] for c < n: a strided row into a contiguous buffer."""
    cdef Py_ssize_t c
    for c in range(n):
        row[c] = x[base + c * step]


cdef inline void _scatter(real *x, const real *row, Py_ssize_t base, Py_ssize_t step,
                          Py_ssize_t n) noexcept nogil:
    """x[base + c * step] = row[c] for c < n: a contiguous buffer back into a strided row."""
    cdef Py_ssize_t c
    for c in range(n):
        x[base + c * step] = row[c]


# ---- multiclass rows ------------------------------------------------------------------------

cdef struct RowTotals:
    double a_kmax               # target weight at the arg-max
    double a_rest               # total target weight of the other classes
    double loss


cdef inline RowTotals _add_hard_label(double m, Py_ssize_t kmax, Py_ssize_t y, double zy,
                                      double hard, double a_kmax, double a_rest, double lin,
                                      double l1p) noexcept nogil:
    """Add the hard label's weight `hard` at class y (y < 0: none) to the totals of the soft
    and smoothing weights; the row's loss lin + A log1p(rest) with l1p = log1p(rest)."""
    cdef RowTotals totals
    totals.a_kmax = a_kmax
    totals.a_rest = a_rest
    if y == kmax:
        totals.a_kmax += hard
    elif y >= 0 and hard != 0.0:
        totals.a_rest += hard
        lin += hard * (m - zy)
    totals.loss = lin + (totals.a_rest + totals.a_kmax) * l1p
    return totals


cdef inline double _logit_row(const real *z, const real *t, const real *w, Py_ssize_t n_classes,
                              Py_ssize_t y, double alpha, double beta, double hard, double k,
                              real *g, const real *next, real *h, double *lse) noexcept nogil:
    """Loss of one row of logits; writes k * d(loss)/dz into g unless g is NULL (g may be z),
    k * d2(loss)/dz2 (the Hessian's diagonal) into h unless h is NULL (needs g; h may be
    z when g is not), and the row's log-sum-exp m + log1p(rest) into lse unless NULL.

    Target weights a_c = w_c (alpha t_c + beta) + hard [c == y]; y < 0 means no hard label.
    `next` (or NULL) is the row to prefetch while this one is computed.
    """
    cdef real m
    cdef Py_ssize_t kmax = _argmax(z, n_classes, &m), tail
    cdef double rest, zy = 0.0, lin = 0.0, asum = 0.0, a_kmax, a_all, inv, l1p
    cdef RowTotals totals
    if z[kmax] != m:                             # no arg-max to find: NaN in the row
        if lse != NULL:
            lse[0] = NAN
        if g != NULL:
            _fill(g, n_classes, <real>NAN)
        if h != NULL:
            _fill(h, n_classes, <real>NAN)
        return NAN
    tail = n_classes - kmax - 1
    if y >= 0:
        zy = z[y]                                # read before g (possibly z) is written
    if t != NULL or beta != 0.0:
        rest = (_expsum_lin(z, t, w, kmax, m, alpha, beta, g, &lin, &asum)
                + _expsum_lin(z + kmax + 1, _at(t, kmax + 1), _at(w, kmax + 1), tail, m,
                              alpha, beta, _at_out(g, kmax + 1), &lin, &asum))
    else:
        rest = _expsum(z, n_classes, m, g, next, kmax)
    a_kmax = (w[kmax] if w != NULL else 1.0) * (alpha * (t[kmax] if t != NULL else 0.0) + beta)
    l1p = log1p(rest)
    if lse != NULL:
        lse[0] = m + l1p
    totals = _add_hard_label(m, kmax, y, zy, hard, a_kmax, asum, lin, l1p)
    if g != NULL:
        a_all = totals.a_rest + totals.a_kmax
        inv = 1.0 / (1.0 + rest)
        if h != NULL:                            # from the exp terms, before _grad uses them
            _softmax_hess(g, n_classes, kmax, <real>inv, <real>(rest * inv), <real>(k * a_all),
                          h)
        _grad(g, t, w, n_classes, <real>(k * a_all * inv), <real>(k * alpha), <real>(k * beta))
        g[kmax] = <real>(k * (totals.a_rest - totals.a_kmax * rest) * inv)
        if y >= 0 and y != kmax:
            g[y] = g[y] - <real>(k * hard)
    return totals.loss


cdef inline double _prob_row(const real *p, const real *t, const real *w, Py_ssize_t n_classes,
                             Py_ssize_t y, double alpha, double beta, double hard, real lo,
                             real hi, double k, real *g, real *h) noexcept nogil:
    """Loss of one row of probabilities clipped to [lo, hi]; writes k * d(loss)/dp into g and,
    unless h is NULL, k * d2(loss)/dp2 into h (g or h may be p, not both).

    Derivatives are taken with respect to the clipped probability. Same target weights as
    _logit_row.
    """
    cdef double loss = 0.0
    cdef real py = 0, cp
    if y >= 0:
        py = p[y]                                # read before g (possibly p) is written
    if h != NULL and h != p:                     # before g, which may be p, is written
        _prob_row_hess(p, t, w, n_classes, y, alpha, beta, hard, lo, hi, k, h, py)
    if t != NULL or beta != 0.0:
        loss = _prob_row_loop(p, t, w, n_classes, alpha, beta, lo, hi, g, <real>k)
    elif g != NULL:
        _fill(g, n_classes, <real>0)
    if y >= 0 and hard != 0.0:
        cp = lo if py < lo else (hi if py > hi else py)
        loss -= hard * log(<double>cp)
        if g != NULL:
            g[y] = g[y] - <real>(k * hard / cp)
    if h != NULL and h == p:                     # p is read: g is not p
        _prob_row_hess(p, t, w, n_classes, y, alpha, beta, hard, lo, hi, k, h, py)
    return loss


cdef inline void _prob_row_hess(const real *p, const real *t, const real *w,
                                Py_ssize_t n_classes, Py_ssize_t y, double alpha, double beta,
                                double hard, real lo, real hi, double k, real *h,
                                real py) noexcept nogil:
    """h_c = k a_c / clip(p_c)^2 for _prob_row's target weights a_c; py is p[y], read before
    h (possibly p) is written."""
    cdef real cp
    if t != NULL or beta != 0.0:
        _prob_hess(p, t, w, n_classes, <real>(k * alpha), <real>(k * beta), lo, hi, h)
    else:
        _fill(h, n_classes, <real>0)
    if y >= 0 and hard != 0.0:
        cp = lo if py < lo else (hi if py > hi else py)
        h[y] = h[y] + <real>((k * hard / cp) / cp)


cdef struct ClassOptions:
    Py_ssize_t n_rows
    Py_ssize_t n_classes
    Py_ssize_t n_inner          # elements between two classes of one row (1: rows contiguous)
    const int64_t *labels       # (n_rows,), or NULL for soft targets
    const double *sample_weight  # (n_rows,), or NULL
    bint has_ignore
    int64_t ignore_index
    double keep                 # 1 - label_smoothing: the hard label's share
    double alpha                # soft-target coefficient of t_c
    double beta                 # label_smoothing / n_classes
    bint from_logits
    double clip_lo
    double clip_hi
    double grad_scale           # 1 / denominator for reduction="mean", else 1
    fx_row_options extra        # z-loss, soft-cap and focal exponent (all 0: none)
    bint has_extra              # any of them set: rows go through the option loops


cdef inline ClassOptions _class_options(Py_ssize_t n_rows, Py_ssize_t n_classes,
                                        Py_ssize_t n_inner,
                                        const int64_t *labels, const double *sample_weight,
                                        bint has_ignore, int64_t ignore_index,
                                        double label_smoothing, bint from_logits, double clip_lo,
                                        double clip_hi, double grad_scale) noexcept nogil:
    cdef ClassOptions o
    o.n_rows = n_rows
    o.n_classes = n_classes
    o.n_inner = n_inner
    o.labels = labels
    o.sample_weight = sample_weight
    o.has_ignore = has_ignore
    o.ignore_index = ignore_index
    o.keep = 1.0 - label_smoothing
    o.alpha = 0.0 if labels != NULL else 1.0 - label_smoothing
    o.beta = label_smoothing / n_classes
    o.from_logits = from_logits
    o.clip_lo = clip_lo
    o.clip_hi = clip_hi
    o.grad_scale = grad_scale
    o.extra.z_loss = 0.0
    o.extra.softcap = 0.0
    o.extra.gamma = 0.0
    o.has_extra = False
    return o


cdef inline Py_ssize_t _rows_per_block(Py_ssize_t n_classes) noexcept nogil:
    return max(1, BLOCK_ELEMENTS // max(n_classes, 1))


cdef inline double _class_row(const real *x, const real *t, const real *w,
                              const ClassOptions *o, Py_ssize_t y, double hard, double k,
                              real *g, const real *next, real *h, double *work,
                              double *lse) noexcept nogil:
    """One row's loss through the row function its options need; `work` (7 C doubles) is
    scratch for the option loops, `lse` (or NULL) receives a row of logits' log-sum-exp."""
    if o.has_extra and o.from_logits:
        if real is float:
            return fx_option_row_f(x, t, w, o.n_classes, y, o.alpha, o.beta, hard, &o.extra, k,
                                   g, h, work, lse)
        else:
            return fx_option_row_d(x, t, w, o.n_classes, y, o.alpha, o.beta, hard, &o.extra, k,
                                   g, h, work, lse)
    if o.has_extra:                              # probabilities: only focal terms
        if real is float:
            return fx_option_prob_row_f(x, t, w, o.n_classes, y, o.alpha, o.beta, hard,
                                        <float>o.clip_lo, <float>o.clip_hi, o.extra.gamma, k,
                                        g, h)
        else:
            return fx_option_prob_row_d(x, t, w, o.n_classes, y, o.alpha, o.beta, hard,
                                        o.clip_lo, o.clip_hi, o.extra.gamma, k, g, h)
    if o.from_logits:
        return _logit_row(x, t, w, o.n_classes, y, o.alpha, o.beta, hard, k, g, next, h, lse)
    return _prob_row(x, t, w, o.n_classes, y, o.alpha, o.beta, hard, <real>o.clip_lo,
                     <real>o.clip_hi, k, g, h)


cdef double _short_label_rows(const real *x, const real *w, const ClassOptions *o,
                              Py_ssize_t r0, Py_ssize_t r1, double *row_loss,
                              real *grad, real *hess, real *lse) noexcept nogil:
    """Rows [r0, r1) of contiguous logits with labels and C <= SHORT_ROW; as _class_rows.

    SHORT_BATCH rows at a time go through fx_short_label_rows, vectorised across rows.
    """
    cdef real E[SHORT_ROW * SHORT_BATCH]
    cdef Py_ssize_t C = o.n_classes, start = r0, n
    cdef double total = 0.0
    cdef const double *sw
    while start < r1:
        n = min(<Py_ssize_t>SHORT_BATCH, r1 - start)
        sw = o.sample_weight + start if o.sample_weight != NULL else NULL
        if real is float:
            total += fx_short_label_rows_f(
                x + start * C, n, C, o.labels + start, sw, w, o.has_ignore, o.ignore_index,
                o.keep, o.beta, o.grad_scale, row_loss + start if row_loss != NULL else NULL,
                _at_out(grad, start * C), _at_out(hess, start * C), _at_out(lse, start), E)
        else:
            total += fx_short_label_rows_d(
                x + start * C, n, C, o.labels + start, sw, w, o.has_ignore, o.ignore_index,
                o.keep, o.beta, o.grad_scale, row_loss + start if row_loss != NULL else NULL,
                _at_out(grad, start * C), _at_out(hess, start * C), _at_out(lse, start), E)
        start += n
    return total


cdef double _class_rows(const real *x, const real *soft, const real *w, const ClassOptions *o,
                        Py_ssize_t r0, Py_ssize_t r1, double *row_loss, real *grad,
                        real *scratch, real *hess, real *lse, double *work) noexcept nogil:
    """Rows [r0, r1): per-row losses into row_loss (if not NULL), their sum returned; the
    gradient into grad, the Hessian's diagonal into hess (which needs grad) and each row's
    log-sum-exp (logits; ignored rows too) into lse unless NULL. `scratch` (3 C reals, strided
    rows) and `work` (7 C doubles, the option loops) are this thread's."""
    cdef Py_ssize_t r, c, y, base, C = o.n_classes, step = o.n_inner
    cdef double s, hard, loss, row_lse = NAN, total = 0.0
    cdef double *lse_slot = &row_lse if lse != NULL else NULL
    cdef real *zbuf = scratch
    cdef real *tbuf = scratch + C if scratch != NULL else NULL
    cdef real *gbuf = scratch + 2 * C if scratch != NULL else NULL
    if (step == 1 and C <= SHORT_ROW and o.labels != NULL and o.from_logits
            and not o.has_extra):
        return _short_label_rows(x, w, o, r0, r1, row_loss, grad, hess, lse)
    for r in range(r0, r1):
        s = o.sample_weight[r] if o.sample_weight != NULL else 1.0
        y = -1
        hard = 0.0
        if o.labels != NULL:
            y = o.labels[r]
            if not (o.has_ignore and y == o.ignore_index):   # an ignored label indexes nothing
                hard = o.keep * (w[y] if w != NULL else 1.0)
        base = _row_base(r, C, step)
        if o.labels != NULL and o.has_ignore and o.labels[r] == o.ignore_index:
            loss = 0.0
            if grad != NULL:
                for c in range(C):
                    grad[base + c * step] = 0
            if hess != NULL:
                for c in range(C):
                    hess[base + c * step] = 0
            if lse != NULL:                      # the row's log-sum-exp all the same
                if step != 1:
                    _gather(zbuf, x, base, step, C)
                _class_row(x + base if step == 1 else zbuf, NULL, w, o, -1, 0.0, 0.0, NULL,
                           NULL, NULL, work, lse_slot)
        elif step == 1:
            loss = s * _class_row(x + base, _at(soft, base), w, o, y, hard,
                                  s * o.grad_scale, _at_out(grad, base),
                                  _next_row(x, r, o.n_rows, C), _at_out(hess, base), work,
                                  lse_slot)
        else:                                    # strided row: through this thread's buffers
            _gather(zbuf, x, base, step, C)
            if soft != NULL:
                _gather(tbuf, soft, base, step, C)
            # the Hessian overwrites the row's copy, which the row function reads before
            loss = s * _class_row(zbuf, tbuf if soft != NULL else NULL, w, o, y, hard,
                                  s * o.grad_scale, gbuf if grad != NULL else NULL, NULL,
                                  zbuf if hess != NULL else NULL, work, lse_slot)
            if grad != NULL:
                _scatter(grad, gbuf, base, step, C)
            if hess != NULL:
                _scatter(hess, zbuf, base, step, C)
        if row_loss != NULL:
            row_loss[r] = loss
        if lse != NULL:
            lse[r] = <real>row_lse
        total += loss
    return total


def class_cross_entropy(const real[::1] x,                    # IN  (outer, C, inner) C-order
                        Py_ssize_t n_classes, Py_ssize_t n_inner,
                        const int64_t[::1] labels,            # IN  (rows,) in [0, C), or None
                        const real[::1] soft,                 # IN  like x, or None
                        const real[::1] class_weight,         # IN  (C,), or None
                        const double[::1] sample_weight,      # IN  (rows,), or None
                        bint has_ignore, int64_t ignore_index, double label_smoothing,
                        bint from_logits, double clip_eps, double grad_scale,
                        double[::1] row_loss,                 # OUT (rows,), or None
                        real[::1] grad,                       # OUT like x (may be x), or None
                        int n_threads,
                        real[::1] hess=None,                  # OUT like x (may be x), or None
                        double z_loss=0.0, double softcap=0.0, double focal_gamma=0.0,
                        real[::1] lse=None):                  # OUT (rows,), or None
    """Multiclass cross-entropy over rows of `x`; returns the sum of the row losses.

    Rows are the (outer, inner) positions; classes are `n_inner` elements apart. The gradient
    written is grad_scale * sample_weight * d(row loss)/dx, and into `hess` (which needs
    `grad`, and may not be `grad`) the same scaling of the Hessian's diagonal; each row's
    log-sum-exp (of the soft-capped logits) into `lse`. z_loss, softcap (0: none) and
    focal_gamma are the options of _option_loops.h (logits; probabilities take focal_gamma
    only). Arguments must be validated:
    labels in range (or equal to ignore_index), exactly one of labels and soft given.
    """
    cdef ClassOptions o
    cdef Py_ssize_t n_rows = x.shape[0] // n_classes if n_classes > 0 else 0
    cdef Py_ssize_t per_block = _rows_per_block(n_classes)
    cdef Py_ssize_t n_blocks = _n_blocks(n_rows, per_block)
    cdef Py_ssize_t b, r0, r1
    cdef real clip_lo = <real>clip_eps, clip_hi = <real>1.0 - <real>clip_eps  # kernel dtype
    cdef double total
    cdef double *partial
    cdef real *scratch = NULL
    cdef double *work = NULL
    cdef const real *soft_p = NULL
    cdef const real *w_p = NULL
    cdef double *row_loss_p = NULL
    cdef real *grad_p = NULL
    cdef real *hess_p = NULL
    cdef real *lse_p = NULL
    if n_rows == 0:
        return 0.0
    o = _class_options(n_rows, n_classes, n_inner, &labels[0] if labels is not None else NULL,
                       &sample_weight[0] if sample_weight is not None else NULL, has_ignore,
                       ignore_index, label_smoothing, from_logits, clip_lo, clip_hi, grad_scale)
    o.extra.z_loss = z_loss
    o.extra.softcap = softcap
    o.extra.gamma = focal_gamma
    o.has_extra = z_loss != 0.0 or softcap != 0.0 or focal_gamma != 0.0
    if lse is not None:
        lse_p = &lse[0]
    if soft is not None:
        soft_p = &soft[0]
    if class_weight is not None:
        w_p = &class_weight[0]
    if row_loss is not None:
        row_loss_p = &row_loss[0]
    if grad is not None:
        grad_p = &grad[0]
    if hess is not None:
        if grad is None:
            raise ValueError("fastxent: hess needs grad")
        hess_p = &hess[0]
    n_threads = _block_threads(n_threads, n_blocks)
    partial = <double *> malloc(n_blocks * sizeof(double))
    if n_inner > 1:
        scratch = <real *> malloc(n_threads * 3 * n_classes * sizeof(real))
    if o.has_extra:
        work = <double *> malloc(n_threads * 7 * n_classes * sizeof(double))
    if partial == NULL or (n_inner > 1 and scratch == NULL) or (o.has_extra and work == NULL):
        free(partial)
        free(scratch)
        free(work)
        raise MemoryError("fastxent: cannot allocate kernel work space")
    with nogil:
        for b in prange(n_blocks, schedule="static", num_threads=n_threads):
            r0 = b * per_block
            r1 = min(r0 + per_block, n_rows)
            partial[b] = _class_rows(&x[0], soft_p, w_p, &o, r0, r1, row_loss_p, grad_p,
                                     _at_out(scratch, threadid() * 3 * n_classes), hess_p,
                                     lse_p, work + threadid() * 7 * n_classes
                                     if work != NULL else NULL)
        total = _ordered_sum(partial, n_blocks, 1)
    free(partial)
    free(scratch)
    free(work)
    return total


def check_labels(const int64_t[::1] labels,          # IN (rows,)
                 Py_ssize_t n_classes, bint has_ignore, int64_t ignore_index,
                 const double[::1] class_weight,     # IN (C,), or None
                 const double[::1] sample_weight,    # IN (rows,), or None
                 int n_threads):
    """Return (first row whose label is out of range or -1, total weight of counted rows).

    A row counts unless its label is ignore_index; it weighs sample_weight * class_weight[y].
    The total is summed in fixed blocks, so it does not depend on n_threads.
    """
    cdef Py_ssize_t n = labels.shape[0], per_block = BLOCK_ELEMENTS
    cdef Py_ssize_t n_blocks = _n_blocks(n, per_block)
    cdef Py_ssize_t b, i, first = -1
    cdef int64_t y
    cdef double acc, total
    cdef const double *w = NULL
    cdef const double *s = NULL
    cdef double *partial
    cdef Py_ssize_t *bad
    if n == 0:                                   # (an empty array has no element 0)
        return -1, 0.0
    if class_weight is not None:
        w = &class_weight[0]
    if sample_weight is not None:
        s = &sample_weight[0]
    partial = <double *> malloc(n_blocks * sizeof(double))
    bad = <Py_ssize_t *> malloc(n_blocks * sizeof(Py_ssize_t))
    if partial == NULL or bad == NULL:
        free(partial)
        free(bad)
        raise MemoryError("fastxent: cannot allocate kernel work space")
    n_threads = _block_threads(n_threads, n_blocks)
    with nogil:
        for b in prange(n_blocks, schedule="static", num_threads=n_threads):
            acc = 0.0
            bad[b] = -1
            for i in range(b * per_block, min((b + 1) * per_block, n)):
                y = labels[i]
                if has_ignore and y == ignore_index:
                    continue
                if y < 0 or y >= n_classes:
                    if bad[b] < 0:
                        bad[b] = i
                    continue
                acc = acc + (w[y] if w != NULL else 1.0) * (s[i] if s != NULL else 1.0)
            partial[b] = acc
        total = _ordered_sum(partial, n_blocks, 1)
        for b in range(n_blocks):
            if bad[b] >= 0:
                first = bad[b]
                break
    free(partial)
    free(bad)
    return first, total


def outside(const real[::1] x, double lo, double hi, bint has_skip, double skip, int n_threads):
    """Return (count, first index) of the elements outside [lo, hi], skipping those equal to
    `skip`; NaN counts as outside. first is -1 when count is 0."""
    cdef Py_ssize_t n = x.shape[0], per_block = BLOCK_ELEMENTS
    cdef Py_ssize_t n_blocks = _n_blocks(n, per_block)
    cdef Py_ssize_t b, i, stop, first = -1, count = 0
    cdef real rlo = <real>lo, rhi = <real>hi, rskip = <real>skip, v
    if n == 0:
        return 0, -1
    n_threads = _block_threads(n_threads, n_blocks)
    with nogil:
        for b in prange(n_blocks, schedule="static", num_threads=n_threads):
            stop = min((b + 1) * per_block, n)
            count += _count_outside(&x[b * per_block], stop - b * per_block, rlo, rhi, has_skip,
                                    rskip)
        if count > 0:                            # find the first one serially
            for i in range(n):
                v = x[i]
                if not ((v >= rlo and v <= rhi) or (has_skip and v == rskip)):
                    first = i
                    break
    return count, first


# ---- evaluation metrics ---------------------------------------------------------------------

include "_eval_kernels.pxi"


# ---- softmax, log-softmax, log-sum-exp ------------------------------------------------------

cpdef enum RowTransform:
    SOFTMAX = 0
    LOG_SOFTMAX = 1
    LOGSUMEXP = 2


cdef inline double _transform_row(const real *z, Py_ssize_t n, RowTransform mode,
                                  real *out, const real *next) noexcept nogil:
    """Log-sum-exp of one row; writes its softmax or log-softmax into out (may be z); `next`
    (or NULL) is the row to prefetch meanwhile.

    NaN anywhere gives NaN. Otherwise a row whose largest logit is +-inf has log-sum-exp +-inf
    (its softmax puts all mass on a single +inf; two +inf, or all -inf, give NaN).
    """
    cdef real m
    cdef Py_ssize_t kmax = _argmax(z, n, &m)
    cdef double rest, inv
    cdef real *e = out if mode == SOFTMAX else NULL
    if z[kmax] != m:                             # no arg-max to find: NaN in the row
        if mode != LOGSUMEXP:
            _fill(out, n, <real>NAN)
        return NAN
    rest = _expsum(z, n, m, e, next, kmax)
    if mode == SOFTMAX:
        inv = 1.0 / (1.0 + rest)
        _grad(out, NULL, NULL, n, <real>inv, 0, 0)
        out[kmax] = <real>inv
    elif mode == LOG_SOFTMAX:
        _log_softmax(z, n, m, <real>log1p(rest), out)
    if m == INFINITY or m == -INFINITY:          # +-inf unless the row holds a NaN
        return m if _count_outside(z, n, -INFINITY, INFINITY, False, 0) == 0 else NAN
    return m + log1p(rest)


def transform_rows(const real[::1] x,            # IN  (outer, C, inner) C-order
                   Py_ssize_t n_classes, Py_ssize_t n_inner, RowTransform mode,
                   real[::1] out,                # OUT like x (may be x), or None for LOGSUMEXP
                   real[::1] lse,                # OUT (rows,), or None
                   int n_threads):
    """Softmax, log-softmax or log-sum-exp over the class axis of every row."""
    cdef Py_ssize_t n_rows = x.shape[0] // n_classes
    cdef Py_ssize_t per_block = _rows_per_block(n_classes)
    cdef Py_ssize_t n_blocks = _n_blocks(n_rows, per_block)
    cdef Py_ssize_t b, r, base, step = n_inner
    cdef real *out_p = NULL
    cdef real *lse_p = NULL
    cdef real *scratch = NULL
    cdef real *zbuf
    cdef real *obuf
    cdef double row_lse
    if n_rows == 0 or x.shape[0] == 0:
        return
    if out is not None:
        out_p = &out[0]
    if lse is not None:
        lse_p = &lse[0]
    n_threads = _block_threads(n_threads, n_blocks)
    if n_inner > 1:
        scratch = <real *> malloc(n_threads * 2 * n_classes * sizeof(real))
        if scratch == NULL:
            raise MemoryError("fastxent: cannot allocate kernel work space")
    with nogil:
        for b in prange(n_blocks, schedule="static", num_threads=n_threads):
            for r in range(b * per_block, min((b + 1) * per_block, n_rows)):
                if step == 1:
                    row_lse = _transform_row(&x[r * n_classes], n_classes, mode,
                                             _at_out(out_p, r * n_classes),
                                             _next_row(&x[0], r, n_rows, n_classes))
                else:                            # strided row: through this thread's buffers
                    base = _row_base(r, n_classes, step)
                    zbuf = scratch + threadid() * 2 * n_classes
                    obuf = zbuf + n_classes
                    _gather(zbuf, &x[0], base, step, n_classes)
                    row_lse = _transform_row(zbuf, n_classes, mode, obuf, NULL)
                    if out_p != NULL:
                        _scatter(out_p, obuf, base, step, n_classes)
                if lse_p != NULL:
                    lse_p[r] = <real>row_lse
    free(scratch)


# ---- binary ---------------------------------------------------------------------------------

def binary_cross_entropy(const real[::1] x,           # IN  flat (rows * row_len,)
                         const real[::1] y,           # IN  like x
                         Py_ssize_t row_len,
                         const real[::1] weight,      # IN  see below, or None
                         Py_ssize_t w_row_step, bint w_vec,
                         const real[::1] pos_weight,  # IN  see below, or None
                         Py_ssize_t pw_row_step, bint pw_vec,
                         double label_smoothing, bint has_ignore, double ignore_value,
                         bint from_logits, double clip_eps, double grad_scale,
                         real[::1] loss_out,          # OUT like x, or None
                         real[::1] grad,              # OUT like x (may be x), or None
                         int n_threads,
                         real[::1] hess=None,         # OUT like x (may be x), or None
                         double softcap=0.0, double focal_gamma=0.0, double focal_alpha=-1.0):
    """Elementwise binary cross-entropy; returns the sum of the element losses.

    Element (r, col) of the (rows, row_len) view weighs weight[r * w_row_step + col * w_vec]
    and has positive weight pos_weight[r * pw_row_step + col * pw_vec]. `hess` (the second
    derivatives, scaled like the gradient) needs `grad` and no `loss_out`. softcap (0: none,
    logits only), focal_gamma and focal_alpha (negative: none) are fx_bce_option's. Arguments
    must be validated.
    """
    cdef Py_ssize_t n = x.shape[0], per_block = BLOCK_ELEMENTS
    cdef Py_ssize_t n_blocks = _n_blocks(n, per_block)
    cdef Py_ssize_t b, i, stop, seg_end, r, col
    cdef double total
    cdef double *partial
    cdef const real *w_p = NULL
    cdef const real *pw_p = NULL
    cdef real *loss_p = NULL
    cdef real *grad_p = NULL
    cdef real *hess_p = NULL
    cdef real sa = <real>(1.0 - label_smoothing), sb = <real>(label_smoothing / 2.0)
    cdef real lo, hi
    if n == 0:
        return 0.0
    if real is float:
        lo = <float>clip_eps
        hi = <float>1.0 - <float>clip_eps
    else:
        lo = clip_eps
        hi = 1.0 - clip_eps
    if weight is not None:
        w_p = &weight[0]
    if pos_weight is not None:
        pw_p = &pos_weight[0]
    if loss_out is not None:
        loss_p = &loss_out[0]
    if grad is not None:
        grad_p = &grad[0]
    if hess is not None:
        if grad is None or loss_out is not None:
            raise ValueError("fastxent: hess needs grad and no loss_out")
        hess_p = &hess[0]
    partial = <double *> malloc(n_blocks * sizeof(double))
    if partial == NULL:
        raise MemoryError("fastxent: cannot allocate kernel work space")
    n_threads = _block_threads(n_threads, n_blocks)
    with nogil:
        for b in prange(n_blocks, schedule="static", num_threads=n_threads):
            partial[b] = 0.0
            i = b * per_block
            stop = min(i + per_block, n)
            while i < stop:                      # segments end at row boundaries
                r = i // row_len
                col = i - r * row_len
                seg_end = min(stop, (r + 1) * row_len)
                partial[b] += _bce_segment(
                    from_logits, &x[i], &y[i], seg_end - i,
                    _at(w_p, r * w_row_step + col * w_vec), w_vec,
                    _at(pw_p, r * pw_row_step + col * pw_vec), pw_vec, sa, sb, has_ignore,
                    <real>ignore_value, lo, hi, _at_out(loss_p, i), _at_out(grad_p, i),
                    _at_out(hess_p, i), <real>grad_scale, softcap, focal_gamma, focal_alpha)
                i = seg_end
        total = _ordered_sum(partial, n_blocks, 1)
    free(partial)
    return total


cdef inline double _bce_segment(bint from_logits, const real *x, const real *y, Py_ssize_t n,
                                const real *w, bint w_vec, const real *pw, bint pw_vec, real sa,
                                real sb, bint has_ignore, real ignore, real lo, real hi,
                                real *loss, real *g, real *h, real gk, double softcap,
                                double focal_gamma, double focal_alpha) noexcept nogil:
    """A segment of binary cross-entropy: the vector loops of fx_bce, or fx_bce_option's
    when a soft-cap (> 0), a focal exponent (!= 0) or a focal alpha (>= 0) is set."""
    if softcap != 0.0 or focal_gamma != 0.0 or focal_alpha >= 0.0:
        if real is float:
            return fx_bce_option_f(from_logits, x, y, n, w, w_vec, pw, pw_vec, sa, sb,
                                   has_ignore, ignore, lo, hi, softcap, focal_gamma,
                                   focal_alpha, loss, g, h, gk)
        else:
            return fx_bce_option_d(from_logits, x, y, n, w, w_vec, pw, pw_vec, sa, sb,
                                   has_ignore, ignore, lo, hi, softcap, focal_gamma,
                                   focal_alpha, loss, g, h, gk)
    if real is float:
        return fx_bce_f(from_logits, x, y, n, w, w_vec, pw, pw_vec, sa, sb, has_ignore, ignore,
                        lo, hi, loss, g, h, gk)
    else:
        return fx_bce_d(from_logits, x, y, n, w, w_vec, pw, pw_vec, sa, sb, has_ignore, ignore,
                        lo, hi, loss, g, h, gk)


# ---- C-level API (exported through _kernels_*.pxd, re-exported by fastxent.capi) -------------

# GNU OpenMP's thread pool does not survive fork(): a child forked after a multi-threaded
# kernel call waits forever in its first parallel region. A pthread_atfork handler marks such a
# child, and every C-API call in it runs on one thread (the Python layer, fastxent/_core/
# threads.py, does the same with a warning for its own calls, and tells this module when it
# starts threads).
cdef extern from *:
    """
    #if defined(_WIN32)
    static int fx_register_child_at_fork(void (*child)(void)) { (void)child; return 0; }
    #else
    #include <pthread.h>
    static int fx_register_child_at_fork(void (*child)(void)) {
        return pthread_atfork(NULL, NULL, child);
    }
    #endif
    """
    int fx_register_child_at_fork(void (*child)() noexcept nogil)


cdef int _threads_started = 0       # a call of this process may have started OpenMP threads
cdef int _forked_child = 0          # this process was forked after that: one thread only


cdef void _after_fork_in_child() noexcept nogil:
    global _forked_child
    if _threads_started:
        _forked_child = 1


fx_register_child_at_fork(_after_fork_in_child)


def note_threads_started():
    """Record that the Python layer has run a multi-threaded kernel in this process."""
    global _threads_started
    _threads_started = 1


cdef inline int _capi_threads(int n_threads) noexcept nogil:
    """The threads a C-API call runs on: 1 in a child forked after threads were started, else
    `n_threads` (0 or negative: OpenMP's default)."""
    global _threads_started
    if _forked_child:
        return 1
    if n_threads != 1:
        _threads_started = 1
    return n_threads if n_threads > 0 else omp_get_max_threads()


cdef int _capi_softmax_ce(const real *logits, Py_ssize_t n_rows, Py_ssize_t n_classes,
                          const int64_t *labels, double *loss, real *grad,
                          int n_threads) noexcept nogil:
    cdef ClassOptions o
    cdef Py_ssize_t i, b, per_block, n_blocks, n_bad = 0
    if n_rows < 0 or n_classes < 1 or (n_rows > 0 and (logits == NULL or labels == NULL)):
        return -1
    for i in range(n_rows):
        if labels[i] < 0 or labels[i] >= n_classes:
            n_bad += 1
    if n_bad > 0:
        return <int>min(n_bad, <Py_ssize_t>INT_MAX)
    o = _class_options(n_rows, n_classes, 1, labels, NULL, False, 0, 0.0, True, 0.0, 1.0, 1.0)
    per_block = _rows_per_block(n_classes)
    n_blocks = _n_blocks(n_rows, per_block)
    for b in prange(n_blocks, schedule="static", num_threads=_capi_threads(n_threads)):
        _class_rows(logits, NULL, NULL, &o, b * per_block, min((b + 1) * per_block, n_rows),
                    loss, grad, NULL, NULL, NULL, NULL)
    return 0


cdef int _capi_bce_logits(const real *logits, const real *targets, Py_ssize_t n, real *loss,
                          real *grad, int n_threads) noexcept nogil:
    cdef Py_ssize_t b, start, n_blocks, n_bad
    if n < 0 or (n > 0 and (logits == NULL or targets == NULL)):
        return -1
    if n == 0:
        return 0
    n_bad = _count_outside(targets, n, 0, 1, False, 0)
    if n_bad > 0:
        return <int>min(n_bad, <Py_ssize_t>INT_MAX)
    n_blocks = _n_blocks(n, BLOCK_ELEMENTS)
    for b in prange(n_blocks, schedule="static", num_threads=_capi_threads(n_threads)):
        start = b * BLOCK_ELEMENTS
        _bce_segment(True, logits + start, targets + start,
                     min(<Py_ssize_t>BLOCK_ELEMENTS, n - start), NULL, False, NULL, False, 1, 0,
                     False, 0, 0, 1, _at_out(loss, start), _at_out(grad, start), NULL, 1, 0.0,
                     0.0, -1.0)
    return 0


cdef int _capi_logsumexp(const real *x, Py_ssize_t n_rows, Py_ssize_t n_classes, real *out,
                         int n_threads) noexcept nogil:
    cdef Py_ssize_t r
    if n_rows < 0 or n_classes < 1 or (n_rows > 0 and (x == NULL or out == NULL)):
        return -1
    for r in prange(n_rows, schedule="static", num_threads=_capi_threads(n_threads)):
        out[r] = <real>_transform_row(x + r * n_classes, n_classes, LOGSUMEXP, NULL,
                                      _next_row(x, r, n_rows, n_classes))
    return 0


cdef int capi_softmax_cross_entropy_f(const float *logits, Py_ssize_t n_rows,
                                      Py_ssize_t n_classes, const int64_t *labels,
                                      double *loss, float *grad, int n_threads) noexcept nogil:
    return _capi_softmax_ce(logits, n_rows, n_classes, labels, loss, grad, n_threads)


cdef int capi_softmax_cross_entropy_d(const double *logits, Py_ssize_t n_rows,
                                      Py_ssize_t n_classes, const int64_t *labels,
                                      double *loss, double *grad, int n_threads) noexcept nogil:
    return _capi_softmax_ce(logits, n_rows, n_classes, labels, loss, grad, n_threads)


cdef int capi_binary_cross_entropy_with_logits_f(const float *logits, const float *targets,
                                                 Py_ssize_t n, float *loss, float *grad,
                                                 int n_threads) noexcept nogil:
    return _capi_bce_logits(logits, targets, n, loss, grad, n_threads)


cdef int capi_binary_cross_entropy_with_logits_d(const double *logits, const double *targets,
                                                 Py_ssize_t n, double *loss, double *grad,
                                                 int n_threads) noexcept nogil:
    return _capi_bce_logits(logits, targets, n, loss, grad, n_threads)


cdef int capi_logsumexp_f(const float *x, Py_ssize_t n_rows, Py_ssize_t n_classes, float *out,
                          int n_threads) noexcept nogil:
    return _capi_logsumexp(x, n_rows, n_classes, out, n_threads)


cdef int capi_logsumexp_d(const double *x, Py_ssize_t n_rows, Py_ssize_t n_classes,
                          double *out, int n_threads) noexcept nogil:
    return _capi_logsumexp(x, n_rows, n_classes, out, n_threads)
