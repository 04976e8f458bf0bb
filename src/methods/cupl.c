/* CuPL: "What does a platypus look like? Generating customized prompts for
 * zero-shot image classification" (Pratt et al., ICCV 2023), after the
 * official sarahpratt/CuPL classify_imagenet.py (zeroshot_classifier_gpt).
 * Training-free.
 *
 * An LLM writes several descriptive sentences per class ("A platypus is a
 * brown, duck-billed mammal..."); they stand in for the hand-made templates:
 *
 *   w_k    = normalize(mean_i normalize(E_text(s_ki)))
 *   logits = exp(logit_scale) normalize(f) W^T
 *
 * The official tokenises the sentences with clip.tokenize(..., truncate=True)
 * (long generations are cut to the context), and its "CuPL + templates"
 * variant (use_both) puts the template sentences and the generated ones in
 * one list before the same normalise-mean-normalise, i.e. an equal-weight
 * mean over all sentences (not the mean of the two means). The official's
 * logits have no logit scale; exp(logit_scale) here keeps the scores on
 * zero-shot's scale (same argmax, comparable softmax).
 *
 * Also home of the per-class sentence file reader VCD shares (cupl.h). */
#include "methods/cupl.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "base/error.h"
#include "base/json.h"
#include "methods/method_common.h"
#include "methods/method_templates.h"

/* Texts encoded per forward pass: bounds the graph's activations. */
#define ENCODE_CHUNK 64

/* ------------------------------------------------------------------------ */
/* The class -> sentences file                                               */
/* ------------------------------------------------------------------------ */

static const char *json_kind(const cJSON *v) {
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    return "an invalid value";
}

/* 0: exact; 1: ignoring ASCII case; 2: ignoring case, '_' == ' '. */
static bool name_eq(const char *a, const char *b, int level) {
    if (level == 0) return !strcmp(a, b);
    for (;; a++, b++) {
        int x = tolower((unsigned char)*a), y = tolower((unsigned char)*b);
        if (level == 2) x = x == '_' ? ' ' : x, y = y == '_' ? ' ' : y;
        if (x != y) return false;
        if (!x) return true;
    }
}

void ct_class_texts_free(ct_class_texts *t) {
    if (!t) return;
    for (int i = 0; t->texts && t->off && i < t->off[t->n_classes]; i++) free(t->texts[i]);
    free(t->texts);
    free(t->off);
    memset(t, 0, sizeof *t);
}

ct_status ct_class_texts_load(const char *path, const char *ctx, int n_classes,
                              char *const *classnames, ct_class_texts *out) {
    memset(out, 0, sizeof *out);
    cJSON *root = ct_json_load(path);
    if (!root) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", ct_last_error());
        return ct_set_error(CT_ERR_FORMAT, "%s: %s", ctx, msg);
    }
    ct_status s = CT_OK;
    const cJSON **pick = calloc((size_t)n_classes + 1, sizeof *pick);
    if (!pick) s = ct_set_error(CT_ERR_NOMEM, "%s: out of memory", ctx);
    if (s == CT_OK && !cJSON_IsObject(root))
        s = ct_set_error(CT_ERR_FORMAT, "%s: expected a JSON object {\"class name\": "
                         "[\"sentence\", ...]}, found %s", ctx, json_kind(root));
    /* every entry is checked, not only the picked ones: a malformed file
     * should not pass because its bad entry belongs to another dataset */
    const cJSON *e;
    if (s == CT_OK) cJSON_ArrayForEach(e, root) {
        if (!cJSON_IsArray(e)) {
            s = ct_set_error(CT_ERR_FORMAT, "%s: \"%s\" must be a list of strings, found %s",
                             ctx, e->string, json_kind(e));
            break;
        }
        if (cJSON_GetArraySize(e) == 0) {
            s = ct_set_error(CT_ERR_FORMAT, "%s: \"%s\" is an empty list (each class needs at "
                             "least one sentence)", ctx, e->string);
            break;
        }
        int i = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, e) {
            if (!cJSON_IsString(v)) {
                s = ct_set_error(CT_ERR_FORMAT, "%s: \"%s\"[%d] must be a string, found %s",
                                 ctx, e->string, i, json_kind(v));
                break;
            }
            i++;
        }
        if (s != CT_OK) break;
    }
    size_t total = 0;
    for (int k = 0; s == CT_OK && k < n_classes; k++) {
        for (int level = 0; level < 3 && !pick[k]; level++) {
            cJSON_ArrayForEach(e, root) {
                if (!name_eq(e->string, classnames[k], level)) continue;
                if (pick[k]) {
                    s = ct_set_error(CT_ERR_FORMAT, "%s: class \"%s\" matches both \"%s\" and "
                                     "\"%s\"", ctx, classnames[k], pick[k]->string, e->string);
                    break;
                }
                pick[k] = e;
            }
            if (s != CT_OK) break;
        }
        if (s == CT_OK && !pick[k])
            s = ct_set_error(CT_ERR_FORMAT, "%s: no entry for class \"%s\" (class %d; keys are "
                             "matched exactly, then ignoring case, then with '_' as ' ')", ctx,
                             classnames[k], k);
        if (s == CT_OK) total += (size_t)cJSON_GetArraySize(pick[k]);
    }
    if (s == CT_OK && total > (size_t)INT32_MAX)
        s = ct_set_error(CT_ERR_FORMAT, "%s: %zu sentences is too many", ctx, total);
    if (s == CT_OK) {
        out->n_classes = n_classes;
        out->off = calloc((size_t)n_classes + 1, sizeof *out->off);
        out->texts = calloc(total ? total : 1, sizeof *out->texts);
        if (!out->off || !out->texts) s = ct_set_error(CT_ERR_NOMEM, "%s: out of memory", ctx);
    }
    for (int k = 0; s == CT_OK && k < n_classes; k++) {
        int j = out->off[k];
        const cJSON *v;
        cJSON_ArrayForEach(v, pick[k]) {
            if (!(out->texts[j] = strdup(v->valuestring))) {
                s = ct_set_error(CT_ERR_NOMEM, "%s: out of memory", ctx);
                break;
            }
            out->off[k + 1] = ++j;
        }
    }
    free(pick);
    cJSON_Delete(root);
    if (s != CT_OK) {
        for (size_t i = 0; out->texts && i < total; i++) free(out->texts[i]);
        free(out->texts);
        free(out->off);
        memset(out, 0, sizeof *out);
    }
    return s;
}

/* ------------------------------------------------------------------------ */
/* Text encoding                                                             */
/* ------------------------------------------------------------------------ */

ct_status ct_encode_texts(const ct_task *task, const char *const *texts, int n, bool truncate,
                          const char *ctx, float *out) {
    if (!task->tok) return ct_set_error(CT_ERR_ARG, "%s: the task has no tokenizer", ctx);
    const ct_clip_config *c = ct_clip_get_config(task->clip);
    int T = c->context_length, E = c->embed_dim;
    int64_t *ids = malloc((size_t)ENCODE_CHUNK * (size_t)T * sizeof *ids);
    ct_graph *g = ct_graph_create(0);
    ct_status s = ids && g ? CT_OK : ct_set_error(CT_ERR_NOMEM, "%s: out of memory", ctx);
    for (int i0 = 0; s == CT_OK && i0 < n; i0 += ENCODE_CHUNK) {
        int m = n - i0 < ENCODE_CHUNK ? n - i0 : ENCODE_CHUNK;
        for (int i = 0; s == CT_OK && i < m; i++) {
            s = ct_tokenizer_tokenize(task->tok, texts[i0 + i], T, truncate, ids + (size_t)i * T);
            if (s != CT_OK) {
                char msg[1024];
                snprintf(msg, sizeof msg, "%s", ct_last_error());
                s = ct_set_error(s, "%s: %s", ctx, msg);
            }
        }
        if (s != CT_OK) break;
        ct_graph_reset(g);
        ct_graph_set_grad(g, false);
        ct_tensor *e = ct_clip_encode_text(g, task->clip, ids, m, T, NULL);
        if (!e) {
            s = ct_graph_status(g);
            break;
        }
        memcpy(out + (size_t)i0 * E, e->data, (size_t)m * (size_t)E * sizeof(float));
    }
    ct_graph_free(g);
    free(ids);
    return s;
}

/* ------------------------------------------------------------------------ */
/* The method                                                                */
/* ------------------------------------------------------------------------ */

typedef struct {
    ct_tensor *W; /* (K, E) normalised class weights */
    float scale;  /* exp(logit_scale)                */
} cupl_state;

ct_status ct_cupl_class_weight(const float *emb, int n, int E, float *out) {
    if (n < 1 || E < 1) return ct_set_error(CT_ERR_ARG, "cupl: %d sentences of dim %d", n, E);
    ct_graph *g = ct_graph_create(0);
    if (!g) return ct_set_error(CT_ERR_NOMEM, "cupl: out of memory");
    ct_graph_set_grad(g, false);
    int64_t shape[2] = {n, E};
    /* the ops ct_class_text_embeddings uses, so one sentence per class
     * reproduces the zero-shot classifier exactly */
    ct_tensor *x = ct_l2_normalize(g, ct_graph_wrap(g, (ct_real *)emb, 2, shape), 1e-12f);
    ct_tensor *w = ct_l2_normalize(g, ct_mean(g, x, 0), 1e-12f);
    ct_status s = w ? CT_OK : ct_graph_status(g);
    if (w) memcpy(out, w->data, (size_t)E * sizeof(float));
    ct_graph_free(g);
    return s;
}

static void cupl_destroy(void *st) {
    cupl_state *c = st;
    if (!c) return;
    ct_tensor_free(c->W);
    free(c);
}

ct_status ct_cupl_state_new(const float *W, int K, int E, float scale, void **state) {
    if (K < 1 || E < 1) return ct_set_error(CT_ERR_ARG, "cupl: %d classes of dim %d", K, E);
    cupl_state *c = calloc(1, sizeof *c);
    if (c) c->W = ct_tensor_new2(K, E, false);
    if (!c || !c->W) {
        cupl_destroy(c);
        return ct_set_error(CT_ERR_NOMEM, "cupl: out of memory");
    }
    memcpy(c->W->data, W, (size_t)K * (size_t)E * sizeof(float));
    c->scale = scale;
    *state = c;
    return CT_OK;
}

static ct_status cupl_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    const char *path, *spec;
    ct_status s = ct_kv_str(hp, "descriptions", "", &path);
    if (s == CT_OK) s = ct_kv_str(hp, "templates", "none", &spec);
    if (s != CT_OK) return s;
    if (!*path)
        return ct_set_error(CT_ERR_ARG, "cupl: no descriptions= given (a JSON file {\"class\": "
                            "[\"sentence\", ...]}, see data/descriptors/README.md)");
    const char *const *tmpl = NULL;
    int nt = 0;
    char **owned = NULL;
    if (strcmp(spec, "none") && (s = ct_resolve_templates(task, spec, &tmpl, &nt, &owned)) != CT_OK)
        return s;
    char ctx[4200];
    snprintf(ctx, sizeof ctx, "cupl: descriptions=%s", path);
    ct_class_texts ct;
    s = ct_class_texts_load(path, ctx, task->n_classes, task->classnames, &ct);
    int K = task->n_classes, E = ct_clip_get_config(task->clip)->embed_dim, most = 0;
    for (int k = 0; s == CT_OK && k < K; k++)
        if (ct.off[k + 1] - ct.off[k] > most) most = ct.off[k + 1] - ct.off[k];
    most += nt;
    float *W = NULL, *emb = NULL;
    char **texts = NULL;
    if (s == CT_OK) {
        W = malloc((size_t)K * (size_t)E * sizeof *W);
        emb = malloc((size_t)most * (size_t)E * sizeof *emb);
        texts = calloc((size_t)most, sizeof *texts);
        if (!W || !emb || !texts) s = ct_set_error(CT_ERR_NOMEM, "cupl: out of memory");
    }
    for (int k = 0; s == CT_OK && k < K; k++) {
        /* the official's order: templates first, then the generated sentences */
        int n = 0;
        for (int t = 0; s == CT_OK && t < nt; t++)
            if (!(texts[n++] = ct_template_fill(tmpl[t], task->classnames[k]))) s = CT_ERR_NOMEM;
        for (int i = ct.off[k]; s == CT_OK && i < ct.off[k + 1]; i++)
            if (!(texts[n++] = strdup(ct.texts[i])))
                s = ct_set_error(CT_ERR_NOMEM, "cupl: out of memory");
        snprintf(ctx, sizeof ctx, "cupl: class \"%s\"", task->classnames[k]);
        if (s == CT_OK) s = ct_encode_texts(task, (const char *const *)texts, n, true, ctx, emb);
        if (s == CT_OK) s = ct_cupl_class_weight(emb, n, E, W + (size_t)k * E);
        for (int i = 0; i < n; i++) free(texts[i]), texts[i] = NULL;
    }
    if (s == CT_OK) {
        const ct_tensor *ls = ct_clip_find_tensor(task->clip, "logit_scale");
        s = ct_cupl_state_new(W, K, E, expf(ls->data[0]), out);
    }
    free(texts);
    free(emb);
    free(W);
    ct_class_texts_free(&ct);
    ct_templates_free(owned);
    return s;
}

static ct_tensor *cupl_logits(void *st, ct_graph *g, const ct_batch *b) {
    cupl_state *c = st;
    int64_t shape[2] = {b->n, c->W->shape[1]};
    ct_tensor *x = ct_l2_normalize(g, ct_graph_wrap(g, (ct_real *)b->x, 2, shape), 1e-12f);
    return ct_scale(g, ct_matmul(g, x, c->W, false, true), c->scale);
}

const ct_method ct_method_cupl = {
    .name = "cupl",
    .category = "llm-prompts",
    .setup = "zero-shot",
    .paper = "Pratt et al., What does a platypus look like? Generating customized prompts for "
             "zero-shot image classification (CuPL), ICCV 2023",
    .defaults = "descriptions= templates=none",
    .create = cupl_create,
    .destroy = cupl_destroy,
    .logits = cupl_logits,
};
