#include "base/blas.h"

#include <cblas.h>

#include "base/cpu.h"
#include "base/gemm.h"

static int g_blas_threads = 0;

#if defined(CT_BLAS_OPENBLAS)
void openblas_set_num_threads(int);
#elif defined(CT_BLAS_BLIS)
void bli_thread_set_num_threads(long);
#endif

void ct_blas_set_threads(int n) {
    if (n == g_blas_threads) return;
    g_blas_threads = n;
#if defined(CT_BLAS_OPENMP)
    /* OpenMP OpenBLAS shares our thread pool and runs single-threaded inside
     * a parallel region on its own; its openblas_set_num_threads would call
     * omp_set_num_threads and shrink our next parallel region. Nothing to do. */
#elif defined(CT_BLAS_OPENBLAS)
    openblas_set_num_threads(n);
#elif defined(CT_BLAS_BLIS)
    bli_thread_set_num_threads(n);
#endif
}

int ct_blas_get_threads(void) { return g_blas_threads; }

void ct_gemm(bool ta, bool tb, int M, int N, int K, ct_real alpha, const ct_real *A, int lda,
             const ct_real *B, int ldb, ct_real beta, ct_real *C, int ldc) {
    if (M == 0 || N == 0) return;
#ifdef CT_REAL_DOUBLE
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
                N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    /* the engine's own GEMM: fast on every CPU whatever BLAS's kernel choice */
    if (!ct_cpu_gemm_blas() && ct_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
        return;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
                N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

void ct_gemv(bool trans, int M, int N, ct_real alpha, const ct_real *A, int lda,
             const ct_real *x, ct_real beta, ct_real *y) {
    if (M == 0 || N == 0) return;
#ifdef CT_REAL_DOUBLE
    cblas_dgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, M, N, alpha, A, lda, x, 1, beta,
                y, 1);
#else
    cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, M, N, alpha, A, lda, x, 1, beta,
                y, 1);
#endif
}
