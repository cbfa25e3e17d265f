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

/* Soft-capping: u = c tanh(z / c) (c == 0: u = z). tanh keeps small logits exact. */
static inline double fx_softcap(double z, double c) { return c > 0 ? c * tanh(z / c) : z; }

/* du/dz = 1 - tanh(z / c)^2 = 4 e / (1 + e)^2 with e = exp(-2 |z| / c): no cancellation when
 * tanh is near 1 (c == 0: 1). */
static inline double fx_softcap_slope(double z, double c) {
    if (!(c > 0)) return 1.0;
    const double e = exp(-2.0 * fabs(z) / c);
    return 4.0 * e / ((1.0 + e) * (1.0 + e));
}

/* The typed loops: _option_loops_impl.h once per type. */
#define FX_TEMPLATE "_option_loops_impl.h"
#include "_each_type.h"

#endif
