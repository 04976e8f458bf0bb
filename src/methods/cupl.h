/* CuPL internals (src/methods/cupl.c), and the per-class sentence files that
 * CuPL and VCD (vcd.c) both read.
 *
 * The file is JSON, {"class name": ["sentence", ...], ...}: CuPL's generated
 * prompt files (sarahpratt/CuPL all_prompts/ files) and VCD's descriptor
 * files (classify_by_description_release descriptors/ files) both have this
 * shape. See data/descriptors/README.md. */
#ifndef CT_METHODS_CUPL_H
#define CT_METHODS_CUPL_H

#include "cliptune.h"

/* The texts of every class of a task, in the task's label order. */
typedef struct ct_class_texts {
    int n_classes;
    int *off;     /* (n_classes + 1): class k's texts are texts[off[k] .. off[k+1]) */
    char **texts; /* (off[n_classes]) strings, each malloc'ed                       */
} ct_class_texts;

/* Read path and pick each class's list: the key equal to classnames[k],
 * else the one equal ignoring ASCII case, else the one equal ignoring case
 * with '_' read as ' ' (keys no class picks are ignored, as VCD's loader
 * skips them). Every entry must be a non-empty list of strings. ctx starts
 * every message (e.g. "cupl: descriptions=x.json"); errors name the key or
 * the class with no entry. On failure *out is zeroed. */
ct_status ct_class_texts_load(const char *path, const char *ctx, int n_classes,
                              char *const *classnames, ct_class_texts *out);
void ct_class_texts_free(ct_class_texts *t);

/* Projected text embeddings out (n, E), not normalised, of texts tokenised
 * as clip.tokenize(texts, truncate=truncate), encoded in chunks. Without
 * truncate a text longer than the context is an error starting with ctx. */
ct_status ct_encode_texts(const ct_task *task, const char *const *texts, int n, bool truncate,
                          const char *ctx, float *out);

/* CuPL's class weight from the raw embeddings emb (n, E) of its sentences:
 * out (E) = normalize(mean_i normalize(emb_i)), computed with the same ops
 * as the zero-shot classifier. */
ct_status ct_cupl_class_weight(const float *emb, int n, int E, float *out);

/* A "cupl" state over given class weights W (K, E) (copied) and scale =
 * exp(logit_scale): the create() path after encoding, for tests that inject
 * embeddings. Use with ct_method_cupl's logits and destroy. */
ct_status ct_cupl_state_new(const float *W, int K, int E, float scale, void **state);

#endif
