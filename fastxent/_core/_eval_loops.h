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

/* The typed loops: _eval_loops_impl.h once per type. */
#define FX_TEMPLATE "_eval_loops_impl.h"
#include "_each_type.h"

#endif
