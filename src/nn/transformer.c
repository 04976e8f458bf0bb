/* CLIP's residual attention block and transformer stack, composed from ops
 * (the tape differentiates the composition). */
#include "nn/transformer.h"
#include "autograd/graph.h"

/* (res +) x Wᵀ + b, plus the LoRA delta of projection j when block l has
 * one; without LoRA the residual rides on the GEMM (fused without a tape). */
static ct_tensor *proj_res(ct_graph *g, ct_tensor *x, ct_tensor *w, ct_tensor *bias,
                           const ct_block_lora *l, const ct_lora *cfg, int layer, int j,
                           ct_tensor *res) {
    if (!l || !l->a[j] || !cfg)
        return res ? ct_linear_residual(g, x, w, bias, res) : ct_linear(g, x, w, bias);
    uint64_t seed = ct_rng_u64(&(ct_rng){cfg->seed, (uint64_t)(layer * 4 + j) << 32});
    ct_tensor *y = ct_lora_linear(g, x, w, bias, l->a[j], l->b[j], cfg->scale,
                                  cfg->train ? cfg->dropout : 0.0f, seed);
    return res ? ct_add(g, res, y) : y;
}

static ct_tensor *proj(ct_graph *g, ct_tensor *x, ct_tensor *w, ct_tensor *bias,
                       const ct_block_lora *l, const ct_lora *cfg, int layer, int j) {
    return proj_res(g, x, w, bias, l, cfg, layer, j, NULL);
}

ct_tensor *ct_block_forward_lora(ct_graph *g, const ct_block *b, ct_tensor *x, int n_head,
                                 bool causal, ct_activation act, float ln_eps, ct_tensor *ek,
                                 ct_tensor *ev, ct_tensor **k_out, ct_tensor **v_out,
                                 bool keys_only, const ct_block_lora *l, const ct_lora *cfg,
                                 int layer) {
    ct_tensor *h = ct_layernorm(g, x, b->ln1_w, b->ln1_b, ln_eps);
    ct_tensor *k = proj(g, h, b->k_w, b->k_b, l, cfg, layer, 1);
    ct_tensor *v = proj(g, h, b->v_w, b->v_b, l, cfg, layer, 2);
    if (k_out) *k_out = k;
    if (v_out) *v_out = v;
    if (keys_only) return x;
    ct_tensor *q = proj(g, h, b->q_w, b->q_b, l, cfg, layer, 0);
    ct_tensor *a = ct_attention(g, q, k, v, ek, ev, n_head, causal);
    /* residual adds and the activation ride on the GEMMs (fused without a
     * tape, plain ops with one) */
    x = proj_res(g, a, b->o_w, b->o_b, l, cfg, layer, 3, x);
    h = ct_layernorm(g, x, b->ln2_w, b->ln2_b, ln_eps);
    h = ct_linear_act(g, h, b->fc1_w, b->fc1_b, act == CT_GELU);
    return ct_linear_residual(g, h, b->fc2_w, b->fc2_b, x);
}

ct_tensor *ct_block_value_path(ct_graph *g, const ct_block *b, ct_tensor *x, ct_activation act,
                               float ln_eps, ct_tensor **k_out, const ct_block_lora *l,
                               const ct_lora *cfg, int layer) {
    ct_tensor *h = ct_layernorm(g, x, b->ln1_w, b->ln1_b, ln_eps);
    if (k_out) *k_out = proj(g, proj(g, h, b->k_w, b->k_b, l, cfg, layer, 1), b->o_w, b->o_b, l,
                             cfg, layer, 3);
    ct_tensor *v = proj(g, h, b->v_w, b->v_b, l, cfg, layer, 2);
    x = proj_res(g, v, b->o_w, b->o_b, l, cfg, layer, 3, x);
    h = ct_layernorm(g, x, b->ln2_w, b->ln2_b, ln_eps);
    h = ct_linear_act(g, h, b->fc1_w, b->fc1_b, act == CT_GELU);
    return ct_linear_residual(g, h, b->fc2_w, b->fc2_b, x);
}

ct_tensor *ct_block_forward_ex(ct_graph *g, const ct_block *b, ct_tensor *x, int n_head,
                               bool causal, ct_activation act, float ln_eps, ct_tensor *ek,
                               ct_tensor *ev, ct_tensor **k_out, ct_tensor **v_out,
                               bool keys_only) {
    return ct_block_forward_lora(g, b, x, n_head, causal, act, ln_eps, ek, ev, k_out, v_out,
                                 keys_only, NULL, NULL, 0);
}

ct_tensor *ct_block_forward(ct_graph *g, const ct_block *b, ct_tensor *x, int n_head,
                            bool causal, ct_activation act, float ln_eps) {
    return ct_block_forward_ex(g, b, x, n_head, causal, act, ln_eps, NULL, NULL, NULL, NULL,
                               false);
}

ct_tensor *ct_transformer_forward_lora(ct_graph *g, const ct_block *blocks, int n_layers,
                                       ct_tensor *x, int n_head, bool causal, ct_activation act,
                                       float ln_eps, ct_layer_hook hook, void *hook_ctx,
                                       const ct_lora *lora) {
    if (lora && lora->n_layers != n_layers)
        return ct_op_fail(g, CT_ERR_ARG, "transformer: LoRA for %d blocks, the stack has %d",
                          lora->n_layers, n_layers);
    /* Without a tape, a block's intermediates die with it: each output moves
     * to the mark and the rest is reused by the next block. Hooks may keep
     * what they were given, so with a hook the mark follows it. */
    ct_graph_mark mark = ct_graph_get_mark(g);
    for (int l = 0; l < n_layers && x; l++) {
        if (hook) {
            x = hook(g, l, x, hook_ctx);
            if (!x) {
                if (ct_graph_status(g) == CT_OK)
                    ct_op_fail(g, CT_ERR_ARG, "transformer: hook before layer %d failed: %s", l,
                               ct_last_error());
                return NULL;
            }
            mark = ct_graph_get_mark(g);
        }
        x = ct_block_forward_lora(g, &blocks[l], x, n_head, causal, act, ln_eps, NULL, NULL,
                                  NULL, NULL, false, lora ? &lora->layers[l] : NULL, lora, l);
        x = ct_graph_keep(g, &mark, x);
    }
    return x;
}

ct_tensor *ct_transformer_forward(ct_graph *g, const ct_block *blocks, int n_layers,
                                  ct_tensor *x, int n_head, bool causal, ct_activation act,
                                  float ln_eps, ct_layer_hook hook, void *hook_ctx) {
    return ct_transformer_forward_lora(g, blocks, n_layers, x, n_head, causal, act, ln_eps, hook,
                                       hook_ctx, NULL);
}
