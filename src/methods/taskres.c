/* TaskRes (Yu et al., Task Residual for Tuning Vision-Language Models, CVPR
 * 2023), the "regular base" TaskRes-Text of the official geekyutao/TaskRes
 * trainers/taskres.py (TaskResLearner, CustomCLIP.forward):
 *
 *   t'     = t + alpha x             x (K, E) learned, zero-initialised
 *   logits = exp(logit_scale) normalize(f) normalize(t')^T, cross-entropy
 *
 * t is the frozen base classifier: per class the mean of the *unnormalised*
 * text embeddings of its templates (_get_base_text_features), which matters:
 * |t| sets how far a step on x turns t'. Templates: the dataset's one CoOp
 * template (the official adds IMAGENET_TEMPLATES_SELECT for ImageNet: set
 * templates=imagenet-select there, or pass precomputed weights with
 * zs_weights=). The official formats class names as they are; ours replace
 * '_' with ' ' as every other CoOp-family method does.
 *
 * Defaults: train_regular.sh at 16 shots runs configs/trainers/TaskRes/
 * adam_lr2e-3_B256_ep200.yaml with RESIDUAL_SCALE 0.5 (1.0 for Flowers102,
 * lr 2e-4 for ImageNet): Adam (Dassl: L2 weight decay 5e-4) lr 2e-3, 200
 * epochs, batch 256, cosine, one constant warmup epoch at 1e-5, last epoch.
 *
 * Learned tensor name: "text_feature_residuals", the key of the
 * prompt_learner (TaskResLearner) state dict taskres.py saves. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "methods/method_common.h"

typedef struct {
    ct_tensor *X;  /* (K, E) the task residual: learned  */
    ct_tensor *T;  /* (K, E) base classifier, raw rows   */
    float alpha;   /* residual scale                      */
    float scale;   /* exp(logit_scale)                    */
} tr_state;

static void tr_destroy(void *st) {
    tr_state *s = st;
    if (!s) return;
    ct_tensor_free(s->X), ct_tensor_free(s->T);
    free(s);
}

static ct_status tr_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    const char *tmpl, *zs;
    double alpha;
    ct_status st = ct_kv_str(hp, "templates", "dataset", &tmpl);
    if (st == CT_OK) st = ct_kv_str(hp, "zs_weights", "", &zs);
    if (st == CT_OK) st = ct_kv_double(hp, "alpha", 0.5, &alpha);
    if (st != CT_OK) return st;
    if (!isfinite(alpha))
        return ct_set_error(CT_ERR_ARG, "taskres: alpha=%g must be finite", alpha);
    int E = ct_clip_get_config(task->clip)->embed_dim, K = task->n_classes;
    tr_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "taskres: out of memory");
    s->alpha = (float)alpha;
    s->X = ct_tensor_new2(K, E, true);
    s->T = ct_tensor_new2(K, E, false);
    if (!s->X || !s->T) {
        tr_destroy(s);
        return ct_set_error(CT_ERR_NOMEM, "taskres: out of memory");
    }
    s->X->name = "taskres.residual";
    if ((st = ct_zeroshot_classifier(task, zs, tmpl, false, s->T->data)) != CT_OK) {
        tr_destroy(s);
        return st;
    }
    s->scale = expf(ct_clip_find_tensor(task->clip, "logit_scale")->data[0]);
    *out = s;
    return CT_OK;
}

static int tr_params(void *st, ct_tensor **out, int cap) {
    tr_state *s = st;
    if (cap < 1) return 0;
    out[0] = s->X;
    return 1;
}

static int tr_param_names(void *st, const char **out, int cap) {
    (void)st;
    if (cap < 1) return 0;
    out[0] = "text_feature_residuals";
    return 1;
}

static ct_tensor *tr_logits(void *st, ct_graph *g, const ct_batch *b) {
    tr_state *s = st;
    int64_t shape[2] = {b->n, s->T->shape[1]};
    ct_tensor *f = ct_l2_normalize(g, ct_graph_wrap(g, (ct_real *)b->x, 2, shape), 1e-12f);
    ct_tensor *t = ct_l2_normalize(g, ct_add(g, s->T, ct_scale(g, s->X, s->alpha)), 1e-12f);
    return ct_scale(g, ct_matmul(g, f, t, false, true), s->scale);
}

static ct_tensor *tr_loss(void *st, ct_graph *g, const ct_batch *b) {
    int64_t *y = ct_graph_alloc(g, (size_t)b->n * sizeof *y);
    if (!y) return NULL;
    for (int64_t i = 0; i < b->n; i++) y[i] = b->labels[i];
    return ct_cross_entropy(g, tr_logits(st, g, b), y, 0);
}

const ct_method ct_method_taskres = {
    .name = "taskres",
    .category = "adapter",
    .setup = "few-shot",
    .paper = "Yu et al., Task Residual for Tuning Vision-Language Models, CVPR 2023",
    .defaults = "templates=dataset alpha=0.5 optim=adam lr=0.002 weight_decay=5e-4 epochs=200 "
                "batch_size=256 sched=cosine warmup_epochs=1 warmup_type=constant "
                "warmup_lr=1e-5 select=last",
    .create = tr_create,
    .destroy = tr_destroy,
    .params = tr_params,
    .param_names = tr_param_names,
    .loss = tr_loss,
    .logits = tr_logits,
};
