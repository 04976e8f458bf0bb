/* MaskCLIP's patch labels (see maskclip.h). The per-patch work follows the
 * official head's order: cls_seg (cosines), then refine_output: prompt
 * denoising on the raw cosines, key smoothing on the result. */
#include "methods/maskclip.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "methods/method_common.h"
#include "methods/method_templates.h"

/* the official's fixed temperature in refine_output (softmax(output * 100)) */
#define MASKCLIP_SOFTMAX_SCALE 100.0
/* the logit the official writes for a denoised class */
#define MASKCLIP_PD_LOGIT (-100.0f)

maskclip_cfg maskclip_cfg_default(void) {
    maskclip_cfg c = {0.0f, 0.0f, false};
    return c;
}

ct_status maskclip_text_embeddings(const ct_task *task, const char *templates, float *out) {
    const char *const *list = NULL;
    char **owned = NULL;
    int n = 0;
    ct_status s = ct_resolve_templates(task, templates ? templates : MASKCLIP_TEMPLATES, &list,
                                       &n, &owned);
    if (s != CT_OK) return s;
    s = ct_class_text_embeddings(task, list, n, out);
    ct_templates_free(owned);
    return s;
}

/* p (K) = softmax(scale x (K)), in double */
static void softmax_scaled(const float *x, int K, double *p) {
    double mx = -INFINITY, sum = 0;
    for (int k = 0; k < K; k++) mx = fmax(mx, MASKCLIP_SOFTMAX_SCALE * x[k]);
    for (int k = 0; k < K; k++) sum += p[k] = exp(MASKCLIP_SOFTMAX_SCALE * x[k] - mx);
    for (int k = 0; k < K; k++) p[k] /= sum;
}

/* One image: lg (P, K) cosines in, refined in place. kb (P, Wk) keys or
 * NULL; work: P*K + P*P + P*Wk + K doubles. */
static void refine(float *lg, const float *kb, int P, int K, int Wk, const maskclip_cfg *c,
                   double *work) {
    double *pr = work, *w = pr + (size_t)P * K, *kn = w + (size_t)P * P,
           *cmax = kn + (size_t)P * Wk;
    if (c->pd_thresh > 0) {
        for (int k = 0; k < K; k++) cmax[k] = -INFINITY;
        for (int p = 0; p < P; p++) {
            softmax_scaled(lg + (size_t)p * K, K, pr);
            for (int k = 0; k < K; k++) cmax[k] = fmax(cmax[k], pr[k]);
        }
        for (int k = 0; k < K; k++)
            if (cmax[k] < c->pd_thresh)
                for (int p = 0; p < P; p++) lg[(size_t)p * K + k] = MASKCLIP_PD_LOGIT;
    }
    if (c->ks_thresh > 0 && kb) {
        for (int p = 0; p < P; p++) softmax_scaled(lg + (size_t)p * K, K, pr + (size_t)p * K);
        /* F.normalize: x / max(||x||, 1e-12) along the chosen axis */
        for (size_t i = 0; i < (size_t)P * Wk; i++) kn[i] = kb[i];
        if (c->ks_cosine) {
            for (int p = 0; p < P; p++) {
                double ss = 0;
                for (int j = 0; j < Wk; j++) ss += kn[(size_t)p * Wk + j] * kn[(size_t)p * Wk + j];
                double d = fmax(sqrt(ss), 1e-12);
                for (int j = 0; j < Wk; j++) kn[(size_t)p * Wk + j] /= d;
            }
        } else {
            for (int j = 0; j < Wk; j++) {
                double ss = 0;
                for (int p = 0; p < P; p++) ss += kn[(size_t)p * Wk + j] * kn[(size_t)p * Wk + j];
                double d = fmax(sqrt(ss), 1e-12);
                for (int p = 0; p < P; p++) kn[(size_t)p * Wk + j] /= d;
            }
        }
        for (int p = 0; p < P; p++)
            for (int q = 0; q < P; q++) {
                double s = 0;
                for (int j = 0; j < Wk; j++) s += kn[(size_t)p * Wk + j] * kn[(size_t)q * Wk + j];
                w[(size_t)p * P + q] = s;
            }
        for (int p = 0; p < P; p++) {
            const double *pp = pr + (size_t)p * K;
            double mx = pp[0];
            for (int k = 1; k < K; k++) mx = fmax(mx, pp[k]);
            float *o = lg + (size_t)p * K;
            if (mx < c->ks_thresh) {
                for (int k = 0; k < K; k++) {
                    double s = 0;
                    for (int q = 0; q < P; q++) s += w[(size_t)p * P + q] * pr[(size_t)q * K + k];
                    o[k] = (float)s;
                }
            } else {
                for (int k = 0; k < K; k++) o[k] = (float)pp[k];
            }
        }
    }
}

ct_status maskclip_patch_logits(const float *value, const float *keys, int64_t B, int T, int E,
                                int Wk, int first, const float *text, int K,
                                const maskclip_cfg *cfg, float *out) {
    maskclip_cfg c = cfg ? *cfg : maskclip_cfg_default();
    if (!value || !text || !out || B < 0 || E < 1 || K < 1 || first < 0 || first >= T)
        return ct_set_error(CT_ERR_ARG, "maskclip: bad arguments (B %lld, T %d, E %d, K %d, "
                            "first patch %d)", (long long)B, T, E, K, first);
    if (!(c.pd_thresh >= 0 && c.pd_thresh <= 1 && c.ks_thresh >= 0 && isfinite(c.ks_thresh)))
        return ct_set_error(CT_ERR_ARG, "maskclip: pd_thresh %g must be in [0, 1] and "
                            "ks_thresh %g >= 0", (double)c.pd_thresh, (double)c.ks_thresh);
    if (c.ks_thresh > 0 && (!keys || Wk < 1))
        return ct_set_error(CT_ERR_ARG, "maskclip: key smoothing needs the last block's keys "
                            "(value-path features, ct_features.dense_keys)");
    int P = T - first;
    size_t nwork = (size_t)P * K + (size_t)P * P + (size_t)P * (size_t)(Wk > 0 ? Wk : 0) +
                   (size_t)K;
    int nt = omp_get_max_threads();
    double *work = malloc((size_t)nt * nwork * sizeof *work);
    if (!work) return ct_set_error(CT_ERR_NOMEM, "maskclip: out of memory");
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int64_t b = 0; b < B; b++) {
        const float *v = value + ((size_t)b * T + first) * E;
        float *lg = out + (size_t)b * P * K;
        /* cls_seg: unit features against the text rows as given */
        for (int p = 0; p < P; p++) {
            const float *vp = v + (size_t)p * E;
            double ss = 0;
            for (int e = 0; e < E; e++) ss += (double)vp[e] * vp[e];
            double inv = 1.0 / sqrt(ss); /* the official divides by the norm as is */
            for (int k = 0; k < K; k++) {
                const float *t = text + (size_t)k * E;
                double s = 0;
                for (int e = 0; e < E; e++) s += (double)vp[e] * t[e];
                lg[(size_t)p * K + k] = (float)(s * inv);
            }
        }
        const float *kb = keys && c.ks_thresh > 0 ? keys + ((size_t)b * T + first) * Wk : NULL;
        refine(lg, kb, P, K, Wk, &c, work + (size_t)omp_get_thread_num() * nwork);
    }
    free(work);
    return CT_OK;
}

/* ------------------------------------------------------------------------ */
/* The registered method: training-free segmentation                        */
/* ------------------------------------------------------------------------ */

typedef struct {
    float *text; /* (K, E) unit class embeddings */
    int K, E;
    maskclip_cfg cfg;
} mc_state;

static void mc_destroy(void *st) {
    mc_state *m = st;
    if (!m) return;
    free(m->text);
    free(m);
}

static ct_status mc_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    const char *templates = NULL;
    double pd = 0, ks = 0;
    int cosine = 0;
    ct_status s = ct_kv_str(hp, "templates", MASKCLIP_TEMPLATES, &templates);
    if (s == CT_OK) s = ct_kv_double(hp, "pd_thresh", 0, &pd);
    if (s == CT_OK) s = ct_kv_double(hp, "ks_thresh", 0, &ks);
    if (s == CT_OK) s = ct_kv_int(hp, "ks_cosine", 0, &cosine);
    if (s != CT_OK) return s;
    if (!(pd >= 0 && pd <= 1) || !(ks >= 0 && ks <= 1) || (cosine != 0 && cosine != 1))
        return ct_set_error(CT_ERR_ARG, "maskclip: pd_thresh=%g ks_thresh=%g ks_cosine=%d "
                            "(thresholds in [0, 1], 0 off; ks_cosine 0 or 1)", pd, ks, cosine);
    mc_state *m = calloc(1, sizeof *m);
    if (!m) return ct_set_error(CT_ERR_NOMEM, "maskclip: out of memory");
    m->K = task->n_classes;
    m->E = ct_clip_get_config(task->clip)->embed_dim;
    m->cfg = (maskclip_cfg){(float)pd, (float)ks, cosine != 0};
    if (!(m->text = malloc((size_t)m->K * (size_t)m->E * sizeof *m->text)))
        s = ct_set_error(CT_ERR_NOMEM, "maskclip: out of memory");
    if (s == CT_OK) s = maskclip_text_embeddings(task, templates, m->text);
    if (s != CT_OK) {
        mc_destroy(m);
        return s;
    }
    *out = m;
    return CT_OK;
}

static ct_status mc_predict_patches(void *st, const ct_features *f, float *scores) {
    mc_state *m = st;
    if (f->dense_kind != CT_DENSE_VALUE || !f->dense || f->dim != m->E)
        return ct_set_error(CT_ERR_ARG, "maskclip: needs the value-path dense features (dim %d) "
                            "of the images", m->E);
    if (m->cfg.ks_thresh > 0 && !f->dense_keys)
        return ct_set_error(CT_ERR_ARG, "maskclip: key smoothing needs the last block's keys");
    return maskclip_patch_logits(f->dense, m->cfg.ks_thresh > 0 ? f->dense_keys : NULL, f->n,
                                 f->n_tokens, f->dim, f->key_dim, 1, m->text, m->K, &m->cfg,
                                 scores);
}

const ct_method ct_method_maskclip = {
    .name = "maskclip",
    .category = "training-free",
    .setup = "zero-shot",
    .paper = "Zhou, Loy, Dai, Extract Free Dense Labels from CLIP (MaskCLIP), ECCV 2022",
    .defaults = "templates=" MASKCLIP_TEMPLATES " pd_thresh=0 ks_thresh=0 ks_cosine=0",
    .create = mc_create,
    .destroy = mc_destroy,
    .dense_features = true,
    .dense_kind = CT_DENSE_VALUE,
    .predict_patches = mc_predict_patches,
};
