/* DenseCLIP's pieces (denseclip.c), for the reference tests. */
#ifndef CT_METHODS_DENSECLIP_H
#define CT_METHODS_DENSECLIP_H

#include "cliptune.h"

/* A trained image-tower weight by its canonical name ("visual.proj", ...):
 * a view into the state's backbone copy (data and grad). NULL if none. */
ct_tensor *ct_denseclip_weight(void *state, const char *name);
/* The pixel-text score map (B, K, g, g) of a batch's pixels, evaluation
 * mode (no dropout, batch norms on their running statistics). */
ct_tensor *ct_denseclip_score_map(void *state, ct_graph *g, const ct_batch *b);

#endif
