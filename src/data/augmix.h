/* AugMix views as TPT's data/datautils.py and data/augmix_ops.py make them
 * (azshue/TPT; the ops are google-research/augmix's, at severity 1 there):
 *
 *   x_orig = RandomHorizontalFlip(RandomResizedCrop(S)(image))   [PIL]
 *   if no op list: return preprocess(x_orig)
 *   w ~ Dirichlet(1, 1, 1), m ~ Beta(1, 1)
 *   mix = sum_i w_i * preprocess(chain_i(x_orig)),  chain_i = 1..3 random ops
 *   return m * preprocess(x_orig) + (1 - m) * mix
 *
 * where preprocess = ToTensor + Normalize and the ops are Pillow's
 * autocontrast, equalize, posterize, rotate, solarize, shear x/y and
 * translate x/y. RandomResizedCrop is torchvision's default (scale 0.08-1,
 * ratio 3/4-4/3, bilinear) on the original image; the crop size S stands in
 * for augmix_ops.py's IMAGE_SIZE = 224 (its "ImageNet code should change
 * this value"): shear and translate write S x S, translate moves up to S/3
 * x level/10 pixels.
 *
 * Each op is ported from Pillow 9.4 (ImageOps' lookup tables;
 * Image.rotate / Image.transform's AFFINE with BILINEAR, Geometry.c's
 * bilinear_filter32RGB and black fill) and checked against it pixel for
 * pixel (tests/test_tpt.c). Random numbers come from a ct_rng, drawn in the
 * official order but not numpy's or torch's numbers. */
#ifndef CT_DATA_AUGMIX_H
#define CT_DATA_AUGMIX_H

#include "cliptune.h"

typedef enum ct_augmix_op {
    CT_AUGMIX_AUTOCONTRAST,
    CT_AUGMIX_EQUALIZE,
    CT_AUGMIX_POSTERIZE,   /* v: bits kept (1..8)                          */
    CT_AUGMIX_ROTATE,      /* v: degrees, counter-clockwise                */
    CT_AUGMIX_SOLARIZE,    /* v: threshold (values >= v are inverted)      */
    CT_AUGMIX_SHEAR_X,     /* v: shear factor                              */
    CT_AUGMIX_SHEAR_Y,
    CT_AUGMIX_TRANSLATE_X, /* v: pixels (output x samples input x + v)     */
    CT_AUGMIX_TRANSLATE_Y,
    CT_AUGMIX_N_OPS
} ct_augmix_op;

/* One op with its magnitude v already drawn, as augmix_ops.py calls Pillow;
 * dst is a new image of src's size (zeroed on failure). */
ct_status ct_augmix_apply(const ct_image *src, ct_augmix_op op, double v, ct_image *dst);

/* An op's magnitude as augmix_ops.py draws it at severity `severity` for a
 * size x size image (level = uniform(0.1, severity), then the op's scaling,
 * integer truncation and random sign). autocontrast / equalize draw
 * nothing and give 0. */
double ct_augmix_draw(ct_augmix_op op, int severity, int size, ct_rng *rng);

/* One TPT view of src into out (3, size, size): the crop and flip, then
 * (with mix) the AugMix combination, normalised with norm (resize and crop
 * off: only the rescale/mean/std of the model's preprocessing are used). */
/* TPT's AugMixAugmenter settings, for a pixel source (src/data/pixels.h). */
typedef struct ct_augmix_cfg {
    int severity; /* augmix_ops.py's severity (1 in TPT)                    */
    bool mix;     /* the AugMix combination (false: crop and flip only)     */
} ct_augmix_cfg;

ct_status ct_augmix_view(const ct_image *src, const ct_preprocess_cfg *norm, int size,
                         int severity, bool mix, ct_rng *rng, float *out);

#endif
