/* The vectorised loops of fastxent.evaluate, for float (suffix f) and double (suffix d).
 *
 * One pass over a row (or a segment of it) gathers the sums every metric needs: the
 * exponentials that give the log-sum-exp also give the entropy, the Brier score and the
 * confidence, and a comparison with the true class's value gives its rank. The row logic is in
 * _evaluate.pxi; see _loops.h for why these loops are C.
 */
#ifndef FASTXENT_EVAL_LOOPS_H
#define FASTXENT_EVAL_LOOPS_H

#include <stdint.h>

#include "_loops.h"

#define FX_EVAL_CHUNK 256

/* Slots of the per-row sums the loops add to. */
enum {
    FX_REST,    /* logits: sum e_i, e_i = exp(z_i - m) */
    FX_ENT,     /* logits: sum e_i (m - z_i); probabilities: sum p_i log(clip(p_i)) */
    FX_SQ,      /* sum e_i^2 or sum p_i^2 */
    FX_LIN,     /* soft targets: logits sum a_i (m - z_i), probabilities -sum a_i log(clip(p_i)) */
    FX_ASUM,    /* soft targets: sum a_i, a_i = w_i t_i */
    FX_DOT,     /* soft targets: sum e_i t_i or sum p_i t_i */
    FX_TT,      /* soft targets: sum t_i^2 */
    FX_ROW_SUMS
};

#define FX_DEFINE_EVAL_LOOPS(T, S, EXPSUB, LOG)                                             \
                                                                                           \
/* A segment of a logit row with max m, without the arg-max itself. Adds FX_REST, FX_ENT    \
 * and FX_SQ (an e_i of 0 adds 0 to FX_ENT, even for z_i = -inf). With labels (t == NULL)  \
 * returns the segment's part of the true class's rank, #{i : z_i > zy} +                  \
 * #{i < tie_end : z_i == zy}. With soft targets t and class weights w it also adds         \
 * FX_LIN, FX_ASUM, FX_DOT and FX_TT (a zero a_i adds 0 even for z_i = -inf), returning 0. */ \
static inline Py_ssize_t fx_eval_logits_##S(const T *z, const T *t, const T *w,            \
                                            Py_ssize_t n, T m, T zy, Py_ssize_t tie_end,   \
                                            double *sums) {                                \
    double rest = 0.0, ent = 0.0, sq = 0.0, lin = 0.0, asum = 0.0, dot = 0.0, tt = 0.0;    \
    const double md = m;                                                                   \
    Py_ssize_t rank = 0;                                                                   \
    if (!t) {                                                                              \
        /* Chunks of FX_EVAL_CHUNK elements: the entropy and Brier sums (not rest, which  \
         * the loss needs exactly) and the counts stay in the lanes' own type inside one. */ \
        Py_ssize_t equal = 0;                                                              \
        for (Py_ssize_t start = 0; start < n; start += FX_EVAL_CHUNK) {                    \
            const Py_ssize_t len = n - start < FX_EVAL_CHUNK ? n - start : FX_EVAL_CHUNK;  \
            const T *zc = z + start;                                                       \
            double rest_c = 0.0;                                                           \
            T ent_c = 0, sq_c = 0;                                                         \
            int above_c = 0, equal_c = 0;                                                  \
            _Pragma("omp simd reduction(+:rest_c, ent_c, sq_c, above_c, equal_c)")         \
            for (Py_ssize_t i = 0; i < len; ++i) {                                         \
                const T zi = zc[i];                                                        \
                const T e = EXPSUB(zi, m);                                                 \
                rest_c += e;                                                               \
                ent_c += e > 0 ? e * (m - zi) : (T)0;                                      \
                sq_c += e * e;                                                             \
                above_c += zi > zy;                                                        \
                equal_c += zi == zy;                                                       \
            }                                                                              \
            rest += rest_c; ent += ent_c; sq += sq_c; rank += above_c; equal += equal_c;   \
        }                                                                                  \
        /* ties with the true class (rare): count those before it in a second look */      \
        if (equal > (tie_end >= 0 && tie_end < n))                                         \
            for (Py_ssize_t i = 0; i < (tie_end < n ? tie_end : n); ++i) rank += z[i] == zy; \
    } else {                                                                               \
        _Pragma("omp simd reduction(+:rest, ent, sq, lin, asum, dot, tt)")                 \
        for (Py_ssize_t i = 0; i < n; ++i) {                                               \
            const T zi = z[i];                                                             \
            const T e = EXPSUB(zi, m);                                                     \
            const double ti = t[i], a = (double)w[i] * ti;                                 \
            rest += e;                                                                     \
            ent += e > 0 ? (double)e * (md - (double)zi) : 0.0;                            \
            sq += (double)e * (double)e;                                                   \
            lin += a != 0.0 ? a * (md - (double)zi) : 0.0;                                 \
            asum += a;                                                                     \
            dot += (double)e * ti;                                                         \
            tt += ti * ti;                                                                 \
        }                                                                                  \
    }                                                                                      \
    sums[FX_REST] += rest; sums[FX_ENT] += ent; sums[FX_SQ] += sq;                         \
    sums[FX_LIN] += lin; sums[FX_ASUM] += asum; sums[FX_DOT] += dot; sums[FX_TT] += tt;    \
    return rank;                                                                           \
}                                                                                          \
                                                                                           \
/* Short logit rows with labels, vectorised across rows: after fx_short_max (X, m, kmax;   \
 * labels y and true-class logits zy padded to Rp rows too) it sums over c != kmax rest,    \
 * ent and sq as fx_eval_logits (ent and sq in T: at most 64 terms), with l1p[r] =          \
 * log1p(rest[r]), ey[r] = exp(zy[r] - m[r]) and                                            \
 * rank[r] = #{c : x_c > zy} + #{c < y : x_c == zy}. */                                    \
static inline void fx_eval_short_##S(const T *x, Py_ssize_t R, Py_ssize_t C,               \
                                     const int *y, const T *zy, T *X, T *m, int *kmax,     \
                                     double *rest, double *l1p, double *ey, T *ent, T *sq, \
                                     int *rank) {                                          \
    const Py_ssize_t Rp = fx_short_max_##S(x, R, C, X, m, kmax);                           \
    FX_SIMD                                                                                \
    for (Py_ssize_t r = 0; r < Rp; ++r) { rest[r] = 0.0; ent[r] = 0; sq[r] = 0; rank[r] = 0; } \
    for (Py_ssize_t c = 0; c < C; ++c) {                                                   \
        const T *Xc = X + c * Rp;                                                           \
        FX_SIMD                                                                            \
        for (Py_ssize_t r = 0; r < Rp; ++r) {                                               \
            const T v = Xc[r];                                                             \
            const T e = EXPSUB(v, m[r]);                                                   \
            const int other = kmax[r] != (int)c;                                           \
            const T gap = e > 0 ? m[r] - v : (T)0;  /* 0 (m - v) is 0 even for v = -inf */ \
            rest[r] += other ? (double)e : 0.0;                                            \
            ent[r] += other ? e * gap : (T)0;                                              \
            sq[r] += other ? e * e : (T)0;                                                 \
            rank[r] += (v > zy[r]) | ((v == zy[r]) & ((int)c < y[r]));                     \
        }                                                                                  \
    }                                                                                      \
    FX_SIMD                                                                                \
    for (Py_ssize_t r = 0; r < Rp; ++r) {                                                   \
        l1p[r] = log1p(rest[r]);                                                           \
        ey[r] = exp((double)zy[r] - (double)m[r]);                                         \
    }                                                                                      \
}                                                                                          \
                                                                                           \
/* A row of probabilities, clipped to [lo, hi] where a log is taken. Adds FX_ENT (p_i = 0   \
 * adds 0) and FX_SQ; with labels returns the true class's rank as fx_eval_logits (py the    \
 * true class's probability); with soft targets adds FX_LIN, FX_DOT and FX_TT. */           \
static inline Py_ssize_t fx_eval_probs_##S(const T *p, const T *t, const T *w, Py_ssize_t n, \
                                           T lo, T hi, T py, Py_ssize_t tie_end,            \
                                           double *sums) {                                 \
    double ent = 0.0, sq = 0.0, lin = 0.0, dot = 0.0, tt = 0.0;                            \
    Py_ssize_t above = 0;                                                                  \
    if (!t) {                                                                              \
        _Pragma("omp simd reduction(+:ent, sq, above)")                                    \
        for (Py_ssize_t i = 0; i < n; ++i) {                                               \
            const T pi = p[i];                                                             \
            const T cp = pi < lo ? lo : (pi > hi ? hi : pi);                               \
            const T log_cp = LOG(cp);                                                      \
            ent += pi != 0 ? (double)pi * (double)log_cp : 0.0;                            \
            sq += (double)pi * (double)pi;                                                 \
            above += (pi > py) | ((pi == py) & (i < tie_end));                             \
        }                                                                                  \
    } else {                                                                               \
        _Pragma("omp simd reduction(+:ent, sq, lin, dot, tt)")                             \
        for (Py_ssize_t i = 0; i < n; ++i) {                                               \
            const T pi = p[i];                                                             \
            const T cp = pi < lo ? lo : (pi > hi ? hi : pi);                               \
            const T log_cp = LOG(cp);                                                      \
            const double ti = t[i], a = (double)w[i] * ti;                                 \
            ent += pi != 0 ? (double)pi * (double)log_cp : 0.0;                            \
            sq += (double)pi * (double)pi;                                                 \
            lin += a != 0.0 ? -a * (double)log_cp : 0.0;                                   \
            dot += (double)pi * ti;                                                        \
            tt += ti * ti;                                                                 \
        }                                                                                  \
    }                                                                                      \
    sums[FX_ENT] += ent; sums[FX_SQ] += sq;                                                \
    sums[FX_LIN] += lin; sums[FX_DOT] += dot; sums[FX_TT] += tt;                           \
    return above;                                                                          \
}

FX_DEFINE_EVAL_LOOPS(float, f, fx_expf_sub, logf)
FX_DEFINE_EVAL_LOOPS(double, d, fx_exp_sub, log)

#endif
