/* Includes the template FX_TEMPLATE (a quoted file name) once per floating-point type, with
 *   FX_T          float, then double,
 *   FX_NAME(base) base##_f, then base##_d,
 * and undefines all three afterwards. No include guard: _loops.h and _eval_loops.h each
 * include it once, for their own template. */
#ifndef FX_TEMPLATE
#error "define FX_TEMPLATE, the template to include once per type, before including _each_type.h"
#endif

#define FX_T float
#define FX_NAME(base) base##_f
#include FX_TEMPLATE
#undef FX_T
#undef FX_NAME

#define FX_T double
#define FX_NAME(base) base##_d
#include FX_TEMPLATE
#undef FX_T
#undef FX_NAME

#undef FX_TEMPLATE
