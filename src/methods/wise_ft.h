/* WiSE-FT's pieces (wise_ft.c), for the reference tests. */
#ifndef CT_METHODS_WISE_FT_H
#define CT_METHODS_WISE_FT_H

#include "cliptune.h"

/* One fine-tuning step of a "wise-ft" state on normalised pixels
 * (B, 3, S, S) and labels: cross-entropy of the head on the fine-tuned
 * tower, backward, global gradient-norm clipping, AdamW at lr (the state's
 * optimiser, created on first use). *loss: the loss before the step. */
ct_status ct_wise_ft_step(void *state, const float *px, int B, const int *labels, float lr,
                          double *loss);
/* The same forward and backward without the update: the gradients are left
 * in the learned tensors (zeroed first). */
ct_status ct_wise_ft_loss(void *state, const float *px, int B, const int *labels,
                          double *loss);
/* Class scores (B, K) of pixels under the interpolation alpha of the
 * zero-shot and fine-tuned weights (tower and head). */
ct_status ct_wise_ft_scores(void *state, const float *px, int B, float alpha, float *scores);
/* A fine-tuned vision weight by its canonical name ("visual.proj", ...). */
ct_tensor *ct_wise_ft_weight(void *state, const char *name);

#endif
