/* CLIP-LoRA (Zanella and Ben Ayed, "Low-Rank Few-Shot Adaptation of
 * Vision-Language Models", CVPRW 2024). Followed: MaxZanella/CLIP-LoRA at
 * 358f0d7, loralib/layers.py (LinearLoRA: the delta, its scaling, dropout
 * and initialisation), loralib/utils.py (apply_lora: which layers and
 * matrices; INDEX_POSITIONS_*), lora.py (run_lora: the loop, optimiser,
 * schedule, loss), main.py (logit scale 100) and run_utils.py (defaults).
 *
 *   W' = W + s · B A on q, k, v (and o) of the chosen blocks of both towers,
 *        A (r, in) ~ U(±1/sqrt(in)) (kaiming_uniform, a = sqrt(5)), B (out, r)
 *        = 0, s = alpha / sqrt(r) (the code's scaling; the paper writes
 *        alpha / r), inverted dropout on the LoRA branch's input in training;
 *   text:  t_k = text tower("a photo of a {name_k}.") with the deltas, every
 *          step (with gradients when the text tower has LoRA);
 *   logits = s · cos(image, text_k), s the checkpoint's exp(logit_scale) by
 *          default (logit_scale=model: 100 for OpenAI's checkpoints, main.py's
 *          fixed constant; logit_scale=100 gives the constant on any model),
 *          loss = cross-entropy.
 * Layers: position=all (every block), bottom / mid / up (the first, middle,
 * last third), half-bottom / half-up, top1 / top2 / top3, as loralib's
 * index lists for 12 layers and in proportion for other depths.
 *
 * Defaults (run_utils.py): r 2, alpha 1, dropout 0.25, q/k/v, both towers,
 * AdamW lr 2e-4 (weight decay 1e-2), cosine per step to 1e-6 over 500 x shots
 * iterations without warmup, batch 32, Dassl-style random resized crop
 * (0.08-1) + flip. Evaluation uses the deltas without dropout (what the
 * official's merged weights compute).
 *
 * Learned tensor names: the keys of the LoRA matrices in the CLIP model's
 * state dict after apply_lora (what loralib's lora_state_dict returns):
 * "transformer.resblocks.{l}.attn.{q_proj,k_proj,v_proj,proj}.w_lora_{A,B}"
 * for the text tower and "visual.transformer.resblocks.{l}.attn..." for the
 * vision tower (PlainMultiheadAttentionLoRA's q_proj, k_proj, v_proj, proj;
 * LinearLoRA's w_lora_A (r, in), w_lora_B (out, r)). save_lora's own .pt
 * nests the same matrices as weights["layer_{i}"][proj]["w_lora_A"]. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"
#include "methods/method_image.h"
#include "methods/method_templates.h"

#define LORA_MAX_LAYERS 64

typedef struct {
    const ct_clip *clip;
    int K, E, S, r;
    float fixed_scale;       /* > 0: logits scale (100); 0: the model's            */
    ct_block_lora vl[LORA_MAX_LAYERS], tl[LORA_MAX_LAYERS];
    ct_lora vcfg, tcfg;
    bool vision, text;
    int64_t *ids;            /* (K, T) prompts                                      */
    int64_t T;
    float *txt;              /* (K, E) normalised: frozen text (text tower untouched) */
    ct_tensor *params[2 * 4 * 2 * LORA_MAX_LAYERS];
    char names[2 * 4 * 2 * LORA_MAX_LAYERS][64]; /* params' keys (top comment) */
    int n_params;
} lora_state;

static void lora_destroy(void *st) {
    lora_state *s = st;
    if (!s) return;
    for (int i = 0; i < s->n_params; i++) ct_tensor_free(s->params[i]);
    free(s->ids), free(s->txt);
    free(s);
}

/* loralib's INDEX_POSITIONS for 12 layers, in proportion for n layers:
 * is block l (0-based) of n in the set? */
static int in_position(const char *pos, int l, int n, bool *out) {
    double f0 = (double)l / n, f1 = (double)(l + 1) / n; /* the block's share */
    double mid = (f0 + f1) / 2;
    if (!strcmp(pos, "all")) *out = true;
    else if (!strcmp(pos, "bottom")) *out = mid < 1.0 / 3;
    else if (!strcmp(pos, "mid")) *out = mid >= 1.0 / 3 && mid < 2.0 / 3;
    else if (!strcmp(pos, "up")) *out = mid >= 2.0 / 3;
    else if (!strcmp(pos, "half-bottom")) *out = mid < 0.5;
    else if (!strcmp(pos, "half-up")) *out = mid >= 0.5;
    else if (!strcmp(pos, "top1")) *out = l >= n - 1;
    else if (!strcmp(pos, "top2")) *out = l >= n - 2;
    else if (!strcmp(pos, "top3")) *out = l >= n - 3;
    else return -1;
    return 0;
}

static ct_status add_tower(lora_state *s, const ct_clip *m, bool vision, const char *pos,
                           const char *mats, int r, uint64_t seed) {
    const ct_clip_config *c = ct_clip_get_config(m);
    int n = vision ? c->vision_layers : c->text_layers;
    int64_t W = vision ? c->vision_width : c->text_width;
    if (n > LORA_MAX_LAYERS) return ct_set_error(CT_ERR_UNSUPPORTED, "clip-lora: %d layers", n);
    ct_block_lora *bl = vision ? s->vl : s->tl;
    const char *names = "qkvo";
    for (int l = 0; l < n; l++) {
        bool on;
        if (in_position(pos, l, n, &on) != 0)
            return ct_set_error(CT_ERR_ARG, "clip-lora: position=%s (all, bottom, mid, up, "
                                "half-bottom, half-up, top1, top2, top3)", pos);
        for (int j = 0; on && j < 4; j++) {
            if (!strchr(mats, names[j])) continue;
            ct_tensor *a = ct_tensor_new2(r, W, true), *b = ct_tensor_new2(W, r, true);
            if (!a || !b) {
                ct_tensor_free(a), ct_tensor_free(b);
                return ct_set_error(CT_ERR_NOMEM, "clip-lora: out of memory");
            }
            a->name = vision ? "clip-lora.vision.A" : "clip-lora.text.A";
            b->name = vision ? "clip-lora.vision.B" : "clip-lora.text.B";
            float bound = 1.0f / sqrtf((float)W);
            ct_rng rng;
            ct_rng_init(&rng, ct_hash_u64(ct_hash_u64(ct_hash_str(seed, "clip-lora"),
                                                      (uint64_t)vision), (uint64_t)(4 * l + j)));
            ct_rng_fill_uniform(&rng, a->data, (size_t)a->numel, -bound, bound);
            bl[l].a[j] = a, bl[l].b[j] = b;
            static const char *const proj[4] = {"q_proj", "k_proj", "v_proj", "proj"};
            const char *tower = vision ? "visual." : "";
            snprintf(s->names[s->n_params], sizeof s->names[0],
                     "%stransformer.resblocks.%d.attn.%s.w_lora_A", tower, l, proj[j]);
            s->params[s->n_params++] = a;
            snprintf(s->names[s->n_params], sizeof s->names[0],
                     "%stransformer.resblocks.%d.attn.%s.w_lora_B", tower, l, proj[j]);
            s->params[s->n_params++] = b;
        }
    }
    return CT_OK;
}

static ct_status lora_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    int r;
    double alpha, drop;
    const char *enc, *pos, *mats, *tmpl, *scale;
    ct_status st = ct_kv_int(hp, "r", 2, &r);
    if (st == CT_OK) st = ct_kv_double(hp, "alpha", 1, &alpha);
    if (st == CT_OK) st = ct_kv_double(hp, "dropout", 0.25, &drop);
    if (st == CT_OK) st = ct_kv_str(hp, "encoder", "both", &enc);
    if (st == CT_OK) st = ct_kv_str(hp, "position", "all", &pos);
    if (st == CT_OK) st = ct_kv_str(hp, "params", "qkv", &mats);
    if (st == CT_OK) st = ct_kv_str(hp, "template", "a photo of a {}.", &tmpl);
    if (st == CT_OK) st = ct_kv_str(hp, "logit_scale", "model", &scale);
    if (st != CT_OK) return st;
    bool vision = !strcmp(enc, "both") || !strcmp(enc, "vision");
    bool text = !strcmp(enc, "both") || !strcmp(enc, "text");
    if (!vision && !text) return ct_set_error(CT_ERR_ARG, "clip-lora: encoder=%s (text, vision, "
                                              "both)", enc);
    if (r < 1 || r > 1024 || !(alpha > 0) || !(drop >= 0 && drop < 1) || !*mats ||
        strspn(mats, "qkvo") != strlen(mats))
        return ct_set_error(CT_ERR_ARG, "clip-lora: r=%d alpha=%g dropout=%g params=%s (r >= 1, "
                            "alpha > 0, dropout in [0, 1), params letters of qkvo)", r, alpha,
                            drop, mats);
    float fixed = 0;
    if (strcmp(scale, "model")) {
        char *end;
        fixed = strtof(scale, &end);
        if (end == scale || *end || !(fixed > 0))
            return ct_set_error(CT_ERR_ARG, "clip-lora: logit_scale=%s (a number, or model)",
                                scale);
    }
    /* the official's apply_lora wraps the vision transformer's attention
     * layers; a ResNet tower has none (encoder=text still applies) */
    if (vision && ct_clip_need_vit(task->clip, "clip-lora with encoder=vision or both (use "
                                   "encoder=text on this model)") != CT_OK)
        return CT_ERR_UNSUPPORTED;
    const ct_clip_config *c = ct_clip_get_config(task->clip);
    lora_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "clip-lora: out of memory");
    s->clip = task->clip, s->K = task->n_classes, s->E = c->embed_dim, s->S = c->image_size;
    s->r = r, s->fixed_scale = fixed, s->vision = vision, s->text = text;
    float sc = (float)(alpha / sqrt((double)r));
    s->vcfg = (ct_lora){s->vl, c->vision_layers, sc, (float)drop, false, 0};
    s->tcfg = (ct_lora){s->tl, c->text_layers, sc, (float)drop, false, 0};
    /* apply_lora: the text encoder's modules first, then the vision encoder's */
    if (text) st = add_tower(s, task->clip, false, pos, mats, r, task->seed);
    if (st == CT_OK && vision) st = add_tower(s, task->clip, true, pos, mats, r, task->seed);
    /* the prompts, cut after the last EOT (the text tower is causal) */
    int Lc = c->context_length;
    s->ids = malloc((size_t)s->K * Lc * sizeof *s->ids);
    s->txt = malloc((size_t)s->K * s->E * sizeof *s->txt);
    if (st == CT_OK && (!s->ids || !s->txt)) st = ct_set_error(CT_ERR_NOMEM, "clip-lora: out of memory");
    for (int k = 0; st == CT_OK && k < s->K; k++) {
        char *t = ct_template_fill(tmpl, task->classnames[k]);
        st = t ? ct_tokenizer_tokenize(task->tok, t, Lc, false, s->ids + (size_t)k * Lc) : CT_ERR_ARG;
        free(t);
    }
    int64_t *eot = st == CT_OK ? malloc((size_t)s->K * sizeof *eot) : NULL;
    if (st == CT_OK && !eot) st = ct_set_error(CT_ERR_NOMEM, "clip-lora: out of memory");
    if (st == CT_OK) st = ct_clip_eot_positions(task->clip, s->ids, s->K, Lc, eot);
    for (int k = 0; st == CT_OK && k < s->K; k++) s->T = eot[k] + 1 > s->T ? eot[k] + 1 : s->T;
    free(eot);
    if (st == CT_OK)
        for (int k = 0; k < s->K; k++)
            memmove(s->ids + (size_t)k * s->T, s->ids + (size_t)k * Lc, (size_t)s->T * sizeof *s->ids);
    /* without text LoRA the class features are fixed */
    if (st == CT_OK && !text) {
        ct_graph *g = ct_graph_create(0);
        ct_graph_set_grad(g, false);
        ct_tensor *t = g ? ct_l2_normalize(g, ct_clip_encode_text(g, task->clip, s->ids, s->K, s->T,
                                                                   NULL), 1e-12f)
                         : NULL;
        if (!t) st = g ? ct_graph_status(g) : CT_ERR_NOMEM;
        else memcpy(s->txt, t->data, (size_t)t->numel * sizeof(float));
        ct_graph_free(g);
    }
    if (st != CT_OK) {
        lora_destroy(s);
        return st;
    }
    *out = s;
    return CT_OK;
}

static int lora_params(void *st, ct_tensor **out, int cap) {
    lora_state *s = st;
    int n = s->n_params < cap ? s->n_params : cap;
    memcpy(out, s->params, (size_t)n * sizeof *out);
    return n;
}

static int lora_param_names(void *st, const char **out, int cap) {
    lora_state *s = st;
    int n = s->n_params < cap ? s->n_params : cap;
    for (int i = 0; i < n; i++) out[i] = s->names[i];
    return n;
}

/* train: dropout on, masks from the batch's seed */
static ct_tensor *forward(lora_state *s, ct_graph *g, const ct_batch *b, bool train) {
    ct_lora vc = s->vcfg, tc = s->tcfg;
    vc.train = tc.train = train;
    vc.seed = ct_hash_u64(b->seed, 0x7151);
    tc.seed = ct_hash_u64(b->seed, 0x7E47);
    ct_clip_hooks hv = {0}, ht = {0};
    hv.vision_lora = s->vision ? &vc : NULL;
    ht.text_lora = s->text ? &tc : NULL;
    ct_tensor *img = ct_clip_encode_image(g, s->clip, ct_batch_pixels(g, s->S, b, "clip-lora"),
                                          &hv, false, NULL);
    int64_t shape[2] = {s->K, s->E};
    ct_tensor *txt = s->text ? ct_l2_normalize(g, ct_clip_encode_text(g, s->clip, s->ids, s->K,
                                                                      s->T, &ht), 1e-12f)
                             : ct_graph_wrap(g, s->txt, 2, shape);
    if (s->fixed_scale <= 0) return ct_image_text_scores(g, s->clip, img, txt);
    return ct_scale(g, ct_matmul(g, ct_l2_normalize(g, img, 1e-12f), txt, false, true),
                    s->fixed_scale);
}

static ct_tensor *lora_logits(void *st, ct_graph *g, const ct_batch *b) {
    return forward(st, g, b, false);
}

static ct_tensor *lora_loss(void *st, ct_graph *g, const ct_batch *b) {
    return ct_batch_ce(g, forward(st, g, b, true), b);
}

static ct_status lora_merge(void *st, ct_clip *clip) {
    lora_state *s = st;
    return ct_clip_merge_lora(clip, s->vision ? &s->vcfg : NULL, s->text ? &s->tcfg : NULL);
}

const ct_method ct_method_clip_lora = {
    .name = "clip-lora",
    .category = "low-rank adaptation",
    .setup = "few-shot",
    .paper = "Zanella and Ben Ayed, Low-Rank Few-Shot Adaptation of Vision-Language Models, "
             "CVPRW 2024",
    /* run_utils.py defaults and lora.py's optimiser and schedule */
    .defaults = "r=2 alpha=1 dropout=0.25 encoder=both position=all params=qkv "
                "template=\"a photo of a {}.\" logit_scale=model optim=adamw lr=2e-4 "
                "weight_decay=1e-2 sched=cosine_step warmup_steps=0 min_lr=1e-6 "
                "iters_per_shot=500 batch_size=32 epochs=1 select=last train_aug=rrc_flip "
                "aug_scale_min=0.08",
    .create = lora_create,
    .destroy = lora_destroy,
    .params = lora_params,
    .param_names = lora_param_names,
    .loss = lora_loss,
    .merge = lora_merge,
    .logits = lora_logits,
    .pixels = true,
};
