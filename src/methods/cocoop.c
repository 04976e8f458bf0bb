/* CoCoOp, conditional context optimization (Zhou et al., "Conditional Prompt
 * Learning for Vision-Language Models", CVPR 2022). Followed: KaiyangZhou/CoOp
 * trainers/cocoop.py (PromptLearner, CustomCLIP) and
 * configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml.
 *
 * CoOp's prompt "[SOT] v_1 ... v_M {classname}. [EOT]" with the context
 * shifted per image: a Meta-Net pi = Linear(hidden -> W)(ReLU(Linear(E ->
 * hidden)(x))), hidden = E / meta_div (16 in cocoop.py), on the normalised
 * image feature x, is added to every context vector, v_m(x) = v_m + pi(x).
 * Every image thus has its own K class prompts, encoded by the frozen text
 * tower; logits[i] = exp(logit_scale) * x_i . normalize(txt_i[k]); the loss is
 * their cross-entropy. Learned: the context and the Meta-Net.
 *
 * As cocoop.py: class names with '_' -> ' '; prompts tokenized as
 * "{ctx_init} {name}." (ctx_init's '_' read as ' ', n_ctx = its number of
 * words, the context starting from the token embeddings at positions
 * 1..n_ctx of the tokenized ctx_init) or "X X ... X {name}." with N(0, 0.02)
 * context; the class name always follows the context; pooled at the EOT
 * position. The Meta-Net starts as torch's nn.Linear default,
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases.
 * Learned tensor names: cocoop.py's saved prompt_learner state dict, "ctx",
 * "meta_net.linear1.weight" (H, E), "meta_net.linear1.bias",
 * "meta_net.linear2.weight" (W, H), "meta_net.linear2.bias".
 *
 * Cost: n images x K prompts per step. The text tower is causal, so,
 * exactly: the prompts are run only up to the last EOT (the pooled output
 * does not depend on the padding after it), not to 77; and the first
 * P = 1 + n_ctx positions (SOT and the image's shifted context) are the same
 * in an image's K prompts, so they are encoded once per image and their keys
 * and values at every layer are given to the K class tails (ct_attention's
 * ek/ev), as coop.c does for its one shared context. shared_prefix=0 runs
 * the plain encoder (same results up to float rounding; tested). Evaluation
 * works in chunks of images on a private graph. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"
#include "methods/cocoop.h"
#include "methods/method_common.h"
#include "methods/method_prompt.h"

#define EVAL_CHUNK 16

typedef struct {
    const ct_clip *clip;
    ct_tensor *logit_scale;
    int K, n_ctx, W, E, H;
    int64_t T;           /* positions encoded: max EOT + 1 */
    ct_tensor *ctx;      /* (n_ctx, W) */
    ct_tensor *w1, *b1;  /* (H, E), (H) */
    ct_tensor *w2, *b2;  /* (W, H), (W) */
    ct_tensor *frozen;   /* (K * T, W) token embeddings of the tokenized prompts */
    int64_t *eot;        /* (K) */
    bool shared;         /* encode each image's SOT + context once (shared_prefix=1) */
    int64_t *tail_rows;  /* (K, T - P): frozen rows of positions P .. T-1, P = 1 + n_ctx */
    int64_t *tail_last;  /* (K): the EOT's row among the (K * (T - P)) tail states */
    ct_graph *eg;        /* evaluation graph */
} cocoop_state;

void ct_cocoop_destroy(void *st) {
    cocoop_state *s = st;
    if (!s) return;
    ct_tensor_free(s->ctx), ct_tensor_free(s->w1), ct_tensor_free(s->b1);
    ct_tensor_free(s->w2), ct_tensor_free(s->b2), ct_tensor_free(s->frozen);
    free(s->eot), free(s->tail_rows), free(s->tail_last);
    ct_graph_free(s->eg);
    free(s);
}

static char *underscores_to_spaces(const char *text) {
    char *t = strdup(text);
    for (char *p = t; p && *p; p++)
        if (*p == '_') *p = ' ';
    return t;
}

/* Tokenize "{prefix} {name}." per class; frozen embeddings up to max EOT. */
static ct_status build_prompts(cocoop_state *s, const ct_task *task, const char *prefix, int Lc) {
    int K = s->K;
    int64_t *ids = malloc((size_t)K * Lc * sizeof *ids);
    s->eot = malloc((size_t)K * sizeof *s->eot);
    ct_status st = ids && s->eot ? CT_OK : ct_set_error(CT_ERR_NOMEM, "cocoop: out of memory");
    for (int k = 0; k < K && st == CT_OK; k++) {
        char *name = underscores_to_spaces(task->classnames[k]);
        size_t n = name ? strlen(prefix) + strlen(name) + 3 : 0;
        char *text = name ? malloc(n) : NULL;
        if (!text) {
            st = ct_set_error(CT_ERR_NOMEM, "cocoop: out of memory");
        } else {
            snprintf(text, n, "%s %s.", prefix, name);
            st = ct_tokenizer_tokenize(task->tok, text, Lc, false, ids + (size_t)k * Lc);
            if (st == CT_ERR_ARG)
                st = ct_set_error(CT_ERR_ARG, "cocoop: the prompt of class %d \"%s\" does not "
                                  "fit in %d tokens: %s", k, task->classnames[k], Lc,
                                  ct_last_error());
        }
        free(text), free(name);
    }
    if (st == CT_OK) st = ct_clip_eot_positions(s->clip, ids, K, Lc, s->eot);
    int64_t T = 0;
    for (int k = 0; st == CT_OK && k < K; k++) {
        if (s->eot[k] <= s->n_ctx) /* only a model whose EOT rule misses our EOT token */
            st = ct_set_error(CT_ERR_ARG, "cocoop: the model's EOT rule finds no end of text "
                              "after the context in the prompt of class %d", k);
        T = s->eot[k] + 1 > T ? s->eot[k] + 1 : T;
    }
    ct_graph *g = st == CT_OK ? ct_graph_create(0) : NULL;
    if (st == CT_OK && !g) st = ct_set_error(CT_ERR_NOMEM, "cocoop: out of memory");
    if (st == CT_OK) {
        s->T = T;
        for (int k = 0; k < K; k++)
            memmove(ids + (size_t)k * T, ids + (size_t)k * Lc, (size_t)T * sizeof *ids);
        ct_graph_set_grad(g, false);
        ct_tensor *e = ct_clip_embed_tokens(g, s->clip, ids, K, T);
        s->frozen = ct_tensor_new2((int64_t)K * T, s->W, false);
        if (!e) st = ct_graph_status(g);
        else if (!s->frozen) st = ct_set_error(CT_ERR_NOMEM, "cocoop: out of memory");
        else memcpy(s->frozen->data, e->data, (size_t)e->numel * sizeof(float));
    }
    int64_t P = 1 + s->n_ctx, L = T - P; /* every EOT is at P or later (checked above) */
    if (st == CT_OK) {
        s->tail_rows = malloc((size_t)(K * L) * sizeof *s->tail_rows);
        s->tail_last = malloc((size_t)K * sizeof *s->tail_last);
        if (!s->tail_rows || !s->tail_last) st = ct_set_error(CT_ERR_NOMEM, "cocoop: out of memory");
    }
    for (int k = 0; st == CT_OK && k < K; k++) {
        for (int64_t t = 0; t < L; t++) s->tail_rows[k * L + t] = k * T + P + t;
        s->tail_last[k] = k * L + s->eot[k] - P;
    }
    ct_graph_free(g);
    free(ids);
    return st;
}

static ct_status init_params(cocoop_state *s, const ct_task *task, const char *words, int Lc) {
    ct_rng r;
    ct_rng_init(&r, ct_hash_str(ct_hash_u64(CT_HASH_INIT, task->seed), "cocoop.init"));
    /* nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
    float a1 = 1.0f / sqrtf((float)s->E), a2 = 1.0f / sqrtf((float)s->H);
    ct_rng_fill_uniform(&r, s->w1->data, (size_t)s->w1->numel, -a1, a1);
    ct_rng_fill_uniform(&r, s->b1->data, (size_t)s->b1->numel, -a1, a1);
    ct_rng_fill_uniform(&r, s->w2->data, (size_t)s->w2->numel, -a2, a2);
    ct_rng_fill_uniform(&r, s->b2->data, (size_t)s->b2->numel, -a2, a2);
    if (!*words) {
        ct_rng_fill_normal(&r, s->ctx->data, (size_t)s->ctx->numel, 0.0f, 0.02f);
        return CT_OK;
    }
    int64_t *ids = malloc((size_t)Lc * sizeof *ids);
    ct_graph *g = ct_graph_create(0);
    ct_status st = ids && g ? CT_OK : ct_set_error(CT_ERR_NOMEM, "cocoop: out of memory");
    if (st == CT_OK && (st = ct_tokenizer_tokenize(task->tok, words, Lc, false, ids)) != CT_OK)
        st = ct_set_error(CT_ERR_ARG, "cocoop: ctx_init \"%s\": %s", words, ct_last_error());
    if (st == CT_OK) {
        ct_graph_set_grad(g, false);
        ct_tensor *e = ct_clip_embed_tokens(g, s->clip, ids, 1, Lc);
        if (!e) st = ct_graph_status(g);
        else memcpy(s->ctx->data, e->data + s->W, (size_t)s->n_ctx * s->W * sizeof(float));
    }
    ct_graph_free(g);
    free(ids);
    return st;
}

ct_status ct_cocoop_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    int n_ctx, div, shared;
    const char *init, *prec;
    ct_status st = ct_kv_int(hp, "n_ctx", 4, &n_ctx);
    if (st == CT_OK) st = ct_kv_int(hp, "shared_prefix", 1, &shared);
    if (st == CT_OK) st = ct_kv_str(hp, "ctx_init", "a_photo_of_a", &init);
    if (st == CT_OK) st = ct_kv_int(hp, "meta_div", 16, &div);
    /* CoCoOp's PREC: this engine computes in float32 whatever is asked */
    if (st == CT_OK) st = ct_kv_str(hp, "prec", "fp16", &prec);
    if (st != CT_OK) return st;
    if (strcmp(prec, "fp16") && strcmp(prec, "fp32") && strcmp(prec, "amp"))
        return ct_set_error(CT_ERR_ARG, "cocoop: prec=%s (fp16, fp32, amp)", prec);
    if (shared != 0 && shared != 1)
        return ct_set_error(CT_ERR_ARG, "cocoop: shared_prefix=%d (0 or 1)", shared);
    if (!task->tok) return ct_set_error(CT_ERR_ARG, "cocoop: the task has no tokenizer");
    if (task->n_classes < 1) return ct_set_error(CT_ERR_ARG, "cocoop: the task has no classes");
    const ct_clip_config *c = ct_clip_get_config(task->clip);
    int Lc = c->context_length;
    if (div < 1 || c->embed_dim / div < 1)
        return ct_set_error(CT_ERR_ARG, "cocoop: meta_div=%d (1 .. %d for embed dim %d)", div,
                            c->embed_dim, c->embed_dim);
    char *words = underscores_to_spaces(init), *prefix = NULL;
    if (!words) return ct_set_error(CT_ERR_NOMEM, "cocoop: out of memory");
    if (*words) {
        n_ctx = 1;
        for (const char *p = words; *p; p++) n_ctx += *p == ' ';
        if (n_ctx > Lc - 3) {
            free(words);
            return ct_set_error(CT_ERR_ARG, "cocoop: ctx_init has %d words (at most %d)", n_ctx,
                                Lc - 3);
        }
        prefix = strdup(words);
    } else if (n_ctx >= 1 && n_ctx <= Lc - 3) {
        prefix = malloc(2 * (size_t)n_ctx);
        for (int i = 0; prefix && i < n_ctx; i++) prefix[2 * i] = 'X', prefix[2 * i + 1] = ' ';
        if (prefix) prefix[2 * n_ctx - 1] = 0;
    } else {
        free(words);
        return ct_set_error(CT_ERR_ARG, "cocoop: n_ctx=%d (1 .. %d)", n_ctx, Lc - 3);
    }
    cocoop_state *s = calloc(1, sizeof *s);
    if (!s || !prefix) {
        free(words), free(prefix), free(s);
        return ct_set_error(CT_ERR_NOMEM, "cocoop: out of memory");
    }
    s->clip = task->clip;
    s->logit_scale = ct_clip_find_tensor(task->clip, "logit_scale");
    if (!s->logit_scale) st = ct_set_error(CT_ERR_ARG, "cocoop: the model has no logit_scale");
    s->K = task->n_classes, s->n_ctx = n_ctx, s->shared = shared;
    s->W = c->text_width, s->E = c->embed_dim, s->H = c->embed_dim / div;
    s->ctx = ct_tensor_new2(n_ctx, s->W, true);
    s->w1 = ct_tensor_new2(s->H, s->E, true);
    s->w2 = ct_tensor_new2(s->W, s->H, true);
    int64_t h = s->H, w = s->W;
    s->b1 = ct_tensor_new(1, &h, true);
    s->b2 = ct_tensor_new(1, &w, true);
    s->eg = ct_graph_create(0);
    if (st == CT_OK && (!s->ctx || !s->w1 || !s->w2 || !s->b1 || !s->b2 || !s->eg))
        st = ct_set_error(CT_ERR_NOMEM, "cocoop: out of memory");
    if (st == CT_OK) {
        s->ctx->name = "cocoop.ctx", s->w1->name = "cocoop.meta_net.linear1.weight";
        s->b1->name = "cocoop.meta_net.linear1.bias", s->w2->name = "cocoop.meta_net.linear2.weight";
        s->b2->name = "cocoop.meta_net.linear2.bias";
        st = build_prompts(s, task, prefix, Lc);
    }
    if (st == CT_OK) st = init_params(s, task, words, Lc);
    free(words), free(prefix);
    if (st != CT_OK) {
        ct_cocoop_destroy(s);
        return st;
    }
    *out = s;
    return CT_OK;
}

int ct_cocoop_params(void *st, ct_tensor **out, int cap) {
    cocoop_state *s = st;
    ct_tensor *p[5] = {s->ctx, s->w1, s->b1, s->w2, s->b2};
    int n = cap < 5 ? cap : 5;
    for (int i = 0; i < n; i++) out[i] = p[i];
    return n;
}

/* cocoop.py's PromptLearner: ctx and meta_net = Sequential(linear1, relu, linear2) */
int ct_cocoop_param_names(void *st, const char **out, int cap) {
    (void)st;
    static const char *const names[5] = {"ctx", "meta_net.linear1.weight",
                                         "meta_net.linear1.bias", "meta_net.linear2.weight",
                                         "meta_net.linear2.bias"};
    int n = cap < 5 ? cap : 5;
    for (int i = 0; i < n; i++) out[i] = names[i];
    return n;
}

/* Text features (K, E), not normalised, of one image's prompts: the shared
 * prefix [SOT, shifted context] (P = 1 + n_ctx positions, the same in all K
 * prompts, so the same states at every layer) once, then the K tails
 * (positions P .. T-1) attending to its keys and values. The tails run to
 * the last EOT; the positions after a shorter prompt's EOT cannot reach it
 * (causal). */
static ct_tensor *encode_image_prompts(cocoop_state *s, ct_graph *g, ct_tensor *shifted) {
    int64_t K = s->K, P = 1 + s->n_ctx, L = s->T - P, sot = 0, one = 1;
    ct_tensor *parts[2] = {ct_gather_rows(g, s->frozen, &sot, 1, &one), shifted};
    int64_t ps[3] = {1, P, s->W}, ts[2] = {K, L};
    ct_text_tail tail = {ct_gather_rows(g, s->frozen, s->tail_rows, 2, ts), s->tail_last};
    return ct_clip_encode_text_shared(g, s->clip,
                                      ct_reshape(g, ct_concat(g, parts, 2, 0), 3, ps), &tail, 1,
                                      NULL);
}

/* Text features (n K, E), not normalised, of n images' prompts through the
 * plain encoder (shared_prefix=0): table [ctx + pi_0; ...; ctx + pi_{n-1};
 * frozen] gathered into (n K, T, W). */
static ct_tensor *encode_plain(cocoop_state *s, ct_graph *g, ct_tensor **parts, int64_t n) {
    int64_t K = s->K, T = s->T, nc = s->n_ctx, pshape[2] = {n * K, T};
    int64_t *rows = ct_graph_alloc(g, (size_t)(n * K * T) * sizeof *rows);
    int64_t *eot = ct_graph_alloc(g, (size_t)(n * K) * sizeof *eot);
    if (!rows || !eot) return NULL;
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < K; k++) {
            int64_t *r = rows + (i * K + k) * T;
            for (int64_t t = 0; t < T; t++)
                r[t] = t >= 1 && t <= nc ? i * nc + t - 1 : n * nc + k * T + t;
            eot[i * K + k] = s->eot[k];
        }
    parts[n] = s->frozen;
    ct_tensor *table = ct_concat(g, parts, (int)n + 1, 0);
    return ct_clip_encode_text_embeds(g, s->clip, ct_gather_rows(g, table, rows, 2, pshape), eot,
                                      NULL);
}

/* Normalised text features (n, K, E) of each image's own prompts, img (n, E)
 * the normalised image features. */
ct_tensor *ct_cocoop_text(void *st, ct_graph *g, ct_tensor *img) {
    cocoop_state *s = st;
    int64_t n = img ? img->shape[0] : 0, K = s->K, wshape[1] = {s->W}, t3[3] = {n, K, s->E};
    ct_tensor *pi = ct_linear(g, ct_relu(g, ct_linear(g, img, s->w1, s->b1)), s->w2, s->b2);
    ct_tensor **parts = ct_graph_alloc(g, (size_t)(n + 1) * sizeof *parts);
    if (!parts || !pi) return NULL;
    /* image i's context: ctx + pi_i on every context vector */
    for (int64_t i = 0; i < n; i++)
        parts[i] = ct_add(g, s->ctx, ct_reshape(g, ct_slice(g, pi, 0, i, 1), 1, wshape));
    ct_tensor *txt;
    if (s->shared) {
        for (int64_t i = 0; i < n; i++) parts[i] = encode_image_prompts(s, g, parts[i]);
        txt = ct_concat(g, parts, (int)n, 0);
    } else {
        txt = encode_plain(s, g, parts, n);
    }
    return ct_reshape(g, ct_l2_normalize(g, txt, 1e-12f), 3, t3);
}

ct_tensor *ct_cocoop_logit_scale(void *st) { return ((cocoop_state *)st)->logit_scale; }

/* Logits (n, K) of n image features x (n, E), each against its own prompts. */
static ct_tensor *forward(cocoop_state *s, ct_graph *g, const float *x, int64_t n) {
    int64_t K = s->K, ishape[2] = {n, s->E}, i3[3] = {n, 1, s->E}, o2[2] = {n, K};
    ct_tensor *img = ct_l2_normalize(g, ct_graph_wrap(g, (ct_real *)x, 2, ishape), 1e-12f);
    ct_tensor *txt = ct_cocoop_text(s, g, img);
    ct_tensor *lg = ct_matmul(g, ct_reshape(g, img, 3, i3), txt, false, true); /* (n, 1, K) */
    return ct_mul(g, ct_reshape(g, lg, 2, o2), ct_exp(g, s->logit_scale));
}

static ct_tensor *cocoop_loss(void *st, ct_graph *g, const ct_batch *b) {
    cocoop_state *s = st;
    int64_t *labels = ct_graph_alloc(g, (size_t)(b->n ? b->n : 1) * sizeof *labels);
    if (!labels) return NULL;
    for (int64_t i = 0; i < b->n; i++) labels[i] = b->labels[i];
    return ct_cross_entropy(g, forward(s, g, b->x, b->n), labels, 0.0f);
}

static ct_tensor *forward_rows(void *st, ct_graph *g, const float *x, int64_t n) {
    return forward(st, g, x, n);
}

ct_tensor *ct_cocoop_logits(void *st, ct_graph *g, const ct_batch *b) {
    cocoop_state *s = st;
    bool grad = ct_graph_set_grad(g, false);
    ct_graph_set_grad(g, grad);
    if (grad) return forward(s, g, b->x, b->n);
    /* no gradient: chunks of images on the private graph */
    return ct_scores_chunked(g, s->eg, b->x, b->n, s->E, s->K, EVAL_CHUNK, forward_rows, s,
                             "cocoop");
}

const ct_method ct_method_cocoop = {
    .name = "cocoop",
    .category = "prompt learning",
    .setup = "few-shot",
    .paper = "Zhou et al., Conditional Prompt Learning for Vision-Language Models (CoCoOp), "
             "CVPR 2022",
    /* configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml + Dassl's SGD defaults
     * (momentum 0.9, weight decay 5e-4); augmented views cycled per epoch as CoOp */
    .defaults = "n_ctx=4 ctx_init=a_photo_of_a meta_div=16 prec=fp16 optim=sgd lr=0.002 "
                "momentum=0.9 weight_decay=5e-4 sched=cosine warmup_epochs=1 "
                "warmup_type=constant warmup_lr=1e-5 batch_size=1 epochs=10 select=last "
                "aug_views=10 views=cycle",
    .create = ct_cocoop_create,
    .destroy = ct_cocoop_destroy,
    .params = ct_cocoop_params,
    .param_names = ct_cocoop_param_names,
    .loss = cocoop_loss,
    .logits = ct_cocoop_logits,
};
