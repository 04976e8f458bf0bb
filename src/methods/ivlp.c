/* IVLP, independent vision-language prompting (the baseline of Khattak et
 * al., "MaPLe: Multi-modal Prompt Learning", CVPR 2023, and of PromptSRC),
 * and VPT-deep on CLIP as its vision-only preset. Followed:
 * muzairkhattak/multimodal-prompt-learning at 69bce21, trainers/
 * independentVL.py (VLPromptLearner, CustomCLIP), trainers/vpt.py (VPT-deep:
 * fixed "a photo of a {}." text), clip/model.py (ResidualAttentionBlock_IVLP:
 * where prompts enter and are replaced) and configs/trainers/IVLP, VPT;
 * muzairkhattak/PromptSRC at bb95c77 (the same code, other configs).
 *
 *   text:   "[SOT] c_1 .. c_n {rest of ctx_init} {name}. [EOT]" with the
 *           first n context tokens learned (CoOp's prompt learner in
 *           MaPLe's layout, method_prompt.h), plus deep prompts T_l (n, W_t)
 *           replacing positions 1..n before text blocks l = 1 .. D_t - 1;
 *   vision: V_0 (m, W_v) appended after the patch tokens and positional
 *           embedding (before ln_pre), V_l replacing the last m tokens before
 *           blocks l = 1 .. D_v - 1 (ct_deep_prompts);
 *   logits: exp(logit_scale) * cos(image, text_k); loss: cross-entropy.
 * Every prompt N(0, 0.02) unless the context starts from ctx_init's words.
 * text_depth=0 (VPT-deep, vpt.py): no text prompt, the class features of
 * "a photo of a {}." are computed once; vision_depth=0: text prompts only
 * (deep language prompting). Depths beyond a tower's layers mean every layer.
 *
 * Learned tensor names: the keys of the state dict independentVL.py and
 * vpt.py save, the whole CustomCLIP's (build_model registers self.model),
 * less the frozen CLIP: "prompt_learner.ctx" (VLPromptLearner.ctx),
 * "text_encoder.transformer.resblocks.{l}.VPT_shallow" for l = 1 .. D_t - 1,
 * "image_encoder.VPT" (VisionTransformer.VPT, V_0) and
 * "image_encoder.transformer.resblocks.{l}.VPT_shallow" for l = 1 .. D_v - 1
 * (clip/model.py: ResidualAttentionBlock_IVLP.VPT_shallow).
 *
 * Defaults: PromptSRC's IVLP config (vit_b16_c2_ep20_batch4_4+4ctx: 4 + 4
 * tokens, depth 9/9, lr 0.0025, 20 epochs, batch 4); MaPLe's repo ships
 * 2 + 2 at depth 12, lr 0.0035, 5 epochs (pass them with --set). Training
 * transform: Dassl's random resized crop (0.08-1) + flip. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "methods/ivlp.h"

#include "base/error.h"
#include "methods/method_image.h"
#include "methods/method_prompt.h"

#define IVLP_MAX_DEPTH 64

struct ct_ivlp {
    const ct_clip *clip;
    int K, E, S;
    ct_prompt *text;        /* NULL with text_depth 0                             */
    float *fixed_txt;       /* (K, E) normalised: text_depth 0                      */
    int dt, dv;             /* depths as applied                                   */
    ct_tensor *tdeep[IVLP_MAX_DEPTH]; /* [1 .. dt-1] (n, W_t)                       */
    ct_tensor *vdeep[IVLP_MAX_DEPTH]; /* [0 .. dv-1] (m, W_v)                       */
    ct_deep_prompts tdp, vdp;
    char names[2 * IVLP_MAX_DEPTH][64]; /* ct_ivlp_param_names' strings        */
};
typedef struct ct_ivlp ivlp_state;

void ct_ivlp_destroy(void *st) {
    ivlp_state *s = st;
    if (!s) return;
    ct_prompt_destroy(s->text);
    free(s->fixed_txt);
    for (int l = 0; l < IVLP_MAX_DEPTH; l++) ct_tensor_free(s->tdeep[l]), ct_tensor_free(s->vdeep[l]);
    free(s);
}

ct_status ct_ivlp_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    int dt, dv, nv, nt;
    const char *tmpl;
    ct_status st = ct_kv_int(hp, "text_depth", 9, &dt);
    if (st == CT_OK) st = ct_kv_int(hp, "vision_depth", 9, &dv);
    if (st == CT_OK) st = ct_kv_int(hp, "n_ctx_vision", 4, &nv);
    if (st == CT_OK) st = ct_kv_int(hp, "n_ctx", 4, &nt);
    if (st == CT_OK) st = ct_kv_str(hp, "template", "a photo of a {}.", &tmpl);
    if (st != CT_OK) return st;
    const ct_clip_config *c = ct_clip_get_config(task->clip);
    if (dt < 0 || dv < 0 || (dt == 0 && dv == 0) || (dv > 0 && (nv < 1 || nv > 1024)))
        return ct_set_error(CT_ERR_ARG, "ivlp: text_depth=%d vision_depth=%d n_ctx_vision=%d "
                            "(depths >= 0, not both 0; 1 .. 1024 vision tokens)", dt, dv, nv);
    /* vision prompts are tokens of the vision transformer (text-only deep
     * prompts, vision_depth=0, work on any tower) */
    if (dv > 0 && ct_clip_need_vit(task->clip, "deep vision prompts (ivlp / vpt-deep / "
                                   "promptsrc, vision_depth > 0)") != CT_OK)
        return CT_ERR_UNSUPPORTED;
    ivlp_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "ivlp: out of memory");
    s->clip = task->clip, s->K = task->n_classes, s->E = c->embed_dim, s->S = c->image_size;
    s->dt = ct_prompt_depth(dt, c->text_layers), s->dv = ct_prompt_depth(dv, c->vision_layers);
    if (s->dt > 0) {
        st = ct_prompt_create(task, hp, CT_PROMPT_FIRST_N, (void **)&s->text);
        if (st == CT_OK) nt = (int)ct_prompt_ctx(s->text)->shape[0];
        for (int l = 1; st == CT_OK && l < s->dt; l++)
            if (!(s->tdeep[l] = ct_param_normal(nt, c->text_width, 0.02f, task->seed,
                                                "ivlp.text", l, "ivlp.text_deep")))
                st = CT_ERR_NOMEM;
    } else {
        /* vpt.py: fixed text; the prompt keys are read (defaults) but unused */
        const char *unused;
        int u;
        st = ct_kv_str(hp, "ctx_init", "", &unused);
        if (st == CT_OK) st = ct_kv_int(hp, "shared_prefix", 1, &u);
        if (st == CT_OK) st = ct_kv_str(hp, "prec", "fp16", &unused);
        s->fixed_txt = malloc((size_t)s->K * s->E * sizeof *s->fixed_txt);
        if (st == CT_OK && !s->fixed_txt) st = ct_set_error(CT_ERR_NOMEM, "ivlp: out of memory");
        if (st == CT_OK) st = ct_prompt_zeroshot_text(task, tmpl, s->fixed_txt);
    }
    for (int l = 0; st == CT_OK && l < s->dv; l++)
        if (!(s->vdeep[l] = ct_param_normal(nv, c->vision_width, 0.02f, task->seed, "ivlp.vision",
                                            l, "ivlp.vision_deep")))
            st = CT_ERR_NOMEM;
    if (st != CT_OK) {
        ct_ivlp_destroy(s);
        return st;
    }
    s->tdp = (ct_deep_prompts){s->dt, s->tdeep, false, false};
    s->vdp = (ct_deep_prompts){s->dv, s->vdeep, false, false};
    *out = s;
    return CT_OK;
}

/* The context, the deep text prompts, then the vision prompts. */
int ct_ivlp_params(void *st, ct_tensor **out, int cap) {
    ivlp_state *s = st;
    int n = 0;
    if (s->text && n < cap) out[n++] = ct_prompt_ctx(s->text);
    for (int l = 1; l < s->dt && n < cap; l++) out[n++] = s->tdeep[l];
    for (int l = 0; l < s->dv && n < cap; l++) out[n++] = s->vdeep[l];
    return n;
}

int ct_ivlp_param_names(void *st, const char **out, int cap) {
    ivlp_state *s = st;
    int n = 0;
    size_t sz = sizeof s->names[0];
    if (s->text && n < cap) snprintf(s->names[n++], sz, "prompt_learner.ctx");
    for (int l = 1; l < s->dt && n < cap; l++)
        snprintf(s->names[n++], sz, "text_encoder.transformer.resblocks.%d.VPT_shallow", l);
    for (int l = 0; l < s->dv && n < cap; l++) {
        if (l == 0) snprintf(s->names[n++], sz, "image_encoder.VPT");
        else snprintf(s->names[n++], sz, "image_encoder.transformer.resblocks.%d.VPT_shallow", l);
    }
    for (int i = 0; i < n; i++) out[i] = s->names[i];
    return n;
}

ct_tensor *ct_ivlp_text(ct_ivlp *s, ct_graph *g) {
    if (!s->text) {
        int64_t shape[2] = {s->K, s->E};
        return ct_graph_wrap(g, s->fixed_txt, 2, shape);
    }
    return ct_l2_normalize(g, ct_prompt_text_features_deep(s->text, g, &s->tdp), 1e-12f);
}

ct_tensor *ct_ivlp_image(ct_ivlp *s, ct_graph *g, const ct_batch *b) {
    ct_clip_hooks hooks = {0};
    hooks.vision_deep = &s->vdp;
    return ct_clip_encode_image(g, s->clip, ct_batch_pixels(g, s->S, b, "ivlp"), &hooks, false,
                                NULL);
}

ct_tensor *ct_ivlp_logits(void *st, ct_graph *g, const ct_batch *b) {
    ivlp_state *s = st;
    ct_tensor *img = ct_ivlp_image(s, g, b);
    if (!img) return NULL;
    return ct_image_text_scores(g, s->clip, img, ct_ivlp_text(s, g));
}

static ct_tensor *ivlp_loss(void *st, ct_graph *g, const ct_batch *b) {
    return ct_batch_ce(g, ct_ivlp_logits(st, g, b), b);
}

#define IVLP_TRAIN "optim=sgd momentum=0.9 weight_decay=5e-4 sched=cosine warmup_epochs=1 " \
                   "warmup_type=constant warmup_lr=1e-5 select=last train_aug=rrc_flip "     \
                   "aug_scale_min=0.08 "

const ct_method ct_method_ivlp = {
    .name = "ivlp",
    .category = "multimodal prompt learning",
    .setup = "few-shot, base-to-novel",
    .paper = "Khattak et al., MaPLe: Multi-modal Prompt Learning (its IVLP baseline), CVPR 2023",
    /* PromptSRC configs/trainers/IVLP/vit_b16_c2_ep20_batch4_4+4ctx.yaml */
    .defaults = "n_ctx=4 n_ctx_vision=4 text_depth=9 vision_depth=9 ctx_init=a_photo_of_a "
                "shared_prefix=1 prec=fp16 template=\"a photo of a {}.\" lr=0.0025 epochs=20 "
                "batch_size=4 " IVLP_TRAIN,
    .create = ct_ivlp_create,
    .destroy = ct_ivlp_destroy,
    .params = ct_ivlp_params,
    .param_names = ct_ivlp_param_names,
    .loss = ivlp_loss,
    .logits = ct_ivlp_logits,
    .pixels = true,
};

const ct_method ct_method_vpt_deep = {
    .name = "vpt-deep",
    .category = "visual prompt learning",
    .setup = "few-shot",
    .paper = "Jia et al., Visual Prompt Tuning, ECCV 2022 (on CLIP as in MaPLe's trainers/vpt.py)",
    /* multimodal-prompt-learning configs/trainers/VPT/vit_b16_c2_ep5_batch4_4.yaml:
     * 8 vision tokens at depth 12, lr 0.0025, 5 epochs, batch 4; fixed text */
    .defaults = "text_depth=0 vision_depth=12 n_ctx_vision=8 template=\"a photo of a {}.\" "
                "lr=0.0025 epochs=5 batch_size=4 " IVLP_TRAIN,
    .create = ct_ivlp_create,
    .destroy = ct_ivlp_destroy,
    .params = ct_ivlp_params,
    .param_names = ct_ivlp_param_names,
    .loss = ivlp_loss,
    .logits = ct_ivlp_logits,
    .pixels = true,
};
