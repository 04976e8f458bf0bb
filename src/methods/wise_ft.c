/* WiSE-FT, weight-space ensembles for fine-tuning (Wortsman et al., "Robust
 * fine-tuning of zero-shot models", CVPR 2022). Followed: mlfoundations/
 * wise-ft at 58b7a4b, src/wise_ft.py (_merge without Fisher weights, the
 * alpha loop), src/models/finetune.py (end-to-end fine-tuning: AdamW over
 * every parameter, cosine_lr with warmup per step, clip_grad_norm_ 1.0,
 * LabelSmoothing), src/models/zeroshot.py (get_zeroshot_classifier),
 * src/models/modeling.py (ClassificationHead: normalised input, Linear with
 * a zero bias), src/models/utils.py (cosine_lr, LabelSmoothing), src/args.py
 * (defaults) and clip/clip.py (_transform: the training and evaluation
 * preprocessing).
 *
 *   head_0:  W = exp(logit_scale) * normalize(mean_t normalize(text(t(class)))),
 *            b = 0;   logits = W normalize(f(x)) + b
 *   fine-tune: the image tower and the head, end to end, from (theta_0,
 *            head_0): cross-entropy (label smoothing ls), AdamW (weight decay
 *            0.1 on every tensor), lr per step with linear warmup then cosine
 *            to 0, gradients clipped to global norm 1; training images
 *            through RandomResizedCrop(S, scale 0.9-1, bicubic), no flip
 *   WiSE-FT: theta_alpha = (1 - alpha) theta_0 + alpha theta_1, head
 *            included, for alpha in {0, 0.1, ..., 1}
 *
 * The task's model is shared: the tower is fine-tuned in a private copy
 * (src/model/vision_copy.h), and the interpolated tower is a second copy.
 * Learned tensors: the fine-tuned tower (one flat tensor), the head and the
 * chosen alpha, so a reloaded run rebuilds theta_alpha exactly.
 *
 * Choosing alpha: the official code evaluates every alpha on the test sets
 * and leaves the choice to the reader; here every alpha is scored on the
 * validation split (never test): accuracy, ties broken by the lower
 * cross-entropy; the curve is logged and written to the run directory
 * (wise_ft_curve.csv / .json). Without a validation split, alpha=auto gives
 * 0.5 (the paper's default mixing coefficient).
 *
 * Few-shot defaults (the official ones are for ImageNet: lr 3e-5, batch
 * 512, 10 epochs, 500 warmup steps): batch 16 (a ViT-B/16 step holds about
 * 280 MB of activations per image), 10 epochs, lr 1e-5, warmup the first 2%
 * of the steps (what 500 of ImageNet's ~25,000 steps are); chosen for a
 * few hundred images, not tuned. The official evaluates after every epoch
 * without selecting; this chooses alpha once, after training.
 *
 * Fine-tuning runs on the trainer's pixel path (ct_train: AdamW, the
 * per-step cosine with warmup_fraction 2% of the steps, clipping, atomic
 * checkpoints and resume); the alpha sweep is the finish step.
 *
 * Learned tensor names: "classification_head.weight" / ".bias", the keys of
 * the head in the ImageClassifier that wise_ft.py fine-tunes and saves
 * (src/models/modeling.py: image_encoder, classification_head); the tower,
 * which the official keeps as image_encoder.model.visual.*, is one flat
 * tensor here, "image_encoder.model.visual.flat"; the chosen mixing
 * coefficient (the official loops over --alpha and saves none) "alpha". */
#include "methods/wise_ft.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "base/error.h"
#include "base/hash.h"
#include "base/json.h"
#include "data/pixels.h"
#include "methods/method_common.h"
#include "model/vision_copy.h"

#define WFT_CHUNK 16 /* images per evaluation pass */

typedef struct {
    const ct_clip *clip;       /* theta_0 (the task's model)                     */
    ct_vision_copy ft;         /* theta_1, trained                               */
    ct_vision_copy cur;        /* theta_alpha, for scoring                        */
    ct_tensor *head_w, *head_b;/* (K, E), (K): the fine-tuned head                */
    ct_tensor *alpha;          /* (1): the chosen alpha                           */
    ct_tensor *cur_w, *cur_b;  /* the interpolated head                           */
    float *zs_w;               /* (K, E): head_0's weights (its bias is 0)        */
    ct_optim *opt;
    ct_graph *g;
    int K, E, S;
    int epochs, batch, n_alphas;
    float lr, wd, ls, clip_norm;
    double alpha_fixed;        /* < 0: choose on val                              */
} wft_state;

static void wft_destroy(void *st) {
    wft_state *s = st;
    if (!s) return;
    ct_vision_copy_free(&s->ft);
    ct_vision_copy_free(&s->cur);
    ct_tensor_free(s->head_w), ct_tensor_free(s->head_b), ct_tensor_free(s->alpha);
    ct_tensor_free(s->cur_w), ct_tensor_free(s->cur_b);
    free(s->zs_w);
    ct_optim_free(s->opt);
    ct_graph_free(s->g);
    free(s);
}

static ct_status wft_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    const char *tmpl, *alpha;
    int epochs, batch, n_alphas;
    double lr, wd, ls, clip;
    ct_status s = CT_OK;
#define TRY(x) \
    if (s == CT_OK) s = (x)
    TRY(ct_kv_str(hp, "templates", "imagenet80", &tmpl));
    TRY(ct_kv_int(hp, "epochs", 10, &epochs));
    TRY(ct_kv_int(hp, "batch_size", 16, &batch));
    TRY(ct_kv_double(hp, "lr", 1e-5, &lr));
    TRY(ct_kv_double(hp, "weight_decay", 0.1, &wd));
    TRY(ct_kv_double(hp, "ls", 0.0, &ls));
    TRY(ct_kv_double(hp, "max_grad_norm", 1.0, &clip));
    TRY(ct_kv_str(hp, "alpha", "auto", &alpha));
    TRY(ct_kv_int(hp, "alphas", 11, &n_alphas));
#undef TRY
    if (s != CT_OK) return s;
    double afix = -1;
    if (strcmp(alpha, "auto")) {
        char *end = NULL;
        afix = strtod(alpha, &end);
        if (end == alpha || *end || !(afix >= 0 && afix <= 1))
            return ct_set_error(CT_ERR_ARG, "wise-ft: alpha=%s (auto, or a number in [0, 1])",
                                alpha);
    }
    if (epochs < 0 || batch < 1 || !(lr >= 0) || !(wd >= 0) || !(ls >= 0 && ls < 1) ||
        !(clip >= 0) || n_alphas < 2 || n_alphas > 1001)
        return ct_set_error(CT_ERR_ARG, "wise-ft: epochs=%d batch_size=%d lr=%g weight_decay=%g "
                            "ls=%g max_grad_norm=%g alphas=%d out of range", epochs, batch, lr,
                            wd, ls, clip, n_alphas);
    const ct_clip_config *c = ct_clip_get_config(task->clip);
    wft_state *w = calloc(1, sizeof *w);
    if (!w) return ct_set_error(CT_ERR_NOMEM, "wise-ft: out of memory");
    w->clip = task->clip;
    w->K = task->n_classes, w->E = c->embed_dim, w->S = c->image_size;
    w->epochs = epochs, w->batch = batch, w->n_alphas = n_alphas;
    w->lr = (float)lr, w->wd = (float)wd, w->ls = (float)ls, w->clip_norm = (float)clip;
    w->alpha_fixed = afix;
    int64_t K = w->K, KE[2] = {w->K, w->E}, one = 1;
    w->zs_w = malloc((size_t)K * w->E * sizeof *w->zs_w);
    w->head_w = ct_tensor_new(2, KE, true), w->head_b = ct_tensor_new(1, &K, true);
    w->cur_w = ct_tensor_new(2, KE, false), w->cur_b = ct_tensor_new(1, &K, false);
    w->alpha = ct_tensor_new(1, &one, false);
    w->g = ct_graph_create(0);
    if (!w->zs_w || !w->head_w || !w->head_b || !w->cur_w || !w->cur_b || !w->alpha || !w->g)
        s = ct_set_error(CT_ERR_NOMEM, "wise-ft: out of memory");
    ct_tensor *ls_t = ct_clip_find_tensor(task->clip, "logit_scale");
    if (s == CT_OK && !ls_t) s = ct_set_error(CT_ERR_ARG, "wise-ft: the model has no logit_scale");
    /* zeroshot.py: template-ensemble class embeddings, times logit_scale.exp() */
    if (s == CT_OK) s = ct_zeroshot_classifier(task, "", tmpl, true, w->zs_w);
    if (s == CT_OK) {
        float scale = expf(ls_t->data[0]);
        for (int64_t i = 0; i < K * w->E; i++) w->zs_w[i] *= scale;
        memcpy(w->head_w->data, w->zs_w, (size_t)K * w->E * sizeof(float));
        w->alpha->data[0] = (float)(afix >= 0 ? afix : 0.5);
        w->head_w->name = "wise-ft.head.weight", w->head_b->name = "wise-ft.head.bias";
        w->alpha->name = "wise-ft.alpha";
        s = ct_vision_copy_create(task->clip, true, &w->ft);
    }
    if (s == CT_OK) s = ct_vision_copy_create(task->clip, false, &w->cur);
    if (s != CT_OK) {
        wft_destroy(w);
        return s;
    }
    *out = w;
    return CT_OK;
}

/* The fine-tuned tower (flat), the head and the chosen alpha. */
static int wft_params(void *st, ct_tensor **out, int cap) {
    wft_state *s = st;
    ct_tensor *p[4] = {s->ft.flat, s->head_w, s->head_b, s->alpha};
    int n = cap < 4 ? cap : 4;
    for (int i = 0; i < n; i++) out[i] = p[i];
    return n;
}

static int wft_param_names(void *st, const char **out, int cap) {
    (void)st;
    static const char *const names[4] = {"image_encoder.model.visual.flat",
                                         "classification_head.weight",
                                         "classification_head.bias", "alpha"};
    int n = cap < 4 ? cap : 4;
    for (int i = 0; i < n; i++) out[i] = names[i];
    return n;
}

ct_tensor *ct_wise_ft_weight(void *st, const char *name) {
    wft_state *s = st;
    for (int i = 0; i < s->ft.n_weights; i++)
        if (!strcmp(s->ft.views[i].name, name)) return &s->ft.views[i];
    return NULL;
}

/* ClassificationHead(normalize=True) on the tower's embeddings: (B, K). */
static ct_tensor *forward(ct_graph *g, const ct_clip *tower, ct_tensor *w, ct_tensor *b,
                          const float *px, int64_t B, int S) {
    int64_t shape[4] = {B, 3, S, S};
    ct_tensor *f = ct_clip_encode_image(g, tower, ct_graph_wrap(g, (ct_real *)px, 4, shape),
                                        NULL, false, NULL);
    return ct_linear(g, ct_l2_normalize(g, f, 1e-12f), w, b);
}

ct_status ct_wise_ft_loss(void *st, const float *px, int B, const int *labels, double *loss) {
    wft_state *s = st;
    ct_graph *g = s->g;
    ct_tensor_zero_grad(s->ft.flat), ct_tensor_zero_grad(s->head_w);
    ct_tensor_zero_grad(s->head_b);
    ct_graph_reset(g);
    ct_graph_set_grad(g, true);
    int64_t *y = ct_graph_alloc(g, (size_t)(B > 0 ? B : 1) * sizeof *y);
    if (!y) return ct_graph_status(g);
    for (int i = 0; i < B; i++) y[i] = labels[i];
    ct_tensor *l = ct_cross_entropy(g, forward(g, s->ft.clip, s->head_w, s->head_b, px, B, s->S),
                                    y, s->ls);
    ct_status e = l ? ct_backward(g, l) : ct_graph_status(g);
    if (e == CT_OK && loss) *loss = l->data[0];
    return e;
}

static ct_status ensure_optim(wft_state *s) {
    if (s->opt) return CT_OK;
    ct_optim_config oc = ct_optim_default(CT_OPTIM_ADAMW, s->lr);
    oc.weight_decay = s->wd;
    ct_tensor *p[3] = {s->ft.flat, s->head_w, s->head_b};
    s->opt = ct_optim_create(&oc, p, 3);
    return s->opt ? CT_OK : ct_set_error(CT_ERR_NOMEM, "wise-ft: out of memory (optimiser)");
}

ct_status ct_wise_ft_step(void *st, const float *px, int B, const int *labels, float lr,
                          double *loss) {
    wft_state *s = st;
    ct_status e = ensure_optim(s);
    if (e == CT_OK) e = ct_wise_ft_loss(s, px, B, labels, loss);
    if (e != CT_OK) return e;
    ct_tensor *p[3] = {s->ft.flat, s->head_w, s->head_b};
    if (s->clip_norm > 0) ct_clip_grad_norm(p, 3, s->clip_norm);
    return ct_optim_step(s->opt, lr);
}

/* theta_alpha into cur and the interpolated head. */
static ct_status mix(wft_state *s, float alpha) {
    ct_status e = ct_vision_copy_mix(&s->cur, s->clip, &s->ft, alpha);
    float a0 = (float)(1.0 - (double)alpha), a1 = alpha;
    for (int64_t i = 0; i < s->head_w->numel; i++)
        s->cur_w->data[i] = a0 * s->zs_w[i] + a1 * s->head_w->data[i];
    for (int64_t k = 0; k < s->K; k++) s->cur_b->data[k] = a1 * s->head_b->data[k];
    return e;
}

ct_status ct_wise_ft_scores(void *st, const float *px, int B, float alpha, float *scores) {
    wft_state *s = st;
    ct_status e = mix(s, alpha);
    if (e != CT_OK) return e;
    ct_graph_reset(s->g);
    ct_graph_set_grad(s->g, false);
    ct_tensor *lg = forward(s->g, s->cur.clip, s->cur_w, s->cur_b, px, B, s->S);
    if (!lg) return ct_graph_status(s->g);
    memcpy(scores, lg->data, (size_t)lg->numel * sizeof *scores);
    return CT_OK;
}

/* Scores (n_items, K) of d under the current theta_alpha (cur). */
static ct_status score_dataset(wft_state *s, const ct_task *task, const ct_dataset *d,
                               float *scores) {
    size_t per = (size_t)3 * s->S * s->S;
    float *px = malloc(WFT_CHUNK * per * sizeof *px);
    if (!px) return ct_set_error(CT_ERR_NOMEM, "wise-ft: out of memory");
    ct_status e = CT_OK;
    char stage[96];
    snprintf(stage, sizeof stage, "wise-ft: %s", d->name);
    ct_pixel_src src = {d, task->pre, s->S, NULL, 0, "wise-ft", NULL};
    for (int64_t i0 = 0; i0 < d->n_items && e == CT_OK; i0 += WFT_CHUNK) {
        int64_t nb = d->n_items - i0 < WFT_CHUNK ? d->n_items - i0 : WFT_CHUNK;
        if ((e = ct_pixels_range(&src, i0, nb, 0, px)) != CT_OK) break;
        ct_graph_reset(s->g);
        ct_graph_set_grad(s->g, false);
        ct_tensor *lg = forward(s->g, s->cur.clip, s->cur_w, s->cur_b, px, nb, s->S);
        if (!lg) e = ct_graph_status(s->g);
        else memcpy(scores + i0 * s->K, lg->data, (size_t)lg->numel * sizeof *scores);
        if (e == CT_OK && task->progress)
            task->progress(task->progress_ctx, stage, i0 + nb, d->n_items, NAN, NAN);
    }
    free(px);
    return e;
}

/* Every alpha on val: accuracy and mean cross-entropy. */
static ct_status sweep(wft_state *s, const ct_task *task, double *acc, double *loss) {
    const ct_dataset *v = task->val;
    float *sc = malloc((size_t)v->n_items * s->K * sizeof *sc);
    if (!sc) return ct_set_error(CT_ERR_NOMEM, "wise-ft: out of memory");
    ct_status e = CT_OK;
    for (int a = 0; a < s->n_alphas && e == CT_OK; a++) {
        float alpha = (float)a / (float)(s->n_alphas - 1);
        if ((e = mix(s, alpha)) != CT_OK || (e = score_dataset(s, task, v, sc)) != CT_OK) break;
        int64_t ok = 0;
        double l = 0;
        for (int64_t i = 0; i < v->n_items; i++) {
            const float *r = sc + i * s->K;
            int y = v->items[i].label, best = 0;
            double mx = r[0], z = 0;
            for (int k = 1; k < s->K; k++) {
                if (r[k] > r[best]) best = k;
                mx = r[k] > mx ? r[k] : mx;
            }
            for (int k = 0; k < s->K; k++) z += exp((double)r[k] - mx);
            l += mx + log(z) - (double)r[y];
            ok += best == y;
        }
        acc[a] = (double)ok / (double)v->n_items, loss[a] = l / (double)v->n_items;
        ct_task_logf(task, "wise-ft: alpha %.2f  val top-1 %.2f%%  val loss %.4f", (double)alpha,
             100 * acc[a], loss[a]);
    }
    free(sc);
    return e;
}

static ct_status write_curve(const wft_state *s, const char *dir, const double *acc,
                             const double *loss, float chosen) {
    char path[4200];
    size_t cap = 64 + (size_t)s->n_alphas * 64, len = 0;
    char *csv = malloc(cap);
    if (!csv) return ct_set_error(CT_ERR_NOMEM, "wise-ft: out of memory");
    len += (size_t)snprintf(csv + len, cap - len, "alpha,val_top1,val_loss\n");
    for (int a = 0; a < s->n_alphas; a++)
        len += (size_t)snprintf(csv + len, cap - len, "%.4f,%.6f,%.6f\n",
                                (double)a / (s->n_alphas - 1), acc[a], loss[a]);
    snprintf(path, sizeof path, "%s/wise_ft_curve.csv", dir);
    ct_status e = ct_write_file_atomic(path, csv, len);
    free(csv);
    if (e != CT_OK) return e;
    cJSON *j = cJSON_CreateObject(), *al = cJSON_AddArrayToObject(j, "alpha");
    cJSON *ac = cJSON_AddArrayToObject(j, "val_top1"), *lo = cJSON_AddArrayToObject(j, "val_loss");
    for (int a = 0; al && ac && lo && a < s->n_alphas; a++) {
        cJSON_AddItemToArray(al, cJSON_CreateNumber((double)a / (s->n_alphas - 1)));
        cJSON_AddItemToArray(ac, cJSON_CreateNumber(acc[a]));
        cJSON_AddItemToArray(lo, cJSON_CreateNumber(loss[a]));
    }
    cJSON_AddNumberToObject(j, "chosen_alpha", (double)chosen);
    snprintf(path, sizeof path, "%s/wise_ft_curve.json", dir);
    e = ct_json_save(path, j);
    cJSON_Delete(j);
    return e;
}

/* After fine-tuning (the trainer's pixel path): choose alpha on val. */
static ct_status wft_finish(void *st, const ct_task *task) {
    wft_state *s = st;
    ct_status e = CT_OK;
    ct_optim_free(s->opt), s->opt = NULL; /* the tests' optimiser, if any: 2x the tower */
    float chosen = (float)(s->alpha_fixed >= 0 ? s->alpha_fixed : 0.5);
    if (task->val && task->val->n_items > 0) {
        double *acc = calloc((size_t)s->n_alphas, sizeof *acc);
        double *loss = calloc((size_t)s->n_alphas, sizeof *loss);
        e = acc && loss ? sweep(s, task, acc, loss) : ct_set_error(CT_ERR_NOMEM, "wise-ft: out of "
                                                                   "memory");
        int best = 0;
        for (int a = 1; e == CT_OK && a < s->n_alphas; a++)
            if (acc[a] > acc[best] || (acc[a] == acc[best] && loss[a] < loss[best])) best = a;
        if (e == CT_OK && s->alpha_fixed < 0) chosen = (float)best / (float)(s->n_alphas - 1);
        if (e == CT_OK)
            ct_task_logf(task, "wise-ft: alpha %.2f %s (val top-1 %.2f%% at alpha %.2f)", (double)chosen,
                 s->alpha_fixed < 0 ? "chosen on val" : "as set", 100 * acc[best],
                 (double)best / (s->n_alphas - 1));
        if (e == CT_OK && task->run_dir) e = write_curve(s, task->run_dir, acc, loss, chosen);
        free(acc), free(loss);
    } else {
        ct_task_logf(task, "wise-ft: no validation split: alpha %.2f", (double)chosen);
    }
    s->alpha->data[0] = chosen;
    return e;
}

static ct_status wft_predict_images(void *st, const ct_task *task, const ct_dataset *d,
                                    float *scores) {
    wft_state *s = st;
    if (d->n_classes != s->K)
        return ct_set_error(CT_ERR_ARG, "wise-ft: %s has %d classes, the head %d", d->name,
                            d->n_classes, s->K);
    float alpha = s->alpha->data[0];
    if (!(alpha >= 0 && alpha <= 1))
        return ct_set_error(CT_ERR_FORMAT, "wise-ft: alpha %g outside [0, 1]", (double)alpha);
    ct_status e = mix(s, alpha);
    return e == CT_OK ? score_dataset(s, task, d, scores) : e;
}

/* The fine-tuning loss of a pixel batch: label-smoothed cross-entropy of
 * the head on the fine-tuned tower (finetune.py). */
static ct_tensor *wft_loss(void *st, ct_graph *g, const ct_batch *b) {
    wft_state *s = st;
    int64_t *y = ct_graph_alloc(g, (size_t)(b->n > 0 ? b->n : 1) * sizeof *y);
    if (!y || !b->pixels) return NULL;
    for (int64_t i = 0; i < b->n; i++) y[i] = b->labels[i];
    return ct_cross_entropy(g, forward(g, s->ft.clip, s->head_w, s->head_b, b->pixels, b->n, s->S),
                            y, s->ls);
}

/* The interpolated model at the chosen alpha: on pixels, or on given
 * embeddings (cached features come from the zero-shot tower, so that is
 * WiSE-FT only at alpha 0; ct_run and eval score images). */
static ct_tensor *wft_logits(void *st, ct_graph *g, const ct_batch *b) {
    wft_state *s = st;
    mix(s, s->alpha->data[0]);
    if (b->pixels) return forward(g, s->cur.clip, s->cur_w, s->cur_b, b->pixels, b->n, s->S);
    int64_t shape[2] = {b->n, s->E};
    ct_tensor *x = ct_l2_normalize(g, ct_graph_wrap(g, (ct_real *)b->x, 2, shape), 1e-12f);
    return ct_linear(g, x, s->cur_w, s->cur_b);
}

const ct_method ct_method_wise_ft = {
    .name = "wise-ft",
    .category = "fine-tuning",
    .setup = "few-shot",
    .paper = "Wortsman et al., Robust fine-tuning of zero-shot models (WiSE-FT), CVPR 2022",
    /* src/args.py (wd 0.1, ls 0), finetune.py (clip 1.0), the README's
     * openai_imagenet_template and alpha grid; few-shot epochs, batch, lr and
     * warmup chosen here (top comment) */
    .defaults = "templates=imagenet80 epochs=10 batch_size=16 optim=adamw lr=1e-5 "
                "weight_decay=0.1 sched=cosine_step warmup_fraction=0.02 ls=0 max_grad_norm=1 "
                "select=last train_aug=rrc aug_scale_min=0.9 alpha=auto alphas=11",
    .create = wft_create,
    .destroy = wft_destroy,
    .params = wft_params,
    .param_names = wft_param_names,
    .loss = wft_loss,
    .logits = wft_logits,
    .finish = wft_finish,
    .predict_images = wft_predict_images,
    .pixels = true,
};
