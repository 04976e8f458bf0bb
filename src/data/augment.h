/* Training-time augmentation as CoOp's configs use it (Dassl's
 * build_transform with INPUT.TRANSFORMS = ["random_resized_crop",
 * "random_flip", "normalize"], INTERPOLATION "bicubic"):
 *
 *   RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3/4, 4/3), BICUBIC)
 *   RandomHorizontalFlip(p=0.5)
 *
 * The crop box follows torchvision's RandomResizedCrop.get_params step for
 * step (10 tries, then a centre crop with the aspect ratio clamped), the
 * crop is then resized with Pillow's filter (ct_image_resize), as
 * torchvision's resized_crop does on PIL images. Random numbers come from a
 * ct_rng, so results are deterministic in the generator's state but are not
 * torch's numbers. Normalisation is left to ct_preprocess (no resize, no
 * crop). */
#ifndef CT_DATA_AUGMENT_H
#define CT_DATA_AUGMENT_H

#include "cliptune.h"
#include "cliptune.h"
#include "cliptune.h"

typedef struct ct_augment_cfg {
    int size;                   /* output is size x size                   */
    double scale_min, scale_max; /* crop area / image area                  */
    double ratio_min, ratio_max; /* crop width / height                     */
    ct_resample resample;
    float flip_p;               /* probability of a horizontal flip        */
} ct_augment_cfg;

/* CoOp's defaults for an output of size x size (224 for ViT-B/16). */
void ct_augment_cfg_coop(ct_augment_cfg *cfg, int size);

/* A crop box: x, y the top-left corner (torchvision's j, i), w x h. */
typedef struct ct_crop_box {
    int x, y, w, h;
} ct_crop_box;

/* torchvision's RandomResizedCrop.get_params for a w x h image. Each try
 * draws the area fraction and log-ratio uniformly, rounds the box sides
 * half to even (Python's round) and, when the box fits, its position
 * uniformly; after 10 misses, the centre crop with the ratio clamped to
 * [ratio_min, ratio_max]. The number of draws taken from rng varies. */
ct_status ct_rrc_params(int w, int h, const ct_augment_cfg *cfg, ct_rng *rng, ct_crop_box *box);

/* dst = src[box] (copied). The box must lie inside src. */
ct_status ct_image_crop(const ct_image *src, const ct_crop_box *box, ct_image *dst);
/* Mirror left-right in place. */
void ct_image_hflip(ct_image *img);

/* The whole training transform: crop box, crop, resize to size x size with
 * cfg->resample, then flip when a uniform draw is < flip_p. out is a new
 * image (zeroed on failure). box (may be NULL) receives the crop box and
 * flipped (may be NULL) whether it flipped. */
ct_status ct_augment_train(const ct_image *src, const ct_augment_cfg *cfg, ct_rng *rng,
                           ct_image *out, ct_crop_box *box, bool *flipped);

#endif
