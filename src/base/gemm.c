/* The engine's own float GEMM: picks the instruction-set build of
 * base/isa/sgemm_isa.c for this CPU, splits the work between the engine's
 * threads (columns of C when there are enough, else rows: each thread an
 * independent sub-GEMM, so results do not depend on timing), and keeps one
 * packing workspace per OS thread (freed when the thread exits). */
#include "base/gemm.h"

#include <omp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/cpu.h"
#include "base/isa/sgemm_isa.h"

typedef void (*sgemm_fn)(bool, bool, int, int, int, float, const float *, int, const float *, int,
                         float, float *, int, const ct_gemm_epilogue *, float *);

static pthread_key_t g_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;
static void make_key(void) { (void)pthread_key_create(&g_key, free); }

/* This OS thread's workspace of at least `bytes` (64-byte aligned; its
 * size kept in the first 64 bytes), grown when a caller needs more. */
static void *workspace(size_t bytes) {
    pthread_once(&g_key_once, make_key);
    size_t *w = pthread_getspecific(g_key);
    if (w && w[0] >= bytes) return (char *)w + 64;
    size_t *n = aligned_alloc(64, 64 + ((bytes + 63) & ~(size_t)63));
    if (!n || pthread_setspecific(g_key, n)) {
        free(n);
        return NULL;
    }
    free(w);
    n[0] = bytes;
    return (char *)n + 64;
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

/* Computes rows [i0, i1) x columns [j0, j1) of the result, on the calling
 * thread, in workspace w. */
typedef void (*part_fn)(const void *ctx, int i0, int i1, int j0, int j1, void *w);

/* Splits an M x N result (flops of work) between the engine's threads:
 * columns in whole nr-column panels when each thread gets two or more,
 * else rows in whole mr-row tiles (rows first when each thread gets
 * rows_first tiles or more); each part independent, so results do not
 * depend on timing. False when a workspace cannot be allocated. */
static bool split(int M, int N, double flops, int mr, int nr, int rows_first, size_t work,
                  part_fn part, const void *ctx) {
    /* the engine's thread count: ct_set_num_threads keeps OpenMP's in step */
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (nt > flops / MIN_FLOPS_PER_THREAD) nt = (int)(flops / MIN_FLOPS_PER_THREAD);
    if (nt < 1) nt = 1;
    bool by_cols = N >= 2 * nr * nt && !(rows_first && M >= rows_first * mr * nt);
    int units = by_cols ? (N + nr - 1) / nr : (M + mr - 1) / mr;
    if (nt > units) nt = units;
    if (nt <= 1) {
        void *w = workspace(work);
        if (!w) return false;
        part(ctx, 0, M, 0, N, w);
        return true;
    }
    int ok = 1;
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        int u0 = (int)((long)units * t / n), u1 = (int)((long)units * (t + 1) / n);
        void *w = workspace(work);
        if (!w) {
#pragma omp atomic write
            ok = 0;
        }
#pragma omp barrier
        int go;
#pragma omp atomic read
        go = ok;
        if (go && u1 > u0 && by_cols)
            part(ctx, 0, M, u0 * nr, u1 * nr < N ? u1 * nr : N, w);
        else if (go && u1 > u0)
            part(ctx, u0 * mr, u1 * mr < M ? u1 * mr : M, 0, N, w);
    }
    return ok;
}

/* an epilogue's operands at result position (i0, j0) */
static ct_gemm_epilogue epi_at(const ct_gemm_epilogue *ep, int i0, int j0) {
    ct_gemm_epilogue e = *ep;
    if (e.bias) e.bias += j0;
    if (e.residual) e.residual += (size_t)i0 * e.ldr + j0;
    return e;
}

typedef struct {
    sgemm_fn fn;
    bool ta, tb;
    int K, lda, ldb, ldc;
    float alpha, beta;
    const float *A, *B;
    float *C;
    const ct_gemm_epilogue *ep;
} sgemm_job;

static void sgemm_part(const void *ctx, int i0, int i1, int j0, int j1, void *w) {
    const sgemm_job *j = ctx;
    ct_gemm_epilogue e = j->ep ? epi_at(j->ep, i0, j0) : (ct_gemm_epilogue){0};
    const float *A = j->ta ? j->A + i0 : j->A + (size_t)i0 * j->lda;
    const float *B = j->tb ? j->B + (size_t)j0 * j->ldb : j->B + j0;
    j->fn(j->ta, j->tb, i1 - i0, j1 - j0, j->K, j->alpha, A, j->lda, B, j->ldb, j->beta,
          j->C + (size_t)i0 * j->ldc + j0, j->ldc, j->ep ? &e : NULL, w);
}

bool ct_sgemm_ex(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc,
                 const ct_gemm_epilogue *ep) {
    if (M <= 0 || N <= 0) return true;
    const struct isa_build *bld = &g_builds[ct_cpu_isa()];
    sgemm_job j = {bld->gemm, ta, tb, K, lda, ldb, ldc, alpha, beta, A, B, C, ep};
    double flops = 2.0 * M * N * (double)(K > 0 ? K : 1);
    return split(M, N, flops, bld->mr(), bld->nr(), 0, bld->work(), sgemm_part, &j);
}

bool ct_sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    return ct_sgemm_ex(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL);
}

void ct_sgemm_act(float *y, const float *x, size_t n, ct_epi_act act) {
    g_builds[ct_cpu_isa()].act(y, x, n, act);
}

/* ---- bf16 weights ---- */

struct ct_wpack {
    int n, k, npad; /* W is n x k; npad columns in whole panels */
    uint32_t *w;
};

static uint16_t to_bf16(float f) { /* round to nearest even, as VCVTNE2PS2BF16 */
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

ct_wpack *ct_wpack_bf16(const float *W, int N, int K) {
#if defined(__x86_64__)
    if (!ct_cpu_has_bf16() || N <= 0 || K <= 0) return NULL;
    ct_wpack *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    int np = (N + CT_BF16_NR - 1) / CT_BF16_NR;
    p->n = N, p->k = K, p->npad = np * CT_BF16_NR;
    /* blocks of CT_BF16_KC (even) values of k; the last one's pairs padded */
    size_t words = (size_t)p->npad * (size_t)((K + 1) / 2);
    p->w = aligned_alloc(64, (words * sizeof(uint32_t) + 63) & ~(size_t)63);
    if (!p->w) {
        free(p);
        return NULL;
    }
    for (int k0 = 0; k0 < K; k0 += CT_BF16_KC) {
        int kc = K - k0 < CT_BF16_KC ? K - k0 : CT_BF16_KC, kcp = (kc + 1) / 2;
        uint32_t *blk = p->w + (size_t)(k0 / 2) * p->npad;
        for (int j = 0; j < np; j++)
            for (int q = 0; q < kcp; q++)
                for (int c = 0; c < CT_BF16_NR; c++) {
                    int n = j * CT_BF16_NR + c, k = k0 + 2 * q;
                    uint32_t lo = 0, hi = 0;
                    if (n < N) {
                        lo = to_bf16(W[(size_t)n * K + k]);
                        if (k + 1 < K) hi = to_bf16(W[(size_t)n * K + k + 1]);
                    }
                    blk[((size_t)j * kcp + q) * CT_BF16_NR + c] = lo | hi << 16;
                }
    }
    return p;
#else
    (void)W, (void)N, (void)K;
    return NULL;
#endif
}

void ct_wpack_free(ct_wpack *p) {
    if (!p) return;
    free(p->w);
    free(p);
}

typedef struct {
    const float *A;
    int lda, ldc;
    const ct_wpack *W;
    float *C;
    const ct_gemm_epilogue *ep;
} wpack_job;

static void wpack_part(const void *ctx, int i0, int i1, int j0, int j1, void *w) {
#if defined(__x86_64__)
    const wpack_job *j = ctx;
    ct_gemm_epilogue e = j->ep ? epi_at(j->ep, i0, j0) : (ct_gemm_epilogue){0};
    ct_bgemm_avx512(i1 - i0, j1 - j0, j->W->k, j->A + (size_t)i0 * j->lda, j->lda, j->W->w,
                    j->W->npad, j0 / CT_BF16_NR, j->C + (size_t)i0 * j->ldc + j0, j->ldc,
                    j->ep ? &e : NULL, w);
#else
    (void)ctx, (void)i0, (void)i1, (void)j0, (void)j1, (void)w;
#endif
}

bool ct_gemm_wpack(int M, const float *A, int lda, const ct_wpack *W, float *C, int ldc,
                   const ct_gemm_epilogue *ep) {
#if defined(__x86_64__)
    if (M <= 0) return true;
    wpack_job j = {A, lda, ldc, W, C, ep};
    /* bf16 products count half: the thread split sees the time, not flops.
     * Rows first when there are many: a column split would have every
     * thread round all of A to bf16 (12% of the time at ViT-B/16). */
    double flops = 1.0 * M * W->n * (double)W->k;
    return split(M, W->n, flops, ct_sgemm_mr_avx512(), CT_BF16_NR, 16, ct_bgemm_work_avx512(),
                 wpack_part, &j);
#else
    (void)M, (void)A, (void)lda, (void)W, (void)C, (void)ldc, (void)ep;
    return false;
#endif
}
