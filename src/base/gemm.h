/* The engine's float GEMM (gemm.c), what ct_gemm uses unless
 * CLIPTUNE_GEMM=blas. Row-major C = alpha op(A) op(B) + beta C. False only
 * when a packing workspace cannot be allocated (the caller then falls back
 * to BLAS). */
#ifndef CT_BASE_GEMM_H
#define CT_BASE_GEMM_H

#include <stdbool.h>

#include "base/isa/sgemm_isa.h"

bool ct_sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);
/* The same with an epilogue applied as each tile of C is finished:
 * C = act(alpha op(A) op(B) + beta C + bias + residual); the residual
 * must not overlap C. */
bool ct_sgemm_ex(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc,
                 const ct_gemm_epilogue *ep);
/* y = act(x) elementwise (y may be x), with the very instructions of the
 * epilogue: an unfused activation gives the fused result bit for bit. */
void ct_sgemm_act(float *y, const float *x, size_t n, ct_epi_act act);

#endif
