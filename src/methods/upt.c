/* UPT, unified prompt tuning (Zang et al., "Unified Vision and Language
 * Prompt Learning", 2022), as runnable in sIncerass/MVLPT at 6fa518b:
 * trainers/mvlpt.py in its UPT mode (COOP.N_CTX and VPT.N_CTX both > 0,
 * PROJECT_METHOD transformer: MultitaskVLPromptLearner, forward_mvlpt_proj,
 * forward_coop, ImageEncoder with VPT-deep), clip/model.py
 * (ResidualAttentionBlock), configs/trainers/MVLPT/vit_b16.yaml and
 * scripts/mvlpt/main_single_coopdata_cut.sh (the UPT branch; MVLPT.md: 4
 * tokens). yuhangzang/UPT, the paper's own release, does not run as shipped
 * (its trainer is registered under another name than its scripts use).
 *
 * One set of prompts is learned and passed through a shared block before
 * use:
 *   c (n, W_t) ~ N(0, 0.02), v (L, n, W_v) ~ U(±sqrt(6 / (3 p² + W_v)))
 *   z = [Pt_in(c); Pv_in(v flattened)]      (n + L n tokens of width 128)
 *   z = block(z)   (CLIP's residual attention block: width 128, 1 head,
 *                   MLP 512, QuickGELU, pre-LN)
 *   c' = Pt_out(z[:n]), v' = Pv_out(z[n:]) reshaped (L, n, W_v)
 *   text: CoOp's prompt with c' and the class name in the middle,
 *         [SOT, c'_1..c'_{n/2}, name, c'_{n/2+1}..c'_n, ".", EOT];
 *   vision: VPT-deep in VPT's layout: v'_0 after the class token once ln_pre
 *         has run, positions 1..n replaced by v'_l before blocks 1..L-1;
 *   logits = exp(logit_scale) cos(image, text), cross-entropy.
 * The linears have nn.Linear's default initialisation, the block's
 * attention in_proj is xavier-uniform with zero biases (nn.MultiheadAttention).
 *
 * block_attention=token (default) is the code as it runs: mvlpt.py feeds the
 * block a batch-first (1, n + L n, 128) tensor that nn.MultiheadAttention
 * reads sequence-first, so each token attends only to itself and text and
 * vision share weights but no information. block_attention=joint is UPT as
 * the paper describes it: the tokens attend to each other.
 *
 * Defaults (vit_b16.yaml, the UPT script): n 4, SGD lr 0.002, momentum 0.9,
 * weight decay 5e-4, batch 32, 200 epochs, one constant warmup epoch at
 * 1e-5, cosine per epoch, best epoch on val (TEST.FINAL_MODEL best_val),
 * Dassl's random resized crop + flip.
 *
 * Learned tensor names: the keys of the prompt_learner state dict mvlpt.py
 * saves (MultitaskVLPromptLearner): "ctx"; the four linears
 * "mvlpt_proj_ctx_coop_pre" (text in), "mvlpt_proj_ctx_coop_post" (text out),
 * "mvlpt_proj_ctx_vpt_pre", "mvlpt_proj_ctx_vpt_post" (".weight", ".bias");
 * the block "mvlpt_proj.resblocks.0." + "ln_1.weight", "attn.out_proj.weight",
 * "mlp.c_fc.weight", ... (clip/model.py's Transformer). No exact key, so
 * descriptive: v, which mvlpt.py keeps as vpt_embeddings (1, n, W_v) and
 * vpt_embeddings_deep (L-1, n, W_v) and concatenates, is
 * "vpt_embeddings_and_deep" (L n, W_v); the attention's packed in_proj_weight
 * / in_proj_bias are kept split as "attn.q_proj_weight" (torch's name for a
 * separate q projection), "attn.q_proj_bias" and the same for k and v. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/transformer.h"
#include "base/error.h"
#include "base/hash.h"
#include "methods/method_image.h"
#include "methods/method_prompt.h"
#include "methods/upt.h"

#define UPT_D 128
#define UPT_MAX_LAYERS 64

typedef struct {
    const ct_clip *clip;
    int K, S, n, L, Wt, Wv;
    bool joint;
    ct_prompt *text;                 /* its ctx is c (the learned raw context) */
    ct_tensor *v;                    /* (L * n, W_v)                            */
    ct_tensor *ti_w, *ti_b, *to_w, *to_b, *vi_w, *vi_b, *vo_w, *vo_b;
    ct_block blk;
    ct_tensor *own[32];
    const char *own_names[32]; /* their keys (top comment)                   */
    int n_own;
} upt_state;

void ct_upt_destroy(void *st) {
    upt_state *s = st;
    if (!s) return;
    ct_prompt_destroy(s->text);
    for (int i = 0; i < s->n_own; i++) ct_tensor_free(s->own[i]);
    free(s);
}

/* key: the tensor's name in mvlpt.py's saved prompt_learner state dict */
static ct_tensor *param(upt_state *s, int64_t r, int64_t c, const char *name, const char *key) {
    ct_tensor *t = c > 0 ? ct_tensor_new2(r, c, true) : ct_tensor_new(1, &r, true);
    if (t) t->name = name, s->own_names[s->n_own] = key, s->own[s->n_own++] = t;
    return t;
}

ct_status ct_upt_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    const char *attn, *pos;
    ct_status st = ct_kv_str(hp, "block_attention", "token", &attn);
    if (st == CT_OK) st = ct_kv_str(hp, "class_token_position", "middle", &pos);
    if (st != CT_OK) return st;
    if (strcmp(attn, "token") && strcmp(attn, "joint"))
        return ct_set_error(CT_ERR_ARG, "upt: block_attention=%s (token, joint)", attn);
    if (ct_clip_need_vit(task->clip, "upt") != CT_OK) return CT_ERR_UNSUPPORTED;
    const ct_clip_config *c = ct_clip_get_config(task->clip);
    if (c->vision_layers > UPT_MAX_LAYERS)
        return ct_set_error(CT_ERR_UNSUPPORTED, "upt: %d vision layers", c->vision_layers);
    upt_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "upt: out of memory");
    s->clip = task->clip, s->K = task->n_classes, s->S = c->image_size;
    s->L = c->vision_layers, s->Wt = c->text_width, s->Wv = c->vision_width;
    s->joint = !strcmp(attn, "joint");
    /* CoOp's learner with "X" placeholders (n_ctx, ctx_init, position) */
    st = ct_prompt_create(task, hp, 0, (void **)&s->text);
    if (st == CT_OK) {
        ct_tensor *ctx = ct_prompt_ctx(s->text);
        if (ctx->ndim != 2) st = ct_set_error(CT_ERR_ARG, "upt: a class-specific context (csc=1) "
                                              "is not UPT's");
        else s->n = (int)ctx->shape[0];
    }
    int64_t D = UPT_D, Wt = s->Wt, Wv = s->Wv, n = s->n, M = 4 * UPT_D;
#define UPT_BLK "mvlpt_proj.resblocks.0."
    if (st == CT_OK) {
        s->v = param(s, (int64_t)s->L * n, Wv, "upt.vpt", "vpt_embeddings_and_deep");
        s->ti_w = param(s, D, Wt, "upt.text_in.weight", "mvlpt_proj_ctx_coop_pre.weight");
        s->ti_b = param(s, D, 0, "upt.text_in.bias", "mvlpt_proj_ctx_coop_pre.bias");
        s->to_w = param(s, Wt, D, "upt.text_out.weight", "mvlpt_proj_ctx_coop_post.weight");
        s->to_b = param(s, Wt, 0, "upt.text_out.bias", "mvlpt_proj_ctx_coop_post.bias");
        s->vi_w = param(s, D, Wv, "upt.vision_in.weight", "mvlpt_proj_ctx_vpt_pre.weight");
        s->vi_b = param(s, D, 0, "upt.vision_in.bias", "mvlpt_proj_ctx_vpt_pre.bias");
        s->vo_w = param(s, Wv, D, "upt.vision_out.weight", "mvlpt_proj_ctx_vpt_post.weight");
        s->vo_b = param(s, Wv, 0, "upt.vision_out.bias", "mvlpt_proj_ctx_vpt_post.bias");
        ct_block *b = &s->blk;
        b->ln1_w = param(s, D, 0, "upt.block.ln_1.weight", UPT_BLK "ln_1.weight");
        b->ln1_b = param(s, D, 0, "upt.block.ln_1.bias", UPT_BLK "ln_1.bias");
        b->q_w = param(s, D, D, "upt.block.q.weight", UPT_BLK "attn.q_proj_weight");
        b->q_b = param(s, D, 0, "upt.block.q.bias", UPT_BLK "attn.q_proj_bias");
        b->k_w = param(s, D, D, "upt.block.k.weight", UPT_BLK "attn.k_proj_weight");
        b->k_b = param(s, D, 0, "upt.block.k.bias", UPT_BLK "attn.k_proj_bias");
        b->v_w = param(s, D, D, "upt.block.v.weight", UPT_BLK "attn.v_proj_weight");
        b->v_b = param(s, D, 0, "upt.block.v.bias", UPT_BLK "attn.v_proj_bias");
        b->o_w = param(s, D, D, "upt.block.out.weight", UPT_BLK "attn.out_proj.weight");
        b->o_b = param(s, D, 0, "upt.block.out.bias", UPT_BLK "attn.out_proj.bias");
        b->ln2_w = param(s, D, 0, "upt.block.ln_2.weight", UPT_BLK "ln_2.weight");
        b->ln2_b = param(s, D, 0, "upt.block.ln_2.bias", UPT_BLK "ln_2.bias");
        b->fc1_w = param(s, M, D, "upt.block.c_fc.weight", UPT_BLK "mlp.c_fc.weight");
        b->fc1_b = param(s, M, 0, "upt.block.c_fc.bias", UPT_BLK "mlp.c_fc.bias");
        b->fc2_w = param(s, D, M, "upt.block.c_proj.weight", UPT_BLK "mlp.c_proj.weight");
        b->fc2_b = param(s, D, 0, "upt.block.c_proj.bias", UPT_BLK "mlp.c_proj.bias");
#undef UPT_BLK
        for (int i = 0; i < s->n_own; i++)
            if (!s->own[i]) st = ct_set_error(CT_ERR_NOMEM, "upt: out of memory");
    }
    if (st == CT_OK) {
        uint64_t seed = task->seed;
        /* mvlpt.py: VPT's uniform bound for patch size p */
        int p = c->patch_size;
        float val = sqrtf(6.0f / (float)(3 * p * p + Wv));
        ct_rng r;
        ct_rng_init(&r, ct_hash_str(ct_hash_u64(CT_HASH_INIT, seed), "upt.vpt"));
        ct_rng_fill_uniform(&r, s->v->data, (size_t)s->v->numel, -val, val);
        ct_param_linear_init(s->ti_w, s->ti_b, seed, "upt.text_in");
        ct_param_linear_init(s->to_w, s->to_b, seed, "upt.text_out");
        ct_param_linear_init(s->vi_w, s->vi_b, seed, "upt.vision_in");
        ct_param_linear_init(s->vo_w, s->vo_b, seed, "upt.vision_out");
        /* nn.MultiheadAttention: in_proj xavier_uniform over the packed
         * (3D, D) matrix, zero biases; out_proj nn.Linear's weight, zero bias */
        float xb = sqrtf(6.0f / (float)(D + 3 * D));
        ct_rng_init(&r, ct_hash_str(ct_hash_u64(CT_HASH_INIT, seed), "upt.block.in_proj"));
        ct_rng_fill_uniform(&r, s->blk.q_w->data, (size_t)(D * D), -xb, xb);
        ct_rng_fill_uniform(&r, s->blk.k_w->data, (size_t)(D * D), -xb, xb);
        ct_rng_fill_uniform(&r, s->blk.v_w->data, (size_t)(D * D), -xb, xb);
        ct_param_linear_init(s->blk.o_w, NULL, seed, "upt.block.out");
        for (int64_t i = 0; i < D; i++) s->blk.ln1_w->data[i] = s->blk.ln2_w->data[i] = 1;
        ct_param_linear_init(s->blk.fc1_w, s->blk.fc1_b, seed, "upt.block.c_fc");
        ct_param_linear_init(s->blk.fc2_w, s->blk.fc2_b, seed, "upt.block.c_proj");
    }
    if (st != CT_OK) {
        ct_upt_destroy(s);
        return st;
    }
    *out = s;
    return CT_OK;
}

/* c, v, the four linears, then the block. */
int ct_upt_params(void *st, ct_tensor **out, int cap) {
    upt_state *s = st;
    int n = 0;
    if (n < cap) out[n++] = ct_prompt_ctx(s->text);
    for (int i = 0; i < s->n_own && n < cap; i++) out[n++] = s->own[i];
    return n;
}

int ct_upt_param_names(void *st, const char **out, int cap) {
    upt_state *s = st;
    int n = 0;
    if (n < cap) out[n++] = "ctx";
    for (int i = 0; i < s->n_own && n < cap; i++) out[n++] = s->own_names[i];
    return n;
}

/* The coupled prompts: c' (n, W_t) and the vision prompts per layer. */
static ct_status prompts(upt_state *s, ct_graph *g, ct_tensor **ct, ct_tensor **vl) {
    int64_t n = s->n, Ln = (int64_t)s->L * n, D = UPT_D;
    ct_tensor *parts[2] = {ct_linear(g, ct_prompt_ctx(s->text), s->ti_w, s->ti_b),
                           ct_linear(g, s->v, s->vi_w, s->vi_b)};
    ct_tensor *z = ct_concat(g, parts, 2, 0);                     /* (n + Ln, D) */
    int64_t tok[3] = {n + Ln, 1, D}, seq[3] = {1, n + Ln, D};     /* token / joint */
    z = ct_reshape(g, z, 3, s->joint ? seq : tok);
    z = ct_block_forward(g, &s->blk, z, 1, false, CT_QUICK_GELU, 1e-5f);
    int64_t flat[2] = {n + Ln, D};
    z = ct_reshape(g, z, 2, flat);
    *ct = ct_linear(g, ct_slice(g, z, 0, 0, n), s->to_w, s->to_b); /* (n, W_t)  */
    ct_tensor *v = ct_linear(g, ct_slice(g, z, 0, n, Ln), s->vo_w, s->vo_b); /* (Ln, W_v) */
    for (int l = 0; l < s->L; l++) vl[l] = ct_slice(g, v, 0, (int64_t)l * n, n);
    return *ct && v ? CT_OK : (ct_graph_status(g) != CT_OK ? ct_graph_status(g) : CT_ERR_ARG);
}

ct_tensor *ct_upt_logits(void *st, ct_graph *g, const ct_batch *b) {
    upt_state *s = st;
    ct_tensor *c = NULL, **vl = ct_graph_alloc(g, (size_t)s->L * sizeof *vl);
    if (!vl || prompts(s, g, &c, vl) != CT_OK) return NULL;
    ct_deep_prompts vd = {s->L, vl, true, false};
    ct_clip_hooks hooks = {0};
    hooks.vision_deep = &vd;
    ct_tensor *img = ct_clip_encode_image(g, s->clip, ct_batch_pixels(g, s->S, b, "upt"), &hooks,
                                          false, NULL);
    ct_tensor *txt = ct_l2_normalize(g, ct_prompt_text_features_with(s->text, g, c, NULL), 1e-12f);
    return img && txt ? ct_image_text_scores(g, s->clip, img, txt) : NULL;
}

static ct_tensor *upt_loss(void *st, ct_graph *g, const ct_batch *b) {
    return ct_batch_ce(g, ct_upt_logits(st, g, b), b);
}

const ct_method ct_method_upt = {
    .name = "upt",
    .category = "multimodal prompt learning",
    .setup = "few-shot",
    .paper = "Zang et al., Unified Vision and Language Prompt Learning (UPT), 2022 (as run in "
             "MVLPT's trainers/mvlpt.py)",
    /* configs/trainers/MVLPT/vit_b16.yaml and the UPT branch of scripts/mvlpt/ */
    .defaults = "n_ctx=4 ctx_init= csc=0 class_token_position=middle shared_prefix=1 prec=fp16 "
                "block_attention=token optim=sgd lr=0.002 momentum=0.9 weight_decay=5e-4 "
                "sched=cosine warmup_epochs=1 warmup_type=constant warmup_lr=1e-5 epochs=200 "
                "batch_size=32 select=best_val train_aug=rrc_flip aug_scale_min=0.08",
    .create = ct_upt_create,
    .destroy = ct_upt_destroy,
    .params = ct_upt_params,
    .param_names = ct_upt_param_names,
    .loss = upt_loss,
    .logits = ct_upt_logits,
    .pixels = true,
};
