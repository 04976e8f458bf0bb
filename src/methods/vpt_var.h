/* Variational prompt tuning (vpt_var.c): the test hook that feeds fixed
 * noise, so the reference tests can match sampled logits, loss and
 * gradients exactly. */
#ifndef CT_METHODS_VPT_VAR_H
#define CT_METHODS_VPT_VAR_H

#include "cliptune.h"

/* Give a "vpt-var" state fixed standard-normal draws eps (n floats, copied):
 * every later loss and logits call uses them instead of its own draws, laid
 * out as vpt.py's PromptLearner.sample draws them, (L, W) for type=global
 * and (L, b, W) for type=image with a batch of b images (a call whose batch
 * needs another count fails, naming both), until eps is NULL. */
ct_status ct_vpt_var_set_noise(void *state, const float *eps, int64_t n);

#endif
