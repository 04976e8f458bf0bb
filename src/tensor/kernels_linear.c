/* Linear layers and batched matmul: everything goes to CBLAS GEMM. */
#include <omp.h>
#include <string.h>

#include "base/blas.h"
#include "tensor/kernels.h"

void linear_forward(ct_real *out, const ct_real *inp, const ct_real *w, const ct_real *b,
                    int64_t N, int64_t C, int64_t OC) {
    // out (N, OC), inp (N, C), w (OC, C), b (OC)
    if (b) {
#pragma omp parallel for schedule(static) if (N * OC > 65536)
        for (int64_t n = 0; n < N; n++) memcpy(out + n * OC, b, (size_t)OC * sizeof(ct_real));
    }
    ct_gemm(false, true, (int)N, (int)OC, (int)C, 1, inp, (int)C, w, (int)C, b ? 1 : 0, out,
            (int)OC);
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
