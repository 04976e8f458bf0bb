/* ProGrad, prompt-aligned gradient (Zhu et al., "Prompt-aligned Gradient for
 * Prompt Tuning", ICCV 2023). Followed: htyao89/KgCoOp trainers/prograd.py
 * (PromptLearner, ZeroshotCLIP, ProGradLoss, ProGrad.forward_backward),
 * Dassl.ProGrad.pytorch's TrainerBase.prograd_backward_and_update, train.py's
 * defaults (LOSS.T = 1, LOSS.LAMBDA = 1) and the configs/trainers/ProGrad/ files.
 * Learned tensor name: "ctx", as prograd.py's saved prompt_learner state dict.
 *
 * CoOp's prompt learner (method_prompt.c) trained on the cross-entropy, with
 * its gradient g_ce kept from conflicting with the gradient g_kl of
 *     kl = T^2 * mean_i sum_k -p_ik log softmax(z_i / T)_k,
 *     p = softmax(z^zs / T)
 * (the zero-shot CLIP's distribution as teacher; cross-entropy rather than
 * KL, the same gradient): over the whole context tensor flattened,
 *     if g_ce . g_kl < 0:  g = g_ce - lambda (g_ce . u) u,  u = g_kl / |g_kl|
 *     else                 g = g_ce.
 * The loss hook returns the CE (the trainer backpropagates it) and keeps the
 * kl tensor; before_step saves g_ce, runs a second backward of kl on the same
 * graph for g_kl and writes g into ctx->grad.
 *   - zero-shot classifier: prograd.py's CUSTOM_TEMPLATES (CoOp's, except five
 *     entries reworded, below), "a photo of a {}." otherwise;
 *   - CTX_INIT: True: n_ctx = 16 vectors, the last w the token embeddings of
 *     the template without " {}." (w its number of space-separated words),
 *     the others zero; prompt "X ... X {words} {name}.";
 *   - batch 32, SGD lr 0.002, 50 epochs (rn50_ep50.yaml; ep100 and 200 also).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "methods/method_prompt.h"
#include "methods/method_templates.h"

/* prograd.py's entries that differ from CoOp's table */
static const char *const PROGRAD_TEMPLATES[][2] = {
    {"OxfordPets", "a type of pet, a photo of a {}."},
    {"OxfordFlowers", "a type of flower, a photo of a {}."},
    {"FGVCAircraft", "a type of aircraft, a photo of a {}."},
    {"DescribableTextures", "a texture of {}."},
    {"Food101", "a type of food, a photo of {}."},
};

typedef struct {
    ct_prompt *p;
    float *zs_txt; /* (K, E) normalised zero-shot classifier */
    float *g_ce;   /* (ctx numel) */
    int K, E;
    float T, lambda;
    ct_tensor *kl; /* of the current step's graph */
} pg_state;

static void pg_destroy(void *st) {
    pg_state *s = st;
    if (!s) return;
    ct_prompt_destroy(s->p);
    free(s->zs_txt), free(s->g_ce);
    free(s);
}

static ct_status pg_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    double T, lambda;
    int n_ctx;
    const char *init;
    ct_status st = ct_kv_double(hp, "T", 1.0, &T);
    if (st == CT_OK) st = ct_kv_double(hp, "lambda", 1.0, &lambda);
    if (st == CT_OK) st = ct_kv_int(hp, "n_ctx", 16, &n_ctx);
    if (st == CT_OK) st = ct_kv_str(hp, "ctx_init", "template", &init);
    if (st != CT_OK) return st;
    if (!(T > 0)) return ct_set_error(CT_ERR_ARG, "prograd: T=%g (> 0)", T);
    if (!(lambda >= 0)) return ct_set_error(CT_ERR_ARG, "prograd: lambda=%g (>= 0)", lambda);
    const char *ds = task->dataset_name ? task->dataset_name : "";
    char *tmpl = NULL;
    for (size_t i = 0; i < sizeof PROGRAD_TEMPLATES / sizeof *PROGRAD_TEMPLATES && !tmpl; i++)
        if (!strcmp(ds, PROGRAD_TEMPLATES[i][0])) tmpl = strdup(PROGRAD_TEMPLATES[i][1]);
    if (!tmpl && (st = ct_template_for_dataset(NULL, ds, &tmpl, NULL)) != CT_OK) return st;
    pg_state *s = calloc(1, sizeof *s);
    if (!s || !tmpl) {
        free(s), free(tmpl);
        return ct_set_error(CT_ERR_NOMEM, "prograd: out of memory");
    }
    s->T = (float)T, s->lambda = (float)lambda;
    /* ctx_init=template: the template's words before " {}." ('_' for ' ') */
    char *words = NULL;
    bool from_tmpl = !strcmp(init, "template");
    if (from_tmpl) {
        const char *cut = strstr(tmpl, " {}.");
        size_t n = cut ? (size_t)(cut - tmpl) : strlen(tmpl);
        words = malloc(n + 1);
        if (words) {
            memcpy(words, tmpl, n), words[n] = 0;
            for (char *q = words; *q; q++)
                if (*q == ' ') *q = '_';
        }
    }
    /* the prompt learner reads ctx_init from a copy of hp with the text resolved */
    ct_kv kv = {0};
    st = ct_kv_set(&kv, "ctx_init", from_tmpl ? (words ? words : "") : init);
    char nbuf[32];
    snprintf(nbuf, sizeof nbuf, "%d", n_ctx);
    for (int i = 0; st == CT_OK && i < hp->n; i++)
        if (strcmp(hp->keys[i], "ctx_init") && strcmp(hp->keys[i], "n_ctx") &&
            strcmp(hp->keys[i], "T") && strcmp(hp->keys[i], "lambda"))
            st = ct_kv_set(&kv, hp->keys[i], hp->vals[i]);
    if (st == CT_OK) st = ct_kv_set(&kv, "n_ctx", nbuf);
    if (st == CT_OK) st = ct_prompt_create(task, &kv, n_ctx, (void **)&s->p);
    /* mark what the prompt learner read as used in the caller's hp */
    for (int i = 0; st == CT_OK && i < hp->n; i++)
        for (int j = 0; j < kv.n; j++)
            if (!strcmp(hp->keys[i], kv.keys[j]) && kv.used[j]) hp->used[i] = true;
    ct_kv_free(&kv);
    free(words);
    if (st == CT_OK) {
        s->K = task->n_classes, s->E = ct_clip_get_config(task->clip)->embed_dim;
        s->zs_txt = malloc((size_t)s->K * s->E * sizeof *s->zs_txt);
        s->g_ce = malloc((size_t)ct_prompt_ctx(s->p)->numel * sizeof *s->g_ce);
        if (!s->zs_txt || !s->g_ce) st = ct_set_error(CT_ERR_NOMEM, "prograd: out of memory");
    }
    if (st == CT_OK) st = ct_prompt_zeroshot_text(task, tmpl, s->zs_txt);
    free(tmpl);
    if (st != CT_OK) {
        pg_destroy(s);
        return st;
    }
    *out = s;
    return CT_OK;
}

static int pg_params(void *st, ct_tensor **out, int cap) {
    return ct_prompt_params(((pg_state *)st)->p, out, cap);
}

static int pg_param_names(void *st, const char **out, int cap) {
    return ct_prompt_param_names(((pg_state *)st)->p, out, cap);
}

/* The CE (returned) and the distillation term (kept for before_step). */
static ct_tensor *pg_loss(void *st, ct_graph *g, const ct_batch *b) {
    pg_state *s = st;
    s->kl = NULL;
    int64_t *labels = ct_graph_alloc(g, (size_t)(b->n ? b->n : 1) * sizeof *labels);
    if (!labels) return NULL;
    for (int64_t i = 0; i < b->n; i++) labels[i] = b->labels[i];
    ct_tensor *z = ct_prompt_scores(s->p, g, b, ct_prompt_text_features(s->p, g));
    ct_tensor *ce = ct_cross_entropy(g, z, labels, 0.0f);
    /* teacher: softmax(zero-shot logits / T), no gradient */
    int64_t shape[2] = {s->K, s->E};
    bool grad = ct_graph_set_grad(g, false);
    ct_tensor *zs = ct_prompt_scores(s->p, g, b, ct_graph_wrap(g, s->zs_txt, 2, shape));
    ct_tensor *p = ct_softmax(g, ct_scale(g, zs, 1.0f / s->T));
    ct_graph_set_grad(g, grad);
    if (!p) return NULL;
    ct_tensor *lq = ct_log_softmax(g, ct_scale(g, z, 1.0f / s->T));
    ct_tensor *kl = ct_scale(g, ct_sum_all(g, ct_mul(g, lq, p)), -s->T * s->T / (float)b->n);
    s->kl = kl;
    return kl ? ce : NULL;
}

/* g_ce is in ctx->grad (the trainer's backward of the CE): add g_kl's
 * projection. */
static ct_status pg_before_step(void *st, ct_graph *g, const ct_batch *b) {
    (void)b;
    pg_state *s = st;
    ct_tensor *ctx = ct_prompt_ctx(s->p);
    if (!s->kl) return ct_set_error(CT_ERR_STATE, "prograd: before_step without a loss");
    size_t n = (size_t)ctx->numel;
    memcpy(s->g_ce, ctx->grad, n * sizeof *s->g_ce);
    ct_tensor_zero_grad(ctx);
    ct_status rc = ct_backward(g, s->kl);
    s->kl = NULL;
    if (rc != CT_OK) return rc;
    const float *gkl = ctx->grad;
    double dot = 0, nkl = 0, nce = 0;
    for (size_t i = 0; i < n; i++)
        dot += (double)s->g_ce[i] * gkl[i], nkl += (double)gkl[i] * gkl[i],
            nce += (double)s->g_ce[i] * s->g_ce[i];
    if (dot < 0 && nkl > 0 && nce > 0) {
        /* g_ce - lambda (g_ce . u) u, u = g_kl / |g_kl| */
        double c = s->lambda * dot / nkl;
        for (size_t i = 0; i < n; i++) ctx->grad[i] = (float)(s->g_ce[i] - c * gkl[i]);
    } else {
        memcpy(ctx->grad, s->g_ce, n * sizeof *s->g_ce);
    }
    return CT_OK;
}

static ct_tensor *pg_logits(void *st, ct_graph *g, const ct_batch *b) {
    return ct_prompt_logits(((pg_state *)st)->p, g, b);
}

const ct_method ct_method_prograd = {
    .name = "prograd",
    .category = "prompt learning",
    .setup = "few-shot",
    .paper = "Zhu et al., Prompt-aligned Gradient for Prompt Tuning (ProGrad), ICCV 2023",
    /* train.py extend_cfg (N_CTX 16, LOSS.T 1, LOSS.LAMBDA 1) and
     * configs/trainers/ProGrad/rn50_ep50.yaml (CTX_INIT: True) */
    .defaults = "T=1 lambda=1 n_ctx=16 ctx_init=template csc=0 class_token_position=end "
                "prec=fp16 optim=sgd lr=0.002 momentum=0.9 weight_decay=5e-4 sched=cosine "
                "warmup_epochs=1 warmup_type=constant warmup_lr=1e-5 batch_size=32 epochs=50 "
                "select=last aug_views=10 views=cycle",
    .create = pg_create,
    .destroy = pg_destroy,
    .params = pg_params,
    .param_names = pg_param_names,
    .loss = pg_loss,
    .before_step = pg_before_step,
    .logits = pg_logits,
};
