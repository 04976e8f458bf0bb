/* Kernels of the dense-prediction layers (segmentation heads, FPN necks):
 * transposed convolution, training-mode batch norm, max pooling, nearest and
 * bilinear resizing, and per-pixel cross-entropy. NCHW, torch semantics. */
#include <math.h>
#include <string.h>

#include "base/blas.h"
#include "tensor/kernels.h"

#define DENSE_PAR_MIN 16384

/* One batch element at a time: cols (Cout k k, HW) = wᵀ x_b (one GEMM over
 * w (Cin, Cout k k)), then cols scattered into the output (col2im with
 * stride s, overlapping windows summed). Backward gathers dout the same way
 * (im2col) and runs the two transposed GEMMs. */
static void col2im_t(ct_real *op, const ct_real *cols, int64_t Cout, int64_t H, int64_t W,
                     int64_t k, int64_t s, int64_t Ho, int64_t Wo) {
    for (int64_t co = 0; co < Cout; co++)
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++) {
                const ct_real *c = cols + ((co * k + i) * k + j) * H * W;
                ct_real *o = op + co * Ho * Wo;
                for (int64_t y = 0; y < H; y++)
                    for (int64_t x = 0; x < W; x++) o[(y * s + i) * Wo + x * s + j] += c[y * W + x];
            }
}

static void im2col_t(ct_real *cols, const ct_real *gp, int64_t Cout, int64_t H, int64_t W,
                     int64_t k, int64_t s, int64_t Ho, int64_t Wo) {
    for (int64_t co = 0; co < Cout; co++)
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++) {
                ct_real *c = cols + ((co * k + i) * k + j) * H * W;
                const ct_real *g = gp + co * Ho * Wo;
                for (int64_t y = 0; y < H; y++)
                    for (int64_t x = 0; x < W; x++) c[y * W + x] = g[(y * s + i) * Wo + x * s + j];
            }
}

void conv_transpose2d_forward(ct_real *out, ct_real *cols, const ct_real *x, const ct_real *w,
                              const ct_real *b, int64_t B, int64_t Cin, int64_t H, int64_t W,
                              int64_t Cout, int64_t k, int64_t s) {
    const int64_t Ho = (H - 1) * s + k, Wo = (W - 1) * s + k, M = Cout * k * k, L = H * W;
    for (int64_t bi = 0; bi < B; bi++) {
        ct_real *op = out + bi * Cout * Ho * Wo;
        for (int64_t co = 0; co < Cout; co++)
            for (int64_t q = 0; q < Ho * Wo; q++) op[co * Ho * Wo + q] = b ? b[co] : 0;
        ct_gemm(true, false, (int)M, (int)L, (int)Cin, 1, w, (int)M, x + bi * Cin * L, (int)L, 0,
                cols, (int)L);
        col2im_t(op, cols, Cout, H, W, k, s, Ho, Wo);
    }
}

void conv_transpose2d_backward(ct_real *dx, ct_real *dw, ct_real *db, ct_real *cols,
                               const ct_real *dout, const ct_real *x, const ct_real *w,
                               int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t Cout,
                               int64_t k, int64_t s) {
    const int64_t Ho = (H - 1) * s + k, Wo = (W - 1) * s + k, M = Cout * k * k, L = H * W;
    for (int64_t bi = 0; bi < B; bi++) {
        const ct_real *gp = dout + bi * Cout * Ho * Wo;
        if (db)
            for (int64_t co = 0; co < Cout; co++) {
                ct_real acc = 0;
                for (int64_t q = 0; q < Ho * Wo; q++) acc += gp[co * Ho * Wo + q];
                db[co] += acc;
            }
        if (!dx && !dw) continue;
        im2col_t(cols, gp, Cout, H, W, k, s, Ho, Wo);
        /* dx_b (Cin, L) += w (Cin, M) cols (M, L); dw (Cin, M) += x_b (Cin, L) colsᵀ */
        if (dx)
            ct_gemm(false, false, (int)Cin, (int)L, (int)M, 1, w, (int)M, cols, (int)L, 1,
                    dx + bi * Cin * L, (int)L);
        if (dw)
            ct_gemm(false, true, (int)Cin, (int)M, (int)L, 1, x + bi * Cin * L, (int)L, cols,
                    (int)L, 1, dw, (int)M);
    }
}

void batchnorm_train_forward(ct_real *out, ct_real *mean, ct_real *rstd, const ct_real *x,
                             const ct_real *gamma, const ct_real *beta, int64_t B, int64_t C,
                             int64_t HW, ct_real eps) {
    // statistics over (B, HW) per channel, biased variance (torch's normalisation)
    const double n = (double)(B * HW);
#pragma omp parallel for schedule(static) if (B * C * HW > DENSE_PAR_MIN)
    for (int64_t c = 0; c < C; c++) {
        double m = 0, v = 0;
        for (int64_t b = 0; b < B; b++) {
            const ct_real *xp = x + (b * C + c) * HW;
            for (int64_t q = 0; q < HW; q++) m += xp[q];
        }
        m /= n;
        for (int64_t b = 0; b < B; b++) {
            const ct_real *xp = x + (b * C + c) * HW;
            for (int64_t q = 0; q < HW; q++) v += (xp[q] - m) * (xp[q] - m);
        }
        v /= n;
        const ct_real r = (ct_real)(1.0 / sqrt(v + (double)eps));
        mean[c] = (ct_real)m, rstd[c] = r;
        const ct_real ga = gamma ? gamma[c] : 1, be = beta ? beta[c] : 0;
        for (int64_t b = 0; b < B; b++) {
            const ct_real *xp = x + (b * C + c) * HW;
            ct_real *op = out + (b * C + c) * HW;
            for (int64_t q = 0; q < HW; q++) op[q] = (xp[q] - (ct_real)m) * r * ga + be;
        }
    }
}

void batchnorm_train_backward(ct_real *dx, ct_real *dgamma, ct_real *dbeta, const ct_real *dout,
                              const ct_real *x, const ct_real *mean, const ct_real *rstd,
                              const ct_real *gamma, int64_t B, int64_t C, int64_t HW) {
    // dx = gamma rstd (dy - mean(dy) - xhat mean(dy xhat)), over (B, HW)
    const double n = (double)(B * HW);
#pragma omp parallel for schedule(static) if (B * C * HW > DENSE_PAR_MIN)
    for (int64_t c = 0; c < C; c++) {
        double sg = 0, sgx = 0;
        const ct_real m = mean[c], r = rstd[c];
        for (int64_t b = 0; b < B; b++) {
            const ct_real *xp = x + (b * C + c) * HW, *gp = dout + (b * C + c) * HW;
            for (int64_t q = 0; q < HW; q++) sg += gp[q], sgx += gp[q] * (xp[q] - m) * r;
        }
        if (dgamma) dgamma[c] += (ct_real)sgx;
        if (dbeta) dbeta[c] += (ct_real)sg;
        if (!dx) continue;
        const ct_real ga = gamma ? gamma[c] : 1;
        const ct_real mg = (ct_real)(sg / n), mgx = (ct_real)(sgx / n);
        for (int64_t b = 0; b < B; b++) {
            const ct_real *xp = x + (b * C + c) * HW, *gp = dout + (b * C + c) * HW;
            ct_real *dp = dx + (b * C + c) * HW;
            for (int64_t q = 0; q < HW; q++)
                dp[q] += ga * r * (gp[q] - mg - (xp[q] - m) * r * mgx);
        }
    }
}

void max_pool2d_forward(ct_real *out, int32_t *arg, const ct_real *x, int64_t B, int64_t C,
                        int64_t H, int64_t W, int64_t k, int64_t s) {
    // torch MaxPool2d(k, s): no padding, floor mode; the first maximum wins
    const int64_t Ho = (H - k) / s + 1, Wo = (W - k) / s + 1;
#pragma omp parallel for schedule(static) if (B * C * H * W > DENSE_PAR_MIN)
    for (int64_t bc = 0; bc < B * C; bc++) {
        const ct_real *xp = x + bc * H * W;
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++) {
                int64_t best = oy * s * W + ox * s;
                for (int64_t ky = 0; ky < k; ky++)
                    for (int64_t kx = 0; kx < k; kx++) {
                        int64_t q = (oy * s + ky) * W + ox * s + kx;
                        if (xp[q] > xp[best] || isnan(xp[q])) best = q;
                    }
                out[bc * Ho * Wo + oy * Wo + ox] = xp[best];
                arg[bc * Ho * Wo + oy * Wo + ox] = (int32_t)best;
            }
    }
}

void max_pool2d_backward(ct_real *dx, const ct_real *dout, const int32_t *arg, int64_t BC,
                         int64_t HW, int64_t HWo) {
#pragma omp parallel for schedule(static) if (BC * HW > DENSE_PAR_MIN)
    for (int64_t bc = 0; bc < BC; bc++)
        for (int64_t q = 0; q < HWo; q++) dx[bc * HW + arg[bc * HWo + q]] += dout[bc * HWo + q];
}

/* torch's source index of output d along an axis resized from n to m
 * without explicit scales (F.interpolate(size=...)): nearest uses
 * floor(d * n/m) in float (aten nearest_idx; m == 2n takes d >> 1, the same
 * value), bilinear align_corners=False the half-pixel centre clamped at 0 */
static void lin_axis(int64_t n, int64_t m, int64_t d, int64_t *i0, int64_t *i1, ct_real *l1) {
    float scale = (float)n / (float)m;
    float src = scale * ((float)d + 0.5f) - 0.5f;
    if (src < 0) src = 0;
    int64_t a = (int64_t)src;
    if (a > n - 1) a = n - 1;
    float l = src - (float)a;
    *i0 = a;
    *i1 = a < n - 1 ? a + 1 : a;
    *l1 = (ct_real)(l < 0 ? 0 : l > 1 ? 1 : l);
}

static int64_t near_axis(int64_t n, int64_t m, int64_t d) {
    if (m == 2 * n) return d >> 1;
    float scale = (float)n / (float)m;
    int64_t a = (int64_t)floorf((float)d * scale);
    return a < n - 1 ? a : n - 1;
}

void resize_forward(ct_real *out, const ct_real *x, int64_t BC, int64_t H, int64_t W, int64_t Ho,
                    int64_t Wo, bool bilinear) {
#pragma omp parallel for schedule(static) if (BC * Ho * Wo > DENSE_PAR_MIN)
    for (int64_t bc = 0; bc < BC; bc++) {
        const ct_real *xp = x + bc * H * W;
        ct_real *op = out + bc * Ho * Wo;
        for (int64_t y = 0; y < Ho; y++) {
            int64_t y0, y1;
            ct_real ly;
            if (bilinear) lin_axis(H, Ho, y, &y0, &y1, &ly);
            else y0 = y1 = near_axis(H, Ho, y), ly = 0;
            for (int64_t xx = 0; xx < Wo; xx++) {
                if (!bilinear) {
                    op[y * Wo + xx] = xp[y0 * W + near_axis(W, Wo, xx)];
                    continue;
                }
                int64_t x0, x1;
                ct_real lx;
                lin_axis(W, Wo, xx, &x0, &x1, &lx);
                op[y * Wo + xx] = (1 - ly) * ((1 - lx) * xp[y0 * W + x0] + lx * xp[y0 * W + x1]) +
                                  ly * ((1 - lx) * xp[y1 * W + x0] + lx * xp[y1 * W + x1]);
            }
        }
    }
}

void resize_backward(ct_real *dx, const ct_real *dout, int64_t BC, int64_t H, int64_t W,
                     int64_t Ho, int64_t Wo, bool bilinear) {
#pragma omp parallel for schedule(static) if (BC * Ho * Wo > DENSE_PAR_MIN)
    for (int64_t bc = 0; bc < BC; bc++) {
        ct_real *dp = dx + bc * H * W;
        const ct_real *gp = dout + bc * Ho * Wo;
        for (int64_t y = 0; y < Ho; y++) {
            int64_t y0, y1;
            ct_real ly;
            if (bilinear) lin_axis(H, Ho, y, &y0, &y1, &ly);
            else y0 = y1 = near_axis(H, Ho, y), ly = 0;
            for (int64_t xx = 0; xx < Wo; xx++) {
                const ct_real gv = gp[y * Wo + xx];
                if (!bilinear) {
                    dp[y0 * W + near_axis(W, Wo, xx)] += gv;
                    continue;
                }
                int64_t x0, x1;
                ct_real lx;
                lin_axis(W, Wo, xx, &x0, &x1, &lx);
                dp[y0 * W + x0] += (1 - ly) * (1 - lx) * gv;
                dp[y0 * W + x1] += (1 - ly) * lx * gv;
                dp[y1 * W + x0] += ly * (1 - lx) * gv;
                dp[y1 * W + x1] += ly * lx * gv;
            }
        }
    }
}

void pixel_ce_forward(ct_real *loss, ct_real *probs, int64_t *n_valid, const ct_real *logits,
                      const uint8_t *labels, int64_t B, int64_t K, int64_t HW, int ignore,
                      bool avg_non_ignore) {
    // logits (B, K, HW), labels (B, HW); probs (B, K, HW) saved for backward
    double total = 0;
    int64_t nv = 0;
#pragma omp parallel for schedule(static) reduction(+ : total, nv) if (B * K * HW > DENSE_PAR_MIN)
    for (int64_t bq = 0; bq < B * HW; bq++) {
        int64_t b = bq / HW, q = bq % HW;
        const ct_real *lp = logits + b * K * HW + q;
        ct_real *pp = probs + b * K * HW + q;
        ct_real mx = lp[0];
        for (int64_t k = 1; k < K; k++) mx = lp[k * HW] > mx ? lp[k * HW] : mx;
        double z = 0;
        for (int64_t k = 0; k < K; k++) z += exp((double)(lp[k * HW] - mx));
        for (int64_t k = 0; k < K; k++) pp[k * HW] = (ct_real)(exp((double)(lp[k * HW] - mx)) / z);
        int y = labels[bq];
        if (y == ignore) continue;
        nv++;
        total += log(z) + (double)mx - (double)lp[(int64_t)y * HW];
    }
    *n_valid = nv;
    double den = avg_non_ignore ? (double)nv : (double)(B * HW);
    *loss = (ct_real)(den > 0 ? total / den : 0);
}

void pixel_ce_backward(ct_real *dlogits, ct_real dloss, const ct_real *probs,
                       const uint8_t *labels, int64_t B, int64_t K, int64_t HW, int ignore,
                       int64_t den) {
    if (den <= 0) return;
    const ct_real sc = dloss / (ct_real)den;
#pragma omp parallel for schedule(static) if (B * K * HW > DENSE_PAR_MIN)
    for (int64_t bq = 0; bq < B * HW; bq++) {
        int y = labels[bq];
        if (y == ignore) continue;
        int64_t b = bq / HW, q = bq % HW;
        ct_real *dp = dlogits + b * K * HW + q;
        const ct_real *pp = probs + b * K * HW + q;
        for (int64_t k = 0; k < K; k++) dp[k * HW] += sc * (pp[k * HW] - (k == y ? 1 : 0));
    }
}
