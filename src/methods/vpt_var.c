/* Variational prompt tuning, the survey's "VPT" (Derakhshani et al.,
 * "Bayesian Prompt Learning for Image-Language Model Generalization",
 * ICCV 2023). Followed: saic-fi/Bayesian-Prompt-Learning trainers/vpt.py
 * at 8a73fff (InferenceBlock, Amortized, PromptLearner.sample / forward,
 * CustomCLIP.forward / kl_divergence / nll), train.py's extend_cfg and
 * configs/trainers/VPT/vit_b16_c4_ep10_batch1_ctxv1.yaml. Registered as
 * "vpt-var": "vpt-deep" is visual prompt tuning (Jia et al.) here.
 *
 * CoOp's prompt "[SOT] v_1 ... v_M {classname}. [EOT]" with every context
 * vector shifted by one residual r ~ N(mu, sigma^2) (W): v_m + r. L samples
 * r_l = mu + eps_l * sqrt(exp(logvar)) (the reparameterisation trick,
 * eps_l ~ N(0, I)) give L sets of K class prompts; per sample the logits
 * s * normalize(x) . normalize(text_l[k]) and log p_l = log_softmax.
 *   - type=global (vpt.py's "coopvpt", the config's): mu and logvar are
 *     learned vectors (1, W), vpt.py's mean_posterior (zeros) and
 *     std_posterior (torch.rand; it is used as the log-variance);
 *   - type=image ("cocoopvpt", extend_cfg's default): mu and logvar come from
 *     the normalised image feature through vpt.py's Amortized meta-net, two
 *     InferenceBlocks Linear(E, E/2) ELU Linear(E/2, E/2) ELU
 *     Linear(E/2, W) (torch's default nn.Linear init).
 * Loss (vpt.py CustomCLIP.forward, training):
 *     -mean_i [logsumexp_l log p_l(y_i | x_i) - log L]
 *     + kl_w * mean_W KL(N(mu, exp(logvar)) || N(0, 1))      (kl_w 0.001)
 * Scores (evaluation): logsumexp_l log p_l(. | x) - log L, the log of the
 * average predicted probability over the L samples.
 *
 * Noise. Training draws eps from the step's stream (ct_batch.seed, a
 * function of the run seed, epoch and batch), so a run is reproducible and
 * resumes bit-identically. Evaluation uses L draws fixed at creation (from
 * the task's seed), the same for every image and call (vpt.py draws fresh
 * ones per test batch): scores are deterministic, and a saved run scores as
 * it did. The test hook ct_vpt_var_set_noise (vpt_var.h) replaces both.
 *
 * Batches. vpt.py's configs train with batch 1; with type=image its
 * broadcasting fails for a batch of more than one image. Here each image of
 * a batch draws its own L residuals (eps (L, b, W), as vpt.py's sample
 * would) and the task loss and the KL term are averaged over the images; for
 * type=global one set of L draws serves the whole batch, as in vpt.py.
 *
 * Learned tensor names: vpt.py's prompt_learner state dict, "ctx" and
 * "mean_posterior", "std_posterior" (global) or
 * "meta_net.weight_mean.module.{0,2,4}.{weight,bias}" and
 * "meta_net.weight_log_variance.module.{0,2,4}.{weight,bias}" (image). */
#include "methods/vpt_var.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"
#include "methods/method_common.h"
#include "methods/method_prompt.h"

#define VPT_MAX_SAMPLES 256
#define EVAL_CHUNK 8

typedef struct {
    ct_prompt *pr;          /* CoOp's prompt learner; its ctx is the learned context */
    ct_tensor *logit_scale;
    int K, E, W, H, L;
    bool image;
    float kl_w;
    ct_tensor *mu, *logvar; /* (1, W), type=global */
    ct_tensor *w[2][3], *b[2][3]; /* type=image: [mean | log-variance][layer] */
    int n_params;
    ct_tensor *params[13];
    float *test_eps;        /* (L, W) fixed evaluation draws                        */
    float *hook;            /* test hook draws, or NULL */
    int64_t hook_n;
    ct_graph *eg;           /* evaluation graph (type=image) */
    /* evaluation cache (type=global): normalised text features of the L
     * samples (L*K, E) and the learned values they came from */
    float *txt, *txt_of;
    size_t n_of;
    bool txt_ok;
} vpt_state;

static void vpt_destroy(void *st) {
    vpt_state *s = st;
    if (!s) return;
    ct_prompt_destroy(s->pr);
    for (int i = 1; i < s->n_params; i++) ct_tensor_free(s->params[i]);
    free(s->test_eps), free(s->hook), free(s->txt), free(s->txt_of);
    ct_graph_free(s->eg);
    free(s);
}

ct_status ct_vpt_var_set_noise(void *state, const float *eps, int64_t n) {
    vpt_state *s = state;
    free(s->hook);
    s->hook = NULL, s->hook_n = 0, s->txt_ok = false;
    if (!eps) return CT_OK;
    if (n < 1) return ct_set_error(CT_ERR_ARG, "vpt-var: %lld noise values", (long long)n);
    s->hook = malloc((size_t)n * sizeof *s->hook);
    if (!s->hook) return ct_set_error(CT_ERR_NOMEM, "vpt-var: out of memory");
    memcpy(s->hook, eps, (size_t)n * sizeof *s->hook);
    s->hook_n = n;
    return CT_OK;
}

static ct_tensor *new_param(vpt_state *s, int ndim, const int64_t *shape, const char *name) {
    ct_tensor *t = ct_tensor_new(ndim, shape, true);
    if (t) t->name = name, s->params[s->n_params++] = t;
    return t;
}

static const char *const PARAM_NAMES[2][13] = {
    {"ctx", "mean_posterior", "std_posterior"},
    {"ctx", "meta_net.weight_mean.module.0.weight", "meta_net.weight_mean.module.0.bias",
     "meta_net.weight_mean.module.2.weight", "meta_net.weight_mean.module.2.bias",
     "meta_net.weight_mean.module.4.weight", "meta_net.weight_mean.module.4.bias",
     "meta_net.weight_log_variance.module.0.weight",
     "meta_net.weight_log_variance.module.0.bias",
     "meta_net.weight_log_variance.module.2.weight",
     "meta_net.weight_log_variance.module.2.bias",
     "meta_net.weight_log_variance.module.4.weight",
     "meta_net.weight_log_variance.module.4.bias"},
};

static ct_status make_params(vpt_state *s, const ct_task *task) {
    s->params[s->n_params++] = ct_prompt_ctx(s->pr);
    ct_rng r;
    ct_rng_init(&r, ct_hash_str(ct_hash_u64(CT_HASH_INIT, task->seed), "vpt-var.init"));
    if (!s->image) {
        int64_t shape[2] = {1, s->W};
        s->mu = new_param(s, 2, shape, "vpt-var.mean_posterior");
        s->logvar = new_param(s, 2, shape, "vpt-var.std_posterior");
        if (!s->mu || !s->logvar) return ct_set_error(CT_ERR_NOMEM, "vpt-var: out of memory");
        /* torch.zeros / torch.rand */
        memset(s->mu->data, 0, (size_t)s->W * sizeof(float));
        ct_rng_fill_uniform(&r, s->logvar->data, (size_t)s->W, 0.0f, 1.0f);
        return CT_OK;
    }
    static const char *const tn[2][6] = {
        {"vpt-var.mean.0.weight", "vpt-var.mean.0.bias", "vpt-var.mean.2.weight",
         "vpt-var.mean.2.bias", "vpt-var.mean.4.weight", "vpt-var.mean.4.bias"},
        {"vpt-var.logvar.0.weight", "vpt-var.logvar.0.bias", "vpt-var.logvar.2.weight",
         "vpt-var.logvar.2.bias", "vpt-var.logvar.4.weight", "vpt-var.logvar.4.bias"}};
    int64_t in[3] = {s->E, s->H, s->H}, out[3] = {s->H, s->H, s->W};
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 3; l++) {
            int64_t ws[2] = {out[l], in[l]}, bs[1] = {out[l]};
            s->w[h][l] = new_param(s, 2, ws, tn[h][2 * l]);
            s->b[h][l] = new_param(s, 1, bs, tn[h][2 * l + 1]);
            if (!s->w[h][l] || !s->b[h][l])
                return ct_set_error(CT_ERR_NOMEM, "vpt-var: out of memory");
            /* nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
            float a = 1.0f / sqrtf((float)in[l]);
            ct_rng_fill_uniform(&r, s->w[h][l]->data, (size_t)s->w[h][l]->numel, -a, a);
            ct_rng_fill_uniform(&r, s->b[h][l]->data, (size_t)s->b[h][l]->numel, -a, a);
        }
    return CT_OK;
}

static ct_status vpt_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    int L, csc;
    double kl_w;
    const char *type, *where;
    ct_status st = CT_OK;
#define TRY(x) \
    if (st == CT_OK) st = (x)
    TRY(ct_kv_int(hp, "mc_samples", 10, &L));
    TRY(ct_kv_str(hp, "type", "global", &type));
    TRY(ct_kv_double(hp, "kl_w", 0.001, &kl_w));
    TRY(ct_kv_int(hp, "csc", 0, &csc));
    TRY(ct_kv_str(hp, "class_token_position", "end", &where));
#undef TRY
    if (st != CT_OK) return st;
    if (L < 1 || L > VPT_MAX_SAMPLES)
        return ct_set_error(CT_ERR_ARG, "vpt-var: mc_samples=%d (1 .. %d)", L, VPT_MAX_SAMPLES);
    bool image = !strcmp(type, "image");
    if (!image && strcmp(type, "global"))
        return ct_set_error(CT_ERR_ARG, "vpt-var: type=%s (global: vpt.py's coopvpt; image: "
                            "cocoopvpt)", type);
    if (!(kl_w >= 0) || isinf(kl_w))
        return ct_set_error(CT_ERR_ARG, "vpt-var: kl_w=%g (a finite number >= 0)", kl_w);
    if (csc != 0)
        return ct_set_error(CT_ERR_ARG, "vpt-var: csc=%d: vpt.py's context is generic", csc);
    if (strcmp(where, "end"))
        return ct_set_error(CT_ERR_ARG, "vpt-var: class_token_position=%s: vpt.py puts the "
                            "class name after the context (end)", where);
    const ct_clip_config *c = ct_clip_get_config(task->clip);
    if (image && c->embed_dim < 2)
        return ct_set_error(CT_ERR_ARG, "vpt-var: type=image needs an embedding of 2 or more");
    vpt_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "vpt-var: out of memory");
    s->K = task->n_classes, s->E = c->embed_dim, s->W = c->text_width, s->H = c->embed_dim / 2;
    s->L = L, s->image = image, s->kl_w = (float)kl_w;
    void *pr = NULL;
    st = ct_prompt_create(task, hp, 0, &pr);
    s->pr = pr;
    if (st == CT_OK) st = make_params(s, task);
    if (st == CT_OK) {
        s->logit_scale = ct_clip_find_tensor(task->clip, "logit_scale");
        s->test_eps = malloc((size_t)L * s->W * sizeof *s->test_eps);
        s->eg = ct_graph_create(0);
        for (int i = 0; i < s->n_params; i++) s->n_of += (size_t)s->params[i]->numel;
        s->txt_of = malloc(s->n_of * sizeof *s->txt_of);
        s->txt = malloc((size_t)L * s->K * s->E * sizeof *s->txt);
        if (!s->logit_scale) st = ct_set_error(CT_ERR_ARG, "vpt-var: the model has no logit_scale");
        else if (!s->test_eps || !s->eg || !s->txt_of || !s->txt)
            st = ct_set_error(CT_ERR_NOMEM, "vpt-var: out of memory");
    }
    if (st == CT_OK) {
        ct_rng r;
        ct_rng_init(&r, ct_hash_str(ct_hash_u64(CT_HASH_INIT, task->seed), "vpt-var.test_eps"));
        ct_rng_fill_normal(&r, s->test_eps, (size_t)L * s->W, 0.0f, 1.0f);
    }
    if (st != CT_OK) {
        vpt_destroy(s);
        return st;
    }
    *out = s;
    return CT_OK;
}

static int vpt_params(void *st, ct_tensor **out, int cap) {
    vpt_state *s = st;
    int n = cap < s->n_params ? cap : s->n_params;
    for (int i = 0; i < n; i++) out[i] = s->params[i];
    return n;
}

static int vpt_param_names(void *st, const char **out, int cap) {
    vpt_state *s = st;
    int n = cap < s->n_params ? cap : s->n_params;
    for (int i = 0; i < n; i++) out[i] = PARAM_NAMES[s->image][i];
    return n;
}

static ct_tensor *constant(ct_graph *g, float v) {
    ct_tensor *t = ct_graph_tensor(g, 1, (int64_t[]){1});
    if (t) t->data[0] = v;
    return t;
}

/* ELU(x), alpha 1: relu(x) + exp(-relu(-x)) - 1 */
static ct_tensor *elu(ct_graph *g, ct_tensor *x) {
    ct_tensor *neg = ct_scale(g, ct_relu(g, ct_scale(g, x, -1.0f)), -1.0f);
    return ct_add(g, ct_add(g, ct_relu(g, x), ct_exp(g, neg)), constant(g, -1.0f));
}

/* vpt.py's InferenceBlock h of the normalised image features f (n, E): (n, W) */
static ct_tensor *inference_block(vpt_state *s, ct_graph *g, int h, ct_tensor *f) {
    ct_tensor *x = elu(g, ct_linear(g, f, s->w[h][0], s->b[h][0]));
    x = elu(g, ct_linear(g, x, s->w[h][1], s->b[h][1]));
    return ct_linear(g, x, s->w[h][2], s->b[h][2]);
}

/* logsumexp over dim 0 of x (R, C) minus log R: (C). The shift is each
 * column's maximum as a constant (the result and its gradient do not
 * depend on it). */
static ct_tensor *log_mean_exp(ct_graph *g, ct_tensor *x) {
    if (!x) return NULL;
    int64_t R = x->shape[0], C = x->shape[1];
    ct_tensor *m = ct_graph_tensor(g, 1, &C);
    if (!m) return NULL;
    for (int64_t c = 0; c < C; c++) {
        float v = x->data[c];
        for (int64_t r = 1; r < R; r++) v = x->data[r * C + c] > v ? x->data[r * C + c] : v;
        m->data[c] = isfinite(v) ? v : 0.0f;
    }
    ct_tensor *lse = ct_add(g, ct_log(g, ct_sum(g, ct_exp(g, ct_sub(g, x, m)), 0)), m);
    return ct_add(g, lse, constant(g, -logf((float)R)));
}

/* The noise eps (L, nb, W) for a batch: the hook's, or drawn from seed
 * (nb = n for type=image, 1 for global; eval: the fixed draws). */
static const float *noise(vpt_state *s, ct_graph *g, int64_t n, bool eval, uint64_t seed) {
    int64_t nb = s->image ? n : 1, want = (int64_t)s->L * nb * s->W;
    if (s->hook) {
        if (s->hook_n != want) {
            ct_set_error(CT_ERR_ARG, "vpt-var: the set noise has %lld values, this batch needs "
                         "%lld", (long long)s->hook_n, (long long)want);
            return NULL;
        }
        return s->hook;
    }
    float *e = ct_graph_alloc(g, (size_t)want * sizeof *e);
    if (!e) return NULL;
    if (eval) {
        for (int l = 0; l < s->L; l++)
            for (int64_t i = 0; i < nb; i++)
                memcpy(e + ((size_t)l * nb + i) * s->W, s->test_eps + (size_t)l * s->W,
                       (size_t)s->W * sizeof *e);
    } else {
        ct_rng r;
        ct_rng_init(&r, ct_hash_str(seed, "vpt-var.eps"));
        ct_rng_fill_normal(&r, e, (size_t)want, 0.0f, 1.0f);
    }
    return e;
}

/* Normalised text features (K, E) of the prompts with context ctx + r, r (W). */
static ct_tensor *shifted_text(vpt_state *s, ct_graph *g, ct_tensor *r) {
    int64_t w = s->W;
    ct_tensor *ctx = ct_add(g, ct_prompt_ctx(s->pr), ct_reshape(g, r, 1, &w));
    return ct_l2_normalize(g, ct_prompt_text_features_with(s->pr, g, ctx, NULL), 1e-12f);
}

/* r = mu + eps * sqrt(exp(logvar)), mu and logvar (1, W), eps at e (W) */
static ct_tensor *residual(vpt_state *s, ct_graph *g, ct_tensor *mu, ct_tensor *sd,
                           const float *e) {
    int64_t shape[2] = {1, s->W};
    return ct_add(g, mu, ct_mul(g, ct_graph_wrap(g, (ct_real *)e, 2, shape), sd));
}

/* Per-sample log-probabilities (L, n*K) of the batch, and the KL term into
 * *kl (a scalar; NULL to skip). eps (L, nb, W). */
static ct_tensor *log_probs(vpt_state *s, ct_graph *g, const float *x, int64_t n,
                            const float *eps, ct_tensor **kl) {
    int64_t K = s->K, W = s->W, ishape[2] = {n, s->E};
    ct_tensor *f = ct_l2_normalize(g, ct_graph_wrap(g, (ct_real *)x, 2, ishape), 1e-12f);
    ct_tensor *scale = ct_exp(g, s->logit_scale);
    ct_tensor *mu, *lv;
    if (s->image) mu = inference_block(s, g, 0, f), lv = inference_block(s, g, 1, f);
    else mu = s->mu, lv = s->logvar;
    ct_tensor *sd = ct_exp(g, ct_scale(g, lv, 0.5f)); /* vpt.py: logvar.exp().sqrt() */
    if (kl) { /* mean over W of KL(N(mu, sd^2) || N(0, 1)), mean over rows */
        ct_tensor *t = ct_sub(g, ct_add(g, ct_exp(g, lv), ct_mul(g, mu, mu)), lv);
        ct_tensor *tot = ct_sum_all(g, ct_add(g, t, constant(g, -1.0f)));
        *kl = ct_scale(g, tot, 0.5f / (float)(mu ? mu->numel : 1));
    }
    ct_tensor **rows = ct_graph_alloc(g, (size_t)s->L * sizeof *rows);
    ct_tensor **img = s->image ? ct_graph_alloc(g, (size_t)n * sizeof *img) : NULL;
    if (!rows || (s->image && !img)) return NULL;
    int64_t one[2] = {1, W}, flat[2] = {1, n * K}, e1[2] = {1, s->E};
    for (int l = 0; l < s->L; l++) {
        ct_tensor *lg;
        if (!s->image) {
            ct_tensor *txt = shifted_text(s, g, residual(s, g, mu, sd, eps + (size_t)l * W));
            lg = ct_mul(g, ct_matmul(g, f, txt, false, true), scale); /* (n, K) */
        } else {
            for (int64_t i = 0; i < n; i++) {
                ct_tensor *mi = ct_reshape(g, ct_slice(g, mu, 0, i, 1), 2, one);
                ct_tensor *si = ct_reshape(g, ct_slice(g, sd, 0, i, 1), 2, one);
                ct_tensor *txt = shifted_text(
                    s, g, residual(s, g, mi, si, eps + ((size_t)l * n + i) * W));
                ct_tensor *fi = ct_reshape(g, ct_slice(g, f, 0, i, 1), 2, e1);
                img[i] = ct_mul(g, ct_matmul(g, fi, txt, false, true), scale); /* (1, K) */
            }
            lg = ct_concat(g, img, (int)n, 0);
        }
        rows[l] = ct_reshape(g, ct_log_softmax(g, lg), 2, flat);
    }
    return ct_concat(g, rows, s->L, 0);
}

static ct_tensor *vpt_loss(void *st, ct_graph *g, const ct_batch *b) {
    vpt_state *s = st;
    int64_t n = b->n, K = s->K, L = s->L;
    const float *eps = noise(s, g, n, false, b->seed);
    int64_t *pick = ct_graph_alloc(g, (size_t)((n ? n : 1) * L) * sizeof *pick);
    if (!eps || !pick) return NULL;
    for (int64_t i = 0; i < n; i++) {
        if (b->labels[i] < 0 || b->labels[i] >= K) {
            ct_set_error(CT_ERR_ARG, "vpt-var: label %d of %lld classes", b->labels[i],
                         (long long)K);
            return NULL;
        }
        for (int64_t l = 0; l < L; l++) pick[l * n + i] = (l * n + i) * K + b->labels[i];
    }
    ct_tensor *kl = NULL;
    ct_tensor *lp = log_probs(s, g, b->x, n, eps, &kl); /* (L, n*K) */
    int64_t all[2] = {L * n * K, 1}, ln[2] = {L, n};
    /* log p_l(y_i | x_i): (L, n) */
    ct_tensor *py = ct_reshape(g, ct_gather_rows(g, ct_reshape(g, lp, 2, all), pick, 2, ln), 2, ln);
    ct_tensor *task = ct_scale(g, ct_sum_all(g, log_mean_exp(g, py)), -1.0f / (float)n);
    return ct_add(g, task, ct_scale(g, kl, s->kl_w));
}

/* Scores (n, K) of n images: log mean_l p_l(k | x). */
static ct_tensor *scores(vpt_state *s, ct_graph *g, const float *x, int64_t n) {
    const float *eps = noise(s, g, n, true, 0);
    int64_t shape[2] = {n, s->K};
    return eps ? ct_reshape(g, log_mean_exp(g, log_probs(s, g, x, n, eps, NULL)), 2, shape)
               : NULL;
}

/* type=global without grad: the L samples' text features depend on the
 * learned tensors only; cached while they are unchanged. */
static ct_tensor *global_scores_cached(vpt_state *s, ct_graph *g, const ct_batch *b) {
    const float *eps = noise(s, g, b->n, true, 0);
    if (!eps) return NULL;
    size_t off = 0;
    bool same = s->txt_ok && !s->hook;
    for (int i = 0; i < s->n_params && same; i++) {
        size_t m = (size_t)s->params[i]->numel;
        same = !memcmp(s->txt_of + off, s->params[i]->data, m * sizeof(float));
        off += m;
    }
    int64_t K = s->K, E = s->E, L = s->L;
    if (!same) {
        ct_tensor *sd = ct_exp(g, ct_scale(g, s->logvar, 0.5f));
        for (int l = 0; l < L; l++) {
            ct_tensor *t = shifted_text(s, g, residual(s, g, s->mu, sd, eps + (size_t)l * s->W));
            if (!t) return NULL;
            memcpy(s->txt + (size_t)l * K * E, t->data, (size_t)K * E * sizeof(float));
        }
        off = 0;
        for (int i = 0; i < s->n_params; i++) {
            size_t m = (size_t)s->params[i]->numel;
            memcpy(s->txt_of + off, s->params[i]->data, m * sizeof(float));
            off += m;
        }
        s->txt_ok = !s->hook;
    }
    int64_t n = b->n, ishape[2] = {n, E}, flat[2] = {1, n * K}, out[2] = {n, K};
    ct_tensor *f = ct_l2_normalize(g, ct_graph_wrap(g, (ct_real *)b->x, 2, ishape), 1e-12f);
    ct_tensor *scale = ct_exp(g, s->logit_scale);
    ct_tensor **rows = ct_graph_alloc(g, (size_t)L * sizeof *rows);
    if (!rows) return NULL;
    int64_t ke[2] = {K, E};
    for (int l = 0; l < L; l++) {
        ct_tensor *txt = ct_graph_wrap(g, s->txt + (size_t)l * K * E, 2, ke);
        rows[l] = ct_reshape(g, ct_log_softmax(g, ct_mul(g, ct_matmul(g, f, txt, false, true),
                                                          scale)), 2, flat);
    }
    return ct_reshape(g, log_mean_exp(g, ct_concat(g, rows, (int)L, 0)), 2, out);
}

static ct_tensor *scores_rows(void *st, ct_graph *g, const float *x, int64_t n) {
    return scores(st, g, x, n);
}

static ct_tensor *vpt_logits(void *st, ct_graph *g, const ct_batch *b) {
    vpt_state *s = st;
    bool grad = ct_graph_set_grad(g, false);
    ct_graph_set_grad(g, grad);
    if (grad) return scores(s, g, b->x, b->n);
    if (!s->image) return global_scores_cached(s, g, b);
    if (s->hook) return scores(s, g, b->x, b->n); /* the hook's layout is the whole batch's */
    /* no gradient: chunks of images on the private graph */
    return ct_scores_chunked(g, s->eg, b->x, b->n, s->E, s->K, EVAL_CHUNK, scores_rows, s,
                             "vpt-var");
}

const ct_method ct_method_vpt_var = {
    .name = "vpt-var",
    .category = "prompt learning",
    .setup = "few-shot",
    .paper = "Derakhshani et al., Bayesian Prompt Learning for Image-Language Model "
             "Generalization (variational prompt tuning), ICCV 2023",
    /* configs/trainers/VPT/vit_b16_c4_ep10_batch1_ctxv1.yaml (N_CTX 4, CTX_INIT "a photo
     * of a", L 10, VPT_TYPE coopvpt, batch 1, SGD lr 0.002, 40 epochs, cosine, one
     * constant warmup epoch at 1e-5; Dassl's momentum 0.9 and weight decay 5e-4);
     * vpt.py's KL weight 0.001 */
    .defaults = "n_ctx=4 ctx_init=a_photo_of_a mc_samples=10 type=global kl_w=0.001 prec=fp16 "
                "optim=sgd lr=0.002 momentum=0.9 weight_decay=5e-4 sched=cosine "
                "warmup_epochs=1 warmup_type=constant warmup_lr=1e-5 batch_size=1 epochs=40 "
                "select=last aug_views=10 views=cycle",
    .create = vpt_create,
    .destroy = vpt_destroy,
    .params = vpt_params,
    .loss = vpt_loss,
    .logits = vpt_logits,
    .param_names = vpt_param_names,
};
