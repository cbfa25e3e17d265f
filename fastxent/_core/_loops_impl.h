/* The loops of _loops.h for one floating-point type: a template, included once per type by
 * _loops.h (no include guard). It expects
 *   FX_T          the element type (float or double),
 *   FX_NAME(base) the function name for that type (base##_f or base##_d),
 * and uses _loops.h's type-independent parts: FX_NAME(fx_lane), the lane-wide index type, and
 * the type-generic FX_EXP, FX_EXP_SUB, FX_LOG, FX_LOG1P, FX_FABS and FX_LOG1P_UNIT.
 *
 * A loop that runs in several variants (weights or not, soft targets or not, results stored
 * or not) is one always_inline function with constant flags; its dispatcher calls it with
 * literal flags in each branch, so GCC compiles one specialised loop per branch.
 */
#if !defined(FX_T) || !defined(FX_NAME)
#error "_loops_impl.h is a template: include _loops.h, which defines FX_T and FX_NAME"
#endif

/* Running maxima of x[i] over i < whole = n - n % FX_MAX_BLOCK, one per i mod FX_MAX_BLOCK
 * (several vectors, so the comparisons are independent), NaN ignored and -inf where there
 * is none; returns whole. */
static inline __attribute__((always_inline)) Py_ssize_t FX_NAME(fx_lane_max)(const FX_T *x,
                                                                             Py_ssize_t n,
                                                                             FX_T *acc) {
    const Py_ssize_t whole = n - n % FX_MAX_BLOCK;
    for (int j = 0; j < FX_MAX_BLOCK; ++j) acc[j] = -INFINITY;
    for (Py_ssize_t i = 0; i < whole; i += FX_MAX_BLOCK)
        for (int j = 0; j < FX_MAX_BLOCK; ++j) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
    return whole;
}

/* Largest element *m (NaN ignored; -inf when all are NaN) and the first index holding it,
 * or an index that does not hold *m when NaN is all there is (callers check x[k] == *m).
 * Blocks of FX_ARGMAX_BLOCK keep their FX_MAX_BLOCK lane maxima; the first block whose max
 * is *m is searched, and in it only the lanes (i mod FX_MAX_BLOCK) whose max is *m. */
static inline Py_ssize_t FX_NAME(fx_argmax)(const FX_T *x, Py_ssize_t n, FX_T *m_out) {
    FX_T acc[FX_MAX_BLOCK], best[FX_MAX_BLOCK], m = -INFINITY;
    Py_ssize_t first = 0;
    for (Py_ssize_t start = 0; start < n; start += FX_ARGMAX_BLOCK) {
        const Py_ssize_t len = n - start < FX_ARGMAX_BLOCK ? n - start : FX_ARGMAX_BLOCK;
        const Py_ssize_t whole = FX_NAME(fx_lane_max)(x + start, len, acc);
        FX_T block_max = -INFINITY;
        for (Py_ssize_t i = whole; i < len; ++i)
            block_max = x[start + i] > block_max ? x[start + i] : block_max;
        for (int j = 0; j < FX_MAX_BLOCK; ++j) block_max = acc[j] > block_max ? acc[j] : block_max;
        if (block_max > m || start == 0) {
            m = block_max;
            first = start;
            for (int j = 0; j < FX_MAX_BLOCK; ++j) best[j] = acc[j];
        }
    }
    *m_out = m;
    const FX_T *xb = x + first;
    const Py_ssize_t len = n - first < FX_ARGMAX_BLOCK ? n - first : FX_ARGMAX_BLOCK;
    const Py_ssize_t whole = len - len % FX_MAX_BLOCK;
    unsigned lanes = 0; /* bit j: lane j's max is m */
    for (int j = 0; j < FX_MAX_BLOCK; ++j) lanes |= (unsigned)(best[j] == m) << j;
    for (Py_ssize_t i = 0; i < whole && lanes != 0; i += FX_MAX_BLOCK)
        for (unsigned left = lanes; left != 0; left &= left - 1) {
            const int j = __builtin_ctz(left);
            if (xb[i + j] == m) return first + i + j;
        }
    for (Py_ssize_t i = whole; i < len; ++i)
        if (xb[i] == m) return first + i;
    return first;
}

/* The loop of fx_expsum_chunk: stores each term in e when `store`, leaves out the term at
 * i == skip when `has_skip`. */
static inline __attribute__((always_inline)) FX_T FX_NAME(fx_expsum_loop)(const FX_T *z,
                                                                          FX_NAME(fx_lane) n,
                                                                          FX_T m, FX_T *e,
                                                                          FX_NAME(fx_lane) skip,
                                                                          int store, int has_skip) {
    FX_T part = 0;
#pragma omp simd reduction(+ : part)
    for (FX_NAME(fx_lane) i = 0; i < n; ++i) {
        const FX_T v = FX_EXP_SUB(z[i], m);
        if (store) e[i] = v;
        if (has_skip) part += i != skip ? v : (FX_T)0;
        else part += v;
    }
    return part;
}

/* sum exp(z_i - m) over one chunk (n < 2^31) except at i == skip (-1: none), accumulated
 * in FX_T; every term, skip's too, is stored in e when e != NULL (e may be z). */
static inline __attribute__((always_inline)) FX_T FX_NAME(fx_expsum_chunk)(const FX_T *z,
                                                                           FX_NAME(fx_lane) n,
                                                                           FX_T m, FX_T *e,
                                                                           FX_NAME(fx_lane) skip) {
    FX_T part;
    if (e && skip >= 0) part = FX_NAME(fx_expsum_loop)(z, n, m, e, skip, 1, 1);
    else if (e) part = FX_NAME(fx_expsum_loop)(z, n, m, e, skip, 1, 0);
    else if (skip >= 0) part = FX_NAME(fx_expsum_loop)(z, n, m, e, skip, 0, 1);
    else part = FX_NAME(fx_expsum_loop)(z, n, m, e, skip, 0, 0);
    return part;
}

/* sum_{i != skip} exp(z_i - m) (skip: the arg-max, whose term 1 the caller adds through
 * log1p), stored in e as fx_expsum_chunk. Chunks of FX_CHUNK terms (a constant trip count:
 * no loop epilogue) are summed in FX_T, their sums in double: for float, each vector lane
 * adds at most FX_CHUNK / (lanes) terms in [0, 1] before the double sum, which keeps the float
 * additions (one vector add, where a double accumulator needs converts) to a few ulp. Only
 * the chunk holding skip pays for the mask. Before each chunk the same span of `next` (the
 * next row, or NULL) is prefetched, so the next row's memory-bound max pass finds it in
 * cache. */
static inline double FX_NAME(fx_expsum)(const FX_T *z, Py_ssize_t n, FX_T m, FX_T *e,
                                        const FX_T *next, Py_ssize_t skip) {
    double acc = 0.0;
    Py_ssize_t start = 0;
    for (; start + FX_CHUNK <= n; start += FX_CHUNK) {
        const Py_ssize_t at = skip - start;
        fx_prefetch(next, start, FX_CHUNK, sizeof(FX_T));
        acc += FX_NAME(fx_expsum_chunk)(z + start, FX_CHUNK, m, e ? e + start : NULL,
                                        at >= 0 && at < FX_CHUNK ? (FX_NAME(fx_lane))at : -1);
    }
    fx_prefetch(next, start, n - start, sizeof(FX_T));
    return acc
           + FX_NAME(fx_expsum_chunk)(z + start, (FX_NAME(fx_lane))(n - start), m,
                                      e ? e + start : NULL,
                                      skip >= start ? (FX_NAME(fx_lane))(skip - start) : -1);
}

/* The loop of fx_expsum_lin for class weights (has_w) or not and soft targets (has_t) or
 * not; stores the terms in e when `store`. md is m in double. */
static inline __attribute__((always_inline)) struct fx_lin_sums
FX_NAME(fx_expsum_lin_loop)(const FX_T *z, const FX_T *t, const FX_T *w, Py_ssize_t n, FX_T m,
                            double md, double alpha, double beta, FX_T *e, int has_w, int has_t,
                            int store) {
    double acc = 0.0, lin = 0.0, asum = 0.0;
#pragma omp simd reduction(+ : acc, lin, asum)
    for (Py_ssize_t i = 0; i < n; ++i) {
        const FX_T zi = z[i]; /* read before e (maybe z) is written */
        const FX_T v = FX_EXP_SUB(zi, m);
        const FX_T wi = has_w ? w[i] : (FX_T)1, ti = has_t ? t[i] : (FX_T)0;
        const double a = (double)wi * (alpha * (double)ti + beta);
        acc += v;
        lin += a != 0.0 ? a * (md - (double)zi) : 0.0;
        asum += a;
        if (store) e[i] = v;
    }
    return (struct fx_lin_sums){acc, lin, asum};
}

/* As fx_expsum, and with target weights a_i = w_i (alpha t_i + beta) also accumulates
 * *lin += sum a_i (m - z_i) and *asum += sum a_i. A zero weight contributes 0 even where
 * z_i = -inf (the 0 log 0 = 0 convention). */
static inline double FX_NAME(fx_expsum_lin)(const FX_T *z, const FX_T *t, const FX_T *w,
                                            Py_ssize_t n, FX_T m, double alpha, double beta,
                                            FX_T *e, double *lin_out, double *asum_out) {
    struct fx_lin_sums s;
    const double md = m;
    if (e) {
        if (w && t) s = FX_NAME(fx_expsum_lin_loop)(z, t, w, n, m, md, alpha, beta, e, 1, 1, 1);
        else if (w) s = FX_NAME(fx_expsum_lin_loop)(z, t, w, n, m, md, alpha, beta, e, 1, 0, 1);
        else if (t) s = FX_NAME(fx_expsum_lin_loop)(z, t, w, n, m, md, alpha, beta, e, 0, 1, 1);
        else s = FX_NAME(fx_expsum_lin_loop)(z, t, w, n, m, md, alpha, beta, e, 0, 0, 1);
    } else {
        if (w && t) s = FX_NAME(fx_expsum_lin_loop)(z, t, w, n, m, md, alpha, beta, e, 1, 1, 0);
        else if (w) s = FX_NAME(fx_expsum_lin_loop)(z, t, w, n, m, md, alpha, beta, e, 1, 0, 0);
        else if (t) s = FX_NAME(fx_expsum_lin_loop)(z, t, w, n, m, md, alpha, beta, e, 0, 1, 0);
        else s = FX_NAME(fx_expsum_lin_loop)(z, t, w, n, m, md, alpha, beta, e, 0, 0, 0);
    }
    *lin_out += s.lin;
    *asum_out += s.asum;
    return s.acc;
}

/* Transposes R rows of C classes (row-major x) into E (C x Rp, E[c Rp + r], Rp =
 * FX_PADDED_ROWS(R), rows past R zero) and finds each row's max m[r] and first arg-max
 * kmax[r], vectorised across rows. Returns Rp. */
static inline Py_ssize_t FX_NAME(fx_short_max)(const FX_T *x, Py_ssize_t R, Py_ssize_t C, FX_T *E,
                                               FX_T *m, int *kmax) {
    const Py_ssize_t Rp = FX_PADDED_ROWS(R);
    Py_ssize_t r0 = 0;
    for (; r0 + FX_TRANSPOSE_GROUP <= R; r0 += FX_TRANSPOSE_GROUP)
        for (Py_ssize_t c = 0; c < C; ++c) {
            FX_T *Ec = E + c * Rp + r0;
#pragma GCC unroll FX_TRANSPOSE_GROUP
            for (int j = 0; j < FX_TRANSPOSE_GROUP; ++j) Ec[j] = x[(r0 + j) * C + c];
        }
    for (; r0 < Rp; ++r0)
        for (Py_ssize_t c = 0; c < C; ++c) E[c * Rp + r0] = r0 < R ? x[r0 * C + c] : (FX_T)0;
#pragma omp simd
    for (Py_ssize_t r = 0; r < Rp; ++r) {
        m[r] = E[r];
        kmax[r] = 0;
    }
    for (Py_ssize_t c = 1; c < C; ++c) {
        const FX_T *Ec = E + c * Rp;
#pragma omp simd
        for (Py_ssize_t r = 0; r < Rp; ++r) m[r] = Ec[r] > m[r] ? Ec[r] : m[r];
    }
    for (Py_ssize_t c = C - 1; c >= 0; --c) { /* down to 0: ties go to the lowest index */
        const FX_T *Ec = E + c * Rp;
#pragma omp simd
        for (Py_ssize_t r = 0; r < Rp; ++r) kmax[r] = Ec[r] == m[r] ? (int)c : kmax[r];
    }
    return Rp;
}

/* Short rows, vectorised across rows: after fx_short_max (E, m, kmax), per row r this
 * finds rest = sum_{c != kmax} exp(x_c - m) and l1p = log1p(rest), and E becomes
 * exp(x - m). A row adds its terms in its own lane, one class after another: in FX_T over
 * FX_SHORT_FLUSH classes, then in double. (All C - 1 terms added in float cost float32
 * rows whose label leads by 15 up to 6.8 ulp; this 1.9 ulp, for 1-7 % more time.)
 * When beta != 0 it also accumulates, over c != kmax, lin += a_c (m - x_c) and
 * asum += a_c with a_c = beta w_c (w == NULL: 1). */
static inline void FX_NAME(fx_short_rows)(const FX_T *x, Py_ssize_t R, Py_ssize_t C, const FX_T *w,
                                          double beta, FX_T *E, FX_T *m, int *kmax, double *rest,
                                          double *l1p, double *lin, double *asum) {
    FX_T sum[FX_SHORT_BATCH]; /* FX_SHORT_FLUSH classes' terms */
    const Py_ssize_t Rp = FX_NAME(fx_short_max)(x, R, C, E, m, kmax);
#pragma omp simd
    for (Py_ssize_t r = 0; r < Rp; ++r) {
        sum[r] = 0;
        rest[r] = lin[r] = asum[r] = 0.0;
    }
    for (Py_ssize_t c = 0; c < C; ++c) {
        FX_T *Ec = E + c * Rp;
        const double a = beta * (w ? (double)w[c] : 1.0);
        if (beta != 0.0) {
#pragma omp simd
            for (Py_ssize_t r = 0; r < Rp; ++r) {
                const FX_T v = FX_EXP_SUB(Ec[r], m[r]);
                const int other = kmax[r] != (int)c;
                sum[r] += other ? v : (FX_T)0;
                lin[r] += other && a != 0.0 ? a * ((double)m[r] - (double)Ec[r]) : 0.0;
                asum[r] += other ? a : 0.0;
                Ec[r] = v;
            }
        } else {
#pragma omp simd
            for (Py_ssize_t r = 0; r < Rp; ++r) {
                const FX_T v = FX_EXP_SUB(Ec[r], m[r]);
                sum[r] += kmax[r] != (int)c ? v : (FX_T)0;
                Ec[r] = v;
            }
        }
        if (c % FX_SHORT_FLUSH == FX_SHORT_FLUSH - 1 || c == C - 1) {
#pragma omp simd
            for (Py_ssize_t r = 0; r < Rp; ++r) {
                rest[r] += sum[r];
                sum[r] = 0;
            }
        }
    }
#pragma omp simd
    for (Py_ssize_t r = 0; r < Rp; ++r) l1p[r] = log1p(rest[r]);
}

/* Short rows with hard labels (R <= FX_SHORT_BATCH rows of C contiguous logits; E holds
 * C x padded-rows scratch), vectorised across rows throughout. Per row, with weights
 * a_c = beta w_c plus keep w_y at the label y (w == NULL: 1), m = max, km = first arg-max,
 * rest = sum_{c != km} exp(x_c - m), A = sum_c a_c and A_rest = A - a_km:
 *   loss = s (sum_{c != km} a_c (m - x_c) + A log1p(rest)),
 *   grad_c = k (A e_c / (1 + rest) - beta w_c); at km k (A_rest - a_km rest) / (1 + rest);
 *   minus k keep w_y at y when y != km,
 * with s the sample weight and k = s grad_scale. An ignored row (has_ignore, y == ignore)
 * gives 0 and a zero gradient; NaN in a row makes both NaN. Writes row_loss and grad
 * (row-major) when not NULL, each row's log-sum-exp m + log1p(rest) into lse (ignored rows
 * too) when not NULL, and the Hessian's diagonal k A p_c (1 - p_c) into hess when
 * neither it nor grad is NULL (1 - p at km as rest / (1 + rest)); returns the sum of the row
 * losses, added in row order. */
static inline double FX_NAME(fx_short_label_rows)(const FX_T *x, Py_ssize_t R, Py_ssize_t C,
                                                  const int64_t *labels, const double *sw,
                                                  const FX_T *w, int has_ignore, int64_t ignore,
                                                  double keep, double beta, double grad_scale,
                                                  double *row_loss, FX_T *grad, FX_T *hess,
                                                  FX_T *lse, FX_T *E) {
    FX_T m[FX_SHORT_BATCH], p[FX_SHORT_BATCH], gk[FX_SHORT_BATCH], hk[FX_SHORT_BATCH];
    FX_T kb[FX_SHORT_BATCH], inv_r[FX_SHORT_BATCH], ka[FX_SHORT_BATCH], h_km[FX_SHORT_BATCH];
    int kmax[FX_SHORT_BATCH];
    FX_NAME(fx_lane) km[FX_SHORT_BATCH], lab[FX_SHORT_BATCH], skip[FX_SHORT_BATCH];
    double rest[FX_SHORT_BATCH], l1p[FX_SHORT_BATCH], lin[FX_SHORT_BATCH];
    double asum[FX_SHORT_BATCH], loss[FX_SHORT_BATCH], s[FX_SHORT_BATCH];
    double hard[FX_SHORT_BATCH], a_km[FX_SHORT_BATCH], dz[FX_SHORT_BATCH];
    double total = 0.0;
    const Py_ssize_t Rp = FX_PADDED_ROWS(R);
    FX_NAME(fx_short_rows)(x, R, C, w, beta, E, m, kmax, rest, l1p, lin, asum);
    for (Py_ssize_t r = 0; r < R; ++r) { /* the per-row inputs (gathers) */
        const int ignored = has_ignore && labels[r] == ignore;
        const Py_ssize_t y = ignored ? 0 : labels[r]; /* an index either way */
        s[r] = ignored ? 0.0 : (sw ? sw[r] : 1.0);
        hard[r] = keep * (w ? (double)w[y] : 1.0);
        a_km[r] = beta * (w ? (double)w[kmax[r]] : 1.0);
        dz[r] = (double)m[r] - (double)x[r * C + y];
        km[r] = kmax[r];
        lab[r] = (FX_NAME(fx_lane))y;
        skip[r] = ignored;
    }
#pragma omp simd
    for (Py_ssize_t r = 0; r < R; ++r) {
        const double k = s[r] * grad_scale;
        const int at_km = lab[r] == km[r];
        const int add = !at_km && hard[r] != 0.0;
        const double a_kmax = a_km[r] + (at_km ? hard[r] : 0.0);
        const double a_rest = asum[r] + (add ? hard[r] : 0.0);
        const double row = lin[r] + (add ? hard[r] * dz[r] : 0.0) + (a_rest + a_kmax) * l1p[r];
        const double inv = 1.0 / (1.0 + rest[r]);
        /* m is NaN when the first class is: the exp terms carry it, except in a row of one
         * class, where the arg-max's own term is never formed */
        const double nan_row = m[r] != m[r] ? NAN : 0.0;
        loss[r] = skip[r] ? 0.0 : s[r] * row + nan_row;
        p[r] = (FX_T)(k * (a_rest + a_kmax) * inv);
        gk[r] = (FX_T)(k * (a_rest - a_kmax * rest[r]) * inv + nan_row);
        hk[r] = at_km ? (FX_T)0 : (FX_T)(k * hard[r]);
        kb[r] = (FX_T)(k * beta);
        inv_r[r] = (FX_T)inv;
        ka[r] = (FX_T)(k * (a_rest + a_kmax));
        h_km[r] = (FX_T)(k * (a_rest + a_kmax) * inv * (rest[r] * inv) + nan_row);
    }
    for (Py_ssize_t r = R; r < Rp; ++r) { /* padding: a skipped row */
        p[r] = gk[r] = hk[r] = kb[r] = inv_r[r] = ka[r] = h_km[r] = (FX_T)0;
        km[r] = lab[r] = 0;
        skip[r] = 1;
    }
    for (Py_ssize_t r = 0; r < R; ++r) total += loss[r];
    if (lse)
        for (Py_ssize_t r = 0; r < R; ++r) lse[r] = (FX_T)((double)m[r] + l1p[r]);
    if (row_loss)
        for (Py_ssize_t r = 0; r < R; ++r) row_loss[r] = loss[r];
    if (!grad) return total;
    if (hess)
        for (Py_ssize_t r = 0; r < R; ++r) { /* from E, the exp terms, as the gradient */
            FX_T *h = hess + r * C;
            for (Py_ssize_t c = 0; c < C; ++c) {
                const FX_T q = E[c * Rp + r] * inv_r[r];
                h[c] = skip[r] ? (FX_T)0 : ka[r] * q * ((FX_T)1 - q);
            }
            if (!skip[r]) h[km[r]] = h_km[r];
        }
    for (Py_ssize_t r = 0; r < R; ++r) { /* row by row, reading E across */
        FX_T *g = grad + r * C;
        for (Py_ssize_t c = 0; c < C; ++c)
            g[c] = skip[r] ? (FX_T)0 : p[r] * E[c * Rp + r] - kb[r] * (w ? w[c] : (FX_T)1);
        if (skip[r]) continue;
        g[km[r]] = gk[r];
        g[lab[r]] = g[lab[r]] - hk[r];
    }
    return total;
}

/* The loop of fx_grad for class weights (has_w) or not and soft targets (has_t) or not. */
static inline __attribute__((always_inline)) void FX_NAME(fx_grad_loop)(FX_T *g, const FX_T *t,
                                                                        const FX_T *w, Py_ssize_t n,
                                                                        FX_T p, FX_T ka, FX_T kb,
                                                                        int has_w, int has_t) {
#pragma omp simd
    for (Py_ssize_t i = 0; i < n; ++i)
        g[i] = p * g[i] - (has_w ? w[i] : (FX_T)1) * (ka * (has_t ? t[i] : (FX_T)0) + kb);
}

/* Gradient pass over a row whose g holds the exp terms: g_i = p g_i - w_i (ka t_i + kb). */
static inline void FX_NAME(fx_grad)(FX_T *g, const FX_T *t, const FX_T *w, Py_ssize_t n, FX_T p,
                                    FX_T ka, FX_T kb) {
    if (w && t) FX_NAME(fx_grad_loop)(g, t, w, n, p, ka, kb, 1, 1);
    else if (w) FX_NAME(fx_grad_loop)(g, t, w, n, p, ka, kb, 1, 0);
    else if (t) FX_NAME(fx_grad_loop)(g, t, w, n, p, ka, kb, 0, 1);
    else FX_NAME(fx_grad_loop)(g, t, w, n, p, ka, kb, 0, 0);
}

/* The Hessian's diagonal of a row of logits whose loss has total target weight A:
 * h_i = ka p_i (1 - p_i) with ka = k A and p_i = e_i inv, from the exp terms e_i = exp(z_i - m)
 * (e[kmax] is not read) and inv = 1 / (1 + rest). At the arg-max p = inv and 1 - p =
 * rest inv, so a confident row keeps its small Hessian (no 1 - p cancellation); elsewhere
 * p <= 1/2. h may be e's row or z's, not both. */
static inline void FX_NAME(fx_softmax_hess)(const FX_T *e, Py_ssize_t n, Py_ssize_t kmax, FX_T inv,
                                            FX_T rest_inv, FX_T ka, FX_T *h) {
#pragma omp simd
    for (Py_ssize_t i = 0; i < n; ++i) {
        const FX_T p = e[i] * inv;
        h[i] = ka * p * ((FX_T)1 - p);
    }
    h[kmax] = ka * inv * rest_inv;
}

/* The Hessian's diagonal of a row of probabilities from its soft and smoothing target
 * weights: h_i = k w_i (alpha t_i + beta) / clip(p_i)^2 (the loss is a sum over i, so the
 * Hessian is diagonal). The caller adds a hard label's term. */
static inline void FX_NAME(fx_prob_hess)(const FX_T *p, const FX_T *t, const FX_T *w, Py_ssize_t n,
                                         FX_T ka, FX_T kb, FX_T lo, FX_T hi, FX_T *h) {
#pragma omp simd
    for (Py_ssize_t i = 0; i < n; ++i) {
        const FX_T pi = p[i];
        const FX_T cp = pi < lo ? lo : (pi > hi ? hi : pi);
        const FX_T a = (w ? w[i] : (FX_T)1) * (ka * (t ? t[i] : (FX_T)0) + kb);
        h[i] = a != 0 ? (a / cp) / cp : (FX_T)0;
    }
}

/* The loop of fx_prob_row for class weights (has_w) or not and soft targets (has_t) or not;
 * writes the gradient when `grad`. */
static inline __attribute__((always_inline)) double
FX_NAME(fx_prob_loop)(const FX_T *p, const FX_T *t, const FX_T *w, Py_ssize_t n, double alpha,
                      double beta, FX_T lo, FX_T hi, FX_T *g, FX_T ka, FX_T kb, int has_w,
                      int has_t, int grad) {
    double acc = 0.0;
#pragma omp simd reduction(+ : acc)
    for (Py_ssize_t i = 0; i < n; ++i) {
        const FX_T pi = p[i];
        const FX_T cp = pi < lo ? lo : (pi > hi ? hi : pi);
        const FX_T wi = has_w ? w[i] : (FX_T)1, ti = has_t ? t[i] : (FX_T)0;
        const double a = (double)wi * (alpha * (double)ti + beta);
        const FX_T log_cp = FX_LOG(cp);
        acc += a != 0.0 ? -a * (double)log_cp : 0.0;
        if (grad) g[i] = -(wi * (ka * ti + kb)) / cp;
    }
    return acc;
}

/* Probability rows: returns sum a_i * -log(clip(p_i, lo, hi)) with a_i = w_i (alpha t_i +
 * beta); writes g_i = -k a_i / clip(p_i) when g != NULL (g may be p). */
static inline double FX_NAME(fx_prob_row)(const FX_T *p, const FX_T *t, const FX_T *w, Py_ssize_t n,
                                          double alpha, double beta, FX_T lo, FX_T hi, FX_T *g,
                                          FX_T k) {
    double acc;
    const FX_T ka = (FX_T)(k * alpha), kb = (FX_T)(k * beta);
    if (g) {
        if (w && t)
            acc = FX_NAME(fx_prob_loop)(p, t, w, n, alpha, beta, lo, hi, g, ka, kb, 1, 1, 1);
        else if (w)
            acc = FX_NAME(fx_prob_loop)(p, t, w, n, alpha, beta, lo, hi, g, ka, kb, 1, 0, 1);
        else if (t)
            acc = FX_NAME(fx_prob_loop)(p, t, w, n, alpha, beta, lo, hi, g, ka, kb, 0, 1, 1);
        else acc = FX_NAME(fx_prob_loop)(p, t, w, n, alpha, beta, lo, hi, g, ka, kb, 0, 0, 1);
    } else {
        if (w && t)
            acc = FX_NAME(fx_prob_loop)(p, t, w, n, alpha, beta, lo, hi, g, ka, kb, 1, 1, 0);
        else if (w)
            acc = FX_NAME(fx_prob_loop)(p, t, w, n, alpha, beta, lo, hi, g, ka, kb, 1, 0, 0);
        else if (t)
            acc = FX_NAME(fx_prob_loop)(p, t, w, n, alpha, beta, lo, hi, g, ka, kb, 0, 1, 0);
        else acc = FX_NAME(fx_prob_loop)(p, t, w, n, alpha, beta, lo, hi, g, ka, kb, 0, 0, 0);
    }
    return acc;
}

/* out_i = (z_i - m) - l: log-softmax of a row with max m and l = log1p(rest) (out may be z). */
static inline void FX_NAME(fx_log_softmax)(const FX_T *z, Py_ssize_t n, FX_T m, FX_T l, FX_T *out) {
#pragma omp simd
    for (Py_ssize_t i = 0; i < n; ++i) out[i] = (z[i] - m) - l;
}

static inline void FX_NAME(fx_fill)(FX_T *x, Py_ssize_t n, FX_T v) {
#pragma omp simd
    for (Py_ssize_t i = 0; i < n; ++i) x[i] = v;
}

/* Number of x_i outside [lo, hi] (NaN counts as outside), not counting x_i == skip when
 * has_skip. */
static inline Py_ssize_t FX_NAME(fx_count_outside)(const FX_T *x, Py_ssize_t n, FX_T lo, FX_T hi,
                                                   int has_skip, FX_T skip) {
    Py_ssize_t acc = 0;
#pragma omp simd reduction(+ : acc)
    for (Py_ssize_t i = 0; i < n; ++i)
        acc += !((x[i] >= lo && x[i] <= hi) || (has_skip && x[i] == skip));
    return acc;
}

/* The loop of fx_bce: one of its variants, chosen by constant flags. `logits`: x holds
 * logits, else probabilities. `options`: the smoothed target y' = y sa + sb, weights
 * (w[i] when w_vec, else w0; likewise pos_weight) and elements ignored when has_ignore;
 * without options y' = y and weights 1. The losses, gradients and second derivatives
 * (the Hessian's diagonal) are stored when store_loss / store_g / store_h.
 *
 * An element's loss: logits use softplus/sigmoid of -|x|, one exp, one log1p and no
 * cancellation (loss = w [(1-y') softplus(x) + pw y' softplus(-x)], gradient
 * w [(1-y') sigmoid(x) - pw y' sigmoid(-x)], second derivative
 * w [(1-y') + pw y'] sigmoid(x) sigmoid(-x)); probabilities are clipped to [lo, hi] and
 * differentiated at the clipped value (second derivative w [pw y' / p^2 + (1-y') / (1-p)^2]).
 * A zero coefficient contributes 0 even against an infinite term. */
static inline __attribute__((always_inline)) double
FX_NAME(fx_bce_loop)(const FX_T *x, const FX_T *y, Py_ssize_t n, const FX_T *w, const FX_T *pw,
                     FX_T w0, FX_T pw0, FX_T sa, FX_T sb, int has_ignore, FX_T ignore, FX_T lo,
                     FX_T hi, FX_T *loss, FX_T *g, FX_T *h, FX_T gk, int logits, int options,
                     int w_vec, int pw_vec, int store_loss, int store_g, int store_h) {
    double acc = 0.0;
#pragma omp simd reduction(+ : acc)
    for (Py_ssize_t i = 0; i < n; ++i) {
        const FX_T xi = x[i], yi = y[i];
        /* y' and 1 - y' each from the side they are small on: 1 - (y sa + sb) would cancel
         * for y near 1 (float32, label_smoothing 1e-5, y = 1: 1 - y' off by 0.1 %) */
        const FX_T ys = options ? yi * sa + sb : yi;
        const FX_T r = options ? ((FX_T)1 - yi) * sa + sb : (FX_T)1 - yi;
        const int keep = options ? !has_ignore | (yi != ignore) : 1;
        const FX_T q = (pw_vec ? pw[i] : pw0) * ys, wi = w_vec ? w[i] : w0;
        FX_T li, gi, d2;
        if (logits) {
            const FX_T e = FX_EXP(-FX_FABS(xi));
            const FX_T lg = FX_LOG1P_UNIT(e);
            const FX_T sp_pos = (xi > 0 ? xi : (FX_T)0) + lg,
                       sp_neg = (xi < 0 ? -xi : (FX_T)0) + lg;
            const FX_T big = (FX_T)1 / ((FX_T)1 + e), small = e * big;
            const FX_T sig = xi >= 0 ? big : small, sig_neg = xi >= 0 ? small : big;
            li = wi * ((r != 0 ? r * sp_pos : (FX_T)0) + (q != 0 ? q * sp_neg : (FX_T)0));
            gi = gk * wi * (r * sig - q * sig_neg);
            d2 = gk * wi * (r + q) * (sig * sig_neg);
        } else {
            const FX_T cp = xi < lo ? lo : (xi > hi ? hi : xi);
            const FX_T one_m = (FX_T)1 - cp;
            const FX_T log_p = FX_LOG(cp), log_1mp = FX_LOG1P(-cp);
            li = -wi * ((q != 0 ? q * log_p : (FX_T)0) + (r != 0 ? r * log_1mp : (FX_T)0));
            gi = -wi * ((q != 0 ? (gk * q) / cp : (FX_T)0) - (r != 0 ? (gk * r) / one_m : (FX_T)0));
            d2 = wi
                 * ((q != 0 ? ((gk * q) / cp) / cp : (FX_T)0)
                    + (r != 0 ? ((gk * r) / one_m) / one_m : (FX_T)0));
        }
        li = keep ? li : (FX_T)0;
        gi = keep ? gi : (FX_T)0;
        d2 = keep ? d2 : (FX_T)0;
        acc += li;
        if (store_loss) loss[i] = li;
        if (store_g) g[i] = gi;
        if (store_h) h[i] = d2;
    }
    return acc;
}

/* fx_bce's loop for one input kind (from_logits, a constant at each call) and one setting of
 * the weights: dispatches on which results are stored (second derivatives h only with the
 * gradient g and without the losses). */
static inline __attribute__((always_inline)) double
FX_NAME(fx_bce_stores_of_kind)(const int from_logits, const FX_T *x, const FX_T *y, Py_ssize_t n,
                               const FX_T *w, const FX_T *pw, FX_T w0, FX_T pw0, FX_T sa, FX_T sb,
                               int has_ignore, FX_T ignore, FX_T lo, FX_T hi, FX_T *loss, FX_T *g,
                               FX_T *h, FX_T gk, int options, int w_vec, int pw_vec) {
    double acc;
    if (h)
        acc = FX_NAME(fx_bce_loop)(x, y, n, w, pw, w0, pw0, sa, sb, has_ignore, ignore, lo, hi,
                                   loss, g, h, gk, from_logits, options, w_vec, pw_vec, 0, 1, 1);
    else if (loss && g)
        acc = FX_NAME(fx_bce_loop)(x, y, n, w, pw, w0, pw0, sa, sb, has_ignore, ignore, lo, hi,
                                   loss, g, h, gk, from_logits, options, w_vec, pw_vec, 1, 1, 0);
    else if (g)
        acc = FX_NAME(fx_bce_loop)(x, y, n, w, pw, w0, pw0, sa, sb, has_ignore, ignore, lo, hi,
                                   loss, g, h, gk, from_logits, options, w_vec, pw_vec, 0, 1, 0);
    else if (loss)
        acc = FX_NAME(fx_bce_loop)(x, y, n, w, pw, w0, pw0, sa, sb, has_ignore, ignore, lo, hi,
                                   loss, g, h, gk, from_logits, options, w_vec, pw_vec, 1, 0, 0);
    else
        acc = FX_NAME(fx_bce_loop)(x, y, n, w, pw, w0, pw0, sa, sb, has_ignore, ignore, lo, hi,
                                   loss, g, h, gk, from_logits, options, w_vec, pw_vec, 0, 0, 0);
    return acc;
}

/* fx_bce's loop for one setting of the weights: dispatches on the input kind. */
static inline __attribute__((always_inline)) double
FX_NAME(fx_bce_stores)(int from_logits, const FX_T *x, const FX_T *y, Py_ssize_t n, const FX_T *w,
                       const FX_T *pw, FX_T w0, FX_T pw0, FX_T sa, FX_T sb, int has_ignore,
                       FX_T ignore, FX_T lo, FX_T hi, FX_T *loss, FX_T *g, FX_T *h, FX_T gk,
                       int options, int w_vec, int pw_vec) {
    double acc;
    if (from_logits)
        acc = FX_NAME(fx_bce_stores_of_kind)(1, x, y, n, w, pw, w0, pw0, sa, sb, has_ignore, ignore,
                                             lo, hi, loss, g, h, gk, options, w_vec, pw_vec);
    else
        acc = FX_NAME(fx_bce_stores_of_kind)(0, x, y, n, w, pw, w0, pw0, sa, sb, has_ignore, ignore,
                                             lo, hi, loss, g, h, gk, options, w_vec, pw_vec);
    return acc;
}

/* Binary cross-entropy over a segment. Weights w and pos_weight pw are either one value
 * for the segment (w_vec/pw_vec = 0) or one per element; w == NULL means 1. The smoothed
 * target is y' = y sa + sb; elements whose raw y equals `ignore` (when has_ignore) give 0.
 * Returns the sum of losses; writes losses, gk * gradients and gk * second derivatives when
 * loss / g / h != NULL (h only with g and without loss). */
static inline double FX_NAME(fx_bce)(int from_logits, const FX_T *x, const FX_T *y, Py_ssize_t n,
                                     const FX_T *w, int w_vec, const FX_T *pw, int pw_vec, FX_T sa,
                                     FX_T sb, int has_ignore, FX_T ignore, FX_T lo, FX_T hi,
                                     FX_T *loss, FX_T *g, FX_T *h, FX_T gk) {
    double acc;
    const FX_T w0 = w ? w[0] : (FX_T)1, pw0 = pw ? pw[0] : (FX_T)1;
    if (!w && !pw && sa == 1 && sb == 0 && !has_ignore) /* no option: a lean loop */
        acc = FX_NAME(fx_bce_stores)(from_logits, x, y, n, w, pw, (FX_T)1, (FX_T)1, sa, sb,
                                     has_ignore, ignore, lo, hi, loss, g, h, gk, 0, 0, 0);
    else if (w_vec && pw_vec)
        acc = FX_NAME(fx_bce_stores)(from_logits, x, y, n, w, pw, w0, pw0, sa, sb, has_ignore,
                                     ignore, lo, hi, loss, g, h, gk, 1, 1, 1);
    else if (w_vec)
        acc = FX_NAME(fx_bce_stores)(from_logits, x, y, n, w, pw, w0, pw0, sa, sb, has_ignore,
                                     ignore, lo, hi, loss, g, h, gk, 1, 1, 0);
    else if (pw_vec)
        acc = FX_NAME(fx_bce_stores)(from_logits, x, y, n, w, pw, w0, pw0, sa, sb, has_ignore,
                                     ignore, lo, hi, loss, g, h, gk, 1, 0, 1);
    else
        acc = FX_NAME(fx_bce_stores)(from_logits, x, y, n, w, pw, w0, pw0, sa, sb, has_ignore,
                                     ignore, lo, hi, loss, g, h, gk, 1, 0, 0);
    return acc;
}
