/* Tape wiring for reductions, concat/slice and row gathers. */
#include <string.h>

#include "autograd/graph.h"
#include "tensor/kernels.h"

/* (outer, n, inner) around dim. */
static void split3(const ct_tensor *x, int dim, int64_t *outer, int64_t *n, int64_t *inner) {
    *outer = *inner = 1;
    for (int d = 0; d < dim; d++) *outer *= x->shape[d];
    for (int d = dim + 1; d < x->ndim; d++) *inner *= x->shape[d];
    *n = x->shape[dim];
}

static bool norm_dim(ct_graph *g, const ct_tensor *x, int *dim, const char *op) {
    if (*dim < 0) *dim += x->ndim;
    if (*dim < 0 || *dim >= x->ndim) {
        ct_op_fail(g, CT_ERR_ARG, "%s: dim out of range for a %d-D tensor", op, x->ndim);
        return false;
    }
    return true;
}

static void sum_bw(ct_graph *g, ct_node *n) {
    ct_real *dx = ct_op_grad(g, n->in[0]);
    if (dx) sum_dim_backward(dx, n->out->grad, n->i[0], n->i[1], n->i[2], (ct_real)n->f[0]);
}

static ct_tensor *reduce(ct_graph *g, ct_tensor *x, int dim, bool mean, const char *name) {
    if (!ct_op_inputs_ok(g, &x, 1) || !norm_dim(g, x, &dim, name)) return NULL;
    int64_t outer, n, inner, shape[CT_MAX_DIMS];
    split3(x, dim, &outer, &n, &inner);
    int nd = 0;
    for (int d = 0; d < x->ndim; d++)
        if (d != dim) shape[nd++] = x->shape[d];
    if (nd == 0) shape[nd++] = 1;
    ct_tensor *out = ct_op_out(g, nd, shape);
    if (!out) return NULL;
    ct_real scale = mean ? (n ? (ct_real)1 / (ct_real)n : 0) : 1;
    sum_dim_forward(out->data, x->data, outer, n, inner, scale);
    if (ct_op_needs_grad(g, &x, 1)) {
        ct_node *node = ct_op_record(g, out, name, sum_bw, &x, 1);
        if (!node) return NULL;
        node->i[0] = outer, node->i[1] = n, node->i[2] = inner, node->f[0] = scale;
    }
    return out;
}

ct_tensor *ct_sum(ct_graph *g, ct_tensor *x, int dim) { return reduce(g, x, dim, false, "sum"); }
ct_tensor *ct_mean(ct_graph *g, ct_tensor *x, int dim) { return reduce(g, x, dim, true, "mean"); }

ct_tensor *ct_sum_all(ct_graph *g, ct_tensor *x) {
    if (!ct_op_inputs_ok(g, &x, 1)) return NULL;
    int64_t n = x->numel;
    return ct_sum(g, ct_reshape(g, x, 1, &n), 0);
}

static void slice_bw(ct_graph *g, ct_node *n) {
    ct_real *dx = ct_op_grad(g, n->in[0]);
    if (dx) slice_backward(dx, n->out->grad, n->i[0], n->i[1], n->i[2], n->i[3], n->i[4]);
}

ct_tensor *ct_slice(ct_graph *g, ct_tensor *x, int dim, int64_t start, int64_t len) {
    if (!ct_op_inputs_ok(g, &x, 1) || !norm_dim(g, x, &dim, "slice")) return NULL;
    if (start < 0 || len < 0 || start > x->shape[dim] || len > x->shape[dim] - start)
        return ct_op_fail(g, CT_ERR_ARG, "slice: [%lld, %lld) out of range for dim %d of size %lld",
                          (long long)start, (long long)(start + len), dim,
                          (long long)x->shape[dim]);
    int64_t outer, n, inner, shape[CT_MAX_DIMS];
    split3(x, dim, &outer, &n, &inner);
    memcpy(shape, x->shape, sizeof shape);
    shape[dim] = len;
    ct_tensor *out = ct_op_out(g, x->ndim, shape);
    if (!out) return NULL;
    slice_forward(out->data, x->data, outer, n, inner, start, len, false);
    if (ct_op_needs_grad(g, &x, 1)) {
        ct_node *nd = ct_op_record(g, out, "slice", slice_bw, &x, 1);
        if (!nd) return NULL;
        nd->i[0] = outer, nd->i[1] = n, nd->i[2] = inner, nd->i[3] = start, nd->i[4] = len;
    }
    return out;
}

static void concat_bw(ct_graph *g, ct_node *n) {
    int64_t outer = n->i[0], total = n->i[1], inner = n->i[2], dim = n->i[3], start = 0;
    for (int k = 0; k < n->n_in; k++) {
        int64_t len = n->in[k]->shape[dim];
        ct_real *dx = ct_op_grad(g, n->in[k]);
        if (dx) slice_forward(dx, n->out->grad, outer, total, inner, start, len, true);
        start += len;
    }
}

ct_tensor *ct_concat(ct_graph *g, ct_tensor *const *xs, int n, int dim) {
    if (n <= 0) return ct_op_fail(g, CT_ERR_ARG, "concat: no inputs");
    if (!ct_op_inputs_ok(g, xs, n) || !norm_dim(g, xs[0], &dim, "concat")) return NULL;
    int64_t total = 0;
    for (int k = 0; k < n; k++) {
        bool ok = xs[k]->ndim == xs[0]->ndim;
        for (int d = 0; ok && d < xs[0]->ndim; d++)
            ok = d == dim || xs[k]->shape[d] == xs[0]->shape[d];
        if (!ok) {
            char s1[64], s2[64];
            return ct_op_fail(g, CT_ERR_ARG, "concat: input %d has shape %s, incompatible with %s "
                              "along dim %d", k, ct_shape_str(xs[k], s1, sizeof s1),
                              ct_shape_str(xs[0], s2, sizeof s2), dim);
        }
        total += xs[k]->shape[dim];
    }
    int64_t outer, n0, inner, shape[CT_MAX_DIMS];
    split3(xs[0], dim, &outer, &n0, &inner);
    memcpy(shape, xs[0]->shape, sizeof shape);
    shape[dim] = total;
    ct_tensor *out = ct_op_out(g, xs[0]->ndim, shape);
    if (!out) return NULL;
    int64_t start = 0;
    for (int k = 0; k < n; k++) {
        slice_place(out->data, xs[k]->data, outer, total, inner, start, xs[k]->shape[dim]);
        start += xs[k]->shape[dim];
    }
    if (ct_op_needs_grad(g, xs, n)) {
        ct_node *nd = ct_op_record(g, out, "concat", concat_bw, xs, n);
        if (!nd) return NULL;
        nd->i[0] = outer, nd->i[1] = total, nd->i[2] = inner, nd->i[3] = dim;
    }
    return out;
}

static void gather_bw(ct_graph *g, ct_node *n) {
    ct_real *dt = ct_op_grad(g, n->in[0]);
    if (dt) gather_rows_backward(dt, n->out->grad, n->saved[0], n->i[0], n->i[1]);
}

ct_tensor *ct_gather_rows(ct_graph *g, ct_tensor *table, const int64_t *ids, int ids_ndim,
                          const int64_t *ids_shape) {
    if (!ct_op_inputs_ok(g, &table, 1)) return NULL;
    if (table->ndim != 2 || ids_ndim < 1 || ids_ndim > CT_MAX_DIMS - 1)
        return ct_op_fail(g, CT_ERR_ARG, "gather_rows: table must be 2-D and ids 1..3-D");
    int64_t n = 1, V = table->shape[0], C = table->shape[1], shape[CT_MAX_DIMS];
    for (int d = 0; d < ids_ndim; d++) n *= (shape[d] = ids_shape[d]);
    shape[ids_ndim] = C;
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return ct_op_fail(g, CT_ERR_ARG, "gather_rows: id %lld at position %lld is outside "
                              "[0, %lld)%s%s", (long long)ids[i], (long long)i, (long long)V,
                              table->name ? " of " : "", table->name ? table->name : "");
    ct_tensor *out = ct_op_out(g, ids_ndim + 1, shape);
    if (!out) return NULL;
    gather_rows_forward(out->data, table->data, ids, n, C);
    if (ct_op_needs_grad(g, &table, 1)) {
        ct_node *nd = ct_op_record(g, out, "gather_rows", gather_bw, &table, 1);
        int64_t *copy = ct_op_alloc(g, (size_t)n * sizeof *copy);
        if (!nd || !copy) return NULL;
        memcpy(copy, ids, (size_t)n * sizeof *copy);
        nd->saved[0] = copy;
        nd->i[0] = n, nd->i[1] = C;
    }
    return out;
}
