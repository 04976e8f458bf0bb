/* The dense-prediction ops (conv_transpose2d, batchnorm_train, max_pool2d,
 * resize2d nearest / bilinear, pixel_cross_entropy) in the double-precision
 * engine:
 *   - finite-difference gradient checks (gradcheck.h: every input alone too),
 *     tolerance |analytic - numeric| <= 1e-7 + 1e-6 |numeric|, h = 1e-6;
 *   - forward values against torch 1.13 (F.interpolate, F.cross_entropy
 *     printed by /usr/bin/python3, copied below) and hand-computed numbers;
 *   - batch norm's running statistics update (momentum, unbiased variance);
 *   - argument validation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

#define SHAPE(...) (int64_t[]){__VA_ARGS__}
#define NDIM(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t))
#define INPUT(seed, std, ...) gc_input(seed, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), std)

static void free_all(ct_tensor **t, int n) {
    for (int i = 0; i < n; i++) ct_tensor_free(t[i]);
}

static ct_tensor *tensor_from(int ndim, const int64_t *shape, const double *v, bool rg) {
    ct_tensor *t = ct_tensor_new(ndim, shape, rg);
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = v[i];
    return t;
}

static ct_tensor *f_convt(ct_graph *g, ct_tensor *const *in, void *ctx) {
    return ct_conv_transpose2d(g, in[0], in[1], in[2], *(int *)ctx);
}

static void test_conv_transpose_grad(void) {
    /* (k, stride): the FPN's 2/2, overlapping 3/2, 3/1, 1/1 */
    const int ks[4][2] = {{2, 2}, {3, 2}, {3, 1}, {1, 1}};
    for (int c = 0; c < 4; c++)
        for (int bias = 0; bias <= 1; bias++) {
            int k = ks[c][0], s = ks[c][1];
            ct_tensor *in[3] = {INPUT(600 + c, 1, 2, 3, 3, 4), INPUT(610 + c, 1, 3, 2, k, k),
                                bias ? INPUT(620 + c, 1, 2) : NULL};
            char name[96];
            snprintf(name, sizeof name, "conv_transpose2d k=%d s=%d bias=%d", k, s, bias);
            gradcheck(name, f_convt, in, 3, &s);
            free_all(in, 3);
        }
}

static void test_conv_transpose_values(void) {
    /* torch 1.13: F.conv_transpose2d(arange(8).reshape(1,2,2,2) - 3,
     * arange(18).reshape(2,1,3,3) * 0.5 - 2, [0.25], stride=2) */
    ct_graph *g = ct_graph_create(0);
    double xv[8], wv[18], bv[1] = {0.25};
    for (int i = 0; i < 8; i++) xv[i] = i - 3;
    for (int i = 0; i < 18; i++) wv[i] = i * 0.5 - 2;
    ct_tensor *x = tensor_from(4, SHAPE(1, 2, 2, 2), xv, false);
    ct_tensor *w = tensor_from(4, SHAPE(2, 1, 3, 3), wv, false);
    ct_tensor *b = tensor_from(1, SHAPE(1), bv, false);
    ct_tensor *y = ct_conv_transpose2d(g, x, w, b, 2);
    const double want[25] = {8.75, 7.75, 15.75, 9.25, 9.25, 5.75, 4.75, 12.75, 9.25,
                             9.25, 12.25, 12.25, 31.25, 21.25, 23.25, 12.75, 13.75, 30.75,
                             18.25, 20.25, 15.75, 16.75, 39.75, 24.25, 26.25};
    CHECK(y && y->ndim == 4 && y->shape[1] == 1 && y->shape[2] == 5 && y->shape[3] == 5);
    if (y) CHECK_CLOSE_D("conv_transpose2d k=3 s=2", y->data, want, 25, 1e-12, 1e-12);
    ct_tensor *all[3] = {x, w, b};
    free_all(all, 3);
    ct_graph_free(g);
}

static ct_tensor *f_bn(ct_graph *g, ct_tensor *const *in, void *ctx) {
    (void)ctx;
    return ct_batchnorm_train(g, in[0], in[1], in[2], NULL, NULL, 0.1f, 1e-5f);
}

static void test_batchnorm_train_grad(void) {
    ct_tensor *in[3] = {INPUT(700, 1, 3, 2, 3, 2), INPUT(701, 1, 2), INPUT(702, 1, 2)};
    /* shift channel 1 so the mean matters */
    for (int b = 0; b < 3; b++)
        for (int q = 0; q < 6; q++) in[0]->data[(b * 2 + 1) * 6 + q] += 3;
    gradcheck("batchnorm_train (gamma, beta)", f_bn, in, 3, NULL);
    ct_tensor *noaff[3] = {in[0], NULL, NULL};
    gradcheck("batchnorm_train (no affine)", f_bn, noaff, 3, NULL);
    /* 2-D input (B, C): BatchNorm1d's statistics over the batch */
    ct_tensor *x2[3] = {INPUT(703, 1, 5, 2), in[1], in[2]};
    gradcheck("batchnorm_train 2-D", f_bn, x2, 3, NULL);
    ct_tensor_free(x2[0]);
    free_all(in, 3);
}

static void test_batchnorm_train_values(void) {
    /* x (2, 1, 2): values 1, 2, 3, 6: mean 3, biased var 3.5, unbiased 14/3 */
    ct_graph *g = ct_graph_create(0);
    double xv[4] = {1, 2, 3, 6};
    ct_tensor *x = tensor_from(3, SHAPE(2, 1, 2), xv, false);
    ct_real rm[1] = {0.5}, rv[1] = {2};
    ct_tensor *y = ct_batchnorm_train(g, x, NULL, NULL, rm, rv, 0.1f, 0);
    CHECK(y != NULL);
    double want[4];
    for (int i = 0; i < 4; i++) want[i] = (xv[i] - 3) / sqrt(3.5);
    if (y) CHECK_CLOSE_D("batchnorm_train values", y->data, want, 4, 1e-12, 1e-12);
    CHECK_NEAR("running_mean", rm[0], 0.9 * 0.5 + 0.1 * 3, 1e-7, 1e-7);
    CHECK_NEAR("running_var", rv[0], 0.9 * 2 + 0.1 * 14.0 / 3, 1e-7, 1e-7);
    ct_tensor_free(x);
    ct_graph_free(g);
}

typedef struct { int k, s; } pool_ctx;
static ct_tensor *f_maxpool(ct_graph *g, ct_tensor *const *in, void *ctx) {
    pool_ctx *c = ctx;
    return ct_max_pool2d(g, in[0], c->k, c->s);
}

static void test_max_pool(void) {
    /* 7 wide: k=2 s=2 drops the last column, as the FPN's fpn4 on a 7x7 grid */
    ct_tensor *x = INPUT(800, 1, 2, 3, 6, 7);
    pool_ctx a = {2, 2}, b = {3, 1}, c = {3, 2};
    gradcheck("max_pool2d k=2 s=2", f_maxpool, &x, 1, &a);
    gradcheck("max_pool2d k=3 s=1 (overlapping)", f_maxpool, &x, 1, &b);
    gradcheck("max_pool2d k=3 s=2", f_maxpool, &x, 1, &c);
    ct_tensor_free(x);
    /* values: 0..15 in 4x4, k=2 s=2 -> 5 7 13 15; backward to the maxima */
    ct_graph *g = ct_graph_create(0);
    double v[16];
    for (int i = 0; i < 16; i++) v[i] = i;
    ct_tensor *t = tensor_from(4, SHAPE(1, 1, 4, 4), v, true);
    ct_tensor *y = ct_max_pool2d(g, t, 2, 2);
    const double want[4] = {5, 7, 13, 15};
    CHECK(y && y->numel == 4);
    if (y) {
        CHECK_CLOSE_D("max_pool2d values", y->data, want, 4, 0, 0);
        CHECK(ct_backward_from(g, y, (ct_real[]){1, 2, 3, 4}) == CT_OK);
        double dw[16] = {0};
        dw[5] = 1, dw[7] = 2, dw[13] = 3, dw[15] = 4;
        CHECK_CLOSE_D("max_pool2d grad", t->grad, dw, 16, 0, 0);
    }
    ct_tensor_free(t);
    ct_graph_free(g);
}

typedef struct { int64_t h, w; bool bil; } rs_ctx;
static ct_tensor *f_resize(ct_graph *g, ct_tensor *const *in, void *ctx) {
    rs_ctx *c = ctx;
    return ct_resize2d(g, in[0], c->h, c->w, c->bil);
}

static void test_resize(void) {
    ct_tensor *x = INPUT(900, 1, 2, 2, 3, 7);
    const rs_ctx cases[] = {{6, 14, false}, {7, 3, false}, {5, 9, false}, {6, 14, true},
                            {7, 3, true}, {5, 9, true}, {3, 7, true}, {1, 1, true}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rs_ctx c = cases[i];
        char name[96];
        snprintf(name, sizeof name, "resize2d %s 3x7 -> %lldx%lld",
                 c.bil ? "bilinear" : "nearest", (long long)c.h, (long long)c.w);
        gradcheck(name, f_resize, &x, 1, &c);
    }
    ct_tensor_free(x);
    /* torch 1.13: F.interpolate(arange(6).reshape(1,1,2,3), size=...) */
    ct_graph *g = ct_graph_create(0);
    double v[7] = {0, 1, 2, 3, 4, 5, 6};
    ct_tensor *t = tensor_from(4, SHAPE(1, 1, 2, 3), v, false);
    ct_tensor *y = ct_resize2d(g, t, 3, 7, false);
    const double near[21] = {0, 0, 0, 1, 1, 2, 2, 0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5};
    CHECK(y && y->numel == 21);
    if (y) CHECK_CLOSE_D("nearest 2x3 -> 3x7", y->data, near, 21, 0, 0);
    y = ct_resize2d(g, t, 4, 5, true);
    const double bil[20] = {0.0, 0.40000003576278687, 1.0, 1.6000001430511475, 2.0, 0.75,
                            1.149999976158142, 1.75, 2.3500001430511475, 2.75, 2.25,
                            2.6500000953674316, 3.25, 3.8500001430511475, 4.25, 3.0,
                            3.4000000953674316, 4.0, 4.599999904632568, 5.0};
    CHECK(y && y->numel == 20);
    if (y) CHECK_CLOSE_D("bilinear 2x3 -> 4x5", y->data, bil, 20, 1e-6, 1e-6);
    ct_tensor *r = tensor_from(4, SHAPE(1, 1, 1, 7), v, false);
    y = ct_resize2d(g, r, 1, 3, false);
    CHECK(y && y->data[0] == 0 && y->data[1] == 2 && y->data[2] == 4);
    y = ct_resize2d(g, r, 1, 3, true);
    const double down[3] = {0.6666666269302368, 3.0, 5.3333330154418945};
    if (y) CHECK_CLOSE_D("bilinear 7 -> 3", y->data, down, 3, 1e-6, 1e-6);
    ct_tensor_free(t), ct_tensor_free(r);
    ct_graph_free(g);
}

typedef struct { const uint8_t *y; bool avg; } ce_ctx;
static ct_tensor *f_pce(ct_graph *g, ct_tensor *const *in, void *ctx) {
    ce_ctx *c = ctx;
    return ct_pixel_cross_entropy(g, in[0], c->y, 255, c->avg);
}

static void test_pixel_ce(void) {
    ct_tensor *x = INPUT(1000, 1, 2, 3, 2, 3);
    const uint8_t y[12] = {0, 1, 2, 255, 1, 1, 2, 255, 255, 0, 0, 2};
    ce_ctx a = {y, false}, b = {y, true};
    gradcheck("pixel_cross_entropy mean over all pixels", f_pce, &x, 1, &a);
    gradcheck("pixel_cross_entropy mean over non-ignored", f_pce, &x, 1, &b);
    ct_tensor_free(x);
    /* torch 1.13: F.cross_entropy(l, y, reduction='none', ignore_index=255)
     * .mean() = 1.3144304752349854 (mmseg's default), the plain mean over
     * the non-ignored 1.7525739669799805 */
    ct_graph *g = ct_graph_create(0);
    double lv[12] = {1, 2, 0, 1, 0.5, -1, 2, 0, 0, 0, 1, 3};
    ct_tensor *l = tensor_from(4, SHAPE(1, 3, 2, 2), lv, false);
    const uint8_t yl[4] = {0, 255, 2, 1};
    ct_tensor *o = ct_pixel_cross_entropy(g, l, yl, 255, false);
    CHECK(o != NULL);
    if (o) CHECK_NEAR("pixel CE (all)", o->data[0], 1.3144304752349854, 1e-6, 1e-6);
    o = ct_pixel_cross_entropy(g, l, yl, 255, true);
    if (o) CHECK_NEAR("pixel CE (non-ignored)", o->data[0], 1.7525739669799805, 1e-6, 1e-6);
    /* every pixel ignored: 0, no NaN */
    const uint8_t none[4] = {255, 255, 255, 255};
    o = ct_pixel_cross_entropy(g, l, none, 255, true);
    CHECK(o && o->data[0] == 0);
    ct_tensor_free(l);
    ct_graph_free(g);
}

static void expect_fail(ct_graph *g, ct_tensor *y, const char *what, const char *needle) {
    CHECK(y == NULL);
    if (!strstr(ct_last_error(), needle))
        ct_test_fail(__FILE__, __LINE__, "%s: message \"%s\" lacks \"%s\"", what,
                     ct_last_error(), needle);
    ct_graph_reset(g);
}

static void test_validation(void) {
    ct_graph *g = ct_graph_create(0);
    ct_tensor *x = INPUT(1100, 1, 2, 3, 4, 4), *w = INPUT(1101, 1, 4, 2, 2, 2);
    ct_tensor *one = INPUT(1102, 1, 1, 3, 1, 1);
    expect_fail(g, ct_conv_transpose2d(g, x, w, NULL, 2), "convt channels", "(Cin, Cout, k, k)");
    expect_fail(g, ct_conv_transpose2d(g, x, x, NULL, 0), "convt stride", "stride 0");
    expect_fail(g, ct_batchnorm_train(g, one, NULL, NULL, NULL, NULL, 0.1f, 1e-5f),
                "bn one value", "one value per channel");
    expect_fail(g, ct_max_pool2d(g, x, 5, 1), "maxpool kernel", "kernel 5");
    expect_fail(g, ct_resize2d(g, x, 0, 3, true), "resize size", "0x3");
    uint8_t bad[32];
    memset(bad, 0, sizeof bad);
    bad[7] = 3;
    expect_fail(g, ct_pixel_cross_entropy(g, x, bad, 255, false), "pixel CE label",
                "label 3 at pixel 7");
    CHECK(ct_max_pool2d(g, NULL, 2, 2) == NULL);
    CHECK(ct_resize2d(g, NULL, 2, 2, false) == NULL);
    CHECK(ct_graph_status(g) == CT_OK);
    ct_tensor *all[3] = {x, w, one};
    free_all(all, 3);
    ct_graph_free(g);
}

int main(void) {
    ct_set_num_threads(2);
    RUN(test_conv_transpose_grad);
    RUN(test_conv_transpose_values);
    RUN(test_batchnorm_train_grad);
    RUN(test_batchnorm_train_values);
    RUN(test_max_pool);
    RUN(test_resize);
    RUN(test_pixel_ce);
    RUN(test_validation);
    return ct_test_summary();
}
