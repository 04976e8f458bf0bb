/* Tape wiring for softmax, log-softmax and the losses. */
#include <string.h>

#include "autograd/graph.h"
#include "tensor/kernels.h"

static void softmax_bw(ct_graph *g, ct_node *n) {
    ct_real *dx = ct_op_grad(g, n->in[0]);
    if (!dx) return;
    if (n->i[2])
        log_softmax_backward(dx, n->out->grad, n->out->data, n->i[0], n->i[1]);
    else
        softmax_backward(dx, n->out->grad, n->out->data, n->i[0], n->i[1]);
}

static ct_tensor *softmax_op(ct_graph *g, ct_tensor *x, bool log) {
    if (!ct_op_inputs_ok(g, &x, 1)) return NULL;
    int64_t N = ct_rows(x), C = ct_cols(x);
    ct_tensor *out = ct_op_out(g, x->ndim, x->shape);
    if (!out) return NULL;
    if (log)
        log_softmax_forward(out->data, x->data, N, C);
    else
        softmax_forward(out->data, x->data, N, C);
    if (ct_op_needs_grad(g, &x, 1)) {
        ct_node *nd = ct_op_record(g, out, log ? "log_softmax" : "softmax", softmax_bw, &x, 1);
        if (!nd) return NULL;
        nd->i[0] = N, nd->i[1] = C, nd->i[2] = log;
    }
    return out;
}

ct_tensor *ct_softmax(ct_graph *g, ct_tensor *x) { return softmax_op(g, x, false); }
ct_tensor *ct_log_softmax(ct_graph *g, ct_tensor *x) { return softmax_op(g, x, true); }

static ct_tensor *scalar_out(ct_graph *g) {
    int64_t one = 1;
    return ct_op_out(g, 1, &one);
}

static void ce_bw(ct_graph *g, ct_node *n) {
    ct_real *dx = ct_op_grad(g, n->in[0]);
    if (dx)
        cross_entropy_backward(dx, n->out->grad[0], n->saved[0], n->saved[1], n->i[0], n->i[1],
                               (ct_real)n->f[0]);
}

ct_tensor *ct_cross_entropy(ct_graph *g, ct_tensor *logits, const int64_t *labels, float ls) {
    if (!ct_op_inputs_ok(g, &logits, 1)) return NULL;
    if (logits->ndim != 2)
        return ct_op_fail(g, CT_ERR_ARG, "cross_entropy: logits must be (N, K), got %d-D",
                          logits->ndim);
    int64_t N = logits->shape[0], K = logits->shape[1];
    if (!(ls >= 0 && ls <= 1))
        return ct_op_fail(g, CT_ERR_ARG, "cross_entropy: label smoothing %g not in [0, 1]",
                          (double)ls);
    for (int64_t i = 0; i < N; i++)
        if (labels[i] < 0 || labels[i] >= K)
            return ct_op_fail(g, CT_ERR_ARG, "cross_entropy: label %lld of row %lld is outside "
                              "[0, %lld)", (long long)labels[i], (long long)i, (long long)K);
    ct_tensor *out = scalar_out(g);
    ct_real *probs = ct_op_alloc(g, (size_t)(N * K) * sizeof(ct_real));
    if (!out || !probs) return NULL;
    cross_entropy_forward(out->data, probs, logits->data, labels, N, K, (ct_real)ls);
    if (ct_op_needs_grad(g, &logits, 1)) {
        ct_node *nd = ct_op_record(g, out, "cross_entropy", ce_bw, &logits, 1);
        int64_t *lab = ct_op_alloc(g, (size_t)N * sizeof *lab);
        if (!nd || !lab) return NULL;
        memcpy(lab, labels, (size_t)N * sizeof *lab);
        nd->saved[0] = probs, nd->saved[1] = lab;
        nd->i[0] = N, nd->i[1] = K, nd->f[0] = ls;
    }
    return out;
}

static void bce_bw(ct_graph *g, ct_node *n) {
    ct_tensor *x = n->in[0];
    ct_real *dx = ct_op_grad(g, x);
    if (dx) bce_logits_backward(dx, n->out->grad[0], x->data, n->saved[0], x->numel);
}

ct_tensor *ct_bce_with_logits(ct_graph *g, ct_tensor *logits, const ct_real *targets) {
    if (!ct_op_inputs_ok(g, &logits, 1)) return NULL;
    ct_tensor *out = scalar_out(g);
    if (!out) return NULL;
    bce_logits_forward(out->data, logits->data, targets, logits->numel);
    if (ct_op_needs_grad(g, &logits, 1)) {
        ct_node *nd = ct_op_record(g, out, "bce_with_logits", bce_bw, &logits, 1);
        ct_real *t = ct_op_alloc(g, (size_t)logits->numel * sizeof *t);
        if (!nd || !t) return NULL;
        memcpy(t, targets, (size_t)logits->numel * sizeof *t);
        nd->saved[0] = t;
    }
    return out;
}

static void asl_bw(ct_graph *g, ct_node *n) {
    ct_tensor *x = n->in[0];
    ct_real *dx = ct_op_grad(g, x);
    const ct_real *f = n->saved[1];
    if (dx) asl_backward(dx, n->out->grad[0], x->data, n->saved[0], x->numel, f[0], f[1], f[2], f[3]);
}

ct_tensor *ct_asymmetric_loss(ct_graph *g, ct_tensor *d, const int8_t *targets, float gamma_neg,
                              float gamma_pos, float clip, float eps) {
    if (!ct_op_inputs_ok(g, &d, 1)) return NULL;
    if (!targets) return ct_op_fail(g, CT_ERR_ARG, "asymmetric_loss: no targets");
    if (!(gamma_neg >= 0) || !(gamma_pos >= 0) || !(clip >= 0) || !(eps > 0))
        return ct_op_fail(g, CT_ERR_ARG, "asymmetric_loss: gammas and clip must be >= 0, eps > 0");
    ct_tensor *out = scalar_out(g);
    if (!out) return NULL;
    asl_forward(out->data, d->data, targets, d->numel, gamma_neg, gamma_pos, clip, eps);
    if (ct_op_needs_grad(g, &d, 1)) {
        ct_node *nd = ct_op_record(g, out, "asymmetric_loss", asl_bw, &d, 1);
        int8_t *t = ct_op_alloc(g, (size_t)d->numel);
        ct_real *f = ct_op_alloc(g, 4 * sizeof *f);
        if (!nd || !t || !f) return NULL;
        memcpy(t, targets, (size_t)d->numel);
        f[0] = gamma_neg, f[1] = gamma_pos, f[2] = clip, f[3] = eps;
        nd->saved[0] = t;
        nd->saved[1] = f;
    }
    return out;
}

static void kl_bw(ct_graph *g, ct_node *n) {
    ct_tensor *lq = n->in[0], *p = n->in[1];
    kl_div_backward(ct_op_grad(g, lq), ct_op_grad(g, p), n->out->grad[0], lq->data, p->data,
                    n->i[0], n->i[1]);
}

ct_tensor *ct_kl_div(ct_graph *g, ct_tensor *log_q, ct_tensor *p) {
    ct_tensor *in[2] = {log_q, p};
    if (!ct_op_inputs_ok(g, in, 2)) return NULL;
    if (log_q->ndim != 2 || !ct_tensor_same_shape(log_q, p))
        return ct_op_fail(g, CT_ERR_ARG, "kl_div: log_q and p must both be (N, K)");
    ct_tensor *out = scalar_out(g);
    if (!out) return NULL;
    int64_t N = log_q->shape[0], K = log_q->shape[1];
    kl_div_forward(out->data, log_q->data, p->data, N, K);
    if (ct_op_needs_grad(g, in, 2)) {
        ct_node *nd = ct_op_record(g, out, "kl_div", kl_bw, in, 2);
        if (!nd) return NULL;
        nd->i[0] = N, nd->i[1] = K;
    }
    return out;
}

static void entropy_bw(ct_graph *g, ct_node *n) {
    ct_real *dx = ct_op_grad(g, n->in[0]);
    if (dx)
        entropy_backward(dx, n->out->grad[0], n->saved[0], n->saved[1], n->i[0], n->i[1]);
}

ct_tensor *ct_entropy(ct_graph *g, ct_tensor *logits) {
    if (!ct_op_inputs_ok(g, &logits, 1)) return NULL;
    int64_t N = ct_rows(logits), K = ct_cols(logits);
    ct_tensor *out = scalar_out(g);
    ct_real *probs = ct_op_alloc(g, (size_t)(N * K + N) * sizeof(ct_real));
    if (!out || !probs) return NULL;
    entropy_forward(out->data, probs, probs + N * K, logits->data, N, K);
    if (ct_op_needs_grad(g, &logits, 1)) {
        ct_node *nd = ct_op_record(g, out, "entropy", entropy_bw, &logits, 1);
        if (!nd) return NULL;
        nd->saved[0] = probs, nd->saved[1] = probs + N * K;
        nd->i[0] = N, nd->i[1] = K;
    }
    return out;
}
