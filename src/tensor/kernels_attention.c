/* Fused multi-head attention. Each (batch, head) pair is independent and is
 * one OpenMP task: scores, masked softmax and the weighted sum are computed
 * with the register-blocked small_gemm on per-thread packed copies of that
 * head's q/k/v (BLAS dispatch costs more than the work at T = 50..200,
 * head size 64). The softmax probabilities are kept for backward.
 * Extra key/value tokens (P of them, shared by the batch) come first in the
 * key order; their gradients are summed over the batch through per-batch
 * partials (race-free, deterministic). */
#include <math.h>
#include <omp.h>
#include <string.h>
#include <tgmath.h>

#include "tensor/kernels.h"
#include "tensor/smallgemm.h"

typedef struct {
    int64_t L, hs, ldL, ldh;
} dims;

static dims get_dims(int64_t Tk, int64_t P, int64_t C, int64_t NH) {
    dims d;
    d.L = P + Tk;
    d.hs = C / NH;
    d.ldL = ct_small_ldb((int)d.L);
    d.ldh = ct_small_ldb((int)d.hs);
    return d;
}

/* Per-thread values needed by forward (and by backward when bwd). */
static size_t per_thread(int64_t Tq, dims d, bool bwd) {
    /* forward: packed keys and values, and one head's probabilities when the
     * caller keeps none (inference) */
    size_t fwd = (size_t)(d.hs * d.ldL + d.L * d.ldh + Tq * d.L);
    if (!bwd) return fwd;
    return (size_t)(d.hs * d.ldL + 3 * d.L * Tq + 2 * Tq * d.ldh + d.L * d.ldh);
}

size_t attention_scratch_size(int64_t B, int64_t Tq, int64_t Tk, int64_t P, int64_t C,
                              int64_t NH, int nthreads, bool backward) {
    dims d = get_dims(Tk, P, C, NH);
    size_t s = (size_t)nthreads * per_thread(Tq, d, backward);
    if (backward && P > 0) s += (size_t)(2 * B * P * C);
    return s;
}

/* dst (hs, ldL): column j = key j of this head (extras first), zero padded. */
static void pack_keys_t(ct_real *dst, const ct_real *e, const ct_real *x, int64_t P, int64_t T,
                        int64_t C, dims d) {
    for (int64_t c = 0; c < d.hs; c++) {
        ct_real *row = dst + c * d.ldL;
        for (int64_t j = 0; j < P; j++) row[j] = e[j * C + c];
        for (int64_t j = 0; j < T; j++) row[P + j] = x[j * C + c];
        for (int64_t j = d.L; j < d.ldL; j++) row[j] = 0;
    }
}

/* dst (L, ldh): row j = key j of this head (extras first), zero padded. */
static void pack_keys(ct_real *dst, const ct_real *e, const ct_real *x, int64_t P, int64_t T,
                      int64_t C, dims d) {
    if (P) small_pack(dst, e, (int)P, (int)d.hs, (int)C);
    small_pack(dst + P * d.ldh, x, (int)T, (int)d.hs, (int)C);
}

/* dst (cols, rows) = src (rows, cols; stride lds)^T, unpadded. */
static void transpose_into(ct_real *dst, const ct_real *src, int64_t rows, int64_t cols,
                           int64_t lds) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) dst[c * rows + r] = src[r * lds + c];
}

static inline int64_t visible(int64_t i, int64_t Tq, int64_t Tk, int64_t P, int64_t L,
                              bool causal) {
    if (!causal) return L;
    int64_t lim = P + i + (Tk - Tq) + 1; /* keys [0, lim) */
    return lim > L ? L : lim < 0 ? 0 : lim;
}

void attention_forward(ct_real *out, ct_real *att, ct_real *scratch, const ct_real *q,
                       const ct_real *k, const ct_real *v, const ct_real *ek, const ct_real *ev,
                       int64_t B, int64_t Tq, int64_t Tk, int64_t P, int64_t C, int64_t NH,
                       bool causal) {
    // out, q (B, Tq, C); k, v (B, Tk, C); ek, ev (P, C); att (B, NH, Tq, P + Tk)
    const dims d = get_dims(Tk, P, C, NH);
    const ct_real scale = 1 / sqrt((ct_real)d.hs);
    const size_t pt = per_thread(Tq, d, false);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < B * NH; bh++) {
        int64_t b = bh / NH, h = bh % NH, L = d.L;
        ct_real *Kt = scratch + (size_t)omp_get_thread_num() * pt, *Vp = Kt + d.hs * d.ldL;
        const ct_real *qh = q + b * Tq * C + h * d.hs;
        ct_real *A = att ? att + bh * Tq * L : Vp + L * d.ldh, *oh = out + b * Tq * C + h * d.hs;
        pack_keys_t(Kt, ek ? ek + h * d.hs : NULL, k + b * Tk * C + h * d.hs, P, Tk, C, d);
        pack_keys(Vp, ev ? ev + h * d.hs : NULL, v + b * Tk * C + h * d.hs, P, Tk, C, d);
        small_gemm((int)Tq, (int)L, (int)d.hs, scale, qh, (int)C, Kt, (int)d.ldL, 0, A, (int)L);
        for (int64_t i = 0; i < Tq; i++) {
            ct_real *row = A + i * L, mx = -INFINITY, s = 0;
            int64_t lim = visible(i, Tq, Tk, P, L, causal);
            for (int64_t j = 0; j < lim; j++) mx = row[j] > mx ? row[j] : mx;
            for (int64_t j = 0; j < lim; j++) row[j] -= mx;
            small_exp(row, row, (int)lim);
            for (int64_t j = 0; j < lim; j++) s += row[j];
            ct_real inv = s > 0 ? 1 / s : 0;
            for (int64_t j = 0; j < lim; j++) row[j] *= inv;
            for (int64_t j = lim; j < L; j++) row[j] = 0;
        }
        small_gemm((int)Tq, (int)d.hs, (int)L, 1, A, (int)L, Vp, (int)d.ldh, 0, oh, (int)C);
    }
}

void attention_backward(ct_real *dq, ct_real *dk, ct_real *dv, ct_real *dek, ct_real *dev,
                        ct_real *scratch, const ct_real *dout, const ct_real *att,
                        const ct_real *q, const ct_real *k, const ct_real *v,
                        const ct_real *ek, const ct_real *ev, int64_t B, int64_t Tq,
                        int64_t Tk, int64_t P, int64_t C, int64_t NH, bool causal) {
    const dims d = get_dims(Tk, P, C, NH);
    const int64_t L = d.L, hs = d.hs;
    const ct_real scale = 1 / sqrt((ct_real)hs);
    const size_t pt = per_thread(Tq, d, true);
    const int nthr = omp_get_max_threads();
    ct_real *dek_part = scratch + (size_t)nthr * pt, *dev_part = dek_part + B * P * C;
    const bool need_ds = dq || dk || dek, need_dv = dv || (dev && P);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < B * NH; bh++) {
        int64_t b = bh / NH, h = bh % NH;
        ct_real *Vt = scratch + (size_t)omp_get_thread_num() * pt; /* (hs, ldL)  */
        ct_real *At = Vt + hs * d.ldL;                              /* (L, Tq)    */
        ct_real *dOp = At + L * Tq;                                 /* (Tq, ldh)  */
        ct_real *dA = dOp + Tq * d.ldh;                             /* (Tq, L)    */
        ct_real *Kp = dA + Tq * L;                                  /* (L, ldh)   */
        ct_real *dSt = Kp + L * d.ldh;                              /* (L, Tq)    */
        ct_real *Qp = dSt + L * Tq;                                 /* (Tq, ldh)  */
        const ct_real *A = att + bh * Tq * L, *dOh = dout + b * Tq * C + h * hs;
        const ct_real *qh = q + b * Tq * C + h * hs;
        if (need_dv) {
            // dV_full (L, hs) = A^T dO: extras' part to the per-batch partial
            transpose_into(At, A, Tq, L, L);
            small_pack(dOp, dOh, (int)Tq, (int)hs, (int)C);
            if (dev && P)
                small_gemm((int)P, (int)hs, (int)Tq, 1, At, (int)Tq, dOp, (int)d.ldh, 0,
                           dev_part + b * P * C + h * hs, (int)C);
            if (dv)
                small_gemm((int)Tk, (int)hs, (int)Tq, 1, At + P * Tq, (int)Tq, dOp, (int)d.ldh, 1,
                           dv + b * Tk * C + h * hs, (int)C);
        }
        if (!need_ds) continue;
        // dA (Tq, L) = dO V_full^T, then dS = A * (dA - rowsum(dA * A)) in place
        pack_keys_t(Vt, ev ? ev + h * hs : NULL, v + b * Tk * C + h * hs, P, Tk, C, d);
        small_gemm((int)Tq, (int)L, (int)hs, 1, dOh, (int)C, Vt, (int)d.ldL, 0, dA, (int)L);
        for (int64_t i = 0; i < Tq; i++) {
            const ct_real *a = A + i * L;
            ct_real *g = dA + i * L, dot = 0;
            int64_t lim = visible(i, Tq, Tk, P, L, causal);
            for (int64_t j = 0; j < lim; j++) dot += g[j] * a[j];
            for (int64_t j = 0; j < lim; j++) g[j] = a[j] * (g[j] - dot);
            for (int64_t j = lim; j < L; j++) g[j] = 0;
        }
        if (dq) {
            // dQ (Tq, hs) += scale dS K_full
            pack_keys(Kp, ek ? ek + h * hs : NULL, k + b * Tk * C + h * hs, P, Tk, C, d);
            small_gemm((int)Tq, (int)hs, (int)L, scale, dA, (int)L, Kp, (int)d.ldh, 1,
                       dq + b * Tq * C + h * hs, (int)C);
        }
        if (dk || (dek && P)) {
            // dK_full (L, hs) = scale dS^T Q
            transpose_into(dSt, dA, Tq, L, L);
            small_pack(Qp, qh, (int)Tq, (int)hs, (int)C);
            if (dek && P)
                small_gemm((int)P, (int)hs, (int)Tq, scale, dSt, (int)Tq, Qp, (int)d.ldh, 0,
                           dek_part + b * P * C + h * hs, (int)C);
            if (dk)
                small_gemm((int)Tk, (int)hs, (int)Tq, scale, dSt + P * Tq, (int)Tq, Qp,
                           (int)d.ldh, 1, dk + b * Tk * C + h * hs, (int)C);
        }
    }
    if (P && (dek || dev)) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < P * C; i++)
            for (int64_t b = 0; b < B; b++) {
                if (dek) dek[i] += dek_part[b * P * C + i];
                if (dev) dev[i] += dev_part[b * P * C + i];
            }
    }
}
