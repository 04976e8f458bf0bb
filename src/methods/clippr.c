/* CLIPPR, CLIP with label-distribution priors (Kahana, Cohen, Hoshen,
 * "Improving Zero-Shot Models with Label Distribution Priors", arXiv
 * 2212.00784, 2022). Followed: jonkahana/CLIPPR
 * train__distr_match__classification.py (the training loop, the prior, the
 * stages), model.py (CLIP_Visual's classifier, CLIP_Zero_Shot.predict__eval,
 * KLD_Loss) and bash_scripts/cifar10/clippr__uniform_prior.sh (the
 * classification run with the uniform prior: alpha 100, 4 accumulated
 * batches of 128, Adam lr 1e-3, weight decay 3e-4).
 *
 * No label is used. fit() labels every unlabelled training image with
 * zero-shot CLIP's argmax (predict__eval: normalize(img) . normalize(t_k),
 * t_k the text features of the one prompt of the dataset), and the generic
 * trainer fits an MLP on the normalised image features to them (the
 * train_set hook) with
 *
 *   loss = CE(f(x), zs_label) + alpha * KL(prior || mean_i softmax(f(x_i)))
 *   f(x) = W3 lrelu(W2 lrelu(W1 normalize(x) + b1) + b2)        (no bias on W3)
 *
 * lrelu = LeakyReLU(0.01) (torch's default slope), W1 (H, E), W2 (H, H),
 * W3 (K, H), H = 128 (CLIP_Visual.classifier; the BatchNorm1d layers there
 * are used for ImageNet only and are not built here). KL(p || q) = sum_k p_k
 * log(p_k / q_k) (KLD_Loss: prior first; a class of prior 0 adds 0, where
 * torch's formula would give NaN). Scores = f(x): the MLP's raw logits.
 *
 * The batch: the cifar10 script accumulates acc_batches = 4 batches of 128
 * (acc_batches_over_time False) into one step whose loss is the mean of the
 * four batches' CE plus alpha KL on the mean of their four mean
 * distributions; with equal batches that is one batch of 512, which is what
 * this trains (batch_size=512). Departures there: the official's first step
 * of an epoch takes one batch only (batch_idx % 4 == 0 at batch 0) and its
 * last one the remainder; here every step but the last of an epoch has 512.
 *
 * Prior: prior=uniform (the scripts' {'dist_type': 'uniform'}), or the
 * user's class weights (their 'costum' prior, normalised by the sum), as K
 * numbers separated by ':' (prior=1:2:3; a comma separates hyper-parameters)
 * or a float32 .npy of K values. The
 * script's default without a prior, the empirical class frequencies of the
 * training labels, needs labels and is not offered.
 *
 * Schedule: the official trains in three stages when stage1_length is set
 * (the scripts: 10, 10): the classifier alone (Adam lr 1e-3), then the
 * image tower alone (Adam lr 1e-6), then the classifier again (lr 1e-4),
 * each under StepLR(gamma 0.3 every 10 epochs; it never fires within the
 * first stage), 70 epochs in all. The backbone stage is left out here (the
 * image features stay the frozen, cached ones), and so are the restarts of
 * Adam and of StepLR at the stage boundaries: the classifier trains for its
 * 60 epochs of stages 1 and 3 in one run at stage 1's constant lr 1e-3
 * (stage 1 alone, epochs=10, does not move the shipped model past zero-shot:
 * docs/methods/clippr.md). The official keeps the epoch of the best
 * (label-free) loss on the test set; here the last epoch.
 *
 * Learned tensor names: the keys of CLIP_Visual's state dict for the
 * classifier ("classifier.0.weight", ".0.bias", ".3.weight", ".3.bias",
 * ".6.weight": Sequential(Linear, Identity, LeakyReLU, Linear, Identity,
 * LeakyReLU, Linear)). Layers start as torch's nn.Linear does,
 * U(-1/sqrt(in), 1/sqrt(in)) for weights and biases. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "methods/method_common.h"

typedef struct {
    int E, K, H;
    ct_tensor *W1, *b1, *W2, *b2, *W3; /* (H,E) (H) (H,H) (H) (K,H): learned          */
    float *zs;                         /* (K, E) unit text features (pseudo-labels)   */
    ct_real *prior;                    /* (K) the label prior, sums to 1              */
    float alpha;
    ct_features set;                   /* the pseudo-labelled set: x (n, E), labels   */
} clippr_state;

static void clippr_destroy(void *st) {
    clippr_state *s = st;
    if (!s) return;
    ct_tensor_free(s->W1), ct_tensor_free(s->b1), ct_tensor_free(s->W2);
    ct_tensor_free(s->b2), ct_tensor_free(s->W3);
    free(s->zs), free(s->prior);
    free(s->set.x), free(s->set.labels);
    free(s);
}

/* prior=uniform | w0:w1:...:w(K-1) | a .npy of K weights, normalised. */
static ct_status parse_prior(const char *v, int K, ct_real *out) {
    if (!strcmp(v, "uniform")) {
        for (int k = 0; k < K; k++) out[k] = 1.0f / (float)K;
        return CT_OK;
    }
    double *w = malloc((size_t)K * sizeof *w);
    if (!w) return ct_set_error(CT_ERR_NOMEM, "clippr: out of memory");
    ct_status st = CT_OK;
    size_t len = strlen(v);
    if (len > 4 && !strcmp(v + len - 4, ".npy")) {
        ct_npy a;
        st = ct_npy_read(v, &a);
        if (st == CT_OK) {
            if (a.dtype != CT_F32 || a.numel != (size_t)K)
                st = ct_set_error(CT_ERR_FORMAT, "clippr: prior=%s: need %d float32 values "
                                  "(one per class), got %zu of %s", v, K, a.numel,
                                  ct_dtype_name(a.dtype));
            for (int k = 0; st == CT_OK && k < K; k++) w[k] = ((const float *)a.data)[k];
            ct_npy_free(&a);
        }
    } else {
        const char *p = v;
        for (int k = 0; st == CT_OK && k < K; k++) {
            char *end;
            w[k] = strtod(p, &end);
            if (end == p || (k < K - 1 && *end != ':') || (k == K - 1 && *end != 0))
                st = ct_set_error(CT_ERR_ARG, "clippr: prior=%s: uniform, a .npy, or %d "
                                  "class weights separated by ':'", v, K);
            p = end + 1;
        }
    }
    double sum = 0;
    for (int k = 0; st == CT_OK && k < K; k++) {
        if (!isfinite(w[k]) || w[k] < 0)
            st = ct_set_error(CT_ERR_ARG, "clippr: prior=%s: weight %d is %g (finite, >= 0)", v,
                              k, w[k]);
        sum += w[k];
    }
    if (st == CT_OK && !(sum > 0 && isfinite(sum)))
        st = ct_set_error(CT_ERR_ARG, "clippr: prior=%s: the weights sum to %g (> 0)", v, sum);
    for (int k = 0; st == CT_OK && k < K; k++) out[k] = (ct_real)(w[k] / sum);
    free(w);
    return st;
}

static ct_status clippr_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    const char *tmpl, *zs, *prior;
    double alpha;
    int H, views;
    ct_status st = ct_kv_str(hp, "templates", "dataset", &tmpl);
    if (st == CT_OK) st = ct_kv_str(hp, "zs_weights", "", &zs);
    if (st == CT_OK) st = ct_kv_str(hp, "prior", "uniform", &prior);
    if (st == CT_OK) st = ct_kv_double(hp, "alpha", 100, &alpha);
    if (st == CT_OK) st = ct_kv_int(hp, "hidden", 128, &H);
    /* read here (ct_run reads it too) only to refuse it */
    if (st == CT_OK) st = ct_kv_int(hp, "aug_views", 0, &views);
    if (st != CT_OK) return st;
    if (!(alpha >= 0) || !isfinite(alpha))
        return ct_set_error(CT_ERR_ARG, "clippr: alpha=%g (a finite number >= 0)", alpha);
    if (H < 1 || H > 65536) return ct_set_error(CT_ERR_ARG, "clippr: hidden=%d (1 .. 65536)", H);
    if (views != 0)
        return ct_set_error(CT_ERR_ARG, "clippr: aug_views=%d: CLIPPR trains on the view-0 "
                            "features of the unlabelled images (aug_views=0)", views);
    int E = ct_clip_get_config(task->clip)->embed_dim, K = task->n_classes;
    if (K < 1) return ct_set_error(CT_ERR_ARG, "clippr: the task has no classes");
    clippr_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "clippr: out of memory");
    s->E = E, s->K = K, s->H = H, s->alpha = (float)alpha;
    s->W1 = ct_tensor_new2(H, E, true), s->W2 = ct_tensor_new2(H, H, true);
    s->W3 = ct_tensor_new2(K, H, true);
    int64_t hs[1] = {H};
    s->b1 = ct_tensor_new(1, hs, true), s->b2 = ct_tensor_new(1, hs, true);
    s->zs = malloc((size_t)K * E * sizeof *s->zs);
    s->prior = malloc((size_t)K * sizeof *s->prior);
    if (!s->W1 || !s->W2 || !s->W3 || !s->b1 || !s->b2 || !s->zs || !s->prior) {
        clippr_destroy(s);
        return ct_set_error(CT_ERR_NOMEM, "clippr: out of memory");
    }
    s->W1->name = "clippr.fc1", s->b1->name = "clippr.fc1.bias";
    s->W2->name = "clippr.fc2", s->b2->name = "clippr.fc2.bias", s->W3->name = "clippr.fc3";
    st = parse_prior(prior, K, s->prior);
    if (st == CT_OK) st = ct_zeroshot_classifier(task, zs, tmpl, true, s->zs);
    if (st != CT_OK) {
        clippr_destroy(s);
        return st;
    }
    /* a stream of its own, so other consumers of the task seed are unaffected */
    ct_rng root, r;
    ct_rng_init(&root, task->seed);
    r = ct_rng_split(&root, 0xc1199e);
    float b1 = 1 / sqrtf((float)E), b2 = 1 / sqrtf((float)H);
    ct_rng_fill_uniform(&r, s->W1->data, (size_t)s->W1->numel, -b1, b1);
    ct_rng_fill_uniform(&r, s->b1->data, (size_t)H, -b1, b1);
    ct_rng_fill_uniform(&r, s->W2->data, (size_t)s->W2->numel, -b2, b2);
    ct_rng_fill_uniform(&r, s->b2->data, (size_t)H, -b2, b2);
    ct_rng_fill_uniform(&r, s->W3->data, (size_t)s->W3->numel, -b2, b2);
    *out = s;
    return CT_OK;
}

/* Zero-shot argmax labels of every unlabelled image into s->set. */
static ct_status clippr_fit(void *st, const ct_task *task) {
    clippr_state *s = st;
    const ct_features *f = task->unlabelled_feats;
    if (!f)
        return ct_set_error(CT_ERR_ARG, "clippr: the task has no unlabelled training features "
                            "(ct_run gives them to a method with wants_unlabelled)");
    if (f->dim != s->E)
        return ct_set_error(CT_ERR_ARG, "clippr: unlabelled features of dimension %d, the "
                            "model's is %d", f->dim, s->E);
    int E = s->E, K = s->K;
    int64_t n = f->n;
    free(s->set.x), free(s->set.labels);
    s->set = (ct_features){.n = n, .dim = E};
    s->set.x = malloc((size_t)(n ? n : 1) * E * sizeof *s->set.x);
    s->set.labels = malloc((size_t)(n ? n : 1) * sizeof *s->set.labels);
    if (!s->set.x || !s->set.labels) return ct_set_error(CT_ERR_NOMEM, "clippr: out of memory");
    if (n) memcpy(s->set.x, f->x, (size_t)n * E * sizeof *s->set.x);
    /* the image norm does not change the argmax */
    for (int64_t i = 0; i < n; i++) {
        const float *x = f->x + i * E;
        double best = -INFINITY;
        int arg = 0;
        for (int k = 0; k < K; k++) {
            double d = 0;
            for (int e = 0; e < E; e++) d += (double)x[e] * s->zs[(size_t)k * E + e];
            if (d > best) best = d, arg = k;
        }
        s->set.labels[i] = arg;
    }
    return CT_OK;
}

static const ct_features *clippr_train_set(void *st) { return &((clippr_state *)st)->set; }

static int clippr_params(void *st, ct_tensor **out, int cap) {
    clippr_state *s = st;
    if (cap < 5) return 0;
    out[0] = s->W1, out[1] = s->b1, out[2] = s->W2, out[3] = s->b2, out[4] = s->W3;
    return 5;
}

static int clippr_param_names(void *st, const char **out, int cap) {
    (void)st;
    if (cap < 5) return 0;
    out[0] = "classifier.0.weight", out[1] = "classifier.0.bias";
    out[2] = "classifier.3.weight", out[3] = "classifier.3.bias";
    out[4] = "classifier.6.weight";
    return 5;
}

/* torch's LeakyReLU(0.01) as 0.99 relu(x) + 0.01 x: x for x > 0, 0.01 x below */
static ct_tensor *leaky_relu(ct_graph *g, ct_tensor *x) {
    return ct_add(g, ct_scale(g, ct_relu(g, x), 0.99f), ct_scale(g, x, 0.01f));
}

static ct_tensor *clippr_logits(void *st, ct_graph *g, const ct_batch *b) {
    clippr_state *s = st;
    int64_t shape[2] = {b->n, s->E};
    ct_tensor *x = ct_l2_normalize(g, ct_graph_wrap(g, (ct_real *)b->x, 2, shape), 1e-12f);
    ct_tensor *h = leaky_relu(g, ct_linear(g, x, s->W1, s->b1));
    h = leaky_relu(g, ct_linear(g, h, s->W2, s->b2));
    return ct_linear(g, h, s->W3, NULL);
}

static ct_tensor *clippr_loss(void *st, ct_graph *g, const ct_batch *b) {
    clippr_state *s = st;
    int64_t *y = ct_graph_alloc(g, (size_t)b->n * sizeof *y);
    if (!y) return NULL;
    for (int64_t i = 0; i < b->n; i++) y[i] = b->labels[i];
    ct_tensor *z = clippr_logits(st, g, b);
    ct_tensor *loss = ct_cross_entropy(g, z, y, 0);
    if (s->alpha == 0) return loss;
    /* the batch's mean predicted distribution against the prior */
    int64_t row[2] = {1, s->K};
    ct_tensor *q = ct_reshape(g, ct_mean(g, ct_softmax(g, z), 0), 2, row);
    ct_tensor *p = ct_graph_wrap(g, s->prior, 2, row);
    return ct_add(g, loss, ct_scale(g, ct_kl_div(g, ct_log(g, q), p), s->alpha));
}

const ct_method ct_method_clippr = {
    .name = "clippr",
    .category = "adapter",
    .setup = "unsupervised",
    .paper = "Kahana, Cohen, Hoshen, Improving Zero-Shot Models with Label Distribution Priors "
             "(CLIPPR), arXiv 2022",
    /* bash_scripts/cifar10/clippr__uniform_prior.sh: uniform prior, alpha 100, 4 x 128 images
     * a step, Adam (betas 0.9, 0.999) lr 1e-3 weight decay 3e-4; the classifier's 10 + 50
     * epochs of stages 1 and 3 at stage 1's lr (see the top of the file) */
    .defaults = "prior=uniform alpha=100 hidden=128 templates=dataset zs_weights= optim=adam "
                "lr=0.001 weight_decay=3e-4 eps=1e-8 sched=constant batch_size=512 epochs=60 "
                "select=last",
    .create = clippr_create,
    .destroy = clippr_destroy,
    .params = clippr_params,
    .param_names = clippr_param_names,
    .loss = clippr_loss,
    .logits = clippr_logits,
    .fit = clippr_fit,
    .wants_unlabelled = true,
    .train_set = clippr_train_set,
};
