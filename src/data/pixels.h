/* Pixel batches: (dataset, transform, seed, view) -> preprocessed pixels
 * (B, 3, S, S), the one place images become model input. Feature
 * extraction, the trainer's pixel path, WiSE-FT, TPT, pretraining's
 * retrieval check and the CLI read images through it.
 *
 *   evaluation transform (aug NULL): the model's preprocessing (resize,
 *     centre crop, normalise), checked to give S x S;
 *   training transform (aug set): ct_augment_train (random resized crop +
 *     flip as the official codes' Dassl / open_clip configs) to S x S, then
 *     only the normalisation of the model's preprocessing;
 *   test-time views (augmix set, TPT): view 0 the evaluation transform,
 *     later views AugMix's (src/data/augmix.h).
 *
 * Item i of view v draws its augmentation from a generator seeded with
 * hash(hash(seed, v), i): a pure function of (seed, view, item), whatever
 * the batch composition, thread count or resume point. Images are decoded
 * and transformed in parallel (OpenMP); the first failing item's message
 * reaches the caller on the calling thread. */
#ifndef CT_DATA_PIXELS_H
#define CT_DATA_PIXELS_H

#include "cliptune.h"
#include "data/augment.h"
#include "data/augmix.h"

typedef struct ct_pixel_src {
    const ct_dataset *data;
    const ct_preprocess_cfg *pre; /* the model's preprocessing             */
    int size;                     /* S: the model's input side             */
    const ct_augment_cfg *aug;    /* NULL: the evaluation transform        */
    uint64_t seed;                /* augmentation stream (aug only)        */
    const char *what;             /* prefix of error messages, or NULL      */
    /* TPT's AugMixAugmenter (instead of aug): view 0 is the evaluation
     * transform, views >= 1 AugMix views (ct_augmix_view) drawn from the
     * same (seed, view, item) stream; NULL: none */
    const ct_augmix_cfg *augmix;
} ct_pixel_src;

/* An image already decoded (item i, for the augmentation stream) into px
 * (3, S, S) under view. */
ct_status ct_pixels_from_image(const ct_pixel_src *src, const ct_image *img, int64_t i,
                               uint64_t view, float *px);
/* Item idx into px (3, S, S) under view (aug only). */
ct_status ct_pixels_item(const ct_pixel_src *src, int64_t idx, uint64_t view, float *px);
/* Items idx[0..n) into px (n, 3, S, S), in parallel. */
ct_status ct_pixels_batch(const ct_pixel_src *src, const int64_t *idx, int64_t n, uint64_t view,
                          float *px);
/* Items i0 .. i0 + n - 1 (consecutive), as ct_pixels_batch. */
ct_status ct_pixels_range(const ct_pixel_src *src, int64_t i0, int64_t n, uint64_t view,
                          float *px);

/* Segmentation datasets (d->masks): the items as ct_pixels_batch /
 * ct_pixels_range give them, and each item's label map
 * (ct_label_map_load_for) through the same geometry into masks (n, S, S):
 * the evaluation transform's resize and centre crop
 * (ct_preprocess_label_map), or the training transform's crop box, a
 * nearest-neighbour resize to S x S and the same flip. Pixels no part of
 * the map lands on are 255 (ignored). Not with augmix. */
ct_status ct_pixels_batch_masks(const ct_pixel_src *src, const int64_t *idx, int64_t n,
                                uint64_t view, float *px, uint8_t *masks);
ct_status ct_pixels_range_masks(const ct_pixel_src *src, int64_t i0, int64_t n, uint64_t view,
                                float *px, uint8_t *masks);

/* A training transform by name, for the "train_aug" hyper-parameter of
 * pixel methods: "rrc_flip" (CoOp/Dassl: RandomResizedCrop(S, scale
 * (scale_min, 1)) + horizontal flip p 0.5), "rrc" (the same without the
 * flip: open_clip's training transform, WiSE-FT) or "none" (the evaluation
 * transform; *use_aug is then false). */
ct_status ct_pixels_aug_from_name(const char *name, double scale_min, int size,
                                  ct_augment_cfg *aug, bool *use_aug);

#endif
