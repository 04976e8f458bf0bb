/* Zero-shot CLIP: class embeddings from hand-crafted templates (one, CoOp's
 * per-dataset template, or an ensemble averaged after normalisation as in
 * CLIP's ImageNet notebook and CoOp's trainers/zsclip.py ZeroshotCLIP2),
 * logits = logit_scale.exp() * cos(image, class). Training-free. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "methods/method_common.h"
#include "methods/method_templates.h"

typedef struct {
    ct_tensor *W;     /* (K, E) normalised class embeddings */
    float scale;      /* logit_scale.exp()                  */
} zs_state;

static ct_status zs_create(const ct_task *task, const ct_kv *hp_in, void **out) {
    ct_kv *hp = (ct_kv *)hp_in;
    const char *spec;
    ct_status s = ct_kv_str(hp, "templates", "dataset", &spec);
    if (s != CT_OK) return s;
    const char *const *tmpl;
    int nt;
    char **owned;
    if ((s = ct_resolve_templates(task, spec, &tmpl, &nt, &owned)) != CT_OK) return s;
    zs_state *z = calloc(1, sizeof *z);
    const ct_clip_config *c = ct_clip_get_config(task->clip);
    if (z) z->W = ct_tensor_new2(task->n_classes, c->embed_dim, false);
    if (!z || !z->W) s = ct_set_error(CT_ERR_NOMEM, "zero-shot: out of memory");
    if (s == CT_OK) s = ct_class_text_embeddings(task, tmpl, nt, z->W->data);
    ct_templates_free(owned);
    if (s == CT_OK) {
        ct_tensor *ls = ct_clip_find_tensor(task->clip, "logit_scale");
        z->scale = expf(ls->data[0]);
        *out = z;
        return CT_OK;
    }
    if (z) ct_tensor_free(z->W);
    free(z);
    return s;
}

static void zs_destroy(void *st) {
    zs_state *z = st;
    if (!z) return;
    ct_tensor_free(z->W);
    free(z);
}

static ct_tensor *zs_logits(void *st, ct_graph *g, const ct_batch *b) {
    zs_state *z = st;
    int64_t shape[2] = {b->n, z->W->shape[1]};
    ct_tensor *x = ct_l2_normalize(g, ct_graph_wrap(g, (ct_real *)b->x, 2, shape), 1e-12f);
    return ct_scale(g, ct_matmul(g, x, z->W, false, true), z->scale);
}

const ct_method ct_method_zeroshot = {
    .name = "zeroshot",
    .category = "baseline",
    .setup = "zero-shot",
    .paper = "Radford et al., Learning Transferable Visual Models From Natural Language "
             "Supervision (CLIP), ICML 2021",
    .defaults = "templates=dataset",
    .create = zs_create,
    .destroy = zs_destroy,
    .logits = zs_logits,
};
