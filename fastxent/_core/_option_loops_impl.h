/* Template of _option_loops.h, included once per type (FX_T, FX_NAME): see that file. */

/* Target weight of class c: a_c = w_c (alpha t_c + beta) + hard [c == y] (w, t NULL: 1, 0). */
static inline double FX_NAME(fx_target_weight)(const FX_T *t, const FX_T *w, Py_ssize_t c,
                                               Py_ssize_t y, double alpha, double beta,
                                               double hard) {
    const double a = (w ? (double)w[c] : 1.0) * (alpha * (t ? (double)t[c] : 0.0) + beta);
    return c == y ? a + hard : a;
}

/* fx_target_weight of every class into a, one loop per case so that each vectorises. */
static inline void FX_NAME(fx_target_weights)(const FX_T *t, const FX_T *w, Py_ssize_t n,
                                              Py_ssize_t y, double alpha, double beta, double hard,
                                              double *a) {
    if (t && w)
        for (Py_ssize_t c = 0; c < n; ++c) a[c] = (double)w[c] * (alpha * (double)t[c] + beta);
    else if (t)
        for (Py_ssize_t c = 0; c < n; ++c) a[c] = alpha * (double)t[c] + beta;
    else if (w)
        for (Py_ssize_t c = 0; c < n; ++c) a[c] = (double)w[c] * beta;
    else
        for (Py_ssize_t c = 0; c < n; ++c) a[c] = beta;
    if (y >= 0) a[y] += hard;
}

/* One row's derivatives at class c, from the row's sums (see fx_option_row): stores
 * k dloss/dz into g[c] and, when h is not NULL, k d2loss/dz^2 into h[c]. a is the class's
 * target weight, D, P, Pq2 its focal factors (read only when a != 0), p, q its probability and
 * 1 - p, top whether c is the arg-max, u its soft-capped logit and sl = du/dz. */
static inline __attribute__((always_inline)) void
FX_NAME(fx_option_class)(const struct fx_row_sums *r, Py_ssize_t c, double a, double D, double P,
                         double Pq2, double p, double q, int top, double u, double sl, FX_T *g,
                         FX_T *h) {
    const double aD = a != 0.0 ? a * D : 0.0, aP = a != 0.0 ? a * P : 0.0;
    double du = top ? (r->S_rest - aD * r->rest) * r->inv : p * r->S - aD;
    if (r->z2 != 0.0) du += r->z2 * r->lse * p; /* (lse is infinite in a row of +-inf) */
    if (h) {
        const double others = top ? r->T_rest : r->T - aP;
        double d2 = p * q * r->S - (p != 0.0 ? p * p * others : 0.0) - (a != 0.0 ? a * Pq2 : 0.0);
        if (r->z2 != 0.0) d2 += r->z2 * (p * p + r->lse * p * q);
        if (r->cap > 0) d2 = d2 * sl * sl - du * 2.0 * (u / r->cap) * sl / r->cap;
        h[c] = (FX_T)(r->k * d2);
    }
    g[c] = (FX_T)(r->k * du * sl);
}

/* One row of n logits z with the options o; returns the row's loss and stores the
 * log-sum-exp of the soft-capped logits in *lse (when lse is not NULL).
 *
 * u = softcap(z), p = softmax(u), m = max u at the first arg-max km, rest = sum_{c != km}
 * exp(u_c - m), lse = m + log1p(rest); target weights a_c as _logit_row's (fx_target_weight).
 * With q_c = 1 - p_c (rest / (1 + rest) at km), nl_c = -log p_c ((m - u_c) + log1p(rest))
 * and the focal factor F_c = q_c^gamma:
 *   loss          = sum_c a_c F_c nl_c + s lse^2,
 *   dloss/du_j    = p_j S - a_j D_j + 2 s lse p_j,
 *   d2loss/du_j^2 = p_j q_j S - p_j^2 (T - a_j P_j) - a_j P_j q_j^2 + 2 s (p_j^2 + lse p_j q_j),
 * where D_c = F_c (1 + gamma rho_c) with rho_c = p_c nl_c / q_c (log1p(rest) / rest at km),
 * P_c = p_c dD_c/dp_c = gamma (F_c / q_c) (rho_c (1 - gamma p_c) - 2 p_c), S = sum_c a_c D_c
 * and T = sum_c a_c P_c (without focal terms D = 1 and P = 0: the plain cross-entropy).
 * At km, where p is near 1, the differences come from the other classes' sums (p S - a D as
 * (S_rest - a D rest) / (1 + rest), T - a P as T_rest), so confident rows do not cancel.
 * Through the soft-cap, with u' = du/dz and u'' = -2 (u / c) u' / c:
 *   dloss/dz = dloss/du u',  d2loss/dz^2 = d2loss/du^2 u'^2 + dloss/du u''.
 *
 * Passes: the max of z (tanh is increasing: its arg-max is u's); the soft-capped logits and
 * slopes (with a cap); the exp terms; the focal factors of the classes with a target weight
 * (only the label's when there are no soft targets and no smoothing); the gradient and
 * Hessian, vectorised over the classes without a target weight of their own, then the label
 * and the arg-max. Writes k dloss/dz into g and k d2loss/dz^2 into h unless NULL (h needs g);
 * g or h may be z (z is not read once they are written). work holds 7 n doubles. NaN in the
 * row makes loss, lse, g and h NaN. */
static inline double FX_NAME(fx_option_row)(const FX_T *z, const FX_T *t, const FX_T *w,
                                            Py_ssize_t n, Py_ssize_t y, double alpha, double beta,
                                            double hard, const struct fx_row_options *o, double k,
                                            FX_T *g, FX_T *h, double *work, double *lse) {
    double *u = work, *e = work + n, *slope = work + 2 * n;
    double *D = work + 3 * n, *P = work + 4 * n, *Pq2 = work + 5 * n, *A = work + 6 * n;
    const double cap = o->softcap, gamma = o->gamma;
    const int label_only = t == NULL && beta == 0.0; /* no other class has a target weight */
    FX_T mz;
    const Py_ssize_t km = FX_NAME(fx_argmax)(z, n, &mz);
    if (z[km] != mz) { /* NaN is all the row holds */
        if (lse) *lse = NAN;
        for (Py_ssize_t c = 0; c < n; ++c) {
            if (g) g[c] = (FX_T)NAN;
            if (h) h[c] = (FX_T)NAN;
        }
        return NAN;
    }
    if (cap > 0) {
#pragma omp simd
        for (Py_ssize_t c = 0; c < n; ++c) {
            const struct fx_capped soft = fx_softcap((double)z[c], cap);
            u[c] = soft.u;
            slope[c] = soft.slope;
        }
    } else
        for (Py_ssize_t c = 0; c < n; ++c) u[c] = (double)z[c];
    const double m = u[km];
    double rest = 0.0; /* a NaN anywhere in the row makes it NaN, and so every result */
#pragma omp simd reduction(+ : rest)
    for (Py_ssize_t c = 0; c < n; ++c) {
        const double v = fx_exp_sub(u[c], m);
        e[c] = v;
        rest += c == km ? 0.0 : v;
    }
    struct fx_row_sums r = {0};
    r.rest = rest;
    r.inv = 1.0 / (1.0 + rest);
    r.cap = cap;
    r.k = k;
    r.z2 = 2.0 * o->z_loss;
    const double l1p = log1p(rest), q_km = rest * r.inv;
    r.lse = m + l1p;
    double loss = 0.0;
    const double a_km = FX_NAME(fx_target_weight)(t, w, km, y, alpha, beta, hard);
    const int power = fx_power_kind(gamma);
    if (label_only) { /* the label is the one other class with a target weight */
        if (y >= 0 && y != km) {
            const double pc = e[y] * r.inv, qc = 1.0 - pc, nl = (m - u[y]) + l1p;
            double F = 1.0;
            fx_focal_factors(power, gamma, pc, qc, pc > 0 ? pc * nl / qc : 0.0, &F, &D[y], &P[y],
                             &Pq2[y]);
            loss += hard != 0.0 ? hard * F * nl : 0.0;
            r.S_rest = hard * D[y];
            r.T_rest = hard * P[y];
        }
    } else { /* every class but the arg-max, vectorised */
        FX_NAME(fx_target_weights)(t, w, n, y, alpha, beta, hard, A);
        const struct fx_focal_sums sums =
            fx_focal_sums(gamma, A, e, u, n, km, r.inv, m, l1p, D, P, Pq2);
        loss += sums.lin;
        r.S_rest = sums.S_rest;
        r.T_rest = sums.T_rest;
    }
    /* the arg-max, after the loop (which wrote its slots too): its 1 - p and rho from rest,
     * its -log p = log1p(rest) */
    double F_km;
    fx_focal_factors(power, gamma, r.inv, q_km, rest > 0 ? l1p / rest : 1.0, &F_km, &D[km], &P[km],
                     &Pq2[km]);
    loss += a_km != 0.0 ? a_km * F_km * l1p : 0.0;
    r.S = r.S_rest + (a_km != 0.0 ? a_km * D[km] : 0.0);
    r.T = r.T_rest + (a_km != 0.0 ? a_km * P[km] : 0.0);
    if (lse) *lse = r.lse;
    loss += o->z_loss != 0.0 ? o->z_loss * r.lse * r.lse : 0.0;
    if (!g) return loss;
    if (label_only) { /* every class but the label: no target weight */
#pragma omp simd
        for (Py_ssize_t c = 0; c < n; ++c) {
            const double pc = e[c] * r.inv;
            FX_NAME(fx_option_class)(&r, c, 0.0, 0.0, 0.0, 0.0, pc, 1.0 - pc, 0, u[c],
                                     cap > 0 ? slope[c] : 1.0, g, h);
        }
        if (y >= 0 && y != km) {
            const double pc = e[y] * r.inv;
            FX_NAME(fx_option_class)(&r, y, hard, D[y], P[y], Pq2[y], pc, 1.0 - pc, 0, u[y],
                                     cap > 0 ? slope[y] : 1.0, g, h);
        }
    } else {
#pragma omp simd
        for (Py_ssize_t c = 0; c < n; ++c) {
            const double pc = e[c] * r.inv;
            FX_NAME(fx_option_class)(&r, c, A[c], D[c], P[c], Pq2[c], pc, 1.0 - pc, 0, u[c],
                                     cap > 0 ? slope[c] : 1.0, g, h);
        }
    }
    FX_NAME(fx_option_class)(&r, km, a_km, D[km], P[km], Pq2[km], r.inv, q_km, 1, u[km],
                             cap > 0 ? slope[km] : 1.0, g, h);
    return loss;
}

/* One row of n probabilities with focal terms: loss = sum_c a_c F_c nl_c with cp = clip(p,
 * lo, hi), q = 1 - cp, nl = -log cp and F = q^gamma; the derivatives are taken with respect
 * to the clipped probability (as _prob_row's):
 *   dloss/dp_c    = -a_c (F_c / cp_c + gamma F_c (nl_c / q_c)),
 *   d2loss/dp_c^2 = a_c (F_c / cp_c^2 + gamma (F_c / q_c) (2 / cp_c + (gamma - 1) nl_c / q_c)),
 * with nl / q read as 1 and F / q as its limit where q = 0 (eps = 0): the gradient's limit 0
 * there, and the Hessian's (+inf, 2 or 0 for gamma below, at or above 1). Writes k dloss/dp into
 * g and k d2loss/dp^2 into h unless NULL; g or h may be p. */
static inline double FX_NAME(fx_option_prob_row)(const FX_T *p, const FX_T *t, const FX_T *w,
                                                 Py_ssize_t n, Py_ssize_t y, double alpha,
                                                 double beta, double hard, double lo, double hi,
                                                 double gamma, double k, FX_T *g, FX_T *h) {
    double loss = 0.0;
    for (Py_ssize_t c = 0; c < n; ++c) {
        const double a = FX_NAME(fx_target_weight)(t, w, c, y, alpha, beta, hard);
        const double x = (double)p[c]; /* read before g or h (possibly p) is written */
        const double cp = x < lo ? lo : (x > hi ? hi : x);
        const double q = 1.0 - cp, nl = -log(cp);
        const double F = fx_focal_power(fx_power_kind(gamma), q, gamma);
        const double nl_q = q > 0 ? nl / q : 1.0;
        const double F_q = gamma != 0.0 ? fx_focal_power_over(F, q, gamma) : 0.0;
        double dp = 0.0, d2p = 0.0;
        if (a != 0.0) {
            loss += a * F * nl;
            dp = -a * (F / cp + (gamma != 0.0 ? gamma * F * nl_q : 0.0));
            d2p = a
                  * (F / (cp * cp)
                     + (gamma != 0.0 ? gamma * F_q * (2.0 / cp + (gamma - 1.0) * nl_q) : 0.0));
        }
        if (h) h[c] = (FX_T)(k * d2p);
        if (g) g[c] = (FX_T)(k * dp);
    }
    return loss;
}

/* Binary cross-entropy with soft-capping and focal terms over a segment, as fx_bce_option_core
 * computes it; the other arguments as fx_bce's (w, pw: one value, or one per element when
 * w_vec / pw_vec; NULL: 1). The segment goes through FX_OPTION_CHUNK elements at a time,
 * widened to double in stack buffers so that the core's loop vectorises. g or h may be x. */
static inline double FX_NAME(fx_bce_option)(int from_logits, const FX_T *x, const FX_T *y,
                                            Py_ssize_t n, const FX_T *w, int w_vec, const FX_T *pw,
                                            int pw_vec, FX_T sa, FX_T sb, int has_ignore,
                                            FX_T ignore, FX_T lo, FX_T hi, double cap, double gamma,
                                            double alpha, FX_T *loss, FX_T *g, FX_T *h, FX_T gk) {
    double xb[FX_OPTION_CHUNK], keptb[FX_OPTION_CHUNK], ysb[FX_OPTION_CHUNK], rb[FX_OPTION_CHUNK];
    double wb[FX_OPTION_CHUNK], pwb[FX_OPTION_CHUNK], lb[FX_OPTION_CHUNK], gb[FX_OPTION_CHUNK];
    double hb[FX_OPTION_CHUNK];
    double acc = 0.0;
    for (Py_ssize_t start = 0; start < n; start += FX_OPTION_CHUNK) {
        const Py_ssize_t len = n - start < FX_OPTION_CHUNK ? n - start : FX_OPTION_CHUNK;
        for (Py_ssize_t i = 0; i < len; ++i) {
            const FX_T yi = y[start + i];
            xb[i] = (double)x[start + i];
            /* y' and 1 - y' each from the side they are small on, in FX_T as fx_bce */
            ysb[i] = (double)(yi * sa + sb);
            rb[i] = (double)(((FX_T)1 - yi) * sa + sb);
            keptb[i] = has_ignore && yi == ignore ? 0.0 : 1.0;
            wb[i] = w ? (double)w[w_vec ? start + i : 0] : 1.0;
            pwb[i] = pw ? (double)pw[pw_vec ? start + i : 0] : 1.0;
        }
        acc += fx_bce_option_core(from_logits, xb, ysb, rb, keptb, wb, pwb, len, (double)lo,
                                  (double)hi, cap, gamma, alpha, lb, gb, hb, (double)gk);
        for (Py_ssize_t i = 0; i < len; ++i) {
            if (loss) loss[start + i] = (FX_T)lb[i];
            if (g) g[start + i] = (FX_T)gb[i];
            if (h) h[start + i] = (FX_T)hb[i];
        }
    }
    return acc;
}
