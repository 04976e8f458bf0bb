/* CLIP's weights as the library's layers see them. */
#ifndef CT_MODEL_CLIP_H
#define CT_MODEL_CLIP_H

#include "nn/transformer.h"
#include "cliptune.h"

#define CT_CLIP_MAX_TENSORS 1024

struct ct_clip {
    ct_clip_config cfg;
    /* vision tower */
    ct_tensor *patch_w;            /* (W, 3, p, p)      */
    ct_tensor *class_emb;          /* (W)               */
    ct_tensor *vpos;               /* (grid^2 + 1, W)   */
    ct_tensor *ln_pre_w, *ln_pre_b, *ln_post_w, *ln_post_b;
    ct_tensor *vproj;              /* (E, W), Linear layout */
    ct_block *vblocks;
    /* text tower */
    ct_tensor *tok_emb;            /* (V, W)            */
    ct_tensor *tpos;               /* (ctx, W)          */
    ct_tensor *ln_final_w, *ln_final_b;
    ct_tensor *tproj;              /* (E, W)            */
    ct_block *tblocks;
    ct_tensor *logit_scale;        /* (1)               */
    ct_precision precision;        /* of inference (ct_clip_set_precision) */
    /* every tensor above, with its canonical name, for enumeration/free */
    int n_tensors;
    ct_tensor *tensors[CT_CLIP_MAX_TENSORS];
    char *names[CT_CLIP_MAX_TENSORS];
};

/* clip_config.c */
ct_status ct_clip_config_from_openai(const ct_safetensors *st, const char *path,
                                     const ct_clip_load_opts *opts, ct_clip_config *cfg);

#endif
