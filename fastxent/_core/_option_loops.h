/* The loops of the newer loss options, for float (suffix f) and double (suffix d): z-loss,
 * logit soft-capping and focal terms, on softmax rows (fx_option_row, fx_option_prob_row) and
 * binary elements (fx_bce_option).
 *
 * Rows and elements that use none of these options never come here: they keep the vector
 * loops of _loops.h. Here every per-class quantity is in double, and each term is formed from
 * the side on which it is small (1 - p at the arg-max as rest / (1 + rest), and (1 - p)^gamma
 * as pow of that, whose relative error is gamma times 1 - p's rather than gamma |log(1 - p)|
 * times it as exp(gamma log(1 - p)) would give), so confident rows keep their small losses
 * and derivatives. The loops over a row vectorise: each variant that calls pow or expm1
 * (libmvec has no masked variants, so such a call must not sit in a branch) is a loop of its
 * own with constant flags, and the arg-max (and the label) are fixed up after the loop. The
 * type-independent loops are here; the templates (_option_loops_impl.h) are included once per
 * type, as _loops.h does.
 */
#ifndef FASTXENT_OPTION_LOOPS_H
#define FASTXENT_OPTION_LOOPS_H

#include <math.h>

#include "_loops.h" /* fx_exp_sub */

/* The options of one call, the same for every row. */
struct fx_row_options {
    double z_loss;  /* s: adds s lse(u)^2 to each row (0: none) */
    double softcap; /* c: logits become u = c tanh(z / c) (0: none) */
    double gamma;   /* focal exponent: each class's term is scaled by (1 - p)^gamma */
};

/* The sums of one row that its derivatives need (fx_option_row). */
struct fx_row_sums {
    double S, S_rest;    /* sum_c a_c D_c, and without the arg-max */
    double T, T_rest;    /* sum_c a_c P_c, and without the arg-max */
    double rest, inv;    /* sum_{c != km} exp(u_c - m), 1 / (1 + rest) */
    double lse, z2, cap; /* log-sum-exp, 2 z_loss, the soft-cap (0: none) */
    double k;            /* the derivatives' scale */
};

/* Soft-capping: u = c tanh(z / c) and its slope du/dz = 1 - tanh(z / c)^2, from one expm1
 * (c > 0). With x = |z| / c and em = expm1(-2x): tanh x = -em / (2 + em), which keeps small
 * logits to the ulp where 1 - exp(-2x) would cancel, and 1 - tanh^2 x = 4 (1 + em) / (2 + em)^2,
 * which does not cancel where tanh is near 1. z = +-inf gives +-c and slope 0; NaN stays NaN. */
struct fx_capped {
    double u, slope;
};

static inline __attribute__((always_inline)) struct fx_capped fx_softcap(double z, double c) {
    const double em = expm1(-2.0 * (fabs(z) / c)), d = 2.0 + em;
    const struct fx_capped capped = {copysign(c * (-em / d), z), 4.0 * (1.0 + em) / (d * d)};
    return capped;
}

/* How q^gamma is formed, a constant of each loop variant (a call inside a branch would keep a
 * loop from vectorising): no focal term, q * q for gamma = 2, pow otherwise. */
enum { FX_POWER_NONE = 0, FX_POWER_POW = 1, FX_POWER_SQUARE = 2 };

static inline int fx_power_kind(double gamma) {
    return gamma == 0.0 ? FX_POWER_NONE : (gamma == 2.0 ? FX_POWER_SQUARE : FX_POWER_POW);
}

/* q^gamma for 0 <= q <= 1 as `power` says. */
static inline __attribute__((always_inline)) double fx_focal_power(const int power, double q,
                                                                   double gamma) {
    return power == FX_POWER_NONE ? 1.0 : (power == FX_POWER_SQUARE ? q * q : pow(q, gamma));
}

/* q^(gamma - 1) = F / q, with F = q^gamma, and its limit at q = 0 (0, 1 or inf for gamma
 * above, at or below 1). */
static inline double fx_focal_power_over(double F, double q, double gamma) {
    if (q > 0) return F / q;
    return gamma > 1.0 ? 0.0 : (gamma == 1.0 ? 1.0 : INFINITY);
}

/* The focal factors of one class with probability p, q = 1 - p and rho = p (-log p) / q:
 * F = q^gamma, D = F (1 + gamma rho), P = p dD/dp = gamma (F / q) (rho (1 - gamma p) - 2 p)
 * and P q^2 (formed without F / q); gamma == 0 gives 1, 1, 0, 0 (see fx_option_row). */
static inline __attribute__((always_inline)) void fx_focal_factors(const int power, double gamma,
                                                                   double p, double q, double rho,
                                                                   double *F, double *D, double *P,
                                                                   double *Pq2) {
    if (power == FX_POWER_NONE) {
        *F = *D = 1.0;
        *P = *Pq2 = 0.0;
        return;
    }
    const double shape = rho * (1.0 - gamma * p) - 2.0 * p;
    *F = fx_focal_power(power, q, gamma);
    *D = *F * (1.0 + gamma * rho);
    *P = gamma * fx_focal_power_over(*F, q, gamma) * shape;
    *Pq2 = gamma * *F * q * shape;
}

/* The sums over the classes of a row (but its arg-max km) that fx_option_row's gradient needs. */
struct fx_focal_sums {
    double lin;    /* sum_c a_c F_c nl_c, the loss of those classes */
    double S_rest; /* sum_c a_c D_c */
    double T_rest; /* sum_c a_c P_c */
};

/* fx_focal_sums' loop for one way of forming q^gamma: the focal factors of every class with
 * target weight A[c], probability e[c] inv and -log p = (m - u[c]) + l1p into D, P, Pq2, and
 * their sums; km's slots get the factors of q = 1, to be rewritten by the caller. */
static inline __attribute__((always_inline)) struct fx_focal_sums
fx_focal_sums_loop(const int power, double gamma, const double *A, const double *e, const double *u,
                   Py_ssize_t n, Py_ssize_t km, double inv, double m, double l1p, double *D,
                   double *P, double *Pq2) {
    double lin = 0.0, S_rest = 0.0, T_rest = 0.0;
#pragma omp simd reduction(+ : lin, S_rest, T_rest)
    for (Py_ssize_t c = 0; c < n; ++c) {
        const double a = c == km ? 0.0 : A[c];
        const double pc = c == km ? 0.0 : e[c] * inv, qc = 1.0 - pc;
        const double nl = c == km ? 0.0 : (m - u[c]) + l1p;
        double F, Dc, Pc, Pq2c;
        fx_focal_factors(power, gamma, pc, qc, pc > 0 ? pc * nl / qc : 0.0, &F, &Dc, &Pc, &Pq2c);
        D[c] = Dc;
        P[c] = Pc;
        Pq2[c] = Pq2c;
        lin += a != 0.0 ? a * F * nl : 0.0; /* nothing, even against an infinite term */
        S_rest += a * Dc;
        T_rest += a * Pc;
    }
    const struct fx_focal_sums sums = {lin, S_rest, T_rest};
    return sums;
}

/* fx_focal_sums_loop with the way of forming q^gamma as a constant of each loop. */
static inline struct fx_focal_sums fx_focal_sums(double gamma, const double *A, const double *e,
                                                 const double *u, Py_ssize_t n, Py_ssize_t km,
                                                 double inv, double m, double l1p, double *D,
                                                 double *P, double *Pq2) {
    switch (fx_power_kind(gamma)) {
    case FX_POWER_NONE:
        return fx_focal_sums_loop(FX_POWER_NONE, gamma, A, e, u, n, km, inv, m, l1p, D, P, Pq2);
    case FX_POWER_SQUARE:
        return fx_focal_sums_loop(FX_POWER_SQUARE, gamma, A, e, u, n, km, inv, m, l1p, D, P, Pq2);
    default:
        return fx_focal_sums_loop(FX_POWER_POW, gamma, A, e, u, n, km, inv, m, l1p, D, P, Pq2);
    }
}

/* Elements per chunk of fx_bce_option (stack buffers of doubles). */
#define FX_OPTION_CHUNK 256

/* Binary cross-entropy with soft-capping (cap, logits only) and focal terms (gamma, alpha)
 * over n elements in double (fx_bce_option widens a segment into these arrays): logits or
 * probabilities x (clipped to [lo, hi]), smoothed targets ys = y' and rs = 1 - y' (formed
 * from their small sides), kept (1, or 0 for an ignored element), weights w and pos_weight
 * pw. With B the element's cross-entropy as fx_bce computes it (of u = softcap(x)):
 *   q_f = 1 - p_t = sigma(u) r + sigma(-u) y'   (probabilities: cp r + (1 - cp) y'),
 *   loss = alpha_t q_f^gamma B,   alpha_t = alpha y' + (1 - alpha) r (alpha < 0: 1),
 * torchvision's sigmoid_focal_loss with Keras's label smoothing. Derivatives by the product
 * rule, with q_f' / q_f (0 where q_f = 0) in place of any negative power of q_f, then through
 * the soft-cap as in fx_option_row. Stores the losses, gk * gradients and gk * second
 * derivatives into loss, g and h; returns the sum of the losses. */
static inline __attribute__((always_inline)) double
fx_bce_option_loop(const int from_logits, const int capped, const int power, const double *x,
                   const double *ys, const double *rs, const double *kept, const double *w,
                   const double *pw, Py_ssize_t n, double lo, double hi, double cap, double gamma,
                   double alpha, double *loss, double *g, double *h, double gk) {
    double acc = 0.0;
#pragma omp simd reduction(+ : acc)
    for (Py_ssize_t i = 0; i < n; ++i) {
        const double ysi = ys[i], r = rs[i], wi = w[i], q = pw[i] * ysi, xi = x[i];
        double B, dB, d2B, qf, ratio, curve = 0.0, slope = 1.0, u = xi;
        if (from_logits) {
            if (capped) {
                const struct fx_capped soft = fx_softcap(xi, cap);
                u = soft.u;
                slope = soft.slope;
            }
            const double e = fx_exp2(-fabs(u), 0.0), lg = fx_log1p_unit(e); /* inline: vectorise */
            const double sp_pos = (u > 0 ? u : 0.0) + lg, sp_neg = (u < 0 ? -u : 0.0) + lg;
            const double big = 1.0 / (1.0 + e), small = e * big;
            const double sig = u >= 0 ? big : small, sig_neg = u >= 0 ? small : big;
            const double v = sig * sig_neg;
            B = wi * ((r != 0 ? r * sp_pos : 0.0) + (q != 0 ? q * sp_neg : 0.0));
            dB = wi * (r * sig - q * sig_neg);
            d2B = wi * (r + q) * v;
            qf = sig * r + sig_neg * ysi;
            ratio = qf > 0 ? (r - ysi) * v / qf : 0.0; /* q_f' / q_f */
            curve = ratio * (sig_neg - sig);           /* q_f'' / q_f */
        } else {
            const double cp = xi < lo ? lo : (xi > hi ? hi : xi);
            const double one_m = 1.0 - cp;
            B = -wi * ((q != 0 ? q * log(cp) : 0.0) + (r != 0 ? r * log1p(-cp) : 0.0));
            dB = -wi * ((q != 0 ? q / cp : 0.0) - (r != 0 ? r / one_m : 0.0));
            d2B = wi * ((q != 0 ? q / cp / cp : 0.0) + (r != 0 ? r / one_m / one_m : 0.0));
            qf = cp * r + one_m * ysi;
            ratio = qf > 0 ? (r - ysi) / qf : 0.0;
            curve = 0.0;
        }
        double F = 1.0, dF_B = 0.0, d2F_B = 0.0, dF = 0.0;
        if (power) {
            F = fx_focal_power(power, qf, gamma);
            dF = gamma * F * ratio;
            const double d2F = gamma * F * ((gamma - 1.0) * ratio * ratio + curve);
            dF_B = dF != 0.0 ? dF * B : 0.0; /* a zero factor against an infinite loss */
            d2F_B = d2F != 0.0 ? d2F * B : 0.0;
        }
        const double at = alpha < 0 ? 1.0 : alpha * ysi + (1.0 - alpha) * r;
        double li = at * (F != 0.0 ? F * B : 0.0);
        double gi = at * (dF_B + F * dB);
        double d2 = at * (d2F_B + 2.0 * dF * dB + F * d2B);
        if (capped) {
            d2 = d2 * slope * slope - gi * 2.0 * (u / cap) * slope / cap;
            gi = gi * slope;
        }
        const int keep = kept[i] != 0.0;
        li = keep ? li : 0.0;
        acc += li;
        loss[i] = li;
        h[i] = keep ? gk * d2 : 0.0;
        g[i] = keep ? gk * gi : 0.0;
    }
    return acc;
}

/* fx_bce_option_loop with its variant as constants: a call inside a branch (expm1, pow) would
 * keep the loop from vectorising. */
static inline __attribute__((always_inline)) double
fx_bce_option_power(const int from_logits, const int capped, const double *x, const double *ys,
                    const double *rs, const double *kept, const double *w, const double *pw,
                    Py_ssize_t n, double lo, double hi, double cap, double gamma, double alpha,
                    double *loss, double *g, double *h, double gk) {
    switch (fx_power_kind(gamma)) {
    case FX_POWER_NONE:
        return fx_bce_option_loop(from_logits, capped, FX_POWER_NONE, x, ys, rs, kept, w, pw, n, lo,
                                  hi, cap, gamma, alpha, loss, g, h, gk);
    case FX_POWER_SQUARE:
        return fx_bce_option_loop(from_logits, capped, FX_POWER_SQUARE, x, ys, rs, kept, w, pw, n,
                                  lo, hi, cap, gamma, alpha, loss, g, h, gk);
    default:
        return fx_bce_option_loop(from_logits, capped, FX_POWER_POW, x, ys, rs, kept, w, pw, n, lo,
                                  hi, cap, gamma, alpha, loss, g, h, gk);
    }
}

/* fx_bce_option_loop over n elements: logits with or without a soft-cap, or probabilities. */
static inline double fx_bce_option_core(int from_logits, const double *x, const double *ys,
                                        const double *rs, const double *kept, const double *w,
                                        const double *pw, Py_ssize_t n, double lo, double hi,
                                        double cap, double gamma, double alpha, double *loss,
                                        double *g, double *h, double gk) {
    if (from_logits && cap > 0)
        return fx_bce_option_power(1, 1, x, ys, rs, kept, w, pw, n, lo, hi, cap, gamma, alpha, loss,
                                   g, h, gk);
    if (from_logits)
        return fx_bce_option_power(1, 0, x, ys, rs, kept, w, pw, n, lo, hi, cap, gamma, alpha, loss,
                                   g, h, gk);
    return fx_bce_option_power(0, 0, x, ys, rs, kept, w, pw, n, lo, hi, cap, gamma, alpha, loss, g,
                               h, gk);
}

/* The typed loops: _option_loops_impl.h once per type. */
#define FX_TEMPLATE "_option_loops_impl.h"
#include "_each_type.h"

#endif
