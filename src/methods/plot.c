/* PLOT, prompt learning with optimal transport (Chen et al., "PLOT: Prompt
 * Learning with Optimal Transport for Vision-Language Models", ICLR 2023).
 * Followed: CHENGY12/PLOT plot-coop/trainers/plot.py at 728539f (PromptLearner,
 * CustomCLIP.Sinkhorn / forward, PLOT.build_model / forward_backward),
 * plot-coop/train.py (extend_cfg: N_CTX 16, N 4, CSC False, CTX_INIT "",
 * PREC fp16, CLASS_TOKEN_POSITION end), plot-coop/configs/trainers/PLOT/
 * rn50.yaml (the only config: SGD lr 0.002, 50 epochs, batch 128, cosine,
 * one constant warmup epoch at 1e-5) and scripts/main.sh (N_CTX 16, CSC
 * False, end, every shot count with rn50.yaml).
 *
 * N prompt sets of CoOp's generic context v_n (n_ctx, W) give N text
 * features per class, t_{n,k} = normalize(text(v_n, k)). Per image, the M
 * local features f_m = normalize(dense token m), m = 1 .. T-1 (plot.py's
 * image_features[1:]: the attention pool's spatial positions without its
 * pooled token 0; for a ViT, the patch tokens after ln_post + proj without
 * the class token), and per class k:
 *
 *   sim[m, n] = f_m . t_{n,k}                    (M, N)
 *   T = Sinkhorn(exp(-(1 - sim) / eps); 1/M, 1/N) (no gradient)
 *   logits[k] = exp(logit_scale) * sum_{m,n} T[m, n] sim[m, n]
 *   loss = cross-entropy(logits, y)
 *
 * The plan is computed under torch.no_grad(): it weights the similarities as
 * a constant (ct_sinkhorn records no tape node). Sinkhorn as plot.py: eps
 * 0.1, scalings from ones, r = u / K c, c = v / K^T r, at most 100
 * iterations, stopping when mean |r - r_prev| < 0.01, that mean taken over
 * the whole batch (b images x K classes x M) as plot.py does: all pairs of a
 * batch go through one ct_sinkhorn call, in plot.py's (b*K, M, N) order.
 * plot.py adds CoOp's global logits exp(logit_scale) normalize(pooled image)
 * . normalize(mean_n raw t_{n,k}) only when cfg.DATASET.NAME == "ImageNet":
 * global_logits=auto does the same on task->dataset_name; 0 / 1 force it.
 *
 * Prompts: CoOp's layout and shared-prefix text encoder (method_prompt.c),
 * run once per prompt set with that set's context in place of the prompt
 * learner's own; the class token at the end as plot.py (middle / front are
 * accepted too: plot.py builds only n_cls prompts for them and fails for
 * N > 1; here each set is laid out as CoOp does). ctx_init and csc=1 are
 * refused: plot.py's ctx_init gives a 2-D context its forward cannot
 * permute, its class-specific context cannot be viewed as N sets, and N
 * identical starts would stay identical (the plan of identical prompts is
 * uniform over them, so are their gradients).
 *
 * Features: the method sets dense_features, so the trainer and ct_predict
 * hand every batch its per-token rows (ct_batch.dense). Learned tensor name:
 * "ctx" (N, n_ctx, W), the key of the prompt_learner state dict plot.py
 * saves (PLOT.build_model registers model.prompt_learner, as CoOp). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"
#include "methods/method_prompt.h"

#define PLOT_MAX_PROMPTS 64

typedef struct {
    ct_prompt *pr;          /* CoOp's layout and text encoder (its own context unused) */
    ct_tensor *ctx;         /* (N, n_ctx, W): the learned contexts                    */
    ct_tensor *logit_scale; /* the model's frozen scalar                              */
    int K, N, E;
    float ot_eps, ot_thresh;
    int ot_iters;
    bool global;            /* add CoOp's global logits (ImageNet in plot.py)         */
    /* evaluation cache, valid while ctx is unchanged */
    float *txt;             /* (N*K, E) normalised prompt features                    */
    float *pool;            /* (K, E) normalised mean of the N raw features            */
    float *txt_ctx;         /* (ctx numel)                                            */
    bool txt_ok;
} plot_state;

static void plot_destroy(void *st) {
    plot_state *s = st;
    if (!s) return;
    ct_prompt_destroy(s->pr);
    ct_tensor_free(s->ctx);
    free(s->txt), free(s->pool), free(s->txt_ctx);
    free(s);
}

static ct_status read_hp(plot_state *s, const ct_task *task, ct_kv *hp) {
    double eps, thresh;
    int iters, csc;
    const char *glob, *init;
    ct_status st = CT_OK;
#define TRY(x) \
    if (st == CT_OK) st = (x)
    TRY(ct_kv_int(hp, "n_prompts", 4, &s->N));
    TRY(ct_kv_double(hp, "ot_eps", 0.1, &eps));
    TRY(ct_kv_int(hp, "ot_iters", 100, &iters));
    TRY(ct_kv_double(hp, "ot_thresh", 0.01, &thresh));
    TRY(ct_kv_str(hp, "global_logits", "auto", &glob));
    TRY(ct_kv_str(hp, "ctx_init", "", &init));
    TRY(ct_kv_int(hp, "csc", 0, &csc));
#undef TRY
    if (st != CT_OK) return st;
    if (s->N < 1 || s->N > PLOT_MAX_PROMPTS)
        return ct_set_error(CT_ERR_ARG, "plot: n_prompts=%d (1 .. %d)", s->N, PLOT_MAX_PROMPTS);
    if (!(eps > 0) || isinf(eps))
        return ct_set_error(CT_ERR_ARG, "plot: ot_eps=%g (a finite number > 0)", eps);
    if (iters < 1 || iters > 100000)
        return ct_set_error(CT_ERR_ARG, "plot: ot_iters=%d (1 .. 100000)", iters);
    if (!(thresh >= 0) || isinf(thresh))
        return ct_set_error(CT_ERR_ARG, "plot: ot_thresh=%g (a finite number >= 0)", thresh);
    if (!strcmp(glob, "auto"))
        s->global = task->dataset_name && !strcmp(task->dataset_name, "ImageNet");
    else if (!strcmp(glob, "0") || !strcmp(glob, "1"))
        s->global = glob[0] == '1';
    else
        return ct_set_error(CT_ERR_ARG, "plot: global_logits=%s (auto, 0, 1)", glob);
    if (*init)
        return ct_set_error(CT_ERR_ARG, "plot: ctx_init=%s: the %d prompt sets would start "
                            "identical, and the transport plan keeps identical prompts "
                            "identical (plot.py cannot run a ctx_init either); PLOT starts "
                            "from N(0, 0.02)", init, s->N);
    if (csc != 0)
        return ct_set_error(CT_ERR_ARG, "plot: csc=%d: PLOT learns %s generic contexts "
                            "(plot.py's class-specific context does not run with N prompts)",
                            csc, "n_prompts");
    s->ot_eps = (float)eps, s->ot_thresh = (float)thresh, s->ot_iters = iters;
    return CT_OK;
}

static ct_status plot_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    plot_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "plot: out of memory");
    ct_status st = read_hp(s, task, hp);
    void *pr = NULL;
    if (st == CT_OK) st = ct_prompt_create(task, hp, 0, &pr);
    s->pr = pr;
    if (st == CT_OK) {
        ct_tensor *one = ct_prompt_ctx(s->pr); /* (n_ctx, W) */
        int64_t shape[3] = {s->N, one->shape[0], one->shape[1]};
        s->K = task->n_classes, s->E = ct_clip_get_config(task->clip)->embed_dim;
        s->logit_scale = ct_clip_find_tensor(task->clip, "logit_scale");
        s->ctx = ct_tensor_new(3, shape, true);
        s->txt = malloc((size_t)s->N * s->K * s->E * sizeof *s->txt);
        s->pool = malloc((size_t)s->K * s->E * sizeof *s->pool);
        if (s->ctx) s->txt_ctx = malloc((size_t)s->ctx->numel * sizeof *s->txt_ctx);
        if (!s->logit_scale) st = ct_set_error(CT_ERR_ARG, "plot: the model has no logit_scale");
        else if (!s->ctx || !s->txt || !s->pool || !s->txt_ctx)
            st = ct_set_error(CT_ERR_NOMEM, "plot: out of memory");
    }
    if (st == CT_OK) {
        /* plot.py: nn.init.normal_(ctx_vectors (N, n_ctx, W), std=0.02) */
        s->ctx->name = "plot.ctx";
        ct_rng r;
        ct_rng_init(&r, ct_hash_str(ct_hash_u64(CT_HASH_INIT, task->seed), "plot.ctx"));
        ct_rng_fill_normal(&r, s->ctx->data, (size_t)s->ctx->numel, 0.0f, 0.02f);
    }
    if (st != CT_OK) {
        plot_destroy(s);
        return st;
    }
    *out = s;
    return CT_OK;
}

static int plot_params(void *st, ct_tensor **out, int cap) {
    plot_state *s = st;
    if (cap < 1) return 0;
    out[0] = s->ctx;
    return 1;
}

/* plot.py's PromptLearner.ctx, saved as "ctx" in the prompt_learner state dict */
static int plot_param_names(void *st, const char **out, int cap) {
    (void)st;
    if (cap < 1) return 0;
    out[0] = "ctx";
    return 1;
}

/* Normalised prompt features (N*K, E), row n*K + k (plot.py's
 * text_features.view(N, n_cls, d)), and, when pool is given, the
 * normalised mean over n of the raw features (K, E) into *pool. */
static ct_tensor *text_features(plot_state *s, ct_graph *g, ct_tensor **pool) {
    ct_tensor *raw[PLOT_MAX_PROMPTS] = {0};
    for (int n = 0; n < s->N; n++)
        raw[n] = ct_prompt_text_features_with(s->pr, g, ct_slice(g, s->ctx, 0, n, 1), NULL);
    if (pool) {
        ct_tensor *sum = raw[0];
        for (int n = 1; n < s->N; n++) sum = ct_add(g, sum, raw[n]);
        *pool = ct_l2_normalize(g, ct_scale(g, sum, 1.0f / (float)s->N), 1e-12f);
    }
    return ct_l2_normalize(g, ct_concat(g, raw, s->N, 0), 1e-12f);
}

/* Scores (n, K) of batch b from the prompt features txt (N*K, E) and, with
 * global logits, their pooled mean pool (K, E). */
static ct_tensor *scores(plot_state *s, ct_graph *g, const ct_batch *b, ct_tensor *txt,
                         ct_tensor *pool) {
    if (!txt || (s->global && !pool)) return NULL;
    if (!b->dense || b->n_tokens < 2) {
        ct_set_error(CT_ERR_ARG, "plot: the batch carries no dense (per-token) features of at "
                     "least 2 tokens (features computed with dense_features)");
        return NULL;
    }
    const int64_t n = b->n, T = b->n_tokens, M = T - 1, N = s->N, K = s->K, E = s->E;
    const int64_t NK = N * K;
    /* local features: tokens 1 .. T-1, each L2-normalised (constant) */
    int64_t dshape[3] = {n, T, E};
    ct_tensor *loc = ct_l2_normalize(
        g, ct_slice(g, ct_graph_wrap(g, (ct_real *)b->dense, 3, dshape), 1, 1, M), 1e-12f);
    ct_tensor *sim = ct_matmul(g, loc, txt, false, true); /* (n, M, N*K) */
    int64_t cshape[3] = {n * K, M, N};
    ct_tensor *cost = sim ? ct_graph_tensor(g, 3, cshape) : NULL;
    if (!cost) return NULL;
    /* plot.py's sim.view(M, N, b*K).permute(2, 0, 1): pair (i, k) at i*K + k */
    for (int64_t i = 0; i < n; i++)
        for (int64_t m = 0; m < M; m++) {
            const float *row = sim->data + (i * M + m) * NK;
            for (int64_t nn = 0; nn < N; nn++)
                for (int64_t k = 0; k < K; k++)
                    cost->data[((i * K + k) * M + m) * N + nn] = 1.0f - row[nn * K + k];
        }
    ct_tensor *plan = ct_sinkhorn(g, cost, NULL, NULL, s->ot_eps, s->ot_iters, s->ot_thresh);
    int64_t sshape[3] = {n, M, NK};
    ct_tensor *w = plan ? ct_graph_tensor(g, 3, sshape) : NULL;
    if (!w) return NULL;
    for (int64_t i = 0; i < n; i++)
        for (int64_t m = 0; m < M; m++) {
            float *row = w->data + (i * M + m) * NK;
            for (int64_t nn = 0; nn < N; nn++)
                for (int64_t k = 0; k < K; k++)
                    row[nn * K + k] = plan->data[((i * K + k) * M + m) * N + nn];
        }
    /* sum over (m, n) of T * sim, per (image, class) */
    int64_t rshape[3] = {n, M * N, K};
    ct_tensor *op = ct_sum(g, ct_reshape(g, ct_mul(g, sim, w), 3, rshape), 1); /* (n, K) */
    ct_tensor *lg = ct_mul(g, op, ct_exp(g, s->logit_scale));
    if (s->global) lg = ct_add(g, lg, ct_prompt_scores(s->pr, g, b, pool));
    return lg;
}

static ct_tensor *plot_loss(void *st, ct_graph *g, const ct_batch *b) {
    plot_state *s = st;
    int64_t *labels = ct_graph_alloc(g, (size_t)(b->n ? b->n : 1) * sizeof *labels);
    if (!labels) return NULL;
    for (int64_t i = 0; i < b->n; i++) labels[i] = b->labels[i];
    ct_tensor *pool = NULL;
    ct_tensor *txt = text_features(s, g, s->global ? &pool : NULL);
    return ct_cross_entropy(g, scores(s, g, b, txt, pool), labels, 0.0f);
}

static ct_tensor *plot_logits(void *st, ct_graph *g, const ct_batch *b) {
    plot_state *s = st;
    ct_tensor *pool = NULL;
    /* with grad mode on the caller may want d/d ctx: no cache then */
    bool grad = ct_graph_set_grad(g, false);
    ct_graph_set_grad(g, grad);
    if (grad) {
        ct_tensor *txt = text_features(s, g, s->global ? &pool : NULL);
        return scores(s, g, b, txt, pool);
    }
    size_t nctx = (size_t)s->ctx->numel * sizeof(float);
    if (!s->txt_ok || memcmp(s->txt_ctx, s->ctx->data, nctx)) {
        ct_tensor *t = text_features(s, g, &pool);
        if (!t || !pool) return NULL;
        memcpy(s->txt, t->data, (size_t)t->numel * sizeof(float));
        memcpy(s->pool, pool->data, (size_t)pool->numel * sizeof(float));
        memcpy(s->txt_ctx, s->ctx->data, nctx);
        s->txt_ok = true;
    }
    int64_t tshape[2] = {(int64_t)s->N * s->K, s->E}, pshape[2] = {s->K, s->E};
    return scores(s, g, b, ct_graph_wrap(g, s->txt, 2, tshape),
                  ct_graph_wrap(g, s->pool, 2, pshape));
}

const ct_method ct_method_plot = {
    .name = "plot",
    .category = "prompt learning",
    .setup = "few-shot",
    .paper = "Chen et al., PLOT: Prompt Learning with Optimal Transport for Vision-Language "
             "Models, ICLR 2023",
    /* plot-coop/train.py extend_cfg, scripts/main.sh and configs/trainers/PLOT/rn50.yaml
     * (SGD lr 0.002, batch 128, 50 epochs, cosine, 1 constant warmup epoch at 1e-5;
     * Dassl's momentum 0.9 and weight decay 5e-4); the Sinkhorn settings are
     * CustomCLIP's eps, max_iter and thresh. Fresh augmentation per epoch as CoOp's
     * defaults approximate it: cached views cycled (docs/methods/plot.md). */
    .defaults = "n_prompts=4 n_ctx=16 class_token_position=end prec=fp16 ot_eps=0.1 "
                "ot_iters=100 ot_thresh=0.01 global_logits=auto optim=sgd lr=0.002 "
                "momentum=0.9 weight_decay=5e-4 sched=cosine warmup_epochs=1 "
                "warmup_type=constant warmup_lr=1e-5 batch_size=128 epochs=50 select=last "
                "aug_views=10 views=cycle",
    .create = plot_create,
    .destroy = plot_destroy,
    .params = plot_params,
    .loss = plot_loss,
    .logits = plot_logits,
    .dense_features = true,
    .param_names = plot_param_names,
};
