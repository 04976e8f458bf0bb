/* A private copy of a CLIP model's vision tower, stored flat, for methods
 * that fine-tune or re-weight the image tower next to the frozen original
 * (WiSE-FT): the copy's weights are views into one buffer (and, when
 * trainable, their gradients into another), so the whole tower is one
 * tensor for the optimiser, the run's learned tensors and weight-space
 * arithmetic. */
#ifndef CT_MODEL_VISION_COPY_H
#define CT_MODEL_VISION_COPY_H

#include "cliptune.h"

typedef struct ct_vision_copy {
    /* Usable wherever a ct_clip is (ct_clip_encode_image): the copy's vision
     * weights, the source's text tower and logit_scale (shared, not copied:
     * the source must outlive the copy). It lists no tensors of its own
     * (ct_clip_num_tensors is 0). */
    ct_clip *clip;
    ct_tensor *flat;  /* (n): every vision weight, in the source's tensor order */
    ct_tensor *views; /* (n_weights) the per-weight views, named as the source's */
    int n_weights;
} ct_vision_copy;

/* Copy src's vision tower ("visual.*" weights). trainable: every weight
 * requires grad, gradients in flat->grad. */
ct_status ct_vision_copy_create(const ct_clip *src, bool trainable, ct_vision_copy *out);
void ct_vision_copy_free(ct_vision_copy *c);
/* dst's weights = (1 - alpha) src + alpha b, weight by weight (WiSE-FT's
 * interpolation), b a copy of the same source (or dst itself). */
ct_status ct_vision_copy_mix(ct_vision_copy *dst, const ct_clip *src, const ct_vision_copy *b,
                             float alpha);

#endif
