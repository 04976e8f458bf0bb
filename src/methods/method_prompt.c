/* The CoOp prompt learner shared by the CoOp family (coop.c, kgcoop.c,
 * prograd.c): learned context vectors in CLIP's text prompts, the
 * shared-prefix text encoder and CLIP's logits. Moved here unchanged from
 * coop.c; see coop.c's top comment for what it follows and how it encodes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"
#include "methods/method_prompt.h"
#include "methods/method_templates.h"

typedef enum { POS_END, POS_MIDDLE, POS_FRONT } coop_pos;

struct ct_prompt {
    const ct_clip *clip;
    ct_tensor *logit_scale; /* the model's (frozen) scalar                        */
    int K, n_ctx, W, E;
    bool csc;
    int64_t T;              /* positions encoded: max EOT + 1                      */
    int64_t n_ctx_rows;     /* n_ctx, or K * n_ctx with class-specific contexts     */
    ct_tensor *ctx;         /* (n_ctx, W) or (K, n_ctx, W): the learned context     */
    ct_tensor *frozen;      /* (K * Tsrc, W): token embeddings of the tokenized prompts */
    int64_t *rows;          /* (K, T): row of [ctx rows; frozen rows] at each position */
    int64_t *eot;           /* (K) EOT positions                                    */
    bool shared;            /* encode the common prefix once (shared_prefix=1)      */
    int64_t P;              /* positions common to every prompt (< every EOT)        */
    /* the class tails rows[k][P : EOT_k + 1], grouped by length so that no
     * tail carries padding: bucket b holds n classes of L positions */
    int n_buckets;
    struct coop_bucket {
        int64_t n, L;
        int64_t *rows;      /* (n, L) */
        int64_t *last;      /* (n): row of each EOT in the bucket's (n * L) states */
    } *buckets;
    int64_t *unsort;        /* (K): class k's row among the buckets' pooled rows    */
    /* evaluation cache: normalised text features and the context they came from */
    float *txt;             /* (K, E) */
    float *txt_ctx;         /* (ctx numel) */
    bool txt_ok;
};
typedef struct ct_prompt coop_state;

void ct_prompt_destroy(void *st) {
    coop_state *s = st;
    if (!s) return;
    ct_tensor_free(s->ctx);
    ct_tensor_free(s->frozen);
    free(s->rows), free(s->eot), free(s->txt), free(s->txt_ctx);
    for (int b = 0; s->buckets && b < s->n_buckets; b++)
        free(s->buckets[b].rows), free(s->buckets[b].last);
    free(s->buckets), free(s->unsort);
    free(s);
}

/* text with every '_' replaced by ' ' (coop.py's str.replace("_", " ")) */
static char *underscores_to_spaces(const char *text) {
    char *t = strdup(text);
    for (char *p = t; p && *p; p++)
        if (*p == '_') *p = ' ';
    return t;
}

/* Source position in the tokenized prompt of position t of the assembled
 * one, or -1 - j for context vector j: the three layouts of coop.py's
 * PromptLearner.forward, written as an index map. */
static int64_t layout_src(coop_pos pos, int64_t t, int n_ctx, int name_len) {
    if (t == 0) return 0; /* SOT */
    int64_t u = t - 1, half = n_ctx / 2;
    switch (pos) {
    case POS_END:
        return u < n_ctx ? -1 - u : t;
    case POS_MIDDLE:
        if (u < half) return -1 - u;
        if (u < half + name_len) return 1 + n_ctx + (u - half);
        if (u < n_ctx + name_len) return -1 - (u - name_len);
        return t;
    case POS_FRONT:
        if (u < name_len) return 1 + n_ctx + u;
        if (u < name_len + n_ctx) return -1 - (u - name_len);
        return t;
    }
    return t;
}

/* Tokenize every class prompt; fills ids (K, Lc), name_len (K). */
static ct_status tokenize_prompts(const ct_task *task, const char *prefix, int Lc, int64_t *ids,
                                  int *name_len) {
    ct_status st = CT_OK;
    int64_t *tmp = malloc((size_t)Lc * sizeof *tmp);
    if (!tmp) return ct_set_error(CT_ERR_NOMEM, "coop: out of memory");
    for (int k = 0; k < task->n_classes && st == CT_OK; k++) {
        char *name = underscores_to_spaces(task->classnames[k]);
        size_t n = name ? strlen(prefix) + strlen(name) + 3 : 0;
        char *text = name ? malloc(n) : NULL;
        if (!text) {
            st = ct_set_error(CT_ERR_NOMEM, "coop: out of memory");
        } else {
            snprintf(text, n, "%s %s.", prefix, name);
            int nl = 0;
            st = ct_tokenizer_encode(task->tok, name, tmp, Lc, &nl);
            if (st == CT_OK) st = ct_tokenizer_tokenize(task->tok, text, Lc, false,
                                                        ids + (size_t)k * Lc);
            if (st == CT_ERR_ARG)
                st = ct_set_error(CT_ERR_ARG, "coop: the prompt of class %d \"%s\" does not fit "
                                  "in %d tokens (n_ctx or the class name is too long): %s", k,
                                  task->classnames[k], Lc, ct_last_error());
            name_len[k] = nl;
        }
        free(text), free(name);
    }
    free(tmp);
    return st;
}

/* Initial context: the token embeddings of ctx_init's words, or N(0, 0.02). */
static ct_status init_context(coop_state *s, const ct_task *task, const char *words, int n_words,
                              int Lc) {
    if (!*words) {
        ct_rng r;
        ct_rng_init(&r, ct_hash_str(ct_hash_u64(CT_HASH_INIT, task->seed), "coop.ctx"));
        ct_rng_fill_normal(&r, s->ctx->data, (size_t)s->ctx->numel, 0.0f, 0.02f);
        return CT_OK;
    }
    int64_t *ids = malloc((size_t)Lc * sizeof *ids);
    ct_graph *g = ct_graph_create(0);
    ct_status st = ids && g ? CT_OK : ct_set_error(CT_ERR_NOMEM, "coop: out of memory");
    if (st == CT_OK && (st = ct_tokenizer_tokenize(task->tok, words, Lc, false, ids)) != CT_OK)
        st = ct_set_error(CT_ERR_ARG, "coop: ctx_init \"%s\": %s", words, ct_last_error());
    if (st == CT_OK) {
        ct_graph_set_grad(g, false);
        ct_tensor *e = ct_clip_embed_tokens(g, s->clip, ids, 1, Lc);
        if (!e) st = ct_graph_status(g);
        else /* the last n_words vectors (all of them unless padded, which are zero) */
            memcpy(s->ctx->data + (size_t)(s->n_ctx - n_words) * s->W, e->data + s->W,
                   (size_t)n_words * s->W * sizeof(float));
    }
    ct_graph_free(g);
    free(ids);
    return st;
}

/* Group the class tails (positions P .. EOT) by length, longest first. */
static ct_status build_buckets(coop_state *s, int64_t P) {
    int K = s->K;
    int64_t maxL = s->T - P;
    int64_t *count = calloc((size_t)maxL + 1, sizeof *count);
    s->P = P;
    s->unsort = malloc((size_t)K * sizeof *s->unsort);
    s->buckets = calloc((size_t)maxL, sizeof *s->buckets);
    if (!count || !s->unsort || !s->buckets) {
        free(count);
        return ct_set_error(CT_ERR_NOMEM, "coop: out of memory");
    }
    for (int k = 0; k < K; k++) count[s->eot[k] - P + 1]++;
    int64_t next = 0;
    for (int64_t L = maxL; L >= 1; L--) {
        if (!count[L]) continue;
        struct coop_bucket *b = &s->buckets[s->n_buckets++];
        b->n = count[L], b->L = L;
        b->rows = malloc((size_t)(b->n * L) * sizeof *b->rows);
        b->last = malloc((size_t)b->n * sizeof *b->last);
        if (!b->rows || !b->last) {
            free(count);
            return ct_set_error(CT_ERR_NOMEM, "coop: out of memory");
        }
        int64_t i = 0;
        for (int k = 0; k < K; k++) {
            if (s->eot[k] - P + 1 != L) continue;
            memcpy(b->rows + i * L, s->rows + k * s->T + P, (size_t)L * sizeof *b->rows);
            b->last[i] = i * L + L - 1;
            s->unsort[k] = next + i++;
        }
        next += b->n;
    }
    free(count);
    return CT_OK;
}

/* The frozen embeddings and the index map of the assembled prompts. */
static ct_status build_prompts(coop_state *s, const ct_task *task, const char *prefix,
                               coop_pos pos, int Lc) {
    int K = s->K;
    int64_t *ids = malloc((size_t)K * Lc * sizeof *ids);
    int *name_len = malloc((size_t)K * sizeof *name_len);
    int64_t *src = malloc((size_t)K * Lc * sizeof *src);
    s->eot = malloc((size_t)K * sizeof *s->eot);
    ct_graph *g = ct_graph_create(0);
    ct_status st = ids && name_len && src && s->eot && g ? CT_OK
                                                          : ct_set_error(CT_ERR_NOMEM,
                                                                         "coop: out of memory");
    if (st == CT_OK) st = tokenize_prompts(task, prefix, Lc, ids, name_len);
    if (st == CT_OK) st = ct_clip_eot_positions(s->clip, ids, K, Lc, s->eot);
    int64_t T = 0, Tsrc = 1;
    for (int k = 0; st == CT_OK && k < K; k++) T = s->eot[k] + 1 > T ? s->eot[k] + 1 : T;
    /* frozen rows referenced by the first T assembled positions */
    for (int k = 0; st == CT_OK && k < K; k++)
        for (int64_t t = 0; t < T; t++) {
            int64_t j = layout_src(pos, t, s->n_ctx, name_len[k]);
            src[k * Lc + t] = j;
            if (j >= Tsrc) Tsrc = j + 1;
        }
    if (st == CT_OK && Tsrc > Lc)
        st = ct_set_error(CT_ERR_ARG, "coop: a class name of more tokens than the prompt holds");
    if (st == CT_OK) {
        s->T = T;
        s->frozen = ct_tensor_new2((int64_t)K * Tsrc, s->W, false);
        s->rows = malloc((size_t)K * T * sizeof *s->rows);
        if (!s->frozen || !s->rows) st = ct_set_error(CT_ERR_NOMEM, "coop: out of memory");
    }
    if (st == CT_OK) {
        /* only the first Tsrc tokens of each prompt are ever read */
        for (int k = 0; k < K; k++)
            memmove(ids + (size_t)k * Tsrc, ids + (size_t)k * Lc, (size_t)Tsrc * sizeof *ids);
        ct_graph_set_grad(g, false);
        ct_tensor *e = ct_clip_embed_tokens(g, s->clip, ids, K, Tsrc); /* (K, Tsrc, W) */
        if (!e) st = ct_graph_status(g);
        else memcpy(s->frozen->data, e->data, (size_t)e->numel * sizeof(float));
        for (int k = 0; st == CT_OK && k < K; k++) {
            for (int64_t t = 0; t < T; t++) {
                int64_t j = src[k * Lc + t];
                /* context vector -1 - j: class k's own when class-specific */
                s->rows[k * T + t] = j < 0 ? (s->csc ? (int64_t)k * s->n_ctx : 0) + (-1 - j)
                                           : s->n_ctx_rows + (int64_t)k * Tsrc + j;
            }
        }
    }
    /* the common prefix: SOT and, for a generic context, the context vectors
     * before the class name; always short of every EOT */
    int64_t lead = s->csc ? 0 : pos == POS_END ? s->n_ctx : pos == POS_MIDDLE ? s->n_ctx / 2 : 0;
    int64_t P = 1 + lead;
    for (int k = 0; st == CT_OK && k < K; k++) P = s->eot[k] < P ? s->eot[k] : P;
    if (st == CT_OK && P < 1) /* only a model whose EOT rule misses our EOT token */
        st = ct_set_error(CT_ERR_ARG, "coop: the model's EOT rule finds no end of text in the "
                          "prompts (EOT id %lld)", (long long)ct_clip_get_config(s->clip)->eot_id);
    if (st == CT_OK) st = build_buckets(s, P);
    ct_graph_free(g);
    free(ids), free(name_len), free(src);
    return st;
}

ct_status ct_prompt_create(const ct_task *task, const ct_kv *hp_in, int pad_to, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    int n_ctx, csc, shared, n_words = 0;
    const char *init, *where, *prec;
    ct_status st = ct_kv_int(hp, "n_ctx", 16, &n_ctx);
    if (st == CT_OK) st = ct_kv_int(hp, "shared_prefix", 1, &shared);
    if (st == CT_OK) st = ct_kv_str(hp, "ctx_init", "", &init);
    if (st == CT_OK) st = ct_kv_int(hp, "csc", 0, &csc);
    if (st == CT_OK) st = ct_kv_str(hp, "class_token_position", "end", &where);
    /* CoOp's PREC: this engine computes in float32 whatever is asked */
    if (st == CT_OK) st = ct_kv_str(hp, "prec", "fp16", &prec);
    if (st != CT_OK) return st;
    coop_pos pos;
    if (!strcmp(where, "end")) pos = POS_END;
    else if (!strcmp(where, "middle")) pos = POS_MIDDLE;
    else if (!strcmp(where, "front")) pos = POS_FRONT;
    else return ct_set_error(CT_ERR_ARG, "coop: class_token_position=%s (end, middle, front)",
                             where);
    if (strcmp(prec, "fp16") && strcmp(prec, "fp32") && strcmp(prec, "amp"))
        return ct_set_error(CT_ERR_ARG, "coop: prec=%s (fp16, fp32, amp)", prec);
    if (csc != 0 && csc != 1) return ct_set_error(CT_ERR_ARG, "coop: csc=%d (0 or 1)", csc);
    if (shared != 0 && shared != 1)
        return ct_set_error(CT_ERR_ARG, "coop: shared_prefix=%d (0 or 1)", shared);
    if (!task->tok) return ct_set_error(CT_ERR_ARG, "coop: the task has no tokenizer");
    if (task->n_classes < 1) return ct_set_error(CT_ERR_ARG, "coop: the task has no classes");
    const ct_clip_config *c = ct_clip_get_config(task->clip);
    int Lc = c->context_length;

    char *words = underscores_to_spaces(init), *prefix = NULL;
    if (!words) return ct_set_error(CT_ERR_NOMEM, "coop: out of memory");
    if (*words && pad_to == CT_PROMPT_FIRST_N && n_ctx <= 4) {
        /* maple.py / independentVL.py: the prompt is "{ctx_init} {name}." and
         * its first n_ctx tokens are the learned context (n_ctx 2 with "a
         * photo of a": "of a" stays fixed text) */
        int nw = 1;
        for (const char *p = words; *p; p++) nw += *p == ' ';
        if (n_ctx < 1 || n_ctx > nw) {
            free(words);
            return ct_set_error(CT_ERR_ARG, "prompt: n_ctx=%d must be 1 .. the %d words of "
                                "ctx_init", n_ctx, nw);
        }
        csc = 0, n_words = n_ctx;
        prefix = strdup(words);
    } else if (*words && pad_to != CT_PROMPT_FIRST_N) {
        /* coop.py: n_ctx = len(ctx_init.split(" ")), and the context is generic */
        n_ctx = 1;
        for (const char *p = words; *p; p++) n_ctx += *p == ' ';
        csc = 0;
        if (n_ctx > Lc - 3) {
            free(words);
            return ct_set_error(CT_ERR_ARG, "coop: ctx_init has %d words (at most %d)", n_ctx,
                                Lc - 3);
        }
        if (pad_to > 0) {
            /* prograd.py: "X" for each of pad_to - n_words vectors, then the words */
            if (pad_to < n_ctx || pad_to > Lc - 3) {
                free(words);
                return ct_set_error(CT_ERR_ARG, "coop: n_ctx=%d must hold the %d words of "
                                    "ctx_init (at most %d)", pad_to, n_ctx, Lc - 3);
            }
            size_t n = 2 * (size_t)(pad_to - n_ctx) + strlen(words) + 1;
            prefix = malloc(n);
            if (prefix) {
                prefix[0] = 0;
                for (int i = 0; i < pad_to - n_ctx; i++) strcat(prefix, "X ");
                strcat(prefix, words);
            }
            n_words = n_ctx, n_ctx = pad_to;
        } else {
            prefix = strdup(words);
        }
    } else if (n_ctx >= 1 && n_ctx <= Lc - 3) {
        prefix = malloc(2 * (size_t)n_ctx);
        for (int i = 0; prefix && i < n_ctx; i++) prefix[2 * i] = 'X', prefix[2 * i + 1] = ' ';
        if (prefix) prefix[2 * n_ctx - 1] = 0;
    } else {
        free(words);
        return ct_set_error(CT_ERR_ARG, "coop: n_ctx=%d (1 .. %d)", n_ctx, Lc - 3);
    }
    coop_state *s = calloc(1, sizeof *s);
    if (!s || !prefix) {
        free(words), free(prefix), free(s);
        return ct_set_error(CT_ERR_NOMEM, "coop: out of memory");
    }
    s->clip = task->clip;
    s->logit_scale = ct_clip_find_tensor(task->clip, "logit_scale");
    if (!s->logit_scale) st = ct_set_error(CT_ERR_ARG, "coop: the model has no logit_scale");
    s->K = task->n_classes, s->n_ctx = n_ctx, s->csc = csc, s->shared = shared;
    s->W = c->text_width, s->E = c->embed_dim;
    s->n_ctx_rows = csc ? (int64_t)s->K * n_ctx : n_ctx;
    int64_t shape[3] = {s->K, n_ctx, s->W};
    s->ctx = csc ? ct_tensor_new(3, shape, true) : ct_tensor_new(2, shape + 1, true);
    s->txt = malloc((size_t)s->K * s->E * sizeof *s->txt);
    if (s->ctx) s->txt_ctx = malloc((size_t)s->ctx->numel * sizeof *s->txt_ctx);
    if (st == CT_OK && (!s->ctx || !s->txt || !s->txt_ctx))
        st = ct_set_error(CT_ERR_NOMEM, "coop: out of memory");
    if (s->ctx) s->ctx->name = "coop.ctx";
    if (st == CT_OK) st = build_prompts(s, task, prefix, pos, Lc);
    /* MaPLe's layout: positions 1 .. n_ctx of the tokenized ctx_init, as
     * init_context copies them when n_words == n_ctx */
    if (st == CT_OK)
        st = init_context(s, task, n_words || pad_to != CT_PROMPT_FIRST_N ? words : "",
                          n_words ? n_words : n_ctx, Lc);
    free(words), free(prefix);
    if (st != CT_OK) {
        ct_prompt_destroy(s);
        return st;
    }
    *out = s;
    return CT_OK;
}

int ct_prompt_params(void *st, ct_tensor **out, int cap) {
    coop_state *s = st;
    if (cap < 1) return 0;
    out[0] = s->ctx;
    return 1;
}

/* coop.py's PromptLearner: self.ctx, saved as "ctx" (CoOp.build_model
 * registers model.prompt_learner). */
int ct_prompt_param_names(void *st, const char **out, int cap) {
    (void)st;
    if (cap < 1) return 0;
    out[0] = "ctx";
    return 1;
}

/* Text features of the prompts from their embeddings table (rows of the
 * context and the frozen tokens): the common prefix once, then the class
 * tails, bucket by bucket, attending to it (ct_clip_encode_text_shared). */
static ct_tensor *encode_shared_prefix(coop_state *s, ct_graph *g, ct_tensor *table,
                                       const ct_clip_hooks *hooks) {
    int nb = s->n_buckets;
    int64_t ps[2] = {1, s->P};
    ct_text_tail *tails = ct_graph_alloc(g, (size_t)nb * sizeof *tails);
    if (!tails) return NULL;
    for (int b = 0; b < nb; b++) {
        int64_t shape[2] = {s->buckets[b].n, s->buckets[b].L};
        tails[b].embeds = ct_gather_rows(g, table, s->buckets[b].rows, 2, shape);
        tails[b].last = s->buckets[b].last;
    }
    ct_tensor *pooled = ct_clip_encode_text_shared(g, s->clip, ct_gather_rows(g, table, s->rows,
                                                                              2, ps),
                                                   tails, nb, hooks);
    int64_t K = s->K;
    return ct_gather_rows(g, pooled, s->unsort, 1, &K);
}

/* Text features (K, E) of the prompts under the current context, before
 * normalisation (LASP adds its class-agnostic bias there). */
ct_tensor *ct_prompt_text_features_raw(ct_prompt *s, ct_graph *g) {
    return ct_prompt_text_features_deep(s, g, NULL);
}

ct_tensor *ct_prompt_text_features_deep(ct_prompt *s, ct_graph *g, const ct_deep_prompts *deep) {
    return ct_prompt_text_features_with(s, g, NULL, deep);
}

ct_tensor *ct_prompt_text_features_with(ct_prompt *s, ct_graph *g, ct_tensor *ctx,
                                        const ct_deep_prompts *deep) {
    if (ctx && ctx->numel != s->ctx->numel) {
        ct_set_error(CT_ERR_ARG, "prompt: a context of %lld values for %lld",
                     (long long)ctx->numel, (long long)s->ctx->numel);
        return NULL;
    }
    int64_t flat[2] = {s->n_ctx_rows, s->W}, shape[2] = {s->K, s->T};
    ct_tensor *parts[2] = {ct_reshape(g, ctx ? ctx : s->ctx, 2, flat), s->frozen};
    ct_tensor *table = ct_concat(g, parts, 2, 0);
    ct_clip_hooks hooks = {0};
    hooks.text_deep = deep;
    /* deep prompts replace positions 1 .. P': shared only while the common
     * prefix holds them (the context before the class name) */
    bool in_prefix = !deep || !deep->depth || !deep->tokens[deep->depth - 1] ||
                     1 + deep->tokens[deep->depth - 1]->shape[0] <= s->P;
    if (s->shared && in_prefix) return encode_shared_prefix(s, g, table, &hooks);
    return ct_clip_encode_text_embeds(g, s->clip, ct_gather_rows(g, table, s->rows, 2, shape),
                                      s->eot, &hooks);
}

/* Normalised text features (K, E) of the prompts under the current context. */
ct_tensor *ct_prompt_text_features(ct_prompt *s, ct_graph *g) {
    return ct_l2_normalize(g, ct_prompt_text_features_raw(s, g), 1e-12f);
}

/* exp(logit_scale) * normalize(img) @ txt^T, txt already normalised: (n, K). */
ct_tensor *ct_prompt_scores(ct_prompt *s, ct_graph *g, const ct_batch *b, ct_tensor *txt) {
    int64_t shape[2] = {b->n, s->E};
    ct_tensor *img = ct_l2_normalize(g, ct_graph_wrap(g, (ct_real *)b->x, 2, shape), 1e-12f);
    return ct_mul(g, ct_matmul(g, img, txt, false, true), ct_exp(g, s->logit_scale));
}

ct_tensor *ct_prompt_loss(void *st, ct_graph *g, const ct_batch *b) {
    coop_state *s = st;
    int64_t *labels = ct_graph_alloc(g, (size_t)(b->n ? b->n : 1) * sizeof *labels);
    if (!labels) return NULL;
    for (int64_t i = 0; i < b->n; i++) labels[i] = b->labels[i];
    return ct_cross_entropy(g, ct_prompt_scores(s, g, b, ct_prompt_text_features(s, g)),
                            labels, 0.0f);
}

ct_tensor *ct_prompt_logits(void *st, ct_graph *g, const ct_batch *b) {
    coop_state *s = st;
    /* with grad mode on the caller may want d/d ctx: no cache then */
    bool grad = ct_graph_set_grad(g, false);
    ct_graph_set_grad(g, grad);
    if (grad) return ct_prompt_scores(s, g, b, ct_prompt_text_features(s, g));
    size_t nctx = (size_t)s->ctx->numel * sizeof(float);
    if (!s->txt_ok || memcmp(s->txt_ctx, s->ctx->data, nctx)) {
        ct_tensor *t = ct_prompt_text_features(s, g);
        if (!t) return NULL;
        memcpy(s->txt, t->data, (size_t)s->K * s->E * sizeof(float));
        memcpy(s->txt_ctx, s->ctx->data, nctx);
        s->txt_ok = true;
    }
    int64_t shape[2] = {s->K, s->E};
    return ct_prompt_scores(s, g, b, ct_graph_wrap(g, s->txt, 2, shape));
}

ct_tensor *ct_prompt_ctx(ct_prompt *s) { return s->ctx; }

/* Normalised CLIP text features (K, E) of the hand-crafted prompts
 * tmpl.format(classname with '_' -> ' ') (KgCoOp's w^clip, ProGrad's
 * zero-shot classifier). */
ct_status ct_prompt_zeroshot_text(const ct_task *task, const char *tmpl, float *out) {
    int K = task->n_classes, Lc = ct_clip_get_config(task->clip)->context_length;
    int64_t *ids = malloc((size_t)K * Lc * sizeof *ids);
    ct_graph *g = ct_graph_create(0);
    ct_status st = ids && g ? CT_OK : ct_set_error(CT_ERR_NOMEM, "prompt: out of memory");
    for (int k = 0; st == CT_OK && k < K; k++) {
        char *text = ct_template_fill(tmpl, task->classnames[k]);
        if (!text) st = CT_ERR_ARG; /* error set by ct_template_fill */
        else st = ct_tokenizer_tokenize(task->tok, text, Lc, false, ids + (size_t)k * Lc);
        free(text);
    }
    if (st == CT_OK) {
        ct_graph_set_grad(g, false);
        ct_tensor *t = ct_l2_normalize(g, ct_clip_encode_text(g, task->clip, ids, K, Lc, NULL),
                                       1e-12f);
        if (!t) st = ct_graph_status(g);
        else memcpy(out, t->data, (size_t)t->numel * sizeof(float));
    }
    ct_graph_free(g);
    free(ids);
    return st;
}
