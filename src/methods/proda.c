/* ProDA, prompt distribution learning (Lu et al., "Prompt Distribution
 * Learning", CVPR 2022). The authors published no code. Followed: the
 * paper (Sec. 3: Gaussian over the output embeddings of K prompts, the
 * closed-form upper bound of the expected cross-entropy, the diversity
 * term; Sec. 4: prompts with the class token at varied positions), cross-
 * checked against 0-ml/flip flcore/models/clip/ProDA.py (ProDACLIP.forward)
 * and flcore/models/text/prompt.py (ProDAPromptLearner, BasePromptLearner)
 * at ec3a848, whose formulas this file computes.
 *
 * P learned contexts v_p (n_ctx, W), shared by all classes. Prompt p of
 * class k is CoOp's prompt with context v_p; its class token sits at the
 * front for the first P/4 prompts, in the middle for the next P/4, at the
 * end for the rest (ProDAPromptLearner.pos: [0]*(P//4) + [1]*(P//4) +
 * [2]*(P//2); the rest here is P - 2 (P/4), so every prompt has a place
 * for every P). t_{p,k} = normalize(text(v_p, k)); per class the Gaussian
 * N(mu_k, Sigma) over the P samples, mu_k = mean_p t_{p,k}; Sigma is
 * diagonal in the embedding dimension d and full across classes, as
 * ProDA.py's diag_cov_martix (d, K, K):
 *     Sigma_d[i, j] = sum_p (t_{p,i,d} - mu_{i,d}) (t_{p,j,d} - mu_{j,d}) / (P + 1)
 * (ProDA.py's divisor). For an image f (normalised), s = exp(logit_scale),
 * the logit of class j under the sampled classifier is s f.w_j; the bound
 * of the expected cross-entropy E[-log softmax(s f.w)_y] is the
 * cross-entropy of
 *     logit_j = s f.mu_j + s^2 / 2 * sigma_{jy},
 *     sigma_{jy} = Var[f.(w_j - w_y)]
 *                = sum_d f_d^2 (Sigma_d[y,y] + Sigma_d[j,j] - 2 Sigma_d[y,j])
 * (ProDA.py: refined_logits, sigma, logits += 0.5 * logit_scale**2 * sigma).
 * The diversity term is the mean |cosine| between the P contexts' features
 * without a class name ("{X ... X}." with v_p, ProDA.py's nc_prompts), over
 * the P (P - 1) off-diagonal pairs, weight div_w (ProDA.py's
 * ortho_loss_ratio = 1); 0 for P = 1. loss = CE(bound logits) + div_w L_div.
 * Test: s f.mu_k (ProDA.py set_classifier: the mean of the normalised
 * features, not renormalised).
 *
 * Where flip departs (and this file follows the paper): ProDA.py's
 * construct_prompts builds only the end-position prompts (the mixed layout
 * is in construct_prompts_proda, left unused); positions=end selects that.
 * flip trains a random subset of prompt_batch_size prompts per step (its
 * main.py sets 1); here every step uses all P prompts.
 *
 * Learned tensor name: "ctx" (P, n_ctx, W), PromptLearner.ctx of flip. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"
#include "methods/method_prompt.h"

#define PRODA_MAX_PROMPTS 256

typedef struct {
    ct_prompt *pr[3];       /* CoOp's layout with the class token front, middle, end */
    ct_prompt *nc;          /* the class-free prompt "{ctx}." (diversity term)        */
    ct_tensor *ctx;         /* (P, n_ctx, W): the learned contexts                    */
    ct_tensor *logit_scale; /* the model's frozen scalar                              */
    int K, P, E;
    int pos[PRODA_MAX_PROMPTS]; /* layout of prompt p: 0 front, 1 middle, 2 end    */
    float div_w;
    /* evaluation cache, valid while ctx is unchanged */
    float *mu;              /* (K, E) mean normalised prompt features                */
    float *mu_ctx;          /* (ctx numel) */
    bool mu_ok;
} proda_state;

static void proda_destroy(void *st) {
    proda_state *s = st;
    if (!s) return;
    for (int i = 0; i < 3; i++) ct_prompt_destroy(s->pr[i]);
    ct_prompt_destroy(s->nc);
    ct_tensor_free(s->ctx);
    free(s->mu), free(s->mu_ctx);
    free(s);
}

/* One of CoOp's prompt learners with the given layout (its own context is
 * unused: each prompt's context is put in its place). */
static ct_status make_prompt(const ct_task *task, int n_ctx, int shared, const char *where,
                             ct_prompt **out) {
    char text[160];
    snprintf(text, sizeof text, "n_ctx=%d shared_prefix=%d class_token_position=%s", n_ctx,
             shared, where);
    ct_kv kv = {0};
    ct_status st = ct_kv_parse(&kv, text);
    void *p = NULL;
    if (st == CT_OK) st = ct_prompt_create(task, &kv, 0, &p);
    ct_kv_free(&kv);
    *out = p;
    return st;
}

static ct_status proda_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    int P, n_ctx, shared, csc;
    double div_w;
    const char *positions, *init, *prec;
    ct_status st = CT_OK;
#define TRY(x) \
    if (st == CT_OK) st = (x)
    TRY(ct_kv_int(hp, "n_prompts", 32, &P));
    TRY(ct_kv_int(hp, "n_ctx", 16, &n_ctx));
    TRY(ct_kv_int(hp, "shared_prefix", 1, &shared));
    TRY(ct_kv_double(hp, "div_w", 1.0, &div_w));
    TRY(ct_kv_str(hp, "positions", "mixed", &positions));
    TRY(ct_kv_str(hp, "ctx_init", "", &init));
    TRY(ct_kv_int(hp, "csc", 0, &csc));
    TRY(ct_kv_str(hp, "prec", "fp16", &prec));
#undef TRY
    if (st != CT_OK) return st;
    if (P < 1 || P > PRODA_MAX_PROMPTS)
        return ct_set_error(CT_ERR_ARG, "proda: n_prompts=%d (1 .. %d)", P, PRODA_MAX_PROMPTS);
    if (!(div_w >= 0) || isinf(div_w))
        return ct_set_error(CT_ERR_ARG, "proda: div_w=%g (a finite number >= 0)", div_w);
    bool mixed = !strcmp(positions, "mixed");
    if (!mixed && strcmp(positions, "end"))
        return ct_set_error(CT_ERR_ARG, "proda: positions=%s (mixed, end)", positions);
    if (*init)
        return ct_set_error(CT_ERR_ARG, "proda: ctx_init=%s: the %d prompts would start "
                            "identical; ProDA starts them from N(0, 0.02)", init, P);
    if (csc != 0)
        return ct_set_error(CT_ERR_ARG, "proda: csc=%d: ProDA's contexts are shared by all "
                            "classes", csc);
    if (strcmp(prec, "fp16") && strcmp(prec, "fp32") && strcmp(prec, "amp"))
        return ct_set_error(CT_ERR_ARG, "proda: prec=%s (fp16, fp32, amp)", prec);
    if (shared != 0 && shared != 1)
        return ct_set_error(CT_ERR_ARG, "proda: shared_prefix=%d (0 or 1)", shared);
    if (!task->tok) return ct_set_error(CT_ERR_ARG, "proda: the task has no tokenizer");
    proda_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "proda: out of memory");
    s->K = task->n_classes, s->P = P, s->div_w = (float)div_w;
    s->E = ct_clip_get_config(task->clip)->embed_dim;
    int quarter = mixed ? P / 4 : 0;
    for (int p = 0; p < P; p++) s->pos[p] = p < quarter ? 0 : p < 2 * quarter ? 1 : 2;
    static const char *const where[3] = {"front", "middle", "end"};
    for (int i = 0; i < 3 && st == CT_OK; i++)
        if (i == 2 || quarter > 0) st = make_prompt(task, n_ctx, shared, where[i], &s->pr[i]);
    if (st == CT_OK && P > 1) {
        /* ProDA.py's nc_prompts: "{X ... X}." -- a task of one class without a name */
        ct_task one = *task;
        char *empty[1] = {""};
        one.n_classes = 1, one.classnames = empty;
        st = make_prompt(&one, n_ctx, shared, "end", &s->nc);
    }
    if (st == CT_OK) {
        ct_tensor *c = ct_prompt_ctx(s->pr[2]); /* (n_ctx, W) */
        int64_t shape[3] = {P, c->shape[0], c->shape[1]};
        s->logit_scale = ct_clip_find_tensor(task->clip, "logit_scale");
        s->ctx = ct_tensor_new(3, shape, true);
        s->mu = malloc((size_t)s->K * s->E * sizeof *s->mu);
        if (s->ctx) s->mu_ctx = malloc((size_t)s->ctx->numel * sizeof *s->mu_ctx);
        if (!s->logit_scale) st = ct_set_error(CT_ERR_ARG, "proda: the model has no logit_scale");
        else if (!s->ctx || !s->mu || !s->mu_ctx)
            st = ct_set_error(CT_ERR_NOMEM, "proda: out of memory");
    }
    if (st == CT_OK) {
        /* flip's init_prompt: nn.init.normal_(ctx (P, n_ctx, W), std=0.02) */
        s->ctx->name = "proda.ctx";
        ct_rng r;
        ct_rng_init(&r, ct_hash_str(ct_hash_u64(CT_HASH_INIT, task->seed), "proda.ctx"));
        ct_rng_fill_normal(&r, s->ctx->data, (size_t)s->ctx->numel, 0.0f, 0.02f);
    }
    if (st != CT_OK) {
        proda_destroy(s);
        return st;
    }
    *out = s;
    return CT_OK;
}

static int proda_params(void *st, ct_tensor **out, int cap) {
    proda_state *s = st;
    if (cap < 1) return 0;
    out[0] = s->ctx;
    return 1;
}

/* flip's ProDAPromptLearner.ctx, saved as "ctx" */
static int proda_param_names(void *st, const char **out, int cap) {
    (void)st;
    if (cap < 1) return 0;
    out[0] = "ctx";
    return 1;
}

/* Normalised prompt features (P*K, E), row p*K + k, and their mean over p
 * (K, E) into *mu. */
static ct_tensor *prompt_features(proda_state *s, ct_graph *g, ct_tensor **mu) {
    ct_tensor **t = ct_graph_alloc(g, (size_t)s->P * sizeof *t);
    if (!t) return NULL;
    for (int p = 0; p < s->P; p++)
        t[p] = ct_l2_normalize(g, ct_prompt_text_features_with(s->pr[s->pos[p]], g,
                                                               ct_slice(g, s->ctx, 0, p, 1),
                                                               NULL),
                               1e-12f);
    ct_tensor *all = ct_concat(g, t, s->P, 0);
    int64_t pk[2] = {s->P, (int64_t)s->K * s->E}, ke[2] = {s->K, s->E};
    *mu = ct_reshape(g, ct_mean(g, ct_reshape(g, all, 2, pk), 0), 2, ke);
    return all;
}

/* The diversity term: mean |cos| over the off-diagonal pairs of the P
 * class-free prompt features (torch's abs: gradient sign(x), 0 at 0). */
static ct_tensor *diversity(proda_state *s, ct_graph *g) {
    ct_tensor **t = ct_graph_alloc(g, (size_t)s->P * sizeof *t);
    if (!t) return NULL;
    for (int p = 0; p < s->P; p++)
        t[p] = ct_prompt_text_features_with(s->nc, g, ct_slice(g, s->ctx, 0, p, 1), NULL);
    ct_tensor *nc = ct_l2_normalize(g, ct_concat(g, t, s->P, 0), 1e-12f); /* (P, E) */
    ct_tensor *dis = ct_matmul(g, nc, nc, false, true);                  /* (P, P) */
    int64_t shape[2] = {s->P, s->P};
    ct_tensor *w = dis ? ct_graph_tensor(g, 2, shape) : NULL;
    if (!w) return NULL;
    float inv = 1.0f / ((float)s->P * (float)(s->P - 1));
    for (int i = 0; i < s->P; i++)
        for (int j = 0; j < s->P; j++) {
            float v = dis->data[i * s->P + j];
            w->data[i * s->P + j] = i == j ? 0.0f : v > 0 ? inv : v < 0 ? -inv : 0.0f;
        }
    return ct_sum_all(g, ct_mul(g, dis, w));
}

static ct_tensor *proda_loss(void *st, ct_graph *g, const ct_batch *b) {
    proda_state *s = st;
    const int64_t n = b->n, K = s->K, P = s->P, E = s->E;
    int64_t *labels = ct_graph_alloc(g, (size_t)(n ? n : 1) * sizeof *labels);
    int64_t *cls = ct_graph_alloc(g, (size_t)(K * P) * sizeof *cls);
    int64_t *lab = ct_graph_alloc(g, (size_t)((n ? n : 1) * P) * sizeof *lab);
    int64_t *img = ct_graph_alloc(g, (size_t)((n ? n : 1) * P) * sizeof *img);
    int64_t *diag = ct_graph_alloc(g, (size_t)(n ? n : 1) * sizeof *diag);
    if (!labels || !cls || !lab || !img || !diag) return NULL;
    for (int64_t i = 0; i < n; i++) {
        labels[i] = b->labels[i];
        if (labels[i] < 0 || labels[i] >= K) {
            ct_set_error(CT_ERR_ARG, "proda: label %lld of %lld classes", (long long)labels[i],
                         (long long)K);
            return NULL;
        }
        diag[i] = i * K + labels[i];
        for (int64_t p = 0; p < P; p++) lab[i * P + p] = p * K + labels[i], img[i * P + p] = i;
    }
    for (int64_t k = 0; k < K; k++)
        for (int64_t p = 0; p < P; p++) cls[k * P + p] = p * K + k;
    ct_tensor *mu = NULL;
    ct_tensor *t = prompt_features(s, g, &mu); /* (P*K, E) */
    int64_t pke[3] = {P, K, E}, pk_e[2] = {P * K, E};
    /* centred samples c[p, k] = t[p, k] - mu[k] */
    ct_tensor *c = ct_reshape(g, ct_sub(g, ct_reshape(g, t, 3, pke), mu), 2, pk_e);
    int64_t ishape[2] = {n, E};
    ct_tensor *f = ct_l2_normalize(g, ct_graph_wrap(g, (ct_real *)b->x, 2, ishape), 1e-12f);
    ct_tensor *scale = ct_exp(g, s->logit_scale);
    ct_tensor *mean_logits = ct_mul(g, ct_matmul(g, f, mu, false, true), scale); /* (n, K) */
    ct_tensor *f2 = ct_mul(g, f, f);                                             /* (n, E) */
    /* V[i, j] = sum_d f_d^2 Sigma_d[j, j] (P + 1) = f2 . S_j, S[j] = sum_p c[p, j]^2 */
    int64_t kp[2] = {K, P}, np_[2] = {n, P}, n_pe[2] = {n, P * E}, k_pe[2] = {K, P * E};
    ct_tensor *cT = ct_gather_rows(g, c, cls, 2, kp); /* (K, P, E) */
    ct_tensor *S = ct_sum(g, ct_mul(g, cT, cT), 1);   /* (K, E) */
    ct_tensor *V = ct_matmul(g, f2, S, false, true);  /* (n, K) */
    /* X[i, j] = sum_d f_d^2 Sigma_d[y_i, j] (P + 1) = sum_{p,d} f_d^2 c[p, y_i, d] c[p, j, d] */
    ct_tensor *G = ct_mul(g, ct_gather_rows(g, c, lab, 2, np_), ct_gather_rows(g, f2, img, 2, np_));
    ct_tensor *X = ct_matmul(g, ct_reshape(g, G, 2, n_pe), ct_reshape(g, cT, 2, k_pe), false,
                             true); /* (n, K) */
    /* V[i, y_i] broadcast over the row: (n, 1) @ ones (1, K) */
    int64_t nk1[2] = {n * K, 1}, n1 = n, oneK[2] = {1, K};
    ct_tensor *ones = ct_graph_tensor(g, 2, oneK);
    if (!ones) return NULL;
    for (int64_t k = 0; k < K; k++) ones->data[k] = 1.0f;
    ct_tensor *vy = ct_gather_rows(g, ct_reshape(g, V, 2, nk1), diag, 1, &n1); /* (n, 1) */
    ct_tensor *sigma = ct_sub(g, ct_add(g, ct_matmul(g, vy, ones, false, false), V),
                              ct_scale(g, X, 2.0f));
    /* + s^2 / 2 * sigma / (P + 1) */
    ct_tensor *bound = ct_add(g, mean_logits,
                              ct_mul(g, ct_scale(g, sigma, 0.5f / (float)(P + 1)),
                                     ct_mul(g, scale, scale)));
    ct_tensor *loss = ct_cross_entropy(g, bound, labels, 0.0f);
    if (P > 1 && s->div_w > 0) loss = ct_add(g, loss, ct_scale(g, diversity(s, g), s->div_w));
    return loss;
}

static ct_tensor *proda_logits(void *st, ct_graph *g, const ct_batch *b) {
    proda_state *s = st;
    ct_prompt *pr = s->pr[2];
    /* with grad mode on the caller may want d/d ctx: no cache then */
    bool grad = ct_graph_set_grad(g, false);
    ct_graph_set_grad(g, grad);
    ct_tensor *mu = NULL;
    if (grad) {
        if (!prompt_features(s, g, &mu)) return NULL;
        return ct_prompt_scores(pr, g, b, mu);
    }
    size_t nctx = (size_t)s->ctx->numel * sizeof(float);
    if (!s->mu_ok || memcmp(s->mu_ctx, s->ctx->data, nctx)) {
        if (!prompt_features(s, g, &mu) || !mu) return NULL;
        memcpy(s->mu, mu->data, (size_t)s->K * s->E * sizeof(float));
        memcpy(s->mu_ctx, s->ctx->data, nctx);
        s->mu_ok = true;
    }
    int64_t shape[2] = {s->K, s->E};
    return ct_prompt_scores(pr, g, b, ct_graph_wrap(g, s->mu, 2, shape));
}

const ct_method ct_method_proda = {
    .name = "proda",
    .category = "prompt learning",
    .setup = "few-shot",
    .paper = "Lu et al., Prompt Distribution Learning (ProDA), CVPR 2022",
    /* the paper's 32 prompts of 16 context vectors with mixed class-token
     * positions; flip's diversity weight 1; CoOp's optimiser and schedule
     * (SGD lr 0.002, Dassl's momentum 0.9 and weight decay 5e-4, cosine, one
     * constant warmup epoch) with batch 32 and 50 epochs (docs/methods/proda.md) */
    .defaults = "n_prompts=32 n_ctx=16 positions=mixed div_w=1 prec=fp16 optim=sgd lr=0.002 "
                "momentum=0.9 weight_decay=5e-4 sched=cosine warmup_epochs=1 "
                "warmup_type=constant warmup_lr=1e-5 batch_size=32 epochs=50 select=last "
                "aug_views=10 views=cycle",
    .create = proda_create,
    .destroy = proda_destroy,
    .params = proda_params,
    .loss = proda_loss,
    .logits = proda_logits,
    .param_names = proda_param_names,
};
