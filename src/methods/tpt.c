/* TPT, test-time prompt tuning (Shu et al., "Test-Time Prompt Tuning for
 * Zero-Shot Generalization in Vision-Language Models", NeurIPS 2022).
 * Followed: azshue/TPT at 63ecbac, tpt_classification.py (main_worker,
 * test_time_adapt_eval, test_time_tuning, select_confident_samples,
 * avg_entropy, its argument defaults and scripts/test_tpt*.sh),
 * clip/custom_clip.py (PromptLearner, ClipTestTimeTuning: reset, inference)
 * and data/datautils.py + data/augmix_ops.py (AugMixAugmenter, augmix; see
 * src/data/augmix.h).
 *
 * Per test image, independently of every other:
 *   1. views: the image under the model's evaluation transform, and
 *      n_views - 1 augmented views (random resized crop + flip of the
 *      original image, then AugMix: what AugMixAugmenter does for the
 *      fine-grained / generic datasets, len(set_id) > 1; augmix=0 gives its
 *      ImageNet-variant setting, crop + flip only);
 *   2. reset the context to its initial value and the AdamW state to empty
 *      (model.reset(), optimizer.load_state_dict(optim_state));
 *   3. logits of all views, CLIP's exp(logit_scale) * cos(image, prompt_k)
 *      with CoOp's prompts "[SOT] v_1..v_M {class}. [EOT]" (the shared
 *      prompt learner, method_prompt.c), image features frozen and computed
 *      once;
 *   4. keep the int(n_views * select) views of lowest prediction entropy
 *      (select_confident_samples; chosen at the first step, kept after);
 *   5. loss = entropy of their average prediction, computed as avg_entropy
 *      does: avg = logsumexp_i(log_softmax(logits_i)) - log n (the log of the
 *      mean probability), loss = -sum_k exp(avg_k) avg_k;
 *   6. one AdamW step (torch defaults: betas 0.9/0.999, eps 1e-8, weight
 *      decay 0.01) at lr 5e-3 on the context; `steps` of them;
 *   7. predict the original view with the tuned context.
 * The context starts from the word embeddings of "a photo of a" (n_ctx = 4,
 * scripts/test_tpt.sh) or from a trained CoOp run (init_from=<run dir>,
 * test_tpt_coop.sh's --load: its learned generic context, its prompt layout).
 *
 * Differences: float32 throughout (the official runs under CUDA autocast
 * with a GradScaler, whose scaling cancels); at least one view is kept
 * (int(n * select) = 0 gives the official an empty selection and NaN);
 * ties in the entropy order keep the lower view index; random numbers are
 * ours: the views come from the shared pixel source (src/data/pixels.h,
 * augmix set), a stream per (run seed, view, item index), so an image's
 * prediction does not depend on which other images are scored or on the
 * thread count.
 *
 * Learned tensor name: "ctx", the context every image starts from (the
 * official's prompt_learner.ctx_init_state, which tpt_classification.py
 * loads from a CoOp checkpoint's state_dict['ctx']); init_from reads a CoOp
 * run's "ctx" (or "param.0", as runs saved before names were). */
#include "methods/tpt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"
#include "base/json.h"
#include "data/augmix.h"
#include "data/pixels.h"
#include "methods/method_prompt.h"

#define TPT_CHUNK 16 /* views per image-tower pass */

typedef struct {
    ct_prompt *p;
    ct_tensor *ctx;     /* (n_ctx, W): the prompt's context, tuned per image       */
    ct_tensor *init;    /* (n_ctx, W): its starting value (saved with the run)      */
    ct_optim *opt;
    const ct_clip *clip;
    int K, E, n_views, steps, severity;
    bool augmix;
    double select;
    float lr;
    ct_graph *g;
    float *feats;       /* (cap, E) image features of the views                    */
    int cap;
} tpt_state;

static void tpt_destroy(void *st) {
    tpt_state *s = st;
    if (!s) return;
    ct_prompt_destroy(s->p);
    ct_tensor_free(s->init);
    ct_optim_free(s->opt);
    ct_graph_free(s->g);
    free(s->feats);
    free(s);
}

/* A trained CoOp-family run's generic context ("ctx", or "param.0" in a run
 * saved before methods named their tensors, of its learned.safetensors,
 * (n_ctx, W)) and, from its config.json when there, its
 * class token position. */
static ct_status load_init(const char *dir, int W, float **ctx, int *n_ctx, char *pos,
                           size_t pos_n) {
    char path[4200];
    snprintf(path, sizeof path, "%s/learned.safetensors", dir);
    ct_safetensors *st = ct_safetensors_open(path);
    if (!st) return ct_set_error(CT_ERR_IO, "tpt: init_from: %s", ct_last_error());
    const char *m = ct_safetensors_meta(st, "method");
    const ct_st_tensor *t = ct_safetensors_find(st, "ctx");
    if (!t) t = ct_safetensors_find(st, "param.0"); /* saved before params had names */
    ct_status s = CT_OK;
    if (!m || (strcmp(m, "coop") && strcmp(m, "kgcoop") && strcmp(m, "prograd")))
        s = ct_set_error(CT_ERR_FORMAT, "tpt: init_from: %s was saved by %s, not a CoOp-family "
                         "method (coop, kgcoop, prograd)", path, m ? m : "(unknown)");
    else if (!t || t->dtype != CT_F32 || t->ndim != 2 || t->shape[1] != W || t->shape[0] < 1 ||
             t->shape[0] > CT_CLIP_CONTEXT_LENGTH - 3)
        s = ct_set_error(CT_ERR_FORMAT, "tpt: init_from: %s has no generic context (n_ctx, %d) "
                         "(class-specific contexts are not supported)", path, W);
    if (s == CT_OK) {
        *n_ctx = (int)t->shape[0];
        *ctx = malloc(t->nbytes);
        if (!*ctx) s = ct_set_error(CT_ERR_NOMEM, "tpt: out of memory");
        else memcpy(*ctx, t->data, t->nbytes);
    }
    ct_safetensors_close(st);
    if (s != CT_OK) return s;
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return CT_OK; /* keep the tpt option */
    fclose(f);
    cJSON *j = ct_json_load(path);
    if (!j) return ct_set_error(CT_ERR_FORMAT, "tpt: init_from: %s", ct_last_error());
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "hyper_parameters");
    const cJSON *p = h ? cJSON_GetObjectItemCaseSensitive(h, "class_token_position") : NULL;
    if (cJSON_IsString(p)) snprintf(pos, pos_n, "%s", p->valuestring);
    cJSON_Delete(j);
    return CT_OK;
}

static ct_status tpt_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    int n_ctx, n_views, steps, augmix, severity, shared;
    double select, lr, wd;
    const char *init, *where, *from;
    ct_status s = CT_OK;
#define TRY(x) \
    if (s == CT_OK) s = (x)
    TRY(ct_kv_int(hp, "n_ctx", 4, &n_ctx));
    TRY(ct_kv_str(hp, "ctx_init", "a_photo_of_a", &init));
    TRY(ct_kv_str(hp, "class_token_position", "end", &where));
    TRY(ct_kv_int(hp, "shared_prefix", 1, &shared));
    TRY(ct_kv_int(hp, "n_views", 64, &n_views));
    TRY(ct_kv_double(hp, "selection_p", 0.1, &select));
    TRY(ct_kv_int(hp, "steps", 1, &steps));
    TRY(ct_kv_double(hp, "lr", 5e-3, &lr));
    TRY(ct_kv_double(hp, "weight_decay", 0.01, &wd));
    TRY(ct_kv_int(hp, "augmix", 1, &augmix));
    TRY(ct_kv_int(hp, "severity", 1, &severity));
    TRY(ct_kv_str(hp, "init_from", "", &from));
#undef TRY
    if (s != CT_OK) return s;
    if (n_views < 1 || n_views > 4096)
        return ct_set_error(CT_ERR_ARG, "tpt: n_views=%d (1 .. 4096)", n_views);
    if (!(select > 0 && select <= 1))
        return ct_set_error(CT_ERR_ARG, "tpt: selection_p=%g (a fraction in (0, 1])", select);
    if (steps < 0) return ct_set_error(CT_ERR_ARG, "tpt: steps=%d (>= 0)", steps);
    if (!(lr >= 0) || !(wd >= 0))
        return ct_set_error(CT_ERR_ARG, "tpt: lr=%g weight_decay=%g (>= 0)", lr, wd);
    if (augmix != 0 && augmix != 1) return ct_set_error(CT_ERR_ARG, "tpt: augmix=%d (0 or 1)",
                                                        augmix);
    if (severity < 1 || severity > 10)
        return ct_set_error(CT_ERR_ARG, "tpt: severity=%d (1 .. 10)", severity);
    const ct_clip_config *c = ct_clip_get_config(task->clip);
    float *from_ctx = NULL;
    char pos[32], nbuf[16], sbuf[16];
    snprintf(pos, sizeof pos, "%s", where);
    if (*from) {
        /* the CoOp run's context replaces ctx_init, as test_tpt_coop.sh passes none */
        if ((s = load_init(from, c->text_width, &from_ctx, &n_ctx, pos, sizeof pos)) != CT_OK)
            return s;
        init = "";
    }
    /* the shared prompt learner, with a generic context */
    ct_kv pk = {0};
    snprintf(nbuf, sizeof nbuf, "%d", n_ctx);
    snprintf(sbuf, sizeof sbuf, "%d", shared);
    s = ct_kv_set(&pk, "n_ctx", nbuf);
    if (s == CT_OK) s = ct_kv_set(&pk, "ctx_init", init);
    if (s == CT_OK) s = ct_kv_set(&pk, "class_token_position", pos);
    if (s == CT_OK) s = ct_kv_set(&pk, "shared_prefix", sbuf);
    if (s == CT_OK) s = ct_kv_set(&pk, "csc", "0");
    tpt_state *t = s == CT_OK ? calloc(1, sizeof *t) : NULL;
    if (s == CT_OK && !t) s = ct_set_error(CT_ERR_NOMEM, "tpt: out of memory");
    if (s == CT_OK) s = ct_prompt_create(task, &pk, 0, (void **)&t->p);
    ct_kv_free(&pk);
    if (s == CT_OK) {
        t->clip = task->clip;
        t->ctx = ct_prompt_ctx(t->p);
        t->K = task->n_classes, t->E = c->embed_dim;
        t->n_views = n_views, t->steps = steps, t->severity = severity;
        t->augmix = augmix, t->select = select, t->lr = (float)lr;
        t->init = ct_tensor_new(t->ctx->ndim, t->ctx->shape, false);
        t->g = ct_graph_create(0);
        if (!t->init || !t->g) s = ct_set_error(CT_ERR_NOMEM, "tpt: out of memory");
    }
    if (s == CT_OK) {
        if (from_ctx) memcpy(t->ctx->data, from_ctx, (size_t)t->ctx->numel * sizeof(float));
        memcpy(t->init->data, t->ctx->data, (size_t)t->ctx->numel * sizeof(float));
        t->init->name = "tpt.ctx_init";
        ct_optim_config oc = ct_optim_default(CT_OPTIM_ADAMW, (float)lr);
        oc.weight_decay = (float)wd;
        t->opt = ct_optim_create(&oc, &t->ctx, 1);
        if (!t->opt) s = ct_last_error()[0] ? CT_ERR_ARG : ct_set_error(CT_ERR_NOMEM, "tpt: out "
                                                                        "of memory");
    }
    free(from_ctx);
    if (s != CT_OK) {
        tpt_destroy(t);
        return s;
    }
    *out = t;
    return CT_OK;
}

/* The initial context: saved with the run, so a run made with init_from
 * reloads the context it started from. Frozen (nothing trains it). */
static int tpt_params(void *st, ct_tensor **out, int cap) {
    tpt_state *s = st;
    if (cap < 1) return 0;
    out[0] = s->init;
    return 1;
}

static int tpt_param_names(void *st, const char **out, int cap) {
    (void)st;
    if (cap < 1) return 0;
    out[0] = "ctx";
    return 1;
}

static void restore_ctx(tpt_state *s) {
    memcpy(s->ctx->data, s->init->data, (size_t)s->ctx->numel * sizeof(float));
}

/* Class scores of cached features under the initial context: TPT without
 * its test-time step (CoOp's logits with the starting prompt). */
static ct_tensor *tpt_logits(void *st, ct_graph *g, const ct_batch *b) {
    tpt_state *s = st;
    restore_ctx(s);
    return ct_prompt_logits(s->p, g, b);
}

/* TPT's avg_entropy on logits (n, K): avg_k = logsumexp_i log p_ik - log n
 * (log of the mean probability; the column maximum is a constant shift, so
 * the logsumexp never takes log 0), loss = -sum_k exp(avg_k) avg_k. */
static ct_tensor *avg_entropy(ct_graph *g, ct_tensor *logits) {
    ct_tensor *lp = ct_log_softmax(g, logits);
    if (!lp) return NULL;
    int64_t n = lp->shape[0], K = lp->shape[1];
    ct_tensor *mx = ct_graph_tensor(g, 1, &K), *shift = ct_graph_tensor(g, 1, &K);
    if (!mx || !shift) return NULL;
    for (int64_t k = 0; k < K; k++) {
        float m = lp->data[k];
        for (int64_t i = 1; i < n; i++) m = lp->data[i * K + k] > m ? lp->data[i * K + k] : m;
        mx->data[k] = m;
        shift->data[k] = (float)((double)m - log((double)n));
    }
    ct_tensor *sum = ct_sum(g, ct_exp(g, ct_sub(g, lp, mx)), 0);   /* (K) */
    ct_tensor *avg = ct_add(g, ct_log(g, sum), shift);              /* (K) */
    return ct_scale(g, ct_sum_all(g, ct_mul(g, avg, ct_exp(g, avg))), -1.0f);
}

/* Per-row softmax entropy of logits (n, K), in double. */
static void row_entropy(const float *lg, int64_t n, int64_t K, double *h) {
    for (int64_t i = 0; i < n; i++) {
        const float *r = lg + i * K;
        double mx = r[0], z = 0, e = 0;
        for (int64_t k = 1; k < K; k++) mx = r[k] > mx ? r[k] : mx;
        for (int64_t k = 0; k < K; k++) z += exp((double)r[k] - mx);
        double lz = log(z);
        for (int64_t k = 0; k < K; k++) {
            double lp = (double)r[k] - mx - lz;
            e -= exp(lp) * lp;
        }
        h[i] = e;
    }
}

ct_status ct_tpt_adapt(void *st, const float *views, int V, float *scores, ct_tpt_trace *tr) {
    tpt_state *s = st;
    const ct_clip_config *c = ct_clip_get_config(s->clip);
    int S = c->image_size, E = s->E, K = s->K;
    size_t per = (size_t)3 * S * S;
    if (V < 1) return ct_set_error(CT_ERR_ARG, "tpt: no views");
    if (V > s->cap) {
        float *f = realloc(s->feats, (size_t)V * E * sizeof *f);
        if (!f) return ct_set_error(CT_ERR_NOMEM, "tpt: out of memory");
        s->feats = f, s->cap = V;
    }
    ct_graph *g = s->g;
    ct_status st_ = CT_OK;
    /* frozen image features of every view, once */
    for (int v0 = 0; v0 < V && st_ == CT_OK; v0 += TPT_CHUNK) {
        int64_t nb = V - v0 < TPT_CHUNK ? V - v0 : TPT_CHUNK, shape[4] = {nb, 3, S, S};
        ct_graph_reset(g);
        ct_graph_set_grad(g, false);
        ct_tensor *e = ct_clip_encode_image(
            g, s->clip, ct_graph_wrap(g, (ct_real *)views + (size_t)v0 * per, 4, shape), NULL,
            false, NULL);
        if (!e) st_ = ct_graph_status(g);
        else memcpy(s->feats + (size_t)v0 * E, e->data, (size_t)nb * E * sizeof(float));
    }
    if (st_ != CT_OK) return st_;
    restore_ctx(s);
    ct_optim_state os = ct_optim_get_state(s->opt);
    if (os.buf1) memset(os.buf1, 0, os.n * sizeof *os.buf1);
    if (os.buf2) memset(os.buf2, 0, os.n * sizeof *os.buf2);
    memset(os.steps, 0, (size_t)os.n_params * sizeof *os.steps);
    int n_sel = (int)((double)V * s->select);
    if (n_sel < 1) n_sel = 1;
    int64_t *sel = malloc((size_t)V * sizeof *sel);
    double *h = malloc((size_t)V * sizeof *h);
    if (!sel || !h) st_ = ct_set_error(CT_ERR_NOMEM, "tpt: out of memory");
    ct_batch all = {.n = V, .x = s->feats};
    for (int step = 0; step < s->steps && st_ == CT_OK; step++) {
        ct_graph_reset(g);
        ct_graph_set_grad(g, true);
        ct_optim_zero_grad(s->opt);
        ct_tensor *lg = ct_prompt_scores(s->p, g, &all, ct_prompt_text_features(s->p, g));
        if (!lg) {
            st_ = ct_graph_status(g);
            break;
        }
        if (step == 0) {
            /* the most confident views, by rising entropy (stable order) */
            row_entropy(lg->data, V, K, h);
            for (int i = 0; i < V; i++) sel[i] = i;
            for (int i = 1; i < V; i++) { /* insertion sort: V is small */
                int64_t x = sel[i];
                int j = i;
                for (; j > 0 && h[sel[j - 1]] > h[x]; j--) sel[j] = sel[j - 1];
                sel[j] = x;
            }
            if (tr && tr->entropy)
                for (int i = 0; i < V; i++) tr->entropy[i] = (float)h[i];
            if (tr && tr->selected) {
                for (int i = 0; i < n_sel; i++) tr->selected[i] = (int)sel[i];
                tr->n_selected = n_sel;
            }
        }
        int64_t ns = n_sel;
        ct_tensor *loss = avg_entropy(g, ct_gather_rows(g, lg, sel, 1, &ns));
        if (!loss || (st_ = ct_backward(g, loss)) != CT_OK) {
            if (st_ == CT_OK) st_ = ct_graph_status(g);
            break;
        }
        if (step == 0 && tr) {
            tr->loss = loss->data[0];
            if (tr->grad) memcpy(tr->grad, s->ctx->grad, (size_t)s->ctx->numel * sizeof(float));
        }
        st_ = ct_optim_step(s->opt, s->lr);
    }
    free(sel), free(h);
    if (st_ == CT_OK) {
        /* the original view under the tuned context */
        ct_graph_reset(g);
        ct_graph_set_grad(g, false);
        ct_batch one = {.n = 1, .x = s->feats};
        ct_tensor *lg = ct_prompt_scores(s->p, g, &one, ct_prompt_text_features(s->p, g));
        if (!lg) st_ = ct_graph_status(g);
        else memcpy(scores, lg->data, (size_t)K * sizeof *scores);
    }
    if (st_ == CT_OK && tr && tr->ctx)
        memcpy(tr->ctx, s->ctx->data, (size_t)s->ctx->numel * sizeof(float));
    restore_ctx(s);
    return st_;
}

/* Views of item i through the pixel source: the evaluation transform, then
 * AugMix views drawn from (seed, view, item). */
static ct_status make_views(const tpt_state *s, const ct_task *task, const ct_dataset *d,
                            int64_t i, float *px) {
    int S = ct_clip_get_config(s->clip)->image_size;
    size_t per = (size_t)3 * S * S;
    ct_image img;
    ct_status st = ct_dataset_image(d, i, &img);
    if (st != CT_OK) return st;
    ct_augmix_cfg am = {s->severity, s->augmix};
    ct_pixel_src src = {d, task->pre, S, NULL, ct_hash_str(task->seed, "tpt.views"), "tpt", &am};
    ct_first_error fe;
    ct_first_error_init(&fe);
#pragma omp parallel for schedule(dynamic, 1)
    for (int v = 0; v < s->n_views; v++)
        ct_first_error_note(&fe, v, ct_pixels_from_image(&src, &img, i, (uint64_t)v,
                                                         px + (size_t)v * per));
    st = ct_first_error_raise(&fe);
    ct_image_free(&img);
    return st;
}

static ct_status tpt_predict_images(void *st, const ct_task *task, const ct_dataset *d,
                                    float *scores) {
    tpt_state *s = st;
    int S = ct_clip_get_config(s->clip)->image_size;
    size_t per = (size_t)3 * S * S;
    if (d->n_classes != s->K)
        return ct_set_error(CT_ERR_ARG, "tpt: %s has %d classes, the prompts %d", d->name,
                            d->n_classes, s->K);
    float *px = malloc((size_t)s->n_views * per * sizeof *px);
    if (!px) return ct_set_error(CT_ERR_NOMEM, "tpt: out of memory");
    ct_status e = CT_OK;
    char stage[96];
    snprintf(stage, sizeof stage, "tpt: %s", d->name);
    for (int64_t i = 0; i < d->n_items && e == CT_OK; i++) {
        ct_tpt_trace tr = {0};
        e = make_views(s, task, d, i, px);
        if (e == CT_OK) e = ct_tpt_adapt(s, px, s->n_views, scores + i * s->K, &tr);
        if (e == CT_OK && task->progress)
            task->progress(task->progress_ctx, stage, i + 1, d->n_items, tr.loss, s->lr);
    }
    free(px);
    return e;
}

const ct_method ct_method_tpt = {
    .name = "tpt",
    .category = "test-time adaptation",
    .setup = "zero-shot",
    .paper = "Shu et al., Test-Time Prompt Tuning for Zero-Shot Generalization in "
             "Vision-Language Models (TPT), NeurIPS 2022",
    /* tpt_classification.py's defaults with scripts/test_tpt.sh (-b 64, --ctx_init
     * a_photo_of_a, --tpt): 64 views, 10% kept, one AdamW step at 5e-3 */
    .defaults = "n_ctx=4 ctx_init=a_photo_of_a class_token_position=end n_views=64 "
                "selection_p=0.1 steps=1 lr=5e-3 weight_decay=0.01 augmix=1 severity=1 init_from=",
    .create = tpt_create,
    .destroy = tpt_destroy,
    .params = tpt_params,
    .param_names = tpt_param_names,
    .logits = tpt_logits,
    .predict_images = tpt_predict_images,
};
