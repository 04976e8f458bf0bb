/* ct_model: a bundle (CLIP + tokenizer + preprocessing) behind an opaque
 * handle, with whole-batch encode and zero-shot calls for embedders and
 * bindings (python/cliptune). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"
#include "api/model.h"

struct ct_model {
    ct_bundle b;
    ct_bundle *borrowed; /* ct_model_borrow: the caller's bundle, used instead of b */
    char *path, *bpe; /* absolute where they exist; bpe NULL: the model's own */
    const char *act;  /* "quick_gelu" or "gelu" (the text tower's) */
};

enum { BATCH = 16 }; /* images per forward: activations stay small */

static char *absolute(const char *p) {
    char buf[4096];
    if (p[0] != '/' && realpath(p, buf)) return strdup(buf);
    return strdup(p);
}

ct_model *ct_model_load_ex(const char *path, const ct_model_opts *o) {
    static const ct_model_opts none = {0};
    if (!o) o = &none;
    if (!path) {
        ct_set_error(CT_ERR_ARG, "model_load: NULL path");
        return NULL;
    }
    ct_clip_load_opts opts = {CT_QUICK_GELU, 64};
    if (o->act && !strcmp(o->act, "gelu")) {
        opts.openai_act = CT_GELU;
    } else if (o->act && strcmp(o->act, "quick_gelu")) {
        ct_set_error(CT_ERR_ARG, "activation %s: expected quick_gelu or gelu", o->act);
        return NULL;
    }
    ct_model *m = calloc(1, sizeof *m);
    if (!m) {
        ct_set_error(CT_ERR_NOMEM, "model_load: out of memory");
        return NULL;
    }
    ct_status s = ct_bundle_load(path, o->bpe, &opts, o->need_tokenizer, &m->b);
    if (s == CT_OK) {
        const ct_clip_config *c = ct_clip_get_config(m->b.clip);
        m->act = c->text_act == CT_GELU ? "gelu" : "quick_gelu";
        /* an HF folder names its activation; another one would be ignored */
        if (o->act && c->format == CT_CLIP_HF && strcmp(o->act, m->act))
            s = ct_set_error(CT_ERR_ARG, "%s: activation %s asked for, but the folder's "
                             "config.json says %s (the activation choice is for "
                             "OpenAI-layout files, which do not record it)", path, o->act,
                             m->act);
    }
    if (s == CT_OK && o->precision != CT_PRECISION_F32)
        s = ct_clip_set_precision(m->b.clip, o->precision);
    if (s == CT_OK && (!(m->path = absolute(path)) || (o->bpe && !(m->bpe = absolute(o->bpe)))))
        s = ct_set_error(CT_ERR_NOMEM, "model_load: out of memory");
    if (s != CT_OK) {
        ct_model_free(m);
        return NULL;
    }
    return m;
}

ct_model *ct_model_load(const char *path, const char *bpe, bool gelu) {
    /* false: the checkpoint's own (OpenAI layout: QuickGELU), not a demand */
    ct_model_opts o = {.bpe = bpe, .act = gelu ? "gelu" : NULL};
    return ct_model_load_ex(path, &o);
}

ct_model *ct_model_borrow(ct_bundle *b, const char *path) {
    ct_model *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path ? path : ""))) {
        free(m);
        ct_set_error(CT_ERR_NOMEM, "model: out of memory");
        return NULL;
    }
    m->b = *b, m->borrowed = b;
    m->act = ct_clip_get_config(b->clip)->text_act == CT_GELU ? "gelu" : "quick_gelu";
    return m;
}

const ct_bundle *ct_model_bundle(const ct_model *m) { return m ? &m->b : NULL; }

void ct_model_part_hashes(const ct_model *m, char tok[17], char pre[17]) {
    snprintf(tok, 17, "%016llx",
             (unsigned long long)(m->b.tok ? ct_tokenizer_hash(m->b.tok) : 0));
    snprintf(pre, 17, "%016llx", (unsigned long long)ct_preprocess_hash(CT_HASH_INIT, &m->b.pre));
}

void ct_model_free(ct_model *m) {
    if (!m) return;
    if (!m->borrowed) ct_bundle_free(&m->b);
    free(m->path), free(m->bpe);
    free(m);
}

ct_clip *ct_model_clip(ct_model *m) { return m ? m->b.clip : NULL; }
ct_tokenizer *ct_model_tokenizer(ct_model *m) { return m ? m->b.tok : NULL; }
const ct_preprocess_cfg *ct_model_preprocess(const ct_model *m) { return m ? &m->b.pre : NULL; }
const char *ct_model_path(const ct_model *m) { return m ? m->path : NULL; }
const char *ct_model_bpe(const ct_model *m) { return m ? m->bpe : NULL; }
const char *ct_model_act(const ct_model *m) { return m ? m->act : NULL; }
uint64_t ct_model_hash(const ct_model *m) { return m ? ct_clip_hash(m->b.clip) : 0; }
int ct_model_embed_dim(const ct_model *m) { return ct_clip_get_config(m->b.clip)->embed_dim; }
int ct_model_image_size(const ct_model *m) { return ct_clip_get_config(m->b.clip)->image_size; }


static ct_status bad_args(const void *m, const void *in, int n, const void *out, const char *fn) {
    if (!m || n < 0 || (n > 0 && (!in || !out)))
        return ct_set_error(CT_ERR_ARG, "%s: NULL model, inputs or output, or n < 0", fn);
    return CT_OK;
}

ct_status ct_model_encode_pixels(ct_model *m, const float *pixels, int n, float *out) {
    ct_status s = bad_args(m, pixels, n, out, "model_encode_pixels");
    if (s != CT_OK || n == 0) return s;
    int S = ct_model_image_size(m), E = ct_model_embed_dim(m);
    size_t per = (size_t)3 * S * S;
    ct_graph *g = ct_graph_create(0);
    if (!g) return ct_set_error(CT_ERR_NOMEM, "model_encode_pixels: out of memory");
    for (int i0 = 0; i0 < n && s == CT_OK; i0 += BATCH) {
        int nb = n - i0 < BATCH ? n - i0 : BATCH;
        ct_graph_reset(g);
        ct_graph_set_grad(g, false);
        int64_t shape[4] = {nb, 3, S, S};
        /* the graph only reads the pixels */
        ct_tensor *px = ct_graph_wrap(g, (ct_real *)(pixels + (size_t)i0 * per), 4, shape);
        ct_tensor *e = ct_clip_encode_image(g, m->b.clip, px, NULL, false, NULL);
        if (!e) {
            s = ct_graph_status(g) != CT_OK ? ct_graph_status(g) : CT_ERR_STATE;
            break;
        }
        memcpy(out + (size_t)i0 * E, e->data, (size_t)nb * E * sizeof *out);
    }
    ct_graph_free(g);
    return s;
}

ct_status ct_model_encode_images(ct_model *m, const char *const *paths, int n, float *out) {
    ct_status s = bad_args(m, paths, n, out, "model_encode_images");
    if (s != CT_OK || n == 0) return s;
    int S = ct_model_image_size(m), E = ct_model_embed_dim(m);
    size_t per = (size_t)3 * S * S;
    float *px = malloc((size_t)BATCH * per * sizeof *px);
    /* the files as a dataset: decoded and transformed in parallel by the
     * library's pixel source, whose errors name the file */
    ct_item *items = calloc((size_t)n, sizeof *items);
    if (!px || !items) s = ct_set_error(CT_ERR_NOMEM, "model_encode_images: out of memory");
    for (int i = 0; s == CT_OK && i < n; i++) {
        if (!paths[i]) s = ct_set_error(CT_ERR_ARG, "model_encode_images: path %d is NULL", i);
        items[i].path = (char *)paths[i];
    }
    ct_dataset files = {.name = "images", .root = "", .n_items = n, .items = items};
    for (int i0 = 0; i0 < n && s == CT_OK; i0 += BATCH) {
        int nb = n - i0 < BATCH ? n - i0 : BATCH;
        s = ct_dataset_pixels(&files, &m->b.pre, S, i0, nb, px);
        if (s == CT_OK) s = ct_model_encode_pixels(m, px, nb, out + (size_t)i0 * E);
    }
    free(items);
    free(px);
    return s;
}

ct_status ct_model_encode_texts(ct_model *m, const char *const *texts, int n, bool truncate,
                                float *out) {
    ct_status s = bad_args(m, texts, n, out, "model_encode_texts");
    if (s != CT_OK || n == 0) return s;
    if (!m->b.tok)
        return ct_set_error(CT_ERR_STATE, "model_encode_texts: the model has no tokenizer "
                            "(load it with the BPE vocabulary)");
    int T = ct_clip_get_config(m->b.clip)->context_length, E = ct_model_embed_dim(m);
    int64_t *ids = malloc((size_t)n * (size_t)T * sizeof *ids);
    ct_graph *g = ct_graph_create(0);
    if (!ids || !g) s = ct_set_error(CT_ERR_NOMEM, "model_encode_texts: out of memory");
    for (int i = 0; i < n && s == CT_OK; i++)
        if ((s = ct_tokenizer_tokenize(m->b.tok, texts[i], T, truncate, ids + (size_t)i * T)) !=
            CT_OK) {
            char why[512];
            snprintf(why, sizeof why, "%s", ct_last_error());
            s = ct_set_error(s, "text %d (\"%.60s\"): %s", i, texts[i], why);
        }
    for (int i0 = 0; i0 < n && s == CT_OK; i0 += 4 * BATCH) {
        int nb = n - i0 < 4 * BATCH ? n - i0 : 4 * BATCH;
        ct_graph_reset(g);
        ct_graph_set_grad(g, false);
        ct_tensor *e = ct_clip_encode_text(g, m->b.clip, ids + (size_t)i0 * T, nb, T, NULL);
        if (!e) {
            s = ct_graph_status(g) != CT_OK ? ct_graph_status(g) : CT_ERR_STATE;
            break;
        }
        memcpy(out + (size_t)i0 * E, e->data, (size_t)nb * E * sizeof *out);
    }
    ct_graph_free(g);
    free(ids);
    return s;
}

/* tmpl with every "{}" replaced by label (malloc'ed) */
static char *fill(const char *tmpl, const char *label) {
    size_t n = strlen(tmpl) + 1, ll = strlen(label);
    for (const char *p = strstr(tmpl, "{}"); p; p = strstr(p + 2, "{}")) n += ll;
    char *s = malloc(n), *o = s;
    for (const char *p = tmpl; s && *p;) {
        if (p[0] == '{' && p[1] == '}') {
            memcpy(o, label, ll), o += ll, p += 2;
        } else {
            *o++ = *p++;
        }
    }
    if (s) *o = 0;
    return s;
}

ct_status ct_model_classify(ct_model *m, const char *const *paths, int n,
                            const char *const *labels, int k, const char *tmpl, float *probs) {
    ct_status s = bad_args(m, paths, n, probs, "model_classify");
    if (s != CT_OK) return s;
    if (k < 1 || !labels) return ct_set_error(CT_ERR_ARG, "model_classify: no labels");
    if (!tmpl) tmpl = "a photo of a {}.";
    int E = ct_model_embed_dim(m);
    float *img = malloc(((size_t)n + 1) * E * sizeof *img), *txt = malloc((size_t)k * E * sizeof *txt);
    char **texts = calloc((size_t)k, sizeof *texts);
    if (!img || !txt || !texts) s = ct_set_error(CT_ERR_NOMEM, "model_classify: out of memory");
    for (int j = 0; j < k && s == CT_OK; j++)
        if (!labels[j] || !(texts[j] = fill(tmpl, labels[j])))
            s = ct_set_error(labels[j] ? CT_ERR_NOMEM : CT_ERR_ARG, "model_classify: label %d", j);
    if (s == CT_OK) s = ct_model_encode_texts(m, (const char *const *)texts, k, true, txt);
    if (s == CT_OK) s = ct_model_encode_images(m, paths, n, img);
    if (s == CT_OK && n > 0) {
        ct_graph *g = ct_graph_create(0);
        if (!g) s = ct_set_error(CT_ERR_NOMEM, "model_classify: out of memory");
        if (g) {
            ct_graph_set_grad(g, false);
            int64_t si[2] = {n, E}, st[2] = {k, E};
            ct_tensor *logits = ct_clip_logits(g, m->b.clip, ct_graph_wrap(g, img, 2, si),
                                               ct_graph_wrap(g, txt, 2, st));
            ct_tensor *p = logits ? ct_softmax(g, logits) : NULL;
            if (p)
                memcpy(probs, p->data, (size_t)n * k * sizeof *probs);
            else
                s = ct_graph_status(g) != CT_OK ? ct_graph_status(g) : CT_ERR_STATE;
            ct_graph_free(g);
        }
    }
    for (int j = 0; texts && j < k; j++) free(texts[j]);
    free(texts), free(img), free(txt);
    return s;
}
