/* IVLP's prompt learner and encoders (ivlp.c), shared with PromptSRC, which
 * is IVLP plus its regularisers. */
#ifndef CT_METHODS_IVLP_H
#define CT_METHODS_IVLP_H

#include "cliptune.h"

typedef struct ct_ivlp ct_ivlp;

/* From the hp keys n_ctx, n_ctx_vision, text_depth, vision_depth, ctx_init,
 * shared_prefix, prec, template (ivlp.c's top comment). */
ct_status ct_ivlp_create(const ct_task *task, const ct_kv *hp, void **out);
void ct_ivlp_destroy(void *state);
/* The context, the deep text prompts, the vision prompts. */
int ct_ivlp_params(void *state, ct_tensor **out, int cap);
/* Their names, the official keys (ivlp.c's top comment), in the same order;
 * valid while the state lives. */
int ct_ivlp_param_names(void *state, const char **out, int cap);
/* Normalised class features (K, E) under the current prompts. */
ct_tensor *ct_ivlp_text(ct_ivlp *s, ct_graph *g);
/* The prompted image embeddings (n, E) of a pixel batch, not normalised. */
ct_tensor *ct_ivlp_image(ct_ivlp *s, ct_graph *g, const ct_batch *b);
/* exp(logit_scale) * cos(image, text): (n, K). */
ct_tensor *ct_ivlp_logits(void *state, ct_graph *g, const ct_batch *b);

#endif
