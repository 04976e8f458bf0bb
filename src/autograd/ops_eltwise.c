/* Tape wiring for elementwise ops, activations, reshape and transpose. */
#include <string.h>

#include "autograd/graph.h"
#include "tensor/kernels.h"

/* b broadcasts against a when it is a scalar or equals a's trailing shape
 * (leading size-1 dims of b ignored). */
static bool broadcastable(const ct_tensor *a, const ct_tensor *b) {
    if (b->numel == 1 || ct_tensor_same_shape(a, b)) return true;
    int bd = 0;
    while (bd < b->ndim && b->shape[bd] == 1) bd++;
    int nb = b->ndim - bd;
    if (nb > a->ndim) return false;
    for (int d = 0; d < nb; d++)
        if (b->shape[bd + d] != a->shape[a->ndim - nb + d]) return false;
    return true;
}

static void binary_bw(ct_graph *g, ct_node *n) {
    ct_tensor *a = n->in[0], *b = n->in[1];
    binary_backward(ct_op_grad(g, a), ct_op_grad(g, b), n->out->grad, a->data, b->data,
                    a->numel, b->numel, (ct_binop)n->i[0]);
}

static ct_tensor *binary(ct_graph *g, ct_tensor *a, ct_tensor *b, ct_binop op, const char *name) {
    ct_tensor *in[2] = {a, b};
    if (!ct_op_inputs_ok(g, in, 2)) return NULL;
    if (!broadcastable(a, b)) {
        char s1[64], s2[64];
        return ct_op_fail(g, CT_ERR_ARG, "%s: shape %s does not broadcast to %s", name,
                          ct_shape_str(b, s1, sizeof s1), ct_shape_str(a, s2, sizeof s2));
    }
    ct_tensor *out = ct_op_out(g, a->ndim, a->shape);
    if (!out) return NULL;
    if (b->numel == 0 || a->numel == 0) return out;
    binary_forward(out->data, a->data, b->data, a->numel, b->numel, op);
    if (ct_op_needs_grad(g, in, 2)) {
        ct_node *nd = ct_op_record(g, out, name, binary_bw, in, 2);
        if (!nd) return NULL;
        nd->i[0] = op;
    }
    return out;
}

ct_tensor *ct_add(ct_graph *g, ct_tensor *a, ct_tensor *b) { return binary(g, a, b, CT_BIN_ADD, "add"); }
ct_tensor *ct_sub(ct_graph *g, ct_tensor *a, ct_tensor *b) { return binary(g, a, b, CT_BIN_SUB, "sub"); }
ct_tensor *ct_mul(ct_graph *g, ct_tensor *a, ct_tensor *b) { return binary(g, a, b, CT_BIN_MUL, "mul"); }

static void scale_bw(ct_graph *g, ct_node *n) {
    scale_backward(ct_op_grad(g, n->in[0]), n->out->grad, (ct_real)n->f[0], n->out->numel);
}

ct_tensor *ct_scale(ct_graph *g, ct_tensor *x, float s) {
    if (!ct_op_inputs_ok(g, &x, 1)) return NULL;
    ct_tensor *out = ct_op_out(g, x->ndim, x->shape);
    if (!out) return NULL;
    scale_forward(out->data, x->data, (ct_real)s, x->numel);
    if (ct_op_needs_grad(g, &x, 1)) {
        ct_node *nd = ct_op_record(g, out, "scale", scale_bw, &x, 1);
        if (!nd) return NULL;
        nd->f[0] = s;
    }
    return out;
}

static void view_bw(ct_graph *g, ct_node *n) {
    ct_real *dx = ct_op_grad(g, n->in[0]);
    if (dx) accumulate(dx, n->out->grad, n->out->numel);
}

ct_tensor *ct_reshape(ct_graph *g, ct_tensor *x, int ndim, const int64_t *shape) {
    if (!ct_op_inputs_ok(g, &x, 1)) return NULL;
    /* The output shares x's data: no op writes its input in place. */
    ct_tensor *out = ct_graph_wrap(g, x->data, ndim, shape);
    if (!out) return NULL;
    if (out->numel != x->numel) {
        char s1[64], s2[64];
        return ct_op_fail(g, CT_ERR_ARG, "reshape: %s to %s changes the number of values",
                          ct_shape_str(x, s1, sizeof s1), ct_shape_str(out, s2, sizeof s2));
    }
    if (ct_op_needs_grad(g, &x, 1) && !ct_op_record(g, out, "reshape", view_bw, &x, 1))
        return NULL;
    return out;
}

ct_tensor *ct_detach(ct_graph *g, ct_tensor *x) {
    if (!ct_op_inputs_ok(g, &x, 1)) return NULL;
    /* a view of x's values with no tape node: no gradient flows back */
    return ct_graph_wrap(g, x->data, x->ndim, x->shape);
}

static void pad4(const ct_tensor *x, int64_t *s4, int *off) {
    *off = CT_MAX_DIMS - x->ndim;
    for (int d = 0; d < CT_MAX_DIMS; d++) s4[d] = d < *off ? 1 : x->shape[d - *off];
}

static void transpose_bw(ct_graph *g, ct_node *n) {
    ct_real *dx = ct_op_grad(g, n->in[0]);
    if (!dx) return;
    /* The transpose of a swap is the same swap, applied to the output shape. */
    int64_t s4[CT_MAX_DIMS];
    int off;
    pad4(n->out, s4, &off);
    ct_real *tmp = ct_op_alloc(g, (size_t)n->out->numel * sizeof(ct_real));
    if (!tmp) return;
    transpose_forward(tmp, n->out->grad, s4, (int)n->i[0] + off, (int)n->i[1] + off);
    accumulate(dx, tmp, n->out->numel);
}

ct_tensor *ct_transpose(ct_graph *g, ct_tensor *x, int d0, int d1) {
    if (!ct_op_inputs_ok(g, &x, 1)) return NULL;
    if (d0 < 0) d0 += x->ndim;
    if (d1 < 0) d1 += x->ndim;
    if (d0 < 0 || d1 < 0 || d0 >= x->ndim || d1 >= x->ndim)
        return ct_op_fail(g, CT_ERR_ARG, "transpose: dims %d, %d out of range for %d-D", d0, d1,
                          x->ndim);
    if (d0 > d1) { int t = d0; d0 = d1; d1 = t; }
    int64_t shape[CT_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[d0] = x->shape[d1];
    shape[d1] = x->shape[d0];
    ct_tensor *out = ct_op_out(g, x->ndim, shape);
    if (!out) return NULL;
    int64_t s4[CT_MAX_DIMS];
    int off;
    pad4(x, s4, &off);
    transpose_forward(out->data, x->data, s4, d0 + off, d1 + off);
    if (ct_op_needs_grad(g, &x, 1)) {
        ct_node *nd = ct_op_record(g, out, "transpose", transpose_bw, &x, 1);
        if (!nd) return NULL;
        nd->i[0] = d0, nd->i[1] = d1;
    }
    return out;
}

static void act_bw(ct_graph *g, ct_node *n) {
    ct_tensor *x = n->in[0];
    ct_real *dx = ct_op_grad(g, x);
    if (dx) act_backward(dx, n->out->grad, x->data, n->out->data, x->numel, (ct_act)n->i[0]);
}

static ct_tensor *activation(ct_graph *g, ct_tensor *x, ct_act act, const char *name) {
    if (!ct_op_inputs_ok(g, &x, 1)) return NULL;
    ct_tensor *out = ct_op_out(g, x->ndim, x->shape);
    if (!out) return NULL;
    act_forward(out->data, x->data, x->numel, act);
    if (ct_op_needs_grad(g, &x, 1)) {
        ct_node *nd = ct_op_record(g, out, name, act_bw, &x, 1);
        if (!nd) return NULL;
        nd->i[0] = act;
    }
    return out;
}

ct_tensor *ct_gelu(ct_graph *g, ct_tensor *x) { return activation(g, x, CT_ACT_GELU, "gelu"); }
ct_tensor *ct_quick_gelu(ct_graph *g, ct_tensor *x) { return activation(g, x, CT_ACT_QUICK_GELU, "quick_gelu"); }
ct_tensor *ct_relu(ct_graph *g, ct_tensor *x) { return activation(g, x, CT_ACT_RELU, "relu"); }
ct_tensor *ct_sigmoid(ct_graph *g, ct_tensor *x) { return activation(g, x, CT_ACT_SIGMOID, "sigmoid"); }
ct_tensor *ct_tanh(ct_graph *g, ct_tensor *x) { return activation(g, x, CT_ACT_TANH, "tanh"); }
ct_tensor *ct_exp(ct_graph *g, ct_tensor *x) { return activation(g, x, CT_ACT_EXP, "exp"); }
ct_tensor *ct_log(ct_graph *g, ct_tensor *x) { return activation(g, x, CT_ACT_LOG, "log"); }

static void dropout_bw(ct_graph *g, ct_node *n) {
    ct_real *dx = ct_op_grad(g, n->in[0]);
    if (dx) dropout_backward(dx, n->out->grad, (float)n->f[0], (uint64_t)n->i[0], n->out->numel);
}

ct_tensor *ct_dropout(ct_graph *g, ct_tensor *x, float p, uint64_t seed) {
    if (!x || p <= 0) return x;
    if (!ct_op_inputs_ok(g, &x, 1)) return NULL;
    if (!(p < 1)) return ct_op_fail(g, CT_ERR_ARG, "dropout: p=%g must be in [0, 1)", (double)p);
    ct_tensor *out = ct_op_out(g, x->ndim, x->shape);
    if (!out) return NULL;
    dropout_forward(out->data, x->data, p, seed, x->numel);
    if (ct_op_needs_grad(g, &x, 1)) {
        ct_node *nd = ct_op_record(g, out, "dropout", dropout_bw, &x, 1);
        if (!nd) return NULL;
        nd->i[0] = (int64_t)seed, nd->f[0] = p;
    }
    return out;
}
