/* CLIP's weights as the library's layers see them. */
#ifndef CT_MODEL_CLIP_H
#define CT_MODEL_CLIP_H

#include "nn/transformer.h"
#include "cliptune.h"

#define CT_CLIP_MAX_TENSORS 4096 /* RN50x64: ~1,300 vision tensors */

/* Frozen (eval-mode) batch norm: affine weight/bias and running stats (C). */
typedef struct ct_rn_bn {
    ct_tensor *w, *b, *mean, *var;
} ct_rn_bn;

/* One Bottleneck of OpenAI's ModifiedResNet: 1x1, 3x3, [avgpool(stride)],
 * 1x1 (x4 channels); the shortcut AvgPool(stride) -> 1x1 conv -> BN when
 * ds_conv is set. */
typedef struct ct_rn_block {
    ct_tensor *conv1, *conv2, *conv3, *ds_conv; /* (P, Cin, 1, 1) (P, P, 3, 3) (4P, P, 1, 1)
                                                 * (4P, Cin, 1, 1) or NULL */
    ct_rn_bn bn1, bn2, bn3, ds_bn;
    int stride;
} ct_rn_block;

/* The ModifiedResNet tower (cfg.vision_resnet_layers[0] > 0). */
typedef struct ct_rn {
    ct_tensor *conv[3];   /* stem: (w/2, 3, 3, 3) stride 2, (w/2, w/2, 3, 3), (w, w/2, 3, 3) */
    ct_rn_bn bn[3];
    ct_rn_block *blocks;  /* n_blocks, layer1..layer4 in order */
    int n_blocks;
    /* AttentionPool2d, C = 32 w */
    ct_tensor *pos;                   /* (grid^2 + 1, C) */
    ct_tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b; /* (C, C), (C) */
    ct_tensor *c_w, *c_b;             /* (E, C), (E)     */
} ct_rn;

struct ct_clip {
    ct_clip_config cfg;
    /* vision tower */
    ct_tensor *patch_w;            /* (W, 3, p, p)      */
    ct_tensor *class_emb;          /* (W)               */
    ct_tensor *vpos;               /* (grid^2 + 1, W)   */
    ct_tensor *ln_pre_w, *ln_pre_b, *ln_post_w, *ln_post_b;
    ct_tensor *vproj;              /* (E, W), Linear layout */
    ct_block *vblocks;
    ct_rn rn;                      /* ResNet tower; rn.blocks NULL for a ViT */
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

static inline bool ct_clip_is_resnet(const ct_clip *m) {
    return m->cfg.vision_resnet_layers[0] > 0;
}

/* clip_resnet.c: the ModifiedResNet image tower (ct_clip_encode_image's
 * ResNet branch; arguments as encode_image's). */
ct_tensor *ct_clip_rn_encode(ct_graph *g, const ct_clip *m, ct_tensor *pixels,
                             const ct_clip_hooks *hooks, ct_dense_kind kind, bool want_dense,
                             ct_clip_image_out *out);
/* The address of every tensor pointer of the ResNet tower (stem, blocks'
 * convs and batch norms, attention pooling), NULL ones (identity shortcuts)
 * included; out may be NULL to count. */
int ct_clip_rn_fields(ct_rn *rn, ct_tensor ***out);

/* clip_config.c */
ct_status ct_clip_config_from_openai(const ct_safetensors *st, const char *path,
                                     const ct_clip_load_opts *opts, ct_clip_config *cfg);

#endif
