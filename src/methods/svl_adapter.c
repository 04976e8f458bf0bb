/* SVL-Adapter (Pantazis et al., BMVC 2022), as omipan/svl_adapter computes
 * it:
 *
 *   1. ssl_pretraining.py / utils.py nt_xent: a self-supervised image
 *      encoder trained on the task's unlabelled images with SimCLR's NT-Xent
 *      loss on two augmented views (RandomResizedCrop scale (0.2, 1), flip):
 *        z = normalize(cat(proj(enc(v1)), proj(enc(v2))))  (2B, P)
 *        s = z z^T / temperature - 1e5 I
 *        loss = CE(s, target i <-> i +- B), mean over the 2B rows
 *      projector Linear(F, 512) ReLU Linear(512, 128); SGD momentum 0.9,
 *      weight decay 5e-4, lr 0.03 * batch / 256, cosine per step
 *      (CosineAnnealingLR over all steps), temperature 0.5.
 *   2. low_shot_adapt.py (finetune_type mlp_adapter): AdapterMLP
 *      Linear(F, 256) ReLU Linear(256, K) on the frozen encoder features of
 *      the labelled shots, cross-entropy, Adam (lr 1e-3), 50 epochs, batch
 *      32 (the shared pixel trainer, train_aug=none: the official trains on
 *      extracted features).
 *   3. The fusion, on logits:
 *        logits = alpha * mlp(enc(x)) + (1 - alpha) * 100 cos(clip(x), W_zs)
 *      alpha=tune (tune_alpha): the grid 0, 0.05, .., 1 on the VALIDATION
 *      split, first best accuracy kept (official: the few-shot val split);
 *      alpha=confidence (confidence_alpha, SVL-Adapter*): 1 - the mean over
 *      images of CLIP's max zero-shot probability — the official averages
 *      over the TEST images; here over the unlabelled training images, never
 *      test; alpha=<number>: fixed (adapter_alpha, official default 0.2).
 *
 * Departures (docs/methods/svl-adapter.md): the encoder is a small MLP on
 * the 28-px images — flatten (3 S S) -> Linear(enc_hidden) ReLU ->
 * Linear(feat_dim) ReLU, 2352 -> 256 -> 128 at the shipped model's size —
 * not the official ImageNet-initialised ResNet-50 at 112 px; SimCLR is run
 * for ssl_steps steps of ssl_batch image pairs (official: 200 epochs of 256);
 * the views are cliptune's augment.h crop (bicubic) + flip, without the
 * official SSL transform's colour distortion (get_color_distortion(0.5):
 * ColorJitter p 0.8, RandomGrayscale p 0.2), which augment.h does not have.
 *
 * Learned tensors: "enc.fc1.weight" .. "enc.fc2.bias" (the SSL encoder,
 * frozen after fit), "mlp.0.weight" .. "mlp.2.bias" (AdapterMLP's own
 * names) and "alpha". The projector is dropped, as the official drops it
 * when it extracts features. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "data/augment.h"
#include "data/pixels.h"
#include "method_cache.h"
#include "method_common.h"
#include "method_image.h"
#include "svl_adapter.h"

#define N_ENC 4
#define N_PROJ 4
#define N_MLP 4
#define N_LEARNED (N_ENC + N_MLP + 1)

extern const ct_method ct_method_svl_adapter; /* below: scores through ct_predict_images */

typedef struct {
    int K, S, E, in_dim, enc_hidden, feat_dim, proj_hidden, proj_dim, hidden;
    ct_tensor *enc[N_ENC];  /* fc1 w, b, fc2 w, b */
    ct_tensor *proj[N_PROJ]; /* projector (SSL only, not saved) */
    ct_tensor *mlp[N_MLP];  /* AdapterMLP */
    ct_tensor *alpha;       /* (1): the adapter's weight in the fusion */
    float *zs;              /* (K, E) unit zero-shot classifier */
    float clip_scale, temperature, ssl_lr_mult, ssl_momentum, ssl_wd, ssl_scale_min;
    int ssl_steps, ssl_batch;
    double alpha_fixed;     /* >= 0: fixed; -1 tune on val; -2 confidence */
    const ct_clip *clip;    /* the task's model (borrowed): embeddings when a batch has none */
} svl_state;

static void svl_destroy(void *st) {
    svl_state *s = st;
    if (!s) return;
    for (int i = 0; i < N_ENC; i++) ct_tensor_free(s->enc[i]);
    for (int i = 0; i < N_PROJ; i++) ct_tensor_free(s->proj[i]);
    for (int i = 0; i < N_MLP; i++) ct_tensor_free(s->mlp[i]);
    ct_tensor_free(s->alpha);
    free(s->zs);
    free(s);
}

/* Linear(in, out) as nn.Linear initialises it, w, b into p[0], p[1]. */
static ct_status make_linear(ct_tensor **p, int in, int out, bool grad, uint64_t seed,
                             const char *tag) {
    int64_t o = out;
    p[0] = ct_tensor_new2(out, in, true);
    p[1] = ct_tensor_new(1, &o, true);
    if (!p[0] || !p[1]) return ct_set_error(CT_ERR_NOMEM, "svl-adapter: out of memory");
    ct_status s = ct_param_linear_init(p[0], p[1], seed, tag);
    p[0]->requires_grad = p[1]->requires_grad = grad;
    return s;
}

static ct_status svl_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    svl_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "svl-adapter: out of memory");
    const ct_clip_config *c = ct_clip_get_config(task->clip);
    s->K = task->n_classes, s->S = c->image_size, s->E = c->embed_dim, s->clip = task->clip;
    s->in_dim = 3 * s->S * s->S;
    s->proj_hidden = 512;
    const char *templates, *zs_path, *alpha;
    double temp, lrm, mom, wd, smin;
    ct_status st = ct_kv_str(hp, "templates", "dataset", &templates);
    if (st == CT_OK) st = ct_kv_str(hp, "zs_weights", "", &zs_path);
    if (st == CT_OK) st = ct_kv_str(hp, "alpha", "tune", &alpha);
    if (st == CT_OK) st = ct_kv_int(hp, "enc_hidden", 256, &s->enc_hidden);
    if (st == CT_OK) st = ct_kv_int(hp, "feat_dim", 128, &s->feat_dim);
    if (st == CT_OK) st = ct_kv_int(hp, "proj_dim", 128, &s->proj_dim);
    if (st == CT_OK) st = ct_kv_int(hp, "hidden_size", 256, &s->hidden);
    if (st == CT_OK) st = ct_kv_int(hp, "ssl_steps", 300, &s->ssl_steps);
    if (st == CT_OK) st = ct_kv_int(hp, "ssl_batch", 64, &s->ssl_batch);
    if (st == CT_OK) st = ct_kv_double(hp, "temperature", 0.5, &temp);
    if (st == CT_OK) st = ct_kv_double(hp, "ssl_lr_mult", 0.03, &lrm);
    if (st == CT_OK) st = ct_kv_double(hp, "ssl_momentum", 0.9, &mom);
    if (st == CT_OK) st = ct_kv_double(hp, "ssl_weight_decay", 5e-4, &wd);
    if (st == CT_OK) st = ct_kv_double(hp, "ssl_scale_min", 0.2, &smin);
    if (st == CT_OK) st = ct_kv_clip_scale(hp, "clip_scale", task, "svl-adapter", &s->clip_scale);
    if (st == CT_OK && (s->enc_hidden < 1 || s->feat_dim < 1 || s->proj_dim < 1 ||
                        s->hidden < 1 || s->ssl_steps < 0 || s->ssl_batch < 2))
        st = ct_set_error(CT_ERR_ARG, "svl-adapter: enc_hidden, feat_dim, proj_dim, hidden_size "
                          ">= 1, ssl_steps >= 0 and ssl_batch >= 2");
    if (st == CT_OK && !(temp > 0 && lrm >= 0 && mom >= 0 && mom < 1 && wd >= 0 && smin > 0 &&
                         smin <= 1))
        st = ct_set_error(CT_ERR_ARG, "svl-adapter: temperature > 0, ssl_lr_mult >= 0, "
                          "ssl_momentum in [0, 1), ssl_weight_decay >= 0, ssl_scale_min in (0, 1]");
    if (st == CT_OK) {
        s->temperature = (float)temp, s->ssl_lr_mult = (float)lrm, s->ssl_momentum = (float)mom;
        s->ssl_wd = (float)wd, s->ssl_scale_min = (float)smin;
        char *end = NULL;
        if (!strcmp(alpha, "tune")) s->alpha_fixed = -1;
        else if (!strcmp(alpha, "confidence")) s->alpha_fixed = -2;
        else {
            s->alpha_fixed = strtod(alpha, &end);
            if (!*alpha || *end || !(s->alpha_fixed >= 0 && s->alpha_fixed <= 1))
                st = ct_set_error(CT_ERR_ARG, "svl-adapter: alpha=%s: tune, confidence or a "
                                  "number in [0, 1]", alpha);
        }
    }
    uint64_t seed = task->seed;
    if (st == CT_OK) st = make_linear(s->enc, s->in_dim, s->enc_hidden, false, seed, "svl.enc1");
    if (st == CT_OK)
        st = make_linear(s->enc + 2, s->enc_hidden, s->feat_dim, false, seed, "svl.enc2");
    if (st == CT_OK)
        st = make_linear(s->proj, s->feat_dim, s->proj_hidden, false, seed, "svl.proj1");
    if (st == CT_OK)
        st = make_linear(s->proj + 2, s->proj_hidden, s->proj_dim, false, seed, "svl.proj2");
    if (st == CT_OK) st = make_linear(s->mlp, s->feat_dim, s->hidden, true, seed, "svl.mlp0");
    if (st == CT_OK) st = make_linear(s->mlp + 2, s->hidden, s->K, true, seed, "svl.mlp2");
    if (st == CT_OK) {
        int64_t one = 1;
        s->alpha = ct_tensor_new(1, &one, false);
        s->zs = malloc((size_t)s->K * (size_t)s->E * sizeof *s->zs);
        if (!s->alpha || !s->zs) st = ct_set_error(CT_ERR_NOMEM, "svl-adapter: out of memory");
        else s->alpha->data[0] = s->alpha_fixed >= 0 ? (float)s->alpha_fixed : 0.5f;
    }
    if (st == CT_OK) st = ct_zeroshot_classifier(task, zs_path, templates, true, s->zs);
    if (st != CT_OK) {
        svl_destroy(s);
        return st;
    }
    *out = s;
    return CT_OK;
}

static int svl_params(void *st, ct_tensor **out, int cap) {
    svl_state *s = st;
    ct_tensor *all[N_LEARNED];
    int n = 0;
    for (int i = 0; i < N_ENC; i++) all[n++] = s->enc[i];
    for (int i = 0; i < N_MLP; i++) all[n++] = s->mlp[i];
    all[n++] = s->alpha;
    for (int i = 0; i < n && i < cap; i++) out[i] = all[i];
    return n;
}

static int svl_param_names(void *st, const char **out, int cap) {
    (void)st;
    static const char *const names[N_LEARNED] = {
        "enc.fc1.weight", "enc.fc1.bias", "enc.fc2.weight", "enc.fc2.bias", "mlp.0.weight",
        "mlp.0.bias",     "mlp.2.weight", "mlp.2.bias",     "alpha"};
    for (int i = 0; i < N_LEARNED && i < cap; i++) out[i] = names[i];
    return N_LEARNED;
}

ct_tensor *ct_svl_mlp2(ct_graph *g, ct_tensor *x, ct_tensor *const *p, bool last_relu) {
    ct_tensor *h = ct_linear(g, ct_relu(g, ct_linear(g, x, p[0], p[1])), p[2], p[3]);
    return last_relu ? ct_relu(g, h) : h;
}

static ct_tensor *encode(ct_graph *g, ct_tensor *const *enc, const float *px, int64_t n,
                         int in_dim) {
    int64_t shape[2] = {n, in_dim};
    return ct_svl_mlp2(g, ct_graph_wrap(g, (ct_real *)px, 2, shape), enc, true);
}

ct_tensor *ct_svl_nt_xent(ct_graph *g, ct_tensor *e, float temperature) {
    if (!e) return NULL;
    int64_t n = e->shape[0], B = n / 2;
    ct_tensor *z = ct_l2_normalize(g, e, 1e-12f);
    ct_tensor *sim = ct_scale(g, ct_matmul(g, z, z, false, true), 1.0f / temperature);
    int64_t sh[2] = {n, n};
    ct_tensor *eye = ct_graph_tensor(g, 2, sh);
    int64_t *y = ct_graph_alloc(g, (size_t)n * sizeof *y);
    if (!eye || !y) return NULL;
    for (int64_t i = 0; i < n; i++) {
        eye->data[i * n + i] = -1e5f;
        y[i] = i < B ? i + B : i - B;
    }
    return ct_cross_entropy(g, ct_add(g, sim, eye), y, 0);
}

ct_status ct_svl_simclr_step(ct_graph *g, ct_optim *o, ct_tensor *const *enc,
                             ct_tensor *const *proj, const float *px, int64_t two_b,
                             int in_dim, float temperature, float lr, float *loss) {
    ct_graph_reset(g);
    ct_optim_zero_grad(o);
    ct_tensor *l = ct_svl_nt_xent(g, ct_svl_mlp2(g, encode(g, enc, px, two_b, in_dim), proj,
                                                 false), temperature);
    if (!l)
        return ct_graph_status(g) != CT_OK ? ct_graph_status(g)
                                           : ct_set_error(CT_ERR_STATE, "svl-adapter: nt-xent");
    if (loss) *loss = l->data[0];
    ct_status s = ct_backward(g, l);
    return s == CT_OK ? ct_optim_step(o, lr) : s;
}

ct_tensor *ct_svl_adapter_logits(ct_graph *g, ct_tensor *const *enc, ct_tensor *const *mlp,
                                 const float *px, int64_t n, int in_dim) {
    return ct_svl_mlp2(g, encode(g, enc, px, n, in_dim), mlp, false);
}

ct_tensor *ct_svl_fuse(ct_graph *g, ct_tensor *adapter, const float *f, int64_t n, int E,
                       const float *zs, int K, float scale, float alpha) {
    int64_t fs[2] = {n, E}, ws[2] = {K, E};
    ct_tensor *c = ct_matmul(g, ct_l2_normalize(g, ct_graph_wrap(g, (ct_real *)f, 2, fs), 1e-12f),
                             ct_graph_wrap(g, (ct_real *)zs, 2, ws), false, true);
    return ct_add(g, ct_scale(g, adapter, alpha), ct_scale(g, c, (1.0f - alpha) * scale));
}

int ct_svl_pick_alpha(const float *A, const float *Z, const int *y, int64_t n, int K,
                      double *acc) {
    int best = 0;
    double best_acc = -1;
    for (int a = 0; a <= 20; a++) {
        double al = a / 20.0;
        int64_t ok = 0;
        for (int64_t i = 0; i < n; i++) {
            int arg = 0;
            double bv = -INFINITY;
            for (int k = 0; k < K; k++) {
                double x = al * A[i * K + k] + (1 - al) * Z[i * K + k];
                if (x > bv) bv = x, arg = k;
            }
            ok += arg == y[i];
        }
        double r = n ? (double)ok / (double)n : 0;
        if (r > best_acc) best_acc = r, best = a; /* the first best, as the official */
    }
    if (acc) *acc = best_acc;
    return best;
}

double ct_svl_confidence_alpha(const float *x, int64_t n, int E, const float *zs, int K,
                               float scale) {
    float *u = malloc((size_t)E * sizeof *u);
    double *lg = malloc((size_t)K * sizeof *lg);
    if (!u || !lg) {
        free(u), free(lg);
        ct_set_error(CT_ERR_NOMEM, "svl-adapter: out of memory");
        return NAN;
    }
    double conf = 0;
    for (int64_t i = 0; i < n; i++) {
        ct_unit_rows(u, x + i * E, 1, E);
        double mx = -INFINITY, z = 0;
        for (int k = 0; k < K; k++) {
            double v = 0;
            for (int e = 0; e < E; e++) v += (double)u[e] * zs[(size_t)k * E + e];
            lg[k] = (double)scale * v;
            if (lg[k] > mx) mx = lg[k];
        }
        for (int k = 0; k < K; k++) z += exp(lg[k] - mx);
        conf += 1.0 / z;
    }
    free(u), free(lg);
    return n ? 1 - conf / (double)n : NAN;
}

/* SimCLR pretraining of the encoder (and projector) on d's images. */
static ct_status ssl_pretrain(svl_state *s, const ct_task *task, const ct_dataset *d) {
    int64_t N = d->n_items;
    if (s->ssl_steps == 0 || N < 2) return CT_OK;
    int B = s->ssl_batch < N ? s->ssl_batch : (int)N;
    ct_tensor *p[N_ENC + N_PROJ];
    for (int i = 0; i < N_ENC; i++) p[i] = s->enc[i];
    for (int i = 0; i < N_PROJ; i++) p[N_ENC + i] = s->proj[i];
    for (int i = 0; i < N_ENC + N_PROJ; i++) p[i]->requires_grad = true;
    ct_optim_config oc = ct_optim_default(CT_OPTIM_SGD, s->ssl_lr_mult * (float)B / 256.0f);
    oc.momentum = s->ssl_momentum, oc.weight_decay = s->ssl_wd;
    ct_optim *o = ct_optim_create(&oc, p, N_ENC + N_PROJ);
    ct_graph *g = ct_graph_create(0);
    size_t per = (size_t)s->in_dim;
    float *px = malloc((size_t)2 * B * per * sizeof *px);
    int64_t *perm = malloc((size_t)N * sizeof *perm);
    ct_status st = o && g && px && perm ? CT_OK
                                        : ct_set_error(CT_ERR_NOMEM, "svl-adapter: out of memory");
    ct_augment_cfg aug;
    ct_augment_cfg_coop(&aug, s->S);
    aug.scale_min = s->ssl_scale_min;
    ct_pixel_src src = {d, task->pre, s->S, &aug, task->seed ^ 0x5353u, "svl-adapter", NULL};
    ct_rng rng;
    ct_rng_init(&rng, task->seed * 0x9E3779B97F4A7C15ull + 17);
    int64_t pos = N;
    double first = NAN, last = NAN;
    for (int step = 0; st == CT_OK && step < s->ssl_steps; step++) {
        /* a fresh shuffle when the pool runs out (DataLoader shuffle=True,
         * the last short batch dropped) */
        if (pos + B > N) {
            for (int64_t i = 0; i < N; i++) perm[i] = i;
            for (int64_t i = N - 1; i > 0; i--) {
                int64_t j = (int64_t)ct_rng_below(&rng, (uint64_t)i + 1), t = perm[i];
                perm[i] = perm[j], perm[j] = t;
            }
            pos = 0;
        }
        st = ct_pixels_batch(&src, perm + pos, B, 2 * (uint64_t)step + 1, px);
        if (st == CT_OK) st = ct_pixels_batch(&src, perm + pos, B, 2 * (uint64_t)step + 2,
                                              px + (size_t)B * per);
        pos += B;
        if (st != CT_OK) break;
        /* CosineAnnealingLR over every step, stepped after each */
        double lr = ct_sched_step_cosine(oc.lr, 0, step, 0, s->ssl_steps);
        float loss;
        st = ct_svl_simclr_step(g, o, s->enc, s->proj, px, 2 * (int64_t)B, s->in_dim,
                                s->temperature, (float)lr, &loss);
        if (st != CT_OK) break;
        if (step == 0) first = loss;
        last = loss;
        if (task->progress)
            task->progress(task->progress_ctx, "svl-adapter: simclr", step + 1, s->ssl_steps,
                           loss, lr);
    }
    for (int i = 0; i < N_ENC + N_PROJ; i++) {
        ct_tensor_zero_grad(p[i]);
        p[i]->requires_grad = false;
    }
    if (st == CT_OK)
        ct_task_logf(task, "svl-adapter: simclr on %lld unlabelled images, %d steps of %d pairs: nt-xent "
             "%.4f -> %.4f", (long long)N, s->ssl_steps, B, first, last);
    ct_optim_free(o);
    ct_graph_free(g);
    free(px), free(perm);
    return st;
}

static ct_status svl_fit(void *st, const ct_task *task) {
    svl_state *s = st;
    /* the official pretrains on the training split's images; without an
     * unlabelled pool (a caller outside ct_run), the labelled shots' */
    const ct_dataset *d = task->unlabelled ? task->unlabelled : task->train;
    if (!d) return ct_set_error(CT_ERR_ARG, "svl-adapter: the task has no training images");
    return ssl_pretrain(s, task, d);
}

static ct_tensor *adapter_logits(ct_graph *g, svl_state *s, const ct_batch *b) {
    if (!b->pixels) {
        ct_set_error(CT_ERR_ARG, "svl-adapter: the batch has no pixels");
        return NULL;
    }
    return ct_svl_adapter_logits(g, s->enc, s->mlp, b->pixels, b->n, s->in_dim);
}

static ct_tensor *svl_loss(void *st, ct_graph *g, const ct_batch *b) {
    svl_state *s = st;
    int64_t *y = ct_graph_alloc(g, (size_t)(b->n > 0 ? b->n : 1) * sizeof *y);
    if (!y || !b->labels) return NULL;
    for (int64_t i = 0; i < b->n; i++) y[i] = b->labels[i];
    return ct_cross_entropy(g, adapter_logits(g, s, b), y, 0);
}

/* alpha * adapter + (1 - alpha) * zero-shot (low_shot_adapt.py's fusion);
 * CLIP's embeddings from the feature cache (ct_batch.frozen), else
 * computed here */
static ct_tensor *svl_logits(void *st, ct_graph *g, const ct_batch *b) {
    svl_state *s = st;
    float al = s->alpha->data[0];
    if (!(al >= 0 && al <= 1)) {
        ct_set_error(CT_ERR_FORMAT, "svl-adapter: alpha %g outside [0, 1]", (double)al);
        return NULL;
    }
    ct_tensor *a = adapter_logits(g, s, b);
    if (!a) return NULL;
    const float *f = b->frozen;
    if (!f) {
        int64_t ps[4] = {b->n, 3, s->S, s->S};
        ct_tensor *e = ct_clip_encode_image(g, s->clip, ct_graph_wrap(g, (ct_real *)b->pixels, 4,
                                                                      ps), NULL, false, NULL);
        if (!e) return NULL;
        f = e->data;
    }
    return ct_svl_fuse(g, a, f, b->n, s->E, s->zs, s->K, s->clip_scale, al);
}

/* Scores of d's images with the adapter alone (alpha 1) and zero-shot alone
 * (alpha 0), through the shared pixel scorer. */
static ct_status both_scores(svl_state *s, const ct_task *task, const ct_dataset *d, float *A,
                             float *Z) {
    float keep = s->alpha->data[0];
    s->alpha->data[0] = 1;
    ct_status st = ct_predict_images(&ct_method_svl_adapter, s, task, d, A);
    s->alpha->data[0] = 0;
    if (st == CT_OK) st = ct_predict_images(&ct_method_svl_adapter, s, task, d, Z);
    s->alpha->data[0] = keep;
    return st;
}

/* alpha: fixed, tuned on val (tune_alpha), or from CLIP's confidence
 * (confidence_alpha). */
static ct_status svl_finish(void *st, const ct_task *task) {
    svl_state *s = st;
    if (s->alpha_fixed >= 0) {
        s->alpha->data[0] = (float)s->alpha_fixed;
        ct_task_logf(task, "svl-adapter: alpha %.3f as set", s->alpha_fixed);
        return CT_OK;
    }
    int K = s->K;
    if (s->alpha_fixed == -2) {
        /* 1 - mean max softmax(clip_scale cos) over unlabelled images
         * (official: over the test images) */
        const ct_features *f = task->unlabelled_feats ? task->unlabelled_feats
                                                      : task->train_feats;
        if (!f || f->n < 1 || f->dim != s->E)
            return ct_set_error(CT_ERR_ARG, "svl-adapter: alpha=confidence needs image "
                                "features of dimension %d", s->E);
        double conf = ct_svl_confidence_alpha(f->x, f->n, s->E, s->zs, K, s->clip_scale);
        if (!isfinite(conf)) return CT_ERR_NOMEM;
        s->alpha->data[0] = (float)conf;
        ct_task_logf(task, "svl-adapter: alpha %.3f = 1 - CLIP's mean confidence on %lld unlabelled "
             "images", conf, (long long)f->n);
        return CT_OK;
    }
    if (!task->val || task->val->n_items < 1) {
        s->alpha->data[0] = 0.5f;
        ct_task_logf(task, "svl-adapter: no validation split: alpha 0.5 (tune_alpha's initial value)");
        return CT_OK;
    }
    const ct_dataset *v = task->val;
    int64_t n = v->n_items;
    float *A = malloc((size_t)n * K * sizeof *A), *Z = malloc((size_t)n * K * sizeof *Z);
    ct_status e = A && Z ? both_scores(s, task, v, A, Z)
                         : ct_set_error(CT_ERR_NOMEM, "svl-adapter: out of memory");
    int *y = malloc((size_t)n * sizeof *y);
    if (e == CT_OK && !y) e = ct_set_error(CT_ERR_NOMEM, "svl-adapter: out of memory");
    for (int64_t i = 0; e == CT_OK && i < n; i++) y[i] = v->items[i].label;
    double best_acc = 0;
    int best = e == CT_OK ? ct_svl_pick_alpha(A, Z, y, n, K, &best_acc) : 0;
    free(y);
    free(A), free(Z);
    if (e != CT_OK) return e;
    s->alpha->data[0] = (float)best / 20.0f;
    ct_task_logf(task, "svl-adapter: alpha %.2f chosen on val (top-1 %.2f%% over %lld images)",
         best / 20.0, 100 * best_acc, (long long)n);
    return CT_OK;
}

const ct_method ct_method_svl_adapter = {
    .name = "svl-adapter",
    .category = "adapter",
    .setup = "few-shot, unlabelled images",
    .paper = "Pantazis et al., SVL-Adapter: Self-Supervised Adapter for Vision-Language "
             "Pretrained Models, BMVC 2022",
    /* low_shot_adapt.py (mlp_adapter: hidden 256, Adam at torch's default lr,
     * 50 epochs, batch 32, tune_alpha on val), ssl_pretraining.py / utils.py
     * (SimCLR: temperature 0.5, projector 512 -> 128, SGD lr 0.03 * batch /
     * 256, momentum 0.9, wd 5e-4, cosine; RandomResizedCrop scale 0.2);
     * the encoder and the SimCLR budget are this port's (top comment) */
    .defaults = "templates=dataset alpha=tune clip_scale=100 enc_hidden=256 feat_dim=128 "
                "proj_dim=128 hidden_size=256 ssl_steps=300 ssl_batch=64 temperature=0.5 "
                "ssl_lr_mult=0.03 ssl_momentum=0.9 ssl_weight_decay=5e-4 ssl_scale_min=0.2 "
                "optim=adam lr=1e-3 weight_decay=0 sched=constant epochs=50 batch_size=32 "
                "select=last train_aug=none",
    .create = svl_create,
    .destroy = svl_destroy,
    .params = svl_params,
    .param_names = svl_param_names,
    .loss = svl_loss,
    .logits = svl_logits,
    .fit = svl_fit,
    .finish = svl_finish,
    .pixels = true,
    .frozen_features = true,
    .wants_unlabelled = true,
};
