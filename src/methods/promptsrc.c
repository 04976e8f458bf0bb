/* PromptSRC, self-regulating prompts (Khattak et al., "Self-regulating
 * Prompts: Foundational Model Adaptation without Forgetting", ICCV 2023).
 * Followed: muzairkhattak/PromptSRC at bb95c77, trainers/promptsrc.py
 * (CustomCLIP's frozen features, forward_backward's losses, the Gaussian
 * prompt aggregation in build_model / after_epoch), trainers/
 * imagenet_templates.py (its 60 templates) and configs/trainers/PromptSRC/
 * vit_b16_c2_ep20_batch4_4+4ctx.yaml.
 *
 * IVLP's prompts (ivlp.c: 4 + 4 tokens, depth 9 in both towers) trained with
 *   L = CE(logits, y)
 *     + text_loss_weight  (25) · mean |t̂ - t̂_zs|          (F.l1_loss over K·E)
 *     + image_loss_weight (10) · mean |f̂ - f̂_zs|          (over B·E)
 *     + Σ p_zs (log p_zs - log p) / (B·K)                  (KL at temperature 1)
 * t̂ the normalised prompted class features, t̂_zs the frozen CLIP's mean
 * over the 60 templates of the unnormalised class embeddings, normalised
 * once; f̂ the normalised prompted image features of the (augmented) batch,
 * f̂_zs the frozen, prompt-free image tower's on the same pixels; p, p_zs
 * the softmax of exp(logit_scale)·cos logits with t̂, f̂ and t̂_zs, f̂_zs.
 * Gaussian prompt aggregation: after epoch e (1-based) the prompts are
 * accumulated with weight w_e = N(e; gpa_mean, gpa_std) / Σ_e' N(e'; ...),
 * and after the last epoch the prompts become that sum. The sum lives in
 * params() as frozen tensors, so checkpoints and resume carry it.
 *
 * Learned tensor names: IVLP's (ivlp.c: the keys of the CustomCLIP state
 * dict promptsrc.py saves, "prompt_learner.ctx", "image_encoder.VPT", ...),
 * then the sums as "previous_model_gpa.<that name>" (promptsrc.py keeps the
 * running Gaussian-weighted state dict in self.previous_model_gpa; it saves
 * none). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "methods/ivlp.h"
#include "methods/method_common.h"
#include "methods/method_image.h"

#define SRC_MAX 64

typedef struct {
    void *ivlp;
    const ct_clip *clip;
    int K, E, S;
    float *fixed;                 /* (K, E) normalised mean template features */
    double wt, wi;                /* loss weights                             */
    double gpa_mean, gpa_std;
    ct_tensor *p[SRC_MAX];        /* IVLP's learnables                        */
    ct_tensor *acc[SRC_MAX];      /* their Gaussian-weighted sums (frozen)    */
    int np;
    char acc_names[SRC_MAX][96];  /* "previous_model_gpa.<IVLP's name>"        */
} src_state;

static void src_destroy(void *st) {
    src_state *s = st;
    if (!s) return;
    ct_ivlp_destroy(s->ivlp);
    for (int i = 0; i < s->np; i++) ct_tensor_free(s->acc[i]);
    free(s->fixed);
    free(s);
}

static ct_status src_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    const char *tmpl;
    double wt, wi, gm, gs;
    ct_status st = ct_kv_double(hp, "text_loss_weight", 25, &wt);
    if (st == CT_OK) st = ct_kv_double(hp, "image_loss_weight", 10, &wi);
    if (st == CT_OK) st = ct_kv_double(hp, "gpa_mean", 15, &gm);
    if (st == CT_OK) st = ct_kv_double(hp, "gpa_std", 1, &gs);
    if (st == CT_OK) st = ct_kv_str(hp, "templates", "imagenet60", &tmpl);
    if (st != CT_OK) return st;
    if (!(wt >= 0) || !(wi >= 0) || !(gs > 0) || !isfinite(gm))
        return ct_set_error(CT_ERR_ARG, "promptsrc: text_loss_weight=%g image_loss_weight=%g "
                            "gpa_std=%g (weights >= 0, std > 0)", wt, wi, gs);
    const ct_clip_config *c = ct_clip_get_config(task->clip);
    src_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "promptsrc: out of memory");
    s->clip = task->clip, s->K = task->n_classes, s->E = c->embed_dim, s->S = c->image_size;
    s->wt = wt, s->wi = wi, s->gpa_mean = gm, s->gpa_std = gs;
    st = ct_ivlp_create(task, hp, &s->ivlp);
    if (st == CT_OK) {
        s->np = ct_ivlp_params(s->ivlp, s->p, SRC_MAX);
        for (int i = 0; i < s->np && st == CT_OK; i++) {
            s->acc[i] = ct_tensor_new(s->p[i]->ndim, s->p[i]->shape, false);
            if (!s->acc[i]) st = ct_set_error(CT_ERR_NOMEM, "promptsrc: out of memory");
            else s->acc[i]->name = "promptsrc.gpa_sum";
        }
    }
    /* promptsrc.py: the mean of the unnormalised template embeddings, normalised */
    s->fixed = malloc((size_t)s->K * s->E * sizeof *s->fixed);
    if (st == CT_OK && !s->fixed) st = ct_set_error(CT_ERR_NOMEM, "promptsrc: out of memory");
    if (st == CT_OK) st = ct_zeroshot_classifier(task, "", tmpl, false, s->fixed);
    for (int k = 0; st == CT_OK && k < s->K; k++) {
        float *r = s->fixed + (size_t)k * s->E;
        double n2 = 0;
        for (int e = 0; e < s->E; e++) n2 += (double)r[e] * r[e];
        float inv = (float)(1.0 / fmax(sqrt(n2), 1e-12));
        for (int e = 0; e < s->E; e++) r[e] *= inv;
    }
    if (st != CT_OK) {
        src_destroy(s);
        return st;
    }
    *out = s;
    return CT_OK;
}

/* IVLP's learnables, then the aggregation sums (frozen, checkpointed). */
static int src_params(void *st, ct_tensor **out, int cap) {
    src_state *s = st;
    int n = 0;
    for (int i = 0; i < s->np && n < cap; i++) out[n++] = s->p[i];
    for (int i = 0; i < s->np && n < cap; i++) out[n++] = s->acc[i];
    return n;
}

static int src_param_names(void *st, const char **out, int cap) {
    src_state *s = st;
    const char *iv[SRC_MAX];
    int ni = ct_ivlp_param_names(s->ivlp, iv, SRC_MAX), n = 0;
    for (int i = 0; i < ni && n < cap; i++) out[n++] = iv[i];
    for (int i = 0; i < ni && n < cap; i++) {
        snprintf(s->acc_names[i], sizeof s->acc_names[i], "previous_model_gpa.%s", iv[i]);
        out[n++] = s->acc_names[i];
    }
    return n;
}

static ct_tensor *src_logits(void *st, ct_graph *g, const ct_batch *b) {
    src_state *s = st;
    return ct_ivlp_logits(s->ivlp, g, b);
}

/* mean |a - b| over all elements */
static ct_tensor *l1_mean(ct_graph *g, ct_tensor *a, ct_tensor *b) {
    ct_tensor *d = ct_sub(g, a, b);
    ct_tensor *abs = ct_add(g, ct_relu(g, d), ct_relu(g, ct_scale(g, d, -1.0f)));
    return d ? ct_scale(g, ct_sum_all(g, abs), 1.0f / (float)d->numel) : NULL;
}

static ct_tensor *src_loss(void *st, ct_graph *g, const ct_batch *b) {
    src_state *s = st;
    ct_tensor *img = ct_l2_normalize(g, ct_ivlp_image(s->ivlp, g, b), 1e-12f);
    ct_tensor *txt = ct_ivlp_text(s->ivlp, g);
    if (!img || !txt) return NULL;
    ct_tensor *scale = ct_exp(g, ct_clip_find_tensor(s->clip, "logit_scale"));
    ct_tensor *logits = ct_mul(g, ct_matmul(g, img, txt, false, true), scale);
    /* the frozen model on the same pixels, without gradients */
    bool grad = ct_graph_set_grad(g, false);
    int64_t shape[2] = {s->K, s->E};
    ct_tensor *fixed = ct_graph_wrap(g, s->fixed, 2, shape);
    int64_t fsh[2] = {b->n, s->E};
    ct_tensor *zimg = ct_l2_normalize(
        g, b->frozen ? ct_graph_wrap(g, (float *)b->frozen, 2, fsh)
                     : ct_clip_encode_image(g, s->clip, ct_batch_pixels(g, s->S, b, "promptsrc"),
                                            NULL, false, NULL),
        1e-12f);
    ct_tensor *zprob = ct_softmax(g, ct_mul(g, ct_matmul(g, zimg, fixed, false, true), scale));
    ct_graph_set_grad(g, grad);
    ct_tensor *loss = ct_batch_ce(g, logits, b);
    ct_tensor *kl = ct_scale(g, ct_kl_div(g, ct_log_softmax(g, logits), zprob), 1.0f / (float)s->K);
    loss = ct_add(g, loss, kl);
    if (s->wt > 0) loss = ct_add(g, loss, ct_scale(g, l1_mean(g, txt, fixed), (float)s->wt));
    if (s->wi > 0) loss = ct_add(g, loss, ct_scale(g, l1_mean(g, img, zimg), (float)s->wi));
    return loss;
}

static double gpa_weight(double mean, double std, int epoch, int epochs) {
    double sum = 0, w = 0;
    for (int e = 1; e <= epochs; e++) {
        double z = ((double)e - mean) / std, v = exp(-0.5 * z * z);
        sum += v;
        if (e == epoch) w = v;
    }
    return sum > 0 ? w / sum : 0;
}

static ct_status src_end_epoch(void *st, int epoch, int epochs) {
    src_state *s = st;
    double w = gpa_weight(s->gpa_mean, s->gpa_std, epoch + 1, epochs);
    for (int i = 0; i < s->np; i++) {
        float *a = s->acc[i]->data;
        const float *p = s->p[i]->data;
        if (epoch == 0) memset(a, 0, (size_t)s->acc[i]->numel * sizeof *a);
        for (int64_t j = 0; j < s->p[i]->numel; j++) a[j] += (float)(w * p[j]);
        if (epoch + 1 == epochs)
            memcpy(s->p[i]->data, a, (size_t)s->p[i]->numel * sizeof *a);
    }
    return CT_OK;
}

const ct_method ct_method_promptsrc = {
    .name = "promptsrc",
    .category = "multimodal prompt learning",
    .setup = "few-shot, base-to-novel",
    .paper = "Khattak et al., Self-regulating Prompts: Foundational Model Adaptation without "
             "Forgetting (PromptSRC), ICCV 2023",
    /* configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml (the few-shot
     * configs use 50 epochs and GPA (30, 30)) */
    .defaults = "n_ctx=4 n_ctx_vision=4 text_depth=9 vision_depth=9 ctx_init=a_photo_of_a "
                "shared_prefix=1 prec=fp16 template=\"a photo of a {}.\" templates=imagenet60 "
                "text_loss_weight=25 image_loss_weight=10 gpa_mean=15 gpa_std=1 optim=sgd "
                "lr=0.0025 momentum=0.9 weight_decay=5e-4 sched=cosine warmup_epochs=1 "
                "warmup_type=constant warmup_lr=1e-5 epochs=20 batch_size=4 select=last "
                "train_aug=rrc_flip aug_scale_min=0.08",
    .create = src_create,
    .destroy = src_destroy,
    .params = src_params,
    .param_names = src_param_names,
    .loss = src_loss,
    .logits = src_logits,
    .pixels = true,
    .frozen_features = true,
    .end_epoch = src_end_epoch,
};
