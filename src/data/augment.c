/* Training augmentation: random resized crop + horizontal flip (see
 * augment.h for what is matched and what is not). */
#include "data/augment.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

#define RRC_TRIES 10

void ct_augment_cfg_coop(ct_augment_cfg *cfg, int size) {
    cfg->size = size;
    cfg->scale_min = 0.08;
    cfg->scale_max = 1.0;
    cfg->ratio_min = 3.0 / 4.0;
    cfg->ratio_max = 4.0 / 3.0;
    cfg->resample = CT_RESAMPLE_BICUBIC;
    cfg->flip_p = 0.5f;
}

static ct_status check_cfg(const ct_augment_cfg *c) {
    if (!(c->scale_min > 0 && c->scale_min <= c->scale_max && c->scale_max <= 1.0) ||
        !(c->ratio_min > 0 && c->ratio_min <= c->ratio_max && isfinite(c->ratio_max)))
        return ct_set_error(CT_ERR_ARG, "augment: need 0 < scale_min <= scale_max <= 1 and "
                            "0 < ratio_min <= ratio_max, got scale (%g, %g) ratio (%g, %g)",
                            c->scale_min, c->scale_max, c->ratio_min, c->ratio_max);
    if (c->size < 1 || c->size > CT_IMAGE_MAX_SIDE)
        return ct_set_error(CT_ERR_ARG, "augment: output size %d outside 1..%d", c->size,
                            CT_IMAGE_MAX_SIDE);
    return CT_OK;
}

ct_status ct_rrc_params(int w, int h, const ct_augment_cfg *cfg, ct_rng *rng, ct_crop_box *box) {
    if (!cfg || !rng || !box) return ct_set_error(CT_ERR_ARG, "ct_rrc_params: NULL argument");
    ct_status s = check_cfg(cfg);
    if (s != CT_OK) return s;
    if (w < 1 || h < 1) return ct_set_error(CT_ERR_ARG, "ct_rrc_params: empty %dx%d image", w, h);
    double area = (double)w * (double)h;
    double lr0 = log(cfg->ratio_min), lr1 = log(cfg->ratio_max);
    for (int t = 0; t < RRC_TRIES; t++) {
        double target = area * (cfg->scale_min + (cfg->scale_max - cfg->scale_min) *
                                                     (double)ct_rng_uniform(rng));
        double ar = exp(lr0 + (lr1 - lr0) * (double)ct_rng_uniform(rng));
        /* Python's round(): half to even, which rint does in the default
         * rounding mode. */
        double bw = rint(sqrt(target * ar)), bh = rint(sqrt(target / ar));
        if (bw > 0 && bw <= w && bh > 0 && bh <= h) {
            box->w = (int)bw;
            box->h = (int)bh;
            box->y = (int)ct_rng_below(rng, (uint64_t)(h - box->h + 1));
            box->x = (int)ct_rng_below(rng, (uint64_t)(w - box->w + 1));
            return CT_OK;
        }
    }
    /* Fallback: the largest centred box whose ratio is within range. */
    double in_ratio = (double)w / (double)h;
    if (in_ratio < cfg->ratio_min) {
        box->w = w;
        box->h = (int)rint(w / cfg->ratio_min);
    } else if (in_ratio > cfg->ratio_max) {
        box->h = h;
        box->w = (int)rint(h * cfg->ratio_max);
    } else {
        box->w = w;
        box->h = h;
    }
    /* Rounding can only land on the image's own side; keep the box >= 1. */
    if (box->w > w) box->w = w;
    if (box->h > h) box->h = h;
    if (box->w < 1) box->w = 1;
    if (box->h < 1) box->h = 1;
    box->y = (h - box->h) / 2;
    box->x = (w - box->w) / 2;
    return CT_OK;
}

ct_status ct_image_crop(const ct_image *src, const ct_crop_box *b, ct_image *dst) {
    if (!dst) return ct_set_error(CT_ERR_ARG, "ct_image_crop: NULL output");
    memset(dst, 0, sizeof *dst);
    if (!src || !src->rgb || !b) return ct_set_error(CT_ERR_ARG, "ct_image_crop: NULL input");
    if (b->w < 1 || b->h < 1 || b->x < 0 || b->y < 0 || b->x > src->w - b->w ||
        b->y > src->h - b->h)
        return ct_set_error(CT_ERR_ARG, "ct_image_crop: box %dx%d at (%d, %d) outside the %dx%d "
                            "image", b->w, b->h, b->x, b->y, src->w, src->h);
    size_t row = (size_t)b->w * 3;
    uint8_t *px = malloc(row * (size_t)b->h);
    if (!px) return ct_set_error(CT_ERR_NOMEM, "ct_image_crop: cannot allocate %dx%d", b->w, b->h);
    for (int y = 0; y < b->h; y++)
        memcpy(px + (size_t)y * row, src->rgb + ((size_t)(b->y + y) * src->w + b->x) * 3, row);
    dst->w = b->w;
    dst->h = b->h;
    dst->rgb = px;
    return CT_OK;
}

void ct_image_hflip(ct_image *img) {
    if (!img || !img->rgb) return;
    for (int y = 0; y < img->h; y++) {
        uint8_t *r = img->rgb + (size_t)y * img->w * 3;
        for (int a = 0, b = img->w - 1; a < b; a++, b--)
            for (int c = 0; c < 3; c++) {
                uint8_t t = r[a * 3 + c];
                r[a * 3 + c] = r[b * 3 + c];
                r[b * 3 + c] = t;
            }
    }
}

ct_status ct_augment_train(const ct_image *src, const ct_augment_cfg *cfg, ct_rng *rng,
                           ct_image *out, ct_crop_box *box, bool *flipped) {
    if (!out) return ct_set_error(CT_ERR_ARG, "ct_augment_train: NULL output");
    memset(out, 0, sizeof *out);
    if (!src || !src->rgb || !cfg || !rng)
        return ct_set_error(CT_ERR_ARG, "ct_augment_train: NULL input");
    ct_crop_box b;
    ct_status s = ct_rrc_params(src->w, src->h, cfg, rng, &b);
    if (s != CT_OK) return s;
    ct_image crop = {0};
    /* A box covering the whole image needs no copy. */
    bool whole = b.w == src->w && b.h == src->h;
    if (!whole) s = ct_image_crop(src, &b, &crop);
    if (s == CT_OK) s = ct_image_resize(whole ? src : &crop, cfg->size, cfg->size,
                                        cfg->resample, out);
    ct_image_free(&crop);
    if (s != CT_OK) return s;
    /* Drawn after the crop, as RandomHorizontalFlip follows the crop. */
    bool flip = ct_rng_uniform(rng) < cfg->flip_p;
    if (flip) ct_image_hflip(out);
    if (box) *box = b;
    if (flipped) *flipped = flip;
    return CT_OK;
}
