/* CLIP's transformer blocks (src/nn/transformer.c): library-internal; the
 * towers (src/model) and methods that run blocks of their own (UPT) build on
 * them. The hook and LoRA types they take are public (cliptune.h), since the
 * encoders' public signatures carry them. */
#ifndef CT_NN_TRANSFORMER_H
#define CT_NN_TRANSFORMER_H

#include "cliptune.h"

/* One pre-LN residual attention block as CLIP uses it:
 *   x = x + o(MHA(q(ln1 x), k(ln1 x), v(ln1 x)))
 *   x = x + fc2(act(fc1(ln2 x)))
 * Weights in PyTorch Linear layout (out, in); biases may be NULL. */
typedef struct ct_block {
    ct_tensor *ln1_w, *ln1_b;
    ct_tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
    ct_tensor *ln2_w, *ln2_b;
    ct_tensor *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} ct_block;

ct_tensor *ct_block_forward(ct_graph *g, const ct_block *b, ct_tensor *x, int n_head,
                            bool causal, ct_activation act, float ln_eps);
/* The same block with its attention also seeing extra keys/values ek, ev
 * (P, C) placed before x's own (NULL: none), and handing out x's keys and
 * values (B, T, C) through k_out / v_out (NULL: not wanted). With keys_only
 * only those are computed and x is returned unchanged. Encoding a prefix
 * shared by many causal sequences once and passing its keys/values to each
 * continuation gives exactly the full sequences' results (CoOp family). */
ct_tensor *ct_block_forward_ex(ct_graph *g, const ct_block *b, ct_tensor *x, int n_head,
                               bool causal, ct_activation act, float ln_eps, ct_tensor *ek,
                               ct_tensor *ev, ct_tensor **k_out, ct_tensor **v_out,
                               bool keys_only);
/* ct_block_forward_ex with LoRA deltas l (NULL: none) of block `layer` under
 * the settings cfg. */
ct_tensor *ct_block_forward_lora(ct_graph *g, const ct_block *b, ct_tensor *x, int n_head,
                                 bool causal, ct_activation act, float ln_eps, ct_tensor *ek,
                                 ct_tensor *ev, ct_tensor **k_out, ct_tensor **v_out,
                                 bool keys_only, const ct_block_lora *l, const ct_lora *cfg,
                                 int layer);

/* MaskCLIP's last block (the official mmseg/models/backbones/vit.py,
 * TransformerEncoderLayer.forward with return_qkv, lines 96-104): every
 * token attends to itself only, so attention reduces to the value:
 *   h = ln1 x,  v' = x + o(v(h)),  out = v' + fc2(act(fc1(ln2 v')))
 * and *k_out (may be NULL) receives o(k(h)) (B, T, C): the official splits
 * the fused in_proj output into q, k, v and passes all three through
 * out_proj. LoRA deltas l of block `layer` (NULL: none) apply as in
 * ct_block_forward_lora. */
ct_tensor *ct_block_value_path(ct_graph *g, const ct_block *b, ct_tensor *x, ct_activation act,
                               float ln_eps, ct_tensor **k_out, const ct_block_lora *l,
                               const ct_lora *cfg, int layer);

/* n_layers blocks in order, with the hook (may be NULL) before each. The
 * hook's layer == -1 call is the caller's to make (it knows where the
 * embeddings end). */
ct_tensor *ct_transformer_forward(ct_graph *g, const ct_block *blocks, int n_layers,
                                  ct_tensor *x, int n_head, bool causal, ct_activation act,
                                  float ln_eps, ct_layer_hook hook, void *hook_ctx);
/* The same with LoRA deltas (NULL: none; lora->n_layers must be n_layers). */
ct_tensor *ct_transformer_forward_lora(ct_graph *g, const ct_block *blocks, int n_layers,
                                       ct_tensor *x, int n_head, bool causal, ct_activation act,
                                       float ln_eps, ct_layer_hook hook, void *hook_ctx,
                                       const ct_lora *lora);

#endif
