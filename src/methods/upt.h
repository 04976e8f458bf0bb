/* UPT's machinery (upt.c), shared with MVLPT (mvlpt.c): both are
 * sIncerass/MVLPT trainers/mvlpt.py's MultitaskVLPromptLearner in its UPT
 * mode, the one single-task, the other multi-task. The state is upt.c's;
 * the functions are ct_method_upt's. */
#ifndef CT_METHODS_UPT_H
#define CT_METHODS_UPT_H

#include "cliptune.h"

ct_status ct_upt_create(const ct_task *task, const ct_kv *hp, void **out);
void ct_upt_destroy(void *st);
int ct_upt_params(void *st, ct_tensor **out, int cap);
int ct_upt_param_names(void *st, const char **out, int cap);
/* exp(logit_scale) cos(image, text) over all of task->n_classes, (B, K). */
ct_tensor *ct_upt_logits(void *st, ct_graph *g, const ct_batch *b);

#endif
