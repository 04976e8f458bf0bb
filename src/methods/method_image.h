/* Helpers shared by the image-side prompt methods (ivlp.c, maple.c, vp.c):
 * learnable tensors initialised as the official codes do, the pixels of a
 * batch as a graph tensor, and the clipped prompt depth. */
#ifndef CT_METHODS_IMAGE_H
#define CT_METHODS_IMAGE_H

#include "cliptune.h"

/* A (rows, cols) leaf requiring grad, named, N(0, std) from a stream of
 * (seed, tag, index) (nn.init.normal_ / torch.randn when std is 1). NULL on
 * allocation failure (error set). */
ct_tensor *ct_param_normal(int64_t rows, int64_t cols, float std, uint64_t seed, const char *tag,
                           int index, const char *name);
/* nn.Linear's default initialisation: U(-1/sqrt(in), 1/sqrt(in)) for both
 * w (out, in) and b (out) (kaiming_uniform with a = sqrt(5), and the bias
 * bound), from a stream of (seed, tag). */
ct_status ct_param_linear_init(ct_tensor *w, ct_tensor *b, uint64_t seed, const char *tag);
/* The batch's pixels (n, 3, S, S) as a graph tensor (no gradient);
 * NULL with an error when the batch has none. */
ct_tensor *ct_batch_pixels(ct_graph *g, int64_t S, const ct_batch *b,
                           const char *method);
/* Prompt depth for a tower of n_layers: depth > n_layers means every layer
 * (the official depths are for 12-layer towers). */
int ct_prompt_depth(int depth, int n_layers);
/* CLIP's logits from image embeddings (n, E) (normalised here) and
 * normalised class features (K, E): exp(logit_scale) * cos, (n, K). */
ct_tensor *ct_image_text_scores(ct_graph *g, const ct_clip *clip, ct_tensor *img,
                                ct_tensor *txt);
/* Mean cross-entropy of logits (n, K) against the batch's labels. */
ct_tensor *ct_batch_ce(ct_graph *g, ct_tensor *logits, const ct_batch *b);

#endif
