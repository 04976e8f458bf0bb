/* The engine's own GEMM (src/base/gemm.c, base/isa/sgemm_isa.c): every
 * instruction-set build the CPU can run, against a double-precision
 * reference, in all four transpositions, with edge sizes around the
 * micro-tile and block sizes, alpha/beta, leading dimensions larger than the
 * rows, and split between threads; the bf16-weight GEMM where the CPU has
 * AVX512_BF16; and the arena marks that let inference
 * free a block's activations. */
#include <stdlib.h>
#include <string.h>

#include "autograd/graph.h"
#include "base/cpu.h"
#include "base/gemm.h"
#include "base/isa/sgemm_isa.h"
#include "cliptune.h"
#include "harness.h"

typedef void (*isa_fn)(bool, bool, int, int, int, float, const float *, int, const float *, int,
                       float, float *, int, const ct_gemm_epilogue *, float *);

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) / (double)(1 << 24)) * 2 - 1;
}

/* C = alpha op(A) op(B) + beta C, in double. */
static void ref_gemm(bool ta, bool tb, int M, int N, int K, double alpha, const float *A, int lda,
                     const float *B, int ldb, double beta, double *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += (double)(ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]) *
                     (tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
            C[(size_t)i * ldc + j] = alpha * s + (beta == 0 ? 0 : beta * C[(size_t)i * ldc + j]);
        }
}

/* One case through fn (an ISA build on this thread) or, with fn NULL, the
 * threaded dispatcher. Returns false on a mismatch (reported). */
static bool one_case(isa_fn fn, float *work, const char *name, bool ta, bool tb, int M, int N,
                     int K, float alpha, float beta, int pad) {
    int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb;
    size_t nc = (size_t)M * ldc;
    float *A = malloc((na + 1) * sizeof *A), *B = malloc((nb + 1) * sizeof *B);
    float *C = malloc((nc + 1) * sizeof *C);
    double *want = malloc((nc + 1) * sizeof *want);
    uint64_t s = (uint64_t)M * 131 + (uint64_t)N * 17 + (uint64_t)K * 7 + ta * 2 + tb;
    for (size_t i = 0; i < na; i++) A[i] = frand(&s);
    for (size_t i = 0; i < nb; i++) B[i] = frand(&s);
    for (size_t i = 0; i < nc; i++) C[i] = frand(&s), want[i] = C[i];
    ref_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, want, ldc);
    if (fn)
        fn(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL, work);
    else
        CHECK(ct_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc));
    bool ok = true;
    double tol = 1e-5 * (K + 4) * (fabs(alpha) + 1);
    for (int i = 0; i < M && ok; i++)
        for (int j = 0; j < ldc && ok; j++) {
            /* j >= N: the padding, untouched in both */
            double w = want[(size_t)i * ldc + j], gv = C[(size_t)i * ldc + j];
            if (fabs(gv - w) > tol) {
                CHECK_MSG(0, "%s ta %d tb %d M %d N %d K %d alpha %g beta %g pad %d: C[%d,%d] = "
                          "%g, want %g", name, ta, tb, M, N, K, alpha, beta, pad, i, j, gv, w);
                ok = false;
            }
        }
    free(A), free(B), free(C), free(want);
    return ok;
}

static void sweep(isa_fn fn, float *work, const char *name) {
    static const int sizes[] = {1, 5, 6, 7, 15, 17, 63, 65, 145, 300};
    int n = (int)(sizeof sizes / sizeof *sizes), bad = 0;
    for (int t = 0; t < 4 && bad < 3; t++)
        for (int a = 0; a < n && bad < 3; a++)
            for (int b = 0; b < n && bad < 3; b++) {
                int M = sizes[a], N = sizes[b], K = sizes[(a + b + t) % n];
                bad += !one_case(fn, work, name, t & 1, t >> 1, M, N, K, 1, 0, (a + b) % 3);
            }
    /* K across several blocks, alpha and beta, N across several panels */
    bad += !one_case(fn, work, name, false, true, 37, 1100, 600, 0.5f, 1, 0);
    bad += !one_case(fn, work, name, true, false, 200, 130, 520, -2, 0.25f, 3);
    bad += !one_case(fn, work, name, true, true, 13, 70, 0, 1, 0.5f, 1);  /* K = 0 */
    bad += !one_case(fn, work, name, false, false, 150, 1030, 70, 1, 0, 2);
}

static void test_every_isa_matches_reference(void) {
    struct {
        const char *name;
        ct_isa isa;
        isa_fn fn;
        size_t (*work)(void);
    } paths[3] = {{"generic", CT_ISA_GENERIC, ct_sgemm_generic, ct_sgemm_work_generic},
                  {"avx2", CT_ISA_AVX2, ct_sgemm_avx2, ct_sgemm_work_avx2},
                  {"avx512", CT_ISA_AVX512, ct_sgemm_avx512, ct_sgemm_work_avx512}};
    int ran = 0;
    for (int p = 0; p < 3; p++) {
        if (paths[p].isa > ct_cpu_isa()) continue; /* this CPU cannot run it */
        float *work = aligned_alloc(64, paths[p].work());
        sweep(paths[p].fn, work, paths[p].name);
        free(work);
        ran++;
    }
    CHECK(ran >= 1);
    printf("  paths tested: %d (this process runs \"%s\")\n", ran, ct_cpu_path());
}

/* act(A Bᵀ + bias + res) against double; fn NULL: the threaded dispatcher. */
static void epi_case(isa_fn fn, float *work, const char *name, int M, int N, int K,
                     ct_epi_act act, bool bias, bool res) {
    float *A = malloc((size_t)M * K * 4 + 4), *B = malloc((size_t)N * K * 4 + 4);
    float *C = malloc((size_t)M * N * 4 + 4), *R = malloc((size_t)M * N * 4 + 4);
    float *bv = malloc((size_t)N * 4 + 4);
    uint64_t s = (uint64_t)M * 7 + (uint64_t)N * 3 + (uint64_t)K + act;
    for (int i = 0; i < M * K; i++) A[i] = frand(&s);
    for (int i = 0; i < N * K; i++) B[i] = frand(&s);
    for (int i = 0; i < M * N; i++) R[i] = 2 * frand(&s), C[i] = 1e30f; /* beta 0: ignored */
    for (int i = 0; i < N; i++) bv[i] = frand(&s);
    ct_gemm_epilogue ep = {bias ? bv : NULL, res ? R : NULL, N, act};
    if (fn)
        fn(false, true, M, N, K, 1, A, K, B, K, 0, C, N, &ep, work);
    else
        CHECK(ct_sgemm_ex(false, true, M, N, K, 1, A, K, B, K, 0, C, N, &ep));
    int bad = 0;
    for (int i = 0; i < M && bad < 3; i++)
        for (int j = 0; j < N && bad < 3; j++) {
            double y = 0;
            for (int k = 0; k < K; k++) y += (double)A[i * K + k] * B[j * K + k];
            if (bias) y += bv[j];
            if (res) y += R[i * N + j];
            if (act == CT_EPI_QUICK_GELU) y = y / (1 + exp(-1.702 * y));
            if (act == CT_EPI_GELU) y = 0.5 * y * (1 + erf(y / sqrt(2.0)));
            if (fabs(C[i * N + j] - y) > 1e-5 * (K + 4)) {
                CHECK_MSG(0, "%s epilogue act %d bias %d res %d M %d N %d K %d: C[%d,%d] = %g, "
                          "want %g", name, act, bias, res, M, N, K, i, j, C[i * N + j], y);
                bad++;
            }
        }
    free(A), free(B), free(C), free(R), free(bv);
}

static void test_epilogue(void) {
    isa_fn fns[3] = {ct_sgemm_generic, ct_sgemm_avx2, ct_sgemm_avx512};
    size_t (*works[3])(void) = {ct_sgemm_work_generic, ct_sgemm_work_avx2, ct_sgemm_work_avx512};
    const char *names[3] = {"generic", "avx2", "avx512"};
    for (int p = 0; p <= (int)ct_cpu_isa(); p++) {
        float *work = aligned_alloc(64, works[p]());
        for (int act = 0; act < 3; act++) {
            epi_case(fns[p], work, names[p], 13, 70, 600, (ct_epi_act)act, true, true);
            epi_case(fns[p], work, names[p], 150, 1030, 40, (ct_epi_act)act, act != 1, act != 2);
            epi_case(fns[p], work, names[p], 6, 64, 9, (ct_epi_act)act, true, false);
        }
        epi_case(fns[p], work, names[p], 7, 5, 0, CT_EPI_QUICK_GELU, true, true); /* K = 0 */
        free(work);
    }
    int old = ct_get_num_threads();
    for (int nt = 1; nt <= 2; nt++) {
        ct_set_num_threads(nt);
        epi_case(NULL, NULL, "dispatch", 800, 768, 96, CT_EPI_QUICK_GELU, true, true);
        epi_case(NULL, NULL, "dispatch", 1000, 17, 50, CT_EPI_GELU, true, true);
    }
    ct_set_num_threads(old);
}

static void test_threaded_dispatch(void) {
    /* the dispatcher splits by columns or rows between threads; the result
     * must not depend on the thread count */
    int old = ct_get_num_threads();
    for (int nt = 1; nt <= 3; nt++) {
        ct_set_num_threads(nt);
        one_case(NULL, NULL, "dispatch", false, true, 1600, 768, 96, 1, 0, 0);
        one_case(NULL, NULL, "dispatch", true, false, 700, 40, 300, 1, 1, 1);
        one_case(NULL, NULL, "dispatch", false, false, 5, 3000, 64, 1, 0, 0);
    }
    ct_set_num_threads(old);
}

static double bf16_of(float f) { /* round to nearest even, as the CPU does */
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u = (u + 0x7fffu + ((u >> 16) & 1)) & 0xffff0000u;
    float r;
    memcpy(&r, &u, sizeof r);
    return r;
}

/* C = A Wᵀ + bias + residual, act, through packed bf16 weights, against
 * the same arithmetic in double on the bf16-rounded operands (the products
 * of bf16 values are exact in fp32: only the fp32 sums differ; without the
 * rounding of A the error is 20x the bound). */
static void wpack_case(int M, int N, int K, ct_epi_act act, bool bias, bool res) {
    float *A = malloc((size_t)M * K * sizeof *A), *W = malloc((size_t)N * K * sizeof *W);
    float *C = malloc((size_t)M * N * sizeof *C), *R = malloc((size_t)M * N * sizeof *R);
    float *bv = malloc((size_t)N * sizeof *bv);
    uint64_t s = (uint64_t)M * 7 + (uint64_t)N * 13 + (uint64_t)K;
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = frand(&s);
    for (size_t i = 0; i < (size_t)N * K; i++) W[i] = frand(&s);
    for (size_t i = 0; i < (size_t)M * N; i++) R[i] = frand(&s), C[i] = 12345;
    for (int j = 0; j < N; j++) bv[j] = frand(&s);
    ct_wpack *P = ct_wpack_bf16(W, N, K);
    CHECK(P != NULL);
    ct_gemm_epilogue ep = {bias ? bv : NULL, res ? R : NULL, N, act};
    CHECK(P && ct_gemm_wpack(M, A, K, P, C, N, &ep));
    double worst = 0;
    for (int i = 0; i < M && P; i++)
        for (int j = 0; j < N; j++) {
            double y = 0, sa = 0;
            for (int k = 0; k < K; k++) {
                double t = bf16_of(A[(size_t)i * K + k]) * bf16_of(W[(size_t)j * K + k]);
                y += t, sa += fabs(t);
            }
            if (bias) y += bv[j];
            if (res) y += R[(size_t)i * N + j];
            if (act == CT_EPI_QUICK_GELU) y = y / (1 + exp(-1.702 * y));
            if (act == CT_EPI_GELU) y = 0.5 * y * (1 + erf(y / sqrt(2.0)));
            double d = fabs(C[(size_t)i * N + j] - y) / (sa + 4);
            if (d > worst) worst = d;
        }
    CHECK_MSG(worst < 1e-5, "bf16 GEMM %dx%dx%d act %d: error %.2g of the sum of |products|", M,
              N, K, (int)act, worst);
    ct_wpack_free(P);
    free(A), free(W), free(C), free(R), free(bv);
}

static void test_bf16_weights(void) {
    if (!ct_cpu_has_bf16()) {
        printf("  this CPU (or the forced path) has no AVX512_BF16: nothing to run\n");
        CHECK(ct_wpack_bf16((const float[4]){1, 2, 3, 4}, 2, 2) == NULL);
        return;
    }
    int old = ct_get_num_threads();
    for (int nt = 1; nt <= 2; nt++) {
        ct_set_num_threads(nt);
        wpack_case(50, 768, 768, CT_EPI_NONE, true, false);      /* a projection        */
        wpack_case(13, 70, 1031, CT_EPI_QUICK_GELU, true, true); /* ragged, odd K > KC  */
        wpack_case(400, 130, 64, CT_EPI_GELU, false, true);      /* rows past a block   */
        wpack_case(7, 5, 3, CT_EPI_NONE, false, false);
    }
    ct_set_num_threads(old);
}

static void test_keep_frees_a_stretch(void) {
    ct_graph *g = ct_graph_create(1 << 16);
    ct_graph_set_grad(g, false);
    int64_t s[2] = {64, 256};
    ct_tensor *x = ct_graph_tensor(g, 2, s);
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = (ct_real)i;
    ct_graph_mark m = ct_graph_get_mark(g);
    size_t base = ct_graph_arena_used(g);
    for (int l = 0; l < 20; l++) {
        ct_tensor *h = ct_gelu(g, ct_scale(g, x, 1));
        for (int r = 0; r < 4; r++) h = ct_add(g, h, x);
        x = ct_graph_keep(g, &m, ct_scale(g, ct_sub(g, h, ct_gelu(g, x)), 0.25f));
        CHECK(x);
        /* one tensor (plus its header) survives each stretch */
        CHECK(ct_graph_arena_used(g) - base < (size_t)x->numel * sizeof(ct_real) + 256);
    }
    for (int64_t i = 0; i < x->numel; i++)
        if (fabs(x->data[i] - (ct_real)i) > 1e-3 * (1 + i)) {
            CHECK_MSG(0, "x[%lld] = %g, want %g", (long long)i, x->data[i], (double)i);
            break;
        }
    /* with a tape the stretch is kept (backward reads it) */
    ct_graph_reset(g);
    ct_graph_set_grad(g, true);
    ct_tensor *w = ct_tensor_new(2, s, true);
    m = ct_graph_get_mark(g);
    size_t before = ct_graph_arena_used(g);
    ct_tensor *y = ct_graph_keep(g, &m, ct_gelu(g, w));
    CHECK(y && y->node && ct_graph_arena_used(g) > before);
    ct_tensor_free(w);
    ct_graph_free(g);
}

int main(void) {
    RUN(test_every_isa_matches_reference);
    RUN(test_epilogue);
    RUN(test_threaded_dispatch);
    RUN(test_bf16_weights);
    RUN(test_keep_frees_a_stretch);
    return ct_test_summary();
}
