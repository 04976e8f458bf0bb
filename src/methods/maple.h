/* MaPLe's prompt learner for methods built on it (protect.c: ProTeCt on
 * MaPLe). The state is maple.c's, made for a task's classes (or any names:
 * the learned tensors do not depend on them). */
#ifndef CT_METHODS_MAPLE_H
#define CT_METHODS_MAPLE_H

#include "cliptune.h"

ct_status ct_maple_create(const ct_task *task, const ct_kv *hp, void **state);
void ct_maple_destroy(void *state);
int ct_maple_params(void *state, ct_tensor **out, int cap);
int ct_maple_param_names(void *state, const char **out, int cap);
/* The batch's image embeddings (n, E) through the prompted image tower
 * (not normalised), in g. */
ct_tensor *ct_maple_image_features(void *state, ct_graph *g, const ct_batch *b);
/* The classes' prompted text features (K, E), normalised, in g. */
ct_tensor *ct_maple_text_features(void *state, ct_graph *g);

#endif
