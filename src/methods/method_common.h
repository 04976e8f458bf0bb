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

#endif
