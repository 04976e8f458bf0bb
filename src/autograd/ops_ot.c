/* Sinkhorn transport plans (PLOT). Forward only: PLOT computes the plan under
 * torch.no_grad() and treats it as a constant weight on the similarities, so
 * no tape node is recorded and the output never requires grad, whatever the
 * cost does. Gradients reach the cost only through the caller's own use of
 * it (e.g. sum(plan * sim)). */
#include <math.h>

#include "autograd/graph.h"
#include "tensor/kernels.h"

/* Marginal entries must be finite and >= 0. Returns the first bad index or -1. */
static int64_t bad_marginal(const ct_real *m, int64_t n) {
    for (int64_t i = 0; m && i < n; i++)
        if (!(m[i] >= 0) || isinf(m[i])) return i;
    return -1;
}

ct_tensor *ct_sinkhorn(ct_graph *g, ct_tensor *cost, const ct_real *r, const ct_real *c,
                       float eps, int iters, float tol) {
    if (!ct_op_inputs_ok(g, &cost, 1)) return NULL;
    char s1[64];
    if (cost->ndim != 2 && cost->ndim != 3)
        return ct_op_fail(g, CT_ERR_ARG, "sinkhorn: cost %s must be (B, M, N) or (M, N)",
                          ct_shape_str(cost, s1, sizeof s1));
    int64_t B = cost->ndim == 3 ? cost->shape[0] : 1;
    int64_t M = cost->shape[cost->ndim - 2], N = cost->shape[cost->ndim - 1];
    if (M < 1 || N < 1)
        return ct_op_fail(g, CT_ERR_ARG, "sinkhorn: cost %s has an empty side",
                          ct_shape_str(cost, s1, sizeof s1));
    if (!(eps > 0) || isinf(eps))
        return ct_op_fail(g, CT_ERR_ARG, "sinkhorn: eps %g must be positive and finite",
                          (double)eps);
    if (iters < 1)
        return ct_op_fail(g, CT_ERR_ARG, "sinkhorn: iters %d must be >= 1", iters);
    if (isnan(tol))
        return ct_op_fail(g, CT_ERR_ARG, "sinkhorn: tol is NaN");
    int64_t bi = bad_marginal(r, M), bj = bad_marginal(c, N);
    if (bi >= 0)
        return ct_op_fail(g, CT_ERR_ARG, "sinkhorn: row marginal r[%lld] = %g must be finite "
                          "and non-negative", (long long)bi, (double)r[bi]);
    if (bj >= 0)
        return ct_op_fail(g, CT_ERR_ARG, "sinkhorn: column marginal c[%lld] = %g must be "
                          "finite and non-negative", (long long)bj, (double)c[bj]);
    ct_tensor *out = ct_op_out(g, cost->ndim, cost->shape);
    ct_real *scratch = ct_op_alloc(g, 2 * (size_t)(B * (M + N)) * sizeof(ct_real));
    if (!out || !scratch) return NULL;
    sinkhorn_forward(out->data, scratch, cost->data, r, c, B, M, N, (ct_real)eps, iters,
                     (ct_real)tol);
    out->requires_grad = false;
    return out;
}
