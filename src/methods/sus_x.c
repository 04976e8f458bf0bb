/* SuS-X (Udandarao, Gupta, Albanie, "SuS-X: Training-Free Name-Only Transfer
 * of Vision-Language Models", ICCV 2023), after the official vishaal27/SuS-X:
 * tipx.py (compute_image_text_distributions, get_kl_divergence_sims, scale_,
 * hparam_search), encode_sus_lc.py (the support features) and
 * retrieve_urls_lc_sus.py (SuS-LC's retrieval).
 *
 * Name-only: no training label is read. fit() curates a support set (SuS)
 * from an unlabelled image pool, then TIP-X scores with it:
 *
 *   SuS (the SuS-LC retrieval, on the run's pool instead of LAION-5B): for
 *   each class k, the `support` pool images whose CLIP image embeddings are
 *   most similar (cosine) to the class's text embedding W_k, labelled k
 *   (the official asks LAION's kNN service the same text query per class
 *   and keeps the top num_images; an image returned for two classes sits
 *   in both folders, and here in both classes' rows). The pool is the
 *   task's unlabelled features (ct_run: the whole training split, or
 *   unlabelled=N of it, or pool=SPEC's training split; labels dropped,
 *   never test images). No generative model or LAION
 *   index is available here, so SuS-SD and LAION itself are not done. The
 *   support keys are the images' normalised embeddings: encode_sus_lc.py
 *   averages augment_epoch=10 passes of CLIP's deterministic `preprocess`,
 *   i.e. the view-0 features.
 *
 *   TIP-X (tipx.py), f a unit image embedding, K (N, E) the unit support
 *   keys, L (N, C) their one-hot classes, W (C, E) the zero-shot
 *   classifier (unit rows), T the temperature (0.5):
 *     p   = softmax(f W^T / T),  q_j = softmax(K_j W^T / T)   (signatures)
 *     kl_j = sum_c p_c (log p_c - log q_jc)                   (KL(p || q_j))
 *     a_j  = f K_j                                             (affinities)
 *     y_j  = scale_(kl)_j: kl min-max rescaled onto the range of a
 *     logits = clip_scale f W^T + gamma (-y L) + alpha exp(-beta (1 - a)) L
 *   (alpha, beta, gamma) searched on val as hparam_search does: alpha outer
 *   over i (50 - 0.1) / 20 + 0.1, beta over i (50 - 1) / 200 + 1, gamma
 *   inner over i (30 - 0.1) / 50 + 0.1, the first strictly best val
 *   accuracy kept. Test is never looked at.
 *
 * Where this departs from the code:
 *   - scale_ takes its min and max over the whole matrix it is given: in
 *     the search, val's KL and affinity matrices (as here), and at test
 *     test's KL matrix onto val's affinity range (new_knowledge keeps its
 *     last val value there). A test image's score then depends on the other
 *     test images; here the four numbers (KL min/max, affinity min/max) are
 *     val's, fixed in fit() and saved ("kl_range", "affinity_range"), so
 *     scores are per image and a saved run reproduces them. Without val they
 *     are the support set's against itself (tipx.py's train_kl_divs_sim).
 *     A zero KL range (the official would divide by zero) scales to 0.
 *   - get_kl_divergence_sims loops over whole batches of 100 and leaves the
 *     rows of the last partial batch at KL 0 (so a val set under 100 images
 *     gets NaN logits there); every row is computed here.
 *   - The official's kl_logits and one-hot values are float16
 *     (affinities.half()); float32/double here.
 *   - clip_logits = 100 f W^T in the code; clip_scale defaults to the
 *     model's exp(logit_scale), 100 for OpenAI's checkpoints (clip_scale=100
 *     computes the constant), as Tip-Adapter's here.
 *   - The cache term is Tip-Adapter's, from method_cache.c (shared with
 *     tip_adapter.c).
 *
 * Learned tensors (no official checkpoint: tipx.py saves nothing; the
 * support features are torch.save'd as sus_lc_*_f (E, N) and sus_lc_*_t
 * (N, C) one-hot): "support_keys" (N, E), "support_labels" (N), the chosen
 * "alpha", "beta", "gamma", and "kl_range", "affinity_range" (min, max). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/blas.h"
#include "base/error.h"
#include "methods/method_cache.h"
#include "methods/method_common.h"

typedef struct {
    ct_tensor *keys;           /* (N, E) support keys, unit rows                 */
    ct_tensor *labels;         /* (N) class of each key                          */
    ct_tensor *alpha, *beta, *gamma; /* (1) each: searched on val               */
    ct_tensor *kl_range;       /* (2) min, max of the KL matrix scale_ saw       */
    ct_tensor *aff_range;      /* (2) min, max of the affinities it maps onto    */
    ct_tensor *W;              /* (C, E) zero-shot classifier, unit rows         */
    ct_tensor *V;              /* (N, C) one-hot of labels                       */
    float *v_labels;           /* (N) the labels V was built from                */
    float clip_scale, temp, init[3];
    int support, search, steps[3];
    double scale[3];
} sus_state;

enum { A = 0, B = 1, G = 2 };
static const double GRID_LO[3] = {0.1, 1, 0.1}; /* tipx.py's alpha, beta, gamma lists */

static void sus_destroy(void *st) {
    sus_state *s = st;
    if (!s) return;
    ct_tensor_free(s->keys), ct_tensor_free(s->labels), ct_tensor_free(s->alpha);
    ct_tensor_free(s->beta), ct_tensor_free(s->gamma), ct_tensor_free(s->kl_range);
    ct_tensor_free(s->aff_range), ct_tensor_free(s->W), ct_tensor_free(s->V);
    free(s->v_labels);
    free(s);
}

static ct_status read_hp(sus_state *s, const ct_task *task, ct_kv *hp) {
    double init[3], sc[3], temp;
    ct_status st = CT_OK;
#define TRY(x) \
    if (st == CT_OK) st = (x)
    TRY(ct_kv_int(hp, "support", 16, &s->support));
    TRY(ct_kv_double(hp, "temperature", 0.5, &temp));
    TRY(ct_kv_int(hp, "search", 1, &s->search));
    TRY(ct_kv_double(hp, "init_alpha", 1, &init[A]));
    TRY(ct_kv_double(hp, "init_beta", 1, &init[B]));
    TRY(ct_kv_double(hp, "init_gamma", 1, &init[G]));
    TRY(ct_kv_double(hp, "alpha_scale", 50, &sc[A]));
    TRY(ct_kv_double(hp, "beta_scale", 50, &sc[B]));
    TRY(ct_kv_double(hp, "gamma_scale", 30, &sc[G]));
    TRY(ct_kv_int(hp, "alpha_steps", 20, &s->steps[A]));
    TRY(ct_kv_int(hp, "beta_steps", 200, &s->steps[B]));
    TRY(ct_kv_int(hp, "gamma_steps", 50, &s->steps[G]));
    TRY(ct_kv_clip_scale(hp, "clip_scale", task, "sus-x", &s->clip_scale));
#undef TRY
    if (st != CT_OK) return st;
    if (s->support < 1 || s->support > 100000)
        return ct_set_error(CT_ERR_ARG, "sus-x: support=%d images per class (1 .. 100000)",
                            s->support);
    if (!(temp > 0) || !isfinite(temp))
        return ct_set_error(CT_ERR_ARG, "sus-x: temperature=%g must be > 0", temp);
    if (s->search != 0 && s->search != 1)
        return ct_set_error(CT_ERR_ARG, "sus-x: search=%d must be 0 or 1", s->search);
    static const char *nm[3] = {"alpha", "beta", "gamma"};
    for (int k = 0; k < 3; k++) {
        if (!isfinite(init[k]) || !isfinite(sc[k]))
            return ct_set_error(CT_ERR_ARG, "sus-x: init_%s=%g and %s_scale=%g must be finite",
                                nm[k], init[k], nm[k], sc[k]);
        if (s->steps[k] < 1 || s->steps[k] > 100000)
            return ct_set_error(CT_ERR_ARG, "sus-x: %s_steps=%d (1 .. 100000)", nm[k],
                                s->steps[k]);
        s->init[k] = (float)init[k], s->scale[k] = sc[k];
    }
    if ((double)s->steps[A] * s->steps[B] * s->steps[G] > 1e7)
        return ct_set_error(CT_ERR_ARG, "sus-x: a grid of %d x %d x %d settings is too large "
                            "(at most 1e7)", s->steps[A], s->steps[B], s->steps[G]);
    s->temp = (float)temp;
    return CT_OK;
}

static ct_status sus_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    sus_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "sus-x: out of memory");
    const char *tmpl, *zs;
    ct_status st = ct_kv_str(hp, "templates", "dataset", &tmpl);
    if (st == CT_OK) st = ct_kv_str(hp, "zs_weights", "", &zs);
    if (st == CT_OK) st = read_hp(s, task, hp);
    int E = ct_clip_get_config(task->clip)->embed_dim, C = task->n_classes;
    /* the support set has `support` rows per class, whatever the pool */
    int64_t N = (int64_t)s->support * C;
    if (st == CT_OK) {
        int64_t one = 1, two = 2;
        s->keys = ct_tensor_new2(N, E, false);
        s->labels = ct_tensor_new(1, &N, false);
        s->alpha = ct_tensor_new(1, &one, false);
        s->beta = ct_tensor_new(1, &one, false);
        s->gamma = ct_tensor_new(1, &one, false);
        s->kl_range = ct_tensor_new(1, &two, false);
        s->aff_range = ct_tensor_new(1, &two, false);
        s->W = ct_tensor_new2(C, E, false);
        s->V = ct_tensor_new2(N, C, false);
        s->v_labels = malloc((size_t)(N ? N : 1) * sizeof *s->v_labels);
        if (!s->keys || !s->labels || !s->alpha || !s->beta || !s->gamma || !s->kl_range ||
            !s->aff_range || !s->W || !s->V || !s->v_labels)
            st = ct_set_error(CT_ERR_NOMEM, "sus-x: out of memory");
    }
    if (st == CT_OK) st = ct_zeroshot_classifier(task, zs, tmpl, true, s->W->data);
    if (st != CT_OK) {
        sus_destroy(s);
        return st;
    }
    for (int64_t j = 0; j < N; j++) s->v_labels[j] = -1; /* V not built yet */
    s->alpha->data[0] = s->init[A], s->beta->data[0] = s->init[B];
    s->gamma->data[0] = s->init[G];
    *out = s;
    return CT_OK;
}

static int sus_params(void *st, ct_tensor **out, int cap) {
    sus_state *s = st;
    if (cap < 7) return 0;
    out[0] = s->keys, out[1] = s->labels, out[2] = s->alpha, out[3] = s->beta;
    out[4] = s->gamma, out[5] = s->kl_range, out[6] = s->aff_range;
    return 7;
}

static int sus_param_names(void *st, const char **out, int cap) {
    (void)st;
    if (cap < 7) return 0;
    out[0] = "support_keys", out[1] = "support_labels", out[2] = "alpha", out[3] = "beta";
    out[4] = "gamma", out[5] = "kl_range", out[6] = "affinity_range";
    return 7;
}

/* ---- TIP-X's pieces for n query rows ---- */

/* log-softmax of each row of x (n, C) / T, in place */
static void log_softmax_rows(float *x, int64_t n, int C, float T) {
    for (int64_t i = 0; i < n; i++) {
        float *r = x + i * C;
        double mx = -INFINITY, sum = 0;
        for (int c = 0; c < C; c++) mx = fmax(mx, (double)r[c] / T);
        for (int c = 0; c < C; c++) sum += exp((double)r[c] / T - mx);
        double lse = mx + log(sum);
        for (int c = 0; c < C; c++) r[c] = (float)((double)r[c] / T - lse);
    }
}

/* For queries x (n, E) (raw): z (n, C) = f W^T (cosines), aff (n, N) = f K^T,
 * kl (n, N) = KL(p_i || q_j). logq (N, C): the support's log-signatures,
 * from support_log_signatures. */
static ct_status tipx_parts(const sus_state *s, const float *x, int64_t n, const float *logq,
                            float *z, float *aff, float *kl) {
    int64_t N = s->keys->shape[0];
    int E = (int)s->keys->shape[1], C = (int)s->W->shape[0];
    size_t nn = (size_t)(n ? n : 1);
    float *f = malloc(nn * (size_t)E * sizeof *f);
    float *lp = malloc(nn * (size_t)C * sizeof *lp), *p = malloc(nn * (size_t)C * sizeof *p);
    if (!f || !lp || !p) {
        free(f), free(lp), free(p);
        return ct_set_error(CT_ERR_NOMEM, "sus-x: out of memory");
    }
    ct_unit_rows(f, x, n, E);
    ct_gemm(false, true, (int)n, C, E, 1, f, E, s->W->data, E, 0, z, C);
    ct_gemm(false, true, (int)n, (int)N, E, 1, f, E, s->keys->data, E, 0, aff, (int)N);
    memcpy(lp, z, (size_t)n * (size_t)C * sizeof *lp);
    log_softmax_rows(lp, n, C, s->temp);
    for (int64_t k = 0; k < n * C; k++) p[k] = expf(lp[k]);
    /* kl_ij = sum_c p_ic log p_ic - sum_c p_ic log q_jc: the cross term by GEMM */
    ct_gemm(false, true, (int)n, (int)N, C, -1, p, C, logq, C, 0, kl, (int)N);
    for (int64_t i = 0; i < n; i++) {
        double h = 0;
        for (int c = 0; c < C; c++) h += (double)p[i * C + c] * lp[i * C + c];
        for (int64_t j = 0; j < N; j++) kl[i * N + j] = (float)(h + kl[i * N + j]);
    }
    free(f), free(lp), free(p);
    return CT_OK;
}

/* logq (N, C) = log softmax(K W^T / T) */
static ct_status support_log_signatures(const sus_state *s, float **out) {
    int64_t N = s->keys->shape[0];
    int E = (int)s->keys->shape[1], C = (int)s->W->shape[0];
    float *q = malloc((size_t)(N ? N : 1) * (size_t)C * sizeof *q);
    if (!q) return ct_set_error(CT_ERR_NOMEM, "sus-x: out of memory");
    ct_gemm(false, true, (int)N, C, E, 1, s->keys->data, E, s->W->data, E, 0, q, C);
    log_softmax_rows(q, N, C, s->temp);
    *out = q;
    return CT_OK;
}

/* scale_'s map kl -> y, from the saved ranges: y = (kl - lo) r + alo */
static void kl_map(const sus_state *s, double *r, double *lo, double *alo) {
    const float *k = s->kl_range->data, *a = s->aff_range->data;
    double d = (double)k[1] - k[0];
    *r = d != 0 ? ((double)a[1] - a[0]) / d : 0;
    *lo = k[0], *alo = a[0];
}

static ct_tensor *sus_logits(void *st, ct_graph *g, const ct_batch *b) {
    sus_state *s = st;
    if (ct_cache_values("sus-x", s->labels, &s->V, &s->v_labels) != CT_OK) return NULL;
    int64_t n = b->n, N = s->keys->shape[0];
    int E = (int)s->keys->shape[1], C = (int)s->W->shape[0];
    int64_t shape[2] = {n, E}, oshape[2] = {n, C};
    ct_tensor *klt = ct_graph_tensor(g, 2, oshape);
    float *z = malloc((size_t)(n ? n : 1) * (size_t)C * sizeof *z);
    float *aff = malloc((size_t)(n ? n : 1) * (size_t)N * sizeof *aff);
    float *kl = malloc((size_t)(n ? n : 1) * (size_t)N * sizeof *kl), *logq = NULL;
    bool ok = klt && z && aff && kl;
    if (!ok) ct_set_error(CT_ERR_NOMEM, "sus-x: out of memory");
    ok = ok && support_log_signatures(s, &logq) == CT_OK;
    ok = ok && tipx_parts(s, b->x, n, logq, z, aff, kl) == CT_OK;
    if (ok) {
        /* gamma * kl_logits = -gamma y L */
        double r, lo, alo, gm = s->gamma->data[0];
        kl_map(s, &r, &lo, &alo);
        double *acc = calloc((size_t)C, sizeof *acc);
        ok = acc != NULL;
        if (!ok) ct_set_error(CT_ERR_NOMEM, "sus-x: out of memory");
        for (int64_t i = 0; ok && i < n; i++) {
            memset(acc, 0, (size_t)C * sizeof *acc);
            for (int64_t j = 0; j < N; j++)
                acc[(int)s->labels->data[j]] += ((double)kl[i * N + j] - lo) * r + alo;
            for (int c = 0; c < C; c++) klt->data[i * C + c] = (float)(-gm * acc[c]);
        }
        free(acc);
    }
    free(z), free(aff), free(kl), free(logq);
    if (!ok) return NULL;
    ct_tensor *f = ct_l2_normalize(g, ct_graph_wrap(g, (ct_real *)b->x, 2, shape), 1e-12f);
    ct_tensor *zs = ct_scale(g, ct_matmul(g, f, s->W, false, true), s->clip_scale);
    ct_tensor *cache = ct_cache_logits(g, f, s->keys, s->V, s->beta->data[0]);
    return ct_add(g, ct_add(g, zs, klt), ct_scale(g, cache, s->alpha->data[0]));
}

/* ---- SuS: the support set from the unlabelled pool ---- */

typedef struct {
    float v;
    int64_t i;
} ranked;

static int by_score(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i; /* ties: the earlier pool image first */
}

static ct_status curate(sus_state *s, const ct_features *pool) {
    int64_t M = s->support, n = pool->n;
    int E = (int)s->keys->shape[1], C = (int)s->W->shape[0];
    float *u = malloc((size_t)n * (size_t)E * sizeof *u);
    float *sim = malloc((size_t)n * (size_t)C * sizeof *sim);
    ranked *rk = malloc((size_t)n * sizeof *rk);
    if (!u || !sim || !rk) {
        free(u), free(sim), free(rk);
        return ct_set_error(CT_ERR_NOMEM, "sus-x: out of memory (a pool of %lld images)",
                            (long long)n);
    }
    ct_unit_rows(u, pool->x, n, E);
    /* the retrieval's text query per class: the class's zero-shot embedding */
    ct_gemm(false, true, (int)n, C, E, 1, u, E, s->W->data, E, 0, sim, C);
    for (int c = 0; c < C; c++) {
        for (int64_t i = 0; i < n; i++) rk[i] = (ranked){sim[i * C + c], i};
        qsort(rk, (size_t)n, sizeof *rk, by_score);
        for (int64_t m = 0; m < M; m++) {
            int64_t row = (int64_t)c * M + m;
            memcpy(s->keys->data + row * E, u + rk[m].i * E, (size_t)E * sizeof(float));
            s->labels->data[row] = (float)c;
        }
    }
    free(u), free(sim), free(rk);
    return CT_OK;
}

/* ---- scale_'s ranges and the (alpha, beta, gamma) search on val ---- */

enum { CHUNK = 256 };

/* min and max of the KL and affinity matrices of x (n, E) against the
 * support set */
static ct_status ranges(sus_state *s, const float *x, int64_t n, const float *logq) {
    int64_t N = s->keys->shape[0];
    int C = (int)s->W->shape[0];
    float *z = malloc((size_t)CHUNK * (size_t)C * sizeof *z);
    float *aff = malloc((size_t)CHUNK * (size_t)N * sizeof *aff);
    float *kl = malloc((size_t)CHUNK * (size_t)N * sizeof *kl);
    ct_status st = CT_OK;
    if (!z || !aff || !kl) st = ct_set_error(CT_ERR_NOMEM, "sus-x: out of memory");
    float klo = INFINITY, khi = -INFINITY, alo = INFINITY, ahi = -INFINITY;
    for (int64_t i0 = 0; st == CT_OK && i0 < n; i0 += CHUNK) {
        int64_t r = n - i0 < CHUNK ? n - i0 : CHUNK;
        int E = (int)s->keys->shape[1];
        if ((st = tipx_parts(s, x + i0 * E, r, logq, z, aff, kl)) != CT_OK) break;
        for (int64_t k = 0; k < r * N; k++) {
            klo = fminf(klo, kl[k]), khi = fmaxf(khi, kl[k]);
            alo = fminf(alo, aff[k]), ahi = fmaxf(ahi, aff[k]);
        }
    }
    if (st == CT_OK) {
        s->kl_range->data[0] = klo, s->kl_range->data[1] = khi;
        s->aff_range->data[0] = alo, s->aff_range->data[1] = ahi;
    }
    free(z), free(aff), free(kl);
    return st;
}

static ct_status search_hp(sus_state *s, const ct_features *val, const float *logq) {
    int64_t n = val->n, N = s->keys->shape[0];
    int E = (int)s->keys->shape[1], C = (int)s->W->shape[0];
    int na = s->steps[A], nb = s->steps[B], ng = s->steps[G];
    int64_t cells = (int64_t)na * nb * ng;
    int64_t *hits = calloc((size_t)cells, sizeof *hits);
    int *lab = malloc((size_t)N * sizeof *lab);
    float *z = malloc((size_t)CHUNK * (size_t)C * sizeof *z);
    float *aff = malloc((size_t)CHUNK * (size_t)N * sizeof *aff);
    float *kl = malloc((size_t)CHUNK * (size_t)N * sizeof *kl);
    double *al = malloc((size_t)na * sizeof *al), *gl = malloc((size_t)ng * sizeof *gl);
    ct_status st = CT_OK;
    if (!hits || !lab || !z || !aff || !kl || !al || !gl) {
        st = ct_set_error(CT_ERR_NOMEM, "sus-x: out of memory");
        goto out;
    }
    for (int64_t j = 0; j < N; j++) lab[j] = (int)s->labels->data[j];
    for (int i = 0; i < na; i++) al[i] = ct_cache_grid(i, GRID_LO[A], s->scale[A], na);
    for (int i = 0; i < ng; i++) gl[i] = ct_cache_grid(i, GRID_LO[G], s->scale[G], ng);
    double b0 = ct_cache_grid(0, GRID_LO[B], s->scale[B], nb);
    double db = (s->scale[B] - GRID_LO[B]) / nb, r, lo, alo;
    kl_map(s, &r, &lo, &alo);
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) {
        int rows = (int)(n - i0 < CHUNK ? n - i0 : CHUNK);
        if ((st = tipx_parts(s, val->x + i0 * E, rows, logq, z, aff, kl)) != CT_OK) goto out;
        int fail = 0;
        /* rows in parallel, each thread counting into its own grid (integer
         * sums: the same totals for any thread count) */
#pragma omp parallel reduction(| : fail)
        {
            double *cl = malloc((size_t)C * (size_t)nb * sizeof *cl);
            double *zk = malloc((size_t)C * 2 * sizeof *zk);
            int64_t *h = calloc((size_t)cells, sizeof *h);
            fail = !cl || !zk || !h;
#pragma omp for schedule(static)
            for (int i = 0; i < rows; i++) {
                if (!cl || !zk || !h) continue;
                const float *a = aff + (int64_t)i * N, *d = kl + (int64_t)i * N;
                const float *zi = z + (int64_t)i * C;
                /* zk[c]: the zero-shot logit; zk[C + c]: kl_logits (-y L) */
                for (int c = 0; c < C; c++) zk[c] = (double)s->clip_scale * zi[c], zk[C + c] = 0;
                for (int64_t j = 0; j < N; j++) zk[C + lab[j]] -= ((double)d[j] - lo) * r + alo;
                ct_cache_class_sums(cl, a, lab, N, C, b0, db, nb);
                int y = val->labels[i0 + i];
                for (int ai = 0; ai < na; ai++)
                    for (int bi = 0; bi < nb; bi++)
                        for (int gi = 0; gi < ng; gi++) {
                            int best = 0;
                            double bv = -INFINITY;
                            for (int k = 0; k < C; k++) {
                                double v = zk[k] + zk[C + k] * gl[gi] + cl[k * nb + bi] * al[ai];
                                if (v > bv) bv = v, best = k;
                            }
                            h[((int64_t)ai * nb + bi) * ng + gi] += best == y;
                        }
            }
            if (cl && zk && h) {
#pragma omp critical(ct_susx_search)
                for (int64_t q = 0; q < cells; q++) hits[q] += h[q];
            }
            free(cl), free(zk), free(h);
        }
        if (fail) {
            st = ct_set_error(CT_ERR_NOMEM, "sus-x: out of memory");
            goto out;
        }
    }
    /* hparam_search keeps the first strictly better setting: alpha outer,
     * beta, gamma inner */
    int64_t best = -1;
    for (int64_t q = 0; q < cells; q++)
        if (hits[q] > best) {
            best = hits[q];
            s->alpha->data[0] = (float)al[q / ((int64_t)nb * ng)];
            int bi = (int)(q / ng % nb);
            s->beta->data[0] = (float)ct_cache_grid(bi, GRID_LO[B], s->scale[B], nb);
            s->gamma->data[0] = (float)gl[q % ng];
        }
out:
    free(hits), free(lab), free(z), free(aff), free(kl), free(al), free(gl);
    return st;
}

static ct_status sus_fit(void *st, const ct_task *task) {
    sus_state *s = st;
    const ct_features *pool = task->unlabelled_feats, *val = task->val_feats;
    int E = (int)s->keys->shape[1];
    if (s->keys->shape[0] != (int64_t)s->support * s->W->shape[0])
        return ct_set_error(CT_ERR_STATE, "sus-x: the support set holds %lld rows, not "
                            "support=%d x %lld classes (a loaded run is scored, not fitted)",
                            (long long)s->keys->shape[0], s->support,
                            (long long)s->W->shape[0]);
    if (!pool || !pool->x || pool->n == 0)
        return ct_set_error(CT_ERR_ARG, "sus-x: fit needs an unlabelled image pool "
                            "(task->unlabelled_feats; ct_run gives it the training split)");
    if (pool->dim != E)
        return ct_set_error(CT_ERR_ARG, "sus-x: the unlabelled pool's features have dim %d, "
                            "the model %d", pool->dim, E);
    if (pool->n < s->support)
        return ct_set_error(CT_ERR_ARG, "sus-x: support=%d images per class from a pool of "
                            "only %lld", s->support, (long long)pool->n);
    if (val && val->n > 0 && val->dim != E)
        return ct_set_error(CT_ERR_ARG, "sus-x: val features have dim %d, the model %d",
                            val->dim, E);
    ct_status r = curate(s, pool);
    if (r != CT_OK) return r;
    if ((r = ct_cache_values("sus-x", s->labels, &s->V, &s->v_labels)) != CT_OK) return r;
    float *logq = NULL;
    if ((r = support_log_signatures(s, &logq)) != CT_OK) return r;
    bool has_val = val && val->n > 0;
    /* scale_'s ranges: val's (as the search sees them), else the support's */
    r = has_val ? ranges(s, val->x, val->n, logq)
                : ranges(s, s->keys->data, s->keys->shape[0], logq);
    s->alpha->data[0] = s->init[A], s->beta->data[0] = s->init[B];
    s->gamma->data[0] = s->init[G];
    /* without val the init values stay: test is never searched on */
    if (r == CT_OK && s->search && has_val) r = search_hp(s, val, logq);
    free(logq);
    if (r == CT_OK && task->log) {
        char line[320];
        snprintf(line, sizeof line, "sus-x: support set of %lld (%d per class) from a pool of "
                 "%lld unlabelled images; alpha %.4g beta %.4g gamma %.4g (%s)",
                 (long long)s->keys->shape[0], s->support, (long long)pool->n,
                 (double)s->alpha->data[0], (double)s->beta->data[0],
                 (double)s->gamma->data[0], s->search && has_val ? "searched on val" :
                 "init values");
        task->log(task->log_ctx, line);
    }
    return r;
}

const ct_method ct_method_sus_x = {
    .name = "sus-x",
    .category = "adapter",
    .setup = "name-only, training-free",
    .paper = "Udandarao et al., SuS-X: Training-Free Name-Only Transfer of Vision-Language "
             "Models, ICCV 2023",
    .defaults = "templates=dataset support=16 temperature=0.5 search=1 alpha_scale=50 "
                "alpha_steps=20 beta_scale=50 beta_steps=200 gamma_scale=30 gamma_steps=50 "
                "init_alpha=1 init_beta=1 init_gamma=1 clip_scale=model",
    .create = sus_create,
    .destroy = sus_destroy,
    .params = sus_params,
    .param_names = sus_param_names,
    .logits = sus_logits,
    .fit = sus_fit,
    .wants_unlabelled = true,
};
