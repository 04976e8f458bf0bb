/* One step of CLIP's contrastive training on a prepared batch: every weight
 * of both towers and the temperature trainable, AdamW in open_clip's two
 * groups (no weight decay where ndim < 2 or the name contains "bn", "ln",
 * "bias" or "logit_scale"), optional gradient clipping, logit_scale clamped
 * to [0, ln 100] after the step. Used by the pretraining loop (pretrain.c)
 * and tested alone against PyTorch. */
#ifndef CT_TRAIN_CLIP_TRAINER_H
#define CT_TRAIN_CLIP_TRAINER_H

#include "cliptune.h"

typedef struct ct_clip_trainer_cfg {
    double beta1, beta2, eps, weight_decay;
    double max_grad_norm; /* 0: no clipping */
} ct_clip_trainer_cfg;

typedef struct ct_clip_trainer ct_clip_trainer;

/* Marks every weight of m trainable (m is not owned). */
ct_clip_trainer *ct_clip_trainer_create(ct_clip *m, const ct_clip_trainer_cfg *cfg);
void ct_clip_trainer_free(ct_clip_trainer *t);
/* pixels (B, 3, S, S) normalised, ids (B, T): loss, backward, step at lr,
 * clamp. *loss is the loss before the step. */
ct_status ct_clip_trainer_step(ct_clip_trainer *t, ct_graph *g, float *pixels,
                               const int64_t *ids, int64_t B, double lr, double *loss);
/* The two optimisers (for checkpoints): the decayed and the undecayed group. */
void ct_clip_trainer_optims(ct_clip_trainer *t, ct_optim **decay, ct_optim **no_decay);

#endif
