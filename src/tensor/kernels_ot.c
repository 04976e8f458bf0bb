/* Entropic optimal transport: Sinkhorn-Knopp as PLOT runs it.
 *
 * Reference: CHENGY12/PLOT, plot-coop/trainers/plot.py, CustomCLIP.Sinkhorn
 * and CustomCLIP.forward. There the cost is C = 1 - sim, the kernel is built
 * outside the loop as K = exp(-C / eps) (eps = 0.1; the division by eps
 * happens before exp, on the cost), and the loop is, with marginals u (M) and
 * v (N) and scalings r, c initialised to ones:
 *     for up to max_iter (100) iterations:
 *         r0 = r;  r = u / (K c);  c = v / (K^T r)
 *         err = mean |r - r0|   (one scalar over the whole batch and all rows)
 *         stop if err < thresh (1e-2)      [checked after both updates]
 *     T = r[:, None] * K * c[None, :]
 * Here the marginals are called r and c (the public API's names) and the
 * scalings u and v; the arithmetic is the same. */
#include <math.h>
#include <tgmath.h>

#include "tensor/kernels.h"

int sinkhorn_forward(ct_real *plan, ct_real *scratch, const ct_real *cost, const ct_real *r,
                     const ct_real *c, int64_t B, int64_t M, int64_t N, ct_real eps, int iters,
                     ct_real tol) {
    // plan, cost (B, M, N); r (M), c (N) or NULL (uniform 1/M, 1/N), shared by the batch.
    // scratch: u (B, M), v (B, N), per-batch error sums (B) -- within B*(M+N)*2 values.
    ct_real *u = scratch, *v = scratch + B * M, *err_b = scratch + B * (M + N);
    const ct_real rm = 1 / (ct_real)M, cn = 1 / (ct_real)N;
    const int64_t work = B * M * N;

    /* K = exp(-cost / eps), kept in plan until the final scaling. */
#pragma omp parallel for schedule(static) if (work > 32768)
    for (int64_t i = 0; i < work; i++) plan[i] = exp(-cost[i] / eps);
    for (int64_t i = 0; i < B * M; i++) u[i] = 1;
    for (int64_t i = 0; i < B * N; i++) v[i] = 1;

    int it = 0;
    while (it < iters) {
        it++;
        /* Batch elements are independent within an iteration; only the
         * stopping test couples them, through err_b summed in order below. */
#pragma omp parallel for schedule(static) if (work > 32768)
        for (int64_t b = 0; b < B; b++) {
            const ct_real *K = plan + b * M * N;
            ct_real *ub = u + b * M, *vb = v + b * N, e = 0;
            // u = r / (K v), accumulating |u_new - u_old|
            for (int64_t m = 0; m < M; m++) {
                const ct_real *row = K + m * N;
                ct_real kv = 0;
                for (int64_t n = 0; n < N; n++) kv += row[n] * vb[n];
                ct_real un = (r ? r[m] : rm) / kv;
                e += fabs(un - ub[m]);
                ub[m] = un;
            }
            // v = c / (K^T u): accumulate K^T u in vb row by row, then divide
            for (int64_t n = 0; n < N; n++) vb[n] = 0;
            for (int64_t m = 0; m < M; m++) {
                const ct_real *row = K + m * N;
                ct_real um = ub[m];
                for (int64_t n = 0; n < N; n++) vb[n] += row[n] * um;
            }
            for (int64_t n = 0; n < N; n++) vb[n] = (c ? c[n] : cn) / vb[n];
            err_b[b] = e;
        }
        ct_real err = 0;
        for (int64_t b = 0; b < B; b++) err += err_b[b];
        err /= (ct_real)(B * M);
        if (err < tol) break;
    }

    /* plan = diag(u) K diag(v), multiplied as PLOT does: (u v^T) * K */
#pragma omp parallel for schedule(static) if (work > 32768)
    for (int64_t bm = 0; bm < B * M; bm++) {
        ct_real *row = plan + bm * N;
        const ct_real *vb = v + (bm / M) * N;
        ct_real um = u[bm];
        for (int64_t n = 0; n < N; n++) row[n] = (um * vb[n]) * row[n];
    }
    return it;
}
