/* CALIP, zero-shot enhancement of CLIP with parameter-free attention (Guo
 * et al., AAAI 2023), after the official ZiyuGuo99/CALIP run_imagenet.py
 * (main: get_logits and the beta search), utils.py (text_encode),
 * clip/model.py (VisionTransformer.forward returning ln_post + proj of every
 * token; AttentionPool2d returning every position) and configs/imagenet.yaml
 * (beta2: 2.0, beta3: 0.1, search: True).
 *
 * Per image, every token feature L2-normalised (as the official), g the
 * global feature (the class token = the pooled embedding), F_s (S, E) the
 * spatial features (the patch tokens 1..T-1 of ln_post + proj, as the
 * official's total_features[:, 1:]; spatial=all adds the class token),
 * W (K, E) the zero-shot classifier with unit rows, c = clip_scale, by
 * default the model's exp(logit_scale) (the official hard-codes 100., which
 * is OpenAI CLIP's exp(logit_scale); clip_scale=100 computes that constant):
 *
 *   A      = F_s W^T                                     (S, K)
 *   F_t^a  = softmax_s(A / alpha_s)^T F_s                 (K, E) text updated by the image
 *   F_s^a  = softmax_k(A / alpha_t) W                     (S, E) image updated by the text
 *   f^a    = mean_s F_s^a + max_s F_s^a                   (E)    the official's pooling
 *   logits = beta1 c g W^T + beta2 c g F_t^a^T + beta3 c f^a W^T
 *
 * The official multiplies A by 2 before both softmaxes (alpha_t = alpha_s =
 * 0.5) and renormalises neither F_t^a nor f^a. beta1 = 1; (beta2, beta3) are
 * searched on the grids i (max - 0.001) / steps + 0.001, i < steps, beta2
 * outer, beta3 inner, the first strictly better accuracy kept, starting from
 * (0, 0) at accuracy 0: the official's loop, which runs on the test set;
 * here fit() runs it on val only, and without val the option values stay.
 * The three betas are the run's learned tensor, so a saved run reproduces
 * its scores; its name is "betas" (beta1, beta2, beta3: run_imagenet.py
 * keeps them as plain numbers and saves none).
 *
 * The method scores whole feature sets through ct_method.predict_features
 * (ct_predict calls it), chunk by chunk; logits() is an error (a batch's
 * dense rows, ct_batch.dense, are not used here). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/blas.h"
#include "base/error.h"
#include "methods/method_common.h"

#define CALIP_BETA_MIN 0.001 /* the official grids' first value */

typedef struct {
    ct_tensor *W;     /* (K, E) zero-shot classifier, unit rows             */
    ct_tensor *betas; /* (3) beta1, beta2, beta3: what logits() uses, saved */
    float alpha_t, alpha_s, clip_scale;
    int search, steps, all_tokens;
    double beta2_max, beta3_max;
} calip_state;

static void calip_destroy(void *st) {
    calip_state *s = st;
    if (!s) return;
    ct_tensor_free(s->W), ct_tensor_free(s->betas);
    free(s);
}

static ct_status read_hp(calip_state *s, const ct_task *task, ct_kv *hp, double b[3]) {
    double at, as;
    float cs = 0;
    const char *tokens;
    ct_status st = CT_OK;
#define TRY(x) \
    if (st == CT_OK) st = (x)
    TRY(ct_kv_double(hp, "alpha_t", 0.5, &at));
    TRY(ct_kv_double(hp, "alpha_s", 0.5, &as));
    TRY(ct_kv_double(hp, "beta1", 1, &b[0]));
    TRY(ct_kv_double(hp, "beta2", 1, &b[1]));
    TRY(ct_kv_double(hp, "beta3", 0.05, &b[2]));
    TRY(ct_kv_int(hp, "search", 1, &s->search));
    TRY(ct_kv_double(hp, "beta2_max", 2, &s->beta2_max));
    TRY(ct_kv_double(hp, "beta3_max", 0.1, &s->beta3_max));
    TRY(ct_kv_int(hp, "steps", 200, &s->steps));
    TRY(ct_kv_clip_scale(hp, "clip_scale", task, "calip", &cs));
    TRY(ct_kv_str(hp, "spatial", "patches", &tokens));
#undef TRY
    if (st != CT_OK) return st;
    if (!(at > 0) || !(as > 0) || !isfinite(at) || !isfinite(as))
        return ct_set_error(CT_ERR_ARG, "calip: alpha_t=%g and alpha_s=%g must be finite and "
                            "> 0", at, as);
    if (!isfinite(b[0]) || !isfinite(b[1]) || !isfinite(b[2]))
        return ct_set_error(CT_ERR_ARG, "calip: beta1=%g, beta2=%g and beta3=%g must be finite",
                            b[0], b[1], b[2]);
    if (s->search != 0 && s->search != 1)
        return ct_set_error(CT_ERR_ARG, "calip: search=%d must be 0 or 1", s->search);
    if (!isfinite(s->beta2_max) || !isfinite(s->beta3_max) || s->steps < 1)
        return ct_set_error(CT_ERR_ARG, "calip: beta2_max=%g / beta3_max=%g must be finite and "
                            "steps=%d >= 1", s->beta2_max, s->beta3_max, s->steps);
    if (!strcmp(tokens, "patches")) s->all_tokens = 0;
    else if (!strcmp(tokens, "all")) s->all_tokens = 1;
    else return ct_set_error(CT_ERR_ARG, "calip: spatial=%s (patches, all)", tokens);
    s->alpha_t = (float)at, s->alpha_s = (float)as, s->clip_scale = cs;
    return CT_OK;
}

static ct_status calip_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    calip_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "calip: out of memory");
    const char *tmpl, *zs;
    double b[3];
    ct_status st = ct_kv_str(hp, "templates", "dataset", &tmpl);
    if (st == CT_OK) st = ct_kv_str(hp, "zs_weights", "", &zs);
    if (st == CT_OK) st = read_hp(s, task, hp, b);
    if (st == CT_OK) {
        int64_t three = 3;
        s->W = ct_tensor_new2(task->n_classes, ct_clip_get_config(task->clip)->embed_dim, false);
        s->betas = ct_tensor_new(1, &three, false);
        if (!s->W || !s->betas) st = ct_set_error(CT_ERR_NOMEM, "calip: out of memory");
    }
    if (st == CT_OK) st = ct_zeroshot_classifier(task, zs, tmpl, true, s->W->data);
    if (st != CT_OK) {
        calip_destroy(s);
        return st;
    }
    s->betas->name = "calip.betas";
    for (int i = 0; i < 3; i++) s->betas->data[i] = (float)b[i];
    *out = s;
    return CT_OK;
}

static int calip_params(void *st, ct_tensor **out, int cap) {
    calip_state *s = st;
    if (cap < 1) return 0;
    out[0] = s->betas;
    return 1;
}

static int calip_param_names(void *st, const char **out, int cap) {
    (void)st;
    if (cap < 1) return 0;
    out[0] = "betas";
    return 1;
}

/* ---- the three logit terms ---- */

static void unit(float *y, const float *x, int E) {
    double ss = 0;
    for (int d = 0; d < E; d++) ss += (double)x[d] * x[d];
    float inv = ss > 0 ? (float)(1 / sqrt(ss)) : 0;
    for (int d = 0; d < E; d++) y[d] = x[d] * inv;
}

static float dot(const float *a, const float *b, int E) {
    float acc = 0;
    for (int d = 0; d < E; d++) acc += a[d] * b[d];
    return acc;
}

/* For n images (global features x (n, E), per-token features dense (n, T,
 * E)): zs = c g W^T, l1 = c g F_t^a^T, l2 = c f^a W^T, each (n, K), before
 * the betas. Images go in chunks so the (S, K) maps of a chunk stay small. */
static ct_status calip_terms(const calip_state *s, int64_t n, const float *x, const float *dense,
                             int T, float *zs, float *l1, float *l2) {
    int K = (int)s->W->shape[0], E = (int)s->W->shape[1];
    int t0 = s->all_tokens ? 0 : 1, S = T - t0;
    if (!dense)
        return ct_set_error(CT_ERR_ARG, "calip: the features carry no dense (per-token) "
                            "features; CALIP needs them (computed when the method sets "
                            "dense_features)");
    if (S < 1)
        return ct_set_error(CT_ERR_ARG, "calip: %d tokens per image leave no spatial tokens "
                            "(spatial=%s)", T, s->all_tokens ? "all" : "patches");
    if (n == 0) return CT_OK;
    const float *W = s->W->data;
    int64_t per = (int64_t)S * (K > E ? K : E);
    int64_t R = (int64_t)1 << 22;
    R = per < R ? R / per : 1;
    if (R > n) R = n;
    float *fs = malloc((size_t)R * S * E * sizeof *fs);
    float *A = malloc((size_t)R * S * K * sizeof *A);
    float *P = malloc((size_t)R * S * K * sizeof *P);
    float *Fa = malloc((size_t)R * S * E * sizeof *Fa);
    float *g = malloc((size_t)R * E * sizeof *g);
    float *v = malloc((size_t)R * E * sizeof *v);
    float *gs = malloc((size_t)R * S * sizeof *gs);
    ct_status st = CT_OK;
    if (!fs || !A || !P || !Fa || !g || !v || !gs) {
        st = ct_set_error(CT_ERR_NOMEM, "calip: out of memory");
        goto out;
    }
    const float c = s->clip_scale, it = 1 / s->alpha_t, is = 1 / s->alpha_s;
    for (int64_t i0 = 0; i0 < n; i0 += R) {
        int r = (int)(n - i0 < R ? n - i0 : R);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < r; i++) {
            unit(g + (int64_t)i * E, x + (i0 + i) * E, E);
            for (int t = 0; t < S; t++)
                unit(fs + ((int64_t)i * S + t) * E, dense + ((i0 + i) * T + t0 + t) * E, E);
        }
        ct_gemm(false, true, r * S, K, E, 1, fs, E, W, E, 0, A, K); /* A (r S, K) */
#pragma omp parallel for schedule(static)
        for (int i = 0; i < r; i++) {
            const float *gi = g + (int64_t)i * E, *Ai = A + (int64_t)i * S * K;
            float *Pi = P + (int64_t)i * S * K;
            float *zi = zs + (i0 + i) * K, *l1i = l1 + (i0 + i) * K;
            /* the softmax over k of each row, image updated by the text */
            for (int t = 0; t < S; t++) {
                const float *a = Ai + (int64_t)t * K;
                float mx = a[0];
                for (int k = 1; k < K; k++) mx = a[k] > mx ? a[k] : mx;
                float *p = Pi + (int64_t)t * K;
                double sum = 0;
                for (int k = 0; k < K; k++) sum += p[k] = expf((a[k] - mx) * it);
                float inv = (float)(1 / sum);
                for (int k = 0; k < K; k++) p[k] *= inv;
            }
            /* the softmax over s of each column, text updated by the image:
             * g . F_t^a[k] = sum_s softmax_s(A[:, k]) (g . F_s[s]) */
            float *gsi = gs + (int64_t)i * S;
            for (int t = 0; t < S; t++) gsi[t] = dot(gi, fs + ((int64_t)i * S + t) * E, E);
            for (int k = 0; k < K; k++) {
                float mx = Ai[k];
                for (int t = 1; t < S; t++) {
                    float a = Ai[(int64_t)t * K + k];
                    mx = a > mx ? a : mx;
                }
                double sum = 0, acc = 0;
                for (int t = 0; t < S; t++) {
                    double e = expf((Ai[(int64_t)t * K + k] - mx) * is);
                    sum += e, acc += e * gsi[t];
                }
                l1i[k] = (float)(c * acc / sum);
                zi[k] = c * dot(gi, W + (int64_t)k * E, E);
            }
        }
        ct_gemm(false, false, r * S, E, K, 1, P, K, W, E, 0, Fa, E); /* F_s^a (r S, E) */
#pragma omp parallel for schedule(static)
        for (int i = 0; i < r; i++) {
            const float *Fi = Fa + (int64_t)i * S * E;
            float *vi = v + (int64_t)i * E;
            for (int d = 0; d < E; d++) {
                double sum = 0;
                float mx = -FLT_MAX;
                for (int t = 0; t < S; t++) {
                    float f = Fi[(int64_t)t * E + d];
                    sum += f, mx = f > mx ? f : mx;
                }
                vi[d] = (float)(sum / S) + mx;
            }
            for (int k = 0; k < K; k++) l2[(i0 + i) * K + k] = c * dot(vi, W + (int64_t)k * E, E);
        }
    }
out:
    free(fs), free(A), free(P), free(Fa), free(g), free(v), free(gs);
    return st;
}

/* Scores (n, K) of whole features, dense tokens included; ct_predict comes
 * here (ct_method.predict_features). */
static ct_status calip_predict(void *st, const ct_features *f, float *scores) {
    calip_state *s = st;
    int64_t K = s->W->shape[0], B = 256;
    if (f->dim != s->W->shape[1])
        return ct_set_error(CT_ERR_ARG, "calip: features have dim %d, the model %lld", f->dim,
                            (long long)s->W->shape[1]);
    float *l1 = malloc((size_t)B * (size_t)K * sizeof *l1);
    float *l2 = malloc((size_t)B * (size_t)K * sizeof *l2);
    ct_status st2 = l1 && l2 ? CT_OK : ct_set_error(CT_ERR_NOMEM, "calip: out of memory");
    const float *be = s->betas->data;
    for (int64_t i0 = 0; st2 == CT_OK && i0 < f->n; i0 += B) {
        int64_t r = f->n - i0 < B ? f->n - i0 : B;
        float *z = scores + i0 * K;
        st2 = calip_terms(s, r, f->x + i0 * f->dim,
                          f->dense ? f->dense + i0 * f->n_tokens * f->dim : NULL, f->n_tokens, z,
                          l1, l2);
        for (int64_t j = 0; st2 == CT_OK && j < r * K; j++)
            z[j] = be[0] * z[j] + be[1] * l1[j] + be[2] * l2[j];
    }
    free(l1), free(l2);
    return st2;
}

/* CALIP scores whole feature sets only (calip_predict). */
static ct_tensor *calip_logits(void *st, ct_graph *g, const ct_batch *b) {
    ct_set_error(CT_ERR_ARG, "calip: scores whole feature sets (ct_predict), not batches");
    return NULL;
}

/* ---- the (beta2, beta3) search on val ---- */

static double grid_value(int i, double max, int steps) {
    return i * (max - CALIP_BETA_MIN) / steps + CALIP_BETA_MIN; /* the official's lists */
}

/* argmax over k of base[k] + b3 c[k], the first on ties */
static int64_t argmax_at(const double *base, const float *c, int64_t K, double b3) {
    double bv = base[0] + b3 * c[0];
    int64_t best = 0;
    for (int64_t k = 1; k < K; k++) {
        double v = base[k] + b3 * c[k];
        if (v > bv) bv = v, best = k;
    }
    return best;
}

/* Along the beta3 grid the scores are lines in the grid index j, so best
 * (the argmax at j) can only lose to a line of larger slope. The first index
 * after j where the argmax may differ: one step before the earliest crossing
 * (so that rounding at a crossing cannot carry best past it), at least j + 1.
 * The caller re-evaluates there; the grid costs O(K) per change of the
 * argmax instead of O(K) per point. */
static int next_change(const double *base, const float *c, int64_t K, int64_t best, int j,
                       double max, int steps) {
    double d = (max - CALIP_BETA_MIN) / steps, b3 = grid_value(j, max, steps);
    double next = steps;
    for (int64_t k = 0; k < K; k++) {
        double slope = ((double)c[k] - c[best]) * d; /* gain on best per grid step */
        if (!(slope > 0)) continue;
        double gap = base[best] + b3 * c[best] - (base[k] + b3 * c[k]); /* >= 0 */
        double t = j + floor(gap / slope); /* the last step k surely stays below */
        if (t < next) next = t;
    }
    return next <= j ? j + 1 : (int)next;
}

static ct_status search_betas(calip_state *s, const ct_features *val) {
    int64_t n = val->n, K = s->W->shape[0];
    int ns = s->steps;
    if (val->dim != s->W->shape[1])
        return ct_set_error(CT_ERR_ARG, "calip: val features have dim %d, the model %lld",
                            val->dim, (long long)s->W->shape[1]);
    float *zs = malloc((size_t)n * (size_t)K * 3 * sizeof *zs);
    int64_t *hits = calloc((size_t)ns * (size_t)ns, sizeof *hits);
    ct_status st = zs && hits ? CT_OK : ct_set_error(CT_ERR_NOMEM, "calip: out of memory");
    if (st == CT_OK)
        st = calip_terms(s, n, val->x, val->dense, val->n_tokens, zs, zs + n * K, zs + 2 * n * K);
    if (st != CT_OK) goto out;
    const float *l1 = zs + n * K, *l2 = zs + 2 * n * K;
    double b1 = s->betas->data[0];
    int fail = 0;
#pragma omp parallel reduction(| : fail)
    {
        /* each thread counts into its own grid: integer sums, the same totals
         * for any thread count */
        int64_t *h = calloc((size_t)ns * (size_t)ns, sizeof *h);
        double *base = malloc((size_t)K * sizeof *base);
        fail = !h || !base;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < n; i++) {
            if (!h || !base) continue;
            const float *z = zs + i * K, *a = l1 + i * K, *c = l2 + i * K;
            int y = val->labels[i];
            for (int bi = 0; bi < ns; bi++) {
                double b2 = grid_value(bi, s->beta2_max, ns);
                for (int64_t k = 0; k < K; k++) base[k] = b1 * z[k] + b2 * a[k];
                int64_t *hrow = h + (int64_t)bi * ns;
                for (int bj = 0; bj < ns;) {
                    int64_t best = argmax_at(base, c, K, grid_value(bj, s->beta3_max, ns));
                    int next = next_change(base, c, K, best, bj, s->beta3_max, ns);
                    if (best == y)
                        for (int q = bj; q < next; q++) hrow[q]++;
                    bj = next;
                }
            }
        }
        if (h && base) {
#pragma omp critical(ct_calip_search)
            for (int64_t q = 0; q < (int64_t)ns * ns; q++) hits[q] += h[q];
        }
        free(h), free(base);
    }
    if (fail) {
        st = ct_set_error(CT_ERR_NOMEM, "calip: out of memory");
        goto out;
    }
    /* the official: best_acc = 0, best betas (0, 0), `if acc > best_acc` */
    int64_t best = 0;
    s->betas->data[1] = s->betas->data[2] = 0;
    for (int bi = 0; bi < ns; bi++)
        for (int bj = 0; bj < ns; bj++)
            if (hits[(int64_t)bi * ns + bj] > best) {
                best = hits[(int64_t)bi * ns + bj];
                s->betas->data[1] = (float)grid_value(bi, s->beta2_max, ns);
                s->betas->data[2] = (float)grid_value(bj, s->beta3_max, ns);
            }
out:
    free(zs), free(hits);
    return st;
}

static ct_status calip_fit(void *st, const ct_task *task) {
    calip_state *s = st;
    /* without val the option values stay: test is never searched on */
    if (s->search && task->val_feats && task->val_feats->n > 0)
        return search_betas(s, task->val_feats);
    return CT_OK;
}

const ct_method ct_method_calip = {
    .name = "calip",
    .category = "training-free",
    .setup = "zero-shot, training-free",
    .paper = "Guo et al., CALIP: Zero-Shot Enhancement of CLIP with Parameter-free Attention, "
             "AAAI 2023",
    .defaults = "templates=dataset alpha_t=0.5 alpha_s=0.5 beta1=1 beta2=1 beta3=0.05 search=1 "
                "beta2_max=2 beta3_max=0.1 steps=200 clip_scale=model spatial=patches",
    .create = calip_create,
    .destroy = calip_destroy,
    .params = calip_params,
    .param_names = calip_param_names,
    .logits = calip_logits,
    .fit = calip_fit,
    .dense_features = true,
    .predict_features = calip_predict,
};
