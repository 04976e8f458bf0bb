/* Helpers shared by the method plug-ins. */
#ifndef CT_METHODS_COMMON_H
#define CT_METHODS_COMMON_H

#include "cliptune.h"

/* Zero-shot class embeddings as CLIP builds them: for each class, encode
 * every template filled with the class name, L2-normalise each, average, and
 * renormalise. out: (n_classes, E) floats, row-major. */
ct_status ct_class_text_embeddings(const ct_task *task, const char *const *templates, int n_tmpl,
                                   float *out);

/* Resolve a "templates" hyper-parameter: "dataset" (CoOp's one template for
 * the task's dataset), "imagenet80" / "imagenet-select" (built-in
 * ensembles), a path to a file of templates, or a literal template
 * containing "{}". *owned (to free with ct_templates_free) is set when
 * strings were allocated. */
ct_status ct_resolve_templates(const ct_task *task, const char *spec, const char *const **out,
                               int *n, char ***owned);

/* The zero-shot classifier (n_classes, E) that adapter-style methods build on:
 *   - zs_path non-empty: read from that .npy (float32, shape (n_classes, E)):
 *     a classifier computed elsewhere (another prompt set, an "enhanced
 *     base"), or a test's fixed weights; no text encoder or tokenizer needed;
 *   - else from the templates spec (ct_resolve_templates) and the text tower.
 * unit: L2-normalised rows (CLIP's classifier as ct_class_text_embeddings
 * builds it; an .npy's rows are normalised too). !unit: the mean of the raw,
 * unnormalised template embeddings (TaskRes's base classifier); an .npy is
 * then taken as it is. */
ct_status ct_zeroshot_classifier(const ct_task *task, const char *zs_path, const char *templates,
                                 bool unit, float *out);

/* The temperature a method puts on zero-shot cosine logits, from the
 * hyper-parameter key (value "model": the model's own exp(logit_scale),
 * 100 for OpenAI's checkpoints; or a finite number, e.g. 100 for what
 * official code that hard-codes OpenAI's value computes). who names the
 * method in errors. */
ct_status ct_kv_clip_scale(ct_kv *hp, const char *key, const ct_task *task, const char *who,
                           float *out);

/* Scores (n, K) of the feature rows x (n, E), computed without gradient in
 * chunks of `chunk` rows by fn on the private graph eg (reset around each
 * chunk) and copied into a tensor of g: evaluation of methods whose graph
 * per image is large (CoCoOp's and vpt-var's K prompts per image). NULL
 * with the error prefixed by who. */
typedef ct_tensor *(*ct_rows_scores_fn)(void *state, ct_graph *g, const float *x, int64_t n);
ct_tensor *ct_scores_chunked(ct_graph *g, ct_graph *eg, const float *x, int64_t n, int64_t E,
                             int64_t K, int64_t chunk, ct_rows_scores_fn fn, void *state,
                             const char *who);

/* A line of the task's log (task->log), printf-style; nothing without a log. */
void ct_task_logf(const ct_task *task, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
