/* Tape wiring for layernorm and L2 normalisation. */
#include "autograd/graph.h"
#include "tensor/kernels.h"

static void layernorm_bw(ct_graph *g, ct_node *n) {
    ct_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    layernorm_backward(ct_op_grad(g, x), ct_op_grad(g, w), ct_op_grad(g, b), n->out->grad,
                       x->data, w ? w->data : NULL, n->saved[0], n->saved[1], n->i[0], n->i[1]);
}

ct_tensor *ct_layernorm(ct_graph *g, ct_tensor *x, ct_tensor *w, ct_tensor *b, float eps) {
    ct_tensor *in[3] = {x, w, b};
    if (!ct_op_inputs_ok(g, in, 1)) return NULL;
    int64_t N = ct_rows(x), C = ct_cols(x);
    if ((w && w->numel != C) || (b && b->numel != C))
        return ct_op_fail(g, CT_ERR_ARG, "layernorm: weight/bias size does not match %lld "
                          "channels%s%s", (long long)C, w && w->name ? " for " : "",
                          w && w->name ? w->name : "");
    ct_tensor *out = ct_op_out(g, x->ndim, x->shape);
    ct_real *stats = ct_op_alloc(g, 2 * (size_t)N * sizeof(ct_real));
    if (!out || !stats) return NULL;
    layernorm_forward(out->data, stats, stats + N, x->data, w ? w->data : NULL,
                      b ? b->data : NULL, N, C, (ct_real)eps);
    if (ct_op_needs_grad(g, in, 3)) {
        ct_node *nd = ct_op_record(g, out, "layernorm", layernorm_bw, in, 3);
        if (!nd) return NULL;
        nd->saved[0] = stats, nd->saved[1] = stats + N;
        nd->i[0] = N, nd->i[1] = C;
    }
    return out;
}

static void l2norm_bw(ct_graph *g, ct_node *n) {
    ct_real *dx = ct_op_grad(g, n->in[0]);
    if (dx)
        l2norm_backward(dx, n->out->grad, n->out->data, n->saved[0], (ct_real)n->f[0], n->i[0],
                        n->i[1]);
}

ct_tensor *ct_l2_normalize(ct_graph *g, ct_tensor *x, float eps) {
    if (!ct_op_inputs_ok(g, &x, 1)) return NULL;
    int64_t N = ct_rows(x), C = ct_cols(x);
    ct_tensor *out = ct_op_out(g, x->ndim, x->shape);
    ct_real *norm = ct_op_alloc(g, (size_t)N * sizeof(ct_real));
    if (!out || !norm) return NULL;
    l2norm_forward(out->data, norm, x->data, N, C, (ct_real)eps);
    if (ct_op_needs_grad(g, &x, 1)) {
        ct_node *nd = ct_op_record(g, out, "l2_normalize", l2norm_bw, &x, 1);
        if (!nd) return NULL;
        nd->saved[0] = norm, nd->f[0] = eps, nd->i[0] = N, nd->i[1] = C;
    }
    return out;
}
