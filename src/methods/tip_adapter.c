/* Tip-Adapter and Tip-Adapter-F (Zhang et al., ECCV 2022), after the official
 * gaopengcuhk/Tip-Adapter main.py (run_tip_adapter, run_tip_adapter_F) and
 * utils.py (clip_classifier, build_cache_model, search_hp):
 *
 *   keys   K_j = normalize(mean over the augmented views of train image j)
 *   values V   = one-hot labels (N, C)
 *   logits     = clip_scale f W^T + alpha exp(-beta (1 - f K^T)) V
 *
 * f the L2-normalised image embedding, W the zero-shot classifier (unit
 * rows), clip_scale the model's exp(logit_scale) by default. The official
 * hard-codes 100. (clip_logits = 100. * features @ clip_weights), which is
 * exp(logit_scale) of OpenAI's CLIP: for those checkpoints the default is
 * the same number, and for a model with another temperature (the shipped
 * one's is about 15.9) 100 would sharpen the zero-shot term far beyond its
 * own calibration and drown the cache term within the (alpha, beta) grid;
 * clip_scale=100 computes the official's constant.
 *
 * The cache is built in fit(): the official averages each image's raw
 * features over augment_epoch = 10 random-crop
 * passes, then normalises; here the views are the run's augmented views
 * (task->aug_feats, hp aug_views), view v's rows after view v-1's.
 * (alpha, beta) are searched on val as search_hp does: beta over
 * i (beta_scale - 0.1) / beta_steps + 0.1 for i < beta_steps, alpha likewise,
 * beta outer, alpha inner, the first best accuracy kept (configs/<dataset>.yaml:
 * search_scale [7, 3], search_step [200, 20], init_beta 1, init_alpha 1.17).
 *
 * Tip-Adapter-F makes the keys learnable (its nn.Linear initialised from the
 * cache, not renormalised while training) and trains them with the init
 * (alpha, beta): AdamW lr 1e-3, eps 1e-4 (torch's weight decay 0.01), cosine,
 * batch 256, train_epoch 20; then searches (alpha, beta) on val with the
 * learned keys. The official keeps the epoch with the best *test* accuracy
 * (Tip-Adapter issue #11); here the epoch is chosen on val (select=best_val)
 * and test is never looked at.
 *
 * Both keep their cache as learned tensors (keys, labels, alpha, beta) so a
 * saved run reproduces its logits. Tip-Adapter-F's training runs inside fit()
 * through ct_train on a second vtable whose loss and logits use the init
 * (alpha, beta), because the final search must follow training and ct_train
 * has no hook after it.
 *
 * Learned tensor names: Tip-Adapter-F's keys are "adapter.weight" (N, E),
 * main.py's nn.Linear adapter whose weight it sets to cache_keys.t() and
 * saves (torch.save(adapter.weight, best_F_*.pt)); Tip-Adapter's are
 * "cache_keys" (N, E) (utils.py build_cache_model saves cache_keys (E, N),
 * transposed). The rest have no saved counterpart and descriptive names:
 * "cache_labels" (N), the class of each key (the official's cache_values is
 * their one-hot (N, C)), and the chosen "alpha", "beta". */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/blas.h"
#include "base/error.h"
#include "methods/method_cache.h"
#include "methods/method_common.h"

typedef struct {
    const char *name;
    bool finetune;
    ct_tensor *keys;          /* (N, E) cache keys; learned in -F                  */
    ct_tensor *labels;        /* (N) class of each key (the cache values), saved   */
    ct_tensor *alpha, *beta;  /* (1) each: what logits() uses, searched on val     */
    ct_tensor *W;             /* (C, E) zero-shot classifier, unit rows            */
    ct_tensor *V;             /* (N, C) one-hot of labels                          */
    float *v_labels;          /* (N) the labels V was built from                   */
    float init_alpha, init_beta, clip_scale;
    int search, beta_steps, alpha_steps;
    double beta_scale, alpha_scale;
    ct_train_cfg train;       /* -F's fine-tuning of the keys                      */
} tip_state;

static void tip_destroy(void *st) {
    tip_state *s = st;
    if (!s) return;
    ct_tensor_free(s->keys), ct_tensor_free(s->labels), ct_tensor_free(s->alpha);
    ct_tensor_free(s->beta), ct_tensor_free(s->W), ct_tensor_free(s->V);
    free(s->v_labels);
    free(s);
}

static ct_status read_hp(tip_state *s, const ct_task *task, ct_kv *hp) {
    double a, b, bsc, asc;
    float cs = 0;
    ct_status st = CT_OK;
#define TRY(x) \
    if (st == CT_OK) st = (x)
    TRY(ct_kv_double(hp, "init_alpha", 1.17, &a));
    TRY(ct_kv_double(hp, "init_beta", 1, &b));
    TRY(ct_kv_clip_scale(hp, "clip_scale", task, s->name, &cs));
    TRY(ct_kv_int(hp, "search", 1, &s->search));
    TRY(ct_kv_double(hp, "beta_scale", 7, &bsc));
    TRY(ct_kv_double(hp, "alpha_scale", 3, &asc));
    TRY(ct_kv_int(hp, "beta_steps", 200, &s->beta_steps));
    TRY(ct_kv_int(hp, "alpha_steps", 20, &s->alpha_steps));
#undef TRY
    if (st != CT_OK) return st;
    if (!isfinite(a) || !isfinite(b))
        return ct_set_error(CT_ERR_ARG, "%s: init_alpha=%g and init_beta=%g must be finite",
                            s->name, a, b);
    if (!isfinite(bsc) || !isfinite(asc) || s->beta_steps < 1 || s->alpha_steps < 1)
        return ct_set_error(CT_ERR_ARG, "%s: beta_scale=%g / alpha_scale=%g must be finite and "
                            "beta_steps=%d / alpha_steps=%d >= 1", s->name, bsc, asc,
                            s->beta_steps, s->alpha_steps);
    if (s->search != 0 && s->search != 1)
        return ct_set_error(CT_ERR_ARG, "%s: search=%d must be 0 or 1", s->name, s->search);
    s->init_alpha = (float)a, s->init_beta = (float)b, s->clip_scale = cs;
    s->beta_scale = bsc, s->alpha_scale = asc;
    return CT_OK;
}

static ct_status tip_create_common(const ct_task *task, ct_kv *hp, bool finetune, void **out) {
    tip_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "tip-adapter: out of memory");
    s->name = finetune ? "tip-adapter-f" : "tip-adapter";
    s->finetune = finetune;
    const char *tmpl, *zs;
    ct_status st = ct_kv_str(hp, "templates", "dataset", &tmpl);
    if (st == CT_OK) st = ct_kv_str(hp, "zs_weights", "", &zs);
    if (st == CT_OK) st = read_hp(s, task, hp);
    if (st == CT_OK && finetune) {
        double eps = 1e-4;
        st = ct_train_cfg_from_kv(hp, &s->train);
        if (st == CT_OK) st = ct_kv_double(hp, "eps", 1e-4, &eps);
        if (st == CT_OK && !(eps > 0))
            st = ct_set_error(CT_ERR_ARG, "%s: eps=%g must be > 0", s->name, eps);
        s->train.optim.eps = (float)eps;
        s->train.seed = task->seed;
    }
    int64_t N = task->train_feats ? task->train_feats->n : 0;
    int E = ct_clip_get_config(task->clip)->embed_dim, C = task->n_classes;
    /* the cache has one row per training image; without training features
     * (a run being reloaded) it starts empty and ct_run_load_learned gives
     * it the saved size (learned_shapes_from_file) */
    if (st == CT_OK && N < 0) N = 0;
    if (st == CT_OK) {
        int64_t one = 1;
        s->keys = ct_tensor_new2(N, E, finetune);
        s->labels = ct_tensor_new(1, &N, false);
        s->alpha = ct_tensor_new(1, &one, false);
        s->beta = ct_tensor_new(1, &one, false);
        s->W = ct_tensor_new2(C, E, false);
        s->V = ct_tensor_new2(N, C, false);
        s->v_labels = malloc((size_t)(N ? N : 1) * sizeof *s->v_labels);
        if (!s->keys || !s->labels || !s->alpha || !s->beta || !s->W || !s->V || !s->v_labels)
            st = ct_set_error(CT_ERR_NOMEM, "%s: out of memory", s->name);
    }
    if (st == CT_OK) st = ct_zeroshot_classifier(task, zs, tmpl, true, s->W->data);
    if (st != CT_OK) {
        tip_destroy(s);
        return st;
    }
    s->keys->name = "tip-adapter.cache_keys";
    for (int64_t j = 0; j < N; j++) s->v_labels[j] = -1; /* V not built yet */
    s->alpha->data[0] = s->init_alpha, s->beta->data[0] = s->init_beta;
    *out = s;
    return CT_OK;
}

static ct_status tip_create(const ct_task *task, const ct_kv *hp, void **out) {
    return tip_create_common(task, (ct_kv *)hp, false, out);
}

static ct_status tipf_create(const ct_task *task, const ct_kv *hp, void **out) {
    return tip_create_common(task, (ct_kv *)hp, true, out);
}

static int tip_params(void *st, ct_tensor **out, int cap) {
    tip_state *s = st;
    if (cap < 4) return 0;
    out[0] = s->keys, out[1] = s->labels, out[2] = s->alpha, out[3] = s->beta;
    return 4;
}

static int tip_param_names(void *st, const char **out, int cap) {
    tip_state *s = st;
    if (cap < 4) return 0;
    out[0] = s->finetune ? "adapter.weight" : "cache_keys";
    out[1] = "cache_labels", out[2] = "alpha", out[3] = "beta";
    return 4;
}

/* V = one-hot(labels), rebuilt whenever labels changed (fit, or a run's
 * learned tensors loaded over them). */
static ct_status ensure_values(tip_state *s) {
    return ct_cache_values(s->name, s->labels, &s->V, &s->v_labels);
}

static ct_tensor *tip_forward(tip_state *s, ct_graph *g, const ct_batch *b, float alpha,
                              float beta) {
    if (ensure_values(s) != CT_OK) return NULL;
    int64_t shape[2] = {b->n, s->W->shape[1]};
    ct_tensor *f = ct_l2_normalize(g, ct_graph_wrap(g, (ct_real *)b->x, 2, shape), 1e-12f);
    ct_tensor *zs = ct_scale(g, ct_matmul(g, f, s->W, false, true), s->clip_scale);
    ct_tensor *cache = ct_cache_logits(g, f, s->keys, s->V, beta);
    return ct_add(g, zs, ct_scale(g, cache, alpha));
}

static ct_tensor *tip_logits(void *st, ct_graph *g, const ct_batch *b) {
    tip_state *s = st;
    return tip_forward(s, g, b, s->alpha->data[0], s->beta->data[0]);
}

/* ---- the cache ---- */

static ct_status build_cache(tip_state *s, const ct_task *task) {
    const ct_features *tr = task->train_feats, *aug = task->aug_feats;
    int64_t N = s->keys->shape[0];
    int E = (int)s->keys->shape[1];
    if (N == 0 || !tr || tr->n == 0)
        return ct_set_error(CT_ERR_ARG, "%s: the task has no training features to build the "
                            "cache from", s->name);
    if (tr->n != N || tr->dim != E)
        return ct_set_error(CT_ERR_ARG, "%s: fit on %lld training features of dim %d; the "
                            "method was created for %lld of dim %d", s->name,
                            (long long)(tr ? tr->n : 0), tr ? tr->dim : 0, (long long)N, E);
    int64_t views = 0;
    if (aug && aug->n > 0) {
        if (aug->dim != E || aug->n % N)
            return ct_set_error(CT_ERR_ARG, "%s: %lld augmented features of dim %d are not "
                                "whole views of %lld training images of dim %d", s->name,
                                (long long)aug->n, aug->dim, (long long)N, E);
        views = aug->n / N;
        for (int64_t i = 0; i < aug->n; i++)
            if (aug->labels[i] != tr->labels[i % N])
                return ct_set_error(CT_ERR_ARG, "%s: augmented row %lld has label %d, its "
                                    "image (train row %lld) %d", s->name, (long long)i,
                                    aug->labels[i], (long long)(i % N), tr->labels[i % N]);
    }
    double *acc = malloc((size_t)E * sizeof *acc);
    if (!acc) return ct_set_error(CT_ERR_NOMEM, "%s: out of memory", s->name);
    for (int64_t j = 0; j < N; j++) {
        if (tr->labels[j] < 0 || tr->labels[j] >= s->W->shape[0]) {
            free(acc);
            return ct_set_error(CT_ERR_ARG, "%s: training label %d of row %lld is not a class",
                                s->name, tr->labels[j], (long long)j);
        }
        /* without augmented views (aug_views=0) the cache is the plain train set */
        for (int d = 0; d < E; d++) acc[d] = views ? 0 : tr->x[j * E + d];
        for (int64_t v = 0; v < views; v++)
            for (int d = 0; d < E; d++) acc[d] += aug->x[(v * N + j) * E + d];
        double ss = 0;
        for (int d = 0; d < E; d++) ss += acc[d] * acc[d];
        double inv = ss > 0 ? 1 / sqrt(ss) : 0; /* the mean's 1/views cancels here */
        for (int d = 0; d < E; d++) s->keys->data[j * E + d] = (float)(acc[d] * inv);
        s->labels->data[j] = (float)tr->labels[j];
    }
    free(acc);
    return CT_OK;
}

/* ---- the (alpha, beta) search on val ---- */

/* search_hp's lists, same evaluation order */
static double grid_value(int i, double scale, int steps) {
    return ct_cache_grid(i, 0.1, scale, steps);
}

static ct_status search_hp(tip_state *s, const ct_features *val) {
    int64_t n = val->n, N = s->keys->shape[0], C = s->W->shape[0];
    int E = (int)s->keys->shape[1], nb = s->beta_steps, na = s->alpha_steps;
    if (val->dim != E)
        return ct_set_error(CT_ERR_ARG, "%s: val features have dim %d, the model %d", s->name,
                            val->dim, E);
    /* val in chunks of rows so the (rows, N) affinities stay small */
    const int64_t R = 256;
    int64_t *hits = calloc((size_t)nb * (size_t)na, sizeof *hits);
    int *lab = malloc((size_t)N * sizeof *lab);
    float *fv = malloc((size_t)R * (size_t)E * sizeof *fv);
    float *aff = malloc((size_t)R * (size_t)N * sizeof *aff);
    float *z = malloc((size_t)R * (size_t)C * sizeof *z);
    ct_status st = CT_OK;
    if (!hits || !lab || !fv || !aff || !z) {
        st = ct_set_error(CT_ERR_NOMEM, "%s: out of memory", s->name);
        goto out;
    }
    for (int64_t j = 0; j < N; j++) lab[j] = (int)s->labels->data[j];
    double b0 = grid_value(0, s->beta_scale, nb), db = (s->beta_scale - 0.1) / nb;
    for (int64_t i0 = 0; i0 < n; i0 += R) {
        int r = (int)(n - i0 < R ? n - i0 : R);
        ct_unit_rows(fv, val->x + i0 * E, r, E);
        ct_gemm(false, true, r, (int)N, E, 1, fv, E, s->keys->data, E, 0, aff, (int)N);
        ct_gemm(false, true, r, (int)C, E, s->clip_scale, fv, E, s->W->data, E, 0, z, (int)C);
        /* rows in parallel, each thread counting into its own grid (integer
         * sums: the same totals for any thread count) */
        int fail = 0;
#pragma omp parallel reduction(| : fail)
        {
            /* cl[k nb + b] = sum over the keys of class k of exp(beta_b (a - 1)) */
            double *cl = malloc((size_t)C * (size_t)nb * sizeof *cl);
            int64_t *h = calloc((size_t)nb * (size_t)na, sizeof *h);
            fail = !cl || !h;
#pragma omp for schedule(static)
            for (int i = 0; i < r; i++) {
                if (!cl || !h) continue;
                const float *a = aff + (int64_t)i * N, *zi = z + (int64_t)i * C;
                ct_cache_class_sums(cl, a, lab, N, (int)C, b0, db, nb);
                int y = val->labels[i0 + i];
                for (int b = 0; b < nb; b++)
                    for (int ai = 0; ai < na; ai++) {
                        double alpha = grid_value(ai, s->alpha_scale, na);
                        int64_t best = 0;
                        double bv = zi[0] + alpha * cl[b];
                        for (int64_t k = 1; k < C; k++) {
                            double v = zi[k] + alpha * cl[k * nb + b];
                            if (v > bv) bv = v, best = k;
                        }
                        h[(int64_t)b * na + ai] += best == y;
                    }
            }
            if (cl && h) {
#pragma omp critical(ct_tip_search)
                for (int64_t g = 0; g < (int64_t)nb * na; g++) hits[g] += h[g];
            }
            free(cl), free(h);
        }
        if (fail) {
            st = ct_set_error(CT_ERR_NOMEM, "%s: out of memory", s->name);
            goto out;
        }
    }
    /* search_hp keeps the first strictly better setting, beta outer */
    int64_t best = -1;
    for (int bi = 0; bi < nb; bi++)
        for (int ai = 0; ai < na; ai++)
            if (hits[(int64_t)bi * na + ai] > best) {
                best = hits[(int64_t)bi * na + ai];
                s->beta->data[0] = (float)grid_value(bi, s->beta_scale, nb);
                s->alpha->data[0] = (float)grid_value(ai, s->alpha_scale, na);
            }
out:
    free(hits), free(lab), free(fv), free(aff), free(z);
    return st;
}

/* ---- Tip-Adapter-F's training: the keys under the init (alpha, beta) ---- */

static int tipf_train_params(void *st, ct_tensor **out, int cap) {
    tip_state *s = st;
    if (cap < 1) return 0;
    out[0] = s->keys;
    return 1;
}

static int tipf_train_param_names(void *st, const char **out, int cap) {
    (void)st;
    if (cap < 1) return 0;
    out[0] = "adapter.weight";
    return 1;
}

static ct_tensor *tipf_train_logits(void *st, ct_graph *g, const ct_batch *b) {
    tip_state *s = st;
    return tip_forward(s, g, b, s->init_alpha, s->init_beta);
}

static ct_tensor *tipf_train_loss(void *st, ct_graph *g, const ct_batch *b) {
    int64_t *y = ct_graph_alloc(g, (size_t)b->n * sizeof *y);
    if (!y) return NULL;
    for (int64_t i = 0; i < b->n; i++) y[i] = b->labels[i];
    return ct_cross_entropy(g, tipf_train_logits(st, g, b), y, 0);
}

/* Not registered: what ct_train runs inside tip-adapter-f's fit() (and what
 * the parity tests call for the loss and its gradient). */
const ct_method ct_method_tip_adapter_f_train = {
    .name = "tip-adapter-f",
    .category = "adapter",
    .setup = "few-shot",
    .paper = "",
    .defaults = "",
    .params = tipf_train_params,
    .param_names = tipf_train_param_names,
    .loss = tipf_train_loss,
    .logits = tipf_train_logits,
};

static ct_status tip_fit(void *st, const ct_task *task) {
    tip_state *s = st;
    ct_status r = build_cache(s, task);
    if (r != CT_OK) return r;
    s->alpha->data[0] = s->init_alpha, s->beta->data[0] = s->init_beta;
    if (s->finetune && s->train.epochs > 0) {
        ct_kv none = {0};
        if ((r = ct_train(&ct_method_tip_adapter_f_train, s, task, &s->train, &none)) != CT_OK)
            return r;
    }
    /* without val the init values stay: test is never searched on */
    if (s->search && task->val_feats && task->val_feats->n > 0)
        r = search_hp(s, task->val_feats);
    return r;
}

#define TIP_DEFAULTS                                                                      \
    "templates=dataset aug_views=10 init_alpha=1.17 init_beta=1 search=1 beta_scale=7 " \
    "alpha_scale=3 beta_steps=200 alpha_steps=20 clip_scale=model"

const ct_method ct_method_tip_adapter = {
    .name = "tip-adapter",
    .category = "adapter",
    .setup = "few-shot, training-free",
    .paper = "Zhang et al., Tip-Adapter: Training-free Adaption of CLIP for Few-shot "
             "Classification, ECCV 2022",
    .defaults = TIP_DEFAULTS,
    .create = tip_create,
    .destroy = tip_destroy,
    .params = tip_params,
    .param_names = tip_param_names,
    .logits = tip_logits,
    .fit = tip_fit,
    .learned_shapes_from_file = true,
};

const ct_method ct_method_tip_adapter_f = {
    .name = "tip-adapter-f",
    .category = "adapter",
    .setup = "few-shot",
    .paper = "Zhang et al., Tip-Adapter: Training-free Adaption of CLIP for Few-shot "
             "Classification, ECCV 2022",
    .defaults = TIP_DEFAULTS " optim=adamw lr=0.001 eps=1e-4 weight_decay=0.01 epochs=20 "
                             "batch_size=256 sched=cosine select=best_val",
    .create = tipf_create,
    .destroy = tip_destroy,
    .params = tip_params,
    .param_names = tip_param_names,
    .logits = tip_logits,
    .fit = tip_fit,
    .learned_shapes_from_file = true,
};
