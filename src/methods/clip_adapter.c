/* CLIP-Adapter (Gao et al., IJCV 2024; arXiv 2110.04544), the visual adapter
 * of the official gaopengcuhk/CLIP-Adapter clip_adapter.py (Adapter,
 * CustomCLIP.forward):
 *
 *   A(f)   = ReLU(W2 ReLU(W1 f))     W1 (E/r, E), W2 (E, E/r), no biases, r = 4
 *   f'     = ratio A(f) + (1 - ratio) f                     ratio = 0.2
 *   logits = exp(logit_scale) normalize(f') normalize(t)^T, cross-entropy
 *
 * f is the raw (unnormalised) image embedding, t the zero-shot classifier from
 * the dataset's one CoOp template (its TextEncoder: CUSTOM_TEMPLATES[dataset],
 * class names with '_' -> ' '). Only W1, W2 learn. The official Adapter is
 * built for RN50 (c_in 1024 hard-coded); here E is the model's embed_dim.
 * Layers start as torch's nn.Linear does, U(-1/sqrt(in), 1/sqrt(in)).
 *
 * Schedule: the repository ships no config; its README says to run CoOp's
 * commands, i.e. CoOp's configs/trainers/CoOp/rn50.yaml: SGD lr 0.002 (Dassl
 * defaults momentum 0.9, weight decay 5e-4), 200 epochs, batch 32, cosine,
 * one constant warmup epoch at 1e-5, last epoch kept.
 *
 * Learned tensor names: "fc.0.weight" (W1) and "fc.2.weight" (W2), the keys
 * of the state dict clip_adapter.py saves (CLIP_Adapter.build_model
 * registers model.adapter as "clip_adapter"; Adapter.fc = Sequential(Linear,
 * ReLU, Linear, ReLU)). In CustomCLIP they are adapter.fc.0.weight, ... */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "methods/method_common.h"

typedef struct {
    ct_tensor *W1, *W2; /* (E/r, E), (E, E/r): learned                  */
    ct_tensor *T;       /* (K, E) zero-shot classifier, unit rows       */
    float scale;        /* exp(logit_scale)                             */
    float ratio;
} ca_state;

static void ca_destroy(void *st) {
    ca_state *s = st;
    if (!s) return;
    ct_tensor_free(s->W1), ct_tensor_free(s->W2), ct_tensor_free(s->T);
    free(s);
}

static ct_status ca_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    const char *tmpl, *zs;
    double ratio;
    int red;
    ct_status st = ct_kv_str(hp, "templates", "dataset", &tmpl);
    if (st == CT_OK) st = ct_kv_str(hp, "zs_weights", "", &zs);
    if (st == CT_OK) st = ct_kv_double(hp, "ratio", 0.2, &ratio);
    if (st == CT_OK) st = ct_kv_int(hp, "reduction", 4, &red);
    if (st != CT_OK) return st;
    int E = ct_clip_get_config(task->clip)->embed_dim, K = task->n_classes;
    if (!(ratio >= 0 && ratio <= 1))
        return ct_set_error(CT_ERR_ARG, "clip-adapter: ratio=%g must be in [0, 1]", ratio);
    if (red < 1 || red > E)
        return ct_set_error(CT_ERR_ARG, "clip-adapter: reduction=%d must be in [1, %d] "
                            "(embed_dim)", red, E);
    ca_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "clip-adapter: out of memory");
    s->ratio = (float)ratio;
    int H = E / red;
    s->W1 = ct_tensor_new2(H, E, true);
    s->W2 = ct_tensor_new2(E, H, true);
    s->T = ct_tensor_new2(K, E, false);
    if (!s->W1 || !s->W2 || !s->T) {
        ca_destroy(s);
        return ct_set_error(CT_ERR_NOMEM, "clip-adapter: out of memory");
    }
    s->W1->name = "clip-adapter.fc1", s->W2->name = "clip-adapter.fc2";
    st = ct_zeroshot_classifier(task, zs, tmpl, true, s->T->data);
    if (st != CT_OK) {
        ca_destroy(s);
        return st;
    }
    s->scale = expf(ct_clip_find_tensor(task->clip, "logit_scale")->data[0]);
    /* a stream of its own, so other consumers of the task seed are unaffected */
    ct_rng root, r;
    ct_rng_init(&root, task->seed);
    r = ct_rng_split(&root, 0xada97e1);
    float b1 = 1 / sqrtf((float)E), b2 = 1 / sqrtf((float)H);
    ct_rng_fill_uniform(&r, s->W1->data, (size_t)s->W1->numel, -b1, b1);
    ct_rng_fill_uniform(&r, s->W2->data, (size_t)s->W2->numel, -b2, b2);
    *out = s;
    return CT_OK;
}

static int ca_params(void *st, ct_tensor **out, int cap) {
    ca_state *s = st;
    if (cap < 2) return 0;
    out[0] = s->W1, out[1] = s->W2;
    return 2;
}

static int ca_param_names(void *st, const char **out, int cap) {
    (void)st;
    if (cap < 2) return 0;
    out[0] = "fc.0.weight", out[1] = "fc.2.weight";
    return 2;
}

static ct_tensor *ca_logits(void *st, ct_graph *g, const ct_batch *b) {
    ca_state *s = st;
    int64_t shape[2] = {b->n, s->T->shape[1]};
    ct_tensor *x = ct_graph_wrap(g, (ct_real *)b->x, 2, shape);
    ct_tensor *a = ct_relu(g, ct_linear(g, ct_relu(g, ct_linear(g, x, s->W1, NULL)), s->W2, NULL));
    ct_tensor *f = ct_add(g, ct_scale(g, a, s->ratio), ct_scale(g, x, 1 - s->ratio));
    ct_tensor *fn = ct_l2_normalize(g, f, 1e-12f);
    return ct_scale(g, ct_matmul(g, fn, s->T, false, true), s->scale);
}

static ct_tensor *ca_loss(void *st, ct_graph *g, const ct_batch *b) {
    int64_t *y = ct_graph_alloc(g, (size_t)b->n * sizeof *y);
    if (!y) return NULL;
    for (int64_t i = 0; i < b->n; i++) y[i] = b->labels[i];
    return ct_cross_entropy(g, ca_logits(st, g, b), y, 0);
}

const ct_method ct_method_clip_adapter = {
    .name = "clip-adapter",
    .category = "adapter",
    .setup = "few-shot",
    .paper = "Gao et al., CLIP-Adapter: Better Vision-Language Models with Feature Adapters, "
             "IJCV 2024 (arXiv 2110.04544)",
    .defaults = "templates=dataset ratio=0.2 reduction=4 optim=sgd lr=0.002 momentum=0.9 "
                "weight_decay=5e-4 epochs=200 batch_size=32 sched=cosine warmup_epochs=1 "
                "warmup_type=constant warmup_lr=1e-5 select=last",
    .create = ca_create,
    .destroy = ca_destroy,
    .params = ca_params,
    .param_names = ca_param_names,
    .loss = ca_loss,
    .logits = ca_logits,
};
