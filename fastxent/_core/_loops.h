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
 *
 * Templates, as CPython's Objects/stringlib: this header holds the type-independent parts,
 * then includes _loops_impl.h once per type with FX_T (float, double) and FX_NAME(base)
 * (base##_f, base##_d) defined; the impl file writes each function once, on real lines, and
 * picks the type's functions through the _Generic macros FX_EXP, FX_EXP_SUB, FX_LOG,
 * FX_LOG1P, FX_FABS and FX_LOG1P_UNIT. _eval_loops.h does the same with _eval_loops_impl.h.
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
    lo = x < -104.0f ? 0.0f : lo;  /* the result underflows anyway */
    x = x < -104.0f ? -104.0f : x; /* keeps NaN */
    const float kk = FX_FMAF(x, 1.44269504088896341f, 12582912.0f); /* 1.5 2^23 + rint */
    const float k = kk - 12582912.0f;
    float r = FX_FMAF(k, -0.693359375f, x);
    r = FX_FMAF(k, 2.12194440e-4f, r);
    r = r + lo;
    const float r2 = r * r; /* P(r) by Estrin's scheme: short chains */
    const float p45 = FX_FMAF(1.9875691500e-4f, r, 1.3981999507e-3f);
    const float p23 = FX_FMAF(8.3334519073e-3f, r, 4.1665795894e-2f);
    const float p01 = FX_FMAF(1.6666665459e-1f, r, 5.0000001201e-1f);
    const float p = FX_FMAF(FX_FMAF(p45, r2, p23), r2, p01);
    const float e = FX_FMAF(FX_FMAF(p, r2, r), 0x1p-64f, 0x1p-64f); /* (1 + r + r^2 P) 2^-64 */
    unsigned bits;
    __builtin_memcpy(&bits, &kk, sizeof bits); /* low bits: 2^22 + k, so bits << 23 = k << 23 */
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
    const double f = (e - k) * (1.0 - 0.5 * k); /* e, or (e - 1) / 2 */
    const double s = f / (2.0 + f), z = s * s, z2 = z * z;
    const double odd = FX_FMA(FX_FMA(1.479819860511658591e-01, z2, 1.818357216161805012e-01), z2,
                              2.857142874366239149e-01);
    const double even = FX_FMA(1.531383769920937332e-01, z2, 2.222219843214978396e-01);
    const double r = z * FX_FMA(odd, z2, 6.666666666666735130e-01)
                     + z2 * FX_FMA(even, z2, 3.999999999940941908e-01);
    const double hfsq = 0.5 * f * f;
    return k * 6.93147180369123816490e-01
           + (f - (hfsq - (s * (hfsq + r) + k * 1.90821492927058770002e-10)));
}

/* log1p of an argument in [0, 1]: the inline polynomials above. (clang-format 14 does not
 * know _Generic: it would write `float : f`.) */
/* clang-format off */
#define FX_LOG1P_UNIT(x) _Generic((x), float: fx_log1pf_unit, double: fx_log1p_unit)(x)
/* clang-format on */

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
    lo = x < -746.0 ? 0.0 : lo;  /* the result underflows anyway */
    x = x < -746.0 ? -746.0 : x; /* keeps NaN */
    const double kk = FX_FMA(x, 1.4426950408889634, 6755399441055744.0); /* 1.5 2^52 + rint */
    const double k = kk - 6755399441055744.0;
    const double r_hi = FX_FMA(k, -6.93147180369123816490e-01, x);      /* exact */
    const double r = r_hi + FX_FMA(k, -1.90821492927058770002e-10, lo); /* lo joins k ln2_lo */
    const double r2 = r * r, r4 = r2 * r2;
    const double c01 = FX_FMA(1.0 / 6, r, 0.5), c23 = FX_FMA(1.0 / 120, r, 1.0 / 24);
    const double c45 = FX_FMA(1.0 / 5040, r, 1.0 / 720);
    const double c67 = FX_FMA(1.0 / 362880, r, 1.0 / 40320);
    const double c89 = FX_FMA(1.0 / 39916800, r, 1.0 / 3628800);
    const double c1011 = FX_FMA(1.0 / 6227020800.0, r, 1.0 / 479001600);
    const double p = FX_FMA(FX_FMA(FX_FMA(c1011, r2, c89), r4, FX_FMA(c67, r2, c45)), r4,
                            FX_FMA(c23, r2, c01)); /* (e^r - 1 - r) / r^2 */
    const double e = FX_FMA(FX_FMA(p, r2, r), 0x1p-64, 0x1p-64);
    unsigned long long bits;
    __builtin_memcpy(&bits, &kk, sizeof bits); /* low bits: 2^51 + k, so bits << 52 = k << 52 */
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

/* Elements per chunk of the long-row loops (fx_expsum, fx_eval_logits): a constant trip count
 * (no loop epilogue), over which float terms are added in float. */
#define FX_CHUNK 256

#define FX_CACHE_LINE 64 /* bytes */

/* Prefetches elements [start, start + len) of x (NULL: nothing), one cache line at a time. */
static inline void fx_prefetch(const void *x, Py_ssize_t start, Py_ssize_t len, size_t size) {
    if (!x) return;
    const char *p = (const char *)x + start * (Py_ssize_t)size;
    for (Py_ssize_t b = 0; b < len * (Py_ssize_t)size; b += FX_CACHE_LINE)
        __builtin_prefetch(p + b, 0, 3);
}

/* Loops vectorised across rows run over a whole number of vectors (rows past R are zeros), so
 * no row goes through a scalar epilogue: a row's results never depend on where it sits
 * (libmvec's vector and glibc's scalar exp/log1p can differ in the last bit). FX_ROW_PAD
 * rows fill the widest vector (16 floats). */
#define FX_ROW_PAD 16
#define FX_PADDED_ROWS(R) (((R) + FX_ROW_PAD - 1) / FX_ROW_PAD * FX_ROW_PAD)

/* Rows fx_short_max transposes together (contiguous stores in E). An enum, not a macro:
 * `#pragma GCC unroll` takes a constant expression and does not expand macros. */
enum { FX_TRANSPOSE_GROUP = 8 };

/* Index types whose width matches the float / double lanes: a comparison with the loop
 * index then masks a vector without widening or narrowing. */
typedef int fx_lane_f;
typedef long long fx_lane_d;

#define FX_MAX_BLOCK 32 /* fx_argmax keeps one bit per lane in an unsigned */
_Static_assert(FX_MAX_BLOCK <= 32, "fx_argmax: one bit per lane");
#define FX_ARGMAX_BLOCK 1024
/* Rows of at most FX_SHORT_ROW classes (contiguous logits with labels) are processed
 * FX_SHORT_BATCH rows at a time, vectorised across rows (the Cython kernels use these). */
#define FX_SHORT_ROW 64
#define FX_SHORT_BATCH 64
#define FX_SHORT_FLUSH 4 /* classes whose terms a short row adds in FX_T */

/* Sums of fx_expsum_lin's loop. */
struct fx_lin_sums {
    double acc, lin, asum;
};

/* Type-generic names for the templates: the float or the double function by the argument's
 * type. Binary CE's exp is the inline polynomial in float, libmvec's exp in double (see
 * fx_exp2). */
/* clang-format off */
#define FX_EXP(x) _Generic((x), float: fx_expf, double: exp)(x)
#define FX_EXP_SUB(z, m) _Generic((z), float: fx_expf_sub, double: fx_exp_sub)(z, m)
#define FX_LOG(x) _Generic((x), float: logf, double: log)(x)
#define FX_LOG1P(x) _Generic((x), float: log1pf, double: log1p)(x)
#define FX_FABS(x) _Generic((x), float: fabsf, double: fabs)(x)
/* clang-format on */

/* The typed loops: _loops_impl.h once per type. */
#define FX_TEMPLATE "_loops_impl.h"
#include "_each_type.h"

#endif
