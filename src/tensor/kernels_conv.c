/* Convolution family: ViT patch embedding, general 2-D convolution (im2col +
 * GEMM), frozen batch norm and average pooling, all NCHW like torch.
 *
 * Threading: the GEMMs are few and large (one per batch element at most), so
 * they run on BLAS threads outside any parallel region; the copy loops around
 * them (im2col, col2im, bias, pooling) are OpenMP loops whose iterations
 * write disjoint memory. Every reduction over the batch (dw, db, dgamma,
 * dbeta) runs either as a GEMM with beta = 1 in a fixed sequential order or
 * as a loop that gives each thread whole channels, so results do not depend
 * on the thread count's scheduling. */
#include <math.h>
#include <omp.h>
#include <string.h>
#include <tgmath.h>

#include "base/blas.h"
#include "tensor/kernels.h"

/* Parallel copy loops only pay off above this many values. */
#define CT_CONV_PAR_MIN 32768

/* ------------------------------------------------------------------------ */
/* Patch embedding                                                           */
/* ------------------------------------------------------------------------ */

void patch_embed_forward(ct_real *out, ct_real *cols, const ct_real *x, const ct_real *w,
                         int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t D, int64_t p) {
    // x (B, Cin, H, W); w (D, Cin, p, p) = (D, K) with K = Cin*p*p;
    // cols (B*Hp*Wp, K), row (b, py, px), column c*p*p + ky*p + kx (w's flattening);
    // out (B, Hp*Wp, D) = cols @ w^T. Pixels past Hp*p / Wp*p (floor) are never read.
    const int64_t Hp = H / p, Wp = W / p, K = Cin * p * p;
#pragma omp parallel for collapse(2) schedule(static) if (B * Hp * Wp * K > CT_CONV_PAR_MIN)
    for (int64_t b = 0; b < B; b++)
        for (int64_t py = 0; py < Hp; py++)
            for (int64_t px = 0; px < Wp; px++) {
                ct_real *row = cols + ((b * Hp + py) * Wp + px) * K;
                for (int64_t c = 0; c < Cin; c++)
                    for (int64_t ky = 0; ky < p; ky++)
                        memcpy(row + (c * p + ky) * p,
                               x + ((b * Cin + c) * H + py * p + ky) * W + px * p,
                               (size_t)p * sizeof(ct_real));
            }
    ct_gemm(false, true, (int)(B * Hp * Wp), (int)D, (int)K, 1, cols, (int)K, w, (int)K, 0, out,
            (int)D);
}

void patch_embed_backward(ct_real *dx, ct_real *dw, const ct_real *dout, const ct_real *cols,
                          const ct_real *w, int64_t B, int64_t Cin, int64_t H, int64_t W,
                          int64_t D, int64_t p) {
    const int64_t Hp = H / p, Wp = W / p, Np = Hp * Wp, K = Cin * p * p;
    // dw (D, K) += dout^T (D, B*Np) @ cols (B*Np, K): one GEMM, BLAS threads.
    if (dw)
        ct_gemm(true, false, (int)D, (int)K, (int)(B * Np), 1, dout, (int)D, cols, (int)K, 1, dw,
                (int)K);
    if (!dx) return;
    /* dcols = dout @ w, scattered back to dx. Patches do not overlap, so the
     * scatter is a permutation, and for one patch row py, channel c and kernel
     * row ky the block dcols[(py, px), c*p*p + ky*p + kx] over (px, kx) is the
     * contiguous run dx[b, c, py*p + ky, 0 : Wp*p]. Each such block is one small
     * GEMM written straight into dx (beta = 1): no dcols buffer, and pixels in
     * the floor remainder are left alone (they get no gradient). Units (b, py)
     * own disjoint rows of dx, so they run in parallel without races. */
    const int64_t units = B * Hp;
    const bool par = units >= omp_get_max_threads() && units > 1;
    int nt = ct_blas_get_threads();
    if (par) ct_blas_set_threads(1);
#pragma omp parallel for schedule(static) if (par)
    for (int64_t u = 0; u < units; u++) {
        int64_t b = u / Hp, py = u % Hp;
        const ct_real *drow = dout + (b * Np + py * Wp) * D; // (Wp, D)
        for (int64_t c = 0; c < Cin; c++)
            for (int64_t ky = 0; ky < p; ky++)
                // (Wp, p) += (Wp, D) @ w[:, (c*p + ky)*p : +p] (D, p; row stride K)
                ct_gemm(false, false, (int)Wp, (int)p, (int)D, 1, drow, (int)D,
                        w + (c * p + ky) * p, (int)K, 1,
                        dx + ((b * Cin + c) * H + py * p + ky) * W, (int)p);
    }
    if (par) ct_blas_set_threads(nt);
}

/* ------------------------------------------------------------------------ */
/* General convolution                                                       */
/* ------------------------------------------------------------------------ */

/* A 1x1, stride-1, unpadded conv is a plain GEMM on the input: no im2col. */
static bool conv_is_pointwise(int64_t kh, int64_t kw, int64_t stride, int64_t pad) {
    return kh == 1 && kw == 1 && stride == 1 && pad == 0;
}

/* cols (Cin*kh*kw, Ho*Wo) from one image xb (Cin, H, W); row (c*kh + ky)*kw + kx
 * (w's flattening), column oy*Wo + ox; zero where the window hits padding. */
static void im2col(ct_real *cols, const ct_real *xb, int64_t Cin, int64_t H, int64_t W,
                   int64_t kh, int64_t kw, int64_t stride, int64_t pad, int64_t Ho, int64_t Wo) {
    const int64_t rows = Cin * kh * kw;
#pragma omp parallel for schedule(static) if (rows * Ho * Wo > CT_CONV_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        int64_t c = r / (kh * kw), ky = (r / kw) % kh, kx = r % kw;
        const ct_real *xc = xb + c * H * W;
        ct_real *dst = cols + r * Ho * Wo;
        for (int64_t oy = 0; oy < Ho; oy++) {
            int64_t iy = oy * stride - pad + ky;
            ct_real *d = dst + oy * Wo;
            if (iy < 0 || iy >= H) {
                memset(d, 0, (size_t)Wo * sizeof(ct_real));
                continue;
            }
            const ct_real *src = xc + iy * W;
            for (int64_t ox = 0; ox < Wo; ox++) {
                int64_t ix = ox * stride - pad + kx;
                d[ox] = ix >= 0 && ix < W ? src[ix] : 0;
            }
        }
    }
}

/* dxb (Cin, H, W) += the scatter of dcols (Cin*kh*kw, Ho*Wo); padding taps are
 * dropped. Threads own whole channels c (all rows of c land in channel c
 * only), so overlapping windows never race. */
static void col2im_add(ct_real *dxb, const ct_real *dcols, int64_t Cin, int64_t H, int64_t W,
                       int64_t kh, int64_t kw, int64_t stride, int64_t pad, int64_t Ho,
                       int64_t Wo) {
#pragma omp parallel for schedule(static) if (Cin * kh * kw * Ho * Wo > CT_CONV_PAR_MIN)
    for (int64_t c = 0; c < Cin; c++) {
        ct_real *dxc = dxb + c * H * W;
        for (int64_t ky = 0; ky < kh; ky++)
            for (int64_t kx = 0; kx < kw; kx++) {
                const ct_real *src = dcols + ((c * kh + ky) * kw + kx) * Ho * Wo;
                for (int64_t oy = 0; oy < Ho; oy++) {
                    int64_t iy = oy * stride - pad + ky;
                    if (iy < 0 || iy >= H) continue;
                    ct_real *drow = dxc + iy * W;
                    const ct_real *s = src + oy * Wo;
                    for (int64_t ox = 0; ox < Wo; ox++) {
                        int64_t ix = ox * stride - pad + kx;
                        if (ix >= 0 && ix < W) drow[ix] += s[ox];
                    }
                }
            }
    }
}

void conv2d_forward(ct_real *out, const ct_real *x, const ct_real *w, const ct_real *b,
                    ct_real *cols, int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t Cout,
                    int64_t kh, int64_t kw, int64_t stride, int64_t pad) {
    // x (B, Cin, H, W); w (Cout, Cin, kh, kw) = (Cout, K); b (Cout) or NULL;
    // out (B, Cout, Ho, Wo); per image: out_b (Cout, Ho*Wo) = w @ cols_b (K, Ho*Wo) [+ b].
    const int64_t Ho = (H + 2 * pad - kh) / stride + 1, Wo = (W + 2 * pad - kw) / stride + 1;
    const int64_t L = Ho * Wo, K = Cin * kh * kw;
    const bool direct = conv_is_pointwise(kh, kw, stride, pad);
    for (int64_t bi = 0; bi < B; bi++) {
        const ct_real *xb = x + bi * Cin * H * W;
        ct_real *ob = out + bi * Cout * L;
        if (!direct) im2col(cols, xb, Cin, H, W, kh, kw, stride, pad, Ho, Wo);
        if (b)
            for (int64_t o = 0; o < Cout; o++)
                for (int64_t l = 0; l < L; l++) ob[o * L + l] = b[o];
        ct_gemm(false, false, (int)Cout, (int)L, (int)K, 1, w, (int)K, direct ? xb : cols,
                (int)L, b ? 1 : 0, ob, (int)L);
    }
}

void conv2d_backward(ct_real *dx, ct_real *dw, ct_real *db, ct_real *cols, const ct_real *dout,
                     const ct_real *x, const ct_real *w, int64_t B, int64_t Cin, int64_t H,
                     int64_t W, int64_t Cout, int64_t kh, int64_t kw, int64_t stride,
                     int64_t pad) {
    const int64_t Ho = (H + 2 * pad - kh) / stride + 1, Wo = (W + 2 * pad - kw) / stride + 1;
    const int64_t L = Ho * Wo, K = Cin * kh * kw;
    const bool direct = conv_is_pointwise(kh, kw, stride, pad);
    /* Batch elements in order: dw accumulates over them with beta = 1, and the
     * one cols buffer first holds the recomputed im2col of x (for dw), then is
     * overwritten by dcols (for dx). */
    for (int64_t bi = 0; bi < B; bi++) {
        const ct_real *xb = x + bi * Cin * H * W, *gb = dout + bi * Cout * L;
        if (dw) {
            if (!direct) im2col(cols, xb, Cin, H, W, kh, kw, stride, pad, Ho, Wo);
            // dw (Cout, K) += dout_b (Cout, L) @ cols_b^T (L, K)
            ct_gemm(false, true, (int)Cout, (int)K, (int)L, 1, gb, (int)L, direct ? xb : cols,
                    (int)L, 1, dw, (int)K);
        }
        if (dx) {
            ct_real *dxb = dx + bi * Cin * H * W;
            // dcols (K, L) = w^T (K, Cout) @ dout_b (Cout, L); pointwise: straight into dx.
            if (direct) {
                ct_gemm(true, false, (int)K, (int)L, (int)Cout, 1, w, (int)K, gb, (int)L, 1, dxb,
                        (int)L);
            } else {
                ct_gemm(true, false, (int)K, (int)L, (int)Cout, 1, w, (int)K, gb, (int)L, 0, cols,
                        (int)L);
                col2im_add(dxb, cols, Cin, H, W, kh, kw, stride, pad, Ho, Wo);
            }
        }
    }
    if (db) {
        /* db[o] += sum over batch and pixels; each thread owns channels. */
#pragma omp parallel for schedule(static) if (B * Cout * L > CT_CONV_PAR_MIN)
        for (int64_t o = 0; o < Cout; o++) {
            ct_real acc = 0;
            for (int64_t bi = 0; bi < B; bi++) {
                const ct_real *g = dout + (bi * Cout + o) * L;
                for (int64_t l = 0; l < L; l++) acc += g[l];
            }
            db[o] += acc;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Frozen batch norm                                                         */
/* ------------------------------------------------------------------------ */

void batchnorm_frozen_forward(ct_real *out, const ct_real *x, const ct_real *rm,
                              const ct_real *rv, const ct_real *gamma, const ct_real *beta,
                              int64_t B, int64_t C, int64_t HW, ct_real eps) {
    // out, x (B, C, HW); rm, rv (C); gamma, beta (C) or NULL (1 and 0).
    // y = (x - rm) / sqrt(rv + eps) * gamma + beta: an affine map per channel.
#pragma omp parallel for schedule(static) if (B * C * HW > CT_CONV_PAR_MIN)
    for (int64_t bc = 0; bc < B * C; bc++) {
        int64_t c = bc % C;
        ct_real s = 1 / sqrt(rv[c] + eps), m = rm[c];
        ct_real gm = gamma ? gamma[c] : 1, bt = beta ? beta[c] : 0;
        const ct_real *xi = x + bc * HW;
        ct_real *o = out + bc * HW;
        for (int64_t i = 0; i < HW; i++) o[i] = (xi[i] - m) * s * gm + bt;
    }
}

void batchnorm_frozen_backward(ct_real *dx, ct_real *dgamma, ct_real *dbeta, const ct_real *dout,
                               const ct_real *x, const ct_real *rm, const ct_real *rv,
                               const ct_real *gamma, int64_t B, int64_t C, int64_t HW,
                               ct_real eps) {
    // The statistics are constants, so dx = dout * gamma / sqrt(rv + eps).
    if (dx) {
#pragma omp parallel for schedule(static) if (B * C * HW > CT_CONV_PAR_MIN)
        for (int64_t bc = 0; bc < B * C; bc++) {
            int64_t c = bc % C;
            ct_real k = (gamma ? gamma[c] : 1) / sqrt(rv[c] + eps);
            const ct_real *g = dout + bc * HW;
            ct_real *d = dx + bc * HW;
            for (int64_t i = 0; i < HW; i++) d[i] += g[i] * k;
        }
    }
    if (dgamma || dbeta) {
        /* Sums over batch and pixels; each thread owns whole channels. */
#pragma omp parallel for schedule(static) if (B * C * HW > CT_CONV_PAR_MIN)
        for (int64_t c = 0; c < C; c++) {
            ct_real s = 1 / sqrt(rv[c] + eps), m = rm[c], ag = 0, ab = 0;
            for (int64_t bi = 0; bi < B; bi++) {
                const ct_real *g = dout + (bi * C + c) * HW, *xi = x + (bi * C + c) * HW;
                for (int64_t i = 0; i < HW; i++) {
                    ag += g[i] * (xi[i] - m) * s;
                    ab += g[i];
                }
            }
            if (dgamma) dgamma[c] += ag;
            if (dbeta) dbeta[c] += ab;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Average pooling                                                           */
/* ------------------------------------------------------------------------ */

void avg_pool2d_forward(ct_real *out, const ct_real *x, int64_t B, int64_t C, int64_t H,
                        int64_t W, int64_t k, int64_t s) {
    // x (B, C, H, W) -> out (B, C, Ho, Wo), Ho = (H - k)/s + 1; window sum / (k*k),
    // as torch AvgPool2d(k, s) (no padding, floor mode).
    const int64_t Ho = (H - k) / s + 1, Wo = (W - k) / s + 1;
    const ct_real div = (ct_real)(k * k);
#pragma omp parallel for schedule(static) if (B * C * H * W > CT_CONV_PAR_MIN)
    for (int64_t bc = 0; bc < B * C; bc++) {
        const ct_real *xp = x + bc * H * W;
        ct_real *op = out + bc * Ho * Wo;
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++) {
                ct_real acc = 0;
                for (int64_t ky = 0; ky < k; ky++) {
                    const ct_real *row = xp + (oy * s + ky) * W + ox * s;
                    for (int64_t kx = 0; kx < k; kx++) acc += row[kx];
                }
                op[oy * Wo + ox] = acc / div;
            }
    }
}

void avg_pool2d_backward(ct_real *dx, const ct_real *dout, int64_t B, int64_t C, int64_t H,
                         int64_t W, int64_t k, int64_t s) {
    // Windows may overlap (s < k); planes (b, c) are disjoint, so split over them.
    const int64_t Ho = (H - k) / s + 1, Wo = (W - k) / s + 1;
    const ct_real div = (ct_real)(k * k);
#pragma omp parallel for schedule(static) if (B * C * H * W > CT_CONV_PAR_MIN)
    for (int64_t bc = 0; bc < B * C; bc++) {
        ct_real *dp = dx + bc * H * W;
        const ct_real *gp = dout + bc * Ho * Wo;
        for (int64_t oy = 0; oy < Ho; oy++)
            for (int64_t ox = 0; ox < Wo; ox++) {
                ct_real g = gp[oy * Wo + ox] / div;
                for (int64_t ky = 0; ky < k; ky++) {
                    ct_real *row = dp + (oy * s + ky) * W + ox * s;
                    for (int64_t kx = 0; kx < k; kx++) row[kx] += g;
                }
            }
    }
}
