/* The official repositories' checkpoint layouts of the methods' learned
 * tensors: `cliptune export --format official` writes them, `cliptune import`
 * reads them (PyTorch .pth or safetensors). */
#ifndef CT_API_OFFICIAL_H
#define CT_API_OFFICIAL_H

#include "cliptune.h"

/* Methods whose learned tensors are named (param_names) as the official
 * repository's checkpoint names them, with what the official checkpoint
 * holds differently: tensors it does not save (skip: a name prefix) and
 * tensors saved with a leading batch axis of 1 (unsqueeze: exact names). */
typedef struct ct_official_layout {
    const char *method, *repo, *module;
    const char *skip;            /* name prefix of tensors left out, or NULL */
    const char *unsqueeze[4];    /* names saved as (1, ...) officially       */
} ct_official_layout;

/* The layout of method, or NULL when none is known. */
const ct_official_layout *ct_official_layout_of(const char *method);
/* The names listed above, for messages. */
#define CT_OFFICIAL_METHODS                                                                  \
    "coop, cocoop, kgcoop, prograd, maple, ivlp, vpt-deep, promptsrc, lasp, upl, tpt, "      \
    "clip-adapter, taskres, clip-lora, vp"

/* Write the method's learned tensors as the official checkpoint holds them
 * (keys, shapes, o->skip left out) to a safetensors file at path, with the
 * method, repository, module, hyper-parameters and model hash as metadata. */
ct_status ct_official_export(const ct_method *m, void *state, const char *path,
                             const char *hyper_parameters, uint64_t model_hash);

/* Load the method's learned tensors (by their param_names) from a checkpoint
 * of the official code: a PyTorch .pth / .pth.tar (torch.save, zip or legacy
 * format; a Dassl checkpoint's "state_dict" is looked into) or a
 * safetensors file with the official keys (cliptune export --format
 * official). Each tensor must be there with the method's shape (up to the
 * official leading axis of 1); tensors the official code does not save keep
 * their initial values. *n_loaded gets the count. */
ct_status ct_official_import(const ct_method *m, void *state, const char *path, int *n_loaded);

#endif
