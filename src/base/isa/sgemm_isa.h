/* The per-instruction-set builds of sgemm_isa.c (one object per ISA, chosen
 * at run time by src/base/gemm.c). Row-major C (M x N, ldc) =
 * alpha op(A) op(B) + beta C, on the calling thread, in `work` (64-byte
 * aligned, ct_sgemm_work_<isa>() bytes). */
#ifndef CT_BASE_ISA_SGEMM_ISA_H
#define CT_BASE_ISA_SGEMM_ISA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the last pass over a C tile applies while it is in registers:
 * C = act(alpha op(A) op(B) + beta C + bias[j] + residual[i, j]). */
typedef enum { CT_EPI_NONE = 0, CT_EPI_QUICK_GELU, CT_EPI_GELU } ct_epi_act;
typedef struct ct_gemm_epilogue {
    const float *bias;     /* N values, or NULL            */
    const float *residual; /* M x N (ldr), or NULL         */
    int ldr;
    ct_epi_act act;
} ct_gemm_epilogue;

#define CT_SGEMM_DECLARE(isa)                                                                  \
    void ct_sgemm_##isa(bool ta, bool tb, int M, int N, int K, float alpha, const float *A,    \
                        int lda, const float *B, int ldb, float beta, float *C, int ldc,       \
                        const ct_gemm_epilogue *ep, float *work);                              \
    size_t ct_sgemm_work_##isa(void);                                                          \
    void ct_act_##isa(float *y, const float *x, size_t n, ct_epi_act act);                     \
    int ct_sgemm_nr_##isa(void);                                                               \
    int ct_sgemm_mr_##isa(void);

CT_SGEMM_DECLARE(avx512)
CT_SGEMM_DECLARE(avx2)
CT_SGEMM_DECLARE(generic)

/* bf16 weights (the AVX-512 build, on CPUs with AVX512_BF16): C (M x N,
 * ldc) = A (M x K, lda) Wᵀ with the epilogue, W packed by ct_wpack_bf16
 * (gemm.c; npad columns in all, this call's first panel panel0) in blocks
 * of CT_BF16_KC values of k and panels of CT_BF16_NR columns; `work` holds
 * ct_bgemm_work_avx512() bytes. */
#define CT_BF16_KC 512
#define CT_BF16_NR 64
void ct_bgemm_avx512(int M, int N, int K, const float *A, int lda, const uint32_t *W, int npad,
                     int panel0, float *C, int ldc, const ct_gemm_epilogue *ep, void *work);
size_t ct_bgemm_work_avx512(void);

#endif
