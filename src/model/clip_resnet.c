/* The ModifiedResNet image tower of OpenAI's CLIP (RN50, RN101, RN50x4/x16/
 * x64), as openai/CLIP clip/model.py builds it, composed from ops so that
 * gradients reach the pixels (visual prompting) or the tower's weights
 * (fine-tuning):
 *   stem:  3 x [3x3 conv (the first stride 2), frozen BN, ReLU], AvgPool(2)
 *   layer1..4 of Bottlenecks: relu(bn1(conv1 x)), relu(bn2(conv2 .)),
 *          AvgPool(stride) when stride > 1 (anti-aliased striding: every conv
 *          has stride 1), bn3(conv3 .), + shortcut (x, or AvgPool(stride) ->
 *          1x1 conv -> BN), ReLU
 *   AttentionPool2d: the (h w) feature vectors as tokens, their mean
 *          prepended, + positional embedding; multi-head attention with the
 *          mean token as the only query; c_proj -> (B, E)
 * Batch norm is eval-mode (running statistics, eps 1e-5) throughout: CLIP's
 * towers are frozen, and every method here runs them in eval mode.
 *
 * Dense features (ct_clip_encode_image_kind), one per token (T = h w + 1,
 * the mean token at 0, then the grid row-major):
 *   CT_DENSE_TOKENS: the attention pooling with every token as a query, as
 *     PLOT (CHENGY12/PLOT plot-coop/clip/model.py) and CALIP (ZiyuGuo99/
 *     CALIP clip/model.py) modify AttentionPool2d to return the whole
 *     sequence; token 0 is the pooled embedding itself;
 *   CT_DENSE_VALUE: MaskCLIP's ResNet path (chongzhou96/MaskCLIP mmseg/
 *     models/decode_heads/maskclip_head.py, attn_pooling off, its default):
 *     c_proj(v_proj(x)) of each feature vector, without the positional
 *     embedding, and keys k_proj(x) for key smoothing;
 *   CT_DENSE_POOL_VALUE: c_proj(v_proj(x + pos)) of every token, the
 *     positional embedding added (DualCoOp's AttentionConv, sunxm2357/
 *     DualCoOp clip/model.py, the local features of its RN101 path). */
#include <string.h>

#include "autograd/graph.h"
#include "model/clip.h"

#define RN_BN_EPS 1e-5f /* nn.BatchNorm2d's default */

static ct_tensor *bn(ct_graph *g, ct_tensor *x, const ct_rn_bn *b) {
    if (!x) return NULL;
    return ct_batchnorm_frozen(g, x, b->mean->data, b->var->data, b->w, b->b, RN_BN_EPS);
}

/* relu(bn(conv(x))) (relu skipped when !relu). Without a tape only the
 * result outlives the call (ct_graph_keep): inference holds a few feature
 * maps at a time, not every intermediate of the tower. */
static ct_tensor *conv_bn(ct_graph *g, ct_tensor *x, ct_tensor *w, const ct_rn_bn *b, int stride,
                          int pad, bool relu) {
    ct_graph_mark mk = ct_graph_get_mark(g);
    ct_tensor *y = bn(g, ct_conv2d(g, x, w, NULL, stride, pad), b);
    return ct_graph_keep(g, &mk, relu ? ct_relu(g, y) : y);
}

static ct_tensor *bottleneck(ct_graph *g, const ct_rn_block *b, ct_tensor *x) {
    ct_tensor *o = conv_bn(g, x, b->conv1, &b->bn1, 1, 0, true);
    o = conv_bn(g, o, b->conv2, &b->bn2, 1, 1, true);
    if (b->stride > 1) o = ct_avg_pool2d(g, o, b->stride, b->stride);
    o = conv_bn(g, o, b->conv3, &b->bn3, 1, 0, false);
    ct_tensor *id = x;
    if (b->ds_conv) {
        /* nn.AvgPool2d(1) is the identity */
        ct_tensor *p = b->stride > 1 ? ct_avg_pool2d(g, x, b->stride, b->stride) : x;
        id = conv_bn(g, p, b->ds_conv, &b->ds_bn, 1, 0, false);
    }
    return ct_relu(g, ct_add(g, o, id));
}

/* (B, C, h, w) -> (B, h w + 1, C): the mean of the feature vectors, then
 * each of them (row-major), as AttentionPool2d orders them. */
static ct_tensor *pool_tokens(ct_graph *g, ct_tensor *f) {
    if (!f) return NULL;
    int64_t B = f->shape[0], C = f->shape[1], HW = f->shape[2] * f->shape[3];
    int64_t s3[3] = {B, C, HW}, m3[3] = {B, 1, C};
    ct_tensor *t = ct_transpose(g, ct_reshape(g, f, 3, s3), 1, 2); /* (B, HW, C) */
    ct_tensor *parts[2] = {ct_reshape(g, ct_mean(g, t, 1), 3, m3), t};
    return ct_concat(g, parts, 2, 1);
}

ct_tensor *ct_clip_rn_encode(ct_graph *g, const ct_clip *m, ct_tensor *pixels,
                             const ct_clip_hooks *hooks, ct_dense_kind kind, bool want_dense,
                             ct_clip_image_out *out) {
    const ct_clip_config *c = &m->cfg;
    const ct_rn *rn = &m->rn;
    if (hooks && (hooks->vision || hooks->vision_lora || hooks->mask_token ||
                  hooks->patch_mask || (hooks->vision_deep && hooks->vision_deep->depth > 0)))
        return ct_op_fail(g, CT_ERR_UNSUPPORTED, "clip: vision hooks, deep prompts, LoRA and "
                          "mask tokens need a ViT image tower (this model's is a "
                          "ModifiedResNet)");
    ct_tensor *x = pixels;
    ct_graph_mark stem = ct_graph_get_mark(g);
    for (int i = 0; i < 3; i++) x = conv_bn(g, x, rn->conv[i], &rn->bn[i], i == 0 ? 2 : 1, 1, true);
    x = ct_graph_keep(g, &stem, ct_avg_pool2d(g, x, 2, 2));
    for (int k = 0; k < rn->n_blocks && x; k++) {
        /* without a tape, keep one block's activations at a time */
        ct_graph_mark mk = ct_graph_get_mark(g);
        x = ct_graph_keep(g, &mk, bottleneck(g, &rn->blocks[k], x));
    }
    if (!x) return NULL;
    int64_t grid = c->image_size / 32, B = x->shape[0], C = 32 * (int64_t)c->vision_width;
    if (x->shape[1] != C || x->shape[2] != grid || x->shape[3] != grid) {
        char s[64];
        return ct_op_fail(g, CT_ERR_ARG, "clip: the ResNet's features %s are not (B, %lld, %lld, "
                          "%lld)", ct_shape_str(x, s, sizeof s), (long long)C, (long long)grid,
                          (long long)grid);
    }
    ct_tensor *raw = pool_tokens(g, x);       /* (B, T, C) */
    ct_tensor *tok = ct_add(g, raw, rn->pos); /* + positional embedding */
    ct_tensor *k = ct_linear(g, tok, rn->k_w, rn->k_b);
    ct_tensor *v = ct_linear(g, tok, rn->v_w, rn->v_b);
    bool all_queries = want_dense && kind == CT_DENSE_TOKENS;
    ct_tensor *q = ct_linear(g, all_queries ? tok : ct_slice(g, tok, 1, 0, 1), rn->q_w, rn->q_b);
    ct_tensor *a = ct_linear(g, ct_attention(g, q, k, v, NULL, NULL, c->vision_heads, false),
                             rn->c_w, rn->c_b); /* (B, Tq, E) */
    int64_t e2[2] = {B, c->embed_dim};
    ct_tensor *emb = ct_reshape(g, all_queries ? ct_slice(g, a, 1, 0, 1) : a, 2, e2);
    if (!emb) return NULL;
    if (out) {
        out->tokens = tok;
        out->keys = NULL;
        out->dense = NULL;
        if (!want_dense) return emb;
        if (kind == CT_DENSE_TOKENS) {
            out->dense = a;
        } else if (kind == CT_DENSE_POOL_VALUE) {
            out->dense = ct_linear(g, ct_linear(g, tok, rn->v_w, rn->v_b), rn->c_w, rn->c_b);
        } else {
            out->dense = ct_linear(g, ct_linear(g, raw, rn->v_w, rn->v_b), rn->c_w, rn->c_b);
            out->keys = ct_linear(g, raw, rn->k_w, rn->k_b);
            if (!out->keys) return NULL;
        }
        if (!out->dense) return NULL;
    }
    return emb;
}
