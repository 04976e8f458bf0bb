/* Loading CLIP checkpoints. One central table maps every weight to its name
 * in each layout (Hugging Face, OpenAI / open_clip); the loader checks each
 * tensor's presence, dtype and shape and reports unknown tensors by name. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/cpu.h"
#include "base/error.h"
#include "base/gemm.h"
#include "base/hash.h"
#include "model/clip.h"

/* How an OpenAI tensor maps to ours (HF tensors always map 1:1). */
typedef enum {
    SRC_COPY,
    SRC_TRANSPOSE, /* OpenAI's proj (W, E) -> our Linear layout (E, W)   */
    SRC_ROWS0,     /* rows [0, n) / [n, 2n) / [2n, 3n) of in_proj (q/k/v) */
    SRC_ROWS1,
    SRC_ROWS2,
    SRC_SCALAR     /* 0-d or 1-element                                   */
} src_kind;

typedef struct {
    size_t off;       /* offsetof(ct_block, field)  */
    const char *ours; /* also the OpenAI-style name */
    const char *hf;
    const char *oai;
    src_kind oai_kind;
    int in_dim;       /* 0: (W), 1: (W, W), 2: (MLP, W), 3: (MLP), 4: (W, MLP) */
} block_key;

static const block_key BLOCK_KEYS[] = {
    {offsetof(ct_block, ln1_w), "ln_1.weight", "layer_norm1.weight", "ln_1.weight", SRC_COPY, 0},
    {offsetof(ct_block, ln1_b), "ln_1.bias", "layer_norm1.bias", "ln_1.bias", SRC_COPY, 0},
    {offsetof(ct_block, q_w), "attn.q_proj.weight", "self_attn.q_proj.weight", "attn.in_proj_weight", SRC_ROWS0, 1},
    {offsetof(ct_block, q_b), "attn.q_proj.bias", "self_attn.q_proj.bias", "attn.in_proj_bias", SRC_ROWS0, 0},
    {offsetof(ct_block, k_w), "attn.k_proj.weight", "self_attn.k_proj.weight", "attn.in_proj_weight", SRC_ROWS1, 1},
    {offsetof(ct_block, k_b), "attn.k_proj.bias", "self_attn.k_proj.bias", "attn.in_proj_bias", SRC_ROWS1, 0},
    {offsetof(ct_block, v_w), "attn.v_proj.weight", "self_attn.v_proj.weight", "attn.in_proj_weight", SRC_ROWS2, 1},
    {offsetof(ct_block, v_b), "attn.v_proj.bias", "self_attn.v_proj.bias", "attn.in_proj_bias", SRC_ROWS2, 0},
    {offsetof(ct_block, o_w), "attn.out_proj.weight", "self_attn.out_proj.weight", "attn.out_proj.weight", SRC_COPY, 1},
    {offsetof(ct_block, o_b), "attn.out_proj.bias", "self_attn.out_proj.bias", "attn.out_proj.bias", SRC_COPY, 0},
    {offsetof(ct_block, ln2_w), "ln_2.weight", "layer_norm2.weight", "ln_2.weight", SRC_COPY, 0},
    {offsetof(ct_block, ln2_b), "ln_2.bias", "layer_norm2.bias", "ln_2.bias", SRC_COPY, 0},
    {offsetof(ct_block, fc1_w), "mlp.c_fc.weight", "mlp.fc1.weight", "mlp.c_fc.weight", SRC_COPY, 2},
    {offsetof(ct_block, fc1_b), "mlp.c_fc.bias", "mlp.fc1.bias", "mlp.c_fc.bias", SRC_COPY, 3},
    {offsetof(ct_block, fc2_w), "mlp.c_proj.weight", "mlp.fc2.weight", "mlp.c_proj.weight", SRC_COPY, 4},
    {offsetof(ct_block, fc2_b), "mlp.c_proj.bias", "mlp.fc2.bias", "mlp.c_proj.bias", SRC_COPY, 0},
};

/* Buffers some checkpoints carry that are not weights. */
static const char *const IGNORED[] = {
    "text_model.embeddings.position_ids", "vision_model.embeddings.position_ids",
    "input_resolution", "context_length", "vocab_size",
};

/* One weight to load. */
typedef struct {
    ct_tensor **dst;
    char ours[160], src[160];
    src_kind kind;
    int ndim;
    int64_t shape[4];
} spec;

typedef struct {
    spec *v;
    int n, cap;
    bool oom;
} spec_list;

static spec *add(spec_list *l, ct_tensor **dst, const char *ours, const char *src, src_kind kind,
                 int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        spec *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) {
            l->oom = true;
            return NULL;
        }
        l->v = v, l->cap = cap;
    }
    spec *s = &l->v[l->n++];
    s->dst = dst;
    snprintf(s->ours, sizeof s->ours, "%s", ours);
    snprintf(s->src, sizeof s->src, "%s", src);
    s->kind = kind;
    s->ndim = ndim;
    int64_t d[4] = {d0, d1, d2, d3};
    memcpy(s->shape, d, sizeof d);
    return s;
}

static void block_specs(spec_list *l, ct_block *blocks, int layers, int W, int mlp, bool hf,
                        const char *hf_prefix, const char *oai_prefix) {
    for (int i = 0; i < layers; i++)
        for (size_t k = 0; k < sizeof BLOCK_KEYS / sizeof *BLOCK_KEYS; k++) {
            const block_key *bk = &BLOCK_KEYS[k];
            char ours[160], src[160];
            snprintf(ours, sizeof ours, "%s%d.%s", oai_prefix, i, bk->ours);
            if (hf)
                snprintf(src, sizeof src, "%s%d.%s", hf_prefix, i, bk->hf);
            else
                snprintf(src, sizeof src, "%s%d.%s", oai_prefix, i, bk->oai);
            ct_tensor **dst = (ct_tensor **)((char *)&blocks[i] + bk->off);
            switch (bk->in_dim) {
            case 0: add(l, dst, ours, src, hf ? SRC_COPY : bk->oai_kind, 1, W, 0, 0, 0); break;
            case 1: add(l, dst, ours, src, hf ? SRC_COPY : bk->oai_kind, 2, W, W, 0, 0); break;
            case 2: add(l, dst, ours, src, SRC_COPY, 2, mlp, W, 0, 0); break;
            case 3: add(l, dst, ours, src, SRC_COPY, 1, mlp, 0, 0, 0); break;
            default: add(l, dst, ours, src, SRC_COPY, 2, W, mlp, 0, 0); break;
            }
        }
}

static void bn_specs(spec_list *l, ct_rn_bn *bn, const char *prefix, int64_t C) {
    char n[160];
    snprintf(n, sizeof n, "%s.weight", prefix);
    add(l, &bn->w, n, n, SRC_COPY, 1, C, 0, 0, 0);
    snprintf(n, sizeof n, "%s.bias", prefix);
    add(l, &bn->b, n, n, SRC_COPY, 1, C, 0, 0, 0);
    snprintf(n, sizeof n, "%s.running_mean", prefix);
    add(l, &bn->mean, n, n, SRC_COPY, 1, C, 0, 0, 0);
    snprintf(n, sizeof n, "%s.running_var", prefix);
    add(l, &bn->var, n, n, SRC_COPY, 1, C, 0, 0, 0);
}

/* OpenAI's ModifiedResNet (clip/model.py), names as its state dict has
 * them (OpenAI and open_clip alike); m->rn.blocks allocated by the caller. */
static void resnet_specs(spec_list *l, ct_clip *m) {
    const ct_clip_config *c = &m->cfg;
    ct_rn *rn = &m->rn;
    int64_t w = c->vision_width, C = 32 * w, grid = c->image_size / 32;
    int64_t stem_out[3] = {w / 2, w / 2, w}, stem_in[3] = {3, w / 2, w / 2};
    char n[160];
    for (int i = 0; i < 3; i++) {
        snprintf(n, sizeof n, "visual.conv%d.weight", i + 1);
        add(l, &rn->conv[i], n, n, SRC_COPY, 4, stem_out[i], stem_in[i], 3, 3);
        snprintf(n, sizeof n, "visual.bn%d", i + 1);
        bn_specs(l, &rn->bn[i], n, stem_out[i]);
    }
    int64_t inplanes = w;
    int k = 0;
    for (int li = 0; li < 4; li++) {
        int64_t planes = w << li;
        for (int j = 0; j < c->vision_resnet_layers[li]; j++, k++) {
            ct_rn_block *b = &rn->blocks[k];
            b->stride = li > 0 && j == 0 ? 2 : 1;
            char pre[96];
            snprintf(pre, sizeof pre, "visual.layer%d.%d", li + 1, j);
            snprintf(n, sizeof n, "%s.conv1.weight", pre);
            add(l, &b->conv1, n, n, SRC_COPY, 4, planes, inplanes, 1, 1);
            snprintf(n, sizeof n, "%s.bn1", pre);
            bn_specs(l, &b->bn1, n, planes);
            snprintf(n, sizeof n, "%s.conv2.weight", pre);
            add(l, &b->conv2, n, n, SRC_COPY, 4, planes, planes, 3, 3);
            snprintf(n, sizeof n, "%s.bn2", pre);
            bn_specs(l, &b->bn2, n, planes);
            snprintf(n, sizeof n, "%s.conv3.weight", pre);
            add(l, &b->conv3, n, n, SRC_COPY, 4, 4 * planes, planes, 1, 1);
            snprintf(n, sizeof n, "%s.bn3", pre);
            bn_specs(l, &b->bn3, n, 4 * planes);
            if (b->stride > 1 || inplanes != 4 * planes) {
                snprintf(n, sizeof n, "%s.downsample.0.weight", pre);
                add(l, &b->ds_conv, n, n, SRC_COPY, 4, 4 * planes, inplanes, 1, 1);
                snprintf(n, sizeof n, "%s.downsample.1", pre);
                bn_specs(l, &b->ds_bn, n, 4 * planes);
            }
            inplanes = 4 * planes;
        }
    }
    add(l, &rn->pos, "visual.attnpool.positional_embedding",
        "visual.attnpool.positional_embedding", SRC_COPY, 2, grid * grid + 1, C, 0, 0);
    struct { ct_tensor **w, **b; const char *name; int64_t out; } pr[4] = {
        {&rn->q_w, &rn->q_b, "q_proj", C}, {&rn->k_w, &rn->k_b, "k_proj", C},
        {&rn->v_w, &rn->v_b, "v_proj", C}, {&rn->c_w, &rn->c_b, "c_proj", c->embed_dim}};
    for (int i = 0; i < 4; i++) {
        snprintf(n, sizeof n, "visual.attnpool.%s.weight", pr[i].name);
        add(l, pr[i].w, n, n, SRC_COPY, 2, pr[i].out, C, 0, 0);
        snprintf(n, sizeof n, "visual.attnpool.%s.bias", pr[i].name);
        add(l, pr[i].b, n, n, SRC_COPY, 1, pr[i].out, 0, 0, 0);
    }
}

int ct_clip_rn_fields(ct_rn *rn, ct_tensor ***out) {
    int n = 0;
#define PUT(p) do { if (out) out[n] = &(p); n++; } while (0)
#define PUT_BN(bn) do { PUT((bn).w); PUT((bn).b); PUT((bn).mean); PUT((bn).var); } while (0)
    for (int i = 0; i < 3; i++) {
        PUT(rn->conv[i]);
        PUT_BN(rn->bn[i]);
    }
    for (int k = 0; k < rn->n_blocks; k++) {
        ct_rn_block *b = &rn->blocks[k];
        PUT(b->conv1);
        PUT(b->conv2);
        PUT(b->conv3);
        PUT(b->ds_conv);
        PUT_BN(b->bn1);
        PUT_BN(b->bn2);
        PUT_BN(b->bn3);
        PUT_BN(b->ds_bn);
    }
    PUT(rn->pos);
    ct_tensor **pw[8] = {&rn->q_w, &rn->q_b, &rn->k_w, &rn->k_b,
                         &rn->v_w, &rn->v_b, &rn->c_w, &rn->c_b};
    for (int i = 0; i < 8; i++) PUT(*pw[i]);
#undef PUT_BN
#undef PUT
    return n;
}

/* rn.blocks for m->cfg (a ResNet), zeroed. */
static ct_status alloc_resnet(ct_clip *m) {
    int n = 0;
    for (int i = 0; i < 4; i++) {
        if (m->cfg.vision_resnet_layers[i] < 1 || m->cfg.vision_resnet_layers[i] > 256)
            return ct_set_error(CT_ERR_FORMAT, "ResNet stage %d has %d blocks", i + 1,
                                m->cfg.vision_resnet_layers[i]);
        n += m->cfg.vision_resnet_layers[i];
    }
    m->rn.blocks = calloc((size_t)n, sizeof *m->rn.blocks);
    if (!m->rn.blocks) return ct_set_error(CT_ERR_NOMEM, "out of memory");
    m->rn.n_blocks = n;
    return CT_OK;
}

/* The central table: every weight with its name in the checkpoint's layout. */
static void all_specs(spec_list *l, ct_clip *m) {
    const ct_clip_config *c = &m->cfg;
    bool hf = c->format == CT_CLIP_HF;
    bool rn = ct_clip_is_resnet(m);
    int64_t Wv = c->vision_width, Wt = c->text_width, E = c->embed_dim, p = c->patch_size;
    int64_t grid = c->image_size / c->patch_size;
#define TOP(field, ours, hfname, oainame, kind, nd, a, b, cc, d) \
    add(l, &m->field, ours, hf ? hfname : oainame, hf ? SRC_COPY : kind, nd, a, b, cc, d)
    if (rn) {
        resnet_specs(l, m);
        goto text;
    }
    TOP(patch_w, "visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight",
        "visual.conv1.weight", SRC_COPY, 4, Wv, 3, p, p);
    TOP(class_emb, "visual.class_embedding", "vision_model.embeddings.class_embedding",
        "visual.class_embedding", SRC_COPY, 1, Wv, 0, 0, 0);
    TOP(vpos, "visual.positional_embedding", "vision_model.embeddings.position_embedding.weight",
        "visual.positional_embedding", SRC_COPY, 2, grid * grid + 1, Wv, 0, 0);
    TOP(ln_pre_w, "visual.ln_pre.weight", "vision_model.pre_layrnorm.weight",
        "visual.ln_pre.weight", SRC_COPY, 1, Wv, 0, 0, 0);
    TOP(ln_pre_b, "visual.ln_pre.bias", "vision_model.pre_layrnorm.bias", "visual.ln_pre.bias",
        SRC_COPY, 1, Wv, 0, 0, 0);
    TOP(ln_post_w, "visual.ln_post.weight", "vision_model.post_layernorm.weight",
        "visual.ln_post.weight", SRC_COPY, 1, Wv, 0, 0, 0);
    TOP(ln_post_b, "visual.ln_post.bias", "vision_model.post_layernorm.bias",
        "visual.ln_post.bias", SRC_COPY, 1, Wv, 0, 0, 0);
    TOP(vproj, "visual.proj", "visual_projection.weight", "visual.proj", SRC_TRANSPOSE, 2, E, Wv,
        0, 0);
text:
    TOP(tok_emb, "token_embedding.weight", "text_model.embeddings.token_embedding.weight",
        "token_embedding.weight", SRC_COPY, 2, c->vocab_size, Wt, 0, 0);
    TOP(tpos, "positional_embedding", "text_model.embeddings.position_embedding.weight",
        "positional_embedding", SRC_COPY, 2, c->context_length, Wt, 0, 0);
    TOP(ln_final_w, "ln_final.weight", "text_model.final_layer_norm.weight", "ln_final.weight",
        SRC_COPY, 1, Wt, 0, 0, 0);
    TOP(ln_final_b, "ln_final.bias", "text_model.final_layer_norm.bias", "ln_final.bias",
        SRC_COPY, 1, Wt, 0, 0, 0);
    TOP(tproj, "text_projection", "text_projection.weight", "text_projection", SRC_TRANSPOSE, 2,
        E, Wt, 0, 0);
    TOP(logit_scale, "logit_scale", "logit_scale", "logit_scale", SRC_SCALAR, 1, 1, 0, 0, 0);
#undef TOP
    if (!l->oom) l->v[l->n - 1].kind = SRC_SCALAR; /* 0-d (or 1 value) in both layouts */
    if (!rn)
        block_specs(l, m->vblocks, c->vision_layers, (int)Wv, c->vision_mlp, hf,
                    "vision_model.encoder.layers.", "visual.transformer.resblocks.");
    block_specs(l, m->tblocks, c->text_layers, (int)Wt, c->text_mlp, hf,
                "text_model.encoder.layers.", "transformer.resblocks.");
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *s) {
    size_t o = (size_t)snprintf(buf, n, "(");
    for (int d = 0; d < ndim && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, d ? ", %lld" : "%lld", (long long)s[d]);
    if (o < n) snprintf(buf + o, n - o, ")");
}

static ct_status load_one(const ct_safetensors *st, const char *path, const spec *sp) {
    const ct_st_tensor *t = ct_safetensors_find(st, sp->src);
    if (!t) return ct_set_error(CT_ERR_FORMAT, "%s: missing tensor %s", path, sp->src);
    if (t->dtype != CT_F32 && t->dtype != CT_F16 && t->dtype != CT_BF16)
        return ct_set_error(CT_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s (F32, F16, BF16 "
                            "supported)", path, sp->src, ct_dtype_name(t->dtype));
    int64_t want[4];
    int wnd = sp->ndim;
    memcpy(want, sp->shape, sizeof want);
    if (sp->kind == SRC_TRANSPOSE) want[0] = sp->shape[1], want[1] = sp->shape[0];
    if (sp->kind >= SRC_ROWS0 && sp->kind <= SRC_ROWS2) want[0] = 3 * sp->shape[0];
    bool ok = t->ndim == wnd;
    for (int d = 0; ok && d < wnd; d++) ok = t->shape[d] == want[d];
    if (sp->kind == SRC_SCALAR) ok = t->ndim <= 1 && t->nbytes == ct_dtype_size(t->dtype);
    if (!ok) {
        char got[96], exp[96];
        shape_str(got, sizeof got, t->ndim, t->shape);
        shape_str(exp, sizeof exp, sp->kind == SRC_SCALAR ? 0 : wnd, want);
        return ct_set_error(CT_ERR_FORMAT, "%s: tensor %s has shape %s, expected %s", path,
                            sp->src, got, exp);
    }
    ct_tensor *dst = ct_tensor_new(sp->ndim, sp->shape, false);
    if (!dst) return CT_ERR_NOMEM;
    dst->name = NULL;
    *sp->dst = dst;
    size_t n = (size_t)dst->numel;
    ct_status s = CT_OK;
    if (sp->kind == SRC_COPY || sp->kind == SRC_SCALAR) {
        s = ct_st_to_real(t, dst->data, n);
    } else if (sp->kind == SRC_TRANSPOSE) {
        ct_real *tmp = malloc(n * sizeof *tmp);
        if (!tmp) return ct_set_error(CT_ERR_NOMEM, "%s: out of memory", path);
        s = ct_st_to_real(t, tmp, n);
        int64_t R = t->shape[0], C = t->shape[1];
        for (int64_t r = 0; s == CT_OK && r < R; r++)
            for (int64_t c = 0; c < C; c++) dst->data[c * R + r] = tmp[r * C + c];
        free(tmp);
    } else {
        /* a third of in_proj: a view of the rows, converted directly */
        ct_st_tensor part = *t;
        size_t bytes = n * ct_dtype_size(t->dtype);
        part.data = t->data + (size_t)(sp->kind - SRC_ROWS0) * bytes;
        part.nbytes = bytes;
        part.shape[0] = sp->shape[0];
        s = ct_st_to_real(&part, dst->data, n);
    }
    if (s != CT_OK) return ct_set_error(s, "%s: %s", path, ct_last_error());
    return CT_OK;
}

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

void ct_clip_free(ct_clip *m) {
    if (!m) return;
    for (int i = 0; i < m->n_tensors; i++) {
        ct_tensor_free(m->tensors[i]);
        free(m->names[i]);
    }
    free(m->vblocks);
    free(m->tblocks);
    free(m->rn.blocks);
    free(m);
}

static ct_status load_weights(ct_clip *m, const ct_safetensors *st, const char *path) {
    spec_list l = {0};
    all_specs(&l, m);
    ct_status s = CT_OK;
    if (l.oom) s = ct_set_error(CT_ERR_NOMEM, "%s: out of memory", path);
    else if (l.n > CT_CLIP_MAX_TENSORS)
        s = ct_set_error(CT_ERR_UNSUPPORTED, "%s: %d tensors exceed the limit %d", path, l.n,
                         CT_CLIP_MAX_TENSORS);
    for (int i = 0; s == CT_OK && i < l.n; i++) {
        s = load_one(st, path, &l.v[i]);
        if (*l.v[i].dst) {
            m->tensors[m->n_tensors] = *l.v[i].dst;
            m->names[m->n_tensors] = strdup(l.v[i].ours);
            (*l.v[i].dst)->name = m->names[m->n_tensors];
            m->n_tensors++;
        }
    }
    /* anything in the file that no table entry consumed is reported */
    for (int i = 0; s == CT_OK && i < ct_safetensors_count(st); i++) {
        const char *name = ct_safetensors_at(st, i)->name;
        bool used = false;
        for (int k = 0; !used && k < l.n; k++) used = !strcmp(l.v[k].src, name);
        for (size_t k = 0; !used && k < sizeof IGNORED / sizeof *IGNORED; k++)
            used = !strcmp(IGNORED[k], name);
        /* batch norm's step counter (a torch buffer, unused in eval mode) */
        size_t len = strlen(name);
        if (!used && ct_clip_is_resnet(m) && len > 20)
            used = !strcmp(name + len - 20, ".num_batches_tracked");
        if (!used)
            s = ct_set_error(CT_ERR_FORMAT, "%s: unexpected tensor %s (not part of a %s CLIP "
                             "with this architecture)", path, name,
                             m->cfg.format == CT_CLIP_HF ? "Hugging Face" : "OpenAI-layout");
    }
    free(l.v);
    return s;
}

ct_clip *ct_clip_load(const char *path, const ct_clip_load_opts *opts) {
    if (!path) {
        ct_set_error(CT_ERR_ARG, "ct_clip_load: NULL path");
        return NULL;
    }
    ct_clip *m = calloc(1, sizeof *m);
    if (!m) {
        ct_set_error(CT_ERR_NOMEM, "ct_clip_load: out of memory");
        return NULL;
    }
    char file[4096];
    ct_status s = CT_OK;
    ct_safetensors *st = NULL;
    if (is_dir(path)) {
        char cfgp[4096];
        snprintf(cfgp, sizeof cfgp, "%s/config.json", path);
        snprintf(file, sizeof file, "%s/model.safetensors", path);
        s = ct_clip_config_from_hf(cfgp, &m->cfg);
        if (s == CT_OK && !(st = ct_safetensors_open(file))) s = CT_ERR_FORMAT;
    } else {
        snprintf(file, sizeof file, "%s", path);
        if (!(st = ct_safetensors_open(file))) s = CT_ERR_FORMAT;
        if (s == CT_OK) s = ct_clip_config_from_openai(st, file, opts, &m->cfg);
    }
    if (s == CT_OK) {
        m->vblocks = calloc((size_t)m->cfg.vision_layers + 1, sizeof *m->vblocks);
        m->tblocks = calloc((size_t)m->cfg.text_layers, sizeof *m->tblocks);
        if (!m->vblocks || !m->tblocks) s = ct_set_error(CT_ERR_NOMEM, "out of memory");
    }
    if (s == CT_OK && ct_clip_is_resnet(m)) {
        s = alloc_resnet(m);
        if (s != CT_OK) s = ct_set_error(s, "%s: %s", file, ct_last_error());
    }
    if (s == CT_OK) s = load_weights(m, st, file);
    ct_safetensors_close(st);
    if (s != CT_OK) {
        ct_clip_free(m);
        return NULL;
    }
    return m;
}

ct_clip *ct_clip_create(const ct_clip_config *cfg, uint64_t seed) {
    bool rn = cfg && cfg->vision_resnet_layers[0] > 0;
    int vh = cfg && cfg->vision_heads > 0 ? cfg->vision_heads : 1;
    /* a ResNet: patch_size 32 (its stride), width even, heads dividing 32 w */
    bool vision_bad = !cfg || (rn ? cfg->vision_layers != 0 || cfg->patch_size != 32 ||
                                        cfg->vision_width < 2 || cfg->vision_width % 2 ||
                                        (32 * cfg->vision_width) % vh
                                  : cfg->vision_layers < 1 || cfg->vision_width % vh);
    if (vision_bad || cfg->text_layers < 1 || cfg->patch_size < 1 ||
        cfg->image_size < cfg->patch_size ||
        cfg->image_size % cfg->patch_size || cfg->vision_heads < 1 || cfg->text_heads < 1 ||
        cfg->text_width % cfg->text_heads ||
        cfg->embed_dim < 1 || cfg->vocab_size < 1 || cfg->context_length < 1) {
        ct_set_error(CT_ERR_ARG, "ct_clip_create: inconsistent configuration");
        return NULL;
    }
    ct_clip *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->cfg = *cfg;
    m->vblocks = calloc((size_t)cfg->vision_layers + 1, sizeof *m->vblocks);
    m->tblocks = calloc((size_t)cfg->text_layers, sizeof *m->tblocks);
    spec_list l = {0};
    ct_status s = rn && m->vblocks && m->tblocks ? alloc_resnet(m) : CT_OK;
    if (s != CT_OK) {
        ct_set_error(CT_ERR_ARG, "ct_clip_create: %s", ct_last_error());
        ct_clip_free(m);
        return NULL;
    }
    if (m->vblocks && m->tblocks) all_specs(&l, m);
    s = (!m->vblocks || !m->tblocks || l.oom) ? CT_ERR_NOMEM : CT_OK;
    if (s == CT_OK && l.n > CT_CLIP_MAX_TENSORS) {
        free(l.v);
        ct_set_error(CT_ERR_UNSUPPORTED, "ct_clip_create: %d tensors exceed the limit %d", l.n,
                     CT_CLIP_MAX_TENSORS);
        ct_clip_free(m);
        return NULL;
    }
    ct_rng rng;
    ct_rng_init(&rng, seed);
    for (int i = 0; s == CT_OK && i < l.n; i++) {
        ct_tensor *t = ct_tensor_new(l.v[i].ndim, l.v[i].shape, false);
        if (!t) {
            s = CT_ERR_NOMEM;
            break;
        }
        *l.v[i].dst = t;
        m->tensors[m->n_tensors] = t;
        m->names[m->n_tensors] = strdup(l.v[i].ours);
        t->name = m->names[m->n_tensors++];
        /* LayerNorm weights 1, biases and norms' biases 0, the rest N(0, 0.02) */
        const char *nm = l.v[i].ours;
        size_t len = strlen(nm);
        bool is_ln = strstr(nm, "ln_") != NULL || strstr(nm, ".bn") != NULL ||
                     strstr(nm, "downsample.1.") != NULL;
        bool ends_var = len > 12 && !strcmp(nm + len - 12, ".running_var");
        bool ends_mean = len > 13 && !strcmp(nm + len - 13, ".running_mean");
        if ((is_ln && len > 7 && !strcmp(nm + len - 7, ".weight")) || ends_var)
            for (int64_t k = 0; k < t->numel; k++) t->data[k] = 1;
        else if (ends_mean)
            for (int64_t k = 0; k < t->numel; k++) t->data[k] = 0;
        else if (t->ndim == 4 && rn) /* ResNet convolutions: He-normal, fan-in */
            ct_rng_fill_normal(&rng, t->data, (size_t)t->numel, 0,
                               (float)sqrt(2.0 / (double)(t->shape[1] * t->shape[2] *
                                                          t->shape[3])));
        else if (!strcmp(nm, "logit_scale"))
            t->data[0] = (ct_real)2.6592600345611572; /* ln(1 / 0.07) */
        else if (!(len > 5 && !strcmp(nm + len - 5, ".bias")))
            ct_rng_fill_normal(&rng, t->data, (size_t)t->numel, 0, 0.02f);
    }
    free(l.v);
    if (s != CT_OK) {
        ct_set_error(s, "ct_clip_create: out of memory");
        ct_clip_free(m);
        return NULL;
    }
    return m;
}

ct_status ct_clip_save_weights_hf(const ct_clip *m, const char *path) {
    /* The HF names come from the same table the loader reads. */
    ct_clip tmp = *m;
    tmp.cfg.format = CT_CLIP_HF;
    spec_list l = {0};
    all_specs(&l, &tmp);
    ct_st_entry *e = l.oom ? NULL : calloc((size_t)l.n, sizeof *e);
    if (!e) {
        free(l.v);
        return ct_set_error(CT_ERR_NOMEM, "%s: out of memory", path);
    }
    static const int64_t scalar_shape[1] = {1};
    for (int i = 0; i < l.n; i++) {
        const ct_tensor *t = *l.v[i].dst;
        e[i].name = l.v[i].src;
        e[i].dtype = CT_F32;
        e[i].ndim = l.v[i].kind == SRC_SCALAR ? 0 : t->ndim;
        e[i].shape = l.v[i].kind == SRC_SCALAR ? scalar_shape : t->shape;
        e[i].data = t->data;
    }
    const char *meta[2] = {"format", "pt"};
    ct_status s = ct_safetensors_write(path, e, l.n, meta, 1);
    free(e);
    free(l.v);
    return s;
}

const ct_clip_config *ct_clip_get_config(const ct_clip *m) { return &m->cfg; }

int64_t ct_clip_num_params(const ct_clip *m) {
    int64_t n = 0;
    /* batch norm's running statistics are buffers, not parameters */
    for (int i = 0; i < m->n_tensors; i++)
        if (!strstr(m->names[i], ".running_")) n += m->tensors[i]->numel;
    return n;
}

int ct_clip_num_tensors(const ct_clip *m) { return m->n_tensors; }

ct_tensor *ct_clip_tensor_at(const ct_clip *m, int i, const char **name) {
    if (i < 0 || i >= m->n_tensors) return NULL;
    if (name) *name = m->names[i];
    return m->tensors[i];
}

ct_tensor *ct_clip_find_tensor(const ct_clip *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->names[i], name)) return m->tensors[i];
    return NULL;
}

/* W (out, in) += scale * B (out, r) A (r, in), in double per element. */
static ct_status merge_delta(ct_tensor *w, const ct_tensor *a, const ct_tensor *b, float scale,
                             const char *what, int layer) {
    if (a->ndim != 2 || b->ndim != 2 || a->shape[0] != b->shape[1] || w->ndim != 2 ||
        b->shape[0] != w->shape[0] || a->shape[1] != w->shape[1])
        return ct_set_error(CT_ERR_ARG, "merge LoRA: the %s delta of block %d does not fit its "
                            "weight", what, layer);
    int64_t O = w->shape[0], I = w->shape[1], r = a->shape[0];
    for (int64_t o = 0; o < O; o++)
        for (int64_t i = 0; i < I; i++) {
            double d = 0;
            for (int64_t k = 0; k < r; k++) d += (double)b->data[o * r + k] * a->data[k * I + i];
            w->data[o * I + i] += (float)(scale * d);
        }
    return CT_OK;
}

ct_status ct_clip_merge_lora(ct_clip *m, const ct_lora *vision, const ct_lora *text) {
    for (int t = 0; t < 2; t++) {
        const ct_lora *lo = t ? text : vision;
        if (!lo) continue;
        int n = t ? m->cfg.text_layers : m->cfg.vision_layers;
        ct_block *blocks = t ? m->tblocks : m->vblocks;
        if (lo->n_layers != n)
            return ct_set_error(CT_ERR_ARG, "merge LoRA: %d %s layers, the model has %d",
                                lo->n_layers, t ? "text" : "vision", n);
        for (int l = 0; l < n; l++) {
            ct_tensor *w[4] = {blocks[l].q_w, blocks[l].k_w, blocks[l].v_w, blocks[l].o_w};
            static const char *const what[4] = {"q", "k", "v", "out"};
            for (int j = 0; j < 4; j++) {
                const ct_block_lora *bl = &lo->layers[l];
                if (!bl->a[j]) continue;
                ct_status s = merge_delta(w[j], bl->a[j], bl->b[j], lo->scale, what[j], l);
                if (s != CT_OK) return s;
            }
        }
    }
    return CT_OK;
}

/* The weights ct_clip_set_precision gives a bf16 copy: every linear layer
 * of both towers' blocks and the two projections (nn.Linear layout, out x
 * in), i.e. all but a few tenths of a percent of an encoder's GEMM work. */
static int lowp_weights(const ct_clip *m, ct_tensor **out) {
    int n = 0;
    const ct_block *towers[2] = {m->vblocks, m->tblocks};
    int layers[2] = {m->cfg.vision_layers, m->cfg.text_layers};
    for (int t = 0; t < 2; t++)
        for (int l = 0; towers[t] && l < layers[t]; l++) {
            const ct_block *b = &towers[t][l];
            ct_tensor *w[6] = {b->q_w, b->k_w, b->v_w, b->o_w, b->fc1_w, b->fc2_w};
            for (int j = 0; j < 6; j++)
                if (out) out[n++] = w[j];
                else n++;
        }
    if (out) out[n] = m->vproj, out[n + 1] = m->tproj;
    return n + 2;
}

ct_status ct_clip_set_precision(ct_clip *m, ct_precision p) {
    if (!m) return ct_set_error(CT_ERR_ARG, "set_precision: NULL model");
    if (p != CT_PRECISION_F32 && p != CT_PRECISION_BF16)
        return ct_set_error(CT_ERR_ARG, "set_precision: unknown precision %d", (int)p);
    if (p == CT_PRECISION_BF16 && !ct_cpu_has_bf16())
        return ct_set_error(CT_ERR_UNSUPPORTED,
                            "bf16 precision needs a CPU with AVX512_BF16 (this one runs the %s "
                            "path)", ct_cpu_path());
    int n = lowp_weights(m, NULL);
    ct_tensor **w = malloc((size_t)n * sizeof *w);
    if (!w) return ct_set_error(CT_ERR_NOMEM, "set_precision: out of memory");
    lowp_weights(m, w);
    ct_status st = CT_OK;
    for (int i = 0; i < n; i++) {
        if (!w[i]) continue;
        ct_wpack_free(w[i]->lowp); /* also renews copies of changed weights */
        w[i]->lowp = NULL;
    }
    for (int i = 0; p == CT_PRECISION_BF16 && i < n && st == CT_OK; i++) {
        if (!w[i] || w[i]->ndim != 2 || w[i]->lowp) continue; /* a tensor listed twice */
        w[i]->lowp = ct_wpack_bf16(w[i]->data, (int)w[i]->shape[0], (int)w[i]->shape[1]);
        if (!w[i]->lowp)
            st = ct_set_error(CT_ERR_NOMEM, "set_precision: out of memory for the bf16 copy of %s",
                              w[i]->name ? w[i]->name : "a weight");
    }
    if (st != CT_OK)
        for (int i = 0; i < n; i++)
            if (w[i]) ct_wpack_free(w[i]->lowp), w[i]->lowp = NULL;
    free(w);
    m->precision = st == CT_OK ? p : CT_PRECISION_F32;
    return st;
}

ct_precision ct_clip_get_precision(const ct_clip *m) { return m->precision; }

uint64_t ct_clip_hash(const ct_clip *m) {
    /* the fields before the ResNet stage counts hash as before they existed */
    uint64_t h = ct_hash_bytes(CT_HASH_INIT, ct_clip_get_config(m),
                               offsetof(ct_clip_config, vision_resnet_layers));
    if (ct_clip_is_resnet(m))
        h = ct_hash_bytes(h, m->cfg.vision_resnet_layers, sizeof m->cfg.vision_resnet_layers);
    for (int i = 0; i < ct_clip_num_tensors(m); i++) {
        const char *name;
        const ct_tensor *t = ct_clip_tensor_at(m, i, &name);
        h = ct_hash_str(h, name);
        h = ct_hash_bytes(h, t->data, (size_t)t->numel * sizeof(ct_real));
    }
    /* fp32 hashes as before the precision setting existed */
    if (ct_clip_get_precision(m) != CT_PRECISION_F32)
        h = ct_hash_u64(h, 0xB716000ull + (uint64_t)ct_clip_get_precision(m));
    return h;
}
