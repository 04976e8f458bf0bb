/* Pretraining augmentation (see pretrain_aug.h for each step's definition). */
#include "data/pretrain_aug.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

void ct_pretrain_aug_cfg_default(ct_pretrain_aug_cfg *cfg, int size) {
    if (!cfg) return;
    memset(cfg, 0, sizeof *cfg);
    cfg->size = size;
    cfg->scale_min = 0.5;
    cfg->scale_max = 1.0;
    cfg->ratio_min = 3.0 / 4.0;
    cfg->ratio_max = 4.0 / 3.0;
    cfg->resample = CT_RESAMPLE_BICUBIC;
    cfg->flip_p = 0.5f;
    cfg->silhouette_p = 0.1f;
    cfg->background_p = 0.3f;
    cfg->downscale_p = 0.2f;
    cfg->downscale_min = 8;
    cfg->downscale_max = 28;
    cfg->grey_p = 0.2f;
    cfg->invert_p = 0.1f;
    cfg->bg_tolerance = 24;
    cfg->border_frac = 0.9f;
    cfg->matte[0] = cfg->matte[1] = cfg->matte[2] = 255;
}

static bool prob_ok(float p) { return p >= 0.0f && p <= 1.0f; }

static ct_status check_cfg(const ct_pretrain_aug_cfg *c) {
    if (!prob_ok(c->flip_p) || !prob_ok(c->silhouette_p) || !prob_ok(c->background_p) ||
        !prob_ok(c->downscale_p) || !prob_ok(c->grey_p) || !prob_ok(c->invert_p))
        return ct_set_error(CT_ERR_ARG, "pretrain augment: probabilities must lie in [0, 1] "
                            "(flip %g, silhouette %g, background %g, downscale %g, grey %g, "
                            "invert %g)", c->flip_p, c->silhouette_p, c->background_p,
                            c->downscale_p, c->grey_p, c->invert_p);
    if (c->downscale_min < 1 || c->downscale_min > c->downscale_max ||
        c->downscale_max > CT_IMAGE_MAX_SIDE)
        return ct_set_error(CT_ERR_ARG, "pretrain augment: down-scale range %d..%d (need "
                            "1 <= min <= max)", c->downscale_min, c->downscale_max);
    if (c->bg_tolerance < 0 || c->bg_tolerance > 255 || !(c->border_frac > 0.0f) ||
        c->border_frac > 1.0f)
        return ct_set_error(CT_ERR_ARG, "pretrain augment: background tolerance %d (0..255) or "
                            "border fraction %g ((0, 1]) out of range", c->bg_tolerance,
                            c->border_frac);
    return CT_OK;
}

/* ---- pointwise steps ---- */

void ct_image_to_grey(ct_image *img) {
    if (!img || !img->rgb) return;
    size_t n = (size_t)img->w * (size_t)img->h;
    uint8_t *p = img->rgb;
    for (size_t i = 0; i < n; i++, p += 3) {
        uint32_t l = (19595u * p[0] + 38470u * p[1] + 7471u * p[2] + 0x8000u) >> 16;
        p[0] = p[1] = p[2] = (uint8_t)l;
    }
}

void ct_image_invert(ct_image *img) {
    if (!img || !img->rgb) return;
    size_t n = (size_t)img->w * (size_t)img->h * 3;
    for (size_t i = 0; i < n; i++) img->rgb[i] = (uint8_t)(255 - img->rgb[i]);
}

/* ---- foreground ---- */

/* Pixel k of the outermost ring (2w + 2h - 4 pixels; w, h >= 3). */
static const uint8_t *ring_pixel(const ct_image *img, int k) {
    int x, y;
    if (k < img->w) {
        x = k, y = 0;
    } else if (k < 2 * img->w) {
        x = k - img->w, y = img->h - 1;
    } else {
        int j = k - 2 * img->w;
        y = 1 + j / 2;
        x = j % 2 ? img->w - 1 : 0;
    }
    return img->rgb + ((size_t)y * (size_t)img->w + (size_t)x) * 3;
}

static int colour_dist(const uint8_t *p, const uint8_t *q) {
    int d = 0;
    for (int c = 0; c < 3; c++) {
        int e = abs((int)p[c] - (int)q[c]);
        if (e > d) d = e;
    }
    return d;
}

bool ct_border_background(const ct_image *img, int tolerance, float border_frac, uint8_t bg[3]) {
    if (!img || !img->rgb || img->w < 3 || img->h < 3 || !bg) return false;
    int n = 2 * img->w + 2 * img->h - 4;
    uint32_t hist[3][256];
    memset(hist, 0, sizeof hist);
    for (int k = 0; k < n; k++) {
        const uint8_t *p = ring_pixel(img, k);
        for (int c = 0; c < 3; c++) hist[c][p[c]]++;
    }
    /* Lower median per channel: the value at sorted index (n - 1) / 2. */
    uint8_t med[3];
    for (int c = 0; c < 3; c++) {
        uint32_t seen = 0, want = (uint32_t)(n - 1) / 2;
        int v = 0;
        while ((seen += hist[c][v]) <= want) v++;
        med[c] = (uint8_t)v;
    }
    int close = 0;
    for (int k = 0; k < n; k++) close += colour_dist(ring_pixel(img, k), med) <= tolerance;
    if ((double)close < (double)border_frac * n) return false;
    memcpy(bg, med, 3);
    return true;
}

/* m(x, y) of step 2 at source pixel (x, y). */
typedef struct fg_mask {
    ct_fg_mask_kind kind;
    const ct_image *src;
    const uint8_t *alpha;
    uint8_t bg[3];
    int tol;
} fg_mask;

static inline int mask_at(const fg_mask *m, int x, int y) {
    size_t i = (size_t)y * (size_t)m->src->w + (size_t)x;
    if (m->kind == CT_FG_MASK_ALPHA) return m->alpha[i];
    return colour_dist(m->src->rgb + 3 * i, m->bg) > m->tol ? 255 : 0;
}

static bool crop_has_object(const fg_mask *m, const ct_crop_box *b) {
    if (m->kind == CT_FG_MASK_NONE) return false;
    for (int y = b->y; y < b->y + b->h; y++)
        for (int x = b->x; x < b->x + b->w; x++)
            if (mask_at(m, x, y) >= 128) return true;
    return false;
}

/* ---- compositing (step 3) ---- */

typedef enum comp_mode { COMP_NONE, COMP_SILHOUETTE, COMP_BACKGROUND, COMP_MATTE } comp_mode;

typedef struct background {
    bool gradient;
    uint8_t c1[3], c2[3];
    double cos_a, sin_a, extent; /* extent = |W cos a| + |H sin a| */
} background;

static void bg_at(const background *bg, int x, int y, int w, int h, uint8_t out[3]) {
    if (!bg->gradient) {
        memcpy(out, bg->c1, 3);
        return;
    }
    double t = 0.5 + ((x + 0.5 - w / 2.0) * bg->cos_a + (y + 0.5 - h / 2.0) * bg->sin_a) /
                         bg->extent;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    for (int c = 0; c < 3; c++)
        out[c] = (uint8_t)lround(bg->c1[c] + (bg->c2[c] - bg->c1[c]) * t);
}

/* crop (b's pixels of src, already copied) composited in place. */
static void composite(ct_image *crop, const ct_crop_box *b, const fg_mask *m, comp_mode mode,
                      const background *bg, int level, const uint8_t matte[3]) {
    const int sw = m->src->w, sh = m->src->h;
    background solid = {0};
    if (mode == COMP_MATTE) {
        memcpy(solid.c1, matte, 3);
        bg = &solid;
    }
    for (int y = 0; y < crop->h; y++)
        for (int x = 0; x < crop->w; x++) {
            uint8_t *p = crop->rgb + ((size_t)y * (size_t)crop->w + (size_t)x) * 3;
            int a = mask_at(m, b->x + x, b->y + y);
            if (mode == COMP_SILHOUETTE) {
                p[0] = p[1] = p[2] = (uint8_t)(a >= 128 ? level : 0);
                continue;
            }
            uint8_t under[3];
            bg_at(bg, b->x + x, b->y + y, sw, sh, under);
            for (int c = 0; c < 3; c++)
                p[c] = (uint8_t)((p[c] * a + under[c] * (255 - a) + 127) / 255);
        }
}

/* ---- the whole transform ---- */

ct_status ct_pretrain_augment(const ct_image *src, const uint8_t *alpha,
                              const ct_pretrain_aug_cfg *cfg, ct_rng *rng, ct_image *out,
                              ct_pretrain_aug_info *info) {
    if (!out) return ct_set_error(CT_ERR_ARG, "ct_pretrain_augment: NULL output");
    memset(out, 0, sizeof *out);
    if (!src || !src->rgb || !cfg || !rng)
        return ct_set_error(CT_ERR_ARG, "ct_pretrain_augment: NULL input");
    ct_status s = check_cfg(cfg);
    if (s != CT_OK) return s;
    ct_augment_cfg acfg = {cfg->size, cfg->scale_min, cfg->scale_max, cfg->ratio_min,
                           cfg->ratio_max, cfg->resample, 0.0f};
    ct_crop_box b;
    s = ct_rrc_params(src->w, src->h, &acfg, rng, &b);
    if (s != CT_OK) return s;

    /* The fixed draws (see the header): decisions, then parameters. */
    float u[6];
    for (int i = 0; i < 6; i++) u[i] = ct_rng_uniform(rng);
    background bg = {0};
    bg.gradient = ct_rng_uniform(rng) >= 0.5f;
    for (int c = 0; c < 3; c++) bg.c1[c] = (uint8_t)ct_rng_below(rng, 256);
    for (int c = 0; c < 3; c++) bg.c2[c] = (uint8_t)ct_rng_below(rng, 256);
    double angle = 2.0 * M_PI * (double)ct_rng_uniform(rng);
    int level = 128 + (int)ct_rng_below(rng, 128);
    int ds = cfg->downscale_min +
             (int)ct_rng_below(rng, (uint64_t)(cfg->downscale_max - cfg->downscale_min) + 1);
    bool flip = u[0] < cfg->flip_p, want_bg = u[1] < cfg->background_p,
         want_sil = u[2] < cfg->silhouette_p, grey = u[3] < cfg->grey_p,
         invert = u[4] < cfg->invert_p, down = u[5] < cfg->downscale_p && ds < cfg->size;
    bg.cos_a = cos(angle);
    bg.sin_a = sin(angle);
    bg.extent = fabs(src->w * bg.cos_a) + fabs(src->h * bg.sin_a);

    fg_mask m = {CT_FG_MASK_NONE, src, alpha, {0, 0, 0}, cfg->bg_tolerance};
    if (alpha)
        m.kind = CT_FG_MASK_ALPHA;
    else if (ct_border_background(src, cfg->bg_tolerance, cfg->border_frac, m.bg))
        m.kind = CT_FG_MASK_BORDER;
    comp_mode mode = alpha ? COMP_MATTE : COMP_NONE;
    if ((want_sil || want_bg) && crop_has_object(&m, &b))
        mode = want_sil ? COMP_SILHOUETTE : COMP_BACKGROUND;

    /* A box covering the whole image needs no copy unless it is changed. */
    ct_image crop = {0};
    bool whole = b.w == src->w && b.h == src->h && b.x == 0 && b.y == 0;
    if (!whole || mode != COMP_NONE) s = ct_image_crop(src, &b, &crop);
    if (s == CT_OK && mode != COMP_NONE) composite(&crop, &b, &m, mode, &bg, level, cfg->matte);
    if (s == CT_OK)
        s = ct_image_resize(crop.rgb ? &crop : src, cfg->size, cfg->size, cfg->resample, out);
    ct_image_free(&crop);
    if (s != CT_OK) return s;

    if (flip) ct_image_hflip(out);
    if (down) {
        ct_image small = {0}, back = {0};
        s = ct_image_resize(out, ds, ds, cfg->resample, &small);
        if (s == CT_OK) s = ct_image_resize(&small, cfg->size, cfg->size, cfg->resample, &back);
        ct_image_free(&small);
        ct_image_free(out);
        if (s != CT_OK) return s;
        *out = back;
    }
    if (grey) ct_image_to_grey(out);
    if (invert) ct_image_invert(out);
    if (info) {
        info->box = b;
        info->mask = m.kind;
        info->silhouette = mode == COMP_SILHOUETTE;
        info->background = mode == COMP_BACKGROUND;
        info->flipped = flip;
        info->grey = grey;
        info->inverted = invert;
        info->downscale = down ? ds : 0;
    }
    return CT_OK;
}
