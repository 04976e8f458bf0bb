/* DPT, dual-modality prompt tuning with class-aware visual prompts (Xing et
 * al., "Dual Modality Prompt Tuning for Vision-Language Pre-Trained Model",
 * IEEE TMM 2023). Followed: fanrena/DPT at its default branch,
 * trainers/DPT.py (PromptLearner, VPTDeepPromptLearner, Attention, CAVPT,
 * Transformer_VPTD, CustomCLIP_Selected_CoVPTDeep, DPT.build_model /
 * forward_backward), train.py's defaults, train_single.sh (the paper's
 * settings) and configs/trainers/VPT/vit_b32_deep.yaml.
 *
 * Three learned parts on a frozen CLIP:
 *   text (CoOp): n_ctx context vectors before each class name,
 *     "X .. X {name}." (class_token_position end; coop.c's keys);
 *   VPT-deep: n_ctx_vision tokens per block for the first L - cavpt_layers
 *     blocks, appended after the class and patch tokens once ln_pre has run
 *     and dropped after their block (ct_deep_prompts.after_ln_pre; the last
 *     ones are stripped before the first CAVPT block);
 *   CAVPT (class-aware visual prompts) before each of the last cavpt_layers
 *     blocks: the top_k classes of the image under frozen zero-shot CLIP
 *     (template "a photo of a {}." by default; the official picks one per
 *     dataset, CUSTOM_TEMPLATES), their learned (unnormalised) text features
 *     t (top_k, E) as queries through q0 = meta(t) (Linear E -> W, bias),
 *     keys/values the block's input tokens x, detached, followed by
 *     cavpt_tokens learned tokens c_i:
 *       A   = softmax(Wq q0 (Wk [x; c_i])ᵀ / sqrt(attn_dim))   (no biases)
 *       o   = Wv (A [x; c_i])
 *       P_i = LN2(o + q0)        (the top_k tokens appended for the block)
 *       z_i = Wc LN1(o)          (auxiliary class logits, Linear W -> C)
 *     the previous block's class-aware tokens are stripped first.
 * Logits: exp(logit_scale) cos(prompted image, learned text).
 * Loss (forward_backward): for epochs < guide_epochs (the code's PRETRAIN.C,
 *   "general knowledge guidance"),
 *     CE(s cos(zero-shot image, learned text)) + CE(s cos(prompted image,
 *     frozen text)) + 0.1 CE(logits),
 *   later CE(logits); plus alpha x the mean cross-entropy of z over the
 *   (image, layer, k) rows whose class k is the image's label.
 * Prediction runs the frozen tower too (to pick each image's classes): on
 * evaluation-transform images the trainer hands its embeddings over from
 * the feature cache (ct_batch.frozen), computed once per image.
 *
 * Initialisation as the code: contexts and tokens N(0, 0.02), Linear layers
 * nn.Linear's default, LayerNorms 1 / 0 (eps 1e-5).
 * Defaults: train_single.sh (N_CTX 16, VPT.N_CTX 10, BOTTOMLIMIT 12, i.e.
 * CAVPT before the last block only, CPN 10, 60 epochs, PRETRAIN.C 30,
 * ALPHA 0.3, lr 0.01) and vit_b32_deep.yaml (SGD, batch 32, cosine, 10
 * constant warmup epochs at 1e-5); build_model gives the CoOp context its
 * own optimiser at lr 0.002 with one warmup epoch: here the parameter group
 * coop (coop.lr, coop.warmup_epochs). momentum 0.9 and weight decay 5e-4
 * are Dassl's defaults.
 *
 * Departures, said here: the code runs CLIP and CAVPT in fp16, here fp32;
 * when no row of a batch has its label among its top_k classes the code's
 * auxiliary term is the mean over no rows (NaN), here it is 0; the code's
 * 10 learned key tokens and 32-wide attention are options (cavpt_tokens,
 * attn_dim).
 *
 * Learned tensor names: DPT.build_model registers three modules, each saved
 * under its registered name, which is also its path in
 * CustomCLIP_Selected_CoVPTDeep; the keys here are that name + "." + the key
 * in its state dict:
 *   "prompt_learner.ctx"                           CoOp's context;
 *   "image_encoder.transformer.ctx_learner.ctx"    VPTDeepPromptLearner.ctx
 *                                                  (L - cavpt_layers, n, W) there,
 *                                                  its rows flattened here;
 *   "image_encoder.transformer.extractor.ctx"      CAVPT.ctx, the key tokens;
 *   per CAVPT layer i, "image_encoder.transformer.extractor." +
 *     "meta_nets.{i}.weight" / ".bias", "attns.{i}.qmlp.weight",
 *     "attns.{i}.kmlp.weight", "attns.{i}.vmlp.weight", "lns.{i}.weight" /
 *     ".bias" (LN1, before the classifier), "classfiers.{i}.weight" (sic),
 *     "lns2.{i}.weight" / ".bias" (LN2, of o + q0). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "methods/method_image.h"
#include "methods/method_prompt.h"

#define DPT_MAX_LAYERS 64

typedef struct {
    ct_tensor *meta_w, *meta_b; /* (W, E), (W)  */
    ct_tensor *q_w, *k_w, *v_w; /* (a, W), (a, W), (W, W) */
    ct_tensor *ln1_w, *ln1_b, *cls_w, *ln2_w, *ln2_b;
} cavpt_layer;

typedef struct {
    const ct_clip *clip;
    int K, E, S, W, L, n_vpt, n_cav, top, nv, nk, adim, guide;
    double alpha;
    ct_prompt *text;
    float *zs_text;     /* (K, E) frozen, normalised */
    ct_tensor *vpt;     /* (n_vpt * nv, W): block l's tokens are rows l*nv .. */
    ct_tensor *keys;    /* (n_cav * nk, W) */
    cavpt_layer cav[DPT_MAX_LAYERS];
    char names[3 + 10 * DPT_MAX_LAYERS][96]; /* param_names' strings */
} dpt_state;

static void dpt_destroy(void *st) {
    dpt_state *s = st;
    if (!s) return;
    ct_prompt_destroy(s->text);
    free(s->zs_text);
    ct_tensor_free(s->vpt), ct_tensor_free(s->keys);
    for (int i = 0; i < DPT_MAX_LAYERS; i++) {
        cavpt_layer *c = &s->cav[i];
        ct_tensor *t[] = {c->meta_w, c->meta_b, c->q_w,  c->k_w,   c->v_w,
                          c->ln1_w,  c->ln1_b,  c->cls_w, c->ln2_w, c->ln2_b};
        for (size_t j = 0; j < sizeof t / sizeof *t; j++) ct_tensor_free(t[j]);
    }
    free(s);
}

static ct_tensor *leaf(int64_t rows, int64_t cols, const char *name) {
    ct_tensor *t = cols > 0 ? ct_tensor_new2(rows, cols, true) : ct_tensor_new(1, &rows, true);
    if (t) t->name = name;
    return t;
}

static ct_status layer_create(dpt_state *s, int i, uint64_t seed) {
    cavpt_layer *c = &s->cav[i];
    c->meta_w = leaf(s->W, s->E, "cavpt.meta.weight"), c->meta_b = leaf(s->W, 0, "cavpt.meta.bias");
    c->q_w = leaf(s->adim, s->W, "cavpt.attn.q.weight");
    c->k_w = leaf(s->adim, s->W, "cavpt.attn.k.weight");
    c->v_w = leaf(s->W, s->W, "cavpt.attn.v.weight");
    c->ln1_w = leaf(s->W, 0, "cavpt.ln.weight"), c->ln1_b = leaf(s->W, 0, "cavpt.ln.bias");
    c->cls_w = leaf(s->K, s->W, "cavpt.classifier.weight");
    c->ln2_w = leaf(s->W, 0, "cavpt.ln2.weight"), c->ln2_b = leaf(s->W, 0, "cavpt.ln2.bias");
    if (!c->meta_w || !c->meta_b || !c->q_w || !c->k_w || !c->v_w || !c->ln1_w || !c->ln1_b ||
        !c->cls_w || !c->ln2_w || !c->ln2_b)
        return ct_set_error(CT_ERR_NOMEM, "dpt: out of memory");
    char tag[64];
    const char *parts[] = {"meta", "q", "k", "v", "classifier"};
    ct_tensor *w[] = {c->meta_w, c->q_w, c->k_w, c->v_w, c->cls_w};
    for (int j = 0; j < 5; j++) {
        snprintf(tag, sizeof tag, "dpt.cavpt.%d.%s", i, parts[j]);
        ct_status st = ct_param_linear_init(w[j], j == 0 ? c->meta_b : NULL, seed, tag);
        if (st != CT_OK) return st;
    }
    for (int64_t j = 0; j < s->W; j++)
        c->ln1_w->data[j] = c->ln2_w->data[j] = 1, c->ln1_b->data[j] = c->ln2_b->data[j] = 0;
    return CT_OK;
}

static ct_status dpt_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    int n_cav, top, nv, nk, adim, guide;
    double alpha;
    const char *tmpl;
    ct_status st = ct_kv_int(hp, "cavpt_layers", 1, &n_cav);
    if (st == CT_OK) st = ct_kv_int(hp, "top_k", 10, &top);
    if (st == CT_OK) st = ct_kv_int(hp, "n_ctx_vision", 10, &nv);
    if (st == CT_OK) st = ct_kv_int(hp, "cavpt_tokens", 10, &nk);
    if (st == CT_OK) st = ct_kv_int(hp, "attn_dim", 32, &adim);
    if (st == CT_OK) st = ct_kv_int(hp, "guide_epochs", 30, &guide);
    if (st == CT_OK) st = ct_kv_double(hp, "alpha", 0.3, &alpha);
    if (st == CT_OK) st = ct_kv_str(hp, "template", "a photo of a {}.", &tmpl);
    if (st != CT_OK) return st;
    if (ct_clip_need_vit(task->clip, "dpt") != CT_OK) return CT_ERR_UNSUPPORTED;
    const ct_clip_config *c = ct_clip_get_config(task->clip);
    int L = c->vision_layers;
    if (n_cav < 0 || n_cav > L || n_cav > DPT_MAX_LAYERS)
        return ct_set_error(CT_ERR_ARG, "dpt: cavpt_layers=%d (0 .. the tower's %d layers)",
                            n_cav, L);
    if (top < 1 || nv < 1 || nk < 0 || adim < 1 || guide < 0 || !(alpha >= 0))
        return ct_set_error(CT_ERR_ARG, "dpt: top_k, n_ctx_vision, attn_dim must be >= 1, "
                            "cavpt_tokens, guide_epochs and alpha >= 0");
    dpt_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "dpt: out of memory");
    s->clip = task->clip, s->K = task->n_classes, s->E = c->embed_dim, s->S = c->image_size;
    s->W = c->vision_width, s->L = L, s->n_cav = n_cav, s->n_vpt = L - n_cav;
    s->top = top < s->K ? top : s->K; /* the code: min(CPN, number of classes) */
    s->nv = nv, s->nk = nk, s->adim = adim, s->guide = guide, s->alpha = alpha;
    st = ct_prompt_create(task, hp, 0, (void **)&s->text);
    s->zs_text = st == CT_OK ? malloc((size_t)s->K * s->E * sizeof *s->zs_text) : NULL;
    if (st == CT_OK && !s->zs_text) st = ct_set_error(CT_ERR_NOMEM, "dpt: out of memory");
    if (st == CT_OK) st = ct_prompt_zeroshot_text(task, tmpl, s->zs_text);
    if (st == CT_OK && s->n_vpt > 0 &&
        !(s->vpt = ct_param_normal((int64_t)s->n_vpt * nv, s->W, 0.02f, task->seed, "dpt.vpt", 0,
                                   "vpt.ctx")))
        st = CT_ERR_NOMEM;
    if (st == CT_OK && n_cav > 0 && nk > 0 &&
        !(s->keys = ct_param_normal((int64_t)n_cav * nk, s->W, 0.02f, task->seed, "dpt.cavpt", 0,
                                    "cavpt.ctx")))
        st = CT_ERR_NOMEM;
    for (int i = 0; st == CT_OK && i < n_cav; i++) st = layer_create(s, i, task->seed);
    if (st != CT_OK) {
        dpt_destroy(s);
        return st;
    }
    *out = s;
    return CT_OK;
}

/* CoOp's context, the VPT-deep tokens, the CAVPT key tokens, then each
 * CAVPT layer's maps. */
static int dpt_params(void *st, ct_tensor **out, int cap) {
    dpt_state *s = st;
    ct_tensor *p[3 + 10 * DPT_MAX_LAYERS];
    int n = 0;
    p[n++] = ct_prompt_ctx(s->text);
    if (s->vpt) p[n++] = s->vpt;
    if (s->keys) p[n++] = s->keys;
    for (int i = 0; i < s->n_cav; i++) {
        cavpt_layer *c = &s->cav[i];
        ct_tensor *t[] = {c->meta_w, c->meta_b, c->q_w,  c->k_w,   c->v_w,
                          c->ln1_w,  c->ln1_b,  c->cls_w, c->ln2_w, c->ln2_b};
        memcpy(p + n, t, sizeof t);
        n += 10;
    }
    n = n < cap ? n : cap;
    memcpy(out, p, (size_t)n * sizeof *out);
    return n;
}

/* dpt_params' tensors by their keys in DPT.py's saved modules (top comment). */
static int dpt_param_names(void *st, const char **out, int cap) {
    dpt_state *s = st;
    static const char *const X = "image_encoder.transformer.extractor";
    /* each layer's tensors, in dpt_params' order: module list, key in it */
    static const char *const mod[10] = {"meta_nets", "meta_nets", "attns",      "attns", "attns",
                                        "lns",       "lns",       "classfiers", "lns2",  "lns2"};
    static const char *const key[10] = {"weight", "bias", "qmlp.weight", "kmlp.weight",
                                        "vmlp.weight", "weight", "bias", "weight", "weight",
                                        "bias"};
    size_t sz = sizeof s->names[0];
    int n = 0;
    snprintf(s->names[n++], sz, "prompt_learner.ctx");
    if (s->vpt) snprintf(s->names[n++], sz, "image_encoder.transformer.ctx_learner.ctx");
    if (s->keys) snprintf(s->names[n++], sz, "%s.ctx", X);
    for (int i = 0; i < s->n_cav; i++)
        for (int j = 0; j < 10; j++)
            snprintf(s->names[n++], sz, "%s.%s.%d.%s", X, mod[j], i, key[j]);
    n = n < cap ? n : cap;
    for (int i = 0; i < n; i++) out[i] = s->names[i];
    return n;
}

/* One step's forward: what the hook needs and what it leaves. */
typedef struct {
    dpt_state *s;
    ct_tensor *query; /* (B, top, E) learned text features of each image's classes */
    ct_tensor **aux;  /* [n_cav] (B, top, K) */
} dpt_fwd;

/* Before CAVPT block i: strip the tokens the previous block added, then
 * append the class-aware ones computed from what is left. */
static ct_tensor *cavpt_hook(ct_graph *g, int layer, ct_tensor *x, void *ctx) {
    dpt_fwd *f = ctx;
    dpt_state *s = f->s;
    int i = layer - s->n_vpt;
    if (layer < 0 || i < 0 || !x) return x;
    int64_t B = x->shape[0], strip = i > 0 ? s->top : s->n_vpt > 0 ? s->nv : 0;
    x = ct_slice(g, x, 1, 0, x->shape[1] - strip);
    cavpt_layer *c = &s->cav[i];
    ct_tensor *kv = ct_detach(g, x);
    if (s->keys) {
        int64_t sh[3] = {B, s->nk, s->W};
        ct_tensor *parts[2] = {kv, ct_add(g, ct_graph_tensor(g, 3, sh),
                                          ct_slice(g, s->keys, 0, (int64_t)i * s->nk, s->nk))};
        kv = ct_concat(g, parts, 2, 1);
    }
    ct_tensor *q0 = ct_linear(g, f->query, c->meta_w, c->meta_b); /* (B, top, W) */
    ct_tensor *u = ct_matmul(g, ct_linear(g, q0, c->q_w, NULL), ct_linear(g, kv, c->k_w, NULL),
                             false, true);
    ct_tensor *a = ct_softmax(g, ct_scale(g, u, (float)(1.0 / sqrt((double)s->adim))));
    ct_tensor *o = ct_linear(g, ct_matmul(g, a, kv, false, false), c->v_w, NULL);
    f->aux[i] = ct_linear(g, ct_layernorm(g, o, c->ln1_w, c->ln1_b, 1e-5f), c->cls_w, NULL);
    ct_tensor *p = ct_layernorm(g, ct_add(g, o, q0), c->ln2_w, c->ln2_b, 1e-5f);
    ct_tensor *parts[2] = {x, p};
    return ct_concat(g, parts, 2, 1);
}

typedef struct {
    ct_tensor *logits, *zs_img, *img, *txt; /* txt normalised (K, E) */
    int64_t *top;                            /* (B, top) class indices */
    ct_tensor **aux;
} dpt_out;

static bool dpt_forward(dpt_state *s, ct_graph *g, const ct_batch *b, dpt_out *o) {
    int64_t B = b->n, K = s->K, T = s->top;
    ct_tensor *px = ct_batch_pixels(g, s->S, b, "dpt");
    if (!px) return false;
    /* the frozen tower picks each image's classes (no gradient, no tape) */
    bool prev = ct_graph_set_grad(g, false);
    int64_t fsh[2] = {B, s->E};
    ct_tensor *zs = b->frozen ? ct_graph_wrap(g, (float *)b->frozen, 2, fsh)
                              : ct_clip_encode_image(g, s->clip, px, NULL, false, NULL);
    int64_t tsh[2] = {K, s->E};
    ct_tensor *zt = ct_graph_wrap(g, s->zs_text, 2, tsh);
    ct_tensor *zl = zs && zt ? ct_image_text_scores(g, s->clip, zs, zt) : NULL;
    ct_graph_set_grad(g, prev);
    o->top = ct_graph_alloc(g, (size_t)(B * T) * sizeof *o->top);
    o->aux = ct_graph_alloc(g, (size_t)(s->n_cav ? s->n_cav : 1) * sizeof *o->aux);
    if (!zl || !o->top || !o->aux) return false;
    for (int64_t r = 0; r < B; r++) { /* torch.sort descending, first T */
        const float *row = zl->data + r * K;
        int64_t *t = o->top + r * T;
        for (int64_t j = 0; j < T; j++) {
            int64_t best = -1;
            for (int64_t k = 0; k < K; k++) {
                bool taken = false;
                for (int64_t q = 0; q < j && !taken; q++) taken = t[q] == k;
                if (!taken && (best < 0 || row[k] > row[best])) best = k;
            }
            t[j] = best;
        }
    }
    o->zs_img = zs;
    ct_tensor *raw = ct_prompt_text_features_raw(s->text, g); /* (K, E) */
    o->txt = ct_l2_normalize(g, raw, 1e-12f);
    int64_t qsh[2] = {B, T};
    dpt_fwd f = {s, ct_gather_rows(g, raw, o->top, 2, qsh), o->aux};
    ct_tensor **v = s->n_vpt ? ct_graph_alloc(g, (size_t)s->n_vpt * sizeof *v) : NULL;
    if (s->n_vpt && !v) return false;
    for (int l = 0; l < s->n_vpt; l++) {
        int64_t sh[2] = {s->nv, s->W};
        v[l] = ct_reshape(g, ct_slice(g, s->vpt, 0, (int64_t)l * s->nv, s->nv), 2, sh);
    }
    ct_deep_prompts vdp = {s->n_vpt, v, false, true};
    ct_clip_hooks hooks = {0};
    hooks.vision_deep = &vdp;
    if (s->n_cav) hooks.vision = cavpt_hook, hooks.ctx = &f;
    o->img = ct_clip_encode_image(g, s->clip, px, &hooks, false, NULL);
    o->logits = ct_image_text_scores(g, s->clip, o->img, o->txt);
    return o->logits != NULL;
}

static ct_tensor *dpt_logits(void *st, ct_graph *g, const ct_batch *b) {
    dpt_out o;
    return dpt_forward(st, g, b, &o) ? o.logits : NULL;
}

static ct_tensor *dpt_loss(void *st, ct_graph *g, const ct_batch *b) {
    dpt_state *s = st;
    dpt_out o;
    if (!dpt_forward(s, g, b, &o)) return NULL;
    ct_tensor *loss;
    if (b->epoch < s->guide) {
        int64_t tsh[2] = {s->K, s->E};
        ct_tensor *zt = ct_graph_wrap(g, s->zs_text, 2, tsh);
        ct_tensor *l1 = ct_batch_ce(g, ct_image_text_scores(g, s->clip, o.zs_img, o.txt), b);
        ct_tensor *l2 = ct_batch_ce(g, ct_image_text_scores(g, s->clip, o.img, zt), b);
        loss = ct_add(g, ct_add(g, l1, l2), ct_scale(g, ct_batch_ce(g, o.logits, b), 0.1f));
    } else {
        loss = ct_batch_ce(g, o.logits, b);
    }
    if (!loss || s->n_cav == 0 || s->alpha == 0) return loss;
    /* the rows (image, layer, k) whose class k is the image's label */
    int64_t B = b->n, T = s->top, n = 0;
    int64_t *rows = ct_graph_alloc(g, (size_t)(B * T * s->n_cav) * sizeof *rows);
    int64_t *lab = ct_graph_alloc(g, (size_t)(B * T * s->n_cav) * sizeof *lab);
    if (!rows || !lab) return NULL;
    for (int i = 0; i < s->n_cav; i++)
        for (int64_t r = 0; r < B; r++)
            for (int64_t j = 0; j < T; j++)
                if (o.top[r * T + j] == b->labels[r])
                    rows[n] = ((int64_t)i * B + r) * T + j, lab[n++] = b->labels[r];
    if (n == 0) return loss; /* the code: a mean over no rows */
    ct_tensor **flat = ct_graph_alloc(g, (size_t)s->n_cav * sizeof *flat);
    if (!flat) return NULL;
    int64_t fsh[2] = {B * T, s->K};
    for (int i = 0; i < s->n_cav; i++) flat[i] = ct_reshape(g, o.aux[i], 2, fsh);
    ct_tensor *all = s->n_cav > 1 ? ct_concat(g, flat, s->n_cav, 0) : flat[0];
    ct_tensor *sel = ct_gather_rows(g, all, rows, 1, &n);
    return ct_add(g, loss, ct_scale(g, ct_cross_entropy(g, sel, lab, 0), (float)s->alpha));
}

const ct_method ct_method_dpt = {
    .name = "dpt",
    .category = "multimodal prompt learning",
    .setup = "few-shot",
    .paper = "Xing et al., Dual Modality Prompt Tuning for Vision-Language Pre-Trained "
             "Model, IEEE TMM 2023",
    /* train_single.sh, vit_b32_deep.yaml, DPT.build_model, Dassl's defaults */
    .defaults = "n_ctx=16 ctx_init= csc=0 class_token_position=end shared_prefix=1 prec=fp16 "
                "n_ctx_vision=10 cavpt_layers=1 top_k=10 cavpt_tokens=10 attn_dim=32 "
                "guide_epochs=30 alpha=0.3 template=\"a photo of a {}.\" optim=sgd lr=0.01 "
                "momentum=0.9 weight_decay=5e-4 sched=cosine warmup_epochs=10 "
                "warmup_type=constant warmup_lr=1e-5 coop.lr=0.002 coop.warmup_epochs=1 "
                "epochs=60 batch_size=32 select=last train_aug=rrc_flip aug_scale_min=0.08",
    .create = dpt_create,
    .destroy = dpt_destroy,
    .params = dpt_params,
    .param_names = dpt_param_names,
    .loss = dpt_loss,
    .logits = dpt_logits,
    .pixels = true,
    .frozen_features = true,
};
