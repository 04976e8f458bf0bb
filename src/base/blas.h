/* The one place that talks to CBLAS. Row-major GEMM in ct_real precision:
 * C = alpha * op(A) op(B) + beta * C, op = transpose when ta/tb. */
#ifndef CT_BASE_BLAS_H
#define CT_BASE_BLAS_H

#include <stdbool.h>

#include "cliptune.h"

void ct_gemm(bool ta, bool tb, int M, int N, int K, ct_real alpha, const ct_real *A, int lda,
             const ct_real *B, int ldb, ct_real beta, ct_real *C, int ldc);
/* y (N) = alpha * A^T x + beta * y for row-major A (M, N) when trans, else
 * y (M) = alpha * A x + beta * y. */
void ct_gemv(bool trans, int M, int N, ct_real alpha, const ct_real *A, int lda,
             const ct_real *x, ct_real beta, ct_real *y);
/* Tell the BLAS library how many threads to use (no-op where unsupported). */
void ct_blas_set_threads(int n);
/* Current BLAS thread count as set through ct_blas_set_threads. */
int ct_blas_get_threads(void);

#endif
