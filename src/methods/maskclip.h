/* MaskCLIP (Zhou, Loy, Dai, "Extract Free Dense Labels from CLIP", ECCV
 * 2022): patch-level zero-shot labels from CLIP's value-path dense features
 * (ct_features.dense of kind CT_DENSE_VALUE, ct_clip_encode_image_kind),
 * after the official chongzhou96/MaskCLIP:
 *   - mmseg/models/decode_heads/maskclip_head.py MaskClipHead: cls_seg (the
 *     text embeddings as a 1x1 convolution over unit features: cosines, no
 *     logit scale) and refine_output (prompt denoising, then key smoothing);
 *   - tools/maskclip_utils/prompt_engineering.py: the class embeddings, 85
 *     templates ("maskclip85": the 80 ImageNet ones + 5 scene ones), each
 *     prompt's embedding normalised, averaged, renormalised.
 * Library-internal; the method registration and segmentation runs build on
 * these. */
#ifndef CT_METHODS_MASKCLIP_H
#define CT_METHODS_MASKCLIP_H

#include <stdbool.h>
#include <stdint.h>

#include "cliptune.h"

#define MASKCLIP_TEMPLATES "maskclip85"

typedef struct maskclip_cfg {
    /* prompt denoising, > 0 on: with p = softmax_k(100 logits) per patch, a
     * class whose largest p over the image's patches is below pd_thresh
     * gets logit -100 at every patch (the official's value when on: 0.5) */
    float pd_thresh;
    /* key smoothing, > 0 on (needs keys): p = softmax_k(100 logits); every
     * patch whose largest p is below ks_thresh is replaced by sum_j w_ij p_j
     * with w = k̂ k̂ᵀ (the official's value when on: 1.0, i.e. every patch
     * but fully saturated ones). The output is then probabilities. */
    float ks_thresh;
    /* how k̂ is normalised: false (the official): F.normalize(k, p=2) on
     * k (N, HW, C), whose default dim=1 is the patch axis, so each key
     * channel is unit over the patches and w is not a cosine; true: each
     * patch's key unit (the paper's "cosine similarity of keys") */
    bool ks_cosine;
} maskclip_cfg;

/* The official's defaults for the head: both refinements off. */
maskclip_cfg maskclip_cfg_default(void);

/* The class embeddings (task->n_classes, E), unit rows, from the templates
 * spec (ct_resolve_templates; NULL: MASKCLIP_TEMPLATES) and the task's text
 * tower and tokenizer. */
ct_status maskclip_text_embeddings(const ct_task *task, const char *templates, float *out);

/* Patch logits of B images.
 *   value (B, T, E): value-path features of every token (ct_features.dense,
 *     CT_DENSE_VALUE); rows first .. T-1 are the patches (first = 1 skips
 *     the class token), P = T - first of them, row-major over the grid;
 *   keys (B, T, Wk): the last block's keys (ct_features.dense_keys), or
 *     NULL (then ks_thresh must be 0);
 *   text (K, E): class embeddings (unit rows, as maskclip_text_embeddings;
 *     used as given, as the official's buffer is);
 *   out (B, P, K): cos(value_p, text_k), with the classes prompt denoising
 *     drops at -100; with key smoothing, the smoothed probabilities.
 * cfg NULL: maskclip_cfg_default(). */
ct_status maskclip_patch_logits(const float *value, const float *keys, int64_t B, int T, int E,
                                int Wk, int first, const float *text, int K,
                                const maskclip_cfg *cfg, float *out);

#endif
