/* AugMix views for TPT (see augmix.h): Pillow's ops on 8-bit RGB, the
 * op draws of augmix_ops.py and the mixing of TPT's datautils.augmix. */
#include "data/augmix.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "data/augment.h"

/* A product rounded on its own: with -march=native GCC would contract
 * a * b + c into an FMA where Pillow's and CPython's generic builds round
 * twice (the same guard as preprocess.c). */
static inline double mul(double a, double b) {
    volatile double p = a * b;
    return p;
}

static ct_status new_like(const ct_image *src, ct_image *dst) {
    size_t n = (size_t)src->w * (size_t)src->h * 3;
    dst->rgb = malloc(n ? n : 1);
    if (!dst->rgb) return ct_set_error(CT_ERR_NOMEM, "augmix: out of memory");
    dst->w = src->w, dst->h = src->h;
    return CT_OK;
}

/* ---- per-channel lookup tables (ImageOps: _lut -> Image.point, CLIP8) ---- */

static void apply_lut(const ct_image *src, const int lut[3][256], ct_image *dst) {
    size_t n = (size_t)src->w * (size_t)src->h;
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) {
            int v = lut[c][src->rgb[3 * i + c]];
            dst->rgb[3 * i + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
}

static void histogram(const ct_image *src, int64_t h[3][256]) {
    memset(h, 0, 3 * 256 * sizeof(int64_t));
    size_t n = (size_t)src->w * (size_t)src->h;
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) h[c][src->rgb[3 * i + c]]++;
}

/* ImageOps.autocontrast(cutoff=0): the darkest value -> 0, the lightest ->
 * 255, lut[i] = int(i * scale + offset) clamped. */
static void autocontrast_lut(const ct_image *src, int lut[3][256]) {
    int64_t h[3][256];
    histogram(src, h);
    for (int c = 0; c < 3; c++) {
        int lo = 0, hi = 255;
        while (lo < 256 && !h[c][lo]) lo++;
        while (hi >= 0 && !h[c][hi]) hi--;
        if (hi <= lo) {
            for (int i = 0; i < 256; i++) lut[c][i] = i;
            continue;
        }
        double scale = 255.0 / (hi - lo), offset = -lo * scale;
        for (int i = 0; i < 256; i++) {
            int v = (int)(mul(i, scale) + offset);
            lut[c][i] = v < 0 ? 0 : v > 255 ? 255 : v;
        }
    }
}

/* ImageOps.equalize: step = (pixels - count of the last used value) // 255,
 * lut[i] = (step // 2 + pixels below i) // step. */
static void equalize_lut(const ct_image *src, int lut[3][256]) {
    int64_t h[3][256];
    histogram(src, h);
    for (int c = 0; c < 3; c++) {
        int used = 0;
        int64_t total = 0, last = 0;
        for (int i = 0; i < 256; i++)
            if (h[c][i]) used++, total += h[c][i], last = h[c][i];
        int64_t step = used <= 1 ? 0 : (total - last) / 255;
        if (!step) {
            for (int i = 0; i < 256; i++) lut[c][i] = i;
            continue;
        }
        int64_t n = step / 2;
        for (int i = 0; i < 256; i++) {
            int64_t v = n / step;
            lut[c][i] = v > 255 ? 255 : (int)v;
            n += h[c][i];
        }
    }
}

/* ---- Image.transform(AFFINE, BILINEAR), fill black (Geometry.c) ---- */

static int pil_floor(double v) { return v < 0.0 ? (int)floor(v) : (int)v; }

/* a: output pixel centre (x + 0.5, y + 0.5) -> input coordinates. */
static void affine_bilinear(const ct_image *src, const double a[6], ct_image *dst) {
    int W = src->w, H = src->h;
    for (int y = 0; y < dst->h; y++)
        for (int x = 0; x < dst->w; x++) {
            uint8_t *out = dst->rgb + ((size_t)y * dst->w + x) * 3;
            double xi = x + 0.5, yi = y + 0.5;
            double xx = mul(a[0], xi) + mul(a[1], yi) + a[2];
            double yy = mul(a[3], xi) + mul(a[4], yi) + a[5];
            if (xx < 0.0 || xx >= W || yy < 0.0 || yy >= H) {
                out[0] = out[1] = out[2] = 0;
                continue;
            }
            xx -= 0.5, yy -= 0.5;
            int x0 = pil_floor(xx), y0 = pil_floor(yy);
            double dx = xx - x0, dy = yy - y0;
            int xa = x0 < 0 ? 0 : x0 < W ? x0 : W - 1;
            int xb = x0 + 1 < 0 ? 0 : x0 + 1 < W ? x0 + 1 : W - 1;
            int ya = y0 < 0 ? 0 : y0 < H ? y0 : H - 1;
            bool below = y0 + 1 >= 0 && y0 + 1 < H;
            const uint8_t *r1 = src->rgb + (size_t)ya * W * 3;
            const uint8_t *r2 = below ? src->rgb + (size_t)(y0 + 1) * W * 3 : NULL;
            for (int c = 0; c < 3; c++) {
                int p = r1[xa * 3 + c], q = r1[xb * 3 + c];
                double v1 = p + mul(q - p, dx), v2 = v1;
                if (r2) {
                    p = r2[xa * 3 + c], q = r2[xb * 3 + c];
                    v2 = p + mul(q - p, dx);
                }
                v1 = v1 + mul(v2 - v1, dy);
                out[c] = (uint8_t)v1;
            }
        }
}

/* Python's round(v, 15): the nearest double to v rounded to 15 decimals
 * (both sides round the exact binary value correctly). */
static double round15(double v) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.15f", v);
    return strtod(buf, NULL);
}

/* Image.rotate(deg, BILINEAR) without expand: the inverse matrix about the
 * centre (w / 2, h / 2). Pillow's 90/180/270-degree transposes are not
 * reproduced (augmix_ops.py draws at most 30 degrees). */
static void rotate_matrix(double deg, int w, int h, double m[6]) {
    double angle = fmod(deg, 360.0);
    if (angle < 0) angle += 360.0; /* Python's % takes the divisor's sign */
    double rad = -(angle * (M_PI / 180.0));
    m[0] = round15(cos(rad)), m[1] = round15(sin(rad)), m[2] = 0.0;
    m[3] = round15(-sin(rad)), m[4] = round15(cos(rad)), m[5] = 0.0;
    double cx = w / 2.0, cy = h / 2.0;
    double c = mul(m[0], -cx) + mul(m[1], -cy) + m[2];
    double f = mul(m[3], -cx) + mul(m[4], -cy) + m[5];
    m[2] = c + cx, m[5] = f + cy;
}

ct_status ct_augmix_apply(const ct_image *src, ct_augmix_op op, double v, ct_image *dst) {
    if (!dst) return ct_set_error(CT_ERR_ARG, "augmix: NULL output");
    memset(dst, 0, sizeof *dst);
    if (!src || !src->rgb || src->w < 1 || src->h < 1)
        return ct_set_error(CT_ERR_ARG, "augmix: empty input image");
    if ((int)op < 0 || op >= CT_AUGMIX_N_OPS)
        return ct_set_error(CT_ERR_ARG, "augmix: unknown op %d", (int)op);
    ct_status s = new_like(src, dst);
    if (s != CT_OK) return s;
    int lut[3][256];
    double a[6] = {1, 0, 0, 0, 1, 0};
    switch (op) {
    case CT_AUGMIX_AUTOCONTRAST:
        autocontrast_lut(src, lut);
        break;
    case CT_AUGMIX_EQUALIZE:
        equalize_lut(src, lut);
        break;
    case CT_AUGMIX_POSTERIZE: {
        int bits = (int)v;
        if (bits < 1 || bits > 8) {
            ct_image_free(dst);
            return ct_set_error(CT_ERR_ARG, "augmix: posterize to %d bits (1..8)", bits);
        }
        int mask = ~((1 << (8 - bits)) - 1);
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < 256; i++) lut[c][i] = i & mask;
        break;
    }
    case CT_AUGMIX_SOLARIZE:
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < 256; i++) lut[c][i] = i < v ? i : 255 - i;
        break;
    case CT_AUGMIX_ROTATE:
        if (fmod(v, 360.0) == 0.0) { /* Pillow returns a copy */
            memcpy(dst->rgb, src->rgb, (size_t)src->w * (size_t)src->h * 3);
            return CT_OK;
        }
        rotate_matrix(v, src->w, src->h, a);
        affine_bilinear(src, a, dst);
        return CT_OK;
    case CT_AUGMIX_SHEAR_X: a[1] = v; affine_bilinear(src, a, dst); return CT_OK;
    case CT_AUGMIX_SHEAR_Y: a[3] = v; affine_bilinear(src, a, dst); return CT_OK;
    case CT_AUGMIX_TRANSLATE_X: a[2] = v; affine_bilinear(src, a, dst); return CT_OK;
    case CT_AUGMIX_TRANSLATE_Y: a[5] = v; affine_bilinear(src, a, dst); return CT_OK;
    default:
        break;
    }
    apply_lut(src, (const int(*)[256])lut, dst);
    return CT_OK;
}

/* numpy.random.uniform(low=0.1, high=n) */
static double sample_level(int n, ct_rng *rng) {
    return 0.1 + ((double)n - 0.1) * (double)ct_rng_uniform(rng);
}

double ct_augmix_draw(ct_augmix_op op, int severity, int size, ct_rng *rng) {
    switch (op) {
    case CT_AUGMIX_POSTERIZE: /* 4 - int_parameter(level, 4) */
        return 4 - (int)(sample_level(severity, rng) * 4 / 10);
    case CT_AUGMIX_ROTATE: {
        int deg = (int)(sample_level(severity, rng) * 30 / 10);
        return ct_rng_uniform(rng) > 0.5f ? -deg : deg;
    }
    case CT_AUGMIX_SOLARIZE:
        return 256 - (int)(sample_level(severity, rng) * 256 / 10);
    case CT_AUGMIX_SHEAR_X:
    case CT_AUGMIX_SHEAR_Y: {
        double level = sample_level(severity, rng) * 0.3 / 10.;
        return ct_rng_uniform(rng) > 0.5f ? -level : level;
    }
    case CT_AUGMIX_TRANSLATE_X:
    case CT_AUGMIX_TRANSLATE_Y: {
        int px = (int)(sample_level(severity, rng) * (size / 3.0) / 10);
        return ct_rng_uniform(rng) > 0.5f ? -px : px;
    }
    default:
        return 0;
    }
}

/* Gamma(1) = Exp(1) draws normalised: numpy's dirichlet([1, 1, 1]). */
static void dirichlet3(ct_rng *rng, float w[3]) {
    double g[3], sum = 0;
    for (int i = 0; i < 3; i++) sum += (g[i] = -log(1.0 - (double)ct_rng_uniform(rng)));
    for (int i = 0; i < 3; i++) w[i] = (float)(g[i] / sum);
}

ct_status ct_augmix_view(const ct_image *src, const ct_preprocess_cfg *norm, int size,
                         int severity, bool mix, ct_rng *rng, float *out) {
    if (!src || !norm || !rng || !out || size < 1 || severity < 1 || severity > 10)
        return ct_set_error(CT_ERR_ARG, "augmix: bad arguments (size %d, severity %d)", size,
                            severity);
    ct_preprocess_cfg nc = *norm; /* ToTensor + Normalize only */
    nc.resize_short = nc.resize_h = nc.resize_w = 0, nc.crop_h = nc.crop_w = 0;
    ct_augment_cfg ac;
    ct_augment_cfg_coop(&ac, size);
    ac.resample = CT_RESAMPLE_BILINEAR; /* torchvision RandomResizedCrop's default */
    ct_image orig = {0};
    ct_status s = ct_augment_train(src, &ac, rng, &orig, NULL, NULL);
    if (s == CT_OK) s = ct_preprocess(&orig, &nc, out);
    if (s != CT_OK || !mix) {
        ct_image_free(&orig);
        return s;
    }
    size_t n = (size_t)3 * size * size;
    float *acc = calloc(n, sizeof *acc), *px = malloc(n * sizeof *px);
    if (!acc || !px) s = ct_set_error(CT_ERR_NOMEM, "augmix: out of memory");
    float w[3];
    dirichlet3(rng, w);
    float m = ct_rng_uniform(rng); /* Beta(1, 1) */
    for (int chain = 0; chain < 3 && s == CT_OK; chain++) {
        ct_image cur = {0};
        if ((s = new_like(&orig, &cur)) != CT_OK) break;
        memcpy(cur.rgb, orig.rgb, (size_t)orig.w * (size_t)orig.h * 3);
        int depth = 1 + (int)ct_rng_below(rng, 3); /* randint(1, 4) */
        for (int d = 0; d < depth && s == CT_OK; d++) {
            ct_augmix_op op = (ct_augmix_op)ct_rng_below(rng, CT_AUGMIX_N_OPS);
            double v = ct_augmix_draw(op, severity, size, rng);
            ct_image next;
            s = ct_augmix_apply(&cur, op, v, &next);
            ct_image_free(&cur);
            cur = next;
        }
        if (s == CT_OK) s = ct_preprocess(&cur, &nc, px);
        for (size_t i = 0; s == CT_OK && i < n; i++) acc[i] += w[chain] * px[i];
        ct_image_free(&cur);
    }
    /* m * x_processed + (1 - m) * mix, in float as torch does */
    for (size_t i = 0; s == CT_OK && i < n; i++) out[i] = m * out[i] + (1.0f - m) * acc[i];
    free(acc), free(px);
    ct_image_free(&orig);
    return s;
}
