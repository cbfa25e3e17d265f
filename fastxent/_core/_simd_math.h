/* <math.h> plus glibc's SIMD (libmvec) variants of the functions fastxent's loops call.
 *
 * glibc only declares its vector math under -ffast-math, which would also fold isnan() and
 * break NaN/inf semantics. These declarations tell GCC the vector variants exist without any
 * fast-math flag; libmvec keeps IEEE special values (NaN, +-inf) and is accurate to <= 4 ulp.
 * Link with -lm. Define FASTXENT_NO_LIBMVEC to fall back to scalar libm.
 */
#ifndef FASTXENT_SIMD_MATH_H
#define FASTXENT_SIMD_MATH_H
#include <math.h>
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__) \
    && !defined(__FAST_MATH__) && !defined(FASTXENT_NO_LIBMVEC)
#define FASTXENT_LIBMVEC 1
__attribute__((simd("notinbranch"))) float expf(float);
__attribute__((simd("notinbranch"))) double exp(double);
__attribute__((simd("notinbranch"))) float logf(float);
__attribute__((simd("notinbranch"))) double log(double);
__attribute__((simd("notinbranch"))) float log1pf(float);
__attribute__((simd("notinbranch"))) double log1p(double);
__attribute__((simd("notinbranch"))) double pow(double, double);
#if defined(__GLIBC_PREREQ) && __GLIBC_PREREQ(2, 35) /* libmvec's expm1 came in glibc 2.35 */
__attribute__((simd("notinbranch"))) double expm1(double);
#endif
#else
#define FASTXENT_LIBMVEC 0
#endif
#endif
