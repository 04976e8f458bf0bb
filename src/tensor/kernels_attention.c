/* Fused multi-head attention. Each (batch, head) pair is independent: its
 * scores, softmax and weighted sum are computed with small GEMMs on strided
 * views of q/k/v (no head split copies), one BLAS thread per OpenMP thread.
 * The softmax probabilities are kept for backward. */
#include <math.h>
#include <omp.h>
#include <string.h>
#include <tgmath.h>

#include "base/blas.h"
#include "tensor/kernels.h"

size_t attention_scratch_size(int64_t B, int64_t Tq, int64_t Tk, int64_t P, int64_t C,
                              int nthreads) {
    return (size_t)nthreads * (size_t)(Tq * (P + Tk)) + (size_t)(P > 0 ? 2 * B * P * C : 0);
}

/* Key j (0-based over P + Tk, extras first) is visible from query i? */
static inline int64_t causal_limit(int64_t i, int64_t Tq, int64_t Tk, int64_t P) {
    return P + i + (Tk - Tq) + 1; /* keys [0, limit) visible */
}

void attention_forward(ct_real *out, ct_real *att, const ct_real *q, const ct_real *k,
                       const ct_real *v, const ct_real *ek, const ct_real *ev, int64_t B,
                       int64_t Tq, int64_t Tk, int64_t P, int64_t C, int64_t NH, bool causal) {
    // out, q (B, Tq, C); k, v (B, Tk, C); ek, ev (P, C); att (B, NH, Tq, P + Tk)
    const int64_t hs = C / NH, L = P + Tk;
    const ct_real scale = 1 / sqrt((ct_real)hs);
    int nt = ct_blas_get_threads();
    ct_blas_set_threads(1);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < B * NH; bh++) {
        int64_t b = bh / NH, h = bh % NH;
        const ct_real *qh = q + b * Tq * C + h * hs, *kh = k + b * Tk * C + h * hs;
        const ct_real *vh = v + b * Tk * C + h * hs;
        ct_real *A = att + bh * Tq * L, *oh = out + b * Tq * C + h * hs;
        if (P) ct_gemm(false, true, (int)Tq, (int)P, (int)hs, scale, qh, (int)C, ek + h * hs,
                       (int)C, 0, A, (int)L);
        ct_gemm(false, true, (int)Tq, (int)Tk, (int)hs, scale, qh, (int)C, kh, (int)C, 0, A + P,
                (int)L);
        for (int64_t i = 0; i < Tq; i++) {
            ct_real *row = A + i * L;
            int64_t lim = causal ? causal_limit(i, Tq, Tk, P) : L;
            if (lim > L) lim = L;
            ct_real mx = -INFINITY, s = 0;
            for (int64_t j = 0; j < lim; j++) mx = row[j] > mx ? row[j] : mx;
            for (int64_t j = 0; j < lim; j++) s += (row[j] = exp(row[j] - mx));
            ct_real inv = s > 0 ? 1 / s : 0;
            for (int64_t j = 0; j < lim; j++) row[j] *= inv;
            for (int64_t j = lim > 0 ? lim : 0; j < L; j++) row[j] = 0;
        }
        if (P) ct_gemm(false, false, (int)Tq, (int)hs, (int)P, 1, A, (int)L, ev + h * hs, (int)C,
                       0, oh, (int)C);
        ct_gemm(false, false, (int)Tq, (int)hs, (int)Tk, 1, A + P, (int)L, vh, (int)C, P ? 1 : 0,
                oh, (int)C);
    }
    ct_blas_set_threads(nt);
}

void attention_backward(ct_real *dq, ct_real *dk, ct_real *dv, ct_real *dek, ct_real *dev,
                        ct_real *scratch, const ct_real *dout, const ct_real *att,
                        const ct_real *q, const ct_real *k, const ct_real *v,
                        const ct_real *ek, const ct_real *ev, int64_t B, int64_t Tq,
                        int64_t Tk, int64_t P, int64_t C, int64_t NH, bool causal) {
    const int64_t hs = C / NH, L = P + Tk;
    const ct_real scale = 1 / sqrt((ct_real)hs);
    const int nthr = omp_get_max_threads();
    /* Per-batch partial sums for the shared extra tokens: each (b, h) writes
     * its own (b, head-columns) block, then a reduction over b. */
    ct_real *dek_part = scratch + (size_t)nthr * (size_t)(Tq * L);
    ct_real *dev_part = dek_part + B * P * C;
    bool need_ds = dq || dk || dek;
    int nt = ct_blas_get_threads();
    ct_blas_set_threads(1);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < B * NH; bh++) {
        int64_t b = bh / NH, h = bh % NH;
        ct_real *dA = scratch + (size_t)omp_get_thread_num() * (size_t)(Tq * L);
        const ct_real *A = att + bh * Tq * L, *dOh = dout + b * Tq * C + h * hs;
        const ct_real *qh = q + b * Tq * C + h * hs, *kh = k + b * Tk * C + h * hs;
        const ct_real *vh = v + b * Tk * C + h * hs;
        if (dv)
            ct_gemm(true, false, (int)Tk, (int)hs, (int)Tq, 1, A + P, (int)L, dOh, (int)C, 1,
                    dv + b * Tk * C + h * hs, (int)C);
        if (dev && P)
            ct_gemm(true, false, (int)P, (int)hs, (int)Tq, 1, A, (int)L, dOh, (int)C, 0,
                    dev_part + b * P * C + h * hs, (int)C);
        if (!need_ds) continue;
        // dA = dO V^T, then dS = A * (dA - rowsum(dA * A)) in place
        if (P) ct_gemm(false, true, (int)Tq, (int)P, (int)hs, 1, dOh, (int)C, ev + h * hs,
                       (int)C, 0, dA, (int)L);
        ct_gemm(false, true, (int)Tq, (int)Tk, (int)hs, 1, dOh, (int)C, vh, (int)C, 0, dA + P,
                (int)L);
        for (int64_t i = 0; i < Tq; i++) {
            const ct_real *a = A + i * L;
            ct_real *d = dA + i * L, dot = 0;
            int64_t lim = causal ? causal_limit(i, Tq, Tk, P) : L;
            if (lim > L) lim = L;
            for (int64_t j = 0; j < lim; j++) dot += d[j] * a[j];
            for (int64_t j = 0; j < lim; j++) d[j] = a[j] * (d[j] - dot);
            for (int64_t j = lim > 0 ? lim : 0; j < L; j++) d[j] = 0;
        }
        if (dq) {
            ct_real *dqh = dq + b * Tq * C + h * hs;
            if (P) ct_gemm(false, false, (int)Tq, (int)hs, (int)P, scale, dA, (int)L, ek + h * hs,
                           (int)C, 1, dqh, (int)C);
            ct_gemm(false, false, (int)Tq, (int)hs, (int)Tk, scale, dA + P, (int)L, kh, (int)C, 1,
                    dqh, (int)C);
        }
        if (dk)
            ct_gemm(true, false, (int)Tk, (int)hs, (int)Tq, scale, dA + P, (int)L, qh, (int)C, 1,
                    dk + b * Tk * C + h * hs, (int)C);
        if (dek && P)
            ct_gemm(true, false, (int)P, (int)hs, (int)Tq, scale, dA, (int)L, qh, (int)C, 0,
                    dek_part + b * P * C + h * hs, (int)C);
    }
    ct_blas_set_threads(nt);
    if (P && (dek || dev)) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < P * C; i++)
            for (int64_t b = 0; b < B; b++) {
                if (dek) dek[i] += dek_part[b * P * C + i];
                if (dev) dev[i] += dev_part[b * P * C + i];
            }
    }
}
