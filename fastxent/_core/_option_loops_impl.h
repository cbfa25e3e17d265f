/* Template of _option_loops.h, included once per type (FX_T, FX_NAME): see that file. */

/* Target weight of class c: a_c = w_c (alpha t_c + beta) + hard [c == y] (w, t NULL: 1, 0). */
static inline double FX_NAME(fx_target_weight)(const FX_T *t, const FX_T *w, Py_ssize_t c,
                                               Py_ssize_t y, double alpha, double beta,
                                               double hard) {
    const double a = (w ? (double)w[c] : 1.0) * (alpha * (t ? (double)t[c] : 0.0) + beta);
    return c == y ? a + hard : a;
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
 * Through the soft-cap u'(z) = fx_softcap_slope and u'' = -2 (u / c) u' / c:
 *   dloss/dz = dloss/du u',  d2loss/dz^2 = d2loss/du^2 u'^2 + dloss/du u''.
 * Writes k dloss/dz into g and k d2loss/dz^2 into h unless NULL (h needs g); g or h may be z
 * (each class is read before it is written). work holds 5 n doubles. A NaN, or no finite
 * maximum (every u is -inf), makes the loss, lse, g and h NaN. */
static inline double FX_NAME(fx_option_row)(const FX_T *z, const FX_T *t, const FX_T *w,
                                            Py_ssize_t n, Py_ssize_t y, double alpha, double beta,
                                            double hard, const struct fx_row_options *o, double k,
                                            FX_T *g, FX_T *h, double *work, double *lse) {
    double *u = work, *p = work + n, *D = work + 2 * n, *P = work + 3 * n, *Pq2 = work + 4 * n;
    const double cap = o->softcap, gamma = o->gamma, s = o->z_loss;
    Py_ssize_t km = -1;
    double m = -INFINITY;
    int nan = 0;
    for (Py_ssize_t c = 0; c < n; ++c) {
        u[c] = fx_softcap((double)z[c], cap);
        nan |= u[c] != u[c];
        if (u[c] > m) {
            m = u[c];
            km = c;
        }
    }
    if (nan || km < 0) {
        if (lse) *lse = NAN;
        for (Py_ssize_t c = 0; c < n; ++c) {
            if (g) g[c] = (FX_T)NAN;
            if (h) h[c] = (FX_T)NAN;
        }
        return NAN;
    }
    double rest = 0.0;
    for (Py_ssize_t c = 0; c < n; ++c) {
        p[c] = c == km ? 1.0 : fx_exp_sub(u[c], m);
        rest += c == km ? 0.0 : p[c];
    }
    const double l1p = log1p(rest), inv = 1.0 / (1.0 + rest), row_lse = m + l1p;
    const double q_km = rest * inv;
    double loss = 0.0, S = 0.0, S_rest = 0.0, T = 0.0, T_rest = 0.0;
    for (Py_ssize_t c = 0; c < n; ++c) {
        const double a = FX_NAME(fx_target_weight)(t, w, c, y, alpha, beta, hard);
        const int top = c == km;
        const double pc = top ? inv : p[c] * inv, qc = top ? q_km : 1.0 - pc;
        const double nl = top ? l1p : (m - u[c]) + l1p;
        double F = 1.0, Dc = 1.0, Pc = 0.0, Pq2c = 0.0;
        if (gamma != 0.0) {
            const double rho = top ? (rest > 0 ? l1p / rest : 1.0) : (pc > 0 ? pc * nl / qc : 0.0);
            const double shape = rho * (1.0 - gamma * pc) - 2.0 * pc;
            F = pow(qc, gamma);
            Dc = F * (1.0 + gamma * rho);
            Pc = gamma * pow(qc, gamma - 1.0) * shape; /* F / q, its limit at q = 0 */
            Pq2c = gamma * F * qc * shape;             /* P q^2 without forming F / q */
        }
        p[c] = pc;
        D[c] = Dc;
        P[c] = Pc;
        Pq2[c] = Pq2c;
        if (a != 0.0) { /* a zero weight adds nothing, even against an infinite term */
            loss += a * F * nl;
            S += a * Dc;
            T += a * Pc;
            S_rest += top ? 0.0 : a * Dc;
            T_rest += top ? 0.0 : a * Pc;
        }
    }
    if (lse) *lse = row_lse;
    if (s != 0.0) loss += s * row_lse * row_lse;
    if (!g) return loss;
    for (Py_ssize_t c = 0; c < n; ++c) {
        const double a = FX_NAME(fx_target_weight)(t, w, c, y, alpha, beta, hard);
        const int top = c == km;
        const double pc = p[c], qc = top ? q_km : 1.0 - pc;
        const double aD = a != 0.0 ? a * D[c] : 0.0, aP = a != 0.0 ? a * P[c] : 0.0;
        double du = top ? (S_rest - aD * rest) * inv : pc * S - aD;
        if (s != 0.0) du += 2.0 * s * row_lse * pc;
        const double zc = (double)z[c]; /* read before g or h (possibly z) is written */
        const double slope = fx_softcap_slope(zc, cap);
        if (h) {
            const double others = top ? T_rest : T - aP;
            double d2 =
                pc * qc * S - (pc != 0.0 ? pc * pc * others : 0.0) - (a != 0.0 ? a * Pq2[c] : 0.0);
            if (s != 0.0) d2 += 2.0 * s * (pc * pc + row_lse * pc * qc);
            if (cap > 0) d2 = d2 * slope * slope - du * 2.0 * (u[c] / cap) * slope / cap;
            h[c] = (FX_T)(k * d2);
        }
        g[c] = (FX_T)(k * du * slope);
    }
    return loss;
}

/* One row of n probabilities with focal terms: loss = sum_c a_c F_c nl_c with cp = clip(p,
 * lo, hi), q = 1 - cp, nl = -log cp and F = q^gamma; the derivatives are taken with respect
 * to the clipped probability (as _prob_row's):
 *   dloss/dp_c    = -a_c (F_c / cp_c + gamma (F_c / q_c) nl_c),
 *   d2loss/dp_c^2 = a_c (F_c / cp_c^2 + 2 gamma (F_c / q_c) / cp_c
 *                        + gamma (gamma - 1) (F_c / q_c) nl_c / q_c),
 * with nl / q read as 1 and F / q as its limit where q = 0 (eps = 0). Writes k dloss/dp into
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
        const double F = gamma != 0.0 ? pow(q, gamma) : 1.0;
        const double nl_q = q > 0 ? nl / q : 1.0;
        const double F_q = gamma != 0.0 ? pow(q, gamma - 1.0) : 0.0; /* unused when gamma == 0 */
        double dp = 0.0, d2p = 0.0;
        if (a != 0.0) {
            loss += a * F * nl;
            dp = -a * (F / cp + (gamma != 0.0 ? gamma * F_q * nl : 0.0));
            d2p = a
                  * (F / (cp * cp)
                     + (gamma != 0.0 ? 2.0 * gamma * F_q / cp + gamma * (gamma - 1.0) * F_q * nl_q
                                     : 0.0));
        }
        if (h) h[c] = (FX_T)(k * d2p);
        if (g) g[c] = (FX_T)(k * dp);
    }
    return loss;
}

/* Binary cross-entropy with soft-capping (cap, logits only) and focal terms (gamma, alpha)
 * over a segment; the other arguments as fx_bce's (weights, pos_weight, smoothing sa / sb,
 * ignore, clipping). With y' = y sa + sb, r = (1 - y) sa + sb (1 - y', from its small side)
 * and B the element's cross-entropy as fx_bce computes it (of u = softcap(x) for logits):
 *   q_f = 1 - p_t = sigma(u) r + sigma(-u) y'   (probabilities: cp r + (1 - cp) y'),
 *   loss = alpha_t q_f^gamma B,   alpha_t = alpha y' + (1 - alpha) r (alpha < 0: 1),
 * torchvision's sigmoid_focal_loss with Keras's label smoothing. Derivatives by the product
 * rule, with q_f' / q_f (0 where q_f = 0) in place of any negative power of q_f, then through
 * the soft-cap as in fx_option_row. Stores losses, gk * gradients and gk * second derivatives
 * when loss, g, h are not NULL; g or h may be x. Returns the sum of the losses. */
static inline double FX_NAME(fx_bce_option)(int from_logits, const FX_T *x, const FX_T *y,
                                            Py_ssize_t n, const FX_T *w, int w_vec, const FX_T *pw,
                                            int pw_vec, FX_T sa, FX_T sb, int has_ignore,
                                            FX_T ignore, FX_T lo, FX_T hi, double cap, double gamma,
                                            double alpha, FX_T *loss, FX_T *g, FX_T *h, FX_T gk) {
    double acc = 0.0;
    for (Py_ssize_t i = 0; i < n; ++i) {
        const FX_T yi = y[i];
        const double ys = (double)(yi * sa + sb), r = (double)(((FX_T)1 - yi) * sa + sb);
        const int keep = !has_ignore || yi != ignore;
        const double wi = w ? (double)w[w_vec ? i : 0] : 1.0;
        const double q = (pw ? (double)pw[pw_vec ? i : 0] : 1.0) * ys;
        const double xi = (double)x[i]; /* read before g or h (possibly x) is written */
        double B, dB, d2B, qf, ratio, curve = 0.0, slope = 1.0, u = xi;
        if (from_logits) {
            u = fx_softcap(xi, cap);
            const double e = exp(-fabs(u)), lg = log1p(e);
            const double sp_pos = (u > 0 ? u : 0.0) + lg, sp_neg = (u < 0 ? -u : 0.0) + lg;
            const double big = 1.0 / (1.0 + e), small = e * big;
            const double sig = u >= 0 ? big : small, sig_neg = u >= 0 ? small : big;
            const double v = sig * sig_neg;
            B = wi * ((r != 0 ? r * sp_pos : 0.0) + (q != 0 ? q * sp_neg : 0.0));
            dB = wi * (r * sig - q * sig_neg);
            d2B = wi * (r + q) * v;
            qf = sig * r + sig_neg * ys;
            ratio = qf > 0 ? (r - ys) * v / qf : 0.0; /* q_f' / q_f */
            curve = ratio * (sig_neg - sig);          /* q_f'' / q_f */
            slope = fx_softcap_slope(xi, cap);
        } else {
            const double cp = xi < (double)lo ? (double)lo : (xi > (double)hi ? (double)hi : xi);
            const double one_m = 1.0 - cp;
            B = -wi * ((q != 0 ? q * log(cp) : 0.0) + (r != 0 ? r * log1p(-cp) : 0.0));
            dB = -wi * ((q != 0 ? q / cp : 0.0) - (r != 0 ? r / one_m : 0.0));
            d2B = wi * ((q != 0 ? q / cp / cp : 0.0) + (r != 0 ? r / one_m / one_m : 0.0));
            qf = cp * r + one_m * ys;
            ratio = qf > 0 ? (r - ys) / qf : 0.0;
            curve = 0.0;
        }
        double F = 1.0, dF_B = 0.0, d2F_B = 0.0, dF = 0.0;
        if (gamma != 0.0) {
            F = pow(qf, gamma);
            dF = gamma * F * ratio;
            dF_B = dF * B;
            d2F_B = gamma * F * ((gamma - 1.0) * ratio * ratio + curve) * B;
        }
        const double at = alpha < 0 ? 1.0 : alpha * ys + (1.0 - alpha) * r;
        double li = at * (F != 0.0 ? F * B : 0.0);
        double gi = at * (dF_B + F * dB);
        double d2 = at * (d2F_B + 2.0 * dF * dB + F * d2B);
        if (from_logits && cap > 0) {
            d2 = d2 * slope * slope - gi * 2.0 * (u / cap) * slope / cap;
            gi = gi * slope;
        }
        li = keep ? li : 0.0;
        acc += li;
        if (loss) loss[i] = (FX_T)li;
        if (h) h[i] = keep ? (FX_T)(gk * d2) : (FX_T)0;
        if (g) g[i] = keep ? (FX_T)(gk * gi) : (FX_T)0;
    }
    return acc;
}
