/* The engine's own float GEMM: picks the instruction-set build of
 * base/isa/sgemm_isa.c for this CPU, splits the work between the engine's
 * threads (columns of C when there are enough, else rows: each thread an
 * independent sub-GEMM, so results do not depend on timing), and keeps one
 * packing workspace per OS thread (freed when the thread exits). */
#include "base/gemm.h"

#include <omp.h>
#include <pthread.h>
#include <stdlib.h>

#include "base/cpu.h"
#include "base/isa/sgemm_isa.h"

typedef void (*sgemm_fn)(bool, bool, int, int, int, float, const float *, int, const float *, int,
                         float, float *, int, const ct_gemm_epilogue *, float *);

static pthread_key_t g_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;
static void make_key(void) { (void)pthread_key_create(&g_key, free); }

static float *workspace(size_t bytes) {
    pthread_once(&g_key_once, make_key);
    float *w = pthread_getspecific(g_key);
    if (!w) {
        w = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        if (w && pthread_setspecific(g_key, w)) {
            free(w);
            w = NULL;
        }
    }
    return w;
}

/* The builds of sgemm_isa.c, indexed by ct_isa. */
static const struct isa_build {
    sgemm_fn gemm;
    size_t (*work)(void);
    int (*nr)(void), (*mr)(void);
    void (*act)(float *, const float *, size_t, ct_epi_act);
} g_builds[3] = {
    [CT_ISA_GENERIC] = {ct_sgemm_generic, ct_sgemm_work_generic, ct_sgemm_nr_generic,
                        ct_sgemm_mr_generic, ct_act_generic},
    [CT_ISA_AVX2] = {ct_sgemm_avx2, ct_sgemm_work_avx2, ct_sgemm_nr_avx2, ct_sgemm_mr_avx2,
                     ct_act_avx2},
    [CT_ISA_AVX512] = {ct_sgemm_avx512, ct_sgemm_work_avx512, ct_sgemm_nr_avx512,
                       ct_sgemm_mr_avx512, ct_act_avx512},
};

/* Work per thread below which another thread costs more than it saves. */
#define MIN_FLOPS_PER_THREAD 4e6

bool ct_sgemm_ex(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc,
                 const ct_gemm_epilogue *ep) {
    if (M <= 0 || N <= 0) return true;
    const struct isa_build *bld = &g_builds[ct_cpu_isa()];
    sgemm_fn fn = bld->gemm;
    size_t work = bld->work();
    int nr = bld->nr(), mr = bld->mr();
    /* the engine's thread count: ct_set_num_threads keeps OpenMP's in step */
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    double flops = 2.0 * M * N * (double)(K > 0 ? K : 1);
    if (nt > flops / MIN_FLOPS_PER_THREAD) nt = (int)(flops / MIN_FLOPS_PER_THREAD);
    if (nt < 1) nt = 1;
    /* split columns in whole micro-panels when each thread gets two or
     * more, else rows in whole micro-tiles (mr rows) */
    bool by_cols = N >= 2 * nr * nt;
    int units = by_cols ? (N + nr - 1) / nr : (M + mr - 1) / mr;
    if (nt > units) nt = units;
    if (nt <= 1) {
        float *w = workspace(work);
        if (!w) return false;
        fn(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep, w);
        return true;
    }
    int ok = 1;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        int u0 = (int)((long)units * t / n), u1 = (int)((long)units * (t + 1) / n);
        float *w = workspace(work);
        if (!w) {
#pragma omp atomic write
            ok = 0;
        }
#pragma omp barrier
        int go;
#pragma omp atomic read
        go = ok;
        if (go && u1 > u0 && by_cols) {
            int j0 = u0 * nr, j1 = u1 * nr < N ? u1 * nr : N;
            ct_gemm_epilogue e = ep ? *ep : (ct_gemm_epilogue){0};
            if (e.bias) e.bias += j0;
            if (e.residual) e.residual += j0;
            fn(ta, tb, M, j1 - j0, K, alpha, A, lda, tb ? B + (size_t)j0 * ldb : B + j0, ldb,
               beta, C + j0, ldc, ep ? &e : NULL, w);
        } else if (go && u1 > u0) {
            int i0 = u0 * mr, i1 = u1 * mr < M ? u1 * mr : M;
            ct_gemm_epilogue e = ep ? *ep : (ct_gemm_epilogue){0};
            if (e.residual) e.residual += (size_t)i0 * e.ldr;
            fn(ta, tb, i1 - i0, N, K, alpha, ta ? A + i0 : A + (size_t)i0 * lda, lda, B, ldb,
               beta, C + (size_t)i0 * ldc, ldc, ep ? &e : NULL, w);
        }
    }
    return ok;
}

bool ct_sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    return ct_sgemm_ex(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL);
}

void ct_sgemm_act(float *y, const float *x, size_t n, ct_epi_act act) {
    g_builds[ct_cpu_isa()].act(y, x, n, act);
}
