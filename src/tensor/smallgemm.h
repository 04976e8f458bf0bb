/* Register-blocked GEMM for the small, many-times-repeated products inside
 * fused attention (e.g. 50 x 50 x 64 per head), where a BLAS call's packing
 * and dispatch cost more than the arithmetic. Written with GCC vector
 * extensions (no intrinsics), 64-byte vectors whatever the build: the float
 * library has an AVX-512, an AVX2 and a baseline build and picks one at run
 * time (smallgemm_dispatch.c); works for ct_real = float or double. */
#ifndef CT_TENSOR_SMALLGEMM_H
#define CT_TENSOR_SMALLGEMM_H

#include "cliptune.h"

/* Values per vector register. */
#define CT_VW ((int)(64 / sizeof(ct_real)))

/* Columns a packed B must be padded to (a multiple of the vector width). */
static inline int ct_small_ldb(int n) { return (n + CT_VW - 1) / CT_VW * CT_VW; }

/* C (M, N; row stride ldc) = alpha * A (M, K; row stride lda) @ B + beta * C,
 * where B (K, N) is row-major with row stride ldb = ct_small_ldb(N) and zero
 * padding in columns [N, ldb) (pack with the helpers below). beta == 0 never
 * reads C. */
void small_gemm(int M, int N, int K, ct_real alpha, const ct_real *A, int lda, const ct_real *B,
                int ldb, ct_real beta, ct_real *C, int ldc);

/* dst (rows, ldb) = src (rows, cols; row stride lds), zero padded. */
void small_pack(ct_real *dst, const ct_real *src, int rows, int cols, int lds);
/* dst (cols, ldb) = src^T for src (rows, cols; row stride lds), so that
 * ldb = ct_small_ldb(rows), zero padded. */
void small_pack_t(ct_real *dst, const ct_real *src, int rows, int cols, int lds);

/* y[i] = exp(x[i]) for n values (vectorised, within 2 ulp in float). */
void small_exp(ct_real *y, const ct_real *x, int n);

#endif
