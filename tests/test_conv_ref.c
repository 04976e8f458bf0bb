/* The float library's convolution family and Sinkhorn against PyTorch
 * (tests/fixtures/conv_ref.h, from tools/ref/gen_conv_ref.py): conv2d with
 * stride, padding and bias; CLIP's ViT patch embedding (conv1 + reshape +
 * permute) with a floor remainder; eval-mode batch norm; average pooling; and
 * PLOT's Sinkhorn (plan and iteration count, uniform and given marginals).
 *
 * The reference is float64 torch fed float32-exact inputs, so the float build
 * differs only by its own rounding: |got - ref| <= 1e-5 + 1e-5 |ref|. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cliptune.h"
#include "fixtures/conv_ref.h"
#include "harness.h"
#include "tensor/kernels.h"

#define ATOL 1e-5
#define RTOL 1e-5
#define SHAPE(...) (int64_t[]){__VA_ARGS__}

static ct_tensor *from_ref(int ndim, const int64_t *shape, const double *v) {
    ct_tensor *t = ct_tensor_new(ndim, shape, false);
    if (!t) {
        fprintf(stderr, "ct_tensor_new: %s\n", ct_last_error());
        abort();
    }
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = (ct_real)v[i];
    return t;
}

static void check_ref(const char *file, int line, const char *name, const ct_tensor *got,
                      const double *want, size_t n) {
    if (!got) {
        ct_test_fail(file, line, "%s: op failed: %s", name, ct_last_error());
        return;
    }
    if ((size_t)got->numel != n) {
        ct_test_fail(file, line, "%s: %lld values, reference has %zu", name,
                     (long long)got->numel, n);
        return;
    }
    double *g = malloc(n * sizeof *g);
    for (size_t i = 0; i < n; i++) g[i] = (double)got->data[i];
    ct_check_close_d(file, line, name, g, want, n, ATOL, RTOL);
    free(g);
}
#define CHECK_REF(name, got, want) \
    check_ref(__FILE__, __LINE__, name, got, want, sizeof(want) / sizeof(want[0]))

static void test_conv2d_ref(void) {
    ct_graph *g = ct_graph_create(0);
    ct_tensor *x = from_ref(4, SHAPE(CREF_CONV_B, CREF_CONV_CIN, CREF_CONV_H, CREF_CONV_W),
                            cref_conv_x);
    ct_tensor *w = from_ref(4, SHAPE(CREF_CONV_COUT, CREF_CONV_CIN, CREF_CONV_K, CREF_CONV_K),
                            cref_conv_w);
    ct_tensor *b = from_ref(1, SHAPE(CREF_CONV_COUT), cref_conv_b);
    ct_tensor *y = ct_conv2d(g, x, w, b, CREF_CONV_STRIDE, CREF_CONV_PAD);
    CHECK(y && y->shape[2] == CREF_CONV_HO && y->shape[3] == CREF_CONV_WO);
    CHECK_REF("conv2d stride 2 pad 1 bias", y, cref_conv_y);
    ct_tensor_free(x), ct_tensor_free(w), ct_tensor_free(b);
    ct_graph_free(g);
}

static void test_patch_embed_ref(void) {
    ct_graph *g = ct_graph_create(0);
    ct_tensor *x = from_ref(4, SHAPE(CREF_PATCH_B, CREF_PATCH_CIN, CREF_PATCH_H, CREF_PATCH_W),
                            cref_patch_x);
    ct_tensor *w = from_ref(4, SHAPE(CREF_PATCH_D, CREF_PATCH_CIN, CREF_PATCH_P, CREF_PATCH_P),
                            cref_patch_w);
    ct_tensor *y = ct_patch_embed(g, x, w, CREF_PATCH_P);
    CHECK(y && y->ndim == 3 && y->shape[0] == CREF_PATCH_B && y->shape[1] == CREF_PATCH_NP &&
          y->shape[2] == CREF_PATCH_D);
    CHECK_REF("CLIP patch embedding", y, cref_patch_y);
    ct_tensor_free(x), ct_tensor_free(w);
    ct_graph_free(g);
}

static void test_batchnorm_ref(void) {
    ct_graph *g = ct_graph_create(0);
    ct_tensor *x = from_ref(4, SHAPE(CREF_BN_B, CREF_BN_C, CREF_BN_H, CREF_BN_W), cref_bn_x);
    ct_tensor *gm = from_ref(1, SHAPE(CREF_BN_C), cref_bn_gamma);
    ct_tensor *bt = from_ref(1, SHAPE(CREF_BN_C), cref_bn_beta);
    ct_real rm[CREF_BN_C], rv[CREF_BN_C];
    for (int c = 0; c < CREF_BN_C; c++) rm[c] = (ct_real)cref_bn_rm[c], rv[c] = (ct_real)cref_bn_rv[c];
    ct_tensor *y = ct_batchnorm_frozen(g, x, rm, rv, gm, bt, (float)CREF_BN_EPS);
    CHECK_REF("batch_norm eval", y, cref_bn_y);
    ct_tensor_free(x), ct_tensor_free(gm), ct_tensor_free(bt);
    ct_graph_free(g);
}

static void test_avg_pool_ref(void) {
    ct_graph *g = ct_graph_create(0);
    ct_tensor *x = from_ref(4, SHAPE(CREF_POOL_B, CREF_POOL_C, CREF_POOL_H, CREF_POOL_W),
                            cref_pool_x);
    ct_tensor *y = ct_avg_pool2d(g, x, 3, 2);
    CHECK(y && y->shape[2] == CREF_POOL_K3S2_HO && y->shape[3] == CREF_POOL_K3S2_WO);
    CHECK_REF("avg_pool2d k3 s2", y, cref_pool_k3s2);
    y = ct_avg_pool2d(g, x, 2, 2);
    CHECK(y && y->shape[2] == CREF_POOL_K2S2_HO && y->shape[3] == CREF_POOL_K2S2_WO);
    CHECK_REF("avg_pool2d k2 s2", y, cref_pool_k2s2);
    ct_tensor_free(x);
    ct_graph_free(g);
}

static void test_sinkhorn_ref(void) {
    enum { B = CREF_SK_B, M = CREF_SK_M, N = CREF_SK_N };
    ct_graph *g = ct_graph_create(0);
    ct_tensor *cost = from_ref(3, SHAPE(B, M, N), cref_sk_cost);
    ct_real a[M], b[N];
    for (int i = 0; i < M; i++) a[i] = (ct_real)cref_sk_a[i];
    for (int i = 0; i < N; i++) b[i] = (ct_real)cref_sk_b[i];
    for (int given = 0; given < 2; given++) {
        const ct_real *ra = given ? a : NULL, *cb = given ? b : NULL;
        const double *want = given ? cref_sk_given_plan : cref_sk_uniform_plan;
        int want_iters = given ? CREF_SK_GIVEN_ITERS : CREF_SK_UNIFORM_ITERS;
        const char *name = given ? "sinkhorn (given marginals)" : "sinkhorn (uniform, PLOT)";
        /* the op, and the kernel for its iteration count */
        ct_tensor *T = ct_sinkhorn(g, cost, ra, cb, (float)CREF_SK_EPS, CREF_SK_ITERS,
                                   (float)CREF_SK_TOL);
        check_ref(__FILE__, __LINE__, name, T, want, B * M * N);
        ct_real plan[B * M * N], scratch[2 * B * (M + N)];
        int its = sinkhorn_forward(plan, scratch, cost->data, ra, cb, B, M, N,
                                   (ct_real)CREF_SK_EPS, CREF_SK_ITERS, (ct_real)CREF_SK_TOL);
        CHECK_MSG(its == want_iters, "%s: %d iterations, torch ran %d", name, its, want_iters);
        if (T) CHECK(memcmp(plan, T->data, sizeof plan) == 0);
    }
    ct_tensor_free(cost);
    ct_graph_free(g);
}

int main(void) {
    RUN(test_conv2d_ref);
    RUN(test_patch_embed_ref);
    RUN(test_batchnorm_ref);
    RUN(test_avg_pool_ref);
    RUN(test_sinkhorn_ref);
    return ct_test_summary();
}
