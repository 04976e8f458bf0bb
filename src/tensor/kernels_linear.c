/* Linear layers and batched matmul, on the engine's GEMM (base/gemm.c) with
 * its epilogue where it applies, else through ct_gemm. */
#include <omp.h>
#include <string.h>

#include "base/blas.h"
#include "base/cpu.h"
#include "base/gemm.h"
#include "tensor/kernels.h"

/* The engine's GEMM with the bias, residual and activation applied to each
 * tile of out as it is finished; false where it does not apply. */
static bool fused(ct_real *out, const ct_real *inp, const ct_real *w, const ct_wpack *pk,
                  const ct_real *b, const ct_real *res, int64_t N, int64_t C, int64_t OC,
                  int act) {
#ifdef CT_REAL_DOUBLE
    (void)out, (void)inp, (void)w, (void)pk, (void)b, (void)res, (void)N, (void)C, (void)OC,
        (void)act;
    return false;
#else
    if (act >= 0 && act != CT_ACT_GELU && act != CT_ACT_QUICK_GELU) return false;
    ct_gemm_epilogue ep = {b, res, (int)OC,
                           act == CT_ACT_GELU         ? CT_EPI_GELU
                           : act == CT_ACT_QUICK_GELU ? CT_EPI_QUICK_GELU
                                                      : CT_EPI_NONE};
    if (pk) return ct_gemm_wpack((int)N, inp, (int)C, pk, out, (int)OC, &ep);
    if (ct_cpu_gemm_blas()) return false;
    return ct_sgemm_ex(false, true, (int)N, (int)OC, (int)C, 1, inp, (int)C, w, (int)C, 0, out,
                       (int)OC, &ep);
#endif
}

void linear_forward_ex(ct_real *out, const ct_real *inp, const ct_real *w, const ct_wpack *pk,
                       const ct_real *b, const ct_real *res, int64_t N, int64_t C, int64_t OC,
                       int act) {
    // out (N, OC), inp (N, C), w (OC, C), b (OC)
    if (fused(out, inp, w, pk, b, res, N, C, OC, act)) return;
    if (b) {
#pragma omp parallel for schedule(static) if (N * OC > 65536)
        for (int64_t n = 0; n < N; n++) memcpy(out + n * OC, b, (size_t)OC * sizeof(ct_real));
    }
    ct_gemm(false, true, (int)N, (int)OC, (int)C, 1, inp, (int)C, w, (int)C, b ? 1 : 0, out,
            (int)OC);
    if (res) binary_forward(out, out, res, N * OC, N * OC, CT_BIN_ADD);
    if (act >= 0) act_forward(out, out, N * OC, (ct_act)act);
}

void linear_forward(ct_real *out, const ct_real *inp, const ct_real *w, const ct_real *b,
                    int64_t N, int64_t C, int64_t OC) {
    linear_forward_ex(out, inp, w, NULL, b, NULL, N, C, OC, -1);
}

/* db[o] += sum_n dout[n, o], as dout^T 1 (a memory-bound GEMV; BLAS's is
 * threaded and streams dout once). */
static void bias_backward(ct_real *db, const ct_real *dout, int64_t N, int64_t OC) {
    enum { CHUNK = 4096 };
    ct_real ones[CHUNK];
    for (int i = 0; i < CHUNK; i++) ones[i] = 1;
    for (int64_t n0 = 0; n0 < N; n0 += CHUNK) {
        int64_t n = N - n0 < CHUNK ? N - n0 : CHUNK;
        ct_gemv(true, (int)n, (int)OC, 1, dout + n0 * OC, (int)OC, ones, 1, db);
    }
}

void linear_backward(ct_real *dinp, ct_real *dw, ct_real *db, const ct_real *dout,
                     const ct_real *inp, const ct_real *w, int64_t N, int64_t C, int64_t OC) {
    // dinp (N, C) += dout (N, OC) @ w (OC, C)
    if (dinp)
        ct_gemm(false, false, (int)N, (int)C, (int)OC, 1, dout, (int)OC, w, (int)C, 1, dinp,
                (int)C);
    // dw (OC, C) += dout^T (OC, N) @ inp (N, C)
    if (dw)
        ct_gemm(true, false, (int)OC, (int)C, (int)N, 1, dout, (int)OC, inp, (int)C, 1, dw,
                (int)C);
    if (db) bias_backward(db, dout, N, OC);
}

/* Many small GEMMs: one BLAS thread each, OpenMP across the batch. Few large
 * ones: a plain loop, BLAS threads inside. */
static bool batch_parallel(int64_t batch, int64_t M, int64_t N, int64_t K) {
    return batch >= omp_get_max_threads() && M * N * K < (int64_t)1 << 21;
}

#define BATCH_LOOP(batch, M, N, K, body)                           \
    do {                                                           \
        if (batch_parallel(batch, M, N, K)) {                      \
            int nt_ = ct_blas_get_threads();                       \
            ct_blas_set_threads(1);                                \
            _Pragma("omp parallel for schedule(static)")           \
            for (int64_t i = 0; i < batch; i++) body;              \
            ct_blas_set_threads(nt_);                              \
        } else {                                                   \
            for (int64_t i = 0; i < batch; i++) body;              \
        }                                                          \
    } while (0)

void matmul_forward(ct_real *c, const ct_real *a, const ct_real *b, int64_t batch, int64_t M,
                    int64_t N, int64_t K, bool ta, bool tb, int64_t sa, int64_t sb) {
    int lda = (int)(ta ? M : K), ldb = (int)(tb ? K : N);
    if (sb == 0 && !ta) {
        /* Shared right operand: one tall GEMM over all batches. */
        ct_gemm(false, tb, (int)(batch * M), (int)N, (int)K, 1, a, lda, b, ldb, 0, c, (int)N);
        return;
    }
    BATCH_LOOP(batch, M, N, K,
               ct_gemm(ta, tb, (int)M, (int)N, (int)K, 1, a + i * sa, lda, b + i * sb, ldb, 0,
                       c + i * M * N, (int)N));
}

void matmul_backward(ct_real *da, ct_real *db, const ct_real *dc, const ct_real *a,
                     const ct_real *b, int64_t batch, int64_t M, int64_t N, int64_t K, bool ta,
                     bool tb, int64_t sa, int64_t sb) {
    int lda = (int)(ta ? M : K), ldb = (int)(tb ? K : N);
    if (da) {
        if (sb == 0 && !ta) {
            // dA (batch*M, K) += dC op(B)^T
            ct_gemm(false, !tb, (int)(batch * M), (int)K, (int)N, 1, dc, (int)N, b, ldb, 1, da,
                    (int)K);
        } else if (!ta) {
            BATCH_LOOP(batch, M, N, K,
                       ct_gemm(false, !tb, (int)M, (int)K, (int)N, 1, dc + i * M * N, (int)N,
                               b + i * sb, ldb, 1, da + i * sa, (int)K));
        } else {
            // dA (K, M) += op(B) dC^T
            BATCH_LOOP(batch, M, N, K,
                       ct_gemm(tb, true, (int)K, (int)M, (int)N, 1, b + i * sb, ldb,
                               dc + i * M * N, (int)N, 1, da + i * sa, (int)M));
        }
    }
    if (db) {
        if (sb == 0 && !ta) {
            /* Shared B, plain A: (batch*M) rows contract in one GEMM. */
            if (!tb)
                ct_gemm(true, false, (int)K, (int)N, (int)(batch * M), 1, a, lda, dc, (int)N, 1,
                        db, (int)N);
            else
                ct_gemm(true, false, (int)N, (int)K, (int)(batch * M), 1, dc, (int)N, a, lda, 1,
                        db, (int)K);
        } else if (sb == 0) {
            /* Shared B: its gradient sums over the batch, so no batch split. */
            for (int64_t i = 0; i < batch; i++) {
                if (!tb)
                    ct_gemm(!ta, false, (int)K, (int)N, (int)M, 1, a + i * sa, lda,
                            dc + i * M * N, (int)N, 1, db, (int)N);
                else
                    ct_gemm(true, ta, (int)N, (int)K, (int)M, 1, dc + i * M * N, (int)N,
                            a + i * sa, lda, 1, db, (int)K);
            }
        } else if (!tb) {
            // dB (K, N) += op(A)^T dC
            BATCH_LOOP(batch, M, N, K,
                       ct_gemm(!ta, false, (int)K, (int)N, (int)M, 1, a + i * sa, lda,
                               dc + i * M * N, (int)N, 1, db + i * sb, (int)N));
        } else {
            // dB (N, K) += dC^T op(A)
            BATCH_LOOP(batch, M, N, K,
                       ct_gemm(true, ta, (int)N, (int)K, (int)M, 1, dc + i * M * N, (int)N,
                               a + i * sa, lda, 1, db + i * sb, (int)K));
        }
    }
}

/* ---- LoRA: out = x wᵀ + b + s · ((x ⊙ m) aᵀ) bmᵀ, the dropout mask m
 * regenerated from (seed, element) instead of stored ---- */

/* 1/(1-p) or 0 for element i: dropped with probability p. */
static inline ct_real lora_keep(uint64_t seed, uint64_t i, float p) {
    if (p <= 0) return 1;
    ct_rng r = {seed, i};
    return ct_rng_uniform(&r) < p ? 0 : (ct_real)(1.0 / (1.0 - (double)p));
}

void lora_forward(ct_real *out, ct_real *u, const ct_real *inp, const ct_real *w,
                  const ct_real *b, const ct_real *a, const ct_real *bm, ct_real s, float p,
                  uint64_t seed, int64_t N, int64_t C, int64_t OC, int64_t R) {
    // out (N, OC), u (N, R) = (inp ⊙ m) aᵀ saved, a (R, C), bm (OC, R)
    linear_forward(out, inp, w, b, N, C, OC);
#pragma omp parallel for schedule(static) if (N * C > 65536)
    for (int64_t n = 0; n < N; n++) {
        ct_real *un = u + n * R;
        for (int64_t r = 0; r < R; r++) un[r] = 0;
        const ct_real *x = inp + n * C;
        for (int64_t c = 0; c < C; c++) {
            ct_real xm = x[c] * lora_keep(seed, (uint64_t)(n * C + c), p);
            if (xm == 0) continue;
            for (int64_t r = 0; r < R; r++) un[r] += xm * a[r * C + c];
        }
    }
    // out += s · u bmᵀ
    ct_gemm(false, true, (int)N, (int)OC, (int)R, s, u, (int)R, bm, (int)R, 1, out, (int)OC);
}

void lora_backward(ct_real *dinp, ct_real *da, ct_real *dbm, const ct_real *dout,
                   const ct_real *inp, const ct_real *w, const ct_real *a, const ct_real *bm,
                   const ct_real *u, ct_real *du, ct_real *part, int n_part, ct_real s,
                   float p, uint64_t seed, int64_t N, int64_t C, int64_t OC, int64_t R) {
    // the frozen path: dinp += dout w (no weight or bias gradient here)
    if (dinp)
        ct_gemm(false, false, (int)N, (int)C, (int)OC, 1, dout, (int)OC, w, (int)C, 1, dinp,
                (int)C);
    // dbm (OC, R) += s · doutᵀ u
    if (dbm)
        ct_gemm(true, false, (int)OC, (int)R, (int)N, s, dout, (int)OC, u, (int)R, 1, dbm, (int)R);
    if (!dinp && !da) return;
    // du (N, R) = s · dout bm (scratch)
    ct_gemm(false, false, (int)N, (int)R, (int)OC, s, dout, (int)OC, bm, (int)R, 0, du, (int)R);
    // dinp[n, c] += m[n, c] Σ_r du[n, r] a[r, c];  da[r, c] += Σ_n du[n, r] x[n, c] m[n, c]
    // in fixed row blocks, one partial da per block, summed in block order
    // (the same result whatever the threads do)
    int64_t nblk = n_part, per = (N + nblk - 1) / nblk;
    if (da) memset(part, 0, (size_t)nblk * (size_t)(R * C) * sizeof *part);
#pragma omp parallel for schedule(static) if (N * C > 65536)
    for (int64_t k = 0; k < nblk; k++) {
        ct_real *pk = part + k * R * C;
        for (int64_t n = k * per; n < N && n < (k + 1) * per; n++) {
            const ct_real *dn = du + n * R, *x = inp + n * C;
            for (int64_t c = 0; c < C; c++) {
                ct_real m = lora_keep(seed, (uint64_t)(n * C + c), p);
                if (m == 0) continue;
                if (dinp) {
                    ct_real acc = 0;
                    for (int64_t r = 0; r < R; r++) acc += dn[r] * a[r * C + c];
                    dinp[n * C + c] += acc * m;
                }
                if (da) {
                    ct_real xm = x[c] * m;
                    for (int64_t r = 0; r < R; r++) pk[r * C + c] += dn[r] * xm;
                }
            }
        }
    }
    for (int64_t k = 0; da && k < nblk; k++)
        for (int64_t i = 0; i < R * C; i++) da[i] += part[k * R * C + i];
}

void dropout_forward(ct_real *out, const ct_real *inp, float p, uint64_t seed, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) out[i] = inp[i] * lora_keep(seed, (uint64_t)i, p);
}

void dropout_backward(ct_real *dinp, const ct_real *dout, float p, uint64_t seed, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) dinp[i] += dout[i] * lora_keep(seed, (uint64_t)i, p);
}
