/* Private, flat copies of a CLIP vision tower (see vision_copy.h). */
#include "model/vision_copy.h"

#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "model/clip.h"

/* A vision weight: batch norm's running statistics are buffers, not
 * weights (nothing trains them; the copy reads the source's). */
static bool is_vision(const char *name) {
    size_t n = strlen(name);
    if (n > 13 && !strcmp(name + n - 13, ".running_mean")) return false;
    if (n > 12 && !strcmp(name + n - 12, ".running_var")) return false;
    return !strncmp(name, "visual.", 7);
}

/* The copy's tensor for the source's tensor t (t itself when not vision). */
static ct_tensor *remap(const ct_clip *src, const ct_vision_copy *c, ct_tensor *t) {
    for (int i = 0, j = 0; t && i < src->n_tensors; i++) {
        if (!is_vision(src->names[i])) continue;
        if (src->tensors[i] == t) return &c->views[j];
        j++;
    }
    return t;
}

ct_status ct_vision_copy_create(const ct_clip *src, bool trainable, ct_vision_copy *out) {
    memset(out, 0, sizeof *out);
    if (!src) return ct_set_error(CT_ERR_ARG, "vision copy: no model");
    int64_t n = 0;
    int nw = 0;
    for (int i = 0; i < src->n_tensors; i++)
        if (is_vision(src->names[i])) n += src->tensors[i]->numel, nw++;
    if (!nw) return ct_set_error(CT_ERR_ARG, "vision copy: the model has no vision weights");
    const ct_clip_config *c = &src->cfg;
    out->flat = ct_tensor_new(1, &n, trainable);
    out->views = calloc((size_t)nw, sizeof *out->views);
    out->clip = malloc(sizeof *out->clip);
    ct_block *vb = malloc(((size_t)c->vision_layers + 1) * sizeof *vb);
    ct_block *tb = malloc((size_t)c->text_layers * sizeof *tb);
    ct_rn_block *rb = malloc(((size_t)src->rn.n_blocks + 1) * sizeof *rb);
    if (!out->flat || !out->views || !out->clip || !vb || !tb || !rb) {
        free(vb), free(tb), free(rb), free(out->clip);
        out->clip = NULL;
        ct_vision_copy_free(out);
        return ct_set_error(CT_ERR_NOMEM, "vision copy: out of memory (%lld weights)",
                            (long long)n);
    }
    out->n_weights = nw;
    int64_t off = 0;
    for (int i = 0, j = 0; i < src->n_tensors; i++) {
        const ct_tensor *t = src->tensors[i];
        if (!is_vision(src->names[i])) continue;
        ct_tensor *v = &out->views[j++];
        memcpy(v->shape, t->shape, sizeof v->shape);
        v->ndim = t->ndim, v->numel = t->numel;
        v->data = out->flat->data + off;
        v->grad = trainable ? out->flat->grad + off : NULL;
        v->requires_grad = trainable;
        v->owns = false;
        v->name = src->names[i];
        memcpy(v->data, t->data, (size_t)t->numel * sizeof(ct_real));
        off += t->numel;
    }
    /* the source's struct with its own block arrays and the vision fields
     * pointing at the copy; no tensors listed, so ct_clip_free frees only
     * the arrays and the struct */
    ct_clip *m = out->clip;
    *m = *src;
    m->n_tensors = 0;
    memcpy(tb, src->tblocks, (size_t)c->text_layers * sizeof *tb);
    m->tblocks = tb, m->vblocks = vb;
    if (src->rn.n_blocks) memcpy(rb, src->rn.blocks, (size_t)src->rn.n_blocks * sizeof *rb);
    m->rn.blocks = rb;
    if (ct_clip_is_resnet(src)) {
        int nf = ct_clip_rn_fields(&m->rn, NULL);
        ct_tensor ***f = malloc((size_t)nf * sizeof *f);
        if (!f) {
            ct_vision_copy_free(out);
            return ct_set_error(CT_ERR_NOMEM, "vision copy: out of memory");
        }
        ct_clip_rn_fields(&m->rn, f);
        for (int i = 0; i < nf; i++) *f[i] = remap(src, out, *f[i]);
        free(f);
    }
    ct_tensor **fields[] = {&m->patch_w, &m->class_emb, &m->vpos, &m->ln_pre_w, &m->ln_pre_b,
                            &m->ln_post_w, &m->ln_post_b, &m->vproj};
    for (size_t f = 0; f < sizeof fields / sizeof *fields; f++)
        *fields[f] = remap(src, out, *fields[f]);
    for (int l = 0; l < c->vision_layers; l++) {
        const ct_block *s = &src->vblocks[l];
        ct_block *d = &vb[l];
        d->ln1_w = remap(src, out, s->ln1_w), d->ln1_b = remap(src, out, s->ln1_b);
        d->q_w = remap(src, out, s->q_w), d->q_b = remap(src, out, s->q_b);
        d->k_w = remap(src, out, s->k_w), d->k_b = remap(src, out, s->k_b);
        d->v_w = remap(src, out, s->v_w), d->v_b = remap(src, out, s->v_b);
        d->o_w = remap(src, out, s->o_w), d->o_b = remap(src, out, s->o_b);
        d->ln2_w = remap(src, out, s->ln2_w), d->ln2_b = remap(src, out, s->ln2_b);
        d->fc1_w = remap(src, out, s->fc1_w), d->fc1_b = remap(src, out, s->fc1_b);
        d->fc2_w = remap(src, out, s->fc2_w), d->fc2_b = remap(src, out, s->fc2_b);
    }
    return CT_OK;
}

void ct_vision_copy_free(ct_vision_copy *c) {
    if (!c) return;
    ct_clip_free(c->clip);
    free(c->views);
    ct_tensor_free(c->flat);
    memset(c, 0, sizeof *c);
}

ct_status ct_vision_copy_mix(ct_vision_copy *dst, const ct_clip *src, const ct_vision_copy *b,
                             float alpha) {
    if (!dst->flat || !b->flat || dst->flat->numel != b->flat->numel)
        return ct_set_error(CT_ERR_ARG, "vision copy: mixing copies of different models");
    /* torch: (1 - alpha) * theta_0 + alpha * theta_1 with float32 scalars */
    float a0 = (float)(1.0 - (double)alpha), a1 = alpha;
    for (int i = 0, j = 0; i < src->n_tensors; i++) {
        if (!is_vision(src->names[i])) continue;
        const ct_tensor *t = src->tensors[i];
        if (j >= dst->n_weights || t->numel != dst->views[j].numel)
            return ct_set_error(CT_ERR_ARG, "vision copy: %s is not the copy's weight %d",
                                src->names[i], j);
        ct_real *o = dst->views[j].data;
        const ct_real *x = t->data, *y = b->views[j].data;
        for (int64_t k = 0; k < t->numel; k++) o[k] = a0 * x[k] + a1 * y[k];
        j++;
    }
    return CT_OK;
}
