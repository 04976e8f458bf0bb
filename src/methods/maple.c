/* MaPLe, multi-modal prompt learning (Khattak et al., CVPR 2023). Followed:
 * muzairkhattak/multimodal-prompt-learning at 69bce21, trainers/maple.py
 * (MultiModalPromptLearner, CustomCLIP), clip/model.py
 * (ResidualAttentionBlock_MaPLe, VisionTransformer_MaPLe: where the prompts
 * enter and are replaced) and configs/trainers/MaPLe/
 * vit_b16_c2_ep5_batch4_2ctx.yaml.
 *
 *   text:   "[SOT] c_1 .. c_n {rest of ctx_init} {name}. [EOT]", the first n
 *           tokens learned (n = 2 of "a photo of a": "of a" stays text), and
 *           deep prompts T_l (n, W_t), l = 1 .. J-1, replacing positions
 *           1..n before text block l;
 *   vision: coupled to the text: V_0 = proj(c) appended after the patch
 *           tokens and positional embedding (before ln_pre), V_l = F_l(T_l)
 *           replacing the last n tokens before vision block l, with proj and
 *           F_l linear maps W_t -> W_v;
 *   logits: exp(logit_scale) * cos(image, text_k); loss: cross-entropy.
 * Initialisation as maple.py: the context from ctx_init's token embeddings
 * (n <= 4; else N(0, 0.02) with "X" placeholders), T_l ~ N(0, 0.02), proj
 * and F_1 nn.Linear's default; F_2 .. F_{J-1} are copies of F_1 (maple.py
 * builds them with copy.deepcopy of one module), so they start equal.
 * Depth J applies to both towers; beyond a tower's layers it means every
 * layer (the official depth 9 is for 12-layer towers).
 *
 * Learned tensor names: the keys of the state dict maple.py saves, which is
 * the whole CustomCLIP's (MaPLe.build_model registers self.model), less the
 * frozen CLIP: "prompt_learner.ctx", "prompt_learner.proj.weight" / ".bias",
 * and per deeper layer l = 1 .. J-1 "prompt_learner.compound_prompts_text.
 * {l-1}", "prompt_learner.compound_prompt_projections.{l-1}.weight" / ".bias"
 * (MultiModalPromptLearner's ParameterList and _get_clones ModuleList).
 *
 * Defaults: vit_b16_c2_ep5_batch4_2ctx.yaml (n_ctx 2, depth 9, SGD lr
 * 0.0035, 5 epochs, batch 4, one constant warmup epoch at 1e-5, cosine),
 * Dassl's training transform (random resized crop 0.08-1 + flip). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "methods/method_image.h"
#include "methods/maple.h"
#include "methods/method_prompt.h"

#define MAPLE_MAX_DEPTH 64

typedef struct {
    const ct_clip *clip;
    int K, E, S, J;
    ct_prompt *text;
    ct_tensor *proj_w, *proj_b;           /* (W_v, W_t), (W_v)                 */
    ct_tensor *tdeep[MAPLE_MAX_DEPTH];    /* [1 .. J-1] (n, W_t)               */
    ct_tensor *fw[MAPLE_MAX_DEPTH], *fb[MAPLE_MAX_DEPTH]; /* [1 .. J-1] F_l      */
    ct_deep_prompts tdp;
    char names[3 + 3 * MAPLE_MAX_DEPTH][64]; /* param_names' strings      */
} maple_state;

void ct_maple_destroy(void *st) {
    maple_state *s = st;
    if (!s) return;
    ct_prompt_destroy(s->text);
    ct_tensor_free(s->proj_w), ct_tensor_free(s->proj_b);
    for (int l = 0; l < MAPLE_MAX_DEPTH; l++)
        ct_tensor_free(s->tdeep[l]), ct_tensor_free(s->fw[l]), ct_tensor_free(s->fb[l]);
    free(s);
}

ct_status ct_maple_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    int depth;
    ct_status st = ct_kv_int(hp, "depth", 9, &depth);
    if (st != CT_OK) return st;
    if (ct_clip_need_vit(task->clip, "maple") != CT_OK) return CT_ERR_UNSUPPORTED;
    const ct_clip_config *c = ct_clip_get_config(task->clip);
    if (depth < 1) return ct_set_error(CT_ERR_ARG, "maple: depth=%d (at least 1)", depth);
    maple_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "maple: out of memory");
    s->clip = task->clip, s->K = task->n_classes, s->E = c->embed_dim, s->S = c->image_size;
    int lmin = c->text_layers < c->vision_layers ? c->text_layers : c->vision_layers;
    s->J = ct_prompt_depth(depth, lmin);
    int64_t Wt = c->text_width, Wv = c->vision_width, n = 0;
    st = ct_prompt_create(task, hp, CT_PROMPT_FIRST_N, (void **)&s->text);
    if (st == CT_OK) {
        n = ct_prompt_ctx(s->text)->shape[0];
        s->proj_w = ct_tensor_new2(Wv, Wt, true);
        s->proj_b = ct_tensor_new(1, &Wv, true);
        if (!s->proj_w || !s->proj_b) st = ct_set_error(CT_ERR_NOMEM, "maple: out of memory");
    }
    if (st == CT_OK) {
        s->proj_w->name = "maple.proj.weight", s->proj_b->name = "maple.proj.bias";
        st = ct_param_linear_init(s->proj_w, s->proj_b, task->seed, "maple.proj");
    }
    for (int l = 1; st == CT_OK && l < s->J; l++) {
        s->tdeep[l] = ct_param_normal(n, Wt, 0.02f, task->seed, "maple.text", l, "maple.text_deep");
        s->fw[l] = ct_tensor_new2(Wv, Wt, true);
        s->fb[l] = ct_tensor_new(1, &Wv, true);
        if (!s->tdeep[l] || !s->fw[l] || !s->fb[l]) {
            st = ct_set_error(CT_ERR_NOMEM, "maple: out of memory");
            break;
        }
        s->fw[l]->name = "maple.coupling.weight", s->fb[l]->name = "maple.coupling.bias";
        /* deepcopy of one module: every F_l starts as F_1 */
        if (l == 1) {
            st = ct_param_linear_init(s->fw[1], s->fb[1], task->seed, "maple.coupling");
        } else {
            memcpy(s->fw[l]->data, s->fw[1]->data, (size_t)s->fw[1]->numel * sizeof(float));
            memcpy(s->fb[l]->data, s->fb[1]->data, (size_t)s->fb[1]->numel * sizeof(float));
        }
    }
    if (st != CT_OK) {
        ct_maple_destroy(s);
        return st;
    }
    s->tdp = (ct_deep_prompts){s->J, s->tdeep, false, false};
    *out = s;
    return CT_OK;
}

/* The context, proj, then per deeper layer its text prompt and coupling. */
int ct_maple_params(void *st, ct_tensor **out, int cap) {
    maple_state *s = st;
    ct_tensor *p[3 + 3 * MAPLE_MAX_DEPTH];
    int n = 0;
    p[n++] = ct_prompt_ctx(s->text), p[n++] = s->proj_w, p[n++] = s->proj_b;
    for (int l = 1; l < s->J; l++) p[n++] = s->tdeep[l], p[n++] = s->fw[l], p[n++] = s->fb[l];
    n = n < cap ? n : cap;
    memcpy(out, p, (size_t)n * sizeof *out);
    return n;
}

/* maple_params' tensors by their keys in maple.py's saved state dict. */
int ct_maple_param_names(void *st, const char **out, int cap) {
    maple_state *s = st;
    int n = 0;
    snprintf(s->names[n++], sizeof s->names[0], "prompt_learner.ctx");
    snprintf(s->names[n++], sizeof s->names[0], "prompt_learner.proj.weight");
    snprintf(s->names[n++], sizeof s->names[0], "prompt_learner.proj.bias");
    for (int l = 1; l < s->J; l++) {
        snprintf(s->names[n++], sizeof s->names[0], "prompt_learner.compound_prompts_text.%d",
                 l - 1);
        snprintf(s->names[n++], sizeof s->names[0],
                 "prompt_learner.compound_prompt_projections.%d.weight", l - 1);
        snprintf(s->names[n++], sizeof s->names[0],
                 "prompt_learner.compound_prompt_projections.%d.bias", l - 1);
    }
    n = n < cap ? n : cap;
    for (int i = 0; i < n; i++) out[i] = s->names[i];
    return n;
}

ct_tensor *ct_maple_image_features(void *st, ct_graph *g, const ct_batch *b) {
    maple_state *s = st;
    ct_tensor **v = ct_graph_alloc(g, (size_t)s->J * sizeof *v);
    if (!v) return NULL;
    /* the vision prompts from the text ones, in this step's graph */
    v[0] = ct_linear(g, ct_prompt_ctx(s->text), s->proj_w, s->proj_b);
    for (int l = 1; l < s->J; l++) v[l] = ct_linear(g, s->tdeep[l], s->fw[l], s->fb[l]);
    for (int l = 0; l < s->J; l++)
        if (!v[l]) return NULL;
    ct_deep_prompts vdp = {s->J, v, false, false};
    ct_clip_hooks hooks = {0};
    hooks.vision_deep = &vdp;
    return ct_clip_encode_image(g, s->clip, ct_batch_pixels(g, s->S, b, "maple"), &hooks, false,
                                NULL);
}

ct_tensor *ct_maple_text_features(void *st, ct_graph *g) {
    maple_state *s = st;
    return ct_l2_normalize(g, ct_prompt_text_features_deep(s->text, g, &s->tdp), 1e-12f);
}

static ct_tensor *maple_logits(void *st, ct_graph *g, const ct_batch *b) {
    maple_state *s = st;
    ct_tensor *img = ct_maple_image_features(st, g, b);
    return ct_image_text_scores(g, s->clip, img, ct_maple_text_features(st, g));
}

static ct_tensor *maple_loss(void *st, ct_graph *g, const ct_batch *b) {
    return ct_batch_ce(g, maple_logits(st, g, b), b);
}

const ct_method ct_method_maple = {
    .name = "maple",
    .category = "multimodal prompt learning",
    .setup = "few-shot, base-to-novel",
    .paper = "Khattak et al., MaPLe: Multi-modal Prompt Learning, CVPR 2023",
    /* configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml and Dassl's defaults */
    .defaults = "n_ctx=2 ctx_init=a_photo_of_a depth=9 shared_prefix=1 prec=fp16 optim=sgd "
                "lr=0.0035 momentum=0.9 weight_decay=5e-4 sched=cosine warmup_epochs=1 "
                "warmup_type=constant warmup_lr=1e-5 epochs=5 batch_size=4 select=last "
                "train_aug=rrc_flip aug_scale_min=0.08",
    .create = ct_maple_create,
    .destroy = ct_maple_destroy,
    .params = ct_maple_params,
    .param_names = ct_maple_param_names,
    .loss = maple_loss,
    .logits = maple_logits,
    .pixels = true,
};
