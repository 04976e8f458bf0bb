/* CPL, counterfactual prompt learning (He et al., "CPL: Counterfactual Prompt
 * Learning for Vision and Language Models", EMNLP 2022). Followed:
 * eric-ai-lab/CPL at ce47190, CPL/trainers/cocoopcf.py (PromptLearner with
 * its u, cfgen, CustomCLIP.forward, CoCoOpcf.forward_backward),
 * CPL/utils/solver.py (solver's greedy branch, get_next_edit, mupdate) and
 * CPL/Dassl.pytorch/dassl/utils/tools.py (xloss_compute). CoCoOp's prompt
 * learner and encoder are cocoop.c's (methods/cocoop.h); the training
 * config named by the README, vit_b16_c4_ep10_batch1_ctxv1, is CoCoOp's.
 *
 * Per training image x (raw feature, class c):
 *   - negative class c' = the class most similar to c (the code: BERTScore
 *     F1 between class names, precomputed in score.npy; here: the cosine of
 *     the CLIP text features of the bare class names, no BERT being
 *     available) and its distractor image: one training image of c' (the
 *     code: cname2img, one path per class name; here the first training
 *     item of c', its view-0 feature nx);
 *   - solver (no gradient), on raw features and the raw text features
 *     t = encode_text(tokenize(name)) of c and c' (unnormalised, no
 *     template), ls the model's logit_scale parameter (not its exp, as
 *     solver.py): greedily, while the prediction has not flipped, copy into
 *     x the dimension of nx that most raises ls cos(x, t_c') — a candidate
 *     counts only if that logit beats 0 (get_next_edit's start value; with
 *     none, index -1, i.e. the last dimension, is copied, as Python's
 *     indexing does), dimensions already copied are skipped —, stopping
 *     when ls cos(x, t_c') > ls cos(x, t_c) or after E edits. ust[:, c] is
 *     +1 on the edited dimensions and -1 elsewhere, set by the first image
 *     of each class in the batch (solver's `ss`);
 *   - u = clamp(0.999 ust + 0.001 U[:, c], 0, 1) (mupdate), U the learned
 *     (E, K) "u" initialised to ones: U moves only through the 0.001;
 *   - counterfactual cf = normalize((1 - u) xn + u nxn), xn, nxn the
 *     normalised features (cfgen);
 *   - loss = CE(logits) + lam mean_k -log softmax([cos(t_k, xn),
 *     cos(t_k, cf)])[0] + control ||u||_2, t_k the image's CoCoOp class
 *     features; lam 1, control 0.07 (CustomCLIP.forward's constants).
 * Scores: CoCoOp's logits (the counterfactual is used in training only).
 *
 * Where the code departs from the paper, and this file from the code
 * (docs/methods/cpl.md): the paper optimises the mask u jointly (a
 * minimal, sparse u flipping the prediction); the code takes u from the
 * greedy solver (or precomputed weights it downloads) every step and only
 * mixes in the learned U at 0.001 — implemented as the code. At its batch
 * size 1, cfgen's (1 - u[:, y]) * x broadcasts (E, 1) against (1, E) to an
 * (E, E) matrix of which only row 0 is used, so the whole counterfactual is
 * x or nx as the mask's first dimension says: cf_mix=row0 reproduces that;
 * the default cf_mix=dims mixes per dimension, as the paper and the code's
 * evident intent. The code runs only at batch 1 (larger batches break that
 * broadcast, and its DataParallel hack repeats u 4 times); here a batch of
 * n averages the three terms over its images (= the code at n = 1).
 * Learned tensor names: cocoopcf.py's prompt_learner state dict, CoCoOp's
 * five and "u". */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "methods/cocoop.h"
#include "methods/method_common.h"

typedef struct {
    void *cc;          /* CoCoOp's prompt learner and encoder                 */
    ct_tensor *U;      /* (E, K) learned, ones at start                       */
    float *tname;      /* (K, E) raw text features of the bare class names    */
    float *nfeat;      /* (K, E) raw view-0 feature of each class's distractor, or NULL */
    int *neg;          /* (K) the negative class of each class                */
    int K, E;
    float lam, control;
    double mom;        /* mupdate's m */
    bool row0;
} cpl_state;

static void cpl_destroy(void *st) {
    cpl_state *s = st;
    if (!s) return;
    ct_cocoop_destroy(s->cc);
    ct_tensor_free(s->U);
    free(s->tname), free(s->nfeat), free(s->neg);
    free(s);
}

static double dot(const float *a, const float *b, int n) {
    double d = 0;
    for (int i = 0; i < n; i++) d += (double)a[i] * b[i];
    return d;
}

/* Negative classes: the most similar other class by the cosine of the raw
 * class-name text features; the distractor: the first training item of it
 * (a class without training items is passed over for the next most
 * similar). */
static ct_status pick_negatives(cpl_state *s, const ct_task *task) {
    int K = s->K, E = s->E;
    /* a state made to check hyper-parameters or to score gets none (or an
     * empty set): it cannot train (cpl_loss says so) */
    const ct_features *f = task->train_feats && task->train_feats->n > 0 ? task->train_feats
                                                                        : NULL;
    int64_t *first = malloc((size_t)K * sizeof *first);
    if (!first) return ct_set_error(CT_ERR_NOMEM, "cpl: out of memory");
    for (int k = 0; k < K; k++) first[k] = -1;
    for (int64_t i = 0; f && f->labels && i < f->n; i++)
        if (f->labels[i] >= 0 && f->labels[i] < K && first[f->labels[i]] < 0)
            first[f->labels[i]] = i;
    if (f && f->dim != E) {
        free(first);
        return ct_set_error(CT_ERR_ARG, "cpl: training features of width %d, the model's "
                            "embedding is %d", f->dim, E);
    }
    s->nfeat = f ? malloc((size_t)K * E * sizeof *s->nfeat) : NULL;
    if (f && !s->nfeat) {
        free(first);
        return ct_set_error(CT_ERR_NOMEM, "cpl: out of memory");
    }
    for (int c = 0; c < K; c++) {
        const float *tc = s->tname + (size_t)c * E;
        double nc = sqrt(dot(tc, tc, E)), best = -INFINITY;
        int pick = -1;
        for (int k = 0; k < K; k++) {
            if (k == c || (f && first[k] < 0)) continue;
            const float *tk = s->tname + (size_t)k * E;
            double cs = dot(tc, tk, E) / (nc * sqrt(dot(tk, tk, E)));
            if (cs > best) best = cs, pick = k;
        }
        if (pick < 0 && f) {
            free(first);
            return ct_set_error(CT_ERR_ARG, "cpl: no training image of another class than "
                                "class %d to build its counterfactuals from", c);
        }
        s->neg[c] = pick < 0 ? (c + 1) % K : pick;
        if (f) memcpy(s->nfeat + (size_t)c * E, f->x + (size_t)first[s->neg[c]] * E,
                      (size_t)E * sizeof(float));
    }
    free(first);
    return CT_OK;
}

static ct_status cpl_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    double lam, control, mom;
    const char *mix;
    ct_status st = ct_kv_double(hp, "lam", 1.0, &lam);
    if (st == CT_OK) st = ct_kv_double(hp, "control_scale", 0.07, &control);
    if (st == CT_OK) st = ct_kv_double(hp, "u_momentum", 0.999, &mom);
    if (st == CT_OK) st = ct_kv_str(hp, "cf_mix", "dims", &mix);
    if (st != CT_OK) return st;
    if (!(lam >= 0) || isinf(lam))
        return ct_set_error(CT_ERR_ARG, "cpl: lam=%g (a finite number >= 0)", lam);
    if (!(control >= 0) || isinf(control))
        return ct_set_error(CT_ERR_ARG, "cpl: control_scale=%g (a finite number >= 0)", control);
    if (!(mom >= 0 && mom <= 1))
        return ct_set_error(CT_ERR_ARG, "cpl: u_momentum=%g (0 .. 1)", mom);
    if (strcmp(mix, "dims") && strcmp(mix, "row0"))
        return ct_set_error(CT_ERR_ARG, "cpl: cf_mix=%s (dims, row0)", mix);
    if (task->n_classes < 2)
        return ct_set_error(CT_ERR_ARG, "cpl: counterfactuals need at least 2 classes (the "
                            "task has %d)", task->n_classes);
    cpl_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "cpl: out of memory");
    s->K = task->n_classes, s->E = ct_clip_get_config(task->clip)->embed_dim;
    s->lam = (float)lam, s->control = (float)control, s->mom = mom;
    s->row0 = !strcmp(mix, "row0");
    st = ct_cocoop_create(task, hp, &s->cc);
    if (st == CT_OK) {
        s->U = ct_tensor_new2(s->E, s->K, true);
        s->tname = malloc((size_t)s->K * s->E * sizeof *s->tname);
        s->neg = malloc((size_t)s->K * sizeof *s->neg);
        if (!s->U || !s->tname || !s->neg) st = ct_set_error(CT_ERR_NOMEM, "cpl: out of memory");
    }
    if (st == CT_OK) {
        s->U->name = "cpl.u";
        for (int64_t i = 0; i < s->U->numel; i++) s->U->data[i] = 1.0f; /* torch.ones */
        /* solver.py: model.encode_text(clip.tokenize(classname)), raw */
        st = ct_zeroshot_classifier(task, NULL, "{}", false, s->tname);
    }
    if (st == CT_OK) st = pick_negatives(s, task);
    if (st != CT_OK) {
        cpl_destroy(s);
        return st;
    }
    *out = s;
    return CT_OK;
}

static int cpl_params(void *st, ct_tensor **out, int cap) {
    cpl_state *s = st;
    int n = ct_cocoop_params(s->cc, out, cap);
    if (n < cap) out[n++] = s->U;
    return n;
}

/* cocoopcf.py's PromptLearner: CoCoOp's ctx and meta_net, and u */
static int cpl_param_names(void *st, const char **out, int cap) {
    cpl_state *s = st;
    int n = ct_cocoop_param_names(s->cc, out, cap);
    if (n < cap) out[n++] = "u";
    return n;
}

/* solver.py's greedy branch for one image: mask[e] = 1 on the dimensions
 * copied from the distractor nx into x (raw features), c the image's class.
 * ls: the logit_scale parameter as solver.py uses it. */
static void solve(const cpl_state *s, float ls, const float *x, int c, unsigned char *mask,
                  double *src, unsigned char *done) {
    const int E = s->E, n = s->neg[c];
    const float *nx = s->nfeat + (size_t)c * E, *tp = s->tname + (size_t)c * E;
    const float *tn = s->tname + (size_t)n * E;
    for (int e = 0; e < E; e++) src[e] = x[e], mask[e] = 0, done[e] = 0;
    for (int j = 0; j < E; j++) {
        double dn = 0, n2 = 0, best = 0.0;
        for (int e = 0; e < E; e++) dn += src[e] * tn[e], n2 += src[e] * src[e];
        int edit = -1;
        for (int e = 0; e < E; e++) {
            if (done[e]) continue;
            double d = dn + (nx[e] - src[e]) * tn[e];
            double q = n2 - src[e] * src[e] + (double)nx[e] * nx[e];
            double l = ls * d / sqrt(q);
            if (l > best) best = l, edit = e;
        }
        /* index -1 (no candidate beat 0) is Python's last dimension, and it
         * is never marked done (S holds -1, not E - 1) */
        int e = edit < 0 ? E - 1 : edit;
        if (edit >= 0) done[edit] = 1;
        mask[e] = 1;
        src[e] = nx[e];
        double lp = 0, ln = 0, nn = 0;
        for (int k = 0; k < E; k++)
            lp += src[k] * tp[k], ln += src[k] * tn[k], nn += src[k] * src[k];
        nn = sqrt(nn);
        if (ls * ln / nn > ls * lp / nn) break;
    }
}

static ct_tensor *cpl_loss(void *st, ct_graph *g, const ct_batch *b) {
    cpl_state *s = st;
    const int64_t n = b->n, K = s->K, E = s->E;
    if (!s->nfeat) {
        ct_set_error(CT_ERR_ARG, "cpl: training needs the task's training features (the "
                     "distractor images are drawn from them)");
        return NULL;
    }
    int64_t xs[2] = {n, E}, i3[3] = {n, 1, E}, c3[3] = {n, E, 1}, o2[2] = {n, K};
    int64_t *y = ct_graph_alloc(g, (size_t)(n ? n : 1) * sizeof *y);
    float *ust = ct_graph_alloc(g, (size_t)(n * E) * sizeof *ust);
    float *nxn = ct_graph_alloc(g, (size_t)(n * E) * sizeof *nxn);
    double *src = ct_graph_alloc(g, (size_t)E * sizeof *src);
    unsigned char *masks = ct_graph_alloc(g, (size_t)(K * E + E));
    if (!y || !ust || !nxn || !src || !masks) return NULL;
    float ls = ct_cocoop_logit_scale(s->cc)->data[0];
    unsigned char *done = masks + K * E;
    /* the first image of each class in the batch sets its class's mask */
    bool *set = ct_graph_alloc(g, (size_t)K * sizeof *set);
    if (!set) return NULL;
    memset(set, 0, (size_t)K * sizeof *set);
    for (int64_t i = 0; i < n; i++) {
        int c = b->labels[i];
        if (c < 0 || c >= K) {
            ct_set_error(CT_ERR_ARG, "cpl: label %d of batch item %lld is not a class (0 .. %lld)",
                         c, (long long)i, (long long)K - 1);
            return NULL;
        }
        y[i] = c;
        if (!set[c]) {
            solve(s, ls, b->x + i * E, c, masks + (size_t)c * E, src, done);
            set[c] = true;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        int c = b->labels[i];
        const float *nx = s->nfeat + (size_t)c * E;
        double nn = sqrt(dot(nx, nx, (int)E));
        for (int64_t e = 0; e < E; e++) {
            /* mupdate: ust * m (the solver's +-1 in float32) */
            ust[i * E + e] = (masks[(size_t)c * E + e] ? 1.0f : -1.0f) * (float)s->mom;
            nxn[i * E + e] = (float)(nx[e] / (nn > 1e-12 ? nn : 1e-12));
        }
    }
    ct_tensor *img = ct_l2_normalize(g, ct_graph_wrap(g, (ct_real *)b->x, 2, xs), 1e-12f);
    ct_tensor *txt = ct_cocoop_text(s->cc, g, img); /* (n, K, E) */
    ct_tensor *lg = ct_matmul(g, ct_reshape(g, img, 3, i3), txt, false, true);
    lg = ct_mul(g, ct_reshape(g, lg, 2, o2), ct_exp(g, ct_cocoop_logit_scale(s->cc)));
    ct_tensor *ce = ct_cross_entropy(g, lg, y, 0.0f);
    /* u = clamp(m ust + (1 - m) U[:, y], 0, 1): clamp's value and its
     * gradient (passed where 0 <= pre <= 1, as torch) */
    ct_tensor *ucol = ct_gather_rows(g, ct_transpose(g, s->U, 0, 1), y, 1, &xs[0]); /* (n, E) */
    ct_tensor *pre = ct_add(g, ct_scale(g, ucol, (float)(1.0 - s->mom)),
                            ct_graph_wrap(g, ust, 2, xs));
    if (!pre) return NULL;
    float *keep = ct_graph_alloc(g, (size_t)(2 * n * E) * sizeof *keep), *rest = keep + n * E;
    if (!keep) return NULL;
    for (int64_t i = 0; i < n * E; i++) {
        float v = pre->data[i];
        bool in = v >= 0.0f && v <= 1.0f;
        keep[i] = in ? 1.0f : 0.0f;
        rest[i] = in ? 0.0f : (v < 0.0f ? 0.0f : 1.0f);
    }
    ct_tensor *u = ct_add(g, ct_mul(g, pre, ct_graph_wrap(g, keep, 2, xs)),
                          ct_graph_wrap(g, rest, 2, xs));
    ct_tensor *w = u;
    if (s->row0) { /* cfgen at batch 1: the mask's first dimension for every dimension */
        int64_t os[2] = {1, E};
        float *ones = ct_graph_alloc(g, (size_t)E * sizeof *ones);
        if (!ones) return NULL;
        for (int64_t e = 0; e < E; e++) ones[e] = 1.0f;
        w = ct_matmul(g, ct_slice(g, u, 1, 0, 1), ct_graph_wrap(g, ones, 2, os), false, false);
    }
    ct_tensor *cf = ct_l2_normalize(
        g, ct_add(g, img, ct_mul(g, w, ct_sub(g, ct_graph_wrap(g, nxn, 2, xs), img))), 1e-12f);
    /* xloss_compute: -log softmax([cos(t, x), cos(t, cf)])[0] per class */
    ct_tensor *pair[2] = {ct_matmul(g, txt, ct_reshape(g, img, 3, c3), false, false),
                          ct_matmul(g, txt, ct_reshape(g, cf, 3, c3), false, false)};
    ct_tensor *lsm = ct_slice(g, ct_log_softmax(g, ct_concat(g, pair, 2, 2)), 2, 0, 1);
    ct_tensor *xl = ct_scale(g, ct_sum_all(g, lsm), -1.0f / (float)(n * K));
    /* torch.norm(u, dim=0) per image: u . normalize(u) */
    ct_tensor *un = ct_scale(g, ct_sum_all(g, ct_mul(g, u, ct_l2_normalize(g, u, 1e-12f))),
                             1.0f / (float)n);
    return ct_add(g, ct_add(g, ce, ct_scale(g, xl, s->lam)), ct_scale(g, un, s->control));
}

static ct_tensor *cpl_logits(void *st, ct_graph *g, const ct_batch *b) {
    return ct_cocoop_logits(((cpl_state *)st)->cc, g, b);
}

const ct_method ct_method_cpl = {
    .name = "cpl",
    .category = "prompt learning",
    .setup = "few-shot",
    .paper = "He et al., CPL: Counterfactual Prompt Learning for Vision and Language Models, "
             "EMNLP 2022",
    /* cocoopcf.py's constants (lam 1, control_scale 0.07, mupdate's 0.999) and
     * CoCoOp's vit_b16_c4_ep10_batch1_ctxv1 (the README's config name) */
    .defaults = "lam=1 control_scale=0.07 u_momentum=0.999 cf_mix=dims n_ctx=4 "
                "ctx_init=a_photo_of_a meta_div=16 prec=fp16 optim=sgd lr=0.002 "
                "momentum=0.9 weight_decay=5e-4 sched=cosine warmup_epochs=1 "
                "warmup_type=constant warmup_lr=1e-5 batch_size=1 epochs=10 select=last "
                "aug_views=10 views=cycle",
    .create = cpl_create,
    .destroy = cpl_destroy,
    .params = cpl_params,
    .param_names = cpl_param_names,
    .loss = cpl_loss,
    .logits = cpl_logits,
};
