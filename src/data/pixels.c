#include "data/pixels.h"

#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"

ct_status ct_pixels_from_image(const ct_pixel_src *src, const ct_image *img, int64_t i,
                               uint64_t view, float *px) {
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
        return s == CT_OK ? ct_preprocess(img, src->pre, px) : s;
    }
    ct_rng rng;
    ct_rng_init(&rng, ct_hash_u64(ct_hash_u64(src->seed, view), (uint64_t)i));
    ct_image aug = {0};
    ct_augment_cfg ac = *src->aug;
    ac.size = S;
    s = ct_augment_train(img, &ac, &rng, &aug, NULL, NULL);
    if (s == CT_OK) {
        ct_preprocess_cfg norm = *src->pre;
        norm.resize_short = norm.resize_h = norm.resize_w = 0;
        norm.crop_h = norm.crop_w = 0;
        s = ct_preprocess(&aug, &norm, px);
    }
    ct_image_free(&aug);
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
                       uint64_t view, float *px) {
    size_t per = (size_t)3 * (size_t)src->size * (size_t)src->size;
    ct_first_error fe;
    ct_first_error_init(&fe);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t j = 0; j < n; j++)
        ct_first_error_note(&fe, j, ct_pixels_item(src, idx ? idx[j] : i0 + j, view,
                                                   px + (size_t)j * per));
    return ct_first_error_raise(&fe);
}

ct_status ct_pixels_batch(const ct_pixel_src *src, const int64_t *idx, int64_t n, uint64_t view,
                          float *px) {
    return batch(src, idx, 0, n, view, px);
}

ct_status ct_pixels_range(const ct_pixel_src *src, int64_t i0, int64_t n, uint64_t view,
                          float *px) {
    return batch(src, NULL, i0, n, view, px);
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
