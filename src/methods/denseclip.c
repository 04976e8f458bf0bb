/* DenseCLIP (Rao et al., "DenseCLIP: Language-Guided Dense Prediction with
 * Context-Aware Prompting", CVPR 2022), the ViT-FPN segmentor of
 * raoyongming/DenseCLIP as segmentation/configs/denseclip_fpn_vit-b_640x640_80k.py
 * builds it:
 *
 *   segmentation/denseclip/denseclip.py  DenseCLIP.after_extract_feat,
 *       forward_train, encode_decode: text embeddings of learnable contexts
 *       through the frozen text encoder, refined by the context decoder from
 *       the visual context (global + patch embeddings), t + gamma * diff
 *       (gamma init 1e-4); score map = cos(patch embedding, text), concatenated
 *       to backbone level score_concat_index (2); neck, decode head; the
 *       identity head's loss on score_map / tau (tau 0.07, weight 0.4)
 *   segmentation/denseclip/models.py  CLIPVisionTransformer (patch tokens of
 *       blocks out_indices, fpn1..fpn4 of the patch_size == 16 branch:
 *       GN-ConvT-BN-GELU-ConvT, GN-ConvT, GN, GN-MaxPool), CLIPTextContextEncoder
 *       ([SOT, contexts, name tokens, EOT] with positions truncated to
 *       text_length + n_ctx, EOT at argmax(text) + n_ctx), ContextDecoder and
 *       TransformerDecoderLayer / Attention (q, k, v without bias)
 *   segmentation/denseclip/heads.py  IdentityHead
 *   mmseg 0.x FPN (1x1 laterals, nearest top-down to the lower level's size,
 *       3x3 outputs), FPNHead (scale heads of conv3x3-BN-ReLU [+ bilinear x2]
 *       per octave, summed at the finest level, 1x1 conv_seg),
 *       CrossEntropyLoss (per-pixel, ignore 255, mean over all pixels),
 *       logits resized bilinearly (align_corners False) to the labels.
 *
 * Sizes follow the model: ViT width W and embedding E are the checkpoint's;
 * the official 768 / 512 become W / E, the neck and head's 256 channels
 * become neck_channels (W / 3 by default: 256 of 768), the context decoder's
 * width 256 of E 512 becomes decoder_width (E / 2) with decoder_heads 4 and
 * decoder_layers 3, out_indices [3, 5, 7, 11] of 12 blocks become
 * round((i + 1) L / 12) - 1 of L blocks. Official departures (documented in
 * docs/methods/denseclip.md): no drop path in the ViT, no Dropout2d before
 * conv_seg, one learning-rate schedule family (the trainer's), weight decay
 * on every tensor, training augmentation the trainer's (random resized
 * crop + flip, label maps alike). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"
#include "methods/denseclip.h"
#include "methods/method_image.h"
#include "model/vision_copy.h"

#define DC_MAX_P 240
#define DC_NAME 80
#define DC_LEVELS 4
#define DC_MAX_DEC 12
#define DC_MAX_SH 8 /* conv modules per scale head (octaves) */

typedef struct {
    ct_tensor *w, *b;
} dc_lin;

typedef struct {
    ct_tensor *w, *b, *rm, *rv; /* batch norm (affine + running statistics) */
} dc_bn;

typedef struct {
    dc_lin q, k, v, proj; /* q, k, v: weight only */
} dc_attn;

typedef struct {
    dc_attn self_attn, cross_attn;
    dc_lin norm1, norm2, norm3, fc1, fc2;
} dc_dec_layer;

typedef struct {
    const ct_clip *clip;     /* frozen model (text tower)                 */
    ct_vision_copy bb;       /* the trained image tower                   */
    int K, W, E, Wt, S, g, L;
    int n_ctx, text_len, C, D, heads, n_dec, concat_idx;
    int out_idx[DC_LEVELS];
    float tau, aux_weight, dropout;
    int64_t *ids;            /* (K, text_len) tokenized class names       */
    int64_t *eot;            /* (K) EOT positions in the full sequences   */
    /* parameters (params() order) */
    int np;
    ct_tensor *p[DC_MAX_P];
    char names[DC_MAX_P][DC_NAME];
    ct_tensor *contexts, *gamma;
    dc_lin gn[DC_LEVELS];    /* fpn GroupNorm affine                      */
    dc_lin ct1a, ct1b, ct2;  /* transposed convolutions                   */
    dc_bn bn1;
    dc_lin mem_ln1, mem_fc, mem_ln2, txt_ln, txt_fc, out_ln, out_fc;
    dc_dec_layer dec[DC_MAX_DEC];
    dc_lin lat[DC_LEVELS], fpn[DC_LEVELS];
    ct_tensor *sh_w[DC_LEVELS][DC_MAX_SH];
    dc_bn sh_bn[DC_LEVELS][DC_MAX_SH];
    int sh_len[DC_LEVELS];
    dc_lin cls;
    uint64_t seed;
} dc_state;

static void dc_destroy(void *st) {
    dc_state *s = st;
    if (!s) return;
    for (int i = 0; i < s->np; i++)
        if (s->p[i] != s->bb.flat) ct_tensor_free(s->p[i]);
    ct_vision_copy_free(&s->bb);
    free(s->ids), free(s->eot);
    free(s);
}

/* ---- parameters ---- */

enum { INIT_ZERO, INIT_ONE, INIT_NORMAL, INIT_UNIFORM, INIT_TRUNC, INIT_CONST };

/* A new named tensor in params() order; init per kind: NORMAL N(0, a),
 * UNIFORM U(-a, a), TRUNC N(0, a) truncated to [-2, 2] (nn.init.trunc_normal_
 * with its default absolute bounds), CONST a. */
static ct_tensor *param(dc_state *s, bool learn, int kind, double a, int ndim,
                        const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
static ct_tensor *param(dc_state *s, bool learn, int kind, double a, int ndim,
                        const int64_t *shape, const char *fmt, ...) {
    if (s->np >= DC_MAX_P) {
        ct_set_error(CT_ERR_STATE, "denseclip: more than %d tensors", DC_MAX_P);
        return NULL;
    }
    ct_tensor *t = ct_tensor_new(ndim, shape, learn);
    if (!t) {
        ct_set_error(CT_ERR_NOMEM, "denseclip: out of memory");
        return NULL;
    }
    char *name = s->names[s->np];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, DC_NAME, fmt, ap);
    va_end(ap);
    t->name = name;
    ct_rng r;
    ct_rng_init(&r, ct_hash_str(ct_hash_u64(CT_HASH_INIT, s->seed), name));
    for (int64_t i = 0; i < t->numel; i++) {
        double v = 0;
        switch (kind) {
        case INIT_ONE: v = 1; break;
        case INIT_CONST: v = a; break;
        case INIT_NORMAL: v = a * ct_rng_normal(&r); break;
        case INIT_UNIFORM: v = a * (2.0 * ct_rng_uniform(&r) - 1.0); break;
        case INIT_TRUNC:
            do v = a * ct_rng_normal(&r);
            while (v < -2 || v > 2);
            break;
        default: break;
        }
        t->data[i] = (ct_real)v;
    }
    s->p[s->np++] = t;
    return t;
}

#define SH(...) ((int64_t[]){__VA_ARGS__})
#define ND(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t))
#define P_(s, learn, kind, a, name, ...) \
    param(s, learn, kind, a, ND(__VA_ARGS__), SH(__VA_ARGS__), "%s", name)

static bool norm_p(dc_state *s, dc_lin *l, int64_t n, const char *pre) {
    char nm[DC_NAME];
    snprintf(nm, sizeof nm, "%s.weight", pre);
    l->w = P_(s, true, INIT_ONE, 0, nm, n);
    snprintf(nm, sizeof nm, "%s.bias", pre);
    l->b = P_(s, true, INIT_ZERO, 0, nm, n);
    return l->w && l->b;
}

/* nn.Linear initialised as ContextDecoder._init_weights: trunc_normal_(std
 * .02), bias 0 */
static bool lin_p(dc_state *s, dc_lin *l, int64_t out, int64_t in, bool bias, const char *pre) {
    char nm[DC_NAME];
    snprintf(nm, sizeof nm, "%s.weight", pre);
    l->w = P_(s, true, INIT_TRUNC, 0.02, nm, out, in);
    l->b = NULL;
    if (bias) {
        snprintf(nm, sizeof nm, "%s.bias", pre);
        l->b = P_(s, true, INIT_ZERO, 0, nm, out);
    }
    return l->w && (!bias || l->b);
}

static bool bn_p(dc_state *s, dc_bn *b, int64_t n, const char *pre) {
    char nm[DC_NAME];
    snprintf(nm, sizeof nm, "%s.weight", pre);
    b->w = P_(s, true, INIT_ONE, 0, nm, n);
    snprintf(nm, sizeof nm, "%s.bias", pre);
    b->b = P_(s, true, INIT_ZERO, 0, nm, n);
    snprintf(nm, sizeof nm, "%s.running_mean", pre);
    b->rm = P_(s, false, INIT_ZERO, 0, nm, n);
    snprintf(nm, sizeof nm, "%s.running_var", pre);
    b->rv = P_(s, false, INIT_ONE, 0, nm, n);
    return b->w && b->b && b->rm && b->rv;
}

/* ConvTranspose2d's default init: kaiming_uniform(a = sqrt 5) over its
 * fan_in (weight.size(1) * k * k = Cout k^2), bias U(-1/sqrt fan_in, ..) */
static bool convt_p(dc_state *s, dc_lin *l, int64_t cin, int64_t cout, int64_t k,
                    const char *pre) {
    char nm[DC_NAME];
    double bound = 1.0 / sqrt((double)(cout * k * k));
    snprintf(nm, sizeof nm, "%s.weight", pre);
    l->w = P_(s, true, INIT_UNIFORM, bound, nm, cin, cout, k, k);
    snprintf(nm, sizeof nm, "%s.bias", pre);
    l->b = P_(s, true, INIT_UNIFORM, bound, nm, cout);
    return l->w && l->b;
}

static ct_status parse_out_indices(const char *v, int L, int *out) {
    if (!strcmp(v, "auto")) {
        static const int off[DC_LEVELS] = {3, 5, 7, 11};
        for (int i = 0; i < DC_LEVELS; i++) {
            int x = (int)lround((off[i] + 1) * (double)L / 12.0) - 1;
            out[i] = x < 0 ? 0 : x;
        }
        return CT_OK;
    }
    const char *p = v;
    for (int i = 0; i < DC_LEVELS; i++) {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p || x < 0 || x >= L || (i > 0 && x <= out[i - 1]) ||
            (i < DC_LEVELS - 1 ? *end != ',' : *end != 0))
            return ct_set_error(CT_ERR_ARG, "denseclip: out_indices=%s (auto, or 4 increasing "
                                "block indices below %d, comma separated)", v, L);
        out[i] = (int)x;
        p = end + 1;
    }
    return CT_OK;
}

static ct_status build(dc_state *s) {
    int W = s->W, E = s->E, D = s->D, C = s->C, K = s->K;
    char nm[DC_NAME];
    bool ok = true;
    /* nn.Parameter(randn(1, n_ctx, token_embed_dim)) then trunc_normal_ */
    ok &= (s->contexts = P_(s, true, INIT_TRUNC, 1.0, "contexts", 1, s->n_ctx, s->Wt)) != NULL;
    ok &= (s->gamma = P_(s, true, INIT_CONST, 1e-4, "gamma", E)) != NULL;
    /* the trained image tower (the official backbone.* of CLIP's weights) */
    ct_status st = ct_vision_copy_create(s->clip, true, &s->bb);
    if (st != CT_OK) return st;
    s->bb.flat->name = "backbone.visual";
    if (s->np >= DC_MAX_P) return ct_set_error(CT_ERR_STATE, "denseclip: too many tensors");
    snprintf(s->names[s->np], DC_NAME, "backbone.visual");
    s->p[s->np++] = s->bb.flat;
    static const char *const gn_names[DC_LEVELS] = {"backbone.fpn1.0", "backbone.fpn2.0",
                                                    "backbone.fpn3", "backbone.fpn4.0"};
    for (int i = 0; i < DC_LEVELS && ok; i++) ok &= norm_p(s, &s->gn[i], W, gn_names[i]);
    ok = ok && convt_p(s, &s->ct1a, W, W, 2, "backbone.fpn1.1");
    ok = ok && bn_p(s, &s->bn1, W, "backbone.fpn1.2");
    ok = ok && convt_p(s, &s->ct1b, W, W, 2, "backbone.fpn1.4");
    ok = ok && convt_p(s, &s->ct2, W, W, 2, "backbone.fpn2.1");
    /* context decoder */
    ok = ok && norm_p(s, &s->mem_ln1, E, "context_decoder.memory_proj.0");
    ok = ok && lin_p(s, &s->mem_fc, D, E, true, "context_decoder.memory_proj.1");
    ok = ok && norm_p(s, &s->mem_ln2, D, "context_decoder.memory_proj.2");
    ok = ok && norm_p(s, &s->txt_ln, E, "context_decoder.text_proj.0");
    ok = ok && lin_p(s, &s->txt_fc, D, E, true, "context_decoder.text_proj.1");
    for (int l = 0; l < s->n_dec && ok; l++) {
        dc_dec_layer *d = &s->dec[l];
        const char *an[2] = {"self_attn", "cross_attn"};
        dc_attn *at[2] = {&d->self_attn, &d->cross_attn};
        for (int a = 0; a < 2 && ok; a++) {
            snprintf(nm, sizeof nm, "context_decoder.decoder.%d.%s.q_proj", l, an[a]);
            ok &= lin_p(s, &at[a]->q, D, D, false, nm);
            snprintf(nm, sizeof nm, "context_decoder.decoder.%d.%s.k_proj", l, an[a]);
            ok &= lin_p(s, &at[a]->k, D, D, false, nm);
            snprintf(nm, sizeof nm, "context_decoder.decoder.%d.%s.v_proj", l, an[a]);
            ok &= lin_p(s, &at[a]->v, D, D, false, nm);
            snprintf(nm, sizeof nm, "context_decoder.decoder.%d.%s.proj", l, an[a]);
            ok &= lin_p(s, &at[a]->proj, D, D, true, nm);
        }
        dc_lin *nl[3] = {&d->norm1, &d->norm2, &d->norm3};
        for (int k = 0; k < 3 && ok; k++) {
            snprintf(nm, sizeof nm, "context_decoder.decoder.%d.norm%d", l, k + 1);
            ok &= norm_p(s, nl[k], D, nm);
        }
        snprintf(nm, sizeof nm, "context_decoder.decoder.%d.mlp.0", l);
        ok = ok && lin_p(s, &d->fc1, 4 * (int64_t)D, D, true, nm);
        snprintf(nm, sizeof nm, "context_decoder.decoder.%d.mlp.3", l);
        ok = ok && lin_p(s, &d->fc2, D, 4 * (int64_t)D, true, nm);
    }
    ok = ok && norm_p(s, &s->out_ln, D, "context_decoder.out_proj.0");
    ok = ok && lin_p(s, &s->out_fc, E, D, true, "context_decoder.out_proj.1");
    /* neck: FPN's Xavier-uniform convolutions, bias 0 */
    for (int i = 0; i < DC_LEVELS && ok; i++) {
        int64_t cin = W + (i == s->concat_idx ? K : 0);
        double b1 = sqrt(6.0 / (double)(cin + C)), b3 = sqrt(6.0 / (double)(9 * C + 9 * C));
        snprintf(nm, sizeof nm, "neck.lateral_convs.%d.conv.weight", i);
        ok &= (s->lat[i].w = P_(s, true, INIT_UNIFORM, b1, nm, C, cin, 1, 1)) != NULL;
        snprintf(nm, sizeof nm, "neck.lateral_convs.%d.conv.bias", i);
        ok &= (s->lat[i].b = P_(s, true, INIT_ZERO, 0, nm, C)) != NULL;
        snprintf(nm, sizeof nm, "neck.fpn_convs.%d.conv.weight", i);
        ok &= (s->fpn[i].w = P_(s, true, INIT_UNIFORM, b3, nm, C, C, 3, 3)) != NULL;
        snprintf(nm, sizeof nm, "neck.fpn_convs.%d.conv.bias", i);
        ok &= (s->fpn[i].b = P_(s, true, INIT_ZERO, 0, nm, C)) != NULL;
    }
    /* FPNHead scale heads: ConvModule (kaiming normal, fan_out, relu; no
     * bias with a norm), at Sequential positions 0, 2, 4 .. when an
     * Upsample follows each */
    for (int i = 0; i < DC_LEVELS && ok; i++) {
        s->sh_len[i] = i > 1 ? i : 1;
        for (int k = 0; k < s->sh_len[i] && ok; k++) {
            int pos = i > 0 ? 2 * k : k;
            snprintf(nm, sizeof nm, "decode_head.scale_heads.%d.%d.conv.weight", i, pos);
            ok &= (s->sh_w[i][k] = P_(s, true, INIT_NORMAL, sqrt(2.0 / (9.0 * C)), nm, C, C, 3,
                                      3)) != NULL;
            snprintf(nm, sizeof nm, "decode_head.scale_heads.%d.%d.bn", i, pos);
            ok = ok && bn_p(s, &s->sh_bn[i][k], C, nm);
        }
    }
    ok = ok && (s->cls.w = P_(s, true, INIT_NORMAL, 0.01, "decode_head.conv_seg.weight", K, C,
                              1, 1)) != NULL;
    ok = ok && (s->cls.b = P_(s, true, INIT_ZERO, 0, "decode_head.conv_seg.bias", K)) != NULL;
    return ok ? CT_OK : CT_ERR_NOMEM;
}

static ct_status dc_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    if (!task->clip || !task->tok)
        return ct_set_error(CT_ERR_ARG, "denseclip: needs the model and its tokenizer");
    const ct_clip_config *c = ct_clip_get_config(task->clip);
    if (c->vision_resnet_layers[0] > 0)
        return ct_set_error(CT_ERR_UNSUPPORTED, "denseclip: the ViT segmentor (fpn1..fpn4 on "
                            "patch tokens) needs a ViT image tower; the official ResNet "
                            "variant (CLIPResNetWithAttention) is not reproduced");
    int n_ctx, tl, C, D, heads, layers, concat;
    double tau, aux, drop;
    const char *oi;
    ct_status st = ct_kv_int(hp, "n_ctx", 8, &n_ctx);
    if (st == CT_OK) st = ct_kv_int(hp, "text_length", 5, &tl);
    if (st == CT_OK) st = ct_kv_int(hp, "neck_channels", (c->vision_width + 2) / 3, &C);
    if (st == CT_OK) st = ct_kv_int(hp, "decoder_width", c->embed_dim / 2, &D);
    if (st == CT_OK) st = ct_kv_int(hp, "decoder_heads", 4, &heads);
    if (st == CT_OK) st = ct_kv_int(hp, "decoder_layers", 3, &layers);
    if (st == CT_OK) st = ct_kv_int(hp, "score_concat_index", 2, &concat);
    if (st == CT_OK) st = ct_kv_double(hp, "tau", 0.07, &tau);
    if (st == CT_OK) st = ct_kv_double(hp, "aux_weight", 0.4, &aux);
    if (st == CT_OK) st = ct_kv_double(hp, "dropout", 0.1, &drop);
    if (st == CT_OK) st = ct_kv_str(hp, "out_indices", "auto", &oi);
    if (st != CT_OK) return st;
    if (n_ctx < 1 || tl < 2 || n_ctx + tl > c->context_length)
        return ct_set_error(CT_ERR_ARG, "denseclip: n_ctx=%d + text_length=%d must fit the text "
                            "tower's %d positions (n_ctx >= 1, text_length >= 2)", n_ctx, tl,
                            c->context_length);
    if (C < 1 || C > 4096 || D < 1 || D > 4096 || heads < 1 || D % heads || layers < 0 ||
        layers > DC_MAX_DEC)
        return ct_set_error(CT_ERR_ARG, "denseclip: neck_channels=%d decoder_width=%d "
                            "decoder_heads=%d decoder_layers=%d (positive, width divisible by "
                            "heads, at most %d layers)", C, D, heads, layers, DC_MAX_DEC);
    if (concat < 0 || concat >= DC_LEVELS)
        return ct_set_error(CT_ERR_ARG, "denseclip: score_concat_index=%d (0 .. 3)", concat);
    if (!(tau > 0) || !(aux >= 0) || !(drop >= 0 && drop < 1))
        return ct_set_error(CT_ERR_ARG, "denseclip: tau=%g (> 0), aux_weight=%g (>= 0), "
                            "dropout=%g (in [0, 1))", tau, aux, drop);
    int g = c->image_size / c->patch_size;
    if (g < 2)
        return ct_set_error(CT_ERR_UNSUPPORTED, "denseclip: a %dx%d patch grid is too small for "
                            "fpn4's 2x2 pooling", g, g);
    dc_state *s = calloc(1, sizeof *s);
    if (!s) return ct_set_error(CT_ERR_NOMEM, "denseclip: out of memory");
    s->clip = task->clip, s->K = task->n_classes, s->W = c->vision_width, s->E = c->embed_dim;
    s->Wt = c->text_width, s->S = c->image_size, s->g = g, s->L = c->vision_layers;
    s->n_ctx = n_ctx, s->text_len = tl, s->C = C, s->D = D, s->heads = heads;
    s->n_dec = layers, s->concat_idx = concat, s->tau = (float)tau;
    s->aux_weight = (float)aux, s->dropout = (float)drop, s->seed = task->seed;
    st = parse_out_indices(oi, s->L, s->out_idx);
    /* class names tokenized to text_length positions (clip.tokenize without
     * truncation: a longer name is an error, as the official raises) */
    s->ids = calloc((size_t)s->K * (size_t)tl, sizeof *s->ids);
    s->eot = calloc((size_t)(s->K ? s->K : 1), sizeof *s->eot);
    if (st == CT_OK && (!s->ids || !s->eot)) st = ct_set_error(CT_ERR_NOMEM, "denseclip: OOM");
    for (int k = 0; st == CT_OK && k < s->K; k++) {
        char name[512];
        snprintf(name, sizeof name, "%s", task->classnames[k]);
        for (char *q = name; *q; q++)
            if (*q == '_') *q = ' ';
        st = ct_tokenizer_tokenize(task->tok, name, tl, false, s->ids + (size_t)k * tl);
        if (st != CT_OK)
            st = ct_set_error(CT_ERR_ARG, "denseclip: class \"%s\" does not fit text_length=%d "
                              "(%s); raise text_length", name, tl, ct_last_error());
    }
    if (st == CT_OK) st = ct_clip_eot_positions(task->clip, s->ids, s->K, tl, s->eot);
    for (int k = 0; st == CT_OK && k < s->K; k++) s->eot[k] += n_ctx;
    if (st == CT_OK) st = build(s);
    if (st != CT_OK) {
        dc_destroy(s);
        return st;
    }
    *out = s;
    return CT_OK;
}

static int dc_params(void *st, ct_tensor **out, int cap) {
    dc_state *s = st;
    int n = s->np < cap ? s->np : cap;
    memcpy(out, s->p, (size_t)n * sizeof *out);
    return n;
}

static int dc_param_names(void *st, const char **out, int cap) {
    dc_state *s = st;
    int n = s->np < cap ? s->np : cap;
    for (int i = 0; i < n; i++) out[i] = s->names[i];
    return n;
}

/* ---- the forward pass ---- */

typedef struct {
    const int *layers; /* block indices whose outputs are wanted, ascending */
    int n;
    ct_tensor **levels;
} level_hook;

/* before block l: the output of block l - 1 */
static ct_tensor *level_fn(ct_graph *g, int layer, ct_tensor *x, void *ctx) {
    (void)g;
    level_hook *h = ctx;
    for (int i = 0; i < h->n; i++)
        if (h->layers[i] == layer - 1) h->levels[i] = x;
    return x;
}

/* x (B, C, H, W) -> GroupNorm(1, C) with affine (w, b) */
static ct_tensor *group_norm1(ct_graph *g, ct_tensor *x, const dc_lin *n) {
    int64_t B = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3];
    ct_tensor *y = ct_layernorm(g, ct_reshape(g, x, 2, SH(B, C * HW)), NULL, NULL, 1e-5f);
    y = ct_transpose(g, ct_reshape(g, y, 3, SH(B, C, HW)), 1, 2); /* (B, HW, C) */
    y = ct_add(g, ct_mul(g, y, n->w), n->b);
    return ct_reshape(g, ct_transpose(g, y, 1, 2), 4, x->shape);
}

static ct_tensor *batch_norm(ct_graph *g, ct_tensor *x, const dc_bn *b, bool train) {
    if (train)
        return ct_batchnorm_train(g, x, b->w, b->b, b->rm->data, b->rv->data, 0.1f, 1e-5f);
    return ct_batchnorm_frozen(g, x, b->rm->data, b->rv->data, b->w, b->b, 1e-5f);
}

static ct_tensor *linear(ct_graph *g, ct_tensor *x, const dc_lin *l) {
    return ct_linear(g, x, l->w, l->b);
}

static ct_tensor *drop(ct_graph *g, ct_tensor *x, float p, uint64_t seed) {
    return p > 0 ? ct_dropout(g, x, p, seed) : x;
}

/* Attention(q, k, v): proj(softmax(q_proj q · k_proj kᵀ / sqrt(d)) v_proj v),
 * proj_drop */
static ct_tensor *attention(ct_graph *g, const dc_state *s, const dc_attn *a, ct_tensor *q,
                            ct_tensor *kv, float p, uint64_t seed) {
    ct_tensor *o = ct_attention(g, linear(g, q, &a->q), linear(g, kv, &a->k),
                                linear(g, kv, &a->v), NULL, NULL, s->heads, false);
    return drop(g, linear(g, o, &a->proj), p, seed);
}

/* ContextDecoder(text (B, K, E), visual (B, T, E)) -> (B, K, E) */
static ct_tensor *context_decoder(ct_graph *g, const dc_state *s, ct_tensor *text,
                                  ct_tensor *visual, float p, uint64_t seed) {
    ct_tensor *mem = ct_layernorm(g, visual, s->mem_ln1.w, s->mem_ln1.b, 1e-5f);
    mem = ct_layernorm(g, linear(g, mem, &s->mem_fc), s->mem_ln2.w, s->mem_ln2.b, 1e-5f);
    ct_tensor *x = linear(g, ct_layernorm(g, text, s->txt_ln.w, s->txt_ln.b, 1e-5f), &s->txt_fc);
    for (int l = 0; l < s->n_dec; l++) {
        const dc_dec_layer *d = &s->dec[l];
        uint64_t sd = ct_hash_u64(seed, (uint64_t)l * 4);
        ct_tensor *h = ct_layernorm(g, x, d->norm1.w, d->norm1.b, 1e-5f);
        x = ct_add(g, x, attention(g, s, &d->self_attn, h, h, p, sd + 1));
        h = ct_layernorm(g, x, d->norm2.w, d->norm2.b, 1e-5f);
        x = ct_add(g, x, attention(g, s, &d->cross_attn, h, mem, p, sd + 2));
        h = ct_layernorm(g, x, d->norm3.w, d->norm3.b, 1e-5f);
        h = drop(g, ct_gelu(g, linear(g, h, &d->fc1)), p, sd + 3);
        x = ct_add(g, x, drop(g, linear(g, h, &d->fc2), p, sd + 4));
    }
    return linear(g, ct_layernorm(g, x, s->out_ln.w, s->out_ln.b, 1e-5f), &s->out_fc);
}

/* CLIPTextContextEncoder: (K, E) from [SOT, contexts, name tokens..] */
static ct_tensor *text_embeddings(ct_graph *g, const dc_state *s) {
    int64_t K = s->K, tl = s->text_len, Wt = s->Wt;
    ct_tensor *tok = ct_clip_embed_tokens(g, s->clip, s->ids, K, tl); /* (K, tl, Wt) */
    ct_tensor *ctx = ct_reshape(g, s->contexts, 3, SH(1, s->n_ctx, Wt));
    ct_tensor **reps = ct_graph_alloc(g, (size_t)(K ? K : 1) * sizeof *reps);
    if (!tok || !ctx || !reps) return NULL;
    for (int64_t k = 0; k < K; k++) reps[k] = ctx;
    ct_tensor *parts[3] = {ct_slice(g, tok, 1, 0, 1), ct_concat(g, reps, (int)K, 0),
                           ct_slice(g, tok, 1, 1, tl - 1)};
    ct_tensor *x = ct_concat(g, parts, 3, 1); /* (K, n_ctx + tl, Wt) */
    return ct_clip_encode_text_embeds(g, s->clip, x, s->eot, NULL);
}

/* conv + bias as mmcv ConvModule without norm / activation */
static ct_tensor *conv(ct_graph *g, ct_tensor *x, const dc_lin *l, int pad) {
    return ct_conv2d(g, x, l->w, l->b, 1, pad);
}

typedef struct {
    ct_tensor *logits; /* (B, K, S, S) decode head, at the image size      */
    ct_tensor *score;  /* (B, K, g, g) pixel-text score map                */
} dc_out;

static bool forward(dc_state *s, ct_graph *g, const ct_batch *b, bool train, dc_out *o) {
    ct_tensor *px = ct_batch_pixels(g, s->S, b, "denseclip");
    if (!px) return false;
    int64_t B = b->n, W = s->W, E = s->E, K = s->K, G = s->g, P = G * G;
    float p = train ? s->dropout : 0;
    uint64_t seed = ct_hash_u64(b->seed, 0xDC);
    /* backbone: patch tokens of blocks out_indices, the projected tokens */
    ct_tensor *lv[DC_LEVELS] = {NULL};
    level_hook lh = {s->out_idx, DC_LEVELS, lv};
    ct_clip_hooks hk = {.vision = level_fn, .ctx = &lh};
    ct_clip_image_out io = {0};
    if (!ct_clip_encode_image(g, s->bb.clip, px, &hk, true, &io) || !io.dense) return false;
    for (int i = 0; i < DC_LEVELS; i++)
        if (s->out_idx[i] == s->L - 1) lv[i] = io.tokens;
    ct_tensor *feat[DC_LEVELS];
    for (int i = 0; i < DC_LEVELS; i++) {
        if (!lv[i]) return false;
        ct_tensor *x = ct_transpose(g, ct_slice(g, lv[i], 1, 1, P), 1, 2); /* (B, W, P) */
        x = group_norm1(g, ct_reshape(g, x, 4, SH(B, W, G, G)), &s->gn[i]);
        if (i == 0) {
            x = ct_conv_transpose2d(g, x, s->ct1a.w, s->ct1a.b, 2);
            x = ct_gelu(g, batch_norm(g, x, &s->bn1, train));
            x = ct_conv_transpose2d(g, x, s->ct1b.w, s->ct1b.b, 2);
        } else if (i == 1) {
            x = ct_conv_transpose2d(g, x, s->ct2.w, s->ct2.b, 2);
        } else if (i == 3) {
            x = ct_max_pool2d(g, x, 2, 2);
        }
        feat[i] = x;
    }
    /* text embeddings refined by the visual context (global + patches) */
    ct_tensor *txt = text_embeddings(g, s); /* (K, E) */
    if (!txt) return false;
    ct_tensor **reps = ct_graph_alloc(g, (size_t)B * sizeof *reps);
    if (!reps) return false;
    for (int64_t i = 0; i < B; i++) reps[i] = ct_reshape(g, txt, 3, SH(1, K, E));
    ct_tensor *text = ct_concat(g, reps, (int)B, 0); /* (B, K, E) */
    ct_tensor *diff = context_decoder(g, s, text, io.dense, p, seed);
    text = ct_add(g, text, ct_mul(g, diff, s->gamma));
    /* score map: cos(patch embedding, text) (B, K, g, g) */
    ct_tensor *vis = ct_l2_normalize(g, ct_slice(g, io.dense, 1, 1, P), 1e-12f); /* (B, P, E) */
    ct_tensor *sc = ct_matmul(g, vis, ct_l2_normalize(g, text, 1e-12f), false, true);
    sc = ct_reshape(g, ct_transpose(g, sc, 1, 2), 4, SH(B, K, G, G));
    ct_tensor *cat[2] = {feat[s->concat_idx], sc};
    feat[s->concat_idx] = ct_concat(g, cat, 2, 1);
    /* neck: FPN */
    ct_tensor *lat[DC_LEVELS], *outs[DC_LEVELS];
    for (int i = 0; i < DC_LEVELS; i++) lat[i] = conv(g, feat[i], &s->lat[i], 0);
    for (int i = DC_LEVELS - 1; i > 0; i--) {
        if (!lat[i - 1] || !lat[i]) return false;
        lat[i - 1] = ct_add(g, lat[i - 1],
                            ct_resize2d(g, lat[i], lat[i - 1]->shape[2], lat[i - 1]->shape[3],
                                        false));
    }
    for (int i = 0; i < DC_LEVELS; i++) outs[i] = conv(g, lat[i], &s->fpn[i], 1);
    /* FPNHead */
    ct_tensor *acc = NULL;
    for (int i = 0; i < DC_LEVELS; i++) {
        ct_tensor *x = outs[i];
        for (int k = 0; k < s->sh_len[i] && x; k++) {
            x = ct_conv2d(g, x, s->sh_w[i][k], NULL, 1, 1);
            x = ct_relu(g, batch_norm(g, x, &s->sh_bn[i][k], train));
            if (i > 0 && x) x = ct_resize2d(g, x, 2 * x->shape[2], 2 * x->shape[3], true);
        }
        if (!x) return false;
        if (acc && (x->shape[2] != acc->shape[2] || x->shape[3] != acc->shape[3]))
            x = ct_resize2d(g, x, acc->shape[2], acc->shape[3], true);
        acc = acc ? ct_add(g, acc, x) : x;
    }
    ct_tensor *lg = conv(g, acc, &s->cls, 0);
    if (!lg) return false;
    o->logits = lg->shape[2] == s->S && lg->shape[3] == s->S
                    ? lg : ct_resize2d(g, lg, s->S, s->S, true);
    o->score = sc;
    return o->logits != NULL;
}

ct_tensor *ct_denseclip_weight(void *st, const char *name) {
    dc_state *s = st;
    for (int i = 0; s && name && i < s->bb.n_weights; i++)
        if (s->bb.views[i].name && !strcmp(s->bb.views[i].name, name)) return &s->bb.views[i];
    return NULL;
}

ct_tensor *ct_denseclip_score_map(void *st, ct_graph *g, const ct_batch *b) {
    dc_out o;
    return forward(st, g, b, false, &o) ? o.score : NULL;
}

static ct_tensor *dc_logits(void *st, ct_graph *g, const ct_batch *b) {
    dc_out o;
    return forward(st, g, b, false, &o) ? o.logits : NULL;
}

/* decode CE + aux_weight * CE(score_map / tau), both resized bilinearly to
 * the label maps (S x S) */
static ct_tensor *dc_loss(void *st, ct_graph *g, const ct_batch *b) {
    dc_state *s = st;
    if (!b->masks) {
        ct_set_error(CT_ERR_ARG, "denseclip: the batch has no label maps (it trains on a "
                     "segmentation dataset: vocseg:, adeseg:, ...)");
        return NULL;
    }
    dc_out o;
    if (!forward(s, g, b, true, &o)) return NULL;
    ct_tensor *dec = ct_pixel_cross_entropy(g, o.logits, b->masks, 255, false);
    if (s->aux_weight == 0) return dec;
    ct_tensor *id = ct_resize2d(g, ct_scale(g, o.score, 1.0f / s->tau), s->S, s->S, true);
    id = ct_pixel_cross_entropy(g, id, b->masks, 255, false);
    return ct_add(g, dec, ct_scale(g, id, s->aux_weight));
}

const ct_method ct_method_denseclip = {
    .name = "denseclip",
    .category = "dense prediction",
    .setup = "segmentation (label maps)",
    .paper = "Rao et al., DenseCLIP: Language-Guided Dense Prediction with Context-Aware "
             "Prompting, CVPR 2022",
    /* denseclip_fpn_vit-b_640x640_80k.py: AdamW lr 1e-4, weight decay 1e-4,
     * backbone lr_mult 0.1 (text encoder 0: frozen), batch 4; the trainer's
     * cosine schedule and random resized crop + flip for mmseg's poly
     * schedule and resize / crop / flip pipeline */
    .defaults = "n_ctx=8 text_length=5 out_indices=auto score_concat_index=2 tau=0.07 "
                "aux_weight=0.4 dropout=0.1 optim=adamw lr=1e-4 weight_decay=1e-4 "
                "backbone.lr=1e-5 batch_size=4 epochs=20 sched=cosine select=last "
                "train_aug=rrc_flip aug_scale_min=0.25",
    .create = dc_create,
    .destroy = dc_destroy,
    .params = dc_params,
    .param_names = dc_param_names,
    .loss = dc_loss,
    .logits = dc_logits,
    .pixels = true,
    .seg_pixels = true,
};
