/* Pretraining augmentation (src/data/pretrain_aug.c) and the alpha-keeping
 * decoder (ct_image_load_alpha): determinism, output size, and each op's
 * defining property on synthetic images. The crop and resize are augment.c's
 * and preprocess.c's torchvision-exact code, tested against Python in
 * test_preprocess.c; nothing here needs a reference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image_write.h>
#include <zlib.h>

#include "harness.h"

#include "cliptune.h"
#include "data/pretrain_aug.h"

/* A cfg with every random op off, crop = the whole image, output size n:
 * the identity on an n x n image. Tests switch on one op at a time. */
static ct_pretrain_aug_cfg plain_cfg(int n) {
    ct_pretrain_aug_cfg c;
    ct_pretrain_aug_cfg_default(&c, n);
    c.scale_min = c.scale_max = 1.0;
    c.ratio_min = c.ratio_max = 1.0;
    c.flip_p = c.silhouette_p = c.background_p = c.downscale_p = c.grey_p = c.invert_p = 0;
    return c;
}

/* w x h: a plain background colour bgc with a red-green-blue textured
 * rectangle in the middle (the "object"); *alpha (if asked) is 255 on the
 * object, 0 elsewhere, and the hidden colour under alpha 0 is noise. */
static void make_icon(ct_image *img, uint8_t **alpha, int w, int h, const uint8_t bgc[3]) {
    img->w = w;
    img->h = h;
    img->rgb = malloc((size_t)w * h * 3);
    if (alpha) *alpha = malloc((size_t)w * h);
    uint32_t r = 12345;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = img->rgb + ((size_t)y * w + x) * 3;
            bool obj = x >= w / 4 && x < 3 * w / 4 && y >= h / 4 && y < 3 * h / 4;
            r = r * 1103515245u + 12345u;
            if (obj) {
                p[0] = (uint8_t)(200 + x % 50);
                p[1] = (uint8_t)(30 + y % 40);
                p[2] = (uint8_t)((x * 7 + y * 3) % 100);
            } else if (alpha) {
                p[0] = (uint8_t)(r >> 24), p[1] = (uint8_t)(r >> 16), p[2] = (uint8_t)(r >> 8);
            } else {
                memcpy(p, bgc, 3);
            }
            if (alpha) (*alpha)[(size_t)y * w + x] = obj ? 255 : 0;
        }
}

/* field by field: the struct has padding bytes, which memcmp would read */
static bool same_info(const ct_pretrain_aug_info *a, const ct_pretrain_aug_info *b) {
    return a->box.x == b->box.x && a->box.y == b->box.y && a->box.w == b->box.w &&
           a->box.h == b->box.h && a->mask == b->mask && a->silhouette == b->silhouette &&
           a->background == b->background && a->flipped == b->flipped && a->grey == b->grey &&
           a->inverted == b->inverted && a->downscale == b->downscale;
}

static bool same_image(const ct_image *a, const ct_image *b) {
    return a->w == b->w && a->h == b->h &&
           memcmp(a->rgb, b->rgb, (size_t)a->w * a->h * 3) == 0;
}

/* Sum of |differences| between horizontal and vertical neighbours. */
static double total_variation(const ct_image *img) {
    double tv = 0;
    for (int y = 0; y < img->h; y++)
        for (int x = 0; x < img->w; x++)
            for (int c = 0; c < 3; c++) {
                int v = img->rgb[((size_t)y * img->w + x) * 3 + c];
                if (x + 1 < img->w) tv += abs(v - img->rgb[((size_t)y * img->w + x + 1) * 3 + c]);
                if (y + 1 < img->h) tv += abs(v - img->rgb[((size_t)(y + 1) * img->w + x) * 3 + c]);
            }
    return tv;
}

/* Run one augmentation with a fresh generator of the given seed. */
static ct_status aug(const ct_image *src, const uint8_t *alpha, const ct_pretrain_aug_cfg *c,
                     uint64_t seed, ct_image *out, ct_pretrain_aug_info *info) {
    ct_rng r;
    ct_rng_init(&r, seed);
    return ct_pretrain_augment(src, alpha, c, &r, out, info);
}

static void test_deterministic_and_size(void) {
    const uint8_t white[3] = {255, 255, 255};
    ct_pretrain_aug_cfg c;
    ct_pretrain_aug_cfg_default(&c, 32);
    /* Every op likely, so the check covers them. */
    c.silhouette_p = c.background_p = c.downscale_p = c.grey_p = c.invert_p = 0.5f;
    const int sizes[][2] = {{1, 1}, {2, 7}, {5, 300}, {300, 5}, {64, 48}, {32, 32}, {17, 90}};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        ct_image src;
        uint8_t *alpha;
        make_icon(&src, &alpha, sizes[k][0], sizes[k][1], white);
        for (uint64_t seed = 0; seed < 12; seed++) {
            const uint8_t *al = seed % 2 ? alpha : NULL;
            ct_image a, b;
            ct_pretrain_aug_info ia, ib;
            CHECK_OK(aug(&src, al, &c, seed, &a, &ia));
            CHECK_OK(aug(&src, al, &c, seed, &b, &ib));
            CHECK_MSG(a.w == 32 && a.h == 32, "%dx%d -> %dx%d", src.w, src.h, a.w, a.h);
            CHECK(same_image(&a, &b));
            CHECK(same_info(&ia, &ib));
            ct_image_free(&a);
            ct_image_free(&b);
        }
        free(alpha);
        ct_image_free(&src);
    }
    /* Different seeds differ (with this many ops firing, surely). */
    ct_image src, a, b;
    make_icon(&src, NULL, 40, 40, white);
    CHECK_OK(aug(&src, NULL, &c, 1, &a, NULL));
    CHECK_OK(aug(&src, NULL, &c, 2, &b, NULL));
    CHECK(!same_image(&a, &b));
    ct_image_free(&a);
    ct_image_free(&b);
    /* The same generator advances: two calls in a row differ. */
    ct_rng r;
    ct_rng_init(&r, 9);
    CHECK_OK(ct_pretrain_augment(&src, NULL, &c, &r, &a, NULL));
    CHECK_OK(ct_pretrain_augment(&src, NULL, &c, &r, &b, NULL));
    CHECK(!same_image(&a, &b));
    ct_image_free(&a);
    ct_image_free(&b);
    ct_image_free(&src);
}

static void test_identity_flip_invert_grey(void) {
    const uint8_t bgc[3] = {10, 200, 90};
    ct_image src, base;
    make_icon(&src, NULL, 24, 24, bgc);
    ct_pretrain_aug_cfg c = plain_cfg(24);
    ct_pretrain_aug_info info;
    CHECK_OK(aug(&src, NULL, &c, 5, &base, &info));
    CHECK_MSG(same_image(&base, &src), "all ops off, whole crop, same size: not the identity");
    CHECK(info.box.x == 0 && info.box.y == 0 && info.box.w == 24 && info.box.h == 24);
    CHECK(!info.flipped && !info.grey && !info.inverted && !info.silhouette &&
          !info.background && info.downscale == 0);
    CHECK(info.mask == CT_FG_MASK_BORDER);

    /* Flip mirrors left-right. Use a real crop + resize so that it is the
     * flip of the resized crop, not of the source. */
    ct_pretrain_aug_cfg cf = c;
    cf.size = 16;
    cf.scale_min = 0.5;
    cf.ratio_min = 0.75;
    cf.ratio_max = 1.33;
    for (uint64_t seed = 0; seed < 8; seed++) {
        ct_image a, b;
        cf.flip_p = 0;
        CHECK_OK(aug(&src, NULL, &cf, seed, &a, &info));
        CHECK(!info.flipped);
        cf.flip_p = 1;
        CHECK_OK(aug(&src, NULL, &cf, seed, &b, &info));
        CHECK(info.flipped);
        bool mirrored = true;
        for (int y = 0; y < 16; y++)
            for (int x = 0; x < 16; x++)
                mirrored &= memcmp(a.rgb + (y * 16 + x) * 3, b.rgb + (y * 16 + 15 - x) * 3, 3) == 0;
        CHECK_MSG(mirrored, "seed %llu: flip is not a mirror image", (unsigned long long)seed);
        ct_image_free(&a);
        ct_image_free(&b);
    }

    /* Inversion is 255 - x of what the same draws give without it. */
    cf.flip_p = 0.5f;
    for (uint64_t seed = 0; seed < 8; seed++) {
        ct_image a, b;
        cf.invert_p = 0;
        CHECK_OK(aug(&src, NULL, &cf, seed, &a, NULL));
        cf.invert_p = 1;
        CHECK_OK(aug(&src, NULL, &cf, seed, &b, &info));
        CHECK(info.inverted);
        bool inv = true;
        for (int i = 0; i < 16 * 16 * 3; i++) inv &= b.rgb[i] == 255 - a.rgb[i];
        CHECK_MSG(inv, "seed %llu: not 255 - x", (unsigned long long)seed);
        ct_image_free(&a);
        ct_image_free(&b);
    }
    cf.invert_p = 0;

    /* Grey: r = g = b = Pillow's L of the colour output. */
    for (uint64_t seed = 0; seed < 8; seed++) {
        ct_image a, b;
        cf.grey_p = 0;
        CHECK_OK(aug(&src, NULL, &cf, seed, &a, NULL));
        cf.grey_p = 1;
        CHECK_OK(aug(&src, NULL, &cf, seed, &b, &info));
        CHECK(info.grey);
        bool ok = true;
        for (int i = 0; i < 16 * 16; i++) {
            const uint8_t *p = a.rgb + 3 * i, *q = b.rgb + 3 * i;
            int l = (19595 * p[0] + 38470 * p[1] + 7471 * p[2] + 32768) >> 16;
            ok &= q[0] == l && q[1] == l && q[2] == l;
        }
        CHECK_MSG(ok, "seed %llu: grey is not r = g = b = L", (unsigned long long)seed);
        ct_image_free(&a);
        ct_image_free(&b);
    }
    /* Spot values of the luma formula: pure red, green, blue, white. */
    uint8_t px[12] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255};
    ct_image g = {4, 1, px};
    ct_image_to_grey(&g);
    CHECK(px[0] == 76 && px[3] == 150 && px[6] == 29 && px[9] == 255);
    CHECK(px[1] == 76 && px[2] == 76);
    ct_image_free(&base);
    ct_image_free(&src);
}

/* Silhouette on an alpha image: before any resize, exactly two levels, the
 * object (alpha >= 128) at level g >= 128 and the rest black. */
static void test_silhouette(void) {
    ct_image src, out;
    uint8_t *alpha;
    const uint8_t unused[3] = {0, 0, 0};
    make_icon(&src, &alpha, 20, 20, unused);
    /* A soft edge: alpha 100 counts as background, 200 as object. */
    alpha[0] = 100;
    alpha[1] = 200;
    ct_pretrain_aug_cfg c = plain_cfg(20);
    c.silhouette_p = 1;
    ct_pretrain_aug_info info;
    for (uint64_t seed = 0; seed < 6; seed++) {
        CHECK_OK(aug(&src, alpha, &c, seed, &out, &info));
        CHECK(info.silhouette && info.mask == CT_FG_MASK_ALPHA);
        int level = out.rgb[(10 * 20 + 10) * 3];
        CHECK_MSG(level >= 128, "object level %d", level);
        bool two = true;
        for (int i = 0; i < 400; i++) {
            int want = alpha[i] >= 128 ? level : 0;
            for (int k = 0; k < 3; k++) two &= out.rgb[3 * i + k] == want;
        }
        CHECK_MSG(two, "seed %llu: silhouette is not two-level", (unsigned long long)seed);
        ct_image_free(&out);
    }
    /* Without alpha, from the border colour: the same shape. */
    const uint8_t bgc[3] = {250, 248, 252};
    ct_image plain;
    make_icon(&plain, NULL, 20, 20, bgc);
    CHECK_OK(aug(&plain, NULL, &c, 3, &out, &info));
    CHECK(info.silhouette && info.mask == CT_FG_MASK_BORDER);
    int level = out.rgb[(10 * 20 + 10) * 3];
    bool two = true;
    for (int y = 0; y < 20; y++)
        for (int x = 0; x < 20; x++) {
            bool obj = x >= 5 && x < 15 && y >= 5 && y < 15;
            for (int k = 0; k < 3; k++) two &= out.rgb[(y * 20 + x) * 3 + k] == (obj ? level : 0);
        }
    CHECK_MSG(two && level >= 128, "border-estimated silhouette wrong (level %d)", level);
    ct_image_free(&out);
    /* A busy border gives no mask: silhouette skipped, image unchanged. */
    for (int i = 0; i < 20 * 20 * 3; i++) plain.rgb[i] = (uint8_t)(i * 37);
    CHECK_OK(aug(&plain, NULL, &c, 3, &out, &info));
    CHECK(!info.silhouette && info.mask == CT_FG_MASK_NONE && same_image(&out, &plain));
    ct_image_free(&out);
    uint8_t bg[3];
    CHECK(!ct_border_background(&plain, 24, 0.9f, bg));
    ct_image_free(&plain);
    free(alpha);
    ct_image_free(&src);
}

/* Background compositing and the default matte on an alpha image: object
 * pixels keep their colour, transparent ones show the background (and never
 * the noise hidden under alpha 0). */
static void test_background_and_matte(void) {
    ct_image src, out;
    uint8_t *alpha;
    const uint8_t unused[3] = {0, 0, 0};
    make_icon(&src, &alpha, 20, 20, unused);
    ct_pretrain_aug_cfg c = plain_cfg(20);
    ct_pretrain_aug_info info;
    CHECK_OK(aug(&src, alpha, &c, 1, &out, &info));
    bool ok = true;
    for (int i = 0; i < 400; i++)
        for (int k = 0; k < 3; k++)
            ok &= out.rgb[3 * i + k] == (alpha[i] ? src.rgb[3 * i + k] : 255);
    CHECK_MSG(ok && !info.background, "alpha image over the white matte");
    ct_image_free(&out);

    c.background_p = 1;
    int gradients = 0;
    for (uint64_t seed = 0; seed < 10; seed++) {
        CHECK_OK(aug(&src, alpha, &c, seed, &out, &info));
        CHECK(info.background);
        ok = true;
        bool solid = true;
        for (int i = 0; i < 400; i++) {
            if (alpha[i]) {
                ok &= memcmp(out.rgb + 3 * i, src.rgb + 3 * i, 3) == 0;
            } else {
                solid &= memcmp(out.rgb + 3 * i, out.rgb, 3) == 0; /* pixel 0 is background */
            }
        }
        gradients += !solid;
        CHECK_MSG(ok, "seed %llu: the object changed under background compositing",
                  (unsigned long long)seed);
        ct_image_free(&out);
    }
    CHECK_MSG(gradients > 0 && gradients < 10, "%d of 10 backgrounds were gradients", gradients);
    free(alpha);

    /* Soft alpha blends: (c a + bg (255 - a) + 127) / 255 over the matte. */
    uint8_t px[3] = {0, 100, 200}, a1 = 51;
    ct_image one = {1, 1, px};
    ct_pretrain_aug_cfg c1 = plain_cfg(1);
    CHECK_OK(aug(&one, &a1, &c1, 0, &out, NULL));
    CHECK(out.rgb[0] == (0 * 51 + 255 * 204 + 127) / 255);
    CHECK(out.rgb[1] == (100 * 51 + 255 * 204 + 127) / 255);
    CHECK(out.rgb[2] == (200 * 51 + 255 * 204 + 127) / 255);
    ct_image_free(&out);
    ct_image_free(&src);
}

/* Down-scaling to 8 px and back removes fine detail. */
static void test_downscale(void) {
    ct_image src = {64, 64, malloc(64 * 64 * 3)};
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++)
            memset(src.rgb + (y * 64 + x) * 3, ((x + y) % 2) ? 255 : 0, 3);
    ct_pretrain_aug_cfg c = plain_cfg(64);
    c.downscale_p = 1;
    c.downscale_min = c.downscale_max = 8;
    ct_image a, b;
    ct_pretrain_aug_info info;
    CHECK_OK(aug(&src, NULL, &c, 0, &b, &info));
    CHECK(info.downscale == 8 && b.w == 64 && b.h == 64);
    c.downscale_p = 0;
    CHECK_OK(aug(&src, NULL, &c, 0, &a, NULL));
    double tva = total_variation(&a), tvb = total_variation(&b);
    CHECK_MSG(tvb < 0.05 * tva, "total variation %g after down-scaling vs %g", tvb, tva);
    ct_image_free(&a);
    ct_image_free(&b);
    /* The range is inclusive and skipped when not smaller than the output. */
    c.downscale_p = 1;
    c.downscale_min = 5;
    c.downscale_max = 7;
    int seen[8] = {0};
    for (uint64_t seed = 0; seed < 60; seed++) {
        CHECK_OK(aug(&src, NULL, &c, seed, &a, &info));
        CHECK(info.downscale >= 5 && info.downscale <= 7);
        if (info.downscale >= 5 && info.downscale <= 7) seen[info.downscale]++;
        ct_image_free(&a);
    }
    CHECK(seen[5] && seen[6] && seen[7]);
    c.downscale_min = c.downscale_max = 64;
    CHECK_OK(aug(&src, NULL, &c, 0, &a, &info));
    CHECK(info.downscale == 0 && same_image(&a, &src));
    ct_image_free(&a);
    ct_image_free(&src);
}

static void test_crop_bounds(void) {
    const uint8_t white[3] = {255, 255, 255};
    ct_pretrain_aug_cfg c;
    ct_pretrain_aug_cfg_default(&c, 8);
    c.scale_min = 0.6;
    c.scale_max = 0.9;
    const int sizes[][2] = {{3, 3}, {50, 40}, {7, 200}, {128, 128}};
    for (size_t k = 0; k < 4; k++) {
        ct_image src;
        make_icon(&src, NULL, sizes[k][0], sizes[k][1], white);
        int in_range = 0, n = 100;
        for (uint64_t seed = 0; seed < (uint64_t)n; seed++) {
            ct_image out;
            ct_pretrain_aug_info info;
            CHECK_OK(aug(&src, NULL, &c, seed, &out, &info));
            ct_crop_box b = info.box;
            CHECK_MSG(b.x >= 0 && b.y >= 0 && b.w >= 1 && b.h >= 1 && b.x + b.w <= src.w &&
                          b.y + b.h <= src.h,
                      "box %dx%d at (%d, %d) outside %dx%d", b.w, b.h, b.x, b.y, src.w, src.h);
            double frac = (double)b.w * b.h / ((double)src.w * src.h);
            in_range += frac >= 0.6 - 0.1 && frac <= 0.9 + 0.1;
            ct_image_free(&out);
        }
        /* Boxes come from the scale range (side rounding aside) except the
         * fallback, which narrow images always hit. */
        if (k == 1 || k == 3)
            CHECK_MSG(in_range == n, "%dx%d: %d of %d boxes in the scale range", src.w, src.h,
                      in_range, n);
        ct_image_free(&src);
    }
}

static void test_bad_args(void) {
    ct_image src = {2, 2, (uint8_t[12]){0}}, out;
    ct_rng r;
    ct_rng_init(&r, 0);
    ct_pretrain_aug_cfg c;
    ct_pretrain_aug_cfg_default(&c, 8);
    ct_pretrain_aug_cfg bad = c;
    bad.grey_p = 1.5f;
    CHECK(ct_pretrain_augment(&src, NULL, &bad, &r, &out, NULL) == CT_ERR_ARG);
    CHECK(out.rgb == NULL);
    bad = c;
    bad.downscale_min = 0;
    CHECK(ct_pretrain_augment(&src, NULL, &bad, &r, &out, NULL) == CT_ERR_ARG);
    bad = c;
    bad.downscale_min = 30;
    bad.downscale_max = 20;
    CHECK(ct_pretrain_augment(&src, NULL, &bad, &r, &out, NULL) == CT_ERR_ARG);
    bad = c;
    bad.border_frac = 0;
    CHECK(ct_pretrain_augment(&src, NULL, &bad, &r, &out, NULL) == CT_ERR_ARG);
    bad = c;
    bad.scale_min = 0;
    CHECK(ct_pretrain_augment(&src, NULL, &bad, &r, &out, NULL) == CT_ERR_ARG);
    bad = c;
    bad.size = 0;
    CHECK(ct_pretrain_augment(&src, NULL, &bad, &r, &out, NULL) == CT_ERR_ARG);
    CHECK(ct_pretrain_augment(NULL, NULL, &c, &r, &out, NULL) == CT_ERR_ARG);
    CHECK(ct_pretrain_augment(&src, NULL, &c, &r, NULL, NULL) == CT_ERR_ARG);
}

/* ct_image_load_alpha: RGBA and grey+alpha PNGs give their alpha and the
 * same RGB as ct_image_load; opaque formats give NULL. */
static void test_load_alpha(void) {
    char p[2048];
    const int w = 9, h = 7;
    uint8_t rgba[9 * 7 * 4], ga[9 * 7 * 2];
    for (int i = 0; i < w * h; i++) {
        rgba[4 * i] = (uint8_t)(i * 3);
        rgba[4 * i + 1] = (uint8_t)(i * 5);
        rgba[4 * i + 2] = (uint8_t)(i * 7);
        rgba[4 * i + 3] = (uint8_t)(i * 11);
        ga[2 * i] = (uint8_t)(i * 13);
        ga[2 * i + 1] = (uint8_t)(255 - i);
    }
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/alpha%d.png", ct_test_tmpdir(), k);
        int comp = k ? 2 : 4;
        CHECK(stbi_write_png(p, w, h, comp, k ? (void *)ga : (void *)rgba, w * comp));
        ct_image a, b;
        uint8_t *alpha = NULL;
        CHECK_OK(ct_image_load_alpha(p, &a, &alpha));
        CHECK_OK(ct_image_load(p, &b));
        CHECK(same_image(&a, &b));
        CHECK(alpha != NULL);
        bool ok = alpha != NULL;
        for (int i = 0; ok && i < w * h; i++)
            ok &= alpha[i] == (k ? ga[2 * i + 1] : rgba[4 * i + 3]);
        CHECK_MSG(ok, "alpha plane of the %s PNG differs", k ? "grey+alpha" : "RGBA");
        free(alpha);
        ct_image_free(&a);
        ct_image_free(&b);
    }
    /* Opaque PNG and PPM: no alpha. */
    snprintf(p, sizeof p, "%s/opaque.png", ct_test_tmpdir());
    CHECK(stbi_write_png(p, w, h, 3, rgba, w * 3));
    ct_image a;
    uint8_t *alpha = (uint8_t *)1;
    CHECK_OK(ct_image_load_alpha(p, &a, &alpha));
    CHECK(alpha == NULL && a.w == w);
    ct_image_free(&a);
    const uint8_t ppm[] = "P6\n1 1\n255\n\x01\x02\x03";
    alpha = (uint8_t *)1;
    CHECK_OK(ct_image_decode_alpha(ppm, sizeof ppm - 1, "x.ppm", &a, &alpha));
    CHECK(alpha == NULL && a.rgb[0] == 1);
    ct_image_free(&a);
    /* Errors are ct_image_decode's. */
    CHECK(ct_image_decode_alpha((const uint8_t *)"junk", 4, "j", &a, &alpha) == CT_ERR_FORMAT);
    CHECK(alpha == NULL && a.rgb == NULL);
    CHECK(ct_image_decode_alpha(ppm, sizeof ppm - 1, "x", &a, NULL) == CT_ERR_ARG);
}

/* A PNG from its parts: IHDR (8-bit), optional PLTE and tRNS, and rows of
 * raw samples (filter byte 0 added here). Returns the byte count. */
static size_t build_png(uint8_t *buf, int w, int h, int ctype, const uint8_t *plte,
                        size_t plte_len, const uint8_t *trns, size_t trns_len,
                        const uint8_t *samples, int bytes_per_px) {
    size_t n = 0;
    memcpy(buf, "\x89PNG\r\n\x1a\n", 8);
    n = 8;
    uint8_t ihdr[13] = {0, 0, 0, (uint8_t)w, 0, 0, 0, (uint8_t)h, 8, (uint8_t)ctype, 0, 0, 0};
    uint8_t raw[512], z[1024];
    size_t nraw = 0;
    for (int y = 0; y < h; y++) {
        raw[nraw++] = 0;
        memcpy(raw + nraw, samples + (size_t)y * w * bytes_per_px, (size_t)w * bytes_per_px);
        nraw += (size_t)w * bytes_per_px;
    }
    uLongf nz = sizeof z;
    compress(z, &nz, raw, nraw);
    const char *types[4] = {"IHDR", "PLTE", "tRNS", "IDAT"};
    const uint8_t *bodies[4] = {ihdr, plte, trns, z};
    size_t lens[4] = {13, plte_len, trns_len, nz};
    for (int k = 0; k < 5; k++) {
        const char *type = k < 4 ? types[k] : "IEND";
        const uint8_t *body = k < 4 ? bodies[k] : NULL;
        size_t len = k < 4 ? lens[k] : 0;
        if (k > 0 && k < 3 && !body) continue;
        uint8_t *q = buf + n;
        q[0] = 0, q[1] = 0, q[2] = (uint8_t)(len >> 8), q[3] = (uint8_t)len;
        memcpy(q + 4, type, 4);
        if (len) memcpy(q + 8, body, len);
        uint32_t crc = (uint32_t)crc32(0, q + 4, (uInt)(4 + len));
        q[8 + len] = (uint8_t)(crc >> 24), q[9 + len] = (uint8_t)(crc >> 16);
        q[10 + len] = (uint8_t)(crc >> 8), q[11 + len] = (uint8_t)crc;
        n += 12 + len;
    }
    return n;
}

/* tRNS: palette alpha (with a palette shorter than the indices used: those
 * read Pillow's grey ramp, opaque) and an RGB colour key. */
static void test_load_alpha_trns(void) {
    uint8_t png[2048];
    const uint8_t plte[6] = {10, 20, 30, 40, 50, 60}, ptrns[1] = {0};
    const uint8_t idx[6] = {0, 1, 5, 1, 0, 0};
    size_t n = build_png(png, 3, 2, 3, plte, 6, ptrns, 1, idx, 1);
    ct_image img;
    uint8_t *alpha = NULL;
    CHECK_OK(ct_image_decode_alpha(png, n, "pal.png", &img, &alpha));
    CHECK(alpha != NULL);
    if (alpha) {
        const uint8_t want[6] = {0, 255, 255, 255, 0, 0};
        CHECK_MSG(memcmp(alpha, want, 6) == 0, "palette alpha %d %d %d %d %d %d", alpha[0],
                  alpha[1], alpha[2], alpha[3], alpha[4], alpha[5]);
    }
    CHECK(img.rgb && img.rgb[0] == 10 && img.rgb[3] == 40 && img.rgb[6] == 5 && img.rgb[8] == 5);
    free(alpha);
    ct_image_free(&img);

    const uint8_t rgb[6 * 3] = {1, 2, 3, 9, 9, 9, 1, 2, 3, 4, 5, 6, 9, 9, 9, 1, 2, 4};
    const uint8_t key[6] = {0, 9, 0, 9, 0, 9};
    n = build_png(png, 3, 2, 2, NULL, 0, key, 6, rgb, 3);
    CHECK_OK(ct_image_decode_alpha(png, n, "key.png", &img, &alpha));
    CHECK(alpha != NULL);
    if (alpha) {
        const uint8_t want[6] = {255, 0, 255, 255, 0, 255};
        CHECK(memcmp(alpha, want, 6) == 0);
    }
    CHECK(img.rgb && memcmp(img.rgb, rgb, sizeof rgb) == 0);
    free(alpha);
    ct_image_free(&img);
}

int main(void) {
    RUN(test_deterministic_and_size);
    RUN(test_identity_flip_invert_grey);
    RUN(test_silhouette);
    RUN(test_background_and_matte);
    RUN(test_downscale);
    RUN(test_crop_bounds);
    RUN(test_bad_args);
    RUN(test_load_alpha);
    RUN(test_load_alpha_trns);
    return ct_test_summary();
}
