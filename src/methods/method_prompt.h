/* The CoOp prompt learner (method_prompt.c), shared by coop, kgcoop and
 * prograd: the learned context, the text encoder over the class prompts and
 * CLIP's logits. */
#ifndef CT_METHODS_PROMPT_H
#define CT_METHODS_PROMPT_H

#include "cliptune.h"

typedef struct ct_prompt ct_prompt;

/* CoOp's prompt learner from the hp keys n_ctx, shared_prefix, ctx_init, csc,
 * class_token_position and prec (coop.c). pad_to > 0 (ProGrad's layout): a
 * ctx_init of w words becomes the prompt "X x (pad_to - w) {ctx_init}
 * {name}." with n_ctx = pad_to generic context vectors, zero except the last
 * w, which are the token embeddings at positions 1..w of ctx_init. */
ct_status ct_prompt_create(const ct_task *task, const ct_kv *hp, int pad_to, void **out);
/* pad_to for MaPLe's and IVLP's layout: with ctx_init and n_ctx <= 4 the
 * prompt is "{ctx_init} {name}." and its first n_ctx tokens are learned
 * (initialised to their embeddings); otherwise n_ctx vectors N(0, 0.02) in
 * "X ... X {name}." */
#define CT_PROMPT_FIRST_N (-1)
void ct_prompt_destroy(void *state);
int ct_prompt_params(void *state, ct_tensor **out, int cap);
/* Its name, "ctx": the key of KaiyangZhou/CoOp trainers/coop.py's saved
 * prompt_learner state dict (ct_method.param_names). */
int ct_prompt_param_names(void *state, const char **out, int cap);
/* the learned context tensor */
ct_tensor *ct_prompt_ctx(ct_prompt *s);
/* normalised text features (K, E) under the current context */
ct_tensor *ct_prompt_text_features(ct_prompt *s, ct_graph *g);
/* the same before normalisation */
ct_tensor *ct_prompt_text_features_raw(ct_prompt *s, ct_graph *g);
/* the same with deep text prompts (NULL: none) replacing the context
 * positions 1 .. P' before the deeper blocks (IVLP, MaPLe) */
ct_tensor *ct_prompt_text_features_deep(ct_prompt *s, ct_graph *g, const ct_deep_prompts *deep);
/* the same with ctx (the shape of ct_prompt_ctx; NULL: the learned one) in
 * the context's place: a context computed from other learnables (UPT) */
ct_tensor *ct_prompt_text_features_with(ct_prompt *s, ct_graph *g, ct_tensor *ctx,
                                        const ct_deep_prompts *deep);
/* exp(logit_scale) * normalize(img) @ txt^T (txt normalised): (n, K) */
ct_tensor *ct_prompt_scores(ct_prompt *s, ct_graph *g, const ct_batch *b, ct_tensor *txt);
/* CoOp's cross-entropy loss and logits (cached while the context is unchanged) */
ct_tensor *ct_prompt_loss(void *state, ct_graph *g, const ct_batch *b);
ct_tensor *ct_prompt_logits(void *state, ct_graph *g, const ct_batch *b);
/* Normalised CLIP text features (K, E) of tmpl.format(classname) for every
 * class, into out (K * E floats). */
ct_status ct_prompt_zeroshot_text(const ct_task *task, const char *tmpl, float *out);

#endif
