/* CLIP's residual attention block and transformer stack, composed from ops
 * (the tape differentiates the composition). */
#include "autograd/graph.h"

static ct_tensor *act_op(ct_graph *g, ct_tensor *x, ct_activation act) {
    return act == CT_GELU ? ct_gelu(g, x) : ct_quick_gelu(g, x);
}

ct_tensor *ct_block_forward_ex(ct_graph *g, const ct_block *b, ct_tensor *x, int n_head,
                               bool causal, ct_activation act, float ln_eps, ct_tensor *ek,
                               ct_tensor *ev, ct_tensor **k_out, ct_tensor **v_out,
                               bool keys_only) {
    ct_tensor *h = ct_layernorm(g, x, b->ln1_w, b->ln1_b, ln_eps);
    ct_tensor *k = ct_linear(g, h, b->k_w, b->k_b);
    ct_tensor *v = ct_linear(g, h, b->v_w, b->v_b);
    if (k_out) *k_out = k;
    if (v_out) *v_out = v;
    if (keys_only) return x;
    ct_tensor *q = ct_linear(g, h, b->q_w, b->q_b);
    ct_tensor *a = ct_attention(g, q, k, v, ek, ev, n_head, causal);
    x = ct_add(g, x, ct_linear(g, a, b->o_w, b->o_b));
    h = ct_layernorm(g, x, b->ln2_w, b->ln2_b, ln_eps);
    h = ct_linear(g, act_op(g, ct_linear(g, h, b->fc1_w, b->fc1_b), act), b->fc2_w, b->fc2_b);
    return ct_add(g, x, h);
}

ct_tensor *ct_block_forward(ct_graph *g, const ct_block *b, ct_tensor *x, int n_head,
                            bool causal, ct_activation act, float ln_eps) {
    return ct_block_forward_ex(g, b, x, n_head, causal, act, ln_eps, NULL, NULL, NULL, NULL,
                               false);
}

ct_tensor *ct_transformer_forward(ct_graph *g, const ct_block *blocks, int n_layers,
                                  ct_tensor *x, int n_head, bool causal, ct_activation act,
                                  float ln_eps, ct_layer_hook hook, void *hook_ctx) {
    for (int l = 0; l < n_layers && x; l++) {
        if (hook) {
            x = hook(g, l, x, hook_ctx);
            if (!x) {
                if (ct_graph_status(g) == CT_OK)
                    ct_op_fail(g, CT_ERR_ARG, "transformer: hook before layer %d failed: %s", l,
                               ct_last_error());
                return NULL;
            }
        }
        x = ct_block_forward(g, &blocks[l], x, n_head, causal, act, ln_eps);
    }
    return x;
}
