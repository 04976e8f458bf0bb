/* MUST's internals the parity test reaches (tests/test_must.c). */
#ifndef CT_METHODS_MUST_H
#define CT_METHODS_MUST_H

#include "cliptune.h"

/* The training loss of one batch with a given patch mask (B, grid^2), 0 / 1:
 * weak (B, 3, S, S) is the EMA teacher's view, strong the student's.
 * parts (may be NULL) receives st, fair, mim, align and the number of
 * confident images. The logits of the student on the masked strong view
 * into *logits (may be NULL; a graph tensor (B, K)). */
ct_tensor *ct_must_loss_masked(void *state, ct_graph *g, const float *weak, const float *strong,
                               int64_t B, const float *mask, double parts[5], ct_tensor **logits);
/* The mask loss() draws for image i of a batch of seed: (grid^2) 0 / 1. */
void ct_must_draw_mask(void *state, uint64_t seed, int64_t i, float *mask);
/* A student (ema false) or teacher tower weight by its canonical name
 * ("visual.proj"), NULL when there is none. */
ct_tensor *ct_must_weight(void *state, bool ema, const char *name);

#endif
