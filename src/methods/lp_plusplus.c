/* LP++ (Huang, Shakeri, Dolz, Boudiaf, Bahig, Ben Ayed, "LP++: A
 * Surprisingly Strong Linear Probe for Few-Shot CLIP", CVPR 2024). Followed:
 * FereshteShakeri/FewShot-CLIP-Strong-Baseline methods/linear_probe_p2.py
 * (LinearProbe_P2.forward, calculate_lr_w, calculate_lr_alpha,
 * calculate_init_alpha), methods/utils.py (compute_centroids,
 * compute_centroids_alpha), utils.py (clip_classifier) and configs/base.yaml
 * (train_epoch 300).
 *
 * A linear classifier on the L2-normalised image features f, blended class
 * by class with the zero-shot text classifier T (K, E; unit rows, the
 * template ensemble of clip_classifier):
 *
 *   logits(f) = f W^T + b + alpha * (f T^T)     alpha (K): one weight per class
 *
 * loss = CE over the whole training set (one full batch per epoch).
 * Initialisation and step sizes, as the code computes them from the N
 * training features F (N, E):
 *   W_k   = sum of class k's features (compute_centroids: one_hot.bmm, a sum,
 *           not a mean); b ~ U(-1/sqrt(E), 1/sqrt(E)) (nn.Linear's default,
 *           left in place);
 *   alpha = 250 x mean_k (mean over class k's images of f . t_k), the same
 *           for every class (calculate_init_alpha: 250 / shots x shots x
 *           the class means of the true-class text score);
 *   lr_w  = 4 N / lambda_max(F^T F) (calculate_lr_w; here by power iteration
 *           in double, not scipy's eigh);
 *   lr_alpha = N / (4 max_k sum_i (f_i . t_k)^2) (calculate_lr_alpha).
 * (W, b) take torch SGD steps with momentum 0.9 at lr_w every epoch; alpha is
 * not in that optimiser: every 10th epoch it takes a plain step
 * alpha -= lr_alpha * alpha.grad, and since the code never zeroes
 * alpha_vec.grad, that gradient is the SUM of alpha's gradients over every
 * epoch so far (alpha_grad_reset=1 clears it after each alpha step instead).
 *
 * In the generic trainer: lr (default 1) multiplies lr_w; before_step
 * scales W's and b's gradients by lr_w (SGD with momentum and no weight
 * decay is linear in the gradient, so this is torch's SGD at lr_w x lr),
 * moves alpha's gradient into its running sum (a frozen learned tensor, so
 * checkpoints and resume carry it) and zeroes it, so the optimiser leaves
 * alpha alone; end_epoch takes the alpha step. The code selects its epoch
 * on the few-shot val set (acc_val >= best: the last best); here select=
 * best_val keeps the first best, and test is never looked at. The code
 * extracts the training features once, with one random-resized-crop + flip
 * pass: aug_views=1 (the run's augmented view; the evaluation view when a
 * task has none). The code runs in the model's dtype (fp16 on CUDA); here
 * float32.
 *
 * Learned tensor names: "weight" (K, E) and "bias" (K), the classifier
 * nn.Linear's state dict; "alpha_vec" (K), the code's variable; and
 * "alpha_vec.grad" (K), its accumulated gradient (not needed to score). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"
#include "methods/method_common.h"

typedef struct {
    ct_tensor *W, *b;      /* (K, E), (K): the linear classifier, SGD at lr_w     */
    ct_tensor *alpha;      /* (K): blend weight of the text scores, own steps      */
    ct_tensor *alpha_grad; /* (K): alpha's gradient summed since the last reset    */
    ct_tensor *T;          /* (K, E): zero-shot text classifier, unit rows (frozen) */
    double lr_w, lr_alpha; /* data-driven step sizes, set by fit                  */
    double init_scale;     /* 250 in calculate_init_alpha                          */
    int alpha_every, alpha_reset;
    double lr_alpha_set;   /* > 0: fixed lr_alpha instead of the data-driven one  */
    uint64_t seed;
} lpp_state;

static void lpp_destroy(void *st) {
    lpp_state *s = st;
    if (!s) return;
    ct_tensor_free(s->W), ct_tensor_free(s->b), ct_tensor_free(s->alpha);
    ct_tensor_free(s->alpha_grad), ct_tensor_free(s->T);
    free(s);
}

static ct_status lpp_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    lpp_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "lp++: out of memory");
    const char *tmpl, *zs;
    ct_status st = ct_kv_str(hp, "templates", "dataset", &tmpl);
    if (st == CT_OK) st = ct_kv_str(hp, "zs_weights", "", &zs);
    if (st == CT_OK) st = ct_kv_double(hp, "alpha_init_scale", 250, &s->init_scale);
    if (st == CT_OK) st = ct_kv_int(hp, "alpha_every", 10, &s->alpha_every);
    if (st == CT_OK) st = ct_kv_int(hp, "alpha_grad_reset", 0, &s->alpha_reset);
    if (st == CT_OK) st = ct_kv_double(hp, "lr_alpha", 0, &s->lr_alpha_set);
    if (st == CT_OK && (!isfinite(s->init_scale) || s->alpha_every < 1 ||
                        (s->alpha_reset != 0 && s->alpha_reset != 1) ||
                        !(s->lr_alpha_set >= 0) || !isfinite(s->lr_alpha_set)))
        st = ct_set_error(CT_ERR_ARG, "lp++: alpha_init_scale=%g (finite), alpha_every=%d (>= 1), "
                          "alpha_grad_reset=%d (0 or 1), lr_alpha=%g (>= 0; 0: data-driven)",
                          s->init_scale, s->alpha_every, s->alpha_reset, s->lr_alpha_set);
    int E = ct_clip_get_config(task->clip)->embed_dim, K = task->n_classes;
    if (st == CT_OK) {
        int64_t k = K;
        s->W = ct_tensor_new2(K, E, true);
        s->b = ct_tensor_new(1, &k, true);
        s->alpha = ct_tensor_new(1, &k, true);
        s->alpha_grad = ct_tensor_new(1, &k, false);
        s->T = ct_tensor_new2(K, E, false);
        if (!s->W || !s->b || !s->alpha || !s->alpha_grad || !s->T)
            st = ct_set_error(CT_ERR_NOMEM, "lp++: out of memory");
    }
    if (st == CT_OK) st = ct_zeroshot_classifier(task, zs, tmpl, true, s->T->data);
    if (st != CT_OK) {
        lpp_destroy(s);
        return st;
    }
    s->W->name = "weight", s->b->name = "bias", s->alpha->name = "alpha_vec";
    s->alpha_grad->name = "alpha_vec.grad";
    s->seed = task->seed;
    *out = s;
    return CT_OK;
}

static int lpp_params(void *st, ct_tensor **out, int cap) {
    lpp_state *s = st;
    if (cap < 4) return 0;
    out[0] = s->W, out[1] = s->b, out[2] = s->alpha, out[3] = s->alpha_grad;
    return 4;
}

static int lpp_param_names(void *st, const char **out, int cap) {
    (void)st;
    if (cap < 4) return 0;
    out[0] = "weight", out[1] = "bias", out[2] = "alpha_vec", out[3] = "alpha_vec.grad";
    return 4;
}

/* lambda_max of the PSD matrix G (d, d) by power iteration from the all-ones
 * vector, to relative change 1e-14 (G here is F^T F or F F^T, whichever is
 * smaller: the same nonzero eigenvalues). */
static double lambda_max(const double *G, int d) {
    double *v = malloc((size_t)d * sizeof *v), *w = malloc((size_t)d * sizeof *w), lam = 0;
    if (!v || !w) {
        free(v), free(w);
        return -1;
    }
    for (int i = 0; i < d; i++) v[i] = 1 / sqrt((double)d);
    for (int it = 0; it < 100000; it++) {
        double nn = 0, l = 0;
        for (int i = 0; i < d; i++) {
            double acc = 0;
            for (int j = 0; j < d; j++) acc += G[(size_t)i * d + j] * v[j];
            w[i] = acc, l += acc * v[i], nn += acc * acc;
        }
        nn = sqrt(nn);
        if (nn == 0) break;
        for (int i = 0; i < d; i++) v[i] = w[i] / nn;
        bool done = it > 0 && fabs(l - lam) <= 1e-14 * fabs(l);
        lam = l;
        if (done) break;
    }
    free(v), free(w);
    return lam;
}

/* Initialisation and step sizes from the training features (the set the
 * trainer iterates: the augmented view when the task has one). */
static ct_status lpp_fit(void *st, const ct_task *task) {
    lpp_state *s = st;
    const ct_features *tr = task->aug_feats ? task->aug_feats : task->train_feats;
    if (!tr || tr->n == 0) return ct_set_error(CT_ERR_ARG, "lp++: no training features");
    int64_t N = tr->n;
    int E = tr->dim, K = task->n_classes;
    if (E != (int)s->W->shape[1])
        return ct_set_error(CT_ERR_ARG, "lp++: features of dim %d, the model's embedding is %d",
                            E, (int)s->W->shape[1]);
    int d = N < E ? (int)N : E;
    double *F = malloc((size_t)N * E * sizeof *F), *G = calloc((size_t)d * d, sizeof *G);
    double *cnt = calloc((size_t)K, sizeof *cnt), *tsum = calloc((size_t)K, sizeof *tsum);
    double *sq = calloc((size_t)K, sizeof *sq);
    ct_status r = CT_OK;
    if (!F || !G || !cnt || !tsum || !sq) {
        r = ct_set_error(CT_ERR_NOMEM, "lp++: out of memory");
        goto out;
    }
    for (int64_t i = 0; i < N; i++) {
        const float *x = tr->x + i * E;
        double ss = 0;
        for (int j = 0; j < E; j++) ss += (double)x[j] * x[j];
        double inv = ss > 0 ? 1 / sqrt(ss) : 0;
        for (int j = 0; j < E; j++) F[i * E + j] = x[j] * inv;
    }
    memset(s->W->data, 0, (size_t)K * E * sizeof *s->W->data);
    for (int64_t i = 0; i < N; i++) {
        int y = tr->labels[i];
        if (y < 0 || y >= K) {
            r = ct_set_error(CT_ERR_ARG, "lp++: training label %d of item %lld outside [0, %d)",
                             y, (long long)i, K);
            goto out;
        }
        cnt[y] += 1;
        for (int j = 0; j < E; j++) s->W->data[(size_t)y * E + j] += (float)F[i * E + j];
        for (int k = 0; k < K; k++) {
            double t = 0;
            for (int j = 0; j < E; j++) t += F[i * E + j] * s->T->data[(size_t)k * E + j];
            sq[k] += t * t;
            if (k == y) tsum[k] += t;
        }
    }
    /* classes without an image: skipped by the mean (the code's one-hot has
     * only the classes present) */
    double amean = 0, smax = 0;
    int present = 0;
    for (int k = 0; k < K; k++) {
        if (cnt[k] > 0) amean += tsum[k] / cnt[k], present++;
        if (sq[k] > smax) smax = sq[k];
    }
    amean = s->init_scale * amean / present;
    if (N <= E) {
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j <= i; j++) {
                double acc = 0;
                for (int c = 0; c < E; c++) acc += F[i * E + c] * F[j * E + c];
                G[i * d + j] = G[j * d + i] = acc;
            }
    } else {
        for (int64_t i = 0; i < N; i++)
            for (int a = 0; a < E; a++) {
                double fa = F[i * E + a];
                for (int c = 0; c <= a; c++) G[(size_t)a * d + c] += fa * F[i * E + c];
            }
        for (int a = 0; a < E; a++)
            for (int c = 0; c < a; c++) G[(size_t)c * d + a] = G[(size_t)a * d + c];
    }
    double lam = lambda_max(G, d);
    if (!(lam > 0) || !(smax > 0)) {
        r = ct_set_error(CT_ERR_ARG, "lp++: the training features are all zero (lambda_max %g)",
                         lam);
        goto out;
    }
    s->lr_w = 4.0 * (double)N / lam;
    s->lr_alpha = s->lr_alpha_set > 0 ? s->lr_alpha_set : (double)N / (smax * 4);
    for (int k = 0; k < K; k++) s->alpha->data[k] = (float)amean, s->alpha_grad->data[k] = 0;
    ct_rng rng;
    ct_rng_init(&rng, ct_hash_u64(s->seed, 0x1bb));
    float bound = (float)(1 / sqrt((double)E));
    ct_rng_fill_uniform(&rng, s->b->data, (size_t)K, -bound, bound);
    ct_task_logf(task, "lp++: lr_w %.6g, lr_alpha %.6g, alpha init %.6g", s->lr_w, s->lr_alpha,
                 amean);
out:
    free(F), free(G), free(cnt), free(tsum), free(sq);
    return r;
}

static ct_tensor *lpp_logits(void *st, ct_graph *g, const ct_batch *b) {
    lpp_state *s = st;
    int64_t shape[2] = {b->n, s->W->shape[1]};
    ct_tensor *x = ct_l2_normalize(g, ct_graph_wrap(g, (ct_real *)b->x, 2, shape), 1e-12f);
    ct_tensor *text = ct_matmul(g, x, s->T, false, true);
    return ct_add(g, ct_linear(g, x, s->W, s->b), ct_mul(g, text, s->alpha));
}

static ct_tensor *lpp_loss(void *st, ct_graph *g, const ct_batch *b) {
    int64_t *y = ct_graph_alloc(g, (size_t)b->n * sizeof *y);
    if (!y) return NULL;
    for (int64_t i = 0; i < b->n; i++) y[i] = b->labels[i];
    return ct_cross_entropy(g, lpp_logits(st, g, b), y, 0);
}

/* W and b: the data-driven step size; alpha: its gradient into the running
 * sum, none for the optimiser. */
static ct_status lpp_before_step(void *st, ct_graph *g, const ct_batch *b) {
    (void)g, (void)b;
    lpp_state *s = st;
    if (!(s->lr_w > 0))
        return ct_set_error(CT_ERR_STATE, "lp++: trained before fit set the step sizes");
    float c = (float)s->lr_w;
    for (int64_t i = 0; i < s->W->numel; i++) s->W->grad[i] *= c;
    for (int64_t k = 0; k < s->b->numel; k++) s->b->grad[k] *= c;
    for (int64_t k = 0; k < s->alpha->numel; k++) {
        s->alpha_grad->data[k] += s->alpha->grad[k];
        s->alpha->grad[k] = 0;
    }
    return CT_OK;
}

static ct_status lpp_end_epoch(void *st, int epoch, int epochs) {
    (void)epochs;
    lpp_state *s = st;
    if ((epoch + 1) % s->alpha_every) return CT_OK;
    for (int64_t k = 0; k < s->alpha->numel; k++) {
        s->alpha->data[k] -= (float)(s->lr_alpha * s->alpha_grad->data[k]);
        if (s->alpha_reset) s->alpha_grad->data[k] = 0;
    }
    return CT_OK;
}

const ct_method ct_method_lp_plusplus = {
    .name = "lp++",
    .category = "baseline",
    .setup = "few-shot",
    .paper = "Huang et al., LP++: A Surprisingly Strong Linear Probe for Few-Shot CLIP, CVPR 2024",
    /* configs/base.yaml: train_epoch 300; full batch; SGD momentum 0.9 at the
     * data-driven lr_w (lr multiplies it); val selection as the code */
    .defaults = "templates=dataset alpha_init_scale=250 alpha_every=10 alpha_grad_reset=0 "
                "lr_alpha=0 optim=sgd lr=1 momentum=0.9 weight_decay=0 sched=constant "
                "batch_size=65536 epochs=300 select=best_val aug_views=1",
    .create = lpp_create,
    .destroy = lpp_destroy,
    .params = lpp_params,
    .param_names = lpp_param_names,
    .fit = lpp_fit,
    .loss = lpp_loss,
    .logits = lpp_logits,
    .before_step = lpp_before_step,
    .end_epoch = lpp_end_epoch,
};
