/* Linear probe: L2-regularised multinomial logistic regression on frozen
 * image features, the CLIP paper's protocol (Radford et al. 2021, App. A.3)
 * as CoOp's lpclip/linear_probe.py runs it: scikit-learn's objective,
 * 0.5 ||W||^2 + C sum CE, solved by L-BFGS, with C searched on validation
 * accuracy (never test). Raw (unnormalised) features, as both do; set
 * normalize=1 to L2-normalise them first.
 *
 * Learned tensor names: "coef_" (K, E) and "intercept_" (K), the fitted
 * attributes of the scikit-learn LogisticRegression that lpclip/
 * linear_probe.py trains (it saves no file); the pixel probe likewise. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "train/logreg.h"

typedef struct {
    ct_tensor *W, *b; /* (K, E), (K): the fitted classifier, saved as learned tensors */
    double C;         /* > 0: fixed; 0: searched on val */
    int normalize, max_iter;
} lp_state;

/* E: the feature size (CLIP's embedding, or 3*S*S raw pixels) */
static ct_status lp_create_dim(const ct_task *task, const ct_kv *hp_in, int E, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    lp_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "linear-probe: out of memory");
    ct_status st = ct_kv_double(hp, "C", 0, &s->C);
    if (st == CT_OK) st = ct_kv_int(hp, "normalize", 0, &s->normalize);
    if (st == CT_OK) st = ct_kv_int(hp, "max_iter", 1000, &s->max_iter);
    if (st == CT_OK && (s->C < 0 || s->max_iter < 1))
        st = ct_set_error(CT_ERR_ARG, "linear-probe: C must be >= 0 and max_iter >= 1");
    if (st == CT_OK) {
        s->W = ct_tensor_new2(task->n_classes, E, false);
        int64_t k = task->n_classes;
        s->b = ct_tensor_new(1, &k, false);
        if (!s->W || !s->b) st = ct_set_error(CT_ERR_NOMEM, "linear-probe: out of memory");
    }
    if (st != CT_OK) {
        ct_tensor_free(s->W), ct_tensor_free(s->b), free(s);
        return st;
    }
    *out = s;
    return CT_OK;
}

static ct_status lp_create(const ct_task *task, const ct_kv *hp, void **out) {
    return lp_create_dim(task, hp, ct_clip_get_config(task->clip)->embed_dim, out);
}

static ct_status pixel_create(const ct_task *task, const ct_kv *hp, void **out) {
    int S = ct_clip_get_config(task->clip)->image_size;
    return lp_create_dim(task, hp, 3 * S * S, out);
}

static void lp_destroy(void *st) {
    lp_state *s = st;
    if (!s) return;
    ct_tensor_free(s->W), ct_tensor_free(s->b), free(s);
}

static int lp_params(void *st, ct_tensor **out, int cap) {
    lp_state *s = st;
    if (cap < 2) return 0;
    out[0] = s->W, out[1] = s->b;
    return 2;
}

static int lp_param_names(void *st, const char **out, int cap) {
    (void)st;
    if (cap < 2) return 0;
    out[0] = "coef_", out[1] = "intercept_";
    return 2;
}

/* Copy of f's features, L2-normalised rows when asked. */
static float *prep(const ct_features *f, int normalize) {
    float *x = malloc((size_t)(f->n ? f->n : 1) * (size_t)f->dim * sizeof *x);
    if (!x) return NULL;
    memcpy(x, f->x, (size_t)f->n * (size_t)f->dim * sizeof *x);
    for (int64_t i = 0; normalize && i < f->n; i++) {
        double ss = 0;
        for (int j = 0; j < f->dim; j++) ss += (double)x[i * f->dim + j] * x[i * f->dim + j];
        float inv = ss > 0 ? (float)(1 / sqrt(ss)) : 0;
        for (int j = 0; j < f->dim; j++) x[i * f->dim + j] *= inv;
    }
    return x;
}

static ct_status lp_fit(void *st, const ct_task *task) {
    lp_state *s = st;
    const ct_features *tr = task->train_feats, *va = task->val_feats;
    if (!tr || tr->n == 0) return ct_set_error(CT_ERR_ARG, "linear-probe: no training features");
    int d = tr->dim, K = task->n_classes;
    float *xtr = prep(tr, s->normalize), *xva = va && va->n ? prep(va, s->normalize) : NULL;
    ct_logreg m = {0};
    ct_status r;
    if (!xtr || (va && va->n && !xva)) {
        r = ct_set_error(CT_ERR_NOMEM, "linear-probe: out of memory");
    } else if (s->C > 0 || !xva) {
        /* no val to search on: the CLIP README's example value */
        r = ct_logreg_fit(xtr, tr->labels, tr->n, d, K, s->C > 0 ? s->C : 0.316, s->max_iter, &m);
    } else {
        r = ct_logreg_search(xtr, tr->labels, tr->n, xva, va->labels, va->n, d, K, &m, &s->C,
                             NULL);
    }
    if (r == CT_OK) {
        for (int64_t i = 0; i < (int64_t)K * d; i++) s->W->data[i] = (float)m.W[i];
        for (int k = 0; k < K; k++) s->b->data[k] = (float)m.b[k];
    }
    ct_logreg_free(&m);
    free(xtr), free(xva);
    return r;
}

static ct_tensor *lp_logits(void *st, ct_graph *g, const ct_batch *b) {
    lp_state *s = st;
    int64_t shape[2] = {b->n, s->W->shape[1]};
    ct_tensor *x = ct_graph_wrap(g, (ct_real *)b->x, 2, shape);
    if (s->normalize) x = ct_l2_normalize(g, x, 1e-12f);
    return ct_linear(g, x, s->W, s->b);
}

const ct_method ct_method_linear_probe = {
    .name = "linear-probe",
    .category = "baseline",
    .setup = "few-shot",
    .paper = "Radford et al., CLIP (ICML 2021), App. A.3; CoOp's lpclip protocol",
    .defaults = "C=0 normalize=0 max_iter=1000",
    .create = lp_create,
    .destroy = lp_destroy,
    .params = lp_params,
    .param_names = lp_param_names,
    .fit = lp_fit,
    .logits = lp_logits,
};

/* The same probe on the images' pixels after the model's evaluation
 * transform (resize, crop, normalise; 3*S*S values), without the model: the
 * floor a CLIP's features have to beat. */
const ct_method ct_method_pixel_probe = {
    .name = "pixel-probe",
    .category = "baseline",
    .setup = "few-shot",
    .paper = "the linear probe of Radford et al. on raw pixels (a model-free floor)",
    .defaults = "C=0 normalize=0 max_iter=1000",
    .create = pixel_create,
    .destroy = lp_destroy,
    .params = lp_params,
    .param_names = lp_param_names,
    .fit = lp_fit,
    .logits = lp_logits,
    .raw_pixels = true,
};
