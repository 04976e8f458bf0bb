/* Elementwise kernels: broadcast binary ops and activations. */
#include <math.h>
#include <string.h>
#include <tgmath.h>

#include "base/gemm.h"
#include "tensor/kernels.h"

#define PAR_IF(n) if ((n) > 32768)

void binary_forward(ct_real *out, const ct_real *a, const ct_real *b, int64_t n, int64_t P,
                    ct_binop op) {
    int64_t R = n / P;
#pragma omp parallel for schedule(static) PAR_IF(n)
    for (int64_t r = 0; r < R; r++) {
        const ct_real *ar = a + r * P;
        ct_real *o = out + r * P;
        switch (op) {
        case CT_BIN_ADD: for (int64_t j = 0; j < P; j++) o[j] = ar[j] + b[j]; break;
        case CT_BIN_SUB: for (int64_t j = 0; j < P; j++) o[j] = ar[j] - b[j]; break;
        case CT_BIN_MUL: for (int64_t j = 0; j < P; j++) o[j] = ar[j] * b[j]; break;
        }
    }
}

void binary_backward(ct_real *da, ct_real *db, const ct_real *dout, const ct_real *a,
                     const ct_real *b, int64_t n, int64_t P, ct_binop op) {
    int64_t R = n / P;
    if (da) {
#pragma omp parallel for schedule(static) PAR_IF(n)
        for (int64_t r = 0; r < R; r++) {
            const ct_real *d = dout + r * P;
            ct_real *g = da + r * P;
            if (op == CT_BIN_MUL)
                for (int64_t j = 0; j < P; j++) g[j] += d[j] * b[j];
            else
                for (int64_t j = 0; j < P; j++) g[j] += d[j];
        }
    }
    if (db) {
        /* Sum over the R broadcast rows, split over columns (race-free). */
        const int64_t blk = 256;
#pragma omp parallel for schedule(static) PAR_IF(n)
        for (int64_t j0 = 0; j0 < P; j0 += blk) {
            int64_t j1 = j0 + blk < P ? j0 + blk : P;
            for (int64_t r = 0; r < R; r++) {
                const ct_real *d = dout + r * P, *ar = a + r * P;
                switch (op) {
                case CT_BIN_ADD: for (int64_t j = j0; j < j1; j++) db[j] += d[j]; break;
                case CT_BIN_SUB: for (int64_t j = j0; j < j1; j++) db[j] -= d[j]; break;
                case CT_BIN_MUL: for (int64_t j = j0; j < j1; j++) db[j] += d[j] * ar[j]; break;
                }
            }
        }
    }
}

void scale_forward(ct_real *out, const ct_real *x, ct_real s, int64_t n) {
#pragma omp parallel for schedule(static) PAR_IF(n)
    for (int64_t i = 0; i < n; i++) out[i] = s * x[i];
}

void scale_backward(ct_real *dx, const ct_real *dout, ct_real s, int64_t n) {
#pragma omp parallel for schedule(static) PAR_IF(n)
    for (int64_t i = 0; i < n; i++) dx[i] += s * dout[i];
}

void accumulate(ct_real *dx, const ct_real *dout, int64_t n) {
#pragma omp parallel for schedule(static) PAR_IF(n)
    for (int64_t i = 0; i < n; i++) dx[i] += dout[i];
}

static inline ct_real sigm(ct_real x) { return 1 / (1 + exp(-x)); }

/* QuickGELU's constant as OpenAI's code applies it to float32 tensors. */
#define QG_K ((ct_real)1.702f)
#define INV_SQRT2 ((ct_real)0.70710678118654752440)
#define INV_SQRT2PI ((ct_real)0.39894228040143267794)

void act_forward(ct_real *out, const ct_real *x, int64_t n, ct_act act) {
#ifndef CT_REAL_DOUBLE
    /* GELU and QuickGELU: the GEMM epilogue's own code, so an activation
     * after a linear op equals the fused linear + activation bit for bit */
    if (act == CT_ACT_GELU || act == CT_ACT_QUICK_GELU) {
        const int64_t blk = 4096;
#pragma omp parallel for schedule(static) PAR_IF(n)
        for (int64_t i = 0; i < n; i += blk)
            ct_sgemm_act(out + i, x + i, (size_t)(n - i < blk ? n - i : blk),
                         act == CT_ACT_GELU ? CT_EPI_GELU : CT_EPI_QUICK_GELU);
        return;
    }
#endif
#pragma omp parallel for schedule(static) PAR_IF(n)
    for (int64_t i = 0; i < n; i++) {
        ct_real v = x[i], y;
        switch (act) {
        case CT_ACT_GELU: y = (ct_real)0.5 * v * (1 + erf(v * INV_SQRT2)); break;
        case CT_ACT_QUICK_GELU: y = v * sigm(QG_K * v); break;
        case CT_ACT_RELU: y = v > 0 ? v : 0; break;
        case CT_ACT_SIGMOID: y = sigm(v); break;
        case CT_ACT_TANH: y = tanh(v); break;
        case CT_ACT_EXP: y = exp(v); break;
        case CT_ACT_LOG: y = log(v); break;
        default: y = 0; break;
        }
        out[i] = y;
    }
}

void act_backward(ct_real *dx, const ct_real *dout, const ct_real *x, const ct_real *y,
                  int64_t n, ct_act act) {
#pragma omp parallel for schedule(static) PAR_IF(n)
    for (int64_t i = 0; i < n; i++) {
        ct_real v = x[i], d;
        switch (act) {
        case CT_ACT_GELU:
            d = (ct_real)0.5 * (1 + erf(v * INV_SQRT2)) + v * INV_SQRT2PI * exp((ct_real)-0.5 * v * v);
            break;
        case CT_ACT_QUICK_GELU: {
            ct_real s = sigm(QG_K * v);
            d = s + QG_K * v * s * (1 - s);
            break;
        }
        case CT_ACT_RELU: d = v > 0 ? 1 : 0; break;
        case CT_ACT_SIGMOID: d = y[i] * (1 - y[i]); break;
        case CT_ACT_TANH: d = 1 - y[i] * y[i]; break;
        case CT_ACT_EXP: d = y[i]; break;
        case CT_ACT_LOG: d = 1 / v; break;
        default: d = 0; break;
        }
        dx[i] += d * dout[i];
    }
}
