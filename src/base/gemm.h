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

/* A weight W (N x K, row-major, as nn.Linear stores it) rounded once to
 * bf16 and packed for C = A Wᵀ on CPUs with AVX512_BF16 (NULL where the CPU
 * lacks it, or out of memory). A is rounded to bf16 as it is packed and
 * the products are summed in fp32. */
typedef struct ct_wpack ct_wpack;
ct_wpack *ct_wpack_bf16(const float *W, int N, int K);
void ct_wpack_free(ct_wpack *p);
/* C (M x N, ldc) = A (M x K, lda) Wᵀ, then the epilogue (bias, residual,
 * activation) as ct_sgemm_ex's. False only when a workspace cannot be
 * allocated. */
bool ct_gemm_wpack(int M, const float *A, int lda, const ct_wpack *W, float *C, int ldc,
                   const ct_gemm_epilogue *ep);

#endif
