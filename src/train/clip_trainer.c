/* CLIP's contrastive training step (see clip_trainer.h). Followed: the CLIP
 * paper (Figure 3) and open_clip (src/training/main.py's weight-decay
 * exclusion rule, src/training/train.py's logit_scale clamp). */
#include "train/clip_trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "model/clip.h"

/* open_clip main.py: exclude = ndim < 2 or "bn"/"ln"/"bias"/"logit_scale" in name */
static bool no_decay(const char *name, const ct_tensor *t) {
    return t->ndim < 2 || strstr(name, "bn") || strstr(name, "ln") || strstr(name, "bias") ||
           strstr(name, "logit_scale");
}

struct ct_clip_trainer {
    ct_clip *m;
    ct_tensor *p[CT_CLIP_MAX_TENSORS]; /* no-decay group first, then decay */
    int n_pn, n_pd;
    ct_optim *od, *on;
    double max_grad_norm;
};

ct_clip_trainer *ct_clip_trainer_create(ct_clip *m, const ct_clip_trainer_cfg *cfg) {
    ct_clip_trainer *t = calloc(1, sizeof *t);
    if (!t) {
        ct_set_error(CT_ERR_NOMEM, "pretrain: out of memory");
        return NULL;
    }
    t->m = m, t->max_grad_norm = cfg->max_grad_norm;
    ct_tensor *pd[CT_CLIP_MAX_TENSORS];
    for (int i = 0; i < ct_clip_num_tensors(m); i++) {
        const char *name;
        ct_tensor *w = ct_clip_tensor_at(m, i, &name);
        w->requires_grad = true;
        if (no_decay(name, w)) t->p[t->n_pn++] = w;
        else pd[t->n_pd++] = w;
    }
    memcpy(t->p + t->n_pn, pd, (size_t)t->n_pd * sizeof *pd);
    ct_optim_config oc = ct_optim_default(CT_OPTIM_ADAMW, 1e-3f); /* lr is per step */
    oc.beta1 = (float)cfg->beta1, oc.beta2 = (float)cfg->beta2, oc.eps = (float)cfg->eps;
    oc.weight_decay = (float)cfg->weight_decay;
    t->od = ct_optim_create(&oc, t->p + t->n_pn, t->n_pd);
    oc.weight_decay = 0;
    t->on = ct_optim_create(&oc, t->p, t->n_pn);
    if (!t->od || !t->on) {
        ct_clip_trainer_free(t);
        return NULL;
    }
    return t;
}

void ct_clip_trainer_free(ct_clip_trainer *t) {
    if (!t) return;
    ct_optim_free(t->od), ct_optim_free(t->on);
    free(t);
}

ct_status ct_clip_trainer_step(ct_clip_trainer *t, ct_graph *g, float *pixels,
                               const int64_t *ids, int64_t B, double lr, double *loss) {
    const ct_clip_config *a = ct_clip_get_config(t->m);
    int S = a->image_size, T = a->context_length;
    ct_graph_reset(g);
    int64_t shp[4] = {B, 3, S, S};
    ct_tensor *ie = ct_clip_encode_image(g, t->m, ct_graph_wrap(g, pixels, 4, shp), NULL, false,
                                         NULL);
    ct_tensor *te = ct_clip_encode_text(g, t->m, ids, B, T, NULL);
    ct_tensor *l = ct_clip_contrastive_loss(g, t->m, ie, te);
    if (!l) return ct_graph_status(g);
    ct_optim_zero_grad(t->od), ct_optim_zero_grad(t->on);
    ct_status s = ct_backward(g, l);
    if (s != CT_OK) return s;
    *loss = l->data[0];
    if (!isfinite(*loss))
        return ct_set_error(CT_ERR_STATE, "pretrain: the loss became %g (lower the learning "
                            "rate)", *loss);
    if (t->max_grad_norm > 0) ct_clip_grad_norm(t->p, t->n_pn + t->n_pd, t->max_grad_norm);
    if ((s = ct_optim_step(t->od, (float)lr)) != CT_OK) return s;
    if ((s = ct_optim_step(t->on, (float)lr)) != CT_OK) return s;
    /* open_clip: logit_scale.clamp_(0, math.log(100)) */
    ct_real *ls = t->m->logit_scale->data;
    ls[0] = ls[0] < 0 ? 0 : ls[0] > (ct_real)log(100.0) ? (ct_real)log(100.0) : ls[0];
    return CT_OK;
}

void ct_clip_trainer_optims(ct_clip_trainer *t, ct_optim **decay, ct_optim **no_decay_) {
    *decay = t->od, *no_decay_ = t->on;
}
