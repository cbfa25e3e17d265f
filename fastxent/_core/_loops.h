/* fastxent's vectorised inner loops, for float (suffix f) and double (suffix d).
 *
 * The Cython kernels (_kernels.pxi) own the row logic and the OpenMP prange loops; the loops
 * here are the ones that must vectorise. They are C because GCC vectorises a floating-point
 * sum only under `#pragma omp simd reduction` (or -ffast-math, which we refuse), and Cython
 * cannot emit that pragma. `omp simd` also states that an output may equal an input at the
 * same index (in-place gradients), so no runtime alias check falls back to scalar code.
 *
 * Sums are accumulated in double (float rows' exp terms: in float within chunks, see
 * fx_expsum, or over FX_SHORT_FLUSH classes in short rows). Every function is `static
 * inline`: each instruction-set build of the kernels compiles its own copy. Optional arrays
 * are NULL when absent; the branches on them sit outside the loops.
 */
#ifndef FASTXENT_LOOPS_H
#define FASTXENT_LOOPS_H

#include <stdint.h>
#include "_simd_math.h"

/* Fused multiply-adds where the instruction set has them. The build turns off automatic
 * contraction (-ffp-contract=off), so every loop variant rounds each expression the same way;
 * these are the only fused operations. */
#ifdef __FMA__
#define FX_FMAF(a, b, c) __builtin_fmaf((a), (b), (c))
#define FX_FMA(a, b, c) __builtin_fma((a), (b), (c))
#else
#define FX_FMAF(a, b, c) ((a) * (b) + (c))
#define FX_FMA(a, b, c) ((a) * (b) + (c))
#endif

/* exp(x + lo) for x <= 0 (or NaN) and |lo| <= ulp(x), in float, inlined into vector loops:
 * no call, no register spills. Every caller's argument is z - max(z) or -|z|. Cody-Waite
 * range reduction and Cephes' minimax polynomial: measured <= 1.03 ulp over every float <= 0
 * (lo = 0). Special values are exact: NaN -> NaN, -inf -> 0 (x < -104 zeroes lo, so an
 * infinite or NaN lo never reaches r); results below FLT_MIN stay subnormal. 2^k is applied
 * as 2^-64 * 2^(k+64): the first factor is folded into the polynomial's last step, the
 * second is built from the rint constant's low bits (k + 64 + 127 >= 41 keeps it normal),
 * so the product is rounded once, and only when it is subnormal. */
static inline __attribute__((always_inline)) float fx_expf2(float x, float lo) {
    lo = x < -104.0f ? 0.0f : lo;                /* the result underflows anyway */
    x = x < -104.0f ? -104.0f : x;               /* keeps NaN */
    const float kk = FX_FMAF(x, 1.44269504088896341f, 12582912.0f);  /* 1.5 2^23 + rint */
    const float k = kk - 12582912.0f;
    float r = FX_FMAF(k, -0.693359375f, x);
    r = FX_FMAF(k, 2.12194440e-4f, r);
    r = r + lo;
    const float r2 = r * r;                      /* P(r) by Estrin's scheme: short chains */
    const float p45 = FX_FMAF(1.9875691500e-4f, r, 1.3981999507e-3f);
    const float p23 = FX_FMAF(8.3334519073e-3f, r, 4.1665795894e-2f);
    const float p01 = FX_FMAF(1.6666665459e-1f, r, 5.0000001201e-1f);
    const float p = FX_FMAF(FX_FMAF(p45, r2, p23), r2, p01);
    const float e = FX_FMAF(FX_FMAF(p, r2, r), 0x1p-64f, 0x1p-64f);  /* (1 + r + r^2 P) 2^-64 */
    unsigned bits;
    __builtin_memcpy(&bits, &kk, sizeof bits);   /* low bits: 2^22 + k, so bits << 23 = k << 23 */
    bits = (bits << 23) + ((127u + 64u) << 23);
    float scale;
    __builtin_memcpy(&scale, &bits, sizeof scale);
    return e * scale;
}

static inline __attribute__((always_inline)) float fx_expf(float x) { return fx_expf2(x, 0.0f); }

/* exp(z - m) for z <= m without rounding z - m first: TwoSum carries its rounding error into
 * the reduced argument, so a confident row's tiny terms keep full float precision. An
 * infinite or NaN difference makes err NaN, which fx_expf2 drops (d = -inf) or propagates
 * into a NaN result anyway. */
static inline __attribute__((always_inline)) float fx_expf_sub(float z, float m) {
    const float d = z - m;
    const float bb = d - z;
    const float err = (z - (d - bb)) + (-m - bb);
    return fx_expf2(d, err);
}

/* log1p(e) for e in [0, 1] (NaN stays NaN), inlined into vector loops: e + e^2 R(e) with a
 * degree-8 polynomial R fitted for relative error (0.09 ulp before rounding); measured
 * <= 1.49 ulp over every float in [0, 1] (1.79 ulp without FMA). Binary CE with logits
 * takes log1p(exp(-|x|)); libmvec's log1pf cost more than the rest of that loop. */
static inline __attribute__((always_inline)) float fx_log1pf_unit(float e) {
    float r = -0.0033188301604241133f;
    r = FX_FMAF(r, e, 0.020206047222018242f);
    r = FX_FMAF(r, e, -0.057666901499032974f);
    r = FX_FMAF(r, e, 0.10680773854255676f);
    r = FX_FMAF(r, e, -0.15355506539344788f);
    r = FX_FMAF(r, e, 0.19695432484149933f);
    r = FX_FMAF(r, e, -0.24958592653274536f);
    r = FX_FMAF(r, e, 0.33330512046813965f);
    r = FX_FMAF(r, e, -0.4999993145465851f);
    return FX_FMAF(e * e, r, e);
}

/* log1p(e) for e in [0, 1] (NaN stays NaN) in double, inlined into vector loops: 1 + e =
 * 2^k (1 + f) with k = [e > sqrt 2 - 1], then log1p(f) = f - (f^2/2 - s (f^2/2 + R(s^2)))
 * with s = f / (2 + f), |s| <= 0.1716 and fdlibm's degree-7 minimax R. Measured <= 1.41
 * ulp on 3.4e7 points over [0, 1] and down to 2^-1000 (libmvec's log1p: <= 4 ulp, and it
 * took half the time of double binary CE with logits). Selects only on constants, so GCC
 * does not evaluate the polynomial twice. */
static inline __attribute__((always_inline)) double fx_log1p_unit(double e) {
    const double k = e > 0.41421356237309503 ? 1.0 : 0.0;
    const double f = (e - k) * (1.0 - 0.5 * k);          /* e, or (e - 1) / 2 */
    const double s = f / (2.0 + f), z = s * s, z2 = z * z;
    const double odd = FX_FMA(FX_FMA(1.479819860511658591e-01, z2, 1.818357216161805012e-01),
                              z2, 2.857142874366239149e-01);
    const double even = FX_FMA(1.531383769920937332e-01, z2, 2.222219843214978396e-01);
    const double r = z * FX_FMA(odd, z2, 6.666666666666735130e-01)
                     + z2 * FX_FMA(even, z2, 3.999999999940941908e-01);
    const double hfsq = 0.5 * f * f;
    return k * 6.93147180369123816490e-01
           + (f - (hfsq - (s * (hfsq + r) + k * 1.90821492927058770002e-10)));
}

/* log1p of an argument in [0, 1]: the inline polynomials above. */
#define FX_LOG1P_UNIT(x) _Generic((x), float: fx_log1pf_unit, double: fx_log1p_unit)(x)

/* exp(x + lo) for x <= 0 (or NaN) and |lo| <= ulp(x) in double, inlined into vector loops
 * (libmvec's exp is a call, which spills every live vector register). Cody-Waite reduction
 * with fdlibm's split ln 2, |r| <= 0.35, and the Taylor polynomial to r^13 (truncation
 * < 5e-18) by Estrin's scheme; 2^k applied as 2^-64 2^(k+64) as in fx_expf2. Measured
 * <= 1.02 ulp over 2.5e7 points in [-745.5, 0] with and without FMA (lo = 0; libmvec's exp:
 * 3.03 ulp there); tests/test_precision.py reads it out through softmax. NaN -> NaN, -inf
 * and anything below -746 -> 0 (lo is then dropped, so an infinite or NaN lo never reaches
 * r), subnormal results rounded once. Softmax rows use it; binary CE keeps libmvec's exp,
 * which measured faster there (the inline log1p already fills that loop's registers). */
static inline __attribute__((always_inline)) double fx_exp2(double x, double lo) {
    lo = x < -746.0 ? 0.0 : lo;                  /* the result underflows anyway */
    x = x < -746.0 ? -746.0 : x;                 /* keeps NaN */
    const double kk = FX_FMA(x, 1.4426950408889634, 6755399441055744.0);  /* 1.5 2^52 + rint */
    const double k = kk - 6755399441055744.0;
    const double r_hi = FX_FMA(k, -6.93147180369123816490e-01, x);  /* exact */
    const double r = r_hi + FX_FMA(k, -1.90821492927058770002e-10, lo);  /* lo joins k ln2_lo */
    const double r2 = r * r, r4 = r2 * r2;
    const double c01 = FX_FMA(1.0 / 6, r, 0.5), c23 = FX_FMA(1.0 / 120, r, 1.0 / 24);
    const double c45 = FX_FMA(1.0 / 5040, r, 1.0 / 720);
    const double c67 = FX_FMA(1.0 / 362880, r, 1.0 / 40320);
    const double c89 = FX_FMA(1.0 / 39916800, r, 1.0 / 3628800);
    const double c1011 = FX_FMA(1.0 / 6227020800.0, r, 1.0 / 479001600);
    const double p = FX_FMA(FX_FMA(FX_FMA(c1011, r2, c89), r4, FX_FMA(c67, r2, c45)), r4,
                            FX_FMA(c23, r2, c01));  /* (e^r - 1 - r) / r^2 */
    const double e = FX_FMA(FX_FMA(p, r2, r), 0x1p-64, 0x1p-64);
    unsigned long long bits;
    __builtin_memcpy(&bits, &kk, sizeof bits);   /* low bits: 2^51 + k, so bits << 52 = k << 52 */
    bits = (bits << 52) + ((1023ull + 64ull) << 52);
    double scale;
    __builtin_memcpy(&scale, &bits, sizeof scale);
    return e * scale;
}

/* exp(z - m) for z <= m without rounding z - m first, as fx_expf_sub: a confident row's
 * tiny terms (z - m down to -746, where ulp(z - m) is up to 2^-43) keep full double
 * precision instead of the relative error |z - m| 2^-53 of a rounded difference. */
static inline __attribute__((always_inline)) double fx_exp_sub(double z, double m) {
    const double d = z - m;
    const double bb = d - z;
    const double err = (z - (d - bb)) + (-m - bb);
    return fx_exp2(d, err);
}

/* Prefetches elements [start, start + len) of x (NULL: nothing), one cache line at a time. */
#define FX_CHUNK 256
static inline void fx_prefetch(const void *x, Py_ssize_t start, Py_ssize_t len, size_t size) {
    if (!x) return;
    const char *p = (const char *)x + start * (Py_ssize_t)size;
    for (Py_ssize_t b = 0; b < len * (Py_ssize_t)size; b += 64) __builtin_prefetch(p + b, 0, 3);
}

/* Loops vectorised across rows run over a whole number of vectors (rows past R are zeros), so
 * no row goes through a scalar epilogue: a row's results never depend on where it sits
 * (libmvec's vector and glibc's scalar exp/log1p can differ in the last bit). */
#define FX_PADDED_ROWS(R) (((R) + 15) / 16 * 16)

/* Index types whose width matches the float / double lanes: a comparison with the loop
 * index then masks a vector without widening or narrowing. */
typedef int fx_lane_f;
typedef long long fx_lane_d;

#define FX_SIMD _Pragma("omp simd")
#define FX_SIMD_SUM _Pragma("omp simd reduction(+:acc)")
#define FX_SIMD_SUM3 _Pragma("omp simd reduction(+:acc, lin, asum)")
#define FX_MAX_BLOCK 32                /* fx_argmax keeps one bit per lane in an unsigned */
_Static_assert(FX_MAX_BLOCK <= 32, "fx_argmax: one bit per lane");
#define FX_ARGMAX_BLOCK 1024
/* Rows of at most FX_SHORT_ROW classes (contiguous logits with labels) are processed
 * FX_SHORT_BATCH rows at a time, vectorised across rows (the Cython kernels use these). */
#define FX_SHORT_ROW 64
#define FX_SHORT_BATCH 64
#define FX_SHORT_FLUSH 4                 /* classes whose terms a short row adds in T */

/* One loop body instantiated for (weights?, targets?): W and TT are the per-class weight and
 * soft-target expressions. */
#define FX_BY_WT(w, t, MACRO)                                                       \
    if (w && t) { MACRO(w[i], t[i]) }                                               \
    else if (w) { MACRO(w[i], 0) }                                                  \
    else if (t) { MACRO(1, t[i]) }                                                  \
    else { MACRO(1, 0) }

#define FX_DEFINE_LOOPS(T, S, EXP, EXPSUB, LOG, LOG1P, FABS)                                      \
                                                                                           \
/* Running maxima of x[i] over i < whole = n - n % FX_MAX_BLOCK, one per i mod FX_MAX_BLOCK\
 * (several vectors, so the comparisons are independent), NaN ignored and -inf where there \
 * is none; returns whole. */                                                              \
static inline __attribute__((always_inline)) Py_ssize_t fx_lane_max_##S(const T *x,       \
                                                                     Py_ssize_t n, T *acc) { \
    const Py_ssize_t whole = n - n % FX_MAX_BLOCK;                                         \
    for (int j = 0; j < FX_MAX_BLOCK; ++j) acc[j] = -INFINITY;                             \
    for (Py_ssize_t i = 0; i < whole; i += FX_MAX_BLOCK)                                   \
        for (int j = 0; j < FX_MAX_BLOCK; ++j) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j]; \
    return whole;                                                                          \
}                                                                                          \
                                                                                           \
/* Largest element *m (NaN ignored; -inf when all are NaN) and the first index holding it, \
 * or an index that does not hold *m when NaN is all there is (callers check x[k] == *m).  \
 * Blocks of FX_ARGMAX_BLOCK keep their FX_MAX_BLOCK lane maxima; the first block whose max\
 * is *m is searched, and in it only the lanes (i mod FX_MAX_BLOCK) whose max is *m. */    \
static inline Py_ssize_t fx_argmax_##S(const T *x, Py_ssize_t n, T *m_out) {               \
    T acc[FX_MAX_BLOCK], best[FX_MAX_BLOCK], m = -INFINITY;                                \
    Py_ssize_t first = 0;                                                                  \
    for (Py_ssize_t start = 0; start < n; start += FX_ARGMAX_BLOCK) {                      \
        const Py_ssize_t len = n - start < FX_ARGMAX_BLOCK ? n - start : FX_ARGMAX_BLOCK;  \
        const Py_ssize_t whole = fx_lane_max_##S(x + start, len, acc);                     \
        T block_max = -INFINITY;                                                           \
        for (Py_ssize_t i = whole; i < len; ++i)                                           \
            block_max = x[start + i] > block_max ? x[start + i] : block_max;               \
        for (int j = 0; j < FX_MAX_BLOCK; ++j) block_max = acc[j] > block_max ? acc[j] : block_max; \
        if (block_max > m || start == 0) {                                                 \
            m = block_max;                                                                 \
            first = start;                                                                 \
            for (int j = 0; j < FX_MAX_BLOCK; ++j) best[j] = acc[j];                       \
        }                                                                                  \
    }                                                                                      \
    *m_out = m;                                                                            \
    const T *xb = x + first;                                                               \
    const Py_ssize_t len = n - first < FX_ARGMAX_BLOCK ? n - first : FX_ARGMAX_BLOCK;      \
    const Py_ssize_t whole = len - len % FX_MAX_BLOCK;                                     \
    unsigned lanes = 0;                          /* bit j: lane j's max is m */            \
    for (int j = 0; j < FX_MAX_BLOCK; ++j) lanes |= (unsigned)(best[j] == m) << j;         \
    for (Py_ssize_t i = 0; i < whole && lanes != 0; i += FX_MAX_BLOCK)                     \
        for (unsigned left = lanes; left != 0; left &= left - 1) {                         \
            const int j = __builtin_ctz(left);                                             \
            if (xb[i + j] == m) return first + i + j;                                      \
        }                                                                                  \
    for (Py_ssize_t i = whole; i < len; ++i)                                               \
        if (xb[i] == m) return first + i;                                                  \
    return first;                                                                          \
}                                                                                          \
                                                                                           \
/* sum exp(z_i - m) over one chunk (n < 2^31) except at i == skip (-1: none), accumulated  \
 * in T; every term, skip's too, is stored in e when e != NULL (e may be z). */            \
static inline __attribute__((always_inline)) T fx_expsum_chunk_##S(const T *z, fx_lane_##S n, \
                                                                  T m, T *e,               \
                                                                  fx_lane_##S skip) {      \
    T part = 0;                                                                            \
    if (e && skip >= 0) { FX_EXPSUM_LOOP(T, S, EXPSUB, e[i] = v;, i != skip ? v : (T)0) }  \
    else if (e) { FX_EXPSUM_LOOP(T, S, EXPSUB, e[i] = v;, v) }                              \
    else if (skip >= 0) { FX_EXPSUM_LOOP(T, S, EXPSUB, , i != skip ? v : (T)0) }             \
    else { FX_EXPSUM_LOOP(T, S, EXPSUB, , v) }                                              \
    return part;                                                                           \
}                                                                                          \
                                                                                           \
/* sum_{i != skip} exp(z_i - m) (skip: the arg-max, whose term 1 the caller adds through   \
 * log1p), stored in e as fx_expsum_chunk. Chunks of FX_CHUNK terms (a constant trip count: \
 * no loop epilogue) are summed in T, their sums in double: for float, each vector lane adds \
 * at most FX_CHUNK / (lanes) terms in [0, 1] before the double sum, which keeps the float \
 * additions (one vector add, where a double accumulator needs converts) to a few ulp. Only \
 * the chunk holding skip pays for the mask. Before each chunk the same span of `next` (the \
 * next row, or NULL) is prefetched, so the next row's memory-bound max pass finds it in     \
 * cache. */                                                                               \
static inline double fx_expsum_##S(const T *z, Py_ssize_t n, T m, T *e, const T *next,     \
                                   Py_ssize_t skip) {                                      \
    double acc = 0.0;                                                                      \
    Py_ssize_t start = 0;                                                                  \
    for (; start + FX_CHUNK <= n; start += FX_CHUNK) {                                     \
        const Py_ssize_t at = skip - start;                                                \
        fx_prefetch(next, start, FX_CHUNK, sizeof(T));                                     \
        acc += fx_expsum_chunk_##S(z + start, FX_CHUNK, m, e ? e + start : NULL,           \
                                   at >= 0 && at < FX_CHUNK ? (fx_lane_##S)at : -1);       \
    }                                                                                      \
    fx_prefetch(next, start, n - start, sizeof(T));                                        \
    return acc + fx_expsum_chunk_##S(z + start, (fx_lane_##S)(n - start), m,               \
                                     e ? e + start : NULL,                                 \
                                     skip >= start ? (fx_lane_##S)(skip - start) : -1);    \
}                                                                                          \
                                                                                           \
/* As fx_expsum, and with target weights a_i = w_i (alpha t_i + beta) also accumulates     \
 * *lin += sum a_i (m - z_i) and *asum += sum a_i. A zero weight contributes 0 even where   \
 * z_i = -inf (the 0 log 0 = 0 convention). */                                             \
static inline double fx_expsum_lin_##S(const T *z, const T *t, const T *w, Py_ssize_t n,   \
                                       T m, double alpha, double beta, T *e,               \
                                       double *lin_out, double *asum_out) {                \
    double acc = 0.0, lin = 0.0, asum = 0.0;                                               \
    const double md = m;                                                                   \
    if (e) {                                                                               \
        FX_BY_WT(w, t, FX_EXPSUM_LIN_BODY_STORE_##S)                                       \
    } else {                                                                               \
        FX_BY_WT(w, t, FX_EXPSUM_LIN_BODY_##S)                                             \
    }                                                                                      \
    *lin_out += lin;                                                                       \
    *asum_out += asum;                                                                     \
    return acc;                                                                            \
}                                                                                          \
                                                                                           \
/* Transposes R rows of C classes (row-major x) into E (C x Rp, E[c Rp + r], Rp =         \
 * FX_PADDED_ROWS(R), rows past R zero) and finds each row's max m[r] and first arg-max     \
 * kmax[r], vectorised across rows. Returns Rp. */                                         \
static inline Py_ssize_t fx_short_max_##S(const T *x, Py_ssize_t R, Py_ssize_t C, T *E,     \
                                          T *m, int *kmax) {                               \
    const Py_ssize_t Rp = FX_PADDED_ROWS(R);                                               \
    Py_ssize_t r0 = 0;                                                                     \
    for (; r0 + 8 <= R; r0 += 8)                 /* eight rows: contiguous stores in E */  \
        for (Py_ssize_t c = 0; c < C; ++c) {                                               \
            T *Ec = E + c * Rp + r0;                                                       \
            _Pragma("GCC unroll 8")                                                        \
            for (int j = 0; j < 8; ++j) Ec[j] = x[(r0 + j) * C + c];                       \
        }                                                                                  \
    for (; r0 < Rp; ++r0)                                                                  \
        for (Py_ssize_t c = 0; c < C; ++c) E[c * Rp + r0] = r0 < R ? x[r0 * C + c] : (T)0; \
    FX_SIMD                                                                                \
    for (Py_ssize_t r = 0; r < Rp; ++r) { m[r] = E[r]; kmax[r] = 0; }                      \
    for (Py_ssize_t c = 1; c < C; ++c) {                                                   \
        const T *Ec = E + c * Rp;                                                          \
        FX_SIMD                                                                            \
        for (Py_ssize_t r = 0; r < Rp; ++r) m[r] = Ec[r] > m[r] ? Ec[r] : m[r];            \
    }                                                                                      \
    for (Py_ssize_t c = C - 1; c > 0; --c) {                                               \
        const T *Ec = E + c * Rp;                                                          \
        FX_SIMD                                                                            \
        for (Py_ssize_t r = 0; r < Rp; ++r) kmax[r] = Ec[r] == m[r] ? (int)c : kmax[r];    \
    }                                                                                      \
    return Rp;                                                                             \
}                                                                                          \
                                                                                           \
/* Short rows, vectorised across rows: after fx_short_max (E, m, kmax), per row r this     \
 * finds rest = sum_{c != kmax} exp(x_c - m) and l1p = log1p(rest), and E becomes          \
 * exp(x - m). A row adds its terms in its own lane, one class after another: in T over    \
 * FX_SHORT_FLUSH classes, then in double. (All C - 1 terms added in float cost float32    \
 * rows whose label leads by 15 up to 6.8 ulp; this 1.9 ulp, for 1-7 % more time.)         \
 * When beta != 0 it also accumulates, over c != kmax, lin += a_c (m - x_c) and            \
 * asum += a_c with a_c = beta w_c (w == NULL: 1). */                                      \
static inline void fx_short_rows_##S(const T *x, Py_ssize_t R, Py_ssize_t C, const T *w,   \
                                     double beta, T *E, T *m, int *kmax, double *rest,     \
                                     double *l1p, double *lin, double *asum) {             \
    T sum[FX_SHORT_BATCH];                       /* FX_SHORT_FLUSH classes' terms */       \
    const Py_ssize_t Rp = fx_short_max_##S(x, R, C, E, m, kmax);                           \
    FX_SIMD                                                                                \
    for (Py_ssize_t r = 0; r < Rp; ++r) {                                                  \
        sum[r] = 0;                                                                        \
        rest[r] = lin[r] = asum[r] = 0.0;                                                  \
    }                                                                                      \
    for (Py_ssize_t c = 0; c < C; ++c) {                                                   \
        T *Ec = E + c * Rp;                                                                 \
        const double a = beta * (w ? (double)w[c] : 1.0);                                  \
        if (beta != 0.0) {                                                                 \
            FX_SIMD                                                                        \
            for (Py_ssize_t r = 0; r < Rp; ++r) {                                           \
                const T v = EXPSUB(Ec[r], m[r]);                                             \
                const int other = kmax[r] != (int)c;                                       \
                sum[r] += other ? v : (T)0;                                                \
                lin[r] += other && a != 0.0 ? a * ((double)m[r] - (double)Ec[r]) : 0.0;    \
                asum[r] += other ? a : 0.0;                                                \
                Ec[r] = v;                                                                 \
            }                                                                              \
        } else {                                                                           \
            FX_SIMD                                                                        \
            for (Py_ssize_t r = 0; r < Rp; ++r) {                                           \
                const T v = EXPSUB(Ec[r], m[r]);                                             \
                sum[r] += kmax[r] != (int)c ? v : (T)0;                                    \
                Ec[r] = v;                                                                 \
            }                                                                              \
        }                                                                                  \
        if (c % FX_SHORT_FLUSH == FX_SHORT_FLUSH - 1 || c == C - 1) {                      \
            FX_SIMD                                                                        \
            for (Py_ssize_t r = 0; r < Rp; ++r) { rest[r] += sum[r]; sum[r] = 0; }         \
        }                                                                                  \
    }                                                                                      \
    FX_SIMD                                                                                \
    for (Py_ssize_t r = 0; r < Rp; ++r) l1p[r] = log1p(rest[r]);                           \
}                                                                                          \
                                                                                           \
/* Short rows with hard labels (R <= FX_SHORT_BATCH rows of C contiguous logits; E holds C x\
 * padded-rows scratch), vectorised across rows throughout. Per row, with weights          \
 * a_c = beta w_c plus keep w_y at the label y (w == NULL: 1), m = max, km = first arg-max,\
 * rest = sum_{c != km} exp(x_c - m), A = sum_c a_c and A_rest = A - a_km:                 \
 *   loss = s (sum_{c != km} a_c (m - x_c) + A log1p(rest)),                               \
 *   grad_c = k (A e_c / (1 + rest) - beta w_c); at km k (A_rest - a_km rest) / (1 + rest);\
 *   minus k keep w_y at y when y != km,                                                   \
 * with s the sample weight and k = s grad_scale. An ignored row (has_ignore, y == ignore) \
 * gives 0 and a zero gradient; NaN in a row makes both NaN. Writes row_loss and grad      \
 * (row-major) when not NULL; returns the sum of the row losses, added in row order. */    \
static inline double fx_short_label_rows_##S(const T *x, Py_ssize_t R, Py_ssize_t C,       \
                                            const int64_t *labels, const double *sw,       \
                                            const T *w, int has_ignore, int64_t ignore,    \
                                            double keep, double beta, double grad_scale,   \
                                            double *row_loss, T *grad, T *E) {             \
    T m[FX_SHORT_BATCH], p[FX_SHORT_BATCH], gk[FX_SHORT_BATCH], hk[FX_SHORT_BATCH];        \
    T kb[FX_SHORT_BATCH];                                                                  \
    int kmax[FX_SHORT_BATCH];                                                              \
    fx_lane_##S km[FX_SHORT_BATCH], lab[FX_SHORT_BATCH], skip[FX_SHORT_BATCH];             \
    double rest[FX_SHORT_BATCH], l1p[FX_SHORT_BATCH], lin[FX_SHORT_BATCH];                 \
    double asum[FX_SHORT_BATCH], loss[FX_SHORT_BATCH], s[FX_SHORT_BATCH];                  \
    double hard[FX_SHORT_BATCH], a_km[FX_SHORT_BATCH], dz[FX_SHORT_BATCH];                 \
    double total = 0.0;                                                                    \
    const Py_ssize_t Rp = FX_PADDED_ROWS(R);                                               \
    fx_short_rows_##S(x, R, C, w, beta, E, m, kmax, rest, l1p, lin, asum);                 \
    for (Py_ssize_t r = 0; r < R; ++r) {         /* the per-row inputs (gathers) */        \
        const int ignored = has_ignore && labels[r] == ignore;                             \
        const Py_ssize_t y = ignored ? 0 : labels[r];    /* an index either way */         \
        s[r] = ignored ? 0.0 : (sw ? sw[r] : 1.0);                                         \
        hard[r] = keep * (w ? (double)w[y] : 1.0);                                         \
        a_km[r] = beta * (w ? (double)w[kmax[r]] : 1.0);                                   \
        dz[r] = (double)m[r] - (double)x[r * C + y];                                       \
        km[r] = kmax[r];                                                                   \
        lab[r] = (fx_lane_##S)y;                                                           \
        skip[r] = ignored;                                                                 \
    }                                                                                      \
    FX_SIMD                                                                                \
    for (Py_ssize_t r = 0; r < R; ++r) {                                                   \
        const double k = s[r] * grad_scale;                                                \
        const int at_km = lab[r] == km[r];                                                 \
        const int add = !at_km && hard[r] != 0.0;                                          \
        const double a_kmax = a_km[r] + (at_km ? hard[r] : 0.0);                           \
        const double a_rest = asum[r] + (add ? hard[r] : 0.0);                             \
        const double row = lin[r] + (add ? hard[r] * dz[r] : 0.0)                          \
                           + (a_rest + a_kmax) * l1p[r];                                   \
        const double inv = 1.0 / (1.0 + rest[r]);                                          \
        loss[r] = skip[r] ? 0.0 : s[r] * row;                                              \
        p[r] = (T)(k * (a_rest + a_kmax) * inv);                                           \
        gk[r] = (T)(k * (a_rest - a_kmax * rest[r]) * inv);                                \
        hk[r] = at_km ? (T)0 : (T)(k * hard[r]);                                           \
        kb[r] = (T)(k * beta);                                                             \
    }                                                                                      \
    for (Py_ssize_t r = R; r < Rp; ++r) {        /* padding: a skipped row */              \
        p[r] = gk[r] = hk[r] = kb[r] = (T)0;                                               \
        km[r] = lab[r] = 0;                                                                \
        skip[r] = 1;                                                                       \
    }                                                                                      \
    for (Py_ssize_t r = 0; r < R; ++r) total += loss[r];                                   \
    if (row_loss)                                                                          \
        for (Py_ssize_t r = 0; r < R; ++r) row_loss[r] = loss[r];                          \
    if (!grad) return total;                                                               \
    for (Py_ssize_t r = 0; r < R; ++r) {         /* row by row, reading E across */        \
        T *g = grad + r * C;                                                               \
        for (Py_ssize_t c = 0; c < C; ++c)                                                 \
            g[c] = skip[r] ? (T)0 : p[r] * E[c * Rp + r] - kb[r] * (w ? w[c] : (T)1);       \
        if (skip[r]) continue;                                                             \
        g[km[r]] = gk[r];                                                                  \
        g[lab[r]] = g[lab[r]] - hk[r];                                                     \
    }                                                                                      \
    return total;                                                                          \
}                                                                                          \
                                                                                           \
/* Gradient pass over a row whose g holds the exp terms: g_i = p g_i - w_i (ka t_i + kb). */ \
static inline void fx_grad_##S(T *g, const T *t, const T *w, Py_ssize_t n, T p, T ka,       \
                               T kb) {                                                     \
    FX_BY_WT(w, t, FX_GRAD_BODY)                                                           \
}                                                                                          \
                                                                                           \
/* Probability rows: returns sum a_i * -log(clip(p_i, lo, hi)) with a_i = w_i (alpha t_i +  \
 * beta); writes g_i = -k a_i / clip(p_i) when g != NULL (g may be p). */                  \
static inline double fx_prob_row_##S(const T *p, const T *t, const T *w, Py_ssize_t n,      \
                                     double alpha, double beta, T lo, T hi, T *g, T k) {    \
    double acc = 0.0;                                                                      \
    const T ka = (T)(k * alpha), kb = (T)(k * beta);                                       \
    if (g) { FX_BY_WT(w, t, FX_PROB_BODY_GRAD_##S) }                                       \
    else { FX_BY_WT(w, t, FX_PROB_BODY_##S) }                                              \
    return acc;                                                                            \
}                                                                                          \
                                                                                           \
/* out_i = (z_i - m) - l: log-softmax of a row with max m and l = log1p(rest) (out may be z). */ \
static inline void fx_log_softmax_##S(const T *z, Py_ssize_t n, T m, T l, T *out) {        \
    FX_SIMD                                                                                \
    for (Py_ssize_t i = 0; i < n; ++i) out[i] = (z[i] - m) - l;                            \
}                                                                                          \
                                                                                           \
static inline void fx_fill_##S(T *x, Py_ssize_t n, T v) {                                  \
    FX_SIMD                                                                                \
    for (Py_ssize_t i = 0; i < n; ++i) x[i] = v;                                           \
}                                                                                          \
                                                                                           \
/* Number of x_i outside [lo, hi] (NaN counts as outside), not counting x_i == skip when   \
 * has_skip. */                                                                            \
static inline Py_ssize_t fx_count_outside_##S(const T *x, Py_ssize_t n, T lo, T hi,        \
                                              int has_skip, T skip) {                      \
    Py_ssize_t acc = 0;                                                                    \
    FX_SIMD_SUM                                                                            \
    for (Py_ssize_t i = 0; i < n; ++i)                                                     \
        acc += !((x[i] >= lo && x[i] <= hi) || (has_skip && x[i] == skip));                \
    return acc;                                                                            \
}                                                                                          \
                                                                                           \
/* Binary cross-entropy over a segment. Weights w and pos_weight pw are either one value    \
 * for the segment (w_vec/pw_vec = 0) or one per element; w == NULL means 1. The smoothed   \
 * target is y' = y sa + sb; elements whose raw y equals `ignore` (when has_ignore) give 0.  \
 * Returns the sum of losses; writes losses and gk * gradients when loss / g != NULL. */    \
static inline double fx_bce_##S(int from_logits, const T *x, const T *y, Py_ssize_t n,     \
                                const T *w, int w_vec, const T *pw, int pw_vec,            \
                                T sa, T sb, int has_ignore, T ignore, T lo, T hi,          \
                                T *loss, T *g, T gk) {                                     \
    double acc = 0.0;                                                                      \
    const T w0 = w ? w[0] : (T)1, pw0 = pw ? pw[0] : (T)1;                                 \
    if (!w && !pw && sa == 1 && sb == 0 && !has_ignore) {  /* no option: a lean loop */     \
        FX_BCE_BY_STORE((T)1, (T)1, S, FX_BCE_PLAIN) }                                     \
    else if (w_vec && pw_vec) { FX_BCE_BY_STORE(w[i], pw[i], S, FX_BCE_OPTIONS) }          \
    else if (w_vec) { FX_BCE_BY_STORE(w[i], pw0, S, FX_BCE_OPTIONS) }                      \
    else if (pw_vec) { FX_BCE_BY_STORE(w0, pw[i], S, FX_BCE_OPTIONS) }                     \
    else { FX_BCE_BY_STORE(w0, pw0, S, FX_BCE_OPTIONS) }                                   \
    return acc;                                                                            \
}

/* ---- loop bodies (i is the loop index; W and TT the weight and target expressions) ---- */

#define FX_EXPSUM_LOOP(T, S, EXPSUB, STORE, TERM)                                          \
    _Pragma("omp simd reduction(+:part)")                                                  \
    for (fx_lane_##S i = 0; i < n; ++i) { const T v = EXPSUB(z[i], m); STORE part += TERM; }

#define FX_EXPSUM_LIN_BODY_T(T, EXPSUB, STORE, W, TT)                                      \
    FX_SIMD_SUM3                                                                           \
    for (Py_ssize_t i = 0; i < n; ++i) {                                                   \
        const T zi = z[i];                       /* read before e (maybe z) is written */  \
        const T v = EXPSUB(zi, m);                                                         \
        const double a = (double)(W) * (alpha * (double)(TT) + beta);                      \
        acc += v;                                                                          \
        lin += a != 0.0 ? a * (md - (double)zi) : 0.0;                                     \
        asum += a;                                                                         \
        STORE                                                                              \
    }
#define FX_EXPSUM_LIN_BODY_STORE_f(W, TT) FX_EXPSUM_LIN_BODY_T(float, fx_expf_sub, e[i] = v;, W, TT)
#define FX_EXPSUM_LIN_BODY_f(W, TT) FX_EXPSUM_LIN_BODY_T(float, fx_expf_sub, , W, TT)
#define FX_EXPSUM_LIN_BODY_STORE_d(W, TT) FX_EXPSUM_LIN_BODY_T(double, fx_exp_sub, e[i] = v;, W, TT)
#define FX_EXPSUM_LIN_BODY_d(W, TT) FX_EXPSUM_LIN_BODY_T(double, fx_exp_sub, , W, TT)

#define FX_GRAD_BODY(W, TT)                                                                \
    FX_SIMD                                                                                \
    for (Py_ssize_t i = 0; i < n; ++i) g[i] = p * g[i] - (W) * (ka * (TT) + kb);

#define FX_PROB_BODY_T(T, LOG, GRAD, W, TT)                                                \
    FX_SIMD_SUM                                                                            \
    for (Py_ssize_t i = 0; i < n; ++i) {                                                   \
        const T pi = p[i];                                                                 \
        const T cp = pi < lo ? lo : (pi > hi ? hi : pi);                                   \
        const double a = (double)(W) * (alpha * (double)(TT) + beta);                      \
        const T log_cp = LOG(cp);                                                          \
        acc += a != 0.0 ? -a * (double)log_cp : 0.0;                                       \
        GRAD                                                                               \
    }
#define FX_PROB_GRAD_STMT(W, TT) g[i] = -((W) * (ka * (TT) + kb)) / cp;
#define FX_PROB_BODY_GRAD_f(W, TT) FX_PROB_BODY_T(float, logf, FX_PROB_GRAD_STMT(W, TT), W, TT)
#define FX_PROB_BODY_f(W, TT) FX_PROB_BODY_T(float, logf, , W, TT)
#define FX_PROB_BODY_GRAD_d(W, TT) FX_PROB_BODY_T(double, log, FX_PROB_GRAD_STMT(W, TT), W, TT)
#define FX_PROB_BODY_d(W, TT) FX_PROB_BODY_T(double, log, , W, TT)

/* Binary CE element. Logits use softplus/sigmoid of -|z|: one exp, one log1p and no
 * cancellation (loss = w [(1-y') softplus(z) + pw y' softplus(-z)], gradient
 * w [(1-y') sigmoid(z) - pw y' sigmoid(-z)]). Probabilities are clipped to [lo, hi]. A zero
 * coefficient contributes 0 even against an infinite term. */
#define FX_BCE_LOGIT(T, EXP, LOG, LOG1P, FABS)                                             \
    const T e = EXP(-FABS(xi));                                                            \
    const T lg = FX_LOG1P_UNIT(e);                                                         \
    const T sp_pos = (xi > 0 ? xi : (T)0) + lg, sp_neg = (xi < 0 ? -xi : (T)0) + lg;       \
    const T big = (T)1 / ((T)1 + e), small = e * big;                                      \
    const T sig = xi >= 0 ? big : small, sig_neg = xi >= 0 ? small : big;                  \
    T li = wi * ((r != 0 ? r * sp_pos : (T)0) + (q != 0 ? q * sp_neg : (T)0));            \
    T gi = gk * wi * (r * sig - q * sig_neg);
#define FX_BCE_PROB(T, EXP, LOG, LOG1P, FABS)                                              \
    const T cp = xi < lo ? lo : (xi > hi ? hi : xi);                                       \
    const T one_m = (T)1 - cp;                                                             \
    const T log_p = LOG(cp), log_1mp = LOG1P(-cp);                                         \
    T li = -wi * ((q != 0 ? q * log_p : (T)0) + (r != 0 ? r * log_1mp : (T)0));            \
    T gi = -wi * ((q != 0 ? (gk * q) / cp : (T)0) - (r != 0 ? (gk * r) / one_m : (T)0));

/* The smoothed target ys and whether element i counts: with the options, or without any. */
#define FX_BCE_OPTIONS(T, yi) const T ys = yi * sa + sb; const int keep = !has_ignore | (yi != ignore);
#define FX_BCE_PLAIN(T, yi) const T ys = yi; const int keep = 1;

#define FX_BCE_LOOP(KIND, T, EXP, LOG, LOG1P, FABS, W, PW, OPT, STORE)                     \
    FX_SIMD_SUM                                                                            \
    for (Py_ssize_t i = 0; i < n; ++i) {                                                   \
        const T xi = x[i], yi = y[i];                                                      \
        OPT(T, yi)                                                                         \
        const T q = (PW) * ys, r = (T)1 - ys, wi = (W);                                    \
        KIND(T, EXP, LOG, LOG1P, FABS)                                                     \
        li = keep ? li : (T)0;                                                             \
        gi = keep ? gi : (T)0;                                                             \
        acc += li;                                                                         \
        STORE                                                                              \
    }
#define FX_BCE_BY_STORE_K(KIND, T, EXP, LOG, LOG1P, FABS, W, PW, OPT)                      \
    if (loss && g) { FX_BCE_LOOP(KIND, T, EXP, LOG, LOG1P, FABS, W, PW, OPT, loss[i] = li; g[i] = gi;) } \
    else if (g) { FX_BCE_LOOP(KIND, T, EXP, LOG, LOG1P, FABS, W, PW, OPT, g[i] = gi; (void)li;) } \
    else if (loss) { FX_BCE_LOOP(KIND, T, EXP, LOG, LOG1P, FABS, W, PW, OPT, loss[i] = li; (void)gi;) } \
    else { FX_BCE_LOOP(KIND, T, EXP, LOG, LOG1P, FABS, W, PW, OPT, (void)gi;) }
#define FX_BCE_BY_STORE_T(T, EXP, LOG, LOG1P, FABS, W, PW, OPT)                            \
    if (from_logits) { FX_BCE_BY_STORE_K(FX_BCE_LOGIT, T, EXP, LOG, LOG1P, FABS, W, PW, OPT) } \
    else { FX_BCE_BY_STORE_K(FX_BCE_PROB, T, EXP, LOG, LOG1P, FABS, W, PW, OPT) }
#define FX_BCE_BY_STORE(W, PW, S, OPT) FX_BCE_BY_STORE_##S(W, PW, OPT)
#define FX_BCE_BY_STORE_f(W, PW, OPT) FX_BCE_BY_STORE_T(float, fx_expf, logf, log1pf, fabsf, W, PW, OPT)
#define FX_BCE_BY_STORE_d(W, PW, OPT) FX_BCE_BY_STORE_T(double, exp, log, log1p, fabs, W, PW, OPT)

FX_DEFINE_LOOPS(float, f, fx_expf, fx_expf_sub, logf, log1pf, fabsf)
FX_DEFINE_LOOPS(double, d, exp, fx_exp_sub, log, log1p, fabs)

#endif
