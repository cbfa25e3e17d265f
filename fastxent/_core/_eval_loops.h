/* The vectorised loops of fastxent.evaluate, for float (suffix f) and double (suffix d).
 *
 * One pass over a row (or a segment of it) gathers the sums every metric needs: the
 * exponentials that give the log-sum-exp also give the entropy, the Brier score and the
 * confidence, and a comparison with the true class's value gives its rank. The row logic is in
 * _eval_kernels.pxi; see _loops.h for why these loops are C.
 */
#ifndef FASTXENT_EVAL_LOOPS_H
#define FASTXENT_EVAL_LOOPS_H

#include <stdint.h>
#include <math.h>
#include <string.h>

#include "_loops.h"

/* Slots of the per-row sums the loops add to. */
enum {
    FX_REST, /* logits: sum e_i, e_i = exp(z_i - m) */
    FX_ENT,  /* logits: sum e_i (m - z_i); probabilities: sum p_i log(clip(p_i)) */
    FX_SQ,   /* sum e_i^2 or sum p_i^2 */
    FX_LIN,  /* soft targets: logits sum a_i (m - z_i), probabilities -sum a_i log(clip(p_i)) */
    FX_ASUM, /* soft targets: sum a_i, a_i = w_i t_i */
    FX_DOT,  /* soft targets: sum e_i t_i or sum p_i t_i */
    FX_TT,   /* soft targets: sum t_i^2 */
    FX_ROW_SUMS
};

/* Slots of a slice's sums (see _eval_kernels.pxi, which names them EVAL_STATS): the whole, and
 * each row of the per-class and per-group tables, have them. a = s loss and b = s w_y are a
 * row's terms of the mean loss's numerator and denominator (s: its sample weight). */
enum {
    FX_STAT_LOSS,       /* a: s * class-weighted loss */
    FX_STAT_COUNT,      /* 1 */
    FX_STAT_ENTROPY,    /* s * entropy */
    FX_STAT_BRIER,      /* s * Brier score */
    FX_STAT_LOSS_SQ,    /* a^2 */
    FX_STAT_CONFIDENCE, /* s * confidence */
    /* the slots from here to FX_STAT_TOPK repeat others without weights (s = w_y = 1), or
     * are 0 with labels, or are added on their own (FX_STAT_PREDICTED) */
    FX_STAT_LOSS_WEIGHT,    /* b: s * w_y (soft targets: s) */
    FX_STAT_WEIGHT,         /* s */
    FX_STAT_WEIGHT_SQ,      /* s^2 */
    FX_STAT_LOSS_CROSS,     /* a b */
    FX_STAT_LOSS_WEIGHT_SQ, /* b^2 */
    FX_STAT_TARGET_ENTROPY, /* soft targets: s * entropy of the target */
    FX_STAT_PREDICTED,      /* class tables: s of the rows predicted as the class */
    FX_STAT_TOPK            /* then one per k: s * [rank < k] */
};

/* The loss histogram of fastxent.evaluate's loss concentration: bin 0 holds the values below
 * 2^FX_HIST_LOW (0 and negative ones too), bin 1 + FX_HIST_STEPS (k - FX_HIST_LOW) + j the
 * values in [2^k (1 + j / FX_HIST_STEPS), 2^k (1 + (j + 1) / FX_HIST_STEPS)), the last bin the
 * values from 2^(FX_HIST_LOW + FX_HIST_OCTAVES) up (and +inf). So the values of one bin differ
 * by less than a factor 1 + 1 / FX_HIST_STEPS. */
enum { FX_HIST_LOW = -64, FX_HIST_OCTAVES = 128, FX_HIST_STEPS = 16 };
enum { FX_HIST_BINS = FX_HIST_OCTAVES * FX_HIST_STEPS + 2 };

/* The histogram bin of a value that is not NaN: from its exponent and first mantissa bits. */
static inline Py_ssize_t fx_hist_bin(double v) {
    uint64_t bits;
    if (!(v >= 0x1p-64)) /* 2^FX_HIST_LOW; negative values and 0 too */
        return 0;
    memcpy(&bits, &v, sizeof bits);
    const Py_ssize_t octave = (Py_ssize_t)((bits >> 52) & 0x7ff) - 1023 - FX_HIST_LOW;
    if (octave >= FX_HIST_OCTAVES) return FX_HIST_BINS - 1;
    return 1 + octave * FX_HIST_STEPS + (Py_ssize_t)((bits >> 48) & (FX_HIST_STEPS - 1));
}

/* The slice terms of R short rows (at most FX_SHORT_BATCH), one column per slot: slot j of row
 * r goes to V[j * FX_SHORT_BATCH + r] (FX_STAT_LOSS to FX_STAT_PREDICTED, then one per k of
 * topk). Rows with counted[r] = 0 (ignored labels) get 0 in every slot; a row with nan[r] = 1
 * gets NaN in its top-k slots too. s and w_y are the rows' sample and class weights. */
static inline void fx_short_slot_terms(Py_ssize_t R, const int *counted, const double *s,
                                       const double *w_y, const double *loss, const double *entropy,
                                       const double *brier, const double *confidence,
                                       const int *nan, const int *rank, const int64_t *topk,
                                       Py_ssize_t n_topk, double *V) {
    enum { B = FX_SHORT_BATCH };
#pragma omp simd
    for (Py_ssize_t r = 0; r < R; ++r) {
        const double w = counted[r] ? s[r] : 0.0;
        const double a = counted[r] ? w * loss[r] : 0.0;
        const double b = w * w_y[r];
        V[FX_STAT_LOSS * B + r] = a;
        V[FX_STAT_LOSS_WEIGHT * B + r] = b;
        V[FX_STAT_WEIGHT * B + r] = w;
        V[FX_STAT_COUNT * B + r] = counted[r];
        V[FX_STAT_ENTROPY * B + r] = counted[r] ? w * entropy[r] : 0.0;
        V[FX_STAT_BRIER * B + r] = counted[r] ? w * brier[r] : 0.0;
        V[FX_STAT_WEIGHT_SQ * B + r] = w * w;
        V[FX_STAT_LOSS_SQ * B + r] = a * a;
        V[FX_STAT_LOSS_CROSS * B + r] = a * b;
        V[FX_STAT_LOSS_WEIGHT_SQ * B + r] = b * b;
        V[FX_STAT_CONFIDENCE * B + r] = counted[r] ? w * confidence[r] : 0.0;
        V[FX_STAT_TARGET_ENTROPY * B + r] = 0.0;
        V[FX_STAT_PREDICTED * B + r] = 0.0;
    }
    for (Py_ssize_t j = 0; j < n_topk; ++j) {
        const int64_t k = topk[j];
        double *Vj = V + (FX_STAT_TOPK + j) * B;
#pragma omp simd
        for (Py_ssize_t r = 0; r < R; ++r)
            Vj[r] = !counted[r] ? 0.0 : (nan[r] ? NAN : (rank[r] < k ? s[r] : 0.0));
    }
}

/* t[j] += the sum of the R terms of slot j in V (fx_short_slot_terms's layout), j < n_slots. */
static inline void fx_sum_slot_terms(Py_ssize_t R, const double *V, Py_ssize_t n_slots, double *t) {
    for (Py_ssize_t j = 0; j < n_slots; ++j) {
        const double *Vj = V + j * FX_SHORT_BATCH;
        double sum = 0.0;
#pragma omp simd reduction(+ : sum)
        for (Py_ssize_t r = 0; r < R; ++r) sum += Vj[r];
        t[j] += sum;
    }
}

/* t[i] += v[i] for i < n: a row's slice sums added to a table's row. */
static inline void fx_add_slots(double *restrict t, const double *restrict v, Py_ssize_t n) {
#pragma omp simd
    for (Py_ssize_t i = 0; i < n; ++i) t[i] += v[i];
}

/* Add the terms of slots [0, n_lead) and [FX_STAT_TOPK, n_slots) of each counted row r of V
 * (fx_short_slot_terms's layout) to row labels[r] of the class table and row groups[r] of the
 * group table (n_slots values per row; either table may be NULL): one read of each term for
 * both tables. */
static inline void fx_scatter_slot_terms(Py_ssize_t R, const int *counted, const int *labels,
                                         double *class_table, const int64_t *groups,
                                         double *group_table, const double *V, Py_ssize_t n_slots,
                                         Py_ssize_t n_lead) {
    for (Py_ssize_t r = 0; r < R; ++r) {
        if (!counted[r]) continue;
        double *c = class_table ? class_table + labels[r] * n_slots : NULL;
        double *g = group_table ? group_table + groups[r] * n_slots : NULL;
        for (Py_ssize_t j = 0; j < n_slots; j = (j + 1 == n_lead) ? FX_STAT_TOPK : j + 1) {
            const double term = V[j * FX_SHORT_BATCH + r];
            if (c) c[j] += term;
            if (g) g[j] += term;
        }
    }
}

/* The typed loops: _eval_loops_impl.h once per type. */
#define FX_TEMPLATE "_eval_loops_impl.h"
#include "_each_type.h"

#endif
