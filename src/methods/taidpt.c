/* TaI-DPT, text-as-image double-grained prompt tuning for multi-label
 * recognition (Guo et al., "Texts as Images in Prompt Tuning for Multi-Label
 * Image Recognition", CVPR 2023). Followed: guozix/TaI-DPT
 * trainers/Caption_distill_double.py (PromptLearner, DenseCLIP.forward for
 * captions and for images, the double_ranking loss), trainers/utils.py
 * (ranking_loss), datasets/coco2014_distill.py (the caption training set
 * and its word-based labels), datasets/data_helpers.py (the templates),
 * train_caption.py (N_CTX 16, CSC False, GL_merge_rate 0.5),
 * configs/trainers/Caption_distill_double/rn50_coco2014.yaml (SGD lr 1e-4,
 * 20 epochs, batch 512, cosine, 1 constant warmup epoch at 1e-5, fixed
 * logit scale 4, spatial scales 50 for text and 40 for images) and
 * Dassl's evaluator MLClassification ("default_merge_aux").
 *
 * Training never sees an image. fit() reads a COCO captions file
 * (captions=PATH), labels every caption by the class names and synonyms it
 * mentions (ct_caption_labels; captions that mention none are dropped), adds
 * the official's template sentences (per class "a photo of a {name}." 9
 * times and each of CLIP's 80 ImageNet templates once, labelled with that
 * class only; templates=0 leaves them out) and encodes them once with the
 * frozen text tower: the EOT feature is a caption's global "image" feature
 * and the projected features of every position (ct_clip_encode_text_tokens)
 * its local ones. The generic trainer iterates that set (train_set hook).
 *
 * Two learned contexts, both generic "X x 16 {name}." CoOp prompts encoded by
 * the frozen text tower (method_prompt.c): ctx (global) and ctx_double
 * (local). With g the normalised global feature, l_m the normalised local
 * features and t_k, u_k the normalised global / local class prompts:
 *     global_k = 4 g.t_k
 *     local_k  = 4 sum_m softmax_m(s l_m.u_k) (l_m.u_k)
 * with s = spatial_text (50) over a caption's tokens — every position up to
 * its EOT, SOT included; the official masks the padding (token id 0) by
 * adding -10000, which is done the same here — and s = spatial_image (40)
 * over an image's patch tokens at test time. Loss (double_ranking):
 *     rank(global) + rank(local),
 *     rank(x) = mean_b sum_{j in pos_b, i in neg_b} max(0, 1 - x_j + x_i).
 * Scores: merge * global + (1 - merge) * local (GL_merge_rate 0.5).
 *
 * Departures: ViT towers (the image's local features are its patch tokens
 * after ln_post and the projection; the official supports RN50 only, whose
 * local features are the attention pool's value and output projections of
 * each position); NLTK's POS tagging and WordNet lemmatiser are replaced by
 * English plural rules (coco_captions.h); names are matched class by class
 * in file order (the official iterates a Python set); captions longer than
 * the context are truncated (clip.tokenize would raise); the official's
 * pre-sampled caption ids (coco_caption_text_embed_sampled_idx.pkl) are not
 * applied: every caption of the file is read; the official selects the best
 * epoch on a "val" split that is a tenth of its test split: here select=last
 * by default. The official also keeps learnable temperature, spatial_T and
 * ranking_scale tensors that its default configuration never uses (fixed
 * scales): they are not learned here. Learned tensor names: "ctx" and
 * "ctx_double", the keys of the prompt_learner state dict the official
 * trainer saves. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"
#include "data/coco_captions.h"
#include "methods/method_common.h"
#include "methods/method_prompt.h"
#include "methods/method_templates.h"

#define TAIDPT_TEMPLATE "a photo of a {}."
#define TAIDPT_TEMPLATE_COPIES 9 /* default_prompt_num - 1 */
#define TAIDPT_MASK (-10000.0f)  /* the official's padding mask */
#define TAIDPT_ENCODE_BATCH 64

typedef struct {
    ct_prompt *glob, *loc; /* ctx (global) and ctx_double (local) */
    int K, E;
    float logit_scale, spatial_text, spatial_image, merge, margin;
    bool cls_token, templates;
    char *captions, *synonyms;
    ct_features set; /* the labelled captions: x (n, E), dense (n, T, E), targets (n, K) */
    int64_t n_captions, n_labelled;
} taidpt_state;

static void set_free(ct_features *f) {
    free(f->x), free(f->dense), free(f->labels), free(f->targets);
    memset(f, 0, sizeof *f);
}

static void taidpt_destroy(void *st) {
    taidpt_state *s = st;
    if (!s) return;
    ct_prompt_destroy(s->glob);
    ct_prompt_destroy(s->loc);
    set_free(&s->set);
    free(s->captions), free(s->synonyms);
    free(s);
}

/* One CoOp prompt learner (fp32, generic, class token at the end) with a
 * context drawn N(0, 0.02) from its own stream. */
static ct_status make_prompt(const ct_task *task, int n_ctx, const char *tag, ct_prompt **out) {
    ct_kv kv = {0};
    char num[16];
    snprintf(num, sizeof num, "%d", n_ctx);
    ct_status st = ct_kv_set(&kv, "n_ctx", num);
    if (st == CT_OK) st = ct_kv_set(&kv, "ctx_init", "");
    if (st == CT_OK) st = ct_kv_set(&kv, "csc", "0");
    if (st == CT_OK) st = ct_kv_set(&kv, "class_token_position", "end");
    if (st == CT_OK) st = ct_kv_set(&kv, "prec", "fp32");
    void *p = NULL;
    if (st == CT_OK) st = ct_prompt_create(task, &kv, 0, &p);
    ct_kv_free(&kv);
    *out = p;
    if (st != CT_OK) return st;
    ct_tensor *c = ct_prompt_ctx(*out);
    ct_rng r;
    ct_rng_init(&r, ct_hash_str(ct_hash_u64(CT_HASH_INIT, task->seed), tag));
    ct_rng_fill_normal(&r, c->data, (size_t)c->numel, 0.0f, 0.02f);
    c->name = strcmp(tag, "taidpt.ctx") == 0 ? "ctx" : "ctx_double";
    return CT_OK;
}

static ct_status taidpt_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    taidpt_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "taidpt: out of memory");
    int n_ctx, cls, tmpl;
    double ls, st_, si, merge, margin;
    const char *caps, *syn;
    ct_status st = CT_OK;
#define TRY(x) \
    if (st == CT_OK) st = (x)
    TRY(ct_kv_int(hp, "n_ctx", 16, &n_ctx));
    TRY(ct_kv_str(hp, "captions", "", &caps));
    TRY(ct_kv_str(hp, "synonyms", "auto", &syn));
    TRY(ct_kv_int(hp, "templates", 1, &tmpl));
    TRY(ct_kv_double(hp, "logit_scale", 4, &ls));
    TRY(ct_kv_double(hp, "spatial_text", 50, &st_));
    TRY(ct_kv_double(hp, "spatial_image", 40, &si));
    TRY(ct_kv_double(hp, "merge", 0.5, &merge));
    TRY(ct_kv_double(hp, "margin", 1, &margin));
    TRY(ct_kv_int(hp, "cls_token", 0, &cls));
#undef TRY
    if (st == CT_OK && (!(ls > 0) || isinf(ls) || !(st_ > 0) || isinf(st_) || !(si > 0) ||
                        isinf(si) || !(margin >= 0) || isinf(margin)))
        st = ct_set_error(CT_ERR_ARG, "taidpt: logit_scale=%g spatial_text=%g spatial_image=%g "
                          "margin=%g (finite, > 0; margin >= 0)", ls, st_, si, margin);
    if (st == CT_OK && !(merge >= 0 && merge <= 1))
        st = ct_set_error(CT_ERR_ARG, "taidpt: merge=%g (in [0, 1])", merge);
    if (st == CT_OK && ((cls != 0 && cls != 1) || (tmpl != 0 && tmpl != 1)))
        st = ct_set_error(CT_ERR_ARG, "taidpt: cls_token=%d templates=%d (0 or 1)", cls, tmpl);
    if (st == CT_OK && (!(s->captions = strdup(caps)) || !(s->synonyms = strdup(syn))))
        st = ct_set_error(CT_ERR_NOMEM, "taidpt: out of memory");
    if (st == CT_OK) st = make_prompt(task, n_ctx, "taidpt.ctx", &s->glob);
    if (st == CT_OK) st = make_prompt(task, n_ctx, "taidpt.ctx_double", &s->loc);
    if (st != CT_OK) {
        taidpt_destroy(s);
        return st;
    }
    s->K = task->n_classes, s->E = ct_clip_get_config(task->clip)->embed_dim;
    s->logit_scale = (float)ls, s->spatial_text = (float)st_, s->spatial_image = (float)si;
    s->merge = (float)merge, s->margin = (float)margin;
    s->cls_token = cls, s->templates = tmpl;
    *out = s;
    return CT_OK;
}

static int taidpt_params(void *st, ct_tensor **out, int cap) {
    taidpt_state *s = st;
    if (cap < 2) return 0;
    out[0] = ct_prompt_ctx(s->glob);
    out[1] = ct_prompt_ctx(s->loc);
    return 2;
}

static int taidpt_param_names(void *st, const char **out, int cap) {
    (void)st;
    if (cap < 2) return 0;
    out[0] = "ctx";
    out[1] = "ctx_double";
    return 2;
}

/* ---- the caption set ---- */

typedef struct text_list {
    int64_t n, cap;
    char **text;     /* owned */
    int8_t *targets; /* (cap, K) */
} text_list;

static void tl_free(text_list *l) {
    for (int64_t i = 0; i < l->n; i++) free(l->text[i]);
    free(l->text), free(l->targets);
    memset(l, 0, sizeof *l);
}

/* Append text (copied) with target row y (K). */
static bool tl_push(text_list *l, const char *text, const int8_t *y, int K) {
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 256;
        char **t = realloc(l->text, (size_t)cap * sizeof *t);
        if (!t) return false;
        l->text = t;
        int8_t *g = realloc(l->targets, (size_t)cap * (size_t)K);
        if (!g) return false;
        l->targets = g, l->cap = cap;
    }
    if (!(l->text[l->n] = strdup(text))) return false;
    memcpy(l->targets + l->n * K, y, (size_t)K);
    l->n++;
    return true;
}

/* tmpl with its "{}" replaced by name, into buf. */
static void fill(char *buf, size_t cap, const char *tmpl, const char *name) {
    const char *at = strstr(tmpl, "{}");
    if (!at) {
        snprintf(buf, cap, "%s", tmpl);
        return;
    }
    snprintf(buf, cap, "%.*s%s%s", (int)(at - tmpl), tmpl, name, at + 2);
}

/* The labelled captions of s->captions, then the template sentences. */
static ct_status gather_texts(taidpt_state *s, const ct_task *task, text_list *l) {
    const int K = s->K;
    ct_coco_captions cc = {0};
    ct_synonyms syn = {0};
    char synpath[4096] = "";
    if (!strcmp(s->synonyms, "auto")) { /* synonyms.txt beside the captions, if there */
        const char *slash = strrchr(s->captions, '/');
        int dl = slash ? (int)(slash - s->captions) + 1 : 0;
        snprintf(synpath, sizeof synpath, "%.*ssynonyms.txt", dl, s->captions);
        FILE *f = fopen(synpath, "rb");
        if (f) fclose(f);
        else synpath[0] = 0;
    } else if (strcmp(s->synonyms, "none") != 0) {
        snprintf(synpath, sizeof synpath, "%s", s->synonyms);
    }
    ct_status st = ct_synonyms_load(synpath, K, task->classnames, &syn);
    if (st == CT_OK) st = ct_coco_captions_load(s->captions, &cc);
    int8_t *row = malloc((size_t)K);
    if (st == CT_OK && !row) st = ct_set_error(CT_ERR_NOMEM, "taidpt: out of memory");
    for (int64_t i = 0; st == CT_OK && i < cc.n; i++) {
        if (!ct_caption_labels(&syn, cc.captions[i], row)) continue;
        if (!tl_push(l, cc.captions[i], row, K))
            st = ct_set_error(CT_ERR_NOMEM, "taidpt: out of memory");
    }
    s->n_captions = cc.n, s->n_labelled = l->n;
    if (st == CT_OK && l->n == 0)
        st = ct_set_error(CT_ERR_FORMAT, "taidpt: %s: none of its %lld captions names a class "
                          "(class names%s)", s->captions, (long long)cc.n,
                          synpath[0] ? " and the synonyms of the file given" : " only");
    const char *const *tm = NULL;
    int nt = 0;
    char **owned = NULL;
    if (st == CT_OK && s->templates)
        st = ct_resolve_templates(task, "imagenet80", &tm, &nt, &owned);
    char name[512], buf[1024];
    for (int k = 0; st == CT_OK && s->templates && k < K; k++) {
        snprintf(name, sizeof name, "%s", task->classnames[k]);
        for (char *p = name; *p; p++)
            if (*p == '_') *p = ' ';
        memset(row, 0, (size_t)K);
        row[k] = 1;
        fill(buf, sizeof buf, TAIDPT_TEMPLATE, name);
        for (int j = 0; st == CT_OK && j < TAIDPT_TEMPLATE_COPIES; j++)
            if (!tl_push(l, buf, row, K)) st = ct_set_error(CT_ERR_NOMEM, "taidpt: no memory");
        for (int j = 0; st == CT_OK && j < nt; j++) {
            fill(buf, sizeof buf, tm[j], name);
            if (!tl_push(l, buf, row, K)) st = ct_set_error(CT_ERR_NOMEM, "taidpt: no memory");
        }
    }
    ct_templates_free(owned);
    free(row);
    ct_coco_captions_free(&cc);
    ct_synonyms_free(&syn);
    return st;
}

/* Tokenise and encode l with the frozen text tower into s->set. */
static ct_status encode_texts(taidpt_state *s, const ct_task *task, const text_list *l) {
    const ct_clip_config *c = ct_clip_get_config(task->clip);
    const int64_t L = c->context_length, n = l->n, E = s->E, K = s->K;
    int64_t *ids = malloc((size_t)n * (size_t)L * sizeof *ids);
    int64_t *eot = malloc((size_t)n * sizeof *eot);
    ct_status st = CT_OK;
    if (!ids || !eot) st = ct_set_error(CT_ERR_NOMEM, "taidpt: out of memory");
    for (int64_t i = 0; st == CT_OK && i < n; i++)
        st = ct_tokenizer_tokenize(task->tok, l->text[i], (int)L, true, ids + i * L);
    if (st == CT_OK) st = ct_clip_eot_positions(task->clip, ids, n, L, eot);
    /* the causal tower: positions past the longest EOT change nothing before it */
    int64_t T = 1;
    for (int64_t i = 0; st == CT_OK && i < n; i++) T = eot[i] + 1 > T ? eot[i] + 1 : T;
    ct_features *f = &s->set;
    set_free(f);
    if (st == CT_OK) {
        *f = (ct_features){.n = n, .dim = (int)E, .n_tokens = (int)T};
        f->x = malloc((size_t)n * (size_t)E * sizeof *f->x);
        f->dense = calloc((size_t)n * (size_t)T * (size_t)E, sizeof *f->dense);
        f->labels = malloc((size_t)n * sizeof *f->labels);
        f->targets = malloc((size_t)n * (size_t)K);
        if (!f->x || !f->dense || !f->labels || !f->targets)
            st = ct_set_error(CT_ERR_NOMEM, "taidpt: cannot hold %lld captions of %lld tokens",
                              (long long)n, (long long)T);
    }
    int64_t *rows = st == CT_OK ? malloc((size_t)TAIDPT_ENCODE_BATCH * (size_t)T * sizeof *rows)
                                : NULL;
    if (st == CT_OK && !rows) st = ct_set_error(CT_ERR_NOMEM, "taidpt: out of memory");
    ct_graph *g = st == CT_OK ? ct_graph_create(0) : NULL;
    if (st == CT_OK && !g) st = ct_set_error(CT_ERR_NOMEM, "taidpt: out of memory");
    for (int64_t i0 = 0; st == CT_OK && i0 < n; i0 += TAIDPT_ENCODE_BATCH) {
        int64_t nb = n - i0 < TAIDPT_ENCODE_BATCH ? n - i0 : TAIDPT_ENCODE_BATCH;
        for (int64_t r = 0; r < nb; r++)
            memcpy(rows + r * T, ids + (i0 + r) * L, (size_t)T * sizeof *rows);
        ct_graph_reset(g);
        ct_tensor *tok = NULL;
        ct_tensor *pooled = ct_clip_encode_text_tokens(g, task->clip, rows, nb, T, NULL, &tok);
        if (!pooled || !tok) {
            st = ct_graph_status(g) != CT_OK ? ct_graph_status(g) : CT_ERR_STATE;
            break;
        }
        memcpy(f->x + i0 * E, pooled->data, (size_t)(nb * E) * sizeof *f->x);
        /* positions past EOT (the official's token id 0) stay zero rows: the
         * loss masks them */
        for (int64_t r = 0; r < nb; r++)
            memcpy(f->dense + (i0 + r) * T * E, tok->data + r * T * E,
                   (size_t)((eot[i0 + r] + 1) * E) * sizeof *f->dense);
    }
    for (int64_t i = 0; st == CT_OK && i < n; i++) {
        memcpy(f->targets + i * K, l->targets + i * K, (size_t)K);
        int lab = 0;
        while (lab < K - 1 && f->targets[i * K + lab] != 1) lab++;
        f->labels[i] = lab;
    }
    ct_graph_free(g);
    free(rows), free(ids), free(eot);
    if (st != CT_OK) set_free(f);
    return st;
}

static ct_status taidpt_fit(void *st, const ct_task *task) {
    taidpt_state *s = st;
    if (!s->captions[0])
        return ct_set_error(CT_ERR_ARG, "taidpt: trains on captions only: give captions=PATH "
                            "(a COCO captions_*.json file)");
    if (!task->tok)
        return ct_set_error(CT_ERR_ARG, "taidpt: the captions need the model's tokenizer");
    text_list l = {0};
    ct_status r = gather_texts(s, task, &l);
    if (r == CT_OK) r = encode_texts(s, task, &l);
    if (r == CT_OK && task->log) {
        char line[512];
        snprintf(line, sizeof line, "taidpt: %lld of %lld captions name a class; %lld training "
                 "texts with the templates, %d tokens", (long long)s->n_labelled,
                 (long long)s->n_captions, (long long)s->set.n, s->set.n_tokens);
        task->log(task->log_ctx, line);
    }
    tl_free(&l);
    return r;
}

static const ct_features *taidpt_train_set(void *st) { return &((taidpt_state *)st)->set; }

/* ---- scores and loss ---- */

/* logit_scale * sum_m softmax_m(spatial * sim) sim over the m of sim
 * (n, K, M), plus the mask (n, K, M) first when given. (n, K). */
static ct_tensor *local_scores(taidpt_state *s, ct_graph *g, ct_tensor *loc, ct_tensor *txt,
                               ct_tensor *mask, float spatial) {
    ct_tensor *sim = ct_transpose(g, ct_matmul(g, loc, txt, false, true), 1, 2);
    if (mask) sim = ct_add(g, sim, mask);
    ct_tensor *w = ct_softmax(g, ct_scale(g, sim, spatial));
    return ct_scale(g, ct_sum(g, ct_mul(g, sim, w), 2), s->logit_scale);
}

/* Global and local scores (n, K) of batch b: captions (train) when text,
 * else images. */
static ct_status both_scores(taidpt_state *s, ct_graph *g, const ct_batch *b, bool text,
                             ct_tensor **glob, ct_tensor **loc) {
    if (!b->dense || b->n_tokens < 2)
        return ct_set_error(CT_ERR_ARG, "taidpt: the batch carries no dense (per-token) "
                            "features of at least 2 tokens (features computed with "
                            "dense_features)");
    const int64_t n = b->n, T = b->n_tokens, K = s->K, E = s->E;
    int64_t xs[2] = {n, E}, ds[3] = {n, T, E};
    ct_tensor *tg = ct_prompt_text_features(s->glob, g); /* (K, E) normalised */
    ct_tensor *tl = ct_prompt_text_features(s->loc, g);
    ct_tensor *x = ct_l2_normalize(g, ct_graph_wrap(g, (ct_real *)b->x, 2, xs), 1e-12f);
    *glob = ct_scale(g, ct_matmul(g, x, tg, false, true), s->logit_scale);
    ct_tensor *d = ct_graph_wrap(g, (ct_real *)b->dense, 3, ds);
    ct_tensor *mask = NULL;
    if (text) { /* padding positions are zero rows */
        int64_t ms[3] = {n, K, T};
        mask = ct_graph_tensor(g, 3, ms);
        if (!mask) return ct_graph_status(g) != CT_OK ? ct_graph_status(g) : CT_ERR_NOMEM;
        for (int64_t i = 0; i < n; i++)
            for (int64_t t = 0; t < T; t++) {
                const float *row = b->dense + (i * T + t) * E;
                bool zero = true;
                for (int64_t e = 0; e < E && zero; e++) zero = row[e] == 0;
                if (!zero) continue;
                for (int64_t k = 0; k < K; k++) mask->data[(i * K + k) * T + t] = TAIDPT_MASK;
            }
    } else if (!s->cls_token) {
        d = ct_slice(g, d, 1, 1, T - 1);
    }
    *loc = local_scores(s, g, ct_l2_normalize(g, d, 1e-12f), tl, mask,
                        text ? s->spatial_text : s->spatial_image);
    if (!*glob || !*loc) return ct_graph_status(g) != CT_OK ? ct_graph_status(g) : CT_ERR_STATE;
    return CT_OK;
}

/* ranking_loss(x, y, scale_=1, margin_=margin): the mean over the batch of
 * sum over (positive j, negative i) of max(0, margin - x_j + x_i). Unknown
 * (-1) targets take no part. */
static ct_tensor *ranking_loss(ct_graph *g, ct_tensor *x, const int8_t *y, float margin) {
    if (!x) return NULL;
    const int64_t n = x->shape[0], K = x->shape[1];
    int64_t s1[3] = {n, K, 1}, sr[3] = {n, 1, K}, sq[3] = {n, K, K}, one = 1;
    ct_tensor *ones = ct_graph_tensor(g, 3, s1), *w = ct_graph_tensor(g, 3, sq);
    ct_tensor *m = ct_graph_tensor(g, 1, &one);
    if (!ones || !w || !m) return NULL;
    for (int64_t i = 0; i < n * K; i++) ones->data[i] = 1;
    m->data[0] = margin;
    /* w[b, i, j] = y[b, j] (1 - y[b, i]): j positive, i negative */
    for (int64_t b = 0; b < n; b++)
        for (int64_t i = 0; i < K; i++)
            for (int64_t j = 0; j < K; j++)
                w->data[(b * K + i) * K + j] = y[b * K + j] == 1 && y[b * K + i] == 0 ? 1.0f : 0;
    ct_tensor *xj = ct_matmul(g, ones, ct_reshape(g, x, 3, sr), false, false); /* x[b, j] */
    ct_tensor *xi = ct_transpose(g, xj, 1, 2);                                  /* x[b, i] */
    ct_tensor *h = ct_relu(g, ct_add(g, ct_sub(g, xi, xj), m));
    return ct_scale(g, ct_sum_all(g, ct_mul(g, h, w)), 1.0f / (float)(n ? n : 1));
}

static ct_tensor *taidpt_loss(void *st, ct_graph *g, const ct_batch *b) {
    taidpt_state *s = st;
    const int8_t *y = b->targets;
    if (!y) {
        ct_set_error(CT_ERR_ARG, "taidpt: the training batch carries no multi-label targets");
        return NULL;
    }
    ct_tensor *gl = NULL, *lo = NULL;
    if (both_scores(s, g, b, true, &gl, &lo) != CT_OK) return NULL;
    return ct_add(g, ranking_loss(g, gl, y, s->margin), ranking_loss(g, lo, y, s->margin));
}

static ct_tensor *taidpt_logits(void *st, ct_graph *g, const ct_batch *b) {
    taidpt_state *s = st;
    ct_tensor *gl = NULL, *lo = NULL;
    if (both_scores(s, g, b, false, &gl, &lo) != CT_OK) return NULL;
    return ct_add(g, ct_scale(g, gl, s->merge), ct_scale(g, lo, 1.0f - s->merge));
}

const ct_method ct_method_taidpt = {
    .name = "taidpt",
    .category = "prompt learning",
    .setup = "multi-label, trained on captions only",
    .paper = "Guo et al., Texts as Images in Prompt Tuning for Multi-Label Image Recognition "
             "(TaI-DPT), CVPR 2023",
    /* train_caption.py (N_CTX 16, CSC False, GL_merge_rate 0.5), rn50_coco2014.yaml (SGD lr
     * 1e-4, 20 epochs, batch 512, cosine, 1 constant warmup epoch at 1e-5, fixed scale 4,
     * spatial_SCALE_text 50, spatial_SCALE_image 40, double_ranking with margin 1) and
     * Dassl's SGD momentum 0.9 and weight decay 5e-4 */
    .defaults = "captions= synonyms=auto templates=1 n_ctx=16 logit_scale=4 spatial_text=50 "
                "spatial_image=40 merge=0.5 margin=1 cls_token=0 optim=sgd lr=1e-4 momentum=0.9 "
                "weight_decay=5e-4 sched=cosine warmup_epochs=1 warmup_type=constant "
                "warmup_lr=1e-5 batch_size=512 epochs=20 select=last",
    .create = taidpt_create,
    .destroy = taidpt_destroy,
    .params = taidpt_params,
    .param_names = taidpt_param_names,
    .loss = taidpt_loss,
    .logits = taidpt_logits,
    .fit = taidpt_fit,
    .train_set = taidpt_train_set,
    .dense_features = true,
    .multi_label = true,
};
