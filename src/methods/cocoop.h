/* CoCoOp's prompt learner and its per-image text encoding (cocoop.c),
 * shared by cocoop and CPL (cpl.c, counterfactual prompt learning on top of
 * CoCoOp). The state is cocoop.c's; create reads CoCoOp's keys (n_ctx,
 * ctx_init, meta_div, shared_prefix, prec). */
#ifndef CT_METHODS_COCOOP_H
#define CT_METHODS_COCOOP_H

#include "cliptune.h"

ct_status ct_cocoop_create(const ct_task *task, const ct_kv *hp, void **out);
void ct_cocoop_destroy(void *state);
/* ctx, meta_net.linear1.weight / bias, meta_net.linear2.weight / bias */
int ct_cocoop_params(void *state, ct_tensor **out, int cap);
int ct_cocoop_param_names(void *state, const char **out, int cap);
/* Normalised text features (n, K, E) of each image's K prompts (context
 * shifted by the Meta-Net of that image), img (n, E) the normalised image
 * features. */
ct_tensor *ct_cocoop_text(void *state, ct_graph *g, ct_tensor *img);
/* the model's logit_scale (a frozen scalar tensor; CLIP's temperature is
 * its exp) */
ct_tensor *ct_cocoop_logit_scale(void *state);
/* CoCoOp's logits (n, K) of a batch of features (chunked on a private graph
 * when g records no gradient) */
ct_tensor *ct_cocoop_logits(void *state, ct_graph *g, const ct_batch *b);

#endif
