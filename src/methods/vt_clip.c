/* VT-CLIP, visual-guided texts (Qiu, Zhang et al., "VT-CLIP: Enhancing
 * Vision-Language Models with Visual-guided Texts", arXiv 2112.02399). No
 * official code was released (the paper's "code will be released soon"; no
 * repository found); followed: the paper's method section as the issue and
 * docs/methods/vt-clip.md state it.
 *
 * The class text features query the image's local features: per image i,
 *
 *   t_k            zero-shot classifier rows (unit), (K, E)
 *   V_i            the image's patch features (M, E): the dense tokens
 *                  1 .. T-1 (ViT: ln_post + proj of every patch token; a
 *                  ResNet: the attention pool's value path c_proj(v_proj(x))
 *                  at every position, as DualCoOp reads them)
 *   A_i            MultiHeadAttention(q = t, k = v = V_i), torch's
 *                  nn.MultiheadAttention: q = t Wq^T + bq, k = V Wk^T + bk,
 *                  v = V Wv^T + bv, softmax(q k^T / sqrt(E/h)) v per head,
 *                  out = . Wo^T + bo                               (K, E)
 *   t'_ik          t_k + ratio A_ik                  the visual-guided texts
 *   logits[i, k]   exp(logit_scale) normalize(f_i) . normalize(t'_ik)
 *
 * f_i the image's pooled embedding; the loss is the cross-entropy. Learned:
 * the attention's projections only (CLIP frozen). Initialised as torch's
 * nn.MultiheadAttention: in_proj_weight (3E, E) xavier-uniform, in_proj_bias
 * 0, out_proj.weight U(-1/sqrt(E), 1/sqrt(E)) (nn.Linear's default), its
 * bias 0. Learned tensor names: that module's state-dict keys under "attn.".
 *
 * Where this departs from the paper (docs/methods/vt-clip.md): the keys and
 * values are the feature cache's embedding-space patch features (the paper's
 * RN50 uses the feature map before attention pooling, 2048-d); the schedule
 * is Tip-Adapter-F's (the same authors' code of that time) since no VT-CLIP
 * config exists; heads and ratio are the defaults below. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"
#include "methods/method_common.h"

typedef struct {
    ct_tensor *in_w, *in_b;   /* (3E, E), (3E): q, k, v projections stacked */
    ct_tensor *out_w, *out_b; /* (E, E), (E)                                 */
    ct_tensor *T;             /* (K, E) zero-shot classifier, unit rows      */
    float scale, ratio;
    int K, E, heads;
} vt_state;

static void vt_destroy(void *st) {
    vt_state *s = st;
    if (!s) return;
    ct_tensor_free(s->in_w), ct_tensor_free(s->in_b);
    ct_tensor_free(s->out_w), ct_tensor_free(s->out_b), ct_tensor_free(s->T);
    free(s);
}

static ct_status vt_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    const char *tmpl, *zs;
    double ratio;
    int heads;
    ct_status st = ct_kv_str(hp, "templates", "dataset", &tmpl);
    if (st == CT_OK) st = ct_kv_str(hp, "zs_weights", "", &zs);
    if (st == CT_OK) st = ct_kv_double(hp, "ratio", 0.5, &ratio);
    if (st == CT_OK) st = ct_kv_int(hp, "heads", 8, &heads);
    if (st != CT_OK) return st;
    if (task->n_classes < 1) return ct_set_error(CT_ERR_ARG, "vt-clip: the task has no classes");
    int E = ct_clip_get_config(task->clip)->embed_dim, K = task->n_classes;
    if (!(ratio >= 0) || isinf(ratio))
        return ct_set_error(CT_ERR_ARG, "vt-clip: ratio=%g (a finite number >= 0)", ratio);
    if (heads < 1 || heads > E || E % heads)
        return ct_set_error(CT_ERR_ARG, "vt-clip: heads=%d must divide the embedding width %d",
                            heads, E);
    ct_tensor *ls = ct_clip_find_tensor(task->clip, "logit_scale");
    if (!ls) return ct_set_error(CT_ERR_ARG, "vt-clip: the model has no logit_scale");
    vt_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "vt-clip: out of memory");
    s->K = K, s->E = E, s->heads = heads, s->ratio = (float)ratio;
    s->scale = expf(ls->data[0]);
    int64_t e3 = 3 * (int64_t)E, e1 = E;
    s->in_w = ct_tensor_new2(e3, E, true);
    s->in_b = ct_tensor_new(1, &e3, true);
    s->out_w = ct_tensor_new2(E, E, true);
    s->out_b = ct_tensor_new(1, &e1, true);
    s->T = ct_tensor_new2(K, E, false);
    if (!s->in_w || !s->in_b || !s->out_w || !s->out_b || !s->T) {
        vt_destroy(s);
        return ct_set_error(CT_ERR_NOMEM, "vt-clip: out of memory");
    }
    s->in_w->name = "vt-clip.attn.in_proj_weight", s->in_b->name = "vt-clip.attn.in_proj_bias";
    s->out_w->name = "vt-clip.attn.out_proj.weight";
    s->out_b->name = "vt-clip.attn.out_proj.bias";
    if ((st = ct_zeroshot_classifier(task, zs, tmpl, true, s->T->data)) != CT_OK) {
        vt_destroy(s);
        return st;
    }
    /* nn.MultiheadAttention._reset_parameters: xavier_uniform_(in_proj_weight)
     * over its (3E, E) shape, zero biases; out_proj keeps nn.Linear's init */
    ct_rng r;
    ct_rng_init(&r, ct_hash_str(ct_hash_u64(CT_HASH_INIT, task->seed), "vt-clip.attn"));
    float xa = sqrtf(6.0f / (float)(E + 3 * E)), oa = 1.0f / sqrtf((float)E);
    ct_rng_fill_uniform(&r, s->in_w->data, (size_t)s->in_w->numel, -xa, xa);
    ct_rng_fill_uniform(&r, s->out_w->data, (size_t)s->out_w->numel, -oa, oa);
    memset(s->in_b->data, 0, (size_t)s->in_b->numel * sizeof(float));
    memset(s->out_b->data, 0, (size_t)s->out_b->numel * sizeof(float));
    *out = s;
    return CT_OK;
}

static int vt_params(void *st, ct_tensor **out, int cap) {
    vt_state *s = st;
    ct_tensor *p[4] = {s->in_w, s->in_b, s->out_w, s->out_b};
    int n = cap < 4 ? cap : 4;
    for (int i = 0; i < n; i++) out[i] = p[i];
    return n;
}

/* nn.MultiheadAttention's state-dict keys, the module named "attn" */
static int vt_param_names(void *st, const char **out, int cap) {
    (void)st;
    static const char *const names[4] = {"attn.in_proj_weight", "attn.in_proj_bias",
                                         "attn.out_proj.weight", "attn.out_proj.bias"};
    int n = cap < 4 ? cap : 4;
    for (int i = 0; i < n; i++) out[i] = names[i];
    return n;
}

static ct_tensor *vt_logits(void *st, ct_graph *g, const ct_batch *b) {
    vt_state *s = st;
    if (!b->dense || b->n_tokens < 2) {
        ct_set_error(CT_ERR_ARG, "vt-clip: the batch carries no dense (per-token) features "
                     "of at least 2 tokens (features computed with dense_features)");
        return NULL;
    }
    const int64_t n = b->n, T = b->n_tokens, M = T - 1, K = s->K, E = s->E;
    int64_t dshape[3] = {n, T, E}, xshape[2] = {n, E}, qshape[2] = {n, K};
    int64_t i3[3] = {n, 1, E}, o2[2] = {n, K};
    ct_tensor *V = ct_slice(g, ct_graph_wrap(g, (ct_real *)b->dense, 3, dshape), 1, 1, M);
    ct_tensor *q = ct_linear(g, s->T, ct_slice(g, s->in_w, 0, 0, E),
                             ct_slice(g, s->in_b, 0, 0, E)); /* (K, E) */
    ct_tensor *k = ct_linear(g, V, ct_slice(g, s->in_w, 0, E, E), ct_slice(g, s->in_b, 0, E, E));
    ct_tensor *v = ct_linear(g, V, ct_slice(g, s->in_w, 0, 2 * E, E),
                             ct_slice(g, s->in_b, 0, 2 * E, E)); /* (n, M, E) */
    /* the K queries are the same for every image of the batch */
    int64_t *rows = ct_graph_alloc(g, (size_t)(n * K) * sizeof *rows);
    if (!rows) return NULL;
    for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < K; c++) rows[i * K + c] = c;
    ct_tensor *qb = ct_gather_rows(g, q, rows, 2, qshape); /* (n, K, E) */
    ct_tensor *a = ct_attention(g, qb, k, v, NULL, NULL, s->heads, false);
    ct_tensor *o = ct_linear(g, a, s->out_w, s->out_b);
    ct_tensor *txt = ct_l2_normalize(g, ct_add(g, ct_scale(g, o, s->ratio), s->T), 1e-12f);
    ct_tensor *img = ct_l2_normalize(g, ct_graph_wrap(g, (ct_real *)b->x, 2, xshape), 1e-12f);
    ct_tensor *lg = ct_matmul(g, ct_reshape(g, img, 3, i3), txt, false, true); /* (n, 1, K) */
    return ct_scale(g, ct_reshape(g, lg, 2, o2), s->scale);
}

static ct_tensor *vt_loss(void *st, ct_graph *g, const ct_batch *b) {
    int64_t *y = ct_graph_alloc(g, (size_t)(b->n ? b->n : 1) * sizeof *y);
    if (!y) return NULL;
    for (int64_t i = 0; i < b->n; i++) y[i] = b->labels[i];
    return ct_cross_entropy(g, vt_logits(st, g, b), y, 0.0f);
}

const ct_method ct_method_vt_clip = {
    .name = "vt-clip",
    .category = "feature adapter",
    .setup = "few-shot",
    .paper = "Qiu, Zhang et al., VT-CLIP: Enhancing Vision-Language Models with Visual-guided "
             "Texts, arXiv 2112.02399",
    /* no official config: Tip-Adapter-F's AdamW (eps 1e-4, torch's weight
     * decay 0.01), lr 0.001, cosine, 20 epochs (docs/methods/vt-clip.md) */
    .defaults = "templates=dataset ratio=0.5 heads=8 optim=adamw lr=0.001 eps=1e-4 "
                "weight_decay=0.01 sched=cosine warmup_epochs=0 epochs=20 batch_size=32 "
                "select=last",
    .create = vt_create,
    .destroy = vt_destroy,
    .params = vt_params,
    .param_names = vt_param_names,
    .loss = vt_loss,
    .logits = vt_logits,
    .dense_features = true,
    .dense_kind = CT_DENSE_POOL_VALUE,
};
