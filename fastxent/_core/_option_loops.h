/* The loops of the newer loss options, for float (suffix f) and double (suffix d): z-loss,
 * logit soft-capping and focal terms, on softmax rows (fx_option_row, fx_option_prob_row) and
 * binary elements (fx_bce_option).
 *
 * Rows and elements that use none of these options never come here: they keep the vector
 * loops of _loops.h. These are plain scalar C over one row (or segment), with every per-class
 * quantity in double, written for precision rather than speed: each term is formed from the
 * side on which it is small (1 - p at the arg-max as rest / (1 + rest), and (1 - p)^gamma as
 * pow of that, whose relative error is gamma times 1 - p's rather than gamma |log(1 - p)|
 * times it as exp(gamma log(1 - p)) would give), so confident rows keep their small losses
 * and derivatives. The templates are included once per type, as _loops.h does.
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
static inline double fx_softcap(double z, double c, double *slope) {
    const double em = expm1(-2.0 * (fabs(z) / c)), d = 2.0 + em;
    *slope = 4.0 * (1.0 + em) / (d * d);
    return copysign(c * (-em / d), z);
}

/* q^gamma for 0 <= q <= 1: exact products for the usual exponents, pow otherwise. */
static inline double fx_focal_power(double q, double gamma) {
    if (gamma == 2.0) return q * q;
    if (gamma == 1.0) return q;
    return pow(q, gamma);
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
static inline __attribute__((always_inline)) void fx_focal_factors(double gamma, double p, double q,
                                                                   double rho, double *F, double *D,
                                                                   double *P, double *Pq2) {
    if (gamma == 0.0) {
        *F = *D = 1.0;
        *P = *Pq2 = 0.0;
        return;
    }
    const double shape = rho * (1.0 - gamma * p) - 2.0 * p;
    *F = fx_focal_power(q, gamma);
    *D = *F * (1.0 + gamma * rho);
    *P = gamma * fx_focal_power_over(*F, q, gamma) * shape;
    *Pq2 = gamma * *F * q * shape;
}

/* The typed loops: _option_loops_impl.h once per type. */
#define FX_TEMPLATE "_option_loops_impl.h"
#include "_each_type.h"

#endif
