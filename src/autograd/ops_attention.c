/* Tape wiring for fused multi-head attention. */
#include <omp.h>

#include "autograd/graph.h"
#include "tensor/kernels.h"

static void attention_bw(ct_graph *g, ct_node *n) {
    ct_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2], *ek = n->in[3], *ev = n->in[4];
    int64_t B = n->i[0], Tq = n->i[1], Tk = n->i[2], P = n->i[3], C = n->i[4], NH = n->i[5];
    size_t ns = attention_scratch_size(B, Tq, Tk, P, C, NH, omp_get_max_threads(), true);
    ct_real *scratch = ct_op_alloc(g, ns * sizeof(ct_real));
    if (!scratch) return;
    attention_backward(ct_op_grad(g, q), ct_op_grad(g, k), ct_op_grad(g, v), ct_op_grad(g, ek),
                       ct_op_grad(g, ev), scratch, n->out->grad, n->saved[0], q->data, k->data,
                       v->data, ek ? ek->data : NULL, ev ? ev->data : NULL, B, Tq, Tk, P, C,
                       NH, n->i[6]);
}

ct_tensor *ct_attention(ct_graph *g, ct_tensor *q, ct_tensor *k, ct_tensor *v, ct_tensor *ek,
                        ct_tensor *ev, int n_head, bool causal) {
    ct_tensor *in[5] = {q, k, v, ek, ev};
    if (!ct_op_inputs_ok(g, in, 3)) return NULL;
    char s1[64], s2[64], s3[64];
    if (q->ndim != 3 || k->ndim != 3 || !ct_tensor_same_shape(k, v) ||
        k->shape[0] != q->shape[0] || k->shape[2] != q->shape[2])
        return ct_op_fail(g, CT_ERR_ARG, "attention: q %s, k %s, v %s must be (B, T, C) with "
                          "matching B and C", ct_shape_str(q, s1, sizeof s1),
                          ct_shape_str(k, s2, sizeof s2), ct_shape_str(v, s3, sizeof s3));
    int64_t B = q->shape[0], Tq = q->shape[1], Tk = k->shape[1], C = q->shape[2], P = 0;
    if (n_head <= 0 || C % n_head)
        return ct_op_fail(g, CT_ERR_ARG, "attention: %lld channels do not split into %d heads",
                          (long long)C, n_head);
    if (!ek != !ev)
        return ct_op_fail(g, CT_ERR_ARG, "attention: extra keys and values must come together");
    if (ek) {
        if (ek->ndim != 2 || ek->shape[1] != C || !ct_tensor_same_shape(ek, ev))
            return ct_op_fail(g, CT_ERR_ARG, "attention: extra k/v must both be (P, %lld)",
                              (long long)C);
        P = ek->shape[0];
    }
    if (causal && Tk < Tq)
        return ct_op_fail(g, CT_ERR_ARG, "attention: causal needs Tk >= Tq");
    /* the probabilities are kept only for backward */
    bool grad = ct_op_needs_grad(g, in, 5);
    ct_tensor *out = ct_op_out(g, 3, q->shape);
    ct_real *att =
        grad ? ct_op_alloc(g, (size_t)(B * n_head * Tq * (P + Tk)) * sizeof(ct_real)) : NULL;
    ct_real *scratch = ct_op_alloc(g, attention_scratch_size(B, Tq, Tk, P, C, n_head,
                                                             omp_get_max_threads(), false) *
                                          sizeof(ct_real));
    if (!out || (grad && !att) || !scratch) return NULL;
    attention_forward(out->data, att, scratch, q->data, k->data, v->data, ek ? ek->data : NULL,
                      ev ? ev->data : NULL, B, Tq, Tk, P, C, n_head, causal);
    if (grad) {
        ct_node *nd = ct_op_record(g, out, "attention", attention_bw, in, 5);
        if (!nd) return NULL;
        nd->saved[0] = att;
        int64_t args[7] = {B, Tq, Tk, P, C, n_head, causal};
        for (int i = 0; i < 7; i++) nd->i[i] = args[i];
    }
    return out;
}
