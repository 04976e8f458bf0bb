#include "data/pixels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"

/* Item i's image into px; with map (the image's label map, same size) its
 * mask (S, S) through the same geometry into mask. */
static ct_status from_image(const ct_pixel_src *src, const ct_image *img, int64_t i,
                            uint64_t view, float *px, const uint8_t *map, uint8_t *mask) {
    const char *what = src->what ? src->what : "pixels";
    int S = src->size;
    ct_status s = CT_OK;
    if (src->augmix && view > 0) {
        ct_rng rng;
        ct_rng_init(&rng, ct_hash_u64(ct_hash_u64(src->seed, view), (uint64_t)i));
        return ct_augmix_view(img, src->pre, S, src->augmix->severity, src->augmix->mix, &rng,
                              px);
    }
    if (!src->aug || src->augmix) {
        int oh, ow;
        s = ct_preprocess_out_size(src->pre, img->w, img->h, &oh, &ow);
        if (s == CT_OK && (oh != S || ow != S)) {
            char kb[1024];
            const char *key = src->data ? ct_dataset_item_key(src->data, i, kb, sizeof kb) : NULL;
            s = ct_set_error(CT_ERR_ARG, "%s: %s: preprocessing gives %dx%d, the model needs "
                             "%dx%d", what, key ? key : "image", ow, oh, S, S);
        }
        if (s == CT_OK && map)
            s = ct_preprocess_label_map(map, img->w, img->h, src->pre, 255, mask);
        return s == CT_OK ? ct_preprocess(img, src->pre, px) : s;
    }
    ct_rng rng;
    ct_rng_init(&rng, ct_hash_u64(ct_hash_u64(src->seed, view), (uint64_t)i));
    ct_image aug = {0};
    ct_augment_cfg ac = *src->aug;
    ac.size = S;
    ct_crop_box box;
    bool flipped = false;
    s = ct_augment_train(img, &ac, &rng, &aug, &box, &flipped);
    if (s == CT_OK && map) {
        /* the crop box of the map, resized nearest to S x S, flipped alike */
        uint8_t *crop = malloc((size_t)box.w * (size_t)box.h);
        if (!crop) s = ct_set_error(CT_ERR_NOMEM, "%s: out of memory", what);
        for (int y = 0; s == CT_OK && y < box.h; y++)
            memcpy(crop + (size_t)y * (size_t)box.w,
                   map + (size_t)(box.y + y) * (size_t)img->w + (size_t)box.x, (size_t)box.w);
        if (s == CT_OK) ct_label_map_resize(crop, box.w, box.h, mask, S, S);
        free(crop);
        for (int y = 0; s == CT_OK && flipped && y < S; y++)
            for (int x = 0; x < S / 2; x++) {
                uint8_t *r = mask + (size_t)y * (size_t)S, t = r[x];
                r[x] = r[S - 1 - x], r[S - 1 - x] = t;
            }
    }
    if (s == CT_OK) {
        ct_preprocess_cfg norm = *src->pre;
        norm.resize_short = norm.resize_h = norm.resize_w = 0;
        norm.crop_h = norm.crop_w = 0;
        s = ct_preprocess(&aug, &norm, px);
    }
    ct_image_free(&aug);
    return s;
}

ct_status ct_pixels_from_image(const ct_pixel_src *src, const ct_image *img, int64_t i,
                               uint64_t view, float *px) {
    return from_image(src, img, i, view, px, NULL, NULL);
}

/* Item i; with mask, its label map too (segmentation datasets). */
static ct_status item(const ct_pixel_src *src, int64_t i, uint64_t view, float *px,
                      uint8_t *mask) {
    if (i < 0 || i >= src->data->n_items)
        return ct_set_error(CT_ERR_ARG, "%s: item %lld outside [0, %lld)",
                            src->what ? src->what : "pixels", (long long)i,
                            (long long)src->data->n_items);
    if (mask && (!src->data->masks || src->augmix))
        return ct_set_error(CT_ERR_ARG, "%s: %s has no label maps to transform",
                            src->what ? src->what : "pixels", src->data->name);
    ct_image img;
    ct_status s = ct_dataset_image(src->data, i, &img);
    if (s != CT_OK) return s;
    uint8_t *map = NULL;
    int mw = 0, mh = 0;
    if (mask) s = ct_label_map_load_for(src->data, i, img.w, img.h, &mw, &mh, &map);
    if (s == CT_OK) s = from_image(src, &img, i, view, px, map, mask);
    free(map);
    ct_image_free(&img);
    return s;
}

ct_status ct_pixels_item(const ct_pixel_src *src, int64_t i, uint64_t view, float *px) {
    if (i < 0 || i >= src->data->n_items)
        return ct_set_error(CT_ERR_ARG, "%s: item %lld outside [0, %lld)",
                            src->what ? src->what : "pixels", (long long)i,
                            (long long)src->data->n_items);
    ct_image img;
    ct_status s = ct_dataset_image(src->data, i, &img);
    if (s != CT_OK) return s;
    s = ct_pixels_from_image(src, &img, i, view, px);
    ct_image_free(&img);
    return s;
}

ct_status ct_dataset_pixels(const ct_dataset *d, const ct_preprocess_cfg *pre, int size,
                            int64_t i0, int64_t n, float *px) {
    if (!d || !pre || size < 1 || i0 < 0 || n < 0 || i0 + n > d->n_items)
        return ct_set_error(CT_ERR_ARG, "ct_dataset_pixels: bad arguments");
    ct_pixel_src src = {d, pre, size, NULL, 0, "images", NULL};
    return ct_pixels_range(&src, i0, n, 0, px);
}

/* Items idx[j] (or i0 + j when idx is NULL), j < n. The error message is
 * thread-local: the first failing item's is copied out of the worker that
 * hit it and set again on the calling thread. */
static ct_status batch(const ct_pixel_src *src, const int64_t *idx, int64_t i0, int64_t n,
                       uint64_t view, float *px, uint8_t *masks) {
    size_t S2 = (size_t)src->size * (size_t)src->size, per = 3 * S2;
    ct_first_error fe;
    ct_first_error_init(&fe);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t j = 0; j < n; j++)
        ct_first_error_note(&fe, j, item(src, idx ? idx[j] : i0 + j, view, px + (size_t)j * per,
                                         masks ? masks + (size_t)j * S2 : NULL));
    return ct_first_error_raise(&fe);
}

ct_status ct_pixels_batch(const ct_pixel_src *src, const int64_t *idx, int64_t n, uint64_t view,
                          float *px) {
    return batch(src, idx, 0, n, view, px, NULL);
}

ct_status ct_pixels_range(const ct_pixel_src *src, int64_t i0, int64_t n, uint64_t view,
                          float *px) {
    return batch(src, NULL, i0, n, view, px, NULL);
}

ct_status ct_pixels_batch_masks(const ct_pixel_src *src, const int64_t *idx, int64_t n,
                                uint64_t view, float *px, uint8_t *masks) {
    return batch(src, idx, 0, n, view, px, masks);
}

ct_status ct_pixels_range_masks(const ct_pixel_src *src, int64_t i0, int64_t n, uint64_t view,
                                float *px, uint8_t *masks) {
    return batch(src, NULL, i0, n, view, px, masks);
}

ct_status ct_pixels_aug_from_name(const char *name, double scale_min, int size,
                                  ct_augment_cfg *aug, bool *use_aug) {
    ct_augment_cfg_coop(aug, size);
    *use_aug = true;
    if (!(scale_min > 0 && scale_min <= 1))
        return ct_set_error(CT_ERR_ARG, "aug_scale_min=%g must be in (0, 1]", scale_min);
    aug->scale_min = scale_min;
    if (!strcmp(name, "rrc_flip")) return CT_OK;
    if (!strcmp(name, "rrc")) {
        aug->flip_p = 0;
        return CT_OK;
    }
    if (!strcmp(name, "none")) {
        *use_aug = false;
        return CT_OK;
    }
    return ct_set_error(CT_ERR_ARG, "train_aug=%s (rrc_flip, rrc, none)", name);
}
