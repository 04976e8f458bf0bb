/* UPL, unsupervised prompt learning (Huang, Chu, Wei, "Unsupervised Prompt
 * Learning for Vision-Language Models", arXiv 2204.03649, 2022). Followed:
 * tonyhuang2022/UPL at 8a8bf9c (235e9de for the configs):
 * trainers/upltrainer.py (PromptLearner, CustomCLIP.zero_shot_forward,
 * UPLTrainer.forward_backward / load_from_exist_file / test), trainers/
 * utils.py (select_top_k_similarity_per_class), datasets/data_manager.py
 * (update_ssdateloader) and datasetbase.py (read_sstrain_data), upl_train.py
 * (extend_cfg), upl_test.py (the ensemble), configs/upl_default_config/
 * upl_default.py, configs/trainers/UPLTrainer/rn50_ep50.yaml and
 * scripts/upl_train.sh, upl_test_existing_logits.sh.
 *
 * No label is used. fit() pseudo-labels the unlabelled training split with
 * zero-shot CLIP and keeps the most confident images of each class; CoOp's
 * prompt learner (method_prompt.c, unchanged) is then trained on them by
 * the generic trainer (the train_set hook), with CoOp's plain cross-entropy
 * (upltrainer.py's forward_backward: F.cross_entropy(output, label); the
 * class-weighted variant is commented out there).
 *
 * Pseudo-labels, as select_top_k_similarity_per_class with the zero-shot
 * logits of zero_shot_forward:
 *   - logits = exp(logit_scale) * normalize(img) . normalize(t_k), t_k
 *     CLIP's text features of the dataset's CUSTOM_TEMPLATES prompt (the
 *     same table as CoOp's zsclip.py: ct_template_for_dataset);
 *   - confidence = max_k softmax(logits)_k, pseudo-label = its argmax;
 *   - images sorted by decreasing confidence, and for every class that is
 *     predicted at all, the first topk of those predicted as it (fewer when
 *     fewer are; a class nobody predicts gets none); topk=-1 keeps them all
 *     (the official K = -1);
 *   - the kept images in the split's order (read_sstrain_data walks the
 *     split and keeps the paths in the pseudo-label dict).
 * Ties: numpy's argsort (quicksort) leaves the order of equal confidences
 * unspecified; here the earlier image comes first, and argmax takes the
 * first of equal probabilities.
 *
 * Ensemble (ensemble=M): the paper's "prompt representation ensemble"
 * (upl_test.py) averages the test logits of 16 prompts trained in separate
 * runs (seeds 1..16 of upl_train.sh). Here M contexts are trained in one
 * run: member 0 is initialised from the task's seed as in CoOp, member i
 * from a seed derived from it; the loss is the sum of the members' CE, so
 * each member gets exactly its own gradient and SGD (elementwise) updates
 * each as if alone; they share the data order, which the official runs do
 * not. Logits = the mean of the members' logits.
 *
 * Not done: UPL*'s pseudo-labels from the averaged probabilities of several
 * CLIP models (PSEUDO_LABEL_MODELS: one model here), and augmentation of the
 * pseudo-labelled images (the official trains with random resized crops and
 * flips; here the view-0 features of the whole split are computed once and
 * the kept ones trained on, so aug_views is refused).
 *
 * Learned tensor names: "ctx", the key of the prompt_learner state dict
 * upltrainer.py saves (PromptLearner.ctx), with ensemble=1; an ensemble of M
 * (separate runs' checkpoints in the official) names member i's context
 * "ensemble.<i>.ctx". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"
#include "methods/method_prompt.h"
#include "methods/method_templates.h"

typedef struct {
    int M, K, E, topk;
    ct_prompt **p;      /* (M) the ensemble's prompt learners              */
    float *zs;          /* (K, E) normalised zero-shot text features        */
    float scale;        /* exp(logit_scale)                                 */
    ct_features set;    /* the pseudo-labelled set: x (n, E), labels (n)    */
    char names[64][24]; /* [M] "ensemble.<i>.ctx" (M > 1; M <= 64)          */
} upl_state;

static void upl_destroy(void *st) {
    upl_state *s = st;
    if (!s) return;
    for (int i = 0; s->p && i < s->M; i++) ct_prompt_destroy(s->p[i]);
    free(s->p), free(s->zs);
    free(s->set.x), free(s->set.labels);
    free(s);
}

static ct_status upl_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    int topk, M, views;
    ct_status st = ct_kv_int(hp, "topk", 16, &topk);
    if (st == CT_OK) st = ct_kv_int(hp, "ensemble", 1, &M);
    /* read here (ct_run reads it too) only to refuse it */
    if (st == CT_OK) st = ct_kv_int(hp, "aug_views", 0, &views);
    if (st != CT_OK) return st;
    if (topk == 0 || topk < -1)
        return ct_set_error(CT_ERR_ARG, "upl: topk=%d (>= 1, or -1 for every image)", topk);
    if (M < 1 || M > 64) return ct_set_error(CT_ERR_ARG, "upl: ensemble=%d (1 .. 64)", M);
    if (views != 0)
        return ct_set_error(CT_ERR_ARG, "upl: aug_views=%d: UPL trains on the view-0 features "
                            "of its pseudo-labelled images (aug_views=0)", views);
    const ct_tensor *ls = ct_clip_find_tensor(task->clip, "logit_scale");
    if (!ls) return ct_set_error(CT_ERR_ARG, "upl: the model has no logit_scale");
    upl_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "upl: out of memory");
    s->M = M, s->K = task->n_classes, s->topk = topk;
    s->E = ct_clip_get_config(task->clip)->embed_dim;
    s->scale = expf(ls->data[0]);
    s->p = calloc((size_t)M, sizeof *s->p);
    s->zs = malloc((size_t)(s->K > 0 ? s->K : 1) * s->E * sizeof *s->zs);
    if (!s->p || !s->zs) st = ct_set_error(CT_ERR_NOMEM, "upl: out of memory");
    for (int i = 0; st == CT_OK && i < M; i++) {
        ct_task t = *task;
        if (i > 0) t.seed = ct_hash_u64(ct_hash_str(task->seed, "upl.ensemble"), (uint64_t)i);
        st = ct_prompt_create(&t, hp, 0, (void **)&s->p[i]);
    }
    char *tmpl = NULL;
    if (st == CT_OK)
        st = ct_template_for_dataset(NULL, task->dataset_name ? task->dataset_name : "", &tmpl,
                                     NULL);
    if (st == CT_OK) st = ct_prompt_zeroshot_text(task, tmpl, s->zs);
    free(tmpl);
    if (st != CT_OK) {
        upl_destroy(s);
        return st;
    }
    *out = s;
    return CT_OK;
}

typedef struct {
    double conf;
    int64_t i;
} ranked;

/* decreasing confidence, then the earlier image */
static int by_confidence(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->conf != y->conf) return x->conf > y->conf ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* Zero-shot pseudo-labels of f and the per-class top-k selection (see the
 * top of the file) into s->set. */
static ct_status upl_fit(void *st, const ct_task *task) {
    upl_state *s = st;
    const ct_features *f = task->unlabelled_feats;
    if (!f)
        return ct_set_error(CT_ERR_ARG, "upl: the task has no unlabelled training features "
                            "(ct_run gives them to a method with wants_unlabelled)");
    if (f->dim != s->E)
        return ct_set_error(CT_ERR_ARG, "upl: unlabelled features of dimension %d, the model's "
                            "is %d", f->dim, s->E);
    int K = s->K, E = s->E;
    int64_t n = f->n;
    ranked *r = malloc((size_t)(n ? n : 1) * sizeof *r);
    int *pred = malloc((size_t)(n ? n : 1) * sizeof *pred);
    int64_t *taken = calloc((size_t)(K > 0 ? K : 1), sizeof *taken);
    bool *keep = calloc((size_t)(n ? n : 1), sizeof *keep);
    double *logit = malloc((size_t)(K > 0 ? K : 1) * sizeof *logit);
    ct_status ret = CT_OK;
    if (!r || !pred || !taken || !keep || !logit) {
        ret = ct_set_error(CT_ERR_NOMEM, "upl: out of memory");
        goto out;
    }
    for (int64_t i = 0; i < n; i++) {
        const float *x = f->x + i * E;
        double nx = 0;
        for (int e = 0; e < E; e++) nx += (double)x[e] * x[e];
        nx = sqrt(nx);
        nx = nx > 1e-12 ? nx : 1e-12;
        int best = 0;
        for (int k = 0; k < K; k++) {
            double d = 0;
            for (int e = 0; e < E; e++) d += (double)x[e] * s->zs[(size_t)k * E + e];
            logit[k] = s->scale * d / nx;
            if (logit[k] > logit[best]) best = k;
        }
        /* max softmax probability = 1 / sum_k exp(l_k - l_max) */
        double z = 0;
        for (int k = 0; k < K; k++) z += exp(logit[k] - logit[best]);
        r[i] = (ranked){1.0 / z, i};
        pred[i] = best;
    }
    qsort(r, (size_t)n, sizeof *r, by_confidence);
    int64_t m = 0;
    for (int64_t j = 0; j < n; j++) {
        int c = pred[r[j].i];
        if (s->topk < 0 || taken[c] < s->topk) taken[c]++, keep[r[j].i] = true, m++;
    }
    free(s->set.x), free(s->set.labels);
    s->set = (ct_features){.n = m, .dim = E};
    s->set.x = malloc((size_t)(m ? m : 1) * E * sizeof *s->set.x);
    s->set.labels = malloc((size_t)(m ? m : 1) * sizeof *s->set.labels);
    if (!s->set.x || !s->set.labels) {
        ret = ct_set_error(CT_ERR_NOMEM, "upl: out of memory");
        goto out;
    }
    for (int64_t i = 0, j = 0; i < n; i++) {
        if (!keep[i]) continue;
        memcpy(s->set.x + j * E, f->x + i * E, (size_t)E * sizeof *s->set.x);
        s->set.labels[j++] = pred[i];
    }
out:
    free(r), free(pred), free(taken), free(keep), free(logit);
    return ret;
}

static const ct_features *upl_train_set(void *st) { return &((upl_state *)st)->set; }

static int upl_params(void *st, ct_tensor **out, int cap) {
    upl_state *s = st;
    int n = 0;
    for (int i = 0; i < s->M && n < cap; i++) out[n++] = ct_prompt_ctx(s->p[i]);
    return n;
}

static int upl_param_names(void *st, const char **out, int cap) {
    upl_state *s = st;
    if (s->M == 1) return ct_prompt_param_names(s->p[0], out, cap);
    int n = 0;
    for (int i = 0; i < s->M && n < cap; i++) {
        snprintf(s->names[i], sizeof s->names[i], "ensemble.%d.ctx", i);
        out[n++] = s->names[i];
    }
    return n;
}

/* the sum of the members' CE: each member's gradient is its own */
static ct_tensor *upl_loss(void *st, ct_graph *g, const ct_batch *b) {
    upl_state *s = st;
    ct_tensor *sum = ct_prompt_loss(s->p[0], g, b);
    for (int i = 1; i < s->M; i++) sum = ct_add(g, sum, ct_prompt_loss(s->p[i], g, b));
    return sum;
}

/* the mean of the members' logits (upl_test.py) */
static ct_tensor *upl_logits(void *st, ct_graph *g, const ct_batch *b) {
    upl_state *s = st;
    ct_tensor *sum = ct_prompt_logits(s->p[0], g, b);
    if (s->M == 1) return sum;
    for (int i = 1; i < s->M; i++) sum = ct_add(g, sum, ct_prompt_logits(s->p[i], g, b));
    return ct_scale(g, sum, 1.0f / (float)s->M);
}

const ct_method ct_method_upl = {
    .name = "upl",
    .category = "prompt learning",
    .setup = "unsupervised",
    .paper = "Huang, Chu, Wei, Unsupervised Prompt Learning for Vision-Language Models (UPL), "
             "arXiv 2022",
    /* upl_train.py extend_cfg (N_CTX 16, CSC False, CTX_INIT "", end), rn50_ep50.yaml (SGD lr
     * 0.002, 50 epochs, cosine, 1 constant warmup epoch at 1e-5, batch 32, last epoch) with
     * Dassl's SGD momentum 0.9 and weight decay 5e-4 (upl_default.py); topk = DATASET.NUM_SHOTS
     * as upl_train.sh runs it (16); ensemble=16 is the paper's 16-prompt ensemble */
    .defaults = "topk=16 ensemble=1 n_ctx=16 ctx_init= csc=0 class_token_position=end prec=fp16 "
                "optim=sgd lr=0.002 momentum=0.9 weight_decay=5e-4 sched=cosine warmup_epochs=1 "
                "warmup_type=constant warmup_lr=1e-5 batch_size=32 epochs=50 select=last",
    .create = upl_create,
    .destroy = upl_destroy,
    .params = upl_params,
    .param_names = upl_param_names,
    .loss = upl_loss,
    .logits = upl_logits,
    .fit = upl_fit,
    .wants_unlabelled = true,
    .train_set = upl_train_set,
};
