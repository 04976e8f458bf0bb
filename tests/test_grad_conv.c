/* Convolution family and Sinkhorn in the double-precision engine:
 *   - finite-difference gradient checks (gradcheck.h; each input also alone,
 *     so the frozen-gradient paths run) for patch_embed, conv2d, frozen batch
 *     norm and avg_pool2d; tolerance |analytic - numeric| <= 1e-7 + 1e-6
 *     |numeric|, h = 1e-6 (these ops are linear in each input, so the central
 *     difference is exact up to rounding);
 *   - forward values against hand-computed numbers (tiny conv and pools);
 *   - larger shapes (which take the OpenMP / per-row GEMM paths) against naive
 *     loops, forward and backward, to 1e-12 relative;
 *   - Sinkhorn: marginals of the plan, agreement with a plain reference loop,
 *     early stopping, and no gradient through the plan;
 *   - argument validation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "tensor/kernels.h"

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

/* ---- gradient checks ---- */

static ct_tensor *f_patch(ct_graph *g, ct_tensor *const *in, void *ctx) {
    return ct_patch_embed(g, in[0], in[1], *(int *)ctx);
}

static void test_patch_embed_grad(void) {
    /* (H, W, p): divisible, floor remainder in both dims, remainder with p = 3 */
    const int64_t cases[3][3] = {{4, 6, 2}, {5, 7, 2}, {7, 8, 3}};
    for (int k = 0; k < 3; k++) {
        int64_t H = cases[k][0], W = cases[k][1];
        int p = (int)cases[k][2];
        ct_tensor *in[2] = {INPUT(200 + k, 1, 2, 3, H, W), INPUT(210 + k, 1, 4, 3, p, p)};
        char name[96];
        snprintf(name, sizeof name, "patch_embed H=%lld W=%lld p=%d", (long long)H,
                 (long long)W, p);
        gradcheck(name, f_patch, in, 2, &p);
        free_all(in, 2);
    }
}

typedef struct { int stride, pad; } conv_ctx;
static ct_tensor *f_conv(ct_graph *g, ct_tensor *const *in, void *ctx) {
    conv_ctx *c = ctx;
    return ct_conv2d(g, in[0], in[1], in[2], c->stride, c->pad);
}

static void test_conv2d_grad(void) {
    const int64_t ks[3][2] = {{3, 3}, {1, 1}, {3, 2}}; /* (kh, kw); 3x2 is non-square */
    for (int kk = 0; kk < 3; kk++)
        for (int stride = 1; stride <= 2; stride++)
            for (int pad = 0; pad <= 1; pad++)
                for (int bias = 0; bias <= 1; bias++) {
                    int64_t kh = ks[kk][0], kw = ks[kk][1];
                    uint64_t seed = 300 + (uint64_t)(kk * 8 + (stride - 1) * 4 + pad * 2 + bias);
                    ct_tensor *in[3] = {INPUT(seed, 1, 2, 3, 5, 6),
                                        INPUT(seed + 100, 1, 4, 3, kh, kw),
                                        bias ? INPUT(seed + 200, 1, 4) : NULL};
                    conv_ctx c = {stride, pad};
                    char name[96];
                    snprintf(name, sizeof name, "conv2d k=%lldx%lld stride=%d pad=%d bias=%d",
                             (long long)kh, (long long)kw, stride, pad, bias);
                    gradcheck(name, f_conv, in, 3, &c);
                    free_all(in, 3);
                }
}

typedef struct { const ct_real *rm, *rv; float eps; } bn_ctx;
static ct_tensor *f_bn(ct_graph *g, ct_tensor *const *in, void *ctx) {
    bn_ctx *c = ctx;
    return ct_batchnorm_frozen(g, in[0], c->rm, c->rv, in[1], in[2], c->eps);
}

static void test_batchnorm_grad(void) {
    const ct_real rm[3] = {0.3, -1.2, 0.05}, rv[3] = {0.5, 2.0, 0.01};
    bn_ctx c = {rm, rv, 1e-5f};
    ct_tensor *in[3] = {INPUT(400, 1, 2, 3, 4, 5), INPUT(401, 1, 3), INPUT(402, 1, 3)};
    gradcheck("batchnorm_frozen (gamma, beta)", f_bn, in, 3, &c);
    ct_tensor *noaff[3] = {in[0], NULL, NULL};
    gradcheck("batchnorm_frozen (no affine)", f_bn, noaff, 3, &c);
    ct_tensor *gonly[3] = {in[0], in[1], NULL};
    gradcheck("batchnorm_frozen (gamma only)", f_bn, gonly, 3, &c);
    free_all(in, 3);
}

typedef struct { int k, s; } pool_ctx;
static ct_tensor *f_pool(ct_graph *g, ct_tensor *const *in, void *ctx) {
    pool_ctx *c = ctx;
    return ct_avg_pool2d(g, in[0], c->k, c->s);
}

static void test_avg_pool_grad(void) {
    /* 7 wide: k=2,s=2 drops the last column (floor) */
    ct_tensor *x = INPUT(500, 1, 2, 3, 6, 7);
    pool_ctx a = {2, 2}, b = {3, 1}, c = {3, 2};
    gradcheck("avg_pool2d k=2 s=2", f_pool, &x, 1, &a);
    gradcheck("avg_pool2d k=3 s=1 (overlapping)", f_pool, &x, 1, &b);
    gradcheck("avg_pool2d k=3 s=2", f_pool, &x, 1, &c);
    ct_tensor_free(x);
}

/* ---- hand-computed forward values ---- */

static void test_conv_forward_values(void) {
    ct_graph *g = ct_graph_create(0);
    /* x (1, 2, 3, 3): channel 0 = 1..9, channel 1 = all ones.
     * w (1, 2, 2, 2): channel 0 = [[1, 2], [3, 4]], channel 1 = all ones. */
    double xv[18], wv[8] = {1, 2, 3, 4, 1, 1, 1, 1}, bv[1] = {0.5};
    for (int i = 0; i < 9; i++) xv[i] = i + 1, xv[9 + i] = 1;
    ct_tensor *x = tensor_from(4, SHAPE(1, 2, 3, 3), xv, false);
    ct_tensor *w = tensor_from(4, SHAPE(1, 2, 2, 2), wv, false);
    ct_tensor *b = tensor_from(1, SHAPE(1), bv, false);

    /* stride 1, pad 0: channel 0 gives 37 47 / 67 77 (e.g. 1*1+2*2+4*3+5*4),
     * channel 1 adds 4 (four ones), bias 0.5. */
    ct_tensor *y = ct_conv2d(g, x, w, b, 1, 0);
    CHECK(y && y->ndim == 4 && y->shape[2] == 2 && y->shape[3] == 2);
    const double want1[4] = {41.5, 51.5, 71.5, 81.5};
    if (y) CHECK_CLOSE_D("conv s1 p0", y->data, want1, 4, 1e-12, 0);

    /* stride 2, pad 1: Ho = (3 + 2 - 2)/2 + 1 = 2. Channel 0 windows (padding
     * zero): top-left sees only x[0,0]*w[1,1] = 4; top-right x01*3 + x02*4 =
     * 18; bottom-left x10*2 + x20*4 = 36; bottom-right 5+12+24+36 = 77.
     * Channel 1 adds the number of in-image taps: 1, 2, 2, 4. No bias. */
    y = ct_conv2d(g, x, w, NULL, 2, 1);
    CHECK(y && y->shape[2] == 2 && y->shape[3] == 2);
    const double want2[4] = {5, 20, 38, 81};
    if (y) CHECK_CLOSE_D("conv s2 p1", y->data, want2, 4, 1e-12, 0);

    /* Patch embedding with p = 2 on the same x (3x3 -> one 2x2 patch, the
     * last row/column dropped) equals the s1 p0 top-left value minus bias. */
    y = ct_patch_embed(g, x, w, 2);
    CHECK(y && y->ndim == 3 && y->shape[0] == 1 && y->shape[1] == 1 && y->shape[2] == 1);
    if (y) CHECK_NEAR("patch_embed 3x3 p=2", y->data[0], 41, 1e-12, 0);

    /* Pools on x (1, 1, 4, 4) = 0..15. */
    double pv[16];
    for (int i = 0; i < 16; i++) pv[i] = i;
    ct_tensor *px = tensor_from(4, SHAPE(1, 1, 4, 4), pv, false);
    y = ct_avg_pool2d(g, px, 2, 2);
    const double wp1[4] = {2.5, 4.5, 10.5, 12.5}; /* (0+1+4+5)/4, ... */
    CHECK(y && y->shape[2] == 2 && y->shape[3] == 2);
    if (y) CHECK_CLOSE_D("avg_pool k2 s2", y->data, wp1, 4, 1e-12, 0);
    y = ct_avg_pool2d(g, px, 3, 1);
    const double wp2[4] = {5, 6, 9, 10}; /* mean of a 3x3 block = its centre here */
    CHECK(y && y->shape[2] == 2 && y->shape[3] == 2);
    if (y) CHECK_CLOSE_D("avg_pool k3 s1", y->data, wp2, 4, 1e-12, 0);
    y = ct_avg_pool2d(g, px, 3, 2); /* (4 - 3)/2 + 1 = 1 window */
    CHECK(y && y->shape[2] == 1 && y->shape[3] == 1);
    if (y) CHECK_NEAR("avg_pool k3 s2", y->data[0], 5, 1e-12, 0);

    /* Frozen BN: (x - 1) / sqrt(3 + 1) * 2 + 0.5 on channel 0 values 1..4. */
    const ct_real rm[1] = {1}, rv[1] = {3};
    ct_tensor *bx = tensor_from(4, SHAPE(1, 1, 2, 2), (double[]){1, 2, 3, 4}, false);
    ct_tensor *gm = tensor_from(1, SHAPE(1), (double[]){2}, false);
    ct_tensor *bt = tensor_from(1, SHAPE(1), (double[]){0.5}, false);
    y = ct_batchnorm_frozen(g, bx, rm, rv, gm, bt, 1.0f);
    const double wb[4] = {0.5, 1.5, 2.5, 3.5};
    if (y) CHECK_CLOSE_D("batchnorm_frozen", y->data, wb, 4, 1e-12, 0);
    y = ct_batchnorm_frozen(g, bx, rm, rv, NULL, NULL, 1.0f);
    const double wb0[4] = {0, 0.5, 1, 1.5};
    if (y) CHECK_CLOSE_D("batchnorm_frozen (no affine)", y->data, wb0, 4, 1e-12, 0);

    CHECK(ct_graph_status(g) == CT_OK);
    ct_tensor *all[8] = {x, w, b, px, bx, gm, bt, NULL};
    free_all(all, 7);
    ct_graph_free(g);
}

/* ---- larger shapes against naive loops ---- */

/* Backward kernels accumulate: start every gradient at this value, not 0. */
#define GRAD0 0.5
static void prefill_grad(ct_tensor *t) {
    for (int64_t i = 0; i < t->numel; i++) t->grad[i] = GRAD0;
}

/* Naive direct convolution, forward and the three gradients for cotangent R
 * (added to GRAD0). */
static void naive_conv(double *y, double *dx, double *dw, double *db, const ct_real *x,
                       const ct_real *w, const ct_real *b, const ct_real *R, int64_t B,
                       int64_t Ci, int64_t H, int64_t W, int64_t Co, int64_t kh, int64_t kw,
                       int64_t s, int64_t pd) {
    int64_t Ho = (H + 2 * pd - kh) / s + 1, Wo = (W + 2 * pd - kw) / s + 1;
    for (int64_t i = 0; i < B * Ci * H * W; i++) dx[i] = GRAD0;
    for (int64_t i = 0; i < Co * Ci * kh * kw; i++) dw[i] = GRAD0;
    for (int64_t i = 0; i < Co; i++) db[i] = GRAD0;
    for (int64_t n = 0; n < B; n++)
        for (int64_t o = 0; o < Co; o++)
            for (int64_t oy = 0; oy < Ho; oy++)
                for (int64_t ox = 0; ox < Wo; ox++) {
                    int64_t oi = ((n * Co + o) * Ho + oy) * Wo + ox;
                    double acc = b ? b[o] : 0, r = R[oi];
                    for (int64_t c = 0; c < Ci; c++)
                        for (int64_t ky = 0; ky < kh; ky++)
                            for (int64_t kx = 0; kx < kw; kx++) {
                                int64_t iy = oy * s - pd + ky, ix = ox * s - pd + kx;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                int64_t xi = ((n * Ci + c) * H + iy) * W + ix;
                                int64_t wi = ((o * Ci + c) * kh + ky) * kw + kx;
                                acc += x[xi] * w[wi];
                                dx[xi] += r * w[wi];
                                dw[wi] += r * x[xi];
                            }
                    y[oi] = acc;
                    db[o] += r;
                }
}

static void check_real_vs(const char *name, const ct_real *got, const double *want, int64_t n,
                          double atol, double rtol) {
    double *g = malloc((size_t)n * sizeof *g);
    for (int64_t i = 0; i < n; i++) g[i] = got[i];
    ct_check_close_d(__FILE__, __LINE__, name, g, want, (size_t)n, atol, rtol);
    free(g);
}

static void test_conv_large_vs_naive(void) {
    /* 16*9 rows x 24*24 columns of im2col: above the parallel threshold. */
    const int64_t B = 2, Ci = 16, H = 24, W = 23, Co = 8;
    const int64_t cfg[3][4] = {{3, 3, 1, 1}, {3, 3, 2, 1}, {1, 1, 1, 0}}; /* kh kw s pad */
    for (int k = 0; k < 3; k++) {
        int64_t kh = cfg[k][0], kw = cfg[k][1], s = cfg[k][2], pd = cfg[k][3];
        int64_t Ho = (H + 2 * pd - kh) / s + 1, Wo = (W + 2 * pd - kw) / s + 1;
        ct_tensor *x = INPUT(600 + k, 1, B, Ci, H, W), *w = INPUT(610 + k, 1, Co, Ci, kh, kw);
        ct_tensor *b = INPUT(620 + k, 1, Co);
        int64_t no = B * Co * Ho * Wo;
        ct_real *R = malloc((size_t)no * sizeof *R);
        ct_rng rng;
        ct_rng_init(&rng, 7);
        ct_rng_fill_normal(&rng, R, (size_t)no, 0, 1);
        double *y = malloc((size_t)no * sizeof *y), *dx = malloc((size_t)x->numel * sizeof *dx);
        double *dw = malloc((size_t)w->numel * sizeof *dw), *db = malloc((size_t)Co * sizeof *db);
        naive_conv(y, dx, dw, db, x->data, w->data, b->data, R, B, Ci, H, W, Co, kh, kw, s, pd);

        ct_graph *g = ct_graph_create(0);
        prefill_grad(x), prefill_grad(w), prefill_grad(b);
        ct_tensor *out = ct_conv2d(g, x, w, b, (int)s, (int)pd);
        CHECK(out && out->numel == no);
        if (out) {
            CHECK_OK(ct_backward_from(g, out, R));
            char name[96];
            snprintf(name, sizeof name, "conv k=%lld s=%lld: forward", (long long)kh, (long long)s);
            check_real_vs(name, out->data, y, no, 1e-12, 1e-12);
            snprintf(name, sizeof name, "conv k=%lld s=%lld: dx", (long long)kh, (long long)s);
            check_real_vs(name, x->grad, dx, x->numel, 1e-12, 1e-12);
            snprintf(name, sizeof name, "conv k=%lld s=%lld: dw", (long long)kh, (long long)s);
            check_real_vs(name, w->grad, dw, w->numel, 1e-11, 1e-12);
            snprintf(name, sizeof name, "conv k=%lld s=%lld: db", (long long)kh, (long long)s);
            check_real_vs(name, b->grad, db, Co, 1e-11, 1e-12);
        }
        ct_graph_free(g);
        free(R), free(y), free(dx), free(dw), free(db);
        ct_tensor *all[3] = {x, w, b};
        free_all(all, 3);
    }
}

static void test_patch_embed_vs_conv(void) {
    /* CLIP: conv1 (stride = kernel = p, no bias), reshape (B, D, Hp*Wp),
     * permute to (B, Hp*Wp, D). Larger than the parallel threshold, with a
     * floor remainder (W = 35, p = 4). Backward must agree too. */
    const int64_t B = 3, Ci = 3, H = 32, W = 35, D = 12, p = 4, Hp = H / p, Wp = W / p;
    ct_tensor *x = INPUT(700, 1, B, Ci, H, W), *w = INPUT(701, 1, D, Ci, p, p);
    int64_t no = B * Hp * Wp * D;
    ct_real *R = malloc((size_t)no * sizeof *R), *Rc = malloc((size_t)no * sizeof *Rc);
    ct_rng rng;
    ct_rng_init(&rng, 9);
    ct_rng_fill_normal(&rng, R, (size_t)no, 0, 1);
    /* the same cotangent in conv layout (B, D, Hp, Wp) */
    for (int64_t b = 0; b < B; b++)
        for (int64_t l = 0; l < Hp * Wp; l++)
            for (int64_t d = 0; d < D; d++) Rc[(b * D + d) * Hp * Wp + l] = R[(b * Hp * Wp + l) * D + d];

    ct_graph *g = ct_graph_create(0);
    prefill_grad(x), prefill_grad(w);
    ct_tensor *pe = ct_patch_embed(g, x, w, (int)p);
    CHECK(pe && pe->shape[1] == Hp * Wp && pe->shape[2] == D);
    if (pe) CHECK_OK(ct_backward_from(g, pe, R));
    double *gx = malloc((size_t)x->numel * sizeof *gx), *gw = malloc((size_t)w->numel * sizeof *gw);
    for (int64_t i = 0; i < x->numel; i++) gx[i] = x->grad[i];
    for (int64_t i = 0; i < w->numel; i++) gw[i] = w->grad[i];
    prefill_grad(x), prefill_grad(w);

    ct_graph *g2 = ct_graph_create(0);
    ct_tensor *cv = ct_conv2d(g2, x, w, NULL, (int)p, 0);
    CHECK(cv && cv->shape[2] == Hp && cv->shape[3] == Wp);
    if (pe && cv) {
        CHECK_OK(ct_backward_from(g2, cv, Rc));
        double *want = malloc((size_t)no * sizeof *want);
        for (int64_t b = 0; b < B; b++)
            for (int64_t l = 0; l < Hp * Wp; l++)
                for (int64_t d = 0; d < D; d++)
                    want[(b * Hp * Wp + l) * D + d] = cv->data[(b * D + d) * Hp * Wp + l];
        check_real_vs("patch_embed == conv2d + reshape + permute", pe->data, want, no, 1e-12,
                      1e-12);
        check_real_vs("patch_embed dx == conv2d dx", x->grad, gx, x->numel, 1e-12, 1e-12);
        check_real_vs("patch_embed dw == conv2d dw", w->grad, gw, w->numel, 1e-11, 1e-12);
        /* floor remainder: columns 32..34 of every row get no gradient */
        bool zero = true;
        for (int64_t r = 0; r < B * Ci * H; r++)
            for (int64_t c = Wp * p; c < W; c++) zero &= gx[r * W + c] == GRAD0;
        CHECK_MSG(zero, "patch_embed: pixels in the floor remainder received a gradient");
        free(want);
    }
    ct_graph_free(g);
    ct_graph_free(g2);
    free(R), free(Rc), free(gx), free(gw);
    ct_tensor_free(x), ct_tensor_free(w);
}

static void test_pool_bn_large_vs_naive(void) {
    /* 3*16*32*32 = 49152 values: parallel paths. */
    const int64_t B = 3, C = 16, H = 32, W = 32;
    ct_tensor *x = INPUT(800, 1, B, C, H, W), *gm = INPUT(801, 1, C), *bt = INPUT(802, 1, C);
    ct_real rm[16], rv[16];
    for (int c = 0; c < 16; c++) rm[c] = 0.1 * c - 0.7, rv[c] = 0.2 + 0.05 * c;
    const ct_real eps = (ct_real)1e-5f;
    ct_real *R = malloc((size_t)x->numel * sizeof *R);
    ct_rng rng;
    ct_rng_init(&rng, 11);
    ct_rng_fill_normal(&rng, R, (size_t)x->numel, 0, 1);

    /* batch norm: y, dx, dgamma, dbeta */
    double *y = malloc((size_t)x->numel * sizeof *y), *dx = malloc((size_t)x->numel * sizeof *dx);
    double dg[16], dbt[16];
    for (int c = 0; c < 16; c++) dg[c] = dbt[c] = GRAD0;
    for (int64_t n = 0; n < B; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < H * W; i++) {
                int64_t j = (n * C + c) * H * W + i;
                double s = 1 / sqrt(rv[c] + eps), xh = (x->data[j] - rm[c]) * s;
                y[j] = xh * gm->data[c] + bt->data[c];
                dx[j] = GRAD0 + R[j] * gm->data[c] * s;
                dg[c] += R[j] * xh;
                dbt[c] += R[j];
            }
    ct_graph *g = ct_graph_create(0);
    prefill_grad(x), prefill_grad(gm), prefill_grad(bt);
    ct_tensor *out = ct_batchnorm_frozen(g, x, rm, rv, gm, bt, (float)eps);
    CHECK(out != NULL);
    if (out) {
        CHECK_OK(ct_backward_from(g, out, R));
        check_real_vs("bn forward", out->data, y, x->numel, 1e-12, 1e-12);
        check_real_vs("bn dx", x->grad, dx, x->numel, 1e-12, 1e-12);
        check_real_vs("bn dgamma", gm->grad, dg, C, 1e-10, 1e-12);
        check_real_vs("bn dbeta", bt->grad, dbt, C, 1e-10, 1e-12);
    }

    /* pool k=3 s=1 (overlapping windows, the race-prone backward) */
    ct_graph_reset(g);
    prefill_grad(x);
    const int64_t k = 3, s = 1, Ho = (H - k) / s + 1, Wo = (W - k) / s + 1;
    int64_t no = B * C * Ho * Wo;
    double *py = malloc((size_t)no * sizeof *py);
    for (int64_t i = 0; i < x->numel; i++) dx[i] = GRAD0;
    for (int64_t pl = 0; pl < B * C; pl++)
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++) {
                double acc = 0, r = R[(pl * Ho + oy) * Wo + ox];
                for (int64_t ky = 0; ky < k; ky++)
                    for (int64_t kx = 0; kx < k; kx++) {
                        int64_t j = (pl * H + oy * s + ky) * W + ox * s + kx;
                        acc += x->data[j];
                        dx[j] += r / (double)(k * k);
                    }
                py[(pl * Ho + oy) * Wo + ox] = acc / (double)(k * k);
            }
    out = ct_avg_pool2d(g, x, (int)k, (int)s);
    CHECK(out && out->numel == no);
    if (out) {
        CHECK_OK(ct_backward_from(g, out, R)); /* R has more values than needed */
        check_real_vs("pool forward", out->data, py, no, 1e-12, 1e-12);
        check_real_vs("pool dx", x->grad, dx, x->numel, 1e-12, 1e-12);
    }
    ct_graph_free(g);
    free(R), free(y), free(dx), free(py);
    ct_tensor_free(x), ct_tensor_free(gm), ct_tensor_free(bt);
}

/* ---- Sinkhorn ---- */

/* The loop exactly as written in PLOT's Sinkhorn, in plain double. Returns
 * the iterations run. */
static int ref_sinkhorn(double *T, const double *cost, const double *a, const double *b,
                        int B, int M, int N, double eps, int iters, double tol) {
    double *K = malloc((size_t)(B * M * N) * sizeof *K), *r = malloc((size_t)(B * M) * sizeof *r);
    double *r0 = malloc((size_t)(B * M) * sizeof *r0), *c = malloc((size_t)(B * N) * sizeof *c);
    for (int i = 0; i < B * M * N; i++) K[i] = exp(-cost[i] / eps);
    for (int i = 0; i < B * M; i++) r[i] = 1;
    for (int i = 0; i < B * N; i++) c[i] = 1;
    int it;
    for (it = 0; it < iters; it++) {
        memcpy(r0, r, (size_t)(B * M) * sizeof *r);
        for (int bb = 0; bb < B; bb++)
            for (int m = 0; m < M; m++) {
                double s = 0;
                for (int n = 0; n < N; n++) s += K[(bb * M + m) * N + n] * c[bb * N + n];
                r[bb * M + m] = a[m] / s;
            }
        for (int bb = 0; bb < B; bb++)
            for (int n = 0; n < N; n++) {
                double s = 0;
                for (int m = 0; m < M; m++) s += K[(bb * M + m) * N + n] * r[bb * M + m];
                c[bb * N + n] = b[n] / s;
            }
        double err = 0;
        for (int i = 0; i < B * M; i++) err += fabs(r[i] - r0[i]);
        if (err / (B * M) < tol) {
            it++;
            break;
        }
    }
    for (int bb = 0; bb < B; bb++)
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                int i = (bb * M + m) * N + n;
                T[i] = r[bb * M + m] * c[bb * N + n] * K[i];
            }
    free(K), free(r), free(r0), free(c);
    return it;
}

enum { SB = 3, SM = 5, SN = 4 };

/* PLOT-style cost 1 - cos similarity, in [0, 2]. */
static void make_cost(ct_real *cost) {
    ct_rng rng;
    ct_rng_init(&rng, 900);
    for (int i = 0; i < SB * SM * SN; i++) cost[i] = 1 - (2 * (ct_real)ct_rng_uniform(&rng) - 1);
}

static void test_sinkhorn_marginals(void) {
    ct_real cost[SB * SM * SN], plan[SB * SM * SN], scratch[2 * SB * (SM + SN)];
    make_cost(cost);
    const ct_real a[SM] = {0.1, 0.3, 0.2, 0.25, 0.15}, b[SN] = {0.4, 0.1, 0.3, 0.2};
    /* Given marginals, and uniform (NULL) ones; a tight tolerance. */
    for (int uni = 0; uni < 2; uni++) {
        int its = sinkhorn_forward(plan, scratch, cost, uni ? NULL : a, uni ? NULL : b, SB, SM,
                                   SN, 0.1, 5000, 1e-14);
        CHECK_MSG(its < 5000, "sinkhorn did not converge to 1e-14 (%d iterations)", its);
        for (int bb = 0; bb < SB; bb++) {
            double rs[SM] = {0}, cs[SN] = {0}, wa[SM], wb[SN];
            for (int m = 0; m < SM; m++)
                for (int n = 0; n < SN; n++) {
                    rs[m] += plan[(bb * SM + m) * SN + n];
                    cs[n] += plan[(bb * SM + m) * SN + n];
                }
            for (int m = 0; m < SM; m++) wa[m] = uni ? 1.0 / SM : a[m];
            for (int n = 0; n < SN; n++) wb[n] = uni ? 1.0 / SN : b[n];
            /* the v update comes last, so column sums are exact to rounding */
            CHECK_CLOSE_D(uni ? "uniform row sums" : "row sums", rs, wa, SM, 1e-12, 1e-10);
            CHECK_CLOSE_D(uni ? "uniform col sums" : "col sums", cs, wb, SN, 1e-15, 1e-13);
        }
    }
}

static void test_sinkhorn_reference(void) {
    ct_real cost[SB * SM * SN], plan[SB * SM * SN], scratch[2 * SB * (SM + SN)];
    double costd[SB * SM * SN], T[SB * SM * SN];
    make_cost(cost);
    for (int i = 0; i < SB * SM * SN; i++) costd[i] = cost[i];
    const double ua[SM] = {0.2, 0.2, 0.2, 0.2, 0.2}, ub[SN] = {0.25, 0.25, 0.25, 0.25};
    const double a[SM] = {0.1, 0.3, 0.2, 0.25, 0.15}, b[SN] = {0.4, 0.1, 0.3, 0.2};
    const ct_real ar[SM] = {0.1, 0.3, 0.2, 0.25, 0.15}, br[SN] = {0.4, 0.1, 0.3, 0.2};
    /* PLOT's settings (eps 0.1, 100 iterations, thresh 1e-2), a tighter tol,
     * and a smaller eps that needs more iterations. */
    const double settings[3][3] = {{0.1, 100, 1e-2}, {0.1, 100, 1e-6}, {0.05, 300, 1e-3}};
    for (int s = 0; s < 3; s++)
        for (int uni = 0; uni < 2; uni++) {
            double eps = settings[s][0], tol = settings[s][2];
            int iters = (int)settings[s][1];
            int want = ref_sinkhorn(T, costd, uni ? ua : a, uni ? ub : b, SB, SM, SN, eps, iters,
                                    tol);
            int got = sinkhorn_forward(plan, scratch, cost, uni ? NULL : ar, uni ? NULL : br, SB,
                                       SM, SN, eps, iters, tol);
            char name[96];
            snprintf(name, sizeof name, "sinkhorn eps=%g tol=%g uniform=%d", eps, tol, uni);
            CHECK_MSG(got == want, "%s: %d iterations, reference %d", name, got, want);
            check_real_vs(name, plan, T, SB * SM * SN, 1e-15, 1e-12);
        }
}

static void test_sinkhorn_early_stop(void) {
    ct_real cost[SB * SM * SN], plan[SB * SM * SN], scratch[2 * SB * (SM + SN)];
    make_cost(cost);
    /* PLOT's thresh stops well before max_iter on a well-conditioned cost ... */
    int its = sinkhorn_forward(plan, scratch, cost, NULL, NULL, SB, SM, SN, 0.1, 100, 1e-2);
    CHECK_MSG(its >= 1 && its < 100, "expected an early stop, ran %d iterations", its);
    /* ... a constant cost is balanced after one round: u, v never change
     * again, so the second iteration's err is 0 ... */
    ct_real flat[SB * SM * SN];
    for (int i = 0; i < SB * SM * SN; i++) flat[i] = 0.5;
    its = sinkhorn_forward(plan, scratch, flat, NULL, NULL, SB, SM, SN, 0.1, 100, 1e-12);
    CHECK_MSG(its == 2, "constant cost: %d iterations, expected 2", its);
    for (int i = 0; i < SB * SM * SN; i++)
        CHECK_MSG(fabs(plan[i] - 1.0 / (SM * SN)) < 1e-15, "constant cost plan[%d] = %g", i,
                  plan[i]);
    /* ... and a non-positive tol never stops early. */
    its = sinkhorn_forward(plan, scratch, cost, NULL, NULL, SB, SM, SN, 0.1, 37, 0);
    CHECK_MSG(its == 37, "tol 0: %d iterations, expected 37", its);
}

static void test_sinkhorn_op(void) {
    ct_graph *g = ct_graph_create(0);
    ct_tensor *cost = ct_tensor_new(3, SHAPE(SB, SM, SN), true);
    make_cost(cost->data);
    ct_real plan[SB * SM * SN], scratch[2 * SB * (SM + SN)];
    /* the op takes float eps/tol: feed the kernel the same values */
    sinkhorn_forward(plan, scratch, cost->data, NULL, NULL, SB, SM, SN, (ct_real)0.1f, 100,
                     (ct_real)1e-2f);

    int nodes = ct_graph_num_nodes(g);
    ct_tensor *T = ct_sinkhorn(g, cost, NULL, NULL, 0.1f, 100, 1e-2f);
    CHECK(T != NULL);
    if (!T) goto done;
    CHECK(!T->requires_grad && T->node == NULL && ct_graph_num_nodes(g) == nodes);
    CHECK(T->ndim == 3 && ct_tensor_same_shape(T, cost));
    CHECK(memcmp(T->data, plan, sizeof plan) == 0);
    /* PLOT's use: sum(T * sim) with T a constant. d/dcost of sum(T * cost)
     * must be exactly T (no gradient flows through the plan). */
    ct_tensor *loss = ct_sum_all(g, ct_mul(g, T, cost));
    CHECK_OK(ct_backward(g, loss));
    double want[SB * SM * SN];
    for (int i = 0; i < SB * SM * SN; i++) want[i] = plan[i];
    check_real_vs("d sum(T*cost) / dcost == T", cost->grad, want, SB * SM * SN, 1e-15, 1e-14);
    /* A 2-D cost is one batch element. */
    ct_tensor *c2 = ct_graph_wrap(g, cost->data, 2, SHAPE(SM, SN));
    ct_tensor *T2 = ct_sinkhorn(g, c2, NULL, NULL, 0.1f, 100, 1e-2f);
    CHECK(T2 && T2->ndim == 2 && T2->shape[0] == SM && T2->shape[1] == SN);
done:
    ct_tensor_free(cost);
    ct_graph_free(g);
}

/* ---- validation ---- */

static void expect_fail(ct_graph *g, ct_tensor *t, const char *what, const char *needle) {
    CHECK_MSG(t == NULL, "%s: expected failure", what);
    CHECK_MSG(ct_graph_status(g) == CT_ERR_ARG, "%s: status %s", what,
              ct_status_str(ct_graph_status(g)));
    CHECK_MSG(strstr(ct_last_error(), needle) != NULL, "%s: message \"%s\" lacks \"%s\"", what,
              ct_last_error(), needle);
    ct_graph_reset(g);
}

static void test_validation(void) {
    ct_graph *g = ct_graph_create(0);
    ct_tensor *x = ct_tensor_new(4, SHAPE(2, 3, 8, 8), false);
    ct_tensor *w = ct_tensor_new(4, SHAPE(4, 2, 3, 3), false);
    ct_tensor *wp = ct_tensor_new(4, SHAPE(5, 3, 4, 4), false);
    ct_tensor *b5 = ct_tensor_new(1, SHAPE(5), false);
    ct_tensor *c3 = ct_tensor_new(3, SHAPE(1, 2, 3), false);
    const ct_real rm[3] = {0, 0, 0}, rv[3] = {1, 1, 1}, neg[3] = {1, -1, 1};

    expect_fail(g, ct_conv2d(g, x, w, NULL, 1, 0), "conv Cin mismatch", "(2, 3, 8, 8)");
    expect_fail(g, ct_conv2d(g, x, wp, b5, 0, 0), "conv stride 0", "stride");
    expect_fail(g, ct_conv2d(g, x, wp, c3, 1, 0), "conv bias size", "bias");
    expect_fail(g, ct_patch_embed(g, x, wp, 3), "patch size vs weight", "(5, 3, 4, 4)");
    ct_tensor *tiny = ct_tensor_new(4, SHAPE(1, 3, 3, 8), false);
    expect_fail(g, ct_patch_embed(g, tiny, wp, 4), "image smaller than a patch", "(1, 3, 3, 8)");
    expect_fail(g, ct_avg_pool2d(g, tiny, 4, 4), "pool kernel > H", "(1, 3, 3, 8)");
    expect_fail(g, ct_avg_pool2d(g, x, 2, 0), "pool stride 0", "stride");
    expect_fail(g, ct_batchnorm_frozen(g, x, rm, rv, b5, NULL, 1e-5f), "bn gamma size", "(5)");
    expect_fail(g, ct_batchnorm_frozen(g, x, NULL, rv, NULL, NULL, 1e-5f), "bn no stats",
                "running");
    expect_fail(g, ct_batchnorm_frozen(g, x, rm, neg, NULL, NULL, 1e-5f), "bn negative var",
                "running_var[1]");
    expect_fail(g, ct_sinkhorn(g, c3, NULL, NULL, 0, 10, 1e-2f), "sinkhorn eps 0", "eps");
    expect_fail(g, ct_sinkhorn(g, c3, NULL, NULL, 0.1f, 0, 1e-2f), "sinkhorn iters 0", "iters");
    expect_fail(g, ct_sinkhorn(g, c3, neg, NULL, 0.1f, 10, 1e-2f), "sinkhorn negative r",
                "r[1]");
    expect_fail(g, ct_sinkhorn(g, c3, NULL, neg, 0.1f, 10, 1e-2f), "sinkhorn negative c",
                "c[1]");
    expect_fail(g, ct_sinkhorn(g, x, NULL, NULL, 0.1f, 10, 1e-2f), "sinkhorn 4-D cost",
                "(2, 3, 8, 8)");

    /* NULL inputs give NULL without an error of their own. */
    CHECK(ct_conv2d(g, NULL, w, NULL, 1, 0) == NULL);
    CHECK(ct_patch_embed(g, x, NULL, 4) == NULL);
    CHECK(ct_batchnorm_frozen(g, NULL, rm, rv, NULL, NULL, 1e-5f) == NULL);
    CHECK(ct_avg_pool2d(g, NULL, 2, 2) == NULL);
    CHECK(ct_sinkhorn(g, NULL, NULL, NULL, 0.1f, 10, 1e-2f) == NULL);
    CHECK(ct_graph_status(g) == CT_OK);

    ct_tensor *all[6] = {x, w, wp, b5, c3, tiny};
    free_all(all, 6);
    ct_graph_free(g);
}

int main(void) {
    ct_set_num_threads(2);
    RUN(test_patch_embed_grad);
    RUN(test_conv2d_grad);
    RUN(test_batchnorm_grad);
    RUN(test_avg_pool_grad);
    RUN(test_conv_forward_values);
    RUN(test_conv_large_vs_naive);
    RUN(test_patch_embed_vs_conv);
    RUN(test_pool_bn_large_vs_naive);
    RUN(test_sinkhorn_marginals);
    RUN(test_sinkhorn_reference);
    RUN(test_sinkhorn_early_stop);
    RUN(test_sinkhorn_op);
    RUN(test_validation);
    return ct_test_summary();
}
