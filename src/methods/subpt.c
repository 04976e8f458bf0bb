/* SubPT, subspace prompt tuning (Ma, Liu, Deng, Xie, Dong, Xu, "Understanding
 * and Mitigating Overfitting in Prompt Tuning for Vision-Language Models",
 * IEEE TCSVT 2023, arXiv 2211.02219). Followed:
 * machengcheng2016/Subspace-Prompt-Learning CoOp/trainers/coop_sub.py and
 * coop_sub_nfl.py (CoOp_sub, CoOp_sub_nfl, NflLoss), CoOp/compute_eigenvector.py,
 * Dassl.pytorch/dassl/engine/trainer.py (model_subspace_backward_and_update),
 * CoOp/train.py (LOSS.LAMBDA 1, LOSS.LOSS_TYPE cosine) and the README's
 * three-step protocol with scripts/coop*.sh.
 *
 * CoOp (coop.c, the shared prompt learner) whose context gradient is
 * projected onto a low-dimensional subspace found early in training:
 *
 *   1. train CoOp for the first t epochs, keeping the context after each
 *      (the official: a full CoOp run with TRAIN.CHECKPOINT_FREQ 1; only
 *      checkpoints 1..t are read);
 *   2. U (r, D) = the first r principal components of those t snapshots
 *      (compute_eigenvector.py: sklearn PCA(n_components=r), which centres
 *      the snapshots; D = the context's size);
 *   3. train again from the same initial context (same seed) for the whole
 *      schedule with every step's gradient g replaced by U^T U g.
 * That is the code's version and the default (basis=pca). The paper speaks
 * of the eigenvectors of the early-stage gradient flow; basis=gradient takes
 * that literally: U = the r dominant eigenvectors of sum_s g_s g_s^T over the
 * (unprojected) step gradients g_s of the first t epochs (no centring). No
 * code exists for that reading.
 *
 * Phase 1 runs inside fit() through ct_train on a second vtable (as
 * Tip-Adapter-F's fine-tuning does) whose end_epoch (pca) or before_step
 * (gradient) records the trajectory; fit then computes U and puts the
 * initial context back, and the generic trainer runs phase 3 with this
 * method's before_step doing the projection. Same seed, same schedule: the
 * first t epochs of phase 1 are the first t epochs of the official's CoOp
 * run.
 *
 * Novel Feature Learner (coop_nfl.py / coop_sub_nfl.py), optional: with
 * nfl_classes= (M class names outside the task), their prompts under the same
 * learned context are pulled to fixed zero-shot text features:
 *   loss = CE + nfl_lambda * mean_m (1 - cos(t_m, t0_m))   (nfl_loss=cosine,
 *          CosineEmbeddingLoss with target 1)
 *        | CE + nfl_lambda * mean((t - t0)^2)               (nfl_loss=l2, MSELoss)
 * t_m the normalised text features of "X..X {name_m}." with the learned
 * context, t0 the official's text_features_nfl (ZeroshotCLIP2's 80-template
 * ensemble: nfl_templates=imagenet80), or an .npy (nfl_features=). Both
 * phases use the same loss (the official's U for SubPT+NFL comes from CoOp+NFL
 * runs). The official NFL supports a generic context only.
 *
 * Learned tensor names: "ctx" (the prompt learner's, as coop.py saves it),
 * and "U" (r, D), the basis (cfg.TRAINER.U; rows beyond the rank found are
 * zero). U is not needed to score. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "methods/method_common.h"
#include "methods/method_prompt.h"
#include "methods/subpt.h"

typedef struct {
    ct_prompt *p;      /* CoOp's prompt learner (its ctx is learned)               */
    ct_prompt *nfl;    /* the NFL classes' prompt learner (its own ctx unused), or NULL */
    ct_tensor *nfl_t;  /* (M, E) zero-shot targets, unit rows                      */
    ct_tensor *U;      /* (r, D) basis, orthonormal rows (zero rows beyond rank)   */
    float *ctx0;       /* (D) the initial context                                  */
    int early, dim, gradient, nfl_l2;
    double nfl_lambda;
    ct_train_cfg train; /* phase 1's schedule: the run's                           */
    double *rec;        /* recorded rows (n_rec, D)                                */
    int64_t n_rec, cap_rec;
    char *names_buf;    /* NFL class names, '\0'-separated                         */
    char **names;
} subpt_state;

static void subpt_destroy(void *st) {
    subpt_state *s = st;
    if (!s) return;
    ct_prompt_destroy(s->p), ct_prompt_destroy(s->nfl);
    ct_tensor_free(s->nfl_t), ct_tensor_free(s->U);
    free(s->ctx0), free(s->rec), free(s->names_buf), free(s->names);
    free(s);
}

/* "a,b, c" -> names (trimmed, non-empty) */
static ct_status split_names(subpt_state *s, const char *list, int *M) {
    size_t len = strlen(list);
    s->names_buf = malloc(len + 1);
    s->names = malloc((len / 2 + 2) * sizeof *s->names);
    if (!s->names_buf || !s->names) return ct_set_error(CT_ERR_NOMEM, "subpt: out of memory");
    memcpy(s->names_buf, list, len + 1);
    int n = 0;
    for (char *p = s->names_buf, *next; p; p = next) {
        next = strchr(p, ',');
        if (next) *next++ = 0;
        while (*p == ' ') p++;
        char *e = p + strlen(p);
        while (e > p && e[-1] == ' ') *--e = 0;
        if (!*p) return ct_set_error(CT_ERR_ARG, "subpt: nfl_classes=\"%s\": an empty name", list);
        s->names[n++] = p;
    }
    *M = n;
    return CT_OK;
}

static ct_status subpt_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    subpt_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "subpt: out of memory");
    const char *basis, *nfl, *nfl_feats, *nfl_tmpl, *nfl_loss;
    int csc = 0;
    ct_status st = ct_prompt_create(task, hp, 0, (void **)&s->p);
#define TRY(x) \
    if (st == CT_OK) st = (x)
    TRY(ct_kv_int(hp, "early_epochs", 0, &s->early));
    TRY(ct_kv_int(hp, "dim", 10, &s->dim));
    TRY(ct_kv_str(hp, "basis", "pca", &basis));
    TRY(ct_kv_str(hp, "nfl_classes", "", &nfl));
    TRY(ct_kv_str(hp, "nfl_features", "", &nfl_feats));
    TRY(ct_kv_str(hp, "nfl_templates", "imagenet80", &nfl_tmpl));
    TRY(ct_kv_str(hp, "nfl_loss", "cosine", &nfl_loss));
    TRY(ct_kv_double(hp, "nfl_lambda", 1, &s->nfl_lambda));
    TRY(ct_kv_int(hp, "csc", 0, &csc));
    TRY(ct_train_cfg_from_kv(hp, &s->train));
#undef TRY
    if (st == CT_OK && (s->early < 0 || s->dim < 1))
        st = ct_set_error(CT_ERR_ARG, "subpt: early_epochs=%d (>= 0; 0: from the shots) and "
                          "dim=%d (>= 1)", s->early, s->dim);
    if (st == CT_OK && strcmp(basis, "pca") && strcmp(basis, "gradient"))
        st = ct_set_error(CT_ERR_ARG, "subpt: basis=%s (pca, gradient)", basis);
    if (st == CT_OK && strcmp(nfl_loss, "cosine") && strcmp(nfl_loss, "l2"))
        st = ct_set_error(CT_ERR_ARG, "subpt: nfl_loss=%s (cosine, l2)", nfl_loss);
    if (st == CT_OK && !isfinite(s->nfl_lambda))
        st = ct_set_error(CT_ERR_ARG, "subpt: nfl_lambda=%g must be finite", s->nfl_lambda);
    if (st == CT_OK && *nfl && csc)
        st = ct_set_error(CT_ERR_ARG, "subpt: nfl_classes with csc=1 (the official NFL "
                          "shares one generic context)");
    if (st == CT_OK) {
        s->gradient = !strcmp(basis, "gradient"), s->nfl_l2 = !strcmp(nfl_loss, "l2");
        s->train.seed = task->seed;
        s->train.log = task->log, s->train.log_ctx = task->log_ctx;
    }
    ct_tensor *ctx = st == CT_OK ? ct_prompt_ctx(s->p) : NULL;
    if (ctx) {
        s->U = ct_tensor_new2(s->dim, ctx->numel, false);
        s->ctx0 = malloc((size_t)ctx->numel * sizeof *s->ctx0);
        if (!s->U || !s->ctx0) st = ct_set_error(CT_ERR_NOMEM, "subpt: out of memory");
        else memcpy(s->ctx0, ctx->data, (size_t)ctx->numel * sizeof *s->ctx0);
    }
    if (st == CT_OK && *nfl) {
        int M = 0;
        st = split_names(s, nfl, &M);
        ct_task nt = *task;
        nt.n_classes = M, nt.classnames = s->names;
        if (st == CT_OK) st = ct_prompt_create(&nt, hp, 0, (void **)&s->nfl);
        int E = ct_clip_get_config(task->clip)->embed_dim;
        if (st == CT_OK && !(s->nfl_t = ct_tensor_new2(M, E, false)))
            st = ct_set_error(CT_ERR_NOMEM, "subpt: out of memory");
        if (st == CT_OK) st = ct_zeroshot_classifier(&nt, nfl_feats, nfl_tmpl, true, s->nfl_t->data);
    }
    if (st != CT_OK) {
        subpt_destroy(s);
        return st;
    }
    if (s->U) s->U->name = "U";
    *out = s;
    return CT_OK;
}

static int subpt_params(void *st, ct_tensor **out, int cap) {
    subpt_state *s = st;
    if (cap < 2) return 0;
    out[0] = ct_prompt_ctx(s->p), out[1] = s->U;
    return 2;
}

static int subpt_param_names(void *st, const char **out, int cap) {
    (void)st;
    if (cap < 2) return 0;
    out[0] = "ctx", out[1] = "U";
    return 2;
}

static ct_tensor *subpt_loss(void *st, ct_graph *g, const ct_batch *b) {
    subpt_state *s = st;
    ct_tensor *ce = ct_prompt_loss(s->p, g, b);
    if (!s->nfl) return ce;
    ct_tensor *t = ct_l2_normalize(
        g, ct_prompt_text_features_with(s->nfl, g, ct_prompt_ctx(s->p), NULL), 1e-12f);
    int64_t M = s->nfl_t->shape[0], E = s->nfl_t->shape[1];
    ct_tensor *term;
    if (s->nfl_l2) {
        ct_tensor *d = ct_sub(g, t, s->nfl_t);
        term = ct_scale(g, ct_sum_all(g, ct_mul(g, d, d)), (float)(s->nfl_lambda / (double)(M * E)));
    } else {
        /* 1 - mean cos: both unit rows; the constant lambda joins the total */
        term = ct_scale(g, ct_sum_all(g, ct_mul(g, t, s->nfl_t)), (float)(-s->nfl_lambda / (double)M));
        if (term) term->data[0] += (float)s->nfl_lambda;
    }
    return ct_add(g, ce, term);
}

static ct_tensor *subpt_logits(void *st, ct_graph *g, const ct_batch *b) {
    subpt_state *s = st;
    return ct_prompt_logits(s->p, g, b);
}

/* one recorded row (D) */
static ct_status record(subpt_state *s, const float *v, int64_t D) {
    /* basis=gradient keeps one row per step; the basis works on the rows'
     * (T, T) Gram matrix */
    if (s->n_rec == 2048)
        return ct_set_error(CT_ERR_ARG, "subpt: basis=gradient records one row per step and the "
                            "early epochs have more than 2048 steps: lower early_epochs or raise "
                            "batch_size");
    if (s->n_rec == s->cap_rec) {
        int64_t cap = s->cap_rec ? 2 * s->cap_rec : 64;
        double *r = realloc(s->rec, (size_t)cap * (size_t)D * sizeof *r);
        if (!r) return ct_set_error(CT_ERR_NOMEM, "subpt: out of memory recording the trajectory");
        s->rec = r, s->cap_rec = cap;
    }
    for (int64_t j = 0; j < D; j++) s->rec[s->n_rec * D + j] = v[j];
    s->n_rec++;
    return CT_OK;
}

static ct_status early_before_step(void *st, ct_graph *g, const ct_batch *b) {
    (void)g, (void)b;
    subpt_state *s = st;
    ct_tensor *ctx = ct_prompt_ctx(s->p);
    return s->gradient ? record(s, ctx->grad, ctx->numel) : CT_OK;
}

static ct_status early_end_epoch(void *st, int epoch, int epochs) {
    (void)epoch, (void)epochs;
    subpt_state *s = st;
    ct_tensor *ctx = ct_prompt_ctx(s->p);
    return s->gradient ? CT_OK : record(s, ctx->data, ctx->numel);
}

/* phase 1: CoOp (with the NFL term when set), recording (not registered) */
static const ct_method subpt_early = {
    .name = "subpt (early phase)",
    .params = subpt_params,
    .param_names = subpt_param_names,
    .loss = subpt_loss,
    .logits = subpt_logits,
    .before_step = early_before_step,
    .end_epoch = early_end_epoch,
};

/* Eigen-decomposition of the symmetric A (n, n) by cyclic Jacobi rotations:
 * eigenvalues into w, eigenvectors into the columns of V (n, n). A is
 * destroyed. */
static void jacobi_eigen(double *A, int n, double *w, double *V) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) V[i * n + j] = i == j;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, diag = 0;
        for (int i = 0; i < n; i++) {
            diag += A[i * n + i] * A[i * n + i];
            for (int j = i + 1; j < n; j++) off += A[i * n + j] * A[i * n + j];
        }
        if (off <= 1e-30 * diag || off == 0) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = A[p * n + q];
                if (apq == 0) continue;
                double th = (A[q * n + q] - A[p * n + p]) / (2 * apq);
                double t = (th >= 0 ? 1 : -1) / (fabs(th) + sqrt(th * th + 1));
                double c = 1 / sqrt(t * t + 1), sn = t * c;
                for (int k = 0; k < n; k++) {
                    double akp = A[k * n + p], akq = A[k * n + q];
                    A[k * n + p] = c * akp - sn * akq, A[k * n + q] = sn * akp + c * akq;
                }
                for (int k = 0; k < n; k++) {
                    double apk = A[p * n + k], aqk = A[q * n + k];
                    A[p * n + k] = c * apk - sn * aqk, A[q * n + k] = sn * apk + c * aqk;
                }
                for (int k = 0; k < n; k++) {
                    double vkp = V[k * n + p], vkq = V[k * n + q];
                    V[k * n + p] = c * vkp - sn * vkq, V[k * n + q] = sn * vkp + c * vkq;
                }
            }
    }
    for (int i = 0; i < n; i++) w[i] = A[i * n + i];
}

ct_status ct_subpt_basis(const double *X_in, int64_t T, int64_t D, bool centre, int dim,
                         float *U, int *rank) {
    double *X = malloc((size_t)T * D * sizeof *X), *G = malloc((size_t)T * T * sizeof *G);
    double *w = malloc((size_t)T * sizeof *w), *V = malloc((size_t)T * T * sizeof *V);
    int *ord = malloc((size_t)T * sizeof *ord);
    if (!X || !G || !w || !V || !ord) {
        free(X), free(G), free(w), free(V), free(ord);
        return ct_set_error(CT_ERR_NOMEM, "subpt: out of memory (basis of %lld x %lld)",
                            (long long)T, (long long)D);
    }
    memcpy(X, X_in, (size_t)T * D * sizeof *X);
    for (int64_t j = 0; centre && j < D; j++) {
        double m = 0;
        for (int64_t i = 0; i < T; i++) m += X[i * D + j];
        m /= (double)T;
        for (int64_t i = 0; i < T; i++) X[i * D + j] -= m;
    }
    for (int64_t i = 0; i < T; i++)
        for (int64_t k = 0; k <= i; k++) {
            double acc = 0;
            for (int64_t j = 0; j < D; j++) acc += X[i * D + j] * X[k * D + j];
            G[i * T + k] = G[k * T + i] = acc;
        }
    jacobi_eigen(G, (int)T, w, V);
    for (int i = 0; i < T; i++) ord[i] = i;
    for (int i = 1; i < T; i++) /* descending eigenvalues */
        for (int j = i; j > 0 && w[ord[j]] > w[ord[j - 1]]; j--) {
            int t = ord[j];
            ord[j] = ord[j - 1], ord[j - 1] = t;
        }
    memset(U, 0, (size_t)dim * D * sizeof *U);
    int r = 0;
    double top = T > 0 ? w[ord[0]] : 0;
    for (int c = 0; c < dim && c < T; c++) {
        double lam = w[ord[c]];
        if (!(top > 0) || !(lam > 1e-10 * top)) break;
        /* u = X^T v / sqrt(lam), normalised again against rounding */
        double nn = 0;
        for (int64_t j = 0; j < D; j++) {
            double acc = 0;
            for (int64_t i = 0; i < T; i++) acc += X[i * D + j] * V[i * T + ord[c]];
            U[(size_t)c * D + j] = (float)acc;
            nn += acc * acc;
        }
        float inv = (float)(1 / sqrt(nn));
        for (int64_t j = 0; j < D; j++) U[(size_t)c * D + j] *= inv;
        r++;
    }
    free(X), free(G), free(w), free(V), free(ord);
    *rank = r;
    return CT_OK;
}

/* t of the official README: 10, 20, 30, 40, 50 epochs for 1, 2, 4, 8, 16 shots */
static int early_from_shots(const ct_task *task) {
    const ct_features *f = task->train_feats;
    int64_t K = task->n_classes > 0 ? task->n_classes : 1;
    int64_t shots = f ? (f->n + K - 1) / K : 16;
    return shots <= 1 ? 10 : shots <= 2 ? 20 : shots <= 4 ? 30 : shots <= 8 ? 40 : 50;
}

static ct_status subpt_fit(void *st, const ct_task *task) {
    subpt_state *s = st;
    ct_tensor *ctx = ct_prompt_ctx(s->p);
    int64_t D = ctx->numel;
    memcpy(ctx->data, s->ctx0, (size_t)D * sizeof *ctx->data);
    ct_train_cfg c = s->train;
    int t = s->early > 0 ? s->early : early_from_shots(task);
    if (t > c.epochs) t = c.epochs;
    if (t < 1) return ct_set_error(CT_ERR_ARG, "subpt: no early epochs (epochs=%d)", c.epochs);
    c.stop_after = t, c.select_best_val = false, c.run_dir = NULL, c.resume = false;
    c.progress = task->progress, c.progress_ctx = task->progress_ctx;
    s->n_rec = 0;
    /* one early epoch gives one snapshot, which centred is zero: its
     * displacement from the initial context is the direction then */
    ct_status r = !s->gradient && t < 2 ? record(s, s->ctx0, D) : CT_OK;
    if (r == CT_OK) r = ct_train(&subpt_early, s, task, &c, NULL);
    int rank = 0;
    long long rows = (long long)s->n_rec;
    if (r == CT_OK && s->n_rec == 0) r = ct_set_error(CT_ERR_STATE, "subpt: nothing recorded");
    if (r == CT_OK)
        r = ct_subpt_basis(s->rec, s->n_rec, D, !s->gradient, s->dim, s->U->data, &rank);
    free(s->rec);
    s->rec = NULL, s->n_rec = s->cap_rec = 0;
    if (r == CT_OK && rank == 0)
        r = ct_set_error(CT_ERR_STATE, "subpt: the early %s spans no direction",
                         s->gradient ? "gradients" : "trajectory");
    if (r != CT_OK) return r;
    ct_task_logf(task, "subpt: basis %s of %d early epochs (%lld rows): %d of dim=%d directions",
                 s->gradient ? "gradient" : "pca", t, rows, rank, s->dim);
    /* phase 3 starts where phase 1 did */
    memcpy(ctx->data, s->ctx0, (size_t)D * sizeof *ctx->data);
    return CT_OK;
}

/* g <- U^T (U g) */
static ct_status subpt_before_step(void *st, ct_graph *g, const ct_batch *b) {
    (void)g, (void)b;
    subpt_state *s = st;
    ct_tensor *ctx = ct_prompt_ctx(s->p);
    int64_t D = ctx->numel, r = s->U->shape[0];
    const float *U = s->U->data;
    double *c = malloc((size_t)r * sizeof *c);
    if (!c) return ct_set_error(CT_ERR_NOMEM, "subpt: out of memory");
    for (int64_t k = 0; k < r; k++) {
        double acc = 0;
        for (int64_t j = 0; j < D; j++) acc += (double)U[k * D + j] * ctx->grad[j];
        c[k] = acc;
    }
    for (int64_t j = 0; j < D; j++) {
        double acc = 0;
        for (int64_t k = 0; k < r; k++) acc += (double)U[k * D + j] * c[k];
        ctx->grad[j] = (float)acc;
    }
    free(c);
    return CT_OK;
}

const ct_method ct_method_subpt = {
    .name = "subpt",
    .category = "prompt learning",
    .setup = "few-shot",
    .paper = "Ma et al., Understanding and Mitigating Overfitting in Prompt Tuning for "
             "Vision-Language Models (SubPT, NFL), TCSVT 2023",
    /* CoOp's defaults (coop.c) + the README's (t, r): t from the shots (10..50), r 10 */
    .defaults = "n_ctx=16 ctx_init= csc=0 class_token_position=end prec=fp16 optim=sgd "
                "lr=0.002 momentum=0.9 weight_decay=5e-4 sched=cosine warmup_epochs=1 "
                "warmup_type=constant warmup_lr=1e-5 batch_size=32 epochs=50 select=last "
                "aug_views=10 views=cycle early_epochs=0 dim=10 basis=pca nfl_classes= "
                "nfl_features= nfl_templates=imagenet80 nfl_loss=cosine nfl_lambda=1",
    .create = subpt_create,
    .destroy = subpt_destroy,
    .params = subpt_params,
    .param_names = subpt_param_names,
    .loss = subpt_loss,
    .logits = subpt_logits,
    .fit = subpt_fit,
    .before_step = subpt_before_step,
};
