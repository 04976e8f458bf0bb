/* Augmentation for contrastive pretraining from scratch on small, often
 * icon-like images, aimed at downstream data that looks different from the
 * pretraining images (grey 28x28 Fashion-MNIST, 8x8 digits, white-on-black
 * shapes). One call turns a decoded image of any size (plus its alpha plane,
 * when it has one: ct_image_load_alpha) into a size x size RGB image.
 *
 * The steps, in this order (each "p" is a probability in the config):
 *
 *  1. Crop box. ct_rrc_params (torchvision RandomResizedCrop.get_params,
 *     augment.h) with scale (scale_min, scale_max), default (0.5, 1.0): small
 *     images keep most of the object; ratio (3/4, 4/3).
 *  2. Foreground mask m(x, y) in 0..255, over the crop at source resolution:
 *       - alpha given: m = alpha;
 *       - else the background colour is estimated from the border (the
 *         outermost ring of the WHOLE image): B = per-channel median of the
 *         ring; if at least border_frac of the ring is within bg_tolerance of
 *         B (max over channels of |c - B|), m = 255 where a pixel differs
 *         from B by more than bg_tolerance, else 0; images under 3 px a side
 *         or with a non-uniform border have no mask.
 *     "Object" below means m >= 128. Without a mask, or with no object pixel
 *     inside the crop, steps 3a/3b are skipped (their draws are still made).
 *  3. Compositing, on the crop at source resolution (so before any alpha is
 *     dropped), first that applies:
 *     a. silhouette (silhouette_p): object pixels -> (g, g, g), everything
 *        else -> (0, 0, 0), with g uniform in 128..255. Exactly two levels
 *        before resizing.
 *     b. background (background_p): out = (c * m + bg * (255 - m) + 127) / 255
 *        (integer division) with bg either a solid colour c1 (probability
 *        1/2) or a linear gradient c1 -> c2 along a random direction a in
 *        [0, 2 pi): t = clamp(0.5 + ((x + 0.5 - W/2) cos a + (y + 0.5 - H/2)
 *        sin a) / (|W cos a| + |H sin a|), 0, 1), bg = round(c1 + (c2 - c1) t),
 *        (x, y) in source coordinates and W x H the source size; c1, c2 uniform
 *        over 0..255 per channel.
 *     c. alpha given, neither of the above: the same formula over the solid
 *        matte colour (default white), so transparent pixels never show the
 *        colour data hidden under alpha 0.
 *  4. Resize the crop to size x size with `resample` (ct_image_resize:
 *     Pillow's antialiased filter, bit-exact with torchvision on PIL).
 *  5. Horizontal flip (flip_p).
 *  6. Down-scaling (downscale_p): resize to s x s, s uniform in
 *     downscale_min..downscale_max, then back to size x size, both with
 *     `resample`; skipped when s >= size.
 *  7. Grey-scale (grey_p): Pillow's convert("L") (ITU-R 601-2 luma,
 *     L = (19595 R + 38470 G + 7471 B + 32768) >> 16) into all 3 channels, as
 *     torchvision's RandomGrayscale(num_output_channels=3) on PIL images.
 *  8. Inversion (invert_p): every channel x -> 255 - x.
 *
 * Random numbers: the crop box's draws first (their count varies with the
 * image size, never with the content), then always the same draws in a
 * fixed order: 6 uniform decisions (flip, background, silhouette, grey,
 * invert, down-scale), the background (kind, c1 r g b, c2 r g b, angle), the
 * silhouette level, the down-scale size. So the stream does not depend on
 * which ops fire, and setting one probability to 0 or 1 changes only that
 * op's effect. Results are deterministic in (image, alpha, cfg, rng state)
 * and independent of the thread count. */
#ifndef CT_DATA_PRETRAIN_AUG_H
#define CT_DATA_PRETRAIN_AUG_H

#include <stdbool.h>
#include <stdint.h>

#include "cliptune.h"
#include "data/augment.h"


typedef enum ct_fg_mask_kind {
    CT_FG_MASK_NONE = 0, /* no mask: silhouette and background skipped  */
    CT_FG_MASK_ALPHA,    /* from the alpha plane                          */
    CT_FG_MASK_BORDER    /* from the border-colour estimate               */
} ct_fg_mask_kind;

/* What one call did (for tests, logs and debugging). */
typedef struct ct_pretrain_aug_info {
    ct_crop_box box;       /* in source pixels                             */
    ct_fg_mask_kind mask;
    bool silhouette, background, flipped, grey, inverted;
    int downscale;         /* the intermediate side, or 0 when not applied */
} ct_pretrain_aug_info;

/* out = a new size x size image (zeroed on failure). alpha: src->h * src->w
 * bytes or NULL (opaque). info may be NULL. CT_ERR_ARG on a bad config
 * (probabilities outside [0, 1], downscale_min < 1 or > downscale_max,
 * bg_tolerance outside 0..255, border_frac outside (0, 1], or what
 * ct_rrc_params refuses). */
ct_status ct_pretrain_augment(const ct_image *src, const uint8_t *alpha,
                              const ct_pretrain_aug_cfg *cfg, ct_rng *rng, ct_image *out,
                              ct_pretrain_aug_info *info);

/* The pointwise steps on their own, in place. */
void ct_image_to_grey(ct_image *img);  /* step 7 */
void ct_image_invert(ct_image *img);   /* step 8 */

/* Step 2's border estimate for the whole image: true with *bg set when the
 * border is uniform enough (see above), false otherwise. */
bool ct_border_background(const ct_image *img, int tolerance, float border_frac, uint8_t bg[3]);

#endif
