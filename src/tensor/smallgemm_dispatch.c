/* The float library's small_gemm family: one build of smallgemm.c per
 * instruction set, chosen once at run time like the big GEMM's
 * (base/cpu.h; CLIPTUNE_ISA forces a path). The packed layouts do not
 * depend on the build (vectors are 64 bytes in all three), so buffers
 * packed by one are read by any. The double engine of the gradient checks
 * compiles smallgemm.c plainly instead of this file. */
#ifndef CT_REAL_DOUBLE
#include "base/cpu.h"
#include "tensor/smallgemm.h"

#define DECLARE(isa)                                                                            \
    void small_gemm_##isa(int, int, int, float, const float *, int, const float *, int, float, \
                          float *, int);                                                        \
    void small_pack_##isa(float *, const float *, int, int, int);                               \
    void small_pack_t_##isa(float *, const float *, int, int, int);                             \
    void small_exp_##isa(float *, const float *, int);
DECLARE(generic)
DECLARE(avx2)
DECLARE(avx512)

static const struct {
    void (*gemm)(int, int, int, float, const float *, int, const float *, int, float, float *,
                 int);
    void (*exp)(float *, const float *, int);
} g_small[3] = {
    [CT_ISA_GENERIC] = {small_gemm_generic, small_exp_generic},
    [CT_ISA_AVX2] = {small_gemm_avx2, small_exp_avx2},
    [CT_ISA_AVX512] = {small_gemm_avx512, small_exp_avx512},
};

void small_gemm(int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                float beta, float *C, int ldc) {
    g_small[ct_cpu_isa()].gemm(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void small_exp(float *y, const float *x, int n) { g_small[ct_cpu_isa()].exp(y, x, n); }

/* packing is copying: any build will do */
void small_pack(float *dst, const float *src, int rows, int cols, int lds) {
    small_pack_generic(dst, src, rows, cols, lds);
}

void small_pack_t(float *dst, const float *src, int rows, int cols, int lds) {
    small_pack_t_generic(dst, src, rows, cols, lds);
}
#endif
