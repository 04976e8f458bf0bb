/* CLIP's two encoders and its logits, composed from ops so that gradients
 * reach whatever requires grad: pixels (visual prompting), token embeddings
 * (CoOp family), tokens inserted by hooks (deep prompts), or weights. */
#include <string.h>

#include "autograd/graph.h"
#include "model/clip.h"

/* p (P, C) repeated over a batch: (B, P, C). */
static ct_tensor *repeat_rows(ct_graph *g, ct_tensor *p, int64_t B) {
    int64_t s[3] = {B, p->ndim == 2 ? p->shape[0] : 1, p->shape[p->ndim - 1]};
    return ct_add(g, ct_graph_tensor(g, 3, s), p);
}

static ct_tensor *call_hook(ct_graph *g, ct_layer_hook h, void *ctx, int layer, ct_tensor *x) {
    if (!h || !x) return x;
    ct_tensor *y = h(g, layer, x, ctx);
    if (!y && ct_graph_status(g) == CT_OK)
        ct_op_fail(g, CT_ERR_ARG, "clip: input hook failed: %s", ct_last_error());
    return y;
}

/* x (B, T, C) with positions [at, at + P) replaced by p (P, C). */
static ct_tensor *replace_rows(ct_graph *g, ct_tensor *x, int64_t at, ct_tensor *p) {
    int64_t B = x->shape[0], T = x->shape[1], P = p->shape[0];
    ct_tensor *parts[3];
    int n = 0;
    if (at > 0) parts[n++] = ct_slice(g, x, 1, 0, at);
    parts[n++] = repeat_rows(g, p, B);
    if (at + P < T) parts[n++] = ct_slice(g, x, 1, at + P, T - at - P);
    return ct_concat(g, parts, n, 1);
}

/* The deep prompts of one tower, then the caller's function hook: what
 * ct_transformer_forward calls before each block (and the encoder at -1). */
typedef struct tower_hook {
    const ct_deep_prompts *deep;
    bool vision;
    ct_layer_hook user;
    void *user_ctx;
    int capture_at;     /* >= 0: keep the input of this block in *captured */
    ct_tensor *captured;
} tower_hook;

static ct_status check_deep(ct_graph *g, const ct_deep_prompts *d, int64_t W, int n_layers,
                            const char *tower) {
    if (!d || d->depth == 0) return CT_OK;
    if (d->depth < 0 || d->depth > n_layers || !d->tokens) {
        ct_op_fail(g, CT_ERR_ARG, "clip: %s deep prompts of depth %d (the tower has %d layers)",
                   tower, d->depth, n_layers);
        return CT_ERR_ARG;
    }
    for (int l = 0; l < d->depth; l++) {
        const ct_tensor *t = d->tokens[l];
        if (!t && (l > 0 || !strcmp(tower, "vision"))) {
            ct_op_fail(g, CT_ERR_ARG, "clip: %s deep prompt %d is missing", tower, l);
            return CT_ERR_ARG;
        }
        if (t && (t->ndim != 2 || t->shape[1] != W ||
                  (d->tokens[d->depth - 1] && t->shape[0] != d->tokens[d->depth - 1]->shape[0]))) {
            char sh[64];
            ct_op_fail(g, CT_ERR_ARG, "clip: %s deep prompt %d is %s, not (P, %lld) with one P",
                       tower, l, ct_shape_str(t, sh, sizeof sh), (long long)W);
            return CT_ERR_ARG;
        }
    }
    return CT_OK;
}

static ct_tensor *tower_hook_fn(ct_graph *g, int layer, ct_tensor *x, void *ctx) {
    tower_hook *h = ctx;
    const ct_deep_prompts *d = h->deep;
    if (d && d->depth > 0 && x) {
        bool after_cls = h->vision && d->after_cls;
        if (h->vision && layer == (after_cls || d->after_ln_pre ? 0 : -1)) {
            ct_tensor *p0 = repeat_rows(g, d->tokens[0], x->shape[0]);
            if (after_cls) { /* [CLS, prompts, patches] */
                ct_tensor *parts[3] = {ct_slice(g, x, 1, 0, 1), p0,
                                       ct_slice(g, x, 1, 1, x->shape[1] - 1)};
                x = ct_concat(g, parts, 3, 1);
            } else {         /* [CLS, patches, prompts] */
                ct_tensor *parts[2] = {x, p0};
                x = ct_concat(g, parts, 2, 1);
            }
        } else if (layer >= 1 && layer < d->depth) {
            ct_tensor *p = d->tokens[layer];
            int64_t T = x->shape[1], P = p->shape[0];
            bool at_end = h->vision && !after_cls;
            if (at_end ? P > T : 1 + P > T)
                return ct_op_fail(g, CT_ERR_ARG, "clip: deep prompts of %lld tokens do not fit "
                                  "%lld positions", (long long)P, (long long)T);
            x = replace_rows(g, x, at_end ? T - P : 1, p);
        }
    }
    x = call_hook(g, h->user, h->user_ctx, layer, x);
    if (layer == h->capture_at) h->captured = x;
    return x;
}

/* A tower's blocks on x with the caller's hooks: deep prompts and the
 * function hook (also at layer -1, before ln_pre in the vision tower), and
 * LoRA deltas. Vision is bidirectional, text causal. */
static ct_tensor *run_tower(ct_graph *g, const ct_clip *m, bool vision, ct_tensor *x,
                            const ct_clip_hooks *hooks, ct_tensor **last_in) {
    const ct_clip_config *c = &m->cfg;
    tower_hook th = {NULL, vision, NULL, hooks ? hooks->ctx : NULL, -1, NULL};
    const ct_lora *lora = NULL;
    if (hooks) {
        th.deep = vision ? hooks->vision_deep : hooks->text_deep;
        th.user = vision ? hooks->vision : hooks->text;
        lora = vision ? hooks->vision_lora : hooks->text_lora;
    }
    if (check_deep(g, th.deep, vision ? c->vision_width : c->text_width,
                   vision ? c->vision_layers : c->text_layers, vision ? "vision" : "text") != CT_OK)
        return NULL;
    /* last_in: the input of the last block, through the hook (the stack keeps
     * what its hook was given alive) */
    if (last_in) th.capture_at = (vision ? c->vision_layers : c->text_layers) - 1;
    bool hooked = th.user || (th.deep && th.deep->depth > 0) || last_in;
    x = hooked ? tower_hook_fn(g, -1, x, &th) : x;
    if (vision) {
        x = ct_transformer_forward_lora(
            g, m->vblocks, c->vision_layers,
            ct_layernorm(g, x, m->ln_pre_w, m->ln_pre_b, c->vision_ln_eps), c->vision_heads,
            false, c->vision_act, c->vision_ln_eps, hooked ? tower_hook_fn : NULL, &th, lora);
        if (last_in) *last_in = th.captured;
        return x;
    }
    return ct_transformer_forward_lora(g, m->tblocks, c->text_layers, x, c->text_heads, true,
                                       c->text_act, c->text_ln_eps,
                                       hooked ? tower_hook_fn : NULL, &th, lora);
}

/* MUST's mask tokens: x (B, G, W) -> x (1 - w) + token w, w the 0/1 patch
 * mask broadcast over the width. */
static ct_tensor *mask_patches(ct_graph *g, ct_tensor *x, const ct_clip_hooks *h) {
    if (!x) return NULL;
    int64_t B = x->shape[0], G = x->shape[1], W = x->shape[2];
    if (!h->mask_token || !h->patch_mask)
        return ct_op_fail(g, CT_ERR_ARG, "clip: mask_token and patch_mask go together");
    if (h->mask_token->numel != W)
        return ct_op_fail(g, CT_ERR_ARG, "clip: mask token of %lld values for width %lld",
                          (long long)h->mask_token->numel, (long long)W);
    ct_tensor *w = ct_graph_tensor(g, 3, x->shape);
    if (!w) return NULL;
    for (int64_t r = 0; r < B * G; r++) {
        float v = h->patch_mask[r];
        if (v != 0 && v != 1)
            return ct_op_fail(g, CT_ERR_ARG, "clip: patch mask value %g at %lld (0 or 1)",
                              (double)v, (long long)r);
        for (int64_t k = 0; k < W; k++) w->data[r * W + k] = v;
    }
    return ct_add(g, ct_sub(g, x, ct_mul(g, x, w)), ct_mul(g, w, h->mask_token));
}

static ct_tensor *encode_image(ct_graph *g, const ct_clip *m, ct_tensor *pixels,
                               const ct_clip_hooks *hooks, ct_dense_kind kind, bool want_dense,
                               ct_clip_image_out *out) {
    if (!ct_op_inputs_ok(g, &pixels, 1)) return NULL;
    if (kind == CT_DENSE_POOL_VALUE && !ct_clip_is_resnet(m)) kind = CT_DENSE_TOKENS;
    if (kind != CT_DENSE_TOKENS && kind != CT_DENSE_VALUE && kind != CT_DENSE_POOL_VALUE)
        return ct_op_fail(g, CT_ERR_ARG, "clip: unknown dense feature kind %d", (int)kind);
    if (kind == CT_DENSE_VALUE && !out)
        return ct_op_fail(g, CT_ERR_ARG, "clip: value-path features need an output struct");
    const ct_clip_config *c = &m->cfg;
    if (pixels->ndim != 4 || pixels->shape[1] != 3 || pixels->shape[2] != c->image_size ||
        pixels->shape[3] != c->image_size) {
        char s[64];
        return ct_op_fail(g, CT_ERR_ARG, "clip: pixels %s must be (B, 3, %d, %d)",
                          ct_shape_str(pixels, s, sizeof s), c->image_size, c->image_size);
    }
    if (ct_clip_is_resnet(m))
        return ct_clip_rn_encode(g, m, pixels, hooks, kind, want_dense, out);
    int64_t B = pixels->shape[0];
    ct_tensor *x = ct_patch_embed(g, pixels, m->patch_w, c->patch_size); /* (B, grid^2, W) */
    if (hooks && (hooks->mask_token || hooks->patch_mask)) x = mask_patches(g, x, hooks);
    ct_tensor *parts[2] = {repeat_rows(g, m->class_emb, B), x};
    x = ct_add(g, ct_concat(g, parts, 2, 1), m->vpos);
    ct_tensor *last_in = NULL;
    x = run_tower(g, m, true, x, hooks, kind == CT_DENSE_VALUE ? &last_in : NULL);
    if (!x || (kind == CT_DENSE_VALUE && !last_in)) return NULL;
    int64_t W = c->vision_width, cls_shape[2] = {B, W};
    ct_tensor *cls = ct_reshape(g, ct_slice(g, x, 1, 0, 1), 2, cls_shape);
    ct_tensor *emb = ct_linear(g, ct_layernorm(g, cls, m->ln_post_w, m->ln_post_b,
                                               c->vision_ln_eps),
                               m->vproj, NULL);
    if (out) {
        const ct_lora *lora = hooks ? hooks->vision_lora : NULL;
        int L = c->vision_layers - 1;
        out->tokens = x;
        out->keys = NULL;
        out->dense = NULL;
        if (!want_dense) return emb;
        ct_tensor *d = x;
        if (kind == CT_DENSE_VALUE)
            d = ct_block_value_path(g, &m->vblocks[L], last_in, c->vision_act, c->vision_ln_eps,
                                    &out->keys, lora ? &lora->layers[L] : NULL, lora, L);
        out->dense = ct_linear(g, ct_layernorm(g, d, m->ln_post_w, m->ln_post_b,
                                               c->vision_ln_eps),
                               m->vproj, NULL);
        if (!out->dense) return NULL;
    }
    return emb;
}

ct_tensor *ct_clip_encode_image(ct_graph *g, const ct_clip *m, ct_tensor *pixels,
                                const ct_clip_hooks *hooks, bool want_dense,
                                ct_clip_image_out *out) {
    return encode_image(g, m, pixels, hooks, CT_DENSE_TOKENS, want_dense, out);
}

ct_tensor *ct_clip_encode_image_kind(ct_graph *g, const ct_clip *m, ct_tensor *pixels,
                                     const ct_clip_hooks *hooks, ct_dense_kind kind,
                                     ct_clip_image_out *out) {
    return encode_image(g, m, pixels, hooks, kind, true, out);
}

ct_tensor *ct_clip_embed_tokens(ct_graph *g, const ct_clip *m, const int64_t *ids, int64_t n,
                                int64_t T) {
    int64_t shape[2] = {n, T};
    return ct_gather_rows(g, m->tok_emb, ids, 2, shape);
}

ct_status ct_clip_eot_positions(const ct_clip *m, const int64_t *ids, int64_t n, int64_t T,
                                int64_t *pos) {
    for (int64_t r = 0; r < n; r++) {
        const int64_t *row = ids + r * T;
        int64_t best = 0;
        if (m->cfg.eot_rule == CT_EOT_ARGMAX) {
            /* first maximum, as torch.argmax */
            for (int64_t t = 1; t < T; t++)
                if (row[t] > row[best]) best = t;
        } else {
            best = -1;
            for (int64_t t = 0; t < T && best < 0; t++)
                if (row[t] == m->cfg.eot_id) best = t;
            /* transformers' (ids == eos).int().argmax() gives 0 when absent */
            if (best < 0) best = 0;
        }
        pos[r] = best;
    }
    return CT_OK;
}

/* The text tower on embeds; with tokens set, *tokens receives ln_final +
 * projection of every position (n, T, E) and the pooled rows are read from
 * it, else only the EOT rows are normalised and projected. */
static ct_tensor *encode_text(ct_graph *g, const ct_clip *m, ct_tensor *embeds,
                              const int64_t *eot_pos, const ct_clip_hooks *hooks,
                              ct_tensor **tokens) {
    if (!ct_op_inputs_ok(g, &embeds, 1)) return NULL;
    const ct_clip_config *c = &m->cfg;
    if (embeds->ndim != 3 || embeds->shape[2] != c->text_width ||
        embeds->shape[1] > c->context_length || embeds->shape[1] < 1) {
        char s[64];
        return ct_op_fail(g, CT_ERR_ARG, "clip: text embeddings %s must be (n, T <= %d, %d)",
                          ct_shape_str(embeds, s, sizeof s), c->context_length, c->text_width);
    }
    int64_t n = embeds->shape[0], T = embeds->shape[1], W = c->text_width;
    for (int64_t r = 0; r < n; r++)
        if (eot_pos[r] < 0 || eot_pos[r] >= T)
            return ct_op_fail(g, CT_ERR_ARG, "clip: EOT position %lld of row %lld is outside "
                              "[0, %lld)", (long long)eot_pos[r], (long long)r, (long long)T);
    ct_tensor *pos = T == c->context_length ? m->tpos : ct_slice(g, m->tpos, 0, 0, T);
    ct_tensor *x = ct_add(g, embeds, pos);
    x = run_tower(g, m, false, x, hooks, NULL);
    if (!x) return NULL;
    if (x->ndim != 3 || x->shape[0] != n) return ct_op_fail(g, CT_ERR_ARG, "clip: a text hook "
                                                           "changed the batch size");
    /* ln_final is per token, so pooling first and normalising after is the
     * same as OpenAI's order and skips T - 1 rows of work. */
    int64_t Tx = x->shape[1];
    int64_t *rows = ct_graph_alloc(g, (size_t)n * sizeof *rows);
    if (!rows) return NULL;
    for (int64_t r = 0; r < n; r++) rows[r] = r * Tx + eot_pos[r];
    int64_t flat[2] = {n * Tx, W};
    if (tokens) {
        ct_tensor *all = ct_layernorm(g, ct_reshape(g, x, 2, flat), m->ln_final_w,
                                      m->ln_final_b, c->text_ln_eps);
        all = ct_linear(g, all, m->tproj, NULL); /* (n * Tx, E) */
        if (!all) return NULL;
        int64_t shape[3] = {n, Tx, c->embed_dim};
        *tokens = ct_reshape(g, all, 3, shape);
        return ct_gather_rows(g, all, rows, 1, &n);
    }
    ct_tensor *pooled = ct_gather_rows(g, ct_reshape(g, x, 2, flat), rows, 1, &n);
    pooled = ct_layernorm(g, pooled, m->ln_final_w, m->ln_final_b, c->text_ln_eps);
    return ct_linear(g, pooled, m->tproj, NULL);
}

ct_tensor *ct_clip_encode_text_embeds(ct_graph *g, const ct_clip *m, ct_tensor *embeds,
                                      const int64_t *eot_pos, const ct_clip_hooks *hooks) {
    return encode_text(g, m, embeds, eot_pos, hooks, NULL);
}

/* One causal text block on x, its attention also seeing ek/ev (P, W); *k,
 * *v (when k is set) receive x's keys and values as (T, W) (x is (1, T, W)). */
static ct_tensor *text_block(ct_graph *g, const ct_block *b, const ct_clip_config *c,
                             ct_tensor *x, ct_tensor *ek, ct_tensor *ev, ct_tensor **k,
                             ct_tensor **v, bool keys_only, const ct_lora *lora, int layer) {
    ct_tensor *kk = NULL, *vv = NULL;
    ct_tensor *y = ct_block_forward_lora(g, b, x, c->text_heads, true, c->text_act,
                                         c->text_ln_eps, ek, ev, k ? &kk : NULL,
                                         k ? &vv : NULL, keys_only,
                                         lora ? &lora->layers[layer] : NULL, lora, layer);
    if (k && kk) {
        int64_t flat[2] = {x->shape[1], c->text_width};
        *k = ct_reshape(g, kk, 2, flat), *v = ct_reshape(g, vv, 2, flat);
    }
    return y;
}

ct_tensor *ct_clip_encode_text_shared(ct_graph *g, const ct_clip *m, ct_tensor *prefix,
                                      const ct_text_tail *tails, int nb,
                                      const ct_clip_hooks *hooks) {
    if (!ct_op_inputs_ok(g, &prefix, 1)) return NULL;
    const ct_clip_config *c = &m->cfg;
    int64_t W = c->text_width, P = prefix->ndim == 3 ? prefix->shape[1] : 0;
    if (prefix->ndim != 3 || prefix->shape[0] != 1 || prefix->shape[2] != W || P < 1 || nb < 1) {
        char sh[64];
        return ct_op_fail(g, CT_ERR_ARG, "clip: shared prefix %s must be (1, P, %lld), with "
                          "tails", ct_shape_str(prefix, sh, sizeof sh), (long long)W);
    }
    if (hooks && (hooks->text || hooks->vision))
        return ct_op_fail(g, CT_ERR_ARG, "clip: the shared-prefix encoder takes deep prompts, "
                          "not function hooks");
    const ct_deep_prompts *deep = hooks ? hooks->text_deep : NULL;
    const ct_lora *lora = hooks ? hooks->text_lora : NULL;
    if (check_deep(g, deep, W, c->text_layers, "text") != CT_OK) return NULL;
    if (lora && lora->n_layers != c->text_layers)
        return ct_op_fail(g, CT_ERR_ARG, "clip: text LoRA for %d blocks, the tower has %d",
                          lora->n_layers, c->text_layers);
    /* a prefix shared by all sequences would share its dropout masks too */
    if (lora && lora->train && lora->dropout > 0)
        return ct_op_fail(g, CT_ERR_ARG, "clip: the shared-prefix encoder cannot apply LoRA "
                          "dropout (use the plain encoder)");
    tower_hook th = {deep, false, NULL, NULL, -1, NULL};
    ct_tensor **x = ct_graph_alloc(g, (size_t)nb * sizeof *x);
    if (!x) return NULL;
    ct_tensor *pre = ct_add(g, prefix, ct_slice(g, m->tpos, 0, 0, P)); /* (1, P, W) */
    for (int b = 0; b < nb; b++) {
        ct_tensor *t = tails[b].embeds;
        if (!t || t->ndim != 3 || t->shape[2] != W || P + t->shape[1] > c->context_length)
            return ct_op_fail(g, CT_ERR_ARG, "clip: tail %d of the shared-prefix encoder does "
                              "not fit after %lld positions", b, (long long)P);
        x[b] = ct_add(g, t, ct_slice(g, m->tpos, 0, P, t->shape[1]));   /* (n, L, W) */
    }
    for (int l = 0; l < c->text_layers; l++) {
        ct_tensor *ek = NULL, *ev = NULL;
        if (deep && deep->depth > 0) pre = tower_hook_fn(g, l, pre, &th);
        /* the prefix's own output after the last layer is never read */
        pre = text_block(g, &m->tblocks[l], c, pre, NULL, NULL, &ek, &ev,
                         l == c->text_layers - 1, lora, l);
        for (int b = 0; b < nb; b++)
            x[b] = text_block(g, &m->tblocks[l], c, x[b], ek, ev, NULL, NULL, false, lora, l);
    }
    /* ln_final is per token: pool the EOT rows first, as the encoder does */
    for (int b = 0; b < nb; b++) {
        if (!x[b]) return NULL;
        int64_t n = x[b]->shape[0], flat[2] = {n * x[b]->shape[1], W};
        x[b] = ct_gather_rows(g, ct_reshape(g, x[b], 2, flat), tails[b].last, 1, &n);
    }
    ct_tensor *pooled = nb == 1 ? x[0] : ct_concat(g, x, nb, 0);
    pooled = ct_layernorm(g, pooled, m->ln_final_w, m->ln_final_b, c->text_ln_eps);
    return ct_linear(g, pooled, m->tproj, NULL);
}

ct_tensor *ct_clip_encode_text(ct_graph *g, const ct_clip *m, const int64_t *ids, int64_t n,
                               int64_t T, const ct_clip_hooks *hooks) {
    int64_t *pos = ct_graph_alloc(g, (size_t)(n ? n : 1) * sizeof *pos);
    if (!pos) return NULL;
    ct_clip_eot_positions(m, ids, n, T, pos);
    return ct_clip_encode_text_embeds(g, m, ct_clip_embed_tokens(g, m, ids, n, T), pos, hooks);
}

ct_tensor *ct_clip_encode_text_tokens(ct_graph *g, const ct_clip *m, const int64_t *ids,
                                      int64_t n, int64_t T, const ct_clip_hooks *hooks,
                                      ct_tensor **tokens) {
    if (!tokens) return ct_op_fail(g, CT_ERR_ARG, "clip: encode_text_tokens needs tokens");
    *tokens = NULL;
    int64_t *pos = ct_graph_alloc(g, (size_t)(n ? n : 1) * sizeof *pos);
    if (!pos) return NULL;
    ct_clip_eot_positions(m, ids, n, T, pos);
    return encode_text(g, m, ct_clip_embed_tokens(g, m, ids, n, T), pos, hooks, tokens);
}

ct_tensor *ct_clip_logits(ct_graph *g, const ct_clip *m, ct_tensor *img, ct_tensor *txt) {
    ct_tensor *sim = ct_matmul(g, ct_l2_normalize(g, img, 1e-12f), ct_l2_normalize(g, txt, 1e-12f),
                               false, true);
    return ct_mul(g, sim, ct_exp(g, m->logit_scale));
}

ct_status ct_clip_need_vit(const ct_clip *m, const char *who) {
    if (!m) return ct_set_error(CT_ERR_ARG, "%s: no model", who ? who : "clip");
    if (!ct_clip_is_resnet(m)) return CT_OK;
    const int *l = m->cfg.vision_resnet_layers;
    return ct_set_error(CT_ERR_UNSUPPORTED, "%s needs a ViT image tower (this model's is a "
                        "ModifiedResNet, layers (%d, %d, %d, %d), width %d)", who ? who : "this",
                        l[0], l[1], l[2], l[3], m->cfg.vision_width);
}
