/* Tape wiring for linear and matmul. */
#include "autograd/graph.h"
#include "tensor/kernels.h"

static void linear_bw(ct_graph *g, ct_node *n) {
    ct_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    linear_backward(ct_op_grad(g, x), ct_op_grad(g, w), ct_op_grad(g, b), n->out->grad, x->data,
                    w->data, n->i[0], n->i[1], n->i[2]);
}

/* x wᵀ + b (+ res) (then act when act >= 0). Without a tape the whole
 * thing is one pass of the engine's GEMM; with one, the linear op is
 * recorded and the residual add and activation are ops of their own. */
static ct_tensor *linear_impl(ct_graph *g, ct_tensor *x, ct_tensor *w, ct_tensor *b,
                              ct_tensor *res, int act) {
    ct_tensor *in[4] = {x, w, b, res};
    if (!ct_op_inputs_ok(g, in, 2)) return NULL;
    int64_t C = ct_cols(x), N = ct_rows(x);
    char s1[64], s2[64];
    if (w->ndim != 2 || w->shape[1] != C)
        return ct_op_fail(g, CT_ERR_ARG, "linear: input %s does not match weight %s%s%s",
                          ct_shape_str(x, s1, sizeof s1), ct_shape_str(w, s2, sizeof s2),
                          w->name ? " " : "", w->name ? w->name : "");
    int64_t OC = w->shape[0];
    if (b && (b->numel != OC))
        return ct_op_fail(g, CT_ERR_ARG, "linear: bias has %lld values, expected %lld",
                          (long long)b->numel, (long long)OC);
    int64_t shape[CT_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
    shape[x->ndim ? x->ndim - 1 : 0] = OC;
    if (res && (res->numel != N * OC || res->ndim != (x->ndim ? x->ndim : 1)))
        return ct_op_fail(g, CT_ERR_ARG, "linear: residual %s does not match the output",
                          ct_shape_str(res, s1, sizeof s1));
    bool grad = ct_op_needs_grad(g, in, 4);
    if (grad && (res || act >= 0)) {
        ct_tensor *y = linear_impl(g, x, w, b, NULL, -1);
        if (res) y = ct_add(g, res, y);
        if (act == CT_ACT_GELU) y = ct_gelu(g, y);
        if (act == CT_ACT_QUICK_GELU) y = ct_quick_gelu(g, y);
        return y;
    }
    ct_tensor *out = ct_op_out(g, x->ndim ? x->ndim : 1, shape);
    if (!out) return NULL;
    /* without a tape, w's bf16 copy where ct_clip_set_precision made one */
    linear_forward_ex(out->data, x->data, w->data, grad ? NULL : w->lowp, b ? b->data : NULL,
                      res ? res->data : NULL, N, C, OC, act);
    if (grad) {
        ct_node *nd = ct_op_record(g, out, "linear", linear_bw, in, 3);
        if (!nd) return NULL;
        nd->i[0] = N, nd->i[1] = C, nd->i[2] = OC;
    }
    return out;
}

ct_tensor *ct_linear(ct_graph *g, ct_tensor *x, ct_tensor *w, ct_tensor *b) {
    return linear_impl(g, x, w, b, NULL, -1);
}

ct_tensor *ct_linear_act(ct_graph *g, ct_tensor *x, ct_tensor *w, ct_tensor *b, bool gelu) {
    return linear_impl(g, x, w, b, NULL, gelu ? CT_ACT_GELU : CT_ACT_QUICK_GELU);
}

ct_tensor *ct_linear_residual(ct_graph *g, ct_tensor *x, ct_tensor *w, ct_tensor *b,
                              ct_tensor *res) {
    if (!res) return ct_op_fail(g, CT_ERR_ARG, "linear: NULL residual");
    return linear_impl(g, x, w, b, res, -1);
}

static void matmul_bw(ct_graph *g, ct_node *n) {
    ct_tensor *a = n->in[0], *b = n->in[1];
    matmul_backward(ct_op_grad(g, a), ct_op_grad(g, b), n->out->grad, a->data, b->data, n->i[0],
                    n->i[1], n->i[2], n->i[3], n->i[4], n->i[5], n->i[6], n->i[7]);
}

ct_tensor *ct_matmul(ct_graph *g, ct_tensor *a, ct_tensor *b, bool ta, bool tb) {
    ct_tensor *in[2] = {a, b};
    if (!ct_op_inputs_ok(g, in, 2)) return NULL;
    char s1[64], s2[64];
    if (a->ndim < 2 || b->ndim < 2 || (b->ndim != 2 && b->ndim != a->ndim))
        goto bad;
    int64_t M = ta ? a->shape[a->ndim - 1] : a->shape[a->ndim - 2];
    int64_t K = ta ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1];
    int64_t Kb = tb ? b->shape[b->ndim - 1] : b->shape[b->ndim - 2];
    int64_t N = tb ? b->shape[b->ndim - 2] : b->shape[b->ndim - 1];
    if (K != Kb) goto bad;
    int64_t batch = 1;
    for (int d = 0; d < a->ndim - 2; d++) batch *= a->shape[d];
    if (b->ndim != 2)
        for (int d = 0; d < a->ndim - 2; d++)
            if (a->shape[d] != b->shape[d]) goto bad;
    int64_t shape[CT_MAX_DIMS];
    for (int d = 0; d < a->ndim - 2; d++) shape[d] = a->shape[d];
    shape[a->ndim - 2] = M;
    shape[a->ndim - 1] = N;
    ct_tensor *out = ct_op_out(g, a->ndim, shape);
    if (!out) return NULL;
    int64_t sa = M * K, sb = b->ndim == 2 ? 0 : K * N;
    matmul_forward(out->data, a->data, b->data, batch, M, N, K, ta, tb, sa, sb);
    if (ct_op_needs_grad(g, in, 2)) {
        ct_node *nd = ct_op_record(g, out, "matmul", matmul_bw, in, 2);
        if (!nd) return NULL;
        int64_t args[8] = {batch, M, N, K, ta, tb, sa, sb};
        for (int i = 0; i < 8; i++) nd->i[i] = args[i];
    }
    return out;
bad:
    return ct_op_fail(g, CT_ERR_ARG, "matmul: shapes %s%s and %s%s do not match",
                      ct_shape_str(a, s1, sizeof s1), ta ? "^T" : "",
                      ct_shape_str(b, s2, sizeof s2), tb ? "^T" : "");
}

/* ---- LoRA on a frozen linear layer ---- */

#define LORA_BLOCKS 16 /* row blocks of the da reduction (fixed: thread-count independent) */

static void lora_bw(ct_graph *g, ct_node *n) {
    ct_tensor *x = n->in[0], *w = n->in[1], *a = n->in[3], *bm = n->in[4];
    int64_t N = n->i[0], C = n->i[1], OC = n->i[2], R = n->i[3];
    ct_real *dx = ct_op_grad(g, x), *da = ct_op_grad(g, a), *dbm = ct_op_grad(g, bm);
    ct_real *du = ct_op_alloc(g, (size_t)(N * R) * sizeof(ct_real));
    ct_real *part = da ? ct_op_alloc(g, (size_t)(LORA_BLOCKS * R * C) * sizeof(ct_real)) : NULL;
    if (!du || (da && !part)) return;
    lora_backward(dx, da, dbm, n->out->grad, x->data, w->data, a->data, bm->data, n->saved[0],
                  du, part, LORA_BLOCKS, (ct_real)n->f[0], (float)n->f[1], (uint64_t)n->i[4], N,
                  C, OC, R);
}

ct_tensor *ct_lora_linear(ct_graph *g, ct_tensor *x, ct_tensor *w, ct_tensor *b, ct_tensor *a,
                          ct_tensor *bm, float scale, float p, uint64_t seed) {
    ct_tensor *in[5] = {x, w, b, a, bm};
    if (!ct_op_inputs_ok(g, in, 2) || !ct_op_inputs_ok(g, in + 3, 2)) return NULL;
    int64_t C = ct_cols(x), N = ct_rows(x);
    char s1[64], s2[64], s3[64];
    if (w->ndim != 2 || w->shape[1] != C || a->ndim != 2 || a->shape[1] != C || bm->ndim != 2 ||
        bm->shape[0] != w->shape[0] || bm->shape[1] != a->shape[0])
        return ct_op_fail(g, CT_ERR_ARG, "lora_linear: input %s, weight %s, A %s and B %s do not "
                          "match", ct_shape_str(x, s1, sizeof s1), ct_shape_str(w, s2, sizeof s2),
                          ct_shape_str(a, s3, sizeof s3), ct_shape_str(bm, s1, sizeof s1));
    if (!(p >= 0 && p < 1))
        return ct_op_fail(g, CT_ERR_ARG, "lora_linear: dropout %g outside [0, 1)", (double)p);
    int64_t OC = w->shape[0], R = a->shape[0];
    if (b && b->numel != OC)
        return ct_op_fail(g, CT_ERR_ARG, "lora_linear: bias has %lld values, expected %lld",
                          (long long)b->numel, (long long)OC);
    if ((b && b->requires_grad) || w->requires_grad)
        return ct_op_fail(g, CT_ERR_ARG, "lora_linear: the base weight and bias are frozen");
    int64_t shape[CT_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
    shape[x->ndim - 1] = OC;
    ct_tensor *out = ct_op_out(g, x->ndim, shape);
    ct_real *u = ct_op_alloc(g, (size_t)(N * R) * sizeof(ct_real));
    if (!out || !u) return NULL;
    lora_forward(out->data, u, x->data, w->data, b ? b->data : NULL, a->data, bm->data,
                 (ct_real)scale, p, seed, N, C, OC, R);
    if (ct_op_needs_grad(g, in, 5)) {
        ct_node *nd = ct_op_record(g, out, "lora_linear", lora_bw, in, 5);
        if (!nd) return NULL;
        nd->saved[0] = u;
        nd->i[0] = N, nd->i[1] = C, nd->i[2] = OC, nd->i[3] = R, nd->i[4] = (int64_t)seed;
        nd->f[0] = scale, nd->f[1] = p;
    }
    return out;
}
