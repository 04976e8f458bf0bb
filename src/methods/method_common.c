#include "methods/method_common.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "methods/method_templates.h"

/* One template as a list in a single allocation, freeable with
 * ct_templates_free like the lists ct_templates_load returns. */
static char **one_template(const char *t) {
    size_t len = strlen(t) + 1;
    char **list = malloc(2 * sizeof *list + len);
    if (!list) return NULL;
    list[0] = (char *)(list + 2);
    memcpy(list[0], t, len);
    list[1] = NULL;
    return list;
}

ct_status ct_resolve_templates(const ct_task *task, const char *spec, const char *const **out,
                               int *n, char ***owned) {
    *owned = NULL;
    const char *const *b = ct_templates_builtin(spec, n);
    if (b) {
        *out = b;
        return CT_OK;
    }
    char **list = NULL;
    if (!strcmp(spec, "dataset")) {
        char *t;
        ct_status s = ct_template_for_dataset(NULL, task->dataset_name ? task->dataset_name : "",
                                              &t, NULL);
        if (s != CT_OK) return s;
        list = one_template(t);
        free(t);
    } else if (strstr(spec, "{}")) {
        ct_status s = ct_template_check(spec, "templates");
        if (s != CT_OK) return s;
        list = one_template(spec);
    } else {
        ct_status s = ct_templates_load(spec, &list, n);
        if (s != CT_OK) return s;
        *owned = list, *out = (const char *const *)list;
        return CT_OK;
    }
    if (!list) return ct_set_error(CT_ERR_NOMEM, "templates: out of memory");
    *owned = list, *out = (const char *const *)list, *n = 1;
    return CT_OK;
}

/* Per class, the mean over templates of the text embeddings: with unit,
 * CLIP's classifier (normalise each, average, renormalise); without, the
 * plain mean of the raw embeddings (TaskRes's _get_base_text_features). */
static ct_status class_text_means(const ct_task *task, const char *const *templates, int n_tmpl,
                                  bool unit, float *out) {
    const ct_clip_config *c = ct_clip_get_config(task->clip);
    int ctx = c->context_length, E = c->embed_dim, K = task->n_classes;
    if (!task->tok) return ct_set_error(CT_ERR_ARG, "zero-shot: the task has no tokenizer");
    int64_t *ids = malloc((size_t)n_tmpl * (size_t)ctx * sizeof *ids);
    ct_graph *g = ct_graph_create(0);
    ct_status s = ids && g ? CT_OK : ct_set_error(CT_ERR_NOMEM, "zero-shot: out of memory");
    for (int k = 0; k < K && s == CT_OK; k++) {
        for (int t = 0; t < n_tmpl && s == CT_OK; t++) {
            char *text = ct_template_fill(templates[t], task->classnames[k]);
            if (!text) {
                s = CT_ERR_NOMEM;
                break;
            }
            /* prompts are short; truncation (as CoOp's clip.tokenize callers
             * never need) only guards absurd class names */
            s = ct_tokenizer_tokenize(task->tok, text, ctx, true, ids + (size_t)t * ctx);
            free(text);
        }
        if (s != CT_OK) break;
        ct_graph_reset(g);
        ct_graph_set_grad(g, false);
        ct_tensor *e = ct_clip_encode_text(g, task->clip, ids, n_tmpl, ctx, NULL);
        if (unit) e = ct_l2_normalize(g, e, 1e-12f);
        ct_tensor *mean = ct_mean(g, e, 0);
        if (unit) mean = ct_l2_normalize(g, mean, 1e-12f);
        if (!mean) {
            s = ct_graph_status(g);
            break;
        }
        memcpy(out + (size_t)k * E, mean->data, (size_t)E * sizeof(float));
    }
    ct_graph_free(g);
    free(ids);
    return s;
}

ct_status ct_class_text_embeddings(const ct_task *task, const char *const *templates, int n_tmpl,
                                   float *out) {
    return class_text_means(task, templates, n_tmpl, true, out);
}

ct_status ct_zeroshot_classifier(const ct_task *task, const char *zs_path, const char *templates,
                                 bool unit, float *out) {
    int K = task->n_classes, E = ct_clip_get_config(task->clip)->embed_dim;
    if (zs_path && *zs_path) {
        ct_npy a;
        ct_status s = ct_npy_read(zs_path, &a);
        if (s != CT_OK) return s;
        if (a.dtype != CT_F32 || a.ndim != 2 || a.shape[0] != K || a.shape[1] != E)
            s = ct_set_error(CT_ERR_FORMAT, "zs_weights=%s: need float32 (%d, %d) (classes, "
                             "embed_dim), got %s with %d dims (%lld, %lld)", zs_path, K, E,
                             ct_dtype_name(a.dtype), a.ndim, (long long)a.shape[0],
                             (long long)(a.ndim > 1 ? a.shape[1] : 0));
        for (size_t i = 0; s == CT_OK && i < a.numel; i++)
            if (!isfinite(((const float *)a.data)[i]))
                s = ct_set_error(CT_ERR_FORMAT, "zs_weights=%s: value %zu is not finite",
                                 zs_path, i);
        if (s == CT_OK) memcpy(out, a.data, (size_t)K * (size_t)E * sizeof(float));
        ct_npy_free(&a);
        for (int k = 0; s == CT_OK && unit && k < K; k++) {
            float *r = out + (size_t)k * E;
            double ss = 0;
            for (int j = 0; j < E; j++) ss += (double)r[j] * r[j];
            if (!(ss > 0))
                return ct_set_error(CT_ERR_FORMAT, "zs_weights=%s: row %d is zero", zs_path, k);
            float inv = (float)(1 / sqrt(ss));
            for (int j = 0; j < E; j++) r[j] *= inv;
        }
        return s;
    }
    const char *const *tmpl;
    int nt;
    char **owned;
    ct_status s = ct_resolve_templates(task, templates, &tmpl, &nt, &owned);
    if (s != CT_OK) return s;
    s = class_text_means(task, tmpl, nt, unit, out);
    ct_templates_free(owned);
    return s;
}

ct_status ct_kv_clip_scale(ct_kv *hp, const char *key, const ct_task *task, const char *who,
                           float *out) {
    const char *v;
    ct_status st = ct_kv_str(hp, key, "model", &v);
    if (st != CT_OK) return st;
    if (!strcmp(v, "model")) {
        const ct_tensor *ls = task && task->clip ? ct_clip_find_tensor(task->clip, "logit_scale")
                                                 : NULL;
        if (!ls || ls->numel != 1)
            return ct_set_error(CT_ERR_ARG, "%s: %s=model: the model has no logit_scale (set "
                                "a number, e.g. %s=100)", who, key, key);
        float sc = expf(ls->data[0]);
        if (!isfinite(sc))
            return ct_set_error(CT_ERR_ARG, "%s: %s=model: the model's exp(logit_scale) is %g",
                                who, key, (double)sc);
        *out = sc;
        return CT_OK;
    }
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || !isfinite(d) || !isfinite((float)d))
        return ct_set_error(CT_ERR_ARG, "%s: %s=%s (model, or a finite number)", who, key, v);
    *out = (float)d;
    return CT_OK;
}

ct_tensor *ct_scores_chunked(ct_graph *g, ct_graph *eg, const float *x, int64_t n, int64_t E,
                             int64_t K, int64_t chunk, ct_rows_scores_fn fn, void *state,
                             const char *who) {
    int64_t shape[2] = {n, K};
    ct_tensor *out = ct_graph_tensor(g, 2, shape);
    if (!out) return NULL;
    ct_graph_set_grad(eg, false);
    for (int64_t i0 = 0; i0 < n; i0 += chunk) {
        int64_t m = n - i0 < chunk ? n - i0 : chunk;
        ct_graph_reset(eg);
        ct_tensor *lg = fn(state, eg, x + i0 * E, m);
        if (!lg) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", ct_last_error());
            ct_status e = ct_graph_status(eg);
            ct_set_error(e ? e : CT_ERR_NOMEM, "%s: evaluation: %s", who, msg);
            return NULL;
        }
        memcpy(out->data + i0 * K, lg->data, (size_t)(m * K) * sizeof(float));
    }
    ct_graph_reset(eg);
    return out;
}

void ct_task_logf(const ct_task *task, const char *fmt, ...) {
    if (!task->log) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    task->log(task->log_ctx, line);
}
