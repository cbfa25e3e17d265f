/* The loops of _eval_loops.h for one floating-point type: a template, included once per type
 * by _eval_loops.h (no include guard). Like _loops_impl.h it expects FX_T (float or double)
 * and FX_NAME(base) (base##_f or base##_d), and uses _loops.h.
 */
#if !defined(FX_T) || !defined(FX_NAME)
#error "_eval_loops_impl.h is a template: include _eval_loops.h, which defines FX_T and FX_NAME"
#endif

/* A segment of a logit row with max m, without the arg-max itself. Adds FX_REST, FX_ENT
 * and FX_SQ (an e_i of 0 adds 0 to FX_ENT, even for z_i = -inf). With labels (t == NULL)
 * returns the segment's part of the true class's rank, #{i : z_i > zy} +
 * #{i < tie_end : z_i == zy}. With soft targets t and class weights w it also adds
 * FX_LIN, FX_ASUM, FX_DOT and FX_TT (a zero a_i adds 0 even for z_i = -inf), returning 0. */
static inline Py_ssize_t FX_NAME(fx_eval_logits)(const FX_T *z, const FX_T *t, const FX_T *w,
                                                 Py_ssize_t n, FX_T m, FX_T zy, Py_ssize_t tie_end,
                                                 double *sums) {
    double rest = 0.0, ent = 0.0, sq = 0.0, lin = 0.0, asum = 0.0, dot = 0.0, tt = 0.0;
    const double md = m;
    Py_ssize_t rank = 0;
    if (!t) {
        /* Chunks of FX_CHUNK elements: the entropy and Brier sums (not rest, which
         * the loss needs exactly) and the counts stay in the lanes' own type inside one. */
        Py_ssize_t equal = 0;
        for (Py_ssize_t start = 0; start < n; start += FX_CHUNK) {
            const Py_ssize_t len = n - start < FX_CHUNK ? n - start : FX_CHUNK;
            const FX_T *zc = z + start;
            double rest_c = 0.0;
            FX_T ent_c = 0, sq_c = 0;
            int above_c = 0, equal_c = 0;
#pragma omp simd reduction(+ : rest_c, ent_c, sq_c, above_c, equal_c)
            for (Py_ssize_t i = 0; i < len; ++i) {
                const FX_T zi = zc[i];
                const FX_T e = FX_EXP_SUB(zi, m);
                rest_c += e;
                ent_c += e > 0 ? e * (m - zi) : (FX_T)0;
                sq_c += e * e;
                above_c += zi > zy;
                equal_c += zi == zy;
            }
            rest += rest_c;
            ent += ent_c;
            sq += sq_c;
            rank += above_c;
            equal += equal_c;
        }
        /* ties with the true class (rare): count those before it in a second look */
        if (equal > (tie_end >= 0 && tie_end < n))
            for (Py_ssize_t i = 0; i < (tie_end < n ? tie_end : n); ++i) rank += z[i] == zy;
    } else {
#pragma omp simd reduction(+ : rest, ent, sq, lin, asum, dot, tt)
        for (Py_ssize_t i = 0; i < n; ++i) {
            const FX_T zi = z[i];
            const FX_T e = FX_EXP_SUB(zi, m);
            const double ti = t[i], a = (double)w[i] * ti;
            rest += e;
            ent += e > 0 ? (double)e * (md - (double)zi) : 0.0;
            sq += (double)e * (double)e;
            lin += a != 0.0 ? a * (md - (double)zi) : 0.0;
            asum += a;
            dot += (double)e * ti;
            tt += ti * ti;
        }
    }
    sums[FX_REST] += rest;
    sums[FX_ENT] += ent;
    sums[FX_SQ] += sq;
    sums[FX_LIN] += lin;
    sums[FX_ASUM] += asum;
    sums[FX_DOT] += dot;
    sums[FX_TT] += tt;
    return rank;
}

/* Short logit rows with labels, vectorised across rows: after fx_short_max (X, m, kmax;
 * labels y and true-class logits zy padded to Rp rows too) it sums over c != kmax rest,
 * ent and sq as fx_eval_logits (ent and sq in FX_T: at most FX_SHORT_ROW terms), with l1p[r] =
 * log1p(rest[r]), ey[r] = exp(zy[r] - m[r]) and
 * rank[r] = #{c : x_c > zy} + #{c < y : x_c == zy}. */
static inline void FX_NAME(fx_eval_short)(const FX_T *x, Py_ssize_t R, Py_ssize_t C, const int *y,
                                          const FX_T *zy, FX_T *X, FX_T *m, int *kmax, double *rest,
                                          double *l1p, double *ey, FX_T *ent, FX_T *sq, int *rank) {
    const Py_ssize_t Rp = FX_NAME(fx_short_max)(x, R, C, X, m, kmax);
#pragma omp simd
    for (Py_ssize_t r = 0; r < Rp; ++r) {
        rest[r] = 0.0;
        ent[r] = 0;
        sq[r] = 0;
        rank[r] = 0;
    }
    for (Py_ssize_t c = 0; c < C; ++c) {
        const FX_T *Xc = X + c * Rp;
#pragma omp simd
        for (Py_ssize_t r = 0; r < Rp; ++r) {
            const FX_T v = Xc[r];
            const FX_T e = FX_EXP_SUB(v, m[r]);
            const int other = kmax[r] != (int)c;
            const FX_T gap = e > 0 ? m[r] - v : (FX_T)0; /* 0 (m - v) is 0 even for v = -inf */
            rest[r] += other ? (double)e : 0.0;
            ent[r] += other ? e * gap : (FX_T)0;
            sq[r] += other ? e * e : (FX_T)0;
            rank[r] += (v > zy[r]) | ((v == zy[r]) & ((int)c < y[r]));
        }
    }
#pragma omp simd
    for (Py_ssize_t r = 0; r < Rp; ++r) {
        l1p[r] = log1p(rest[r]);
        ey[r] = exp((double)zy[r] - (double)m[r]);
    }
}

/* A row of probabilities, clipped to [lo, hi] where a log is taken. Adds FX_ENT (p_i = 0
 * adds 0) and FX_SQ; with labels returns the true class's rank as fx_eval_logits (py the
 * true class's probability); with soft targets adds FX_LIN, FX_DOT and FX_TT. */
static inline Py_ssize_t FX_NAME(fx_eval_probs)(const FX_T *p, const FX_T *t, const FX_T *w,
                                                Py_ssize_t n, FX_T lo, FX_T hi, FX_T py,
                                                Py_ssize_t tie_end, double *sums) {
    double ent = 0.0, sq = 0.0, lin = 0.0, dot = 0.0, tt = 0.0;
    Py_ssize_t above = 0;
    if (!t) {
#pragma omp simd reduction(+ : ent, sq, above)
        for (Py_ssize_t i = 0; i < n; ++i) {
            const FX_T pi = p[i];
            const FX_T cp = pi < lo ? lo : (pi > hi ? hi : pi);
            const FX_T log_cp = FX_LOG(cp);
            ent += pi != 0 ? (double)pi * (double)log_cp : 0.0;
            sq += (double)pi * (double)pi;
            above += (pi > py) | ((pi == py) & (i < tie_end));
        }
    } else {
#pragma omp simd reduction(+ : ent, sq, lin, dot, tt)
        for (Py_ssize_t i = 0; i < n; ++i) {
            const FX_T pi = p[i];
            const FX_T cp = pi < lo ? lo : (pi > hi ? hi : pi);
            const FX_T log_cp = FX_LOG(cp);
            const double ti = t[i], a = (double)w[i] * ti;
            ent += pi != 0 ? (double)pi * (double)log_cp : 0.0;
            sq += (double)pi * (double)pi;
            lin += a != 0.0 ? -a * (double)log_cp : 0.0;
            dot += (double)pi * ti;
            tt += ti * ti;
        }
    }
    sums[FX_ENT] += ent;
    sums[FX_SQ] += sq;
    sums[FX_LIN] += lin;
    sums[FX_DOT] += dot;
    sums[FX_TT] += tt;
    return above;
}

/* A row of soft targets t with sample weight s: adds s t_i to mass[i] (the class prior seen)
 * and returns the target entropy -sum_i t_i log t_i (a t_i of 0 adds 0). */
static inline double FX_NAME(fx_target_row)(const FX_T *t, Py_ssize_t n, double s, double *mass) {
    double neg_ent = 0.0;
#pragma omp simd reduction(+ : neg_ent)
    for (Py_ssize_t i = 0; i < n; ++i) {
        const FX_T ti = t[i];
        const FX_T log_t = FX_LOG(ti > 0 ? ti : (FX_T)1);
        mass[i] += s * (double)ti;
        neg_ent += (double)ti * (double)log_t;
    }
    return -neg_ent;
}

/* The metrics of R short logit rows with labels y from fx_eval_short's sums, as
 * _logit_label_metrics (_eval_kernels.pxi) forms them for one row: the class-weighted loss
 * (w_y the rows' class weights), the cross-entropy without class weights, the entropy, the
 * Brier score and the confidence. A row holding NaN gets NaN for each, and nan[r] = 1. */
static inline void FX_NAME(fx_short_metrics)(Py_ssize_t R, const FX_T *m, const int *kmax,
                                             const int *y, const FX_T *zy, const double *rest,
                                             const double *l1p, const double *ey, const FX_T *ent,
                                             const FX_T *sq, const double *w_y, double *loss,
                                             double *ce, double *entropy, double *brier,
                                             double *confidence, int *nan) {
#pragma omp simd
    for (Py_ssize_t r = 0; r < R; ++r) {
        const double inv = 1.0 / (1.0 + rest[r]); /* 1 / S: one division per row */
        const double not_y = 1.0 + (rest[r] - ey[r]);
        const double sq_r = sq[r];
        const int at_max = kmax[r] == y[r];
        const double ce_r = at_max ? l1p[r] : ((double)m[r] - (double)zy[r]) + l1p[r];
        double loss_r = at_max ? w_y[r] * l1p[r] : (w_y[r] != 0.0 ? w_y[r] * ce_r : 0.0);
        double brier_r = at_max ? (rest[r] * rest[r] + sq_r) * inv * inv
                                : (not_y * not_y + 1.0 + (sq_r - ey[r] * ey[r])) * inv * inv;
        double entropy_r = l1p[r] + (double)ent[r] * inv;
        const int nan_r =
            !(loss_r == loss_r && entropy_r == entropy_r && brier_r == brier_r && inv == inv);
        loss[r] = nan_r ? NAN : loss_r;
        ce[r] = nan_r ? NAN : ce_r;
        entropy[r] = nan_r ? NAN : entropy_r;
        brier[r] = nan_r ? NAN : brier_r;
        confidence[r] = nan_r ? NAN : inv;
        nan[r] = nan_r;
    }
}
