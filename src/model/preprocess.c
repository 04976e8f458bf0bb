/* CLIP preprocessing: Pillow's resize, torchvision's / HF's center crop,
 * ToTensor + Normalize (see preprocess.h and docs/preprocessing.md).
 *
 * The resize is a port of Pillow's 8-bit ImagingResample (Resample.c, the
 * same arithmetic from Pillow 5.0 through 12.x): per output pixel, filter
 * weights over a window whose support is scaled by the downscale factor,
 * normalised to sum 1 in double, rounded to 22-bit fixed point; a horizontal
 * pass into a uint8 intermediate (rounded and clipped), then a vertical pass.
 * A pass is skipped when its size does not change, as Pillow skips it.
 * torchvision and HF both call Image.resize((w, h), filter) with no box and
 * no reducing_gap, so this is exactly what they compute on RGB input.
 *
 * Only the pixels inside the crop window are computed: each output pixel
 * depends only on its own weights, so this is bit-identical to resizing the
 * whole image and cropping, and cheaper. */
#include "cliptune.h"

#include <math.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"
#include "base/json.h"
#include "model/bundle.h"

/* Pillow: 32 - 8 (pixel) - 2 (headroom for negative lobes and overshoot). */
#define PRECISION_BITS (32 - 8 - 2)
/* Parallelise a pass only above this many pixel-taps (x3 channels): about
 * 5 ms of work. A 224-px model's typical input (a few hundred px a side)
 * takes 1-2 ms, where waking threads costs more than it saves (measured 8x
 * slower on a busy 2-core machine), and data loaders already run one image
 * per thread (nested OpenMP regions then run serially anyway). */
#define PAR_MIN_WORK 4000000

static const float OPENAI_MEAN[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float OPENAI_STD[3] = {0.26862954f, 0.26130258f, 0.27577711f};

/* A product rounded to double on its own. With -march=native GCC contracts
 * a * b + c into one FMA (one rounding instead of two) where Pillow's
 * generic x86-64 build rounds twice. Measured: over 20M weights (inputs of
 * 2..1200 px to common sizes) the 22-bit rounding hid every such ulp, but
 * nothing guarantees that, and the volatile costs nothing measurable here. */
static inline double mul(double a, double b) {
    volatile double p = a * b;
    return p;
}

static double bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return mul(mul(mul(a + 2.0, x) - (a + 3.0), x), x) + 1;
    if (x < 2.0) return mul(mul(mul(x - 5, x) + 8, x) - 4, a);
    return 0.0;
}

static double bilinear(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

/* Weights of output pixels [o0, o1) of an in_size -> out_size axis. */
typedef struct axis {
    int ksize;
    int *lo, *n;   /* first input index and tap count, per output pixel */
    int32_t *k;    /* ksize fixed-point weights per output pixel */
} axis;

static void axis_free(axis *a) {
    free(a->lo);
    free(a->n);
    free(a->k);
    memset(a, 0, sizeof *a);
}

static ct_status axis_init(axis *a, int in_size, int out_size, int o0, int o1, ct_resample f) {
    memset(a, 0, sizeof *a);
    double (*filter)(double) = f == CT_RESAMPLE_BILINEAR ? bilinear : bicubic;
    double fsupport = f == CT_RESAMPLE_BILINEAR ? 1.0 : 2.0;
    /* Pillow: box (0, in_size) as floats; their difference is exact. */
    double scale = (double)(float)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = mul(fsupport, filterscale);
    double ss = 1.0 / filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    int count = o1 - o0;
    size_t nk;
    if (!ct_mul_size((size_t)count, (size_t)ksize, &nk))
        return ct_set_error(CT_ERR_NOMEM, "resize: weight table too large");
    a->ksize = ksize;
    a->lo = malloc((size_t)count * sizeof *a->lo);
    a->n = malloc((size_t)count * sizeof *a->n);
    a->k = calloc(nk ? nk : 1, sizeof *a->k);
    double *w = malloc((size_t)ksize * sizeof *w);
    if (!a->lo || !a->n || !a->k || !w) {
        free(w);
        axis_free(a);
        return ct_set_error(CT_ERR_NOMEM, "resize: cannot allocate %zu weights", nk);
    }
    for (int i = 0; i < count; i++) {
        int xx = o0 + i;
        double center = 0.0 + mul(xx + 0.5, scale);
        double ww = 0.0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            double v = filter(mul(x + xmin - center + 0.5, ss));
            w[x] = v;
            ww += v;
        }
        int32_t *k = a->k + (size_t)i * (size_t)ksize;
        for (int x = 0; x < xmax; x++) {
            double v = ww != 0.0 ? w[x] / ww : w[x];
            /* Pillow's normalize_coeffs_8bpc: round half away from zero. */
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                         : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        a->lo[i] = xmin;
        a->n[i] = xmax;
    }
    free(w);
    return CT_OK;
}

static inline uint8_t clip8(int32_t ss) {
    int32_t v = ss >> PRECISION_BITS; /* arithmetic shift, as Pillow relies on */
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* Pixels [wx0, wx0 + ww) x [wy0, wy0 + wh) of src (sw x sh RGB) resized to
 * ow x oh, into dst (ww * 3 bytes per row). The window lies inside
 * [0, ow) x [0, oh). */
static ct_status resize_window(const uint8_t *src, int sw, int sh, int ow, int oh,
                               ct_resample f, int wx0, int wy0, int ww, int wh, uint8_t *dst) {
    const bool need_h = ow != sw, need_v = oh != sh;
    const size_t sstride = (size_t)sw * 3, dstride = (size_t)ww * 3;
    axis ah = {0}, av = {0};
    ct_status s = CT_OK;
    if (need_h) s = axis_init(&ah, sw, ow, wx0, wx0 + ww, f);
    if (s == CT_OK && need_v) s = axis_init(&av, sh, oh, wy0, wy0 + wh, f);
    if (s != CT_OK) {
        axis_free(&ah);
        return s;
    }
    /* Source rows the vertical pass reads (bounds grow with the output row). */
    int r0 = wy0, r1 = wy0 + wh;
    if (need_v) {
        r0 = av.lo[0];
        r1 = av.lo[wh - 1] + av.n[wh - 1];
    }
    const int nrows = r1 - r0;

    /* Horizontal pass into mid (nrows x ww), or a view of src if none. */
    uint8_t *mid_buf = NULL;
    const uint8_t *mid;
    size_t mstride;
    if (need_h) {
        mid_buf = malloc((size_t)nrows * dstride);
        if (!mid_buf) {
            axis_free(&ah);
            axis_free(&av);
            return ct_set_error(CT_ERR_NOMEM, "resize: cannot allocate %d x %d intermediate",
                                ww, nrows);
        }
        const int ks = ah.ksize;
#pragma omp parallel for schedule(static) if ((long)nrows * ww * ks > PAR_MIN_WORK)
        for (int y = 0; y < nrows; y++) {
            const uint8_t *in = src + (size_t)(r0 + y) * sstride;
            uint8_t *o = mid_buf + (size_t)y * dstride;
            for (int x = 0; x < ww; x++) {
                const int32_t *k = ah.k + (size_t)x * (size_t)ks;
                const uint8_t *p = in + (size_t)ah.lo[x] * 3;
                int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
                for (int t = 0; t < ah.n[x]; t++, p += 3) {
                    s0 += p[0] * k[t];
                    s1 += p[1] * k[t];
                    s2 += p[2] * k[t];
                }
                o[3 * x] = clip8(s0);
                o[3 * x + 1] = clip8(s1);
                o[3 * x + 2] = clip8(s2);
            }
        }
        mid = mid_buf;
        mstride = dstride;
    } else {
        mid = src + (size_t)r0 * sstride + (size_t)wx0 * 3;
        mstride = sstride;
    }

    /* Vertical pass (or a copy of the window). */
    if (need_v) {
        const int ks = av.ksize;
#pragma omp parallel for schedule(static) if ((long)wh * ww * ks > PAR_MIN_WORK)
        for (int y = 0; y < wh; y++) {
            const int32_t *k = av.k + (size_t)y * (size_t)ks;
            const uint8_t *base = mid + (size_t)(av.lo[y] - r0) * mstride;
            const int n = av.n[y];
            uint8_t *o = dst + (size_t)y * dstride;
            for (int x = 0; x < ww * 3; x++) {
                int32_t acc = 1 << (PRECISION_BITS - 1);
                const uint8_t *p = base + x;
                for (int t = 0; t < n; t++, p += mstride) acc += *p * k[t];
                o[x] = clip8(acc);
            }
        }
    } else {
        for (int y = 0; y < wh; y++) memcpy(dst + (size_t)y * dstride, mid + (size_t)y * mstride,
                                            dstride);
    }
    free(mid_buf);
    axis_free(&ah);
    axis_free(&av);
    return CT_OK;
}

static ct_status check_image(const ct_image *img, const char *fn) {
    if (!img || !img->rgb) return ct_set_error(CT_ERR_ARG, "%s: NULL image", fn);
    if (img->w < 1 || img->h < 1 || img->w > CT_IMAGE_MAX_SIDE || img->h > CT_IMAGE_MAX_SIDE ||
        (int64_t)img->w * img->h > CT_IMAGE_MAX_PIXELS)
        return ct_set_error(CT_ERR_ARG, "%s: bad image size %dx%d", fn, img->w, img->h);
    return CT_OK;
}

ct_status ct_image_resize(const ct_image *src, int w, int h, ct_resample filter, ct_image *dst) {
    if (!dst) return ct_set_error(CT_ERR_ARG, "ct_image_resize: NULL output");
    memset(dst, 0, sizeof *dst);
    ct_status s = check_image(src, "ct_image_resize");
    if (s != CT_OK) return s;
    if (filter != CT_RESAMPLE_BICUBIC && filter != CT_RESAMPLE_BILINEAR)
        return ct_set_error(CT_ERR_ARG, "ct_image_resize: unknown filter %d", (int)filter);
    if (w < 1 || h < 1 || w > CT_IMAGE_MAX_SIDE || h > CT_IMAGE_MAX_SIDE ||
        (int64_t)w * h > CT_IMAGE_MAX_PIXELS)
        return ct_set_error(CT_ERR_ARG, "ct_image_resize: bad target size %dx%d", w, h);
    dst->rgb = malloc((size_t)w * (size_t)h * 3);
    if (!dst->rgb)
        return ct_set_error(CT_ERR_NOMEM, "ct_image_resize: cannot allocate %dx%d", w, h);
    dst->w = w;
    dst->h = h;
    s = resize_window(src->rgb, src->w, src->h, w, h, filter, 0, 0, w, h, dst->rgb);
    if (s != CT_OK) ct_image_free(dst);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */
/* ------------------------------------------------------------------------ */

void ct_preprocess_cfg_openai(ct_preprocess_cfg *cfg, int n) {
    if (!cfg) return;
    memset(cfg, 0, sizeof *cfg);
    cfg->resize_short = n;
    cfg->crop_h = cfg->crop_w = n;
    cfg->crop_rounding = CT_CROP_ROUND;
    cfg->resample = CT_RESAMPLE_BICUBIC;
    cfg->rescale = 1.0 / 255.0;
    memcpy(cfg->mean, OPENAI_MEAN, sizeof cfg->mean);
    memcpy(cfg->std, OPENAI_STD, sizeof cfg->std);
}

static ct_status check_cfg(const ct_preprocess_cfg *cfg) {
    if (!cfg) return ct_set_error(CT_ERR_ARG, "preprocess: NULL config");
    if (cfg->resize_short < 0 || cfg->resize_short > CT_IMAGE_MAX_SIDE || cfg->resize_h < 0 ||
        cfg->resize_w < 0 || cfg->resize_h > CT_IMAGE_MAX_SIDE ||
        cfg->resize_w > CT_IMAGE_MAX_SIDE || (cfg->resize_h > 0) != (cfg->resize_w > 0))
        return ct_set_error(CT_ERR_ARG,
                            "preprocess: bad resize (short %d, h %d, w %d; sizes in [1, %d], "
                            "h and w both set or both 0)",
                            cfg->resize_short, cfg->resize_h, cfg->resize_w, CT_IMAGE_MAX_SIDE);
    if (cfg->crop_h < 0 || cfg->crop_w < 0 || cfg->crop_h > CT_IMAGE_MAX_SIDE ||
        cfg->crop_w > CT_IMAGE_MAX_SIDE || (cfg->crop_h > 0) != (cfg->crop_w > 0))
        return ct_set_error(CT_ERR_ARG, "preprocess: bad crop %dx%d", cfg->crop_h, cfg->crop_w);
    if (cfg->crop_rounding != CT_CROP_ROUND && cfg->crop_rounding != CT_CROP_FLOOR)
        return ct_set_error(CT_ERR_ARG, "preprocess: unknown crop rounding %d",
                            (int)cfg->crop_rounding);
    if (cfg->resample != CT_RESAMPLE_BICUBIC && cfg->resample != CT_RESAMPLE_BILINEAR)
        return ct_set_error(CT_ERR_ARG, "preprocess: unknown resample filter %d",
                            (int)cfg->resample);
    if (!isfinite(cfg->rescale))
        return ct_set_error(CT_ERR_ARG, "preprocess: rescale is not finite");
    for (int c = 0; c < 3; c++) {
        if (!isfinite(cfg->mean[c]) || !isfinite(cfg->std[c]) || cfg->std[c] == 0.0f)
            return ct_set_error(CT_ERR_ARG, "preprocess: bad mean/std for channel %d (%g, %g)", c,
                                (double)cfg->mean[c], (double)cfg->std[c]);
    }
    return CT_OK;
}

/* Size after the resize step. */
static void resized_size(const ct_preprocess_cfg *cfg, int w, int h, int *rh, int *rw) {
    if (cfg->resize_short > 0) {
        /* torchvision _compute_resized_output_size == HF
         * get_resize_output_image_size(default_to_square=False):
         * int(size * long / short), the product exact, one division. */
        int shrt = w <= h ? w : h, lng = w <= h ? h : w;
        int n = cfg->resize_short;
        int nl = (int)((double)((int64_t)n * lng) / (double)shrt);
        *rw = w <= h ? n : nl;
        *rh = w <= h ? nl : n;
    } else if (cfg->resize_h > 0) {
        *rh = cfg->resize_h;
        *rw = cfg->resize_w;
    } else {
        *rh = h;
        *rw = w;
    }
}

/* Offset of the crop in the resized image (negative: zero padding before). */
static int crop_offset(int size, int crop, ct_crop_rounding r) {
    int d = size - crop;
    if (r == CT_CROP_FLOOR) return d >= 0 ? d / 2 : -((-d + 1) / 2); /* Python d // 2 */
    if (d < 0) return -((-d) / 2); /* torchvision pads floor(|d| / 2) before */
    /* int(round(d / 2.0)): Python rounds .5 to even. */
    int q = d / 2;
    return (d % 2 == 0 || q % 2 == 0) ? q : q + 1;
}

ct_status ct_preprocess_out_size(const ct_preprocess_cfg *cfg, int w, int h, int *out_h,
                                 int *out_w) {
    ct_status s = check_cfg(cfg);
    if (s != CT_OK) return s;
    if (!out_h || !out_w) return ct_set_error(CT_ERR_ARG, "preprocess: NULL output size");
    if (w < 1 || h < 1 || w > CT_IMAGE_MAX_SIDE || h > CT_IMAGE_MAX_SIDE)
        return ct_set_error(CT_ERR_ARG, "preprocess: bad image size %dx%d", w, h);
    int rh, rw;
    resized_size(cfg, w, h, &rh, &rw);
    if (rh < 1 || rw < 1)
        return ct_set_error(CT_ERR_ARG, "preprocess: %dx%d resizes to an empty %dx%d image", w, h,
                            rw, rh);
    *out_h = cfg->crop_h > 0 ? cfg->crop_h : rh;
    *out_w = cfg->crop_w > 0 ? cfg->crop_w : rw;
    if ((int64_t)*out_h * *out_w > CT_IMAGE_MAX_PIXELS)
        return ct_set_error(CT_ERR_ARG, "preprocess: output %dx%d is larger than %lld pixels",
                            *out_w, *out_h, (long long)CT_IMAGE_MAX_PIXELS);
    return CT_OK;
}

ct_status ct_preprocess(const ct_image *img, const ct_preprocess_cfg *cfg, float *out) {
    ct_status s = check_image(img, "ct_preprocess");
    if (s != CT_OK) return s;
    if (!out) return ct_set_error(CT_ERR_ARG, "ct_preprocess: NULL output");
    int th, tw;
    s = ct_preprocess_out_size(cfg, img->w, img->h, &th, &tw);
    if (s != CT_OK) return s;
    int rh, rw;
    resized_size(cfg, img->w, img->h, &rh, &rw);
    int oy = 0, ox = 0;
    if (cfg->crop_h > 0) {
        oy = crop_offset(rh, th, cfg->crop_rounding);
        ox = crop_offset(rw, tw, cfg->crop_rounding);
    }
    /* Part of the output window that lies on the resized image. */
    int y0 = oy < 0 ? -oy : 0, x0 = ox < 0 ? -ox : 0;
    int y1 = rh - oy < th ? rh - oy : th, x1 = rw - ox < tw ? rw - ox : tw;

    float lut[3][256];
    for (int c = 0; c < 3; c++) {
        for (int v = 0; v < 256; v++) {
            float x = (float)((double)v * cfg->rescale);
            lut[c][v] = (x - cfg->mean[c]) / cfg->std[c];
        }
    }
    const size_t plane = (size_t)th * (size_t)tw;
    /* Zero padding is pixel value 0 (PIL's fill=0 / numpy zeros), before
     * normalisation. */
    if (y0 > 0 || x0 > 0 || y1 < th || x1 < tw) {
        for (int c = 0; c < 3; c++) {
            for (size_t i = 0; i < plane; i++) out[(size_t)c * plane + i] = lut[c][0];
        }
    }
    if (y1 <= y0 || x1 <= x0) return CT_OK;
    int ww = x1 - x0, wh = y1 - y0;
    uint8_t *win = malloc((size_t)ww * (size_t)wh * 3);
    if (!win) return ct_set_error(CT_ERR_NOMEM, "ct_preprocess: cannot allocate %dx%d", ww, wh);
    s = resize_window(img->rgb, img->w, img->h, rw, rh, cfg->resample, ox + x0, oy + y0, ww, wh,
                      win);
    if (s == CT_OK) {
        for (int y = 0; y < wh; y++) {
            const uint8_t *p = win + (size_t)y * (size_t)ww * 3;
            size_t o = (size_t)(y0 + y) * (size_t)tw + (size_t)x0;
            for (int x = 0; x < ww; x++, p += 3, o++) {
                out[o] = lut[0][p[0]];
                out[plane + o] = lut[1][p[1]];
                out[2 * plane + o] = lut[2][p[2]];
            }
        }
    }
    free(win);
    return s;
}

/* ------------------------------------------------------------------------ */
/* HF preprocessor_config.json                                               */
/* ------------------------------------------------------------------------ */

static ct_status hf_bool(const cJSON *root, const char *key, bool def, bool *out,
                         const char *path) {
    *out = def;
    if (!cJSON_GetObjectItemCaseSensitive(root, key)) return CT_OK;
    return ct_json_get_bool(root, key, out, path);
}

/* A positive side length, as a JSON integer. */
static ct_status hf_side(const cJSON *obj, const char *key, int *out, const char *path,
                         const char *what) {
    int64_t v;
    ct_status s = ct_json_get_int(obj, key, &v, path);
    if (s != CT_OK) return s;
    if (v < 1 || v > CT_IMAGE_MAX_SIDE)
        return ct_set_error(CT_ERR_FORMAT, "%s: %s.%s = %lld not in [1, %d]", path, what, key,
                            (long long)v, CT_IMAGE_MAX_SIDE);
    *out = (int)v;
    return CT_OK;
}

/* "size" or "crop_size": an int, {"shortest_edge": n} (size only) or
 * {"height": h, "width": w}. *shortest is set for the first (for size),
 * else *h and *w. An int crop_size means n x n (get_size_dict with
 * default_to_square=True); an int size means shortest edge (False). */
static ct_status hf_size(const cJSON *root, const char *key, bool is_crop, int *shortest,
                         int *h, int *w, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (cJSON_IsNumber(v)) {
        int n;
        ct_status s = hf_side(root, key, &n, path, "config");
        if (s != CT_OK) return s;
        if (is_crop) {
            *h = *w = n;
        } else {
            *shortest = n;
        }
        return CT_OK;
    }
    if (!cJSON_IsObject(v))
        return ct_set_error(CT_ERR_FORMAT, "%s: %s must be an integer or an object", path, key);
    bool has_short = cJSON_GetObjectItemCaseSensitive(v, "shortest_edge") != NULL;
    bool has_hw = cJSON_GetObjectItemCaseSensitive(v, "height") != NULL ||
                  cJSON_GetObjectItemCaseSensitive(v, "width") != NULL;
    if (cJSON_GetObjectItemCaseSensitive(v, "longest_edge"))
        return ct_set_error(CT_ERR_UNSUPPORTED,
                            "%s: %s.longest_edge is not supported (CLIP uses shortest_edge or "
                            "height/width)", path, key);
    if (has_short && !has_hw && !is_crop) return hf_side(v, "shortest_edge", shortest, path, key);
    if (has_hw && !has_short) {
        ct_status s = hf_side(v, "height", h, path, key);
        if (s == CT_OK) s = hf_side(v, "width", w, path, key);
        return s;
    }
    return ct_set_error(CT_ERR_FORMAT, "%s: %s must hold %s", path, key,
                        is_crop ? "height and width" : "shortest_edge, or height and width");
}

/* image_mean / image_std: 3 numbers, or one number for all channels. */
static ct_status hf_triplet(const cJSON *root, const char *key, const float *def, float *out,
                            const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v) {
        memcpy(out, def, 3 * sizeof *out);
        return CT_OK;
    }
    if (cJSON_IsNumber(v)) {
        out[0] = out[1] = out[2] = (float)v->valuedouble;
        return CT_OK;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3)
        return ct_set_error(CT_ERR_FORMAT, "%s: %s must be a number or a list of 3 numbers", path,
                            key);
    for (int c = 0; c < 3; c++) {
        const cJSON *e = cJSON_GetArrayItem(v, c);
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble))
            return ct_set_error(CT_ERR_FORMAT, "%s: %s[%d] is not a finite number", path, key, c);
        /* json double -> float32, as numpy's np.array(mean, dtype=float32) */
        out[c] = (float)e->valuedouble;
    }
    return CT_OK;
}

ct_status ct_preprocess_cfg_from_hf(const char *path, ct_preprocess_cfg *cfg) {
    if (!cfg) return ct_set_error(CT_ERR_ARG, "ct_preprocess_cfg_from_hf: NULL config");
    if (!path) return ct_set_error(CT_ERR_ARG, "ct_preprocess_cfg_from_hf: NULL path");
    cJSON *root = ct_json_load(path);
    if (!root) return CT_ERR_FORMAT; /* message names the path */
    ct_status s = CT_OK;
    ct_preprocess_cfg c;
    memset(&c, 0, sizeof c);
    c.crop_rounding = CT_CROP_FLOOR;
    bool do_resize, do_crop, do_rescale, do_norm;
    if (!cJSON_IsObject(root)) {
        s = ct_set_error(CT_ERR_FORMAT, "%s: not a JSON object", path);
        goto done;
    }
    /* Defaults are CLIPImageProcessor's. */
    if ((s = hf_bool(root, "do_resize", true, &do_resize, path)) != CT_OK) goto done;
    if ((s = hf_bool(root, "do_center_crop", true, &do_crop, path)) != CT_OK) goto done;
    if ((s = hf_bool(root, "do_rescale", true, &do_rescale, path)) != CT_OK) goto done;
    if ((s = hf_bool(root, "do_normalize", true, &do_norm, path)) != CT_OK) goto done;
    if (do_resize) {
        c.resize_short = 224;
        if (cJSON_GetObjectItemCaseSensitive(root, "size")) {
            c.resize_short = 0;
            s = hf_size(root, "size", false, &c.resize_short, &c.resize_h, &c.resize_w, path);
            if (s != CT_OK) goto done;
        }
    }
    if (do_crop) {
        c.crop_h = c.crop_w = 224;
        if (cJSON_GetObjectItemCaseSensitive(root, "crop_size")) {
            s = hf_size(root, "crop_size", true, NULL, &c.crop_h, &c.crop_w, path);
            if (s != CT_OK) goto done;
        }
    }
    c.resample = CT_RESAMPLE_BICUBIC;
    if (cJSON_GetObjectItemCaseSensitive(root, "resample")) {
        int64_t r;
        if ((s = ct_json_get_int(root, "resample", &r, path)) != CT_OK) goto done;
        if (r == 2) {
            c.resample = CT_RESAMPLE_BILINEAR;
        } else if (r != 3) {
            static const char *names[] = {"NEAREST", "LANCZOS", "BILINEAR", "BICUBIC", "BOX",
                                          "HAMMING"};
            s = ct_set_error(CT_ERR_UNSUPPORTED,
                             "%s: resample %lld (%s) is not supported (2 BILINEAR or 3 BICUBIC)",
                             path, (long long)r, r >= 0 && r <= 5 ? names[r] : "unknown");
            goto done;
        }
    }
    c.rescale = 1.0;
    if (do_rescale) {
        c.rescale = 1.0 / 255.0;
        if (cJSON_GetObjectItemCaseSensitive(root, "rescale_factor")) {
            if ((s = ct_json_get_double(root, "rescale_factor", &c.rescale, path)) != CT_OK)
                goto done;
            if (!isfinite(c.rescale) || c.rescale <= 0) {
                s = ct_set_error(CT_ERR_FORMAT, "%s: rescale_factor must be positive", path);
                goto done;
            }
        }
    }
    if (do_norm) {
        if ((s = hf_triplet(root, "image_mean", OPENAI_MEAN, c.mean, path)) != CT_OK) goto done;
        if ((s = hf_triplet(root, "image_std", OPENAI_STD, c.std, path)) != CT_OK) goto done;
        for (int k = 0; k < 3; k++) {
            if (c.std[k] == 0.0f) {
                s = ct_set_error(CT_ERR_FORMAT, "%s: image_std[%d] is 0", path, k);
                goto done;
            }
        }
    } else {
        c.mean[0] = c.mean[1] = c.mean[2] = 0.0f;
        c.std[0] = c.std[1] = c.std[2] = 1.0f;
    }
    *cfg = c;
done:
    cJSON_Delete(root);
    return s;
}

uint64_t ct_preprocess_hash(uint64_t h, const ct_preprocess_cfg *p) {
    int64_t iv[7] = {p->resize_short, p->resize_h, p->resize_w, p->crop_h, p->crop_w,
                     p->crop_rounding, p->resample};
    h = ct_hash_bytes(h, iv, sizeof iv);
    h = ct_hash_bytes(h, &p->rescale, sizeof p->rescale);
    h = ct_hash_bytes(h, p->mean, sizeof p->mean);
    return ct_hash_bytes(h, p->std, sizeof p->std);
}

void ct_label_map_resize(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh) {
    for (int y = 0; y < dh; y++) {
        int64_t sy = (int64_t)(((double)y + 0.5) * sh / dh);
        if (sy > sh - 1) sy = sh - 1;
        for (int x = 0; x < dw; x++) {
            int64_t sx = (int64_t)(((double)x + 0.5) * sw / dw);
            if (sx > sw - 1) sx = sw - 1;
            dst[(size_t)y * (size_t)dw + (size_t)x] = src[(size_t)sy * (size_t)sw + (size_t)sx];
        }
    }
}

ct_status ct_preprocess_label_map(const uint8_t *map, int w, int h, const ct_preprocess_cfg *cfg,
                                  uint8_t pad, uint8_t *out) {
    if (!map || !out) return ct_set_error(CT_ERR_ARG, "ct_preprocess_label_map: NULL map");
    int th, tw;
    ct_status s = ct_preprocess_out_size(cfg, w, h, &th, &tw);
    if (s != CT_OK) return s;
    int rh, rw;
    resized_size(cfg, w, h, &rh, &rw);
    int oy = 0, ox = 0;
    if (cfg->crop_h > 0) {
        oy = crop_offset(rh, th, cfg->crop_rounding);
        ox = crop_offset(rw, tw, cfg->crop_rounding);
    }
    uint8_t *r = malloc((size_t)rw * (size_t)rh);
    if (!r) return ct_set_error(CT_ERR_NOMEM, "ct_preprocess_label_map: cannot allocate %dx%d",
                                rw, rh);
    ct_label_map_resize(map, w, h, r, rw, rh);
    for (int y = 0; y < th; y++)
        for (int x = 0; x < tw; x++) {
            int sy = y + oy, sx = x + ox;
            out[(size_t)y * (size_t)tw + (size_t)x] =
                sy >= 0 && sy < rh && sx >= 0 && sx < rw ? r[(size_t)sy * (size_t)rw + (size_t)sx]
                                                         : pad;
        }
    free(r);
    return CT_OK;
}
