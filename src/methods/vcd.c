/* VCD: "Visual Classification via Description from Large Language Models"
 * (Menon & Vondrick, ICLR 2023), after the official
 * sachit-menon/classify_by_description_release: loading_helpers.py
 * (load_gpt_descriptions, make_descriptor_sentence, wordify), load.py
 * (hparams, compute_description_encodings, aggregate_similarity,
 * print_descriptor_similarity) and main.py (the evaluation). Training-free.
 *
 * An LLM lists visual descriptors per class ("has a long tail"); each
 * becomes a prompt "{class}, which has a long tail" and the class score is
 * the mean similarity of the image to its descriptors:
 *
 *   s_k(f) = exp(logit_scale) mean_{d in D_k} cos(f, E_text(prompt(k, d)))
 *
 * which makes every decision explainable by its best-matching descriptors.
 * The official scores are the plain cosine means (argmax and accuracy are
 * the same; exp(logit_scale) keeps softmax on zero-shot's scale); its
 * explanations print 100 x cosine, which is exp(logit_scale) x cosine for
 * OpenAI's models. Since the mean of dot products is the dot product with
 * the mean, the logits use each class's mean descriptor embedding (one
 * (B, E) x (E, K) product, not (B, E) x (E, N)).
 *
 * Prompts (load.py defaults): before_text "", between_text ", ",
 * after_text "" (hp suffix; the ImageNet setting later used "."),
 * category_name_inclusion 'prepend' (hp name), descriptor modification on
 * (hp modify). Prompts are tokenised without truncation, as the official's
 * clip.tokenize(v): one longer than the context is an error naming it. The
 * official turns an empty descriptor list into [''] silently; here it is an
 * error (ct_class_texts_load). */
#include "methods/vcd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "methods/cupl.h"

typedef struct {
    ct_tensor *M;  /* (K, E) per class, the mean of its unit descriptor embeddings */
    float *D;      /* (N, E) unit descriptor embeddings, class by class            */
    int *off;      /* (K + 1) class k's descriptors are D rows [off[k], off[k+1])  */
    char **names;  /* (N) descriptors as written, or NULL                          */
    int K, E;
    float scale;   /* exp(logit_scale)                                             */
} vcd_state;

static bool starts(const char *s, const char *prefix) {
    return !strncmp(s, prefix, strlen(prefix));
}

/* make_descriptor_sentence, case-sensitive as Python's str.startswith.
 * "a" catches every descriptor starting with the letter a ("antennae" ->
 * "which is antennae"), as the official's startswith('a') does. */
static const char *descriptor_lead(const char *d) {
    if (starts(d, "a")) return "which is ";
    if (starts(d, "has") || starts(d, "often") || starts(d, "typically") || starts(d, "may") ||
        starts(d, "can"))
        return "which ";
    if (starts(d, "used")) return "which is ";
    return "which has ";
}

char *ct_vcd_prompt(const char *classname, const char *descriptor, ct_vcd_naming naming,
                    bool modify, const char *suffix) {
    const char *lead = modify ? descriptor_lead(descriptor) : "";
    if (!suffix) suffix = "";
    size_t n = strlen(classname) + strlen(lead) + strlen(descriptor) + strlen(suffix) + 8;
    char *p = malloc(n), *word = strdup(classname);
    if (!p || !word) {
        free(p), free(word);
        ct_set_error(CT_ERR_NOMEM, "vcd: out of memory");
        return NULL;
    }
    for (char *c = word; *c; c++) /* wordify */
        if (*c == '_') *c = ' ';
    /* after_text goes only after a prepended name, as in the official lambdas */
    if (naming == CT_VCD_PREPEND)
        snprintf(p, n, "%s, %s%s%s", word, lead, descriptor, suffix);
    else if (naming == CT_VCD_APPEND)
        snprintf(p, n, "%s%s, %s", lead, descriptor, word);
    else
        snprintf(p, n, "%s%s", lead, descriptor);
    free(word);
    return p;
}

static void vcd_destroy(void *st) {
    vcd_state *v = st;
    if (!v) return;
    for (int i = 0; v->names && v->off && i < v->off[v->K]; i++) free(v->names[i]);
    free(v->names);
    free(v->off);
    free(v->D);
    ct_tensor_free(v->M);
    free(v);
}

ct_status ct_vcd_state_new(int K, int E, const float *emb, const int *off,
                           const char *const *names, float scale, void **state) {
    if (K < 1 || E < 1 || off[0] != 0)
        return ct_set_error(CT_ERR_ARG, "vcd: %d classes of dim %d, first offset %d", K, E,
                            off[0]);
    for (int k = 0; k < K; k++)
        if (off[k + 1] <= off[k])
            return ct_set_error(CT_ERR_ARG, "vcd: class %d has no descriptors", k);
    int N = off[K];
    vcd_state *v = calloc(1, sizeof *v);
    ct_status s = v ? CT_OK : CT_ERR_NOMEM;
    if (s == CT_OK) {
        v->K = K, v->E = E, v->scale = scale;
        v->M = ct_tensor_new2(K, E, false);
        v->D = malloc((size_t)N * (size_t)E * sizeof *v->D);
        v->off = malloc(((size_t)K + 1) * sizeof *v->off);
        v->names = names ? calloc((size_t)N, sizeof *v->names) : NULL;
        if (!v->M || !v->D || !v->off || (names && !v->names)) s = CT_ERR_NOMEM;
    }
    if (s == CT_OK) memcpy(v->off, off, ((size_t)K + 1) * sizeof *off);
    for (int i = 0; s == CT_OK && names && i < N; i++)
        if (!(v->names[i] = strdup(names[i]))) s = CT_ERR_NOMEM;
    if (s != CT_OK) {
        vcd_destroy(v);
        return ct_set_error(CT_ERR_NOMEM, "vcd: out of memory");
    }
    /* F.normalize(encode_text(tokens)) per descriptor, then the class means */
    for (int i = 0; i < N; i++) {
        const float *e = emb + (size_t)i * E;
        double ss = 0;
        for (int j = 0; j < E; j++) ss += (double)e[j] * e[j];
        double nrm = sqrt(ss) > 1e-12 ? sqrt(ss) : 1e-12;
        for (int j = 0; j < E; j++) v->D[(size_t)i * E + j] = (float)(e[j] / nrm);
    }
    for (int k = 0; k < K; k++) {
        int n = off[k + 1] - off[k];
        for (int j = 0; j < E; j++) {
            double acc = 0;
            for (int i = off[k]; i < off[k + 1]; i++) acc += v->D[(size_t)i * E + j];
            v->M->data[(size_t)k * E + j] = (float)(acc / n);
        }
    }
    *state = v;
    return CT_OK;
}

static ct_status vcd_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    const char *path, *suffix, *name;
    int modify = 1;
    ct_status s = ct_kv_str(hp, "descriptors", "", &path);
    if (s == CT_OK) s = ct_kv_str(hp, "suffix", "", &suffix);
    if (s == CT_OK) s = ct_kv_str(hp, "name", "prepend", &name);
    if (s == CT_OK) s = ct_kv_int(hp, "modify", 1, &modify);
    if (s != CT_OK) return s;
    if (!*path)
        return ct_set_error(CT_ERR_ARG, "vcd: no descriptors= given (a JSON file {\"class\": "
                            "[\"descriptor\", ...]}, see data/descriptors/README.md)");
    ct_vcd_naming naming;
    if (!strcmp(name, "prepend"))
        naming = CT_VCD_PREPEND;
    else if (!strcmp(name, "append"))
        naming = CT_VCD_APPEND;
    else if (!strcmp(name, "none"))
        naming = CT_VCD_NONE;
    else
        return ct_set_error(CT_ERR_ARG, "vcd: name=%s: expected prepend, append or none", name);
    if (modify != 0 && modify != 1)
        return ct_set_error(CT_ERR_ARG, "vcd: modify=%d: expected 0 or 1", modify);
    char ctx[4200];
    snprintf(ctx, sizeof ctx, "vcd: descriptors=%s", path);
    ct_class_texts ct;
    if ((s = ct_class_texts_load(path, ctx, task->n_classes, task->classnames, &ct)) != CT_OK)
        return s;
    int K = task->n_classes, N = ct.off[K], E = ct_clip_get_config(task->clip)->embed_dim;
    float *emb = malloc((size_t)N * (size_t)E * sizeof *emb);
    char **prompts = calloc((size_t)N, sizeof *prompts);
    if (!emb || !prompts) s = ct_set_error(CT_ERR_NOMEM, "vcd: out of memory");
    for (int k = 0; s == CT_OK && k < K; k++) {
        for (int i = ct.off[k]; s == CT_OK && i < ct.off[k + 1]; i++)
            if (!(prompts[i] = ct_vcd_prompt(task->classnames[k], ct.texts[i], naming, modify,
                                             suffix)))
                s = CT_ERR_NOMEM;
        snprintf(ctx, sizeof ctx, "vcd: class \"%s\"", task->classnames[k]);
        if (s == CT_OK)
            s = ct_encode_texts(task, (const char *const *)prompts + ct.off[k],
                                ct.off[k + 1] - ct.off[k], false, ctx,
                                emb + (size_t)ct.off[k] * E);
    }
    if (s == CT_OK) {
        const ct_tensor *ls = ct_clip_find_tensor(task->clip, "logit_scale");
        s = ct_vcd_state_new(K, E, emb, ct.off, (const char *const *)ct.texts,
                             expf(ls->data[0]), out);
    }
    for (int i = 0; prompts && i < N; i++) free(prompts[i]);
    free(prompts);
    free(emb);
    ct_class_texts_free(&ct);
    return s;
}

static ct_tensor *vcd_logits(void *st, ct_graph *g, const ct_batch *b) {
    vcd_state *v = st;
    int64_t shape[2] = {b->n, v->E};
    ct_tensor *x = ct_l2_normalize(g, ct_graph_wrap(g, (ct_real *)b->x, 2, shape), 1e-12f);
    return ct_scale(g, ct_matmul(g, x, v->M, false, true), v->scale);
}

ct_status ct_vcd_explain(void *state, const float *image_feature, int cls, int top, int *idx,
                         float *scores) {
    vcd_state *v = state;
    if (!v || !image_feature || !idx || !scores)
        return ct_set_error(CT_ERR_ARG, "ct_vcd_explain: NULL argument");
    if (cls < 0 || cls >= v->K)
        return ct_set_error(CT_ERR_ARG, "ct_vcd_explain: class %d is not in [0, %d)", cls, v->K);
    if (top < 1) return ct_set_error(CT_ERR_ARG, "ct_vcd_explain: top %d < 1", top);
    int E = v->E, n = v->off[cls + 1] - v->off[cls];
    double ss = 0;
    for (int j = 0; j < E; j++) ss += (double)image_feature[j] * image_feature[j];
    double inv = 1 / (sqrt(ss) > 1e-12 ? sqrt(ss) : 1e-12);
    for (int r = 0; r < top; r++) idx[r] = -1, scores[r] = NAN;
    /* insertion into the top list; a later index never displaces an equal
     * score, so ties keep the lower index first */
    int have = 0;
    for (int i = 0; i < n; i++) {
        const float *d = v->D + (size_t)(v->off[cls] + i) * E;
        double dot = 0;
        for (int j = 0; j < E; j++) dot += (double)image_feature[j] * d[j];
        float sc = (float)(v->scale * dot * inv);
        int r = have < top ? have : top;
        while (r > 0 && scores[r - 1] < sc) r--;
        if (r >= top) continue;
        int last = have < top ? have : top - 1;
        for (int q = last; q > r; q--) idx[q] = idx[q - 1], scores[q] = scores[q - 1];
        idx[r] = i, scores[r] = sc;
        if (have < top) have++;
    }
    return CT_OK;
}

const char *ct_vcd_descriptor(void *state, int cls, int i) {
    vcd_state *v = state;
    if (!v || !v->names || cls < 0 || cls >= v->K || i < 0 || i >= v->off[cls + 1] - v->off[cls])
        return NULL;
    return v->names[v->off[cls] + i];
}

int ct_vcd_num_descriptors(void *state, int cls) {
    vcd_state *v = state;
    return v && cls >= 0 && cls < v->K ? v->off[cls + 1] - v->off[cls] : 0;
}

const ct_method ct_method_vcd = {
    .name = "vcd",
    .category = "llm-prompts",
    .setup = "zero-shot",
    .paper = "Menon & Vondrick, Visual Classification via Description from Large Language "
             "Models, ICLR 2023",
    .defaults = "descriptors= name=prepend modify=1 suffix=",
    .create = vcd_create,
    .destroy = vcd_destroy,
    .logits = vcd_logits,
};
