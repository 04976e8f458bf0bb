/* LayerNorm and row L2 normalisation. Statistics in the compute type, as
 * torch does for float32 on CPU (two-pass mean/variance for stability). */
#include <math.h>
#include <tgmath.h>

#include "tensor/kernels.h"

void layernorm_forward(ct_real *out, ct_real *mean, ct_real *rstd, const ct_real *inp,
                       const ct_real *w, const ct_real *b, int64_t N, int64_t C, ct_real eps) {
    // out, inp (N, C); mean, rstd (N); w, b (C) or NULL
#pragma omp parallel for schedule(static) if (N * C > 32768)
    for (int64_t n = 0; n < N; n++) {
        const ct_real *x = inp + n * C;
        ct_real m = 0, v = 0;
        for (int64_t c = 0; c < C; c++) m += x[c];
        m /= (ct_real)C;
        for (int64_t c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        v /= (ct_real)C;
        ct_real s = 1 / sqrt(v + eps);
        ct_real *o = out + n * C;
        for (int64_t c = 0; c < C; c++) {
            ct_real y = (x[c] - m) * s;
            o[c] = y * (w ? w[c] : 1) + (b ? b[c] : 0);
        }
        mean[n] = m;
        rstd[n] = s;
    }
}

void layernorm_backward(ct_real *dinp, ct_real *dw, ct_real *db, const ct_real *dout,
                        const ct_real *inp, const ct_real *w, const ct_real *mean,
                        const ct_real *rstd, int64_t N, int64_t C) {
    if (dinp) {
#pragma omp parallel for schedule(static) if (N * C > 32768)
        for (int64_t n = 0; n < N; n++) {
            const ct_real *x = inp + n * C, *d = dout + n * C;
            ct_real m = mean[n], s = rstd[n], dnorm_mean = 0, dnorm_norm = 0;
            for (int64_t c = 0; c < C; c++) {
                ct_real dn = d[c] * (w ? w[c] : 1);
                dnorm_mean += dn;
                dnorm_norm += dn * (x[c] - m) * s;
            }
            dnorm_mean /= (ct_real)C;
            dnorm_norm /= (ct_real)C;
            ct_real *dx = dinp + n * C;
            for (int64_t c = 0; c < C; c++) {
                ct_real dn = d[c] * (w ? w[c] : 1);
                dx[c] += (dn - dnorm_mean - (x[c] - m) * s * dnorm_norm) * s;
            }
        }
    }
    if (dw || db) {
        /* Parameter gradients sum over rows: split over channels instead. */
        const int64_t blk = 64;
#pragma omp parallel for schedule(static) if (N * C > 32768)
        for (int64_t c0 = 0; c0 < C; c0 += blk) {
            int64_t c1 = c0 + blk < C ? c0 + blk : C;
            for (int64_t n = 0; n < N; n++) {
                const ct_real *x = inp + n * C, *d = dout + n * C;
                for (int64_t c = c0; c < c1; c++) {
                    if (dw) dw[c] += d[c] * (x[c] - mean[n]) * rstd[n];
                    if (db) db[c] += d[c];
                }
            }
        }
    }
}

void l2norm_forward(ct_real *out, ct_real *norm, const ct_real *inp, int64_t N, int64_t C,
                    ct_real eps) {
#pragma omp parallel for schedule(static) if (N * C > 32768)
    for (int64_t n = 0; n < N; n++) {
        const ct_real *x = inp + n * C;
        ct_real ss = 0;
        for (int64_t c = 0; c < C; c++) ss += x[c] * x[c];
        ct_real nr = sqrt(ss);
        if (nr < eps) nr = eps;
        norm[n] = nr;
        for (int64_t c = 0; c < C; c++) out[n * C + c] = x[c] / nr;
    }
}

void l2norm_backward(ct_real *dinp, const ct_real *dout, const ct_real *out, const ct_real *norm,
                     ct_real eps, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) if (N * C > 32768)
    for (int64_t n = 0; n < N; n++) {
        const ct_real *y = out + n * C, *d = dout + n * C;
        ct_real *dx = dinp + n * C;
        ct_real nr = norm[n];
        if (nr <= eps) {
            /* Clamped norm is a constant: plain scaling. */
            for (int64_t c = 0; c < C; c++) dx[c] += d[c] / nr;
            continue;
        }
        ct_real dot = 0;
        for (int64_t c = 0; c < C; c++) dot += d[c] * y[c];
        for (int64_t c = 0; c < C; c++) dx[c] += (d[c] - y[c] * dot) / nr;
    }
}
