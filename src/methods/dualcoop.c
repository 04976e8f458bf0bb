/* DualCoOp, dual context optimization for multi-label recognition (Sun et
 * al., "DualCoOp: Fast Adaptation to Multi-Label Recognition with Limited
 * Annotations", NeurIPS 2022). Followed: sunxm2357/DualCoOp models/dualcoop.py
 * (MLCPromptLearner, DualCoop.forward), utils/asymmetric_loss.py
 * (AsymmetricLoss), utils/trainers.py (train_coop: the loss on the (b, 2, K)
 * logits, softmax(...)[:, 1] as the prediction), utils/build_cfg.py and
 * opts.py (defaults), train.py (SGD with Dassl's momentum and weight decay,
 * the cosine schedule stepped per epoch) and
 * dataloaders/pascal_voc.py / coco_detection.py (partial labels: each label
 * kept with probability p, else unknown = -1, ct_dataset_partial_labels).
 *
 * Each class k has a positive prompt "X ... X {name}." and a negative one
 * with their own learned contexts (generic by default, class-specific with
 * csc=1), encoded by the frozen text tower as CoOp's prompts are (the shared
 * prompt learner of method_prompt.c). For an image with spatial features
 * f_m (the patch tokens after ln_post and the projection, L2-normalised;
 * DualCoOp's RN101 reads the attention pool's projected positions instead),
 * and normalised prompt features t+_k, t-_k:
 *     s±_km = 20 cos(f_m, t±_k),   w_km = softmax_m(s+_km),
 *     logit±_k = 5 sum_m w_km s±_km
 * (class-specific region aggregation: both prompts are pooled with the
 * positive prompt's attention over the regions). The pair (logit-, logit+)
 * is a two-way softmax: p(k present) = sigma(logit+ - logit-); the class
 * scores this method reports are that difference (sigmoid -> probability).
 * The loss is the asymmetric loss over the known labels, summed (not
 * averaged) as the official AsymmetricLoss is, times loss_w
 * (ct_asymmetric_loss: gamma_neg 2, gamma_pos 1, clip 0.05, eps 1e-6).
 * Single-label datasets are multi-label ones with one positive per image.
 *
 * Towers: on a ModifiedResNet the regions are the official RN path's
 * c_proj(v_proj(x + pos)) of every position (CT_DENSE_POOL_VALUE; the
 * official includes the mean token: cls_token=1); ViT towers, which the
 * official does not support, use the patch tokens after ln_post and the
 * projection. Departures: the official selects the
 * epoch with the best mAP on its "val" split, which is the test split: here
 * select=last by default and best_val selects on the real val split only.
 * Learned tensor names: "prompt_learner.ctx_pos" / "prompt_learner.ctx_neg",
 * the keys of the DualCoop model state dict train.py saves. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"
#include "methods/method_prompt.h"

typedef struct {
    ct_prompt *pos, *neg; /* CoOp's layout and text encoder, one per prompt kind */
    int K, E;
    float gamma_neg, gamma_pos, clip, eps, loss_w, agg_scale, out_scale;
    bool cls_token; /* the class token among the regions */
} dualcoop_state;

static void dualcoop_destroy(void *st) {
    dualcoop_state *s = st;
    if (!s) return;
    ct_prompt_destroy(s->pos);
    ct_prompt_destroy(s->neg);
    free(s);
}

/* One prompt learner from DualCoOp's keys for one kind (pos / neg). */
static ct_status make_prompt(const ct_task *task, int n_ctx, const char *init, int csc,
                             const char *prec, const char *kind, ct_prompt **out) {
    ct_kv kv = {0};
    char num[16];
    snprintf(num, sizeof num, "%d", n_ctx);
    ct_status st = ct_kv_set(&kv, "n_ctx", num);
    if (st == CT_OK) st = ct_kv_set(&kv, "ctx_init", init);
    if (st == CT_OK) st = ct_kv_set(&kv, "csc", csc ? "1" : "0");
    if (st == CT_OK) st = ct_kv_set(&kv, "class_token_position", "end");
    if (st == CT_OK) st = ct_kv_set(&kv, "prec", prec);
    void *p = NULL;
    if (st == CT_OK) st = ct_prompt_create(task, &kv, 0, &p);
    ct_kv_free(&kv);
    *out = p;
    if (st == CT_ERR_ARG) { /* name this method's keys: coop's say n_ctx / ctx_init */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", ct_last_error());
        return ct_set_error(st, "dualcoop: n_ctx_%s=%d %s_init=%s: %s", kind, n_ctx, kind, init,
                            msg);
    }
    if (st != CT_OK || *init) return st;
    /* MLCPromptLearner: nn.init.normal_(ctx_vectors_pos / _neg, std=0.02),
     * two independent draws */
    ct_tensor *c = ct_prompt_ctx(*out);
    char tag[32];
    snprintf(tag, sizeof tag, "dualcoop.ctx_%s", kind);
    ct_rng r;
    ct_rng_init(&r, ct_hash_str(ct_hash_u64(CT_HASH_INIT, task->seed), tag));
    ct_rng_fill_normal(&r, c->data, (size_t)c->numel, 0.0f, 0.02f);
    return CT_OK;
}

static ct_status dualcoop_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    dualcoop_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "dualcoop: out of memory");
    int npos, nneg, csc, cls;
    double gn, gp, clip, eps, lw, agg, outs;
    const char *ipos, *ineg, *prec;
    ct_status st = CT_OK;
#define TRY(x) \
    if (st == CT_OK) st = (x)
    TRY(ct_kv_int(hp, "n_ctx_pos", 16, &npos));
    TRY(ct_kv_int(hp, "n_ctx_neg", 16, &nneg));
    TRY(ct_kv_str(hp, "pos_init", "", &ipos));
    TRY(ct_kv_str(hp, "neg_init", "", &ineg));
    TRY(ct_kv_int(hp, "csc", 0, &csc));
    TRY(ct_kv_str(hp, "prec", "fp16", &prec));
    TRY(ct_kv_double(hp, "gamma_neg", 2, &gn));
    TRY(ct_kv_double(hp, "gamma_pos", 1, &gp));
    TRY(ct_kv_double(hp, "asl_clip", 0.05, &clip));
    TRY(ct_kv_double(hp, "asl_eps", 1e-6, &eps));
    TRY(ct_kv_double(hp, "loss_w", 1, &lw));
    TRY(ct_kv_double(hp, "agg_scale", 20, &agg));
    TRY(ct_kv_double(hp, "out_scale", 5, &outs));
    TRY(ct_kv_int(hp, "cls_token", 0, &cls));
#undef TRY
    if (st == CT_OK && (!(gn >= 0) || !(gp >= 0) || !(clip >= 0) || clip >= 1 || !(eps > 0) ||
                        eps >= 1 || isinf(gn) || isinf(gp)))
        st = ct_set_error(CT_ERR_ARG, "dualcoop: gamma_neg=%g gamma_pos=%g asl_clip=%g "
                          "asl_eps=%g (gammas finite >= 0, clip in [0, 1), eps in (0, 1))",
                          gn, gp, clip, eps);
    if (st == CT_OK && (!(lw > 0) || isinf(lw) || !(agg > 0) || isinf(agg) || !(outs > 0) ||
                        isinf(outs)))
        st = ct_set_error(CT_ERR_ARG, "dualcoop: loss_w=%g agg_scale=%g out_scale=%g (finite, "
                          "> 0)", lw, agg, outs);
    if (st == CT_OK && cls != 0 && cls != 1)
        st = ct_set_error(CT_ERR_ARG, "dualcoop: cls_token=%d (0 or 1)", cls);
    if (st == CT_OK && csc != 0 && csc != 1)
        st = ct_set_error(CT_ERR_ARG, "dualcoop: csc=%d (0 or 1)", csc);
    if (st == CT_OK && (*ipos != 0) != (*ineg != 0))
        st = ct_set_error(CT_ERR_ARG, "dualcoop: pos_init and neg_init go together (the "
                          "official initialises from words only when both are given)");
    if (st == CT_OK && csc && *ipos)
        st = ct_set_error(CT_ERR_ARG, "dualcoop: csc=1 with word initialisation is not "
                          "supported (the shared prompt learner keeps a word-initialised "
                          "context generic)");
    if (st == CT_OK) st = make_prompt(task, npos, ipos, csc, prec, "pos", &s->pos);
    if (st == CT_OK) st = make_prompt(task, nneg, ineg, csc, prec, "neg", &s->neg);
    if (st != CT_OK) {
        dualcoop_destroy(s);
        return st;
    }
    ct_prompt_ctx(s->pos)->name = "prompt_learner.ctx_pos";
    ct_prompt_ctx(s->neg)->name = "prompt_learner.ctx_neg";
    s->K = task->n_classes, s->E = ct_clip_get_config(task->clip)->embed_dim;
    s->gamma_neg = (float)gn, s->gamma_pos = (float)gp, s->clip = (float)clip;
    s->eps = (float)eps, s->loss_w = (float)lw, s->agg_scale = (float)agg;
    s->out_scale = (float)outs, s->cls_token = cls;
    *out = s;
    return CT_OK;
}

static int dualcoop_params(void *st, ct_tensor **out, int cap) {
    dualcoop_state *s = st;
    if (cap < 2) return 0;
    out[0] = ct_prompt_ctx(s->pos);
    out[1] = ct_prompt_ctx(s->neg);
    return 2;
}

static int dualcoop_param_names(void *st, const char **out, int cap) {
    (void)st;
    if (cap < 2) return 0;
    out[0] = "prompt_learner.ctx_pos";
    out[1] = "prompt_learner.ctx_neg";
    return 2;
}

/* logit+ - logit- (n, K) of batch b. */
static ct_tensor *scores(dualcoop_state *s, ct_graph *g, const ct_batch *b) {
    if (!b->dense || b->n_tokens < 2) {
        ct_set_error(CT_ERR_ARG, "dualcoop: the batch carries no dense (per-token) features "
                     "of at least 2 tokens (features computed with dense_features)");
        return NULL;
    }
    const int64_t n = b->n, T = b->n_tokens, K = s->K, E = s->E;
    const int64_t t0 = s->cls_token ? 0 : 1, M = T - t0;
    /* DualCoop.forward: torch.cat([prompts_neg, prompts_pos]) -> rows 0..K-1
     * negative, K..2K-1 positive */
    ct_tensor *tx[2] = {ct_prompt_text_features(s->neg, g), ct_prompt_text_features(s->pos, g)};
    if (!tx[0] || !tx[1]) return NULL;
    ct_tensor *txt = ct_concat(g, tx, 2, 0); /* (2K, E) */
    int64_t dshape[3] = {n, T, E};
    ct_tensor *loc = ct_l2_normalize(
        g, ct_slice(g, ct_graph_wrap(g, (ct_real *)b->dense, 3, dshape), 1, t0, M), 1e-12f);
    /* 20 * conv1d(image_features_norm, text_features): (n, 2K, M) */
    ct_tensor *sim = ct_scale(g, ct_transpose(g, ct_matmul(g, loc, txt, false, true), 1, 2),
                              s->agg_scale);
    ct_tensor *w = ct_softmax(g, ct_slice(g, sim, 1, K, K)); /* over regions */
    ct_tensor *ww[2] = {w, w};
    ct_tensor *out = ct_scale(g, ct_sum(g, ct_mul(g, sim, ct_concat(g, ww, 2, 1)), 2),
                              s->out_scale); /* (n, 2K) */
    return ct_sub(g, ct_slice(g, out, 1, K, K), ct_slice(g, out, 1, 0, K));
}

static ct_tensor *dualcoop_loss(void *st, ct_graph *g, const ct_batch *b) {
    dualcoop_state *s = st;
    const int8_t *y = b->targets;
    if (!y) { /* single-label: one positive per image */
        int8_t *oh = ct_graph_alloc(g, (size_t)(b->n ? b->n : 1) * (size_t)s->K);
        if (!oh) return NULL;
        memset(oh, 0, (size_t)b->n * (size_t)s->K);
        for (int64_t i = 0; i < b->n; i++) oh[i * s->K + b->labels[i]] = 1;
        y = oh;
    }
    ct_tensor *d = scores(s, g, b);
    if (!d) return NULL;
    ct_tensor *l = ct_asymmetric_loss(g, d, y, s->gamma_neg, s->gamma_pos, s->clip, s->eps);
    return s->loss_w == 1 ? l : ct_scale(g, l, s->loss_w);
}

static ct_tensor *dualcoop_logits(void *st, ct_graph *g, const ct_batch *b) {
    return scores(st, g, b);
}

const ct_method ct_method_dualcoop = {
    .name = "dualcoop",
    .category = "prompt learning",
    .setup = "multi-label (partial labels)",
    .paper = "Sun et al., DualCoOp: Fast Adaptation to Multi-Label Recognition with Limited "
             "Annotations, NeurIPS 2022",
    /* utils/build_cfg.py and opts.py (N_CTX_POS/NEG 16, CSC False, gamma_neg 2,
     * gamma_pos 1, loss_w 1), configs/models/rn101_ep50.yaml (SGD lr 0.002, 50 epochs,
     * batch 32, cosine, 1 constant warmup epoch at 1e-5), Dassl's momentum 0.9 and
     * weight decay 5e-4; AsymmetricLoss's clip 0.05 and eps 1e-6. */
    .defaults = "n_ctx_pos=16 n_ctx_neg=16 pos_init= neg_init= csc=0 prec=fp16 gamma_neg=2 "
                "gamma_pos=1 asl_clip=0.05 asl_eps=1e-6 loss_w=1 agg_scale=20 out_scale=5 "
                "cls_token=0 optim=sgd lr=0.002 momentum=0.9 weight_decay=5e-4 sched=cosine "
                "warmup_epochs=1 warmup_type=constant warmup_lr=1e-5 batch_size=32 epochs=50 "
                "select=last",
    .create = dualcoop_create,
    .destroy = dualcoop_destroy,
    .params = dualcoop_params,
    .loss = dualcoop_loss,
    .logits = dualcoop_logits,
    .dense_features = true,
    /* ViT: the patch tokens after ln_post and the projection; ResNet: the
     * official RN path's c_proj(v_proj(x + pos)) of every position */
    .dense_kind = CT_DENSE_POOL_VALUE,
    .param_names = dualcoop_param_names,
    .multi_label = true,
};
