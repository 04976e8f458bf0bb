/* Image decoding and CLIP preprocessing against Pillow / torchvision / HF
 * references (tests/fixtures/images, written by
 * tools/ref/gen_preprocess_ref.py): decoded RGB must equal Pillow's
 * convert("RGB") byte for byte, preprocessed tensors must be within 1/255
 * (after multiplying by std) of the Python pipelines; plus config parsing,
 * crop rounding and error messages. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/json.h"
#include "cliptune.h"
#include "harness.h"
#include "cliptune.h"
#include "cliptune.h"

/* ---- helpers ------------------------------------------------------------ */

static char g_dir[4096]; /* .../tests/fixtures/images */

static const char *fixture_dir(void) {
    if (!g_dir[0]) {
#ifdef CT_SOURCE_DIR
        snprintf(g_dir, sizeof g_dir, "%s/tests/fixtures/images", CT_SOURCE_DIR);
        return g_dir;
#endif
        /* Else: CMake compiles with the absolute source path. */
        const char *f = __FILE__;
        const char *slash = strrchr(f, '/');
        size_t n = slash ? (size_t)(slash - f) : 0;
        snprintf(g_dir, sizeof g_dir, "%.*s%sfixtures/images", (int)n, f, n ? "/" : "");
    }
    return g_dir;
}

static const char *fx(char *buf, size_t n, const char *rel) {
    snprintf(buf, n, "%s/%s", fixture_dir(), rel);
    return buf;
}

static cJSON *g_manifest;

static const cJSON *manifest(void) {
    if (!g_manifest) {
        char p[4200];
        g_manifest = ct_json_load(fx(p, sizeof p, "ref/manifest.json"));
        CHECK_MSG(g_manifest != NULL, "manifest: %s", ct_last_error());
    }
    return g_manifest;
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static int jint(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

/* Format class of a fixture name, for the per-class report. */
static int class_of(const char *file) {
    const char *dot = strrchr(file, '.');
    if (!dot) return 5;
    if (!strcmp(dot, ".jpg")) return 0;
    if (!strcmp(dot, ".png")) return 1;
    if (!strcmp(dot, ".bmp")) return 2;
    if (!strcmp(dot, ".gif")) return 3;
    return 4; /* .ppm .pgm .pbm */
}
static const char *CLASS_NAMES[] = {"JPEG", "PNG", "BMP", "GIF", "PNM", "?"};

/* ---- decoding ----------------------------------------------------------- */

static void test_decode_matches_pillow(void) {
    const cJSON *m = manifest();
    if (!m) return;
    int maxd[6] = {0}, count[6] = {0};
    size_t differ[6] = {0};
    const cJSON *im;
    cJSON_ArrayForEach(im, cJSON_GetObjectItemCaseSensitive(m, "images")) {
        char path[4200], ref[4200];
        const char *file = jstr(im, "file");
        fx(path, sizeof path, file);
        fx(ref, sizeof ref, jstr(im, "rgb"));
        ct_image img;
        ct_status s = ct_image_load(path, &img);
        CHECK_MSG(s == CT_OK, "%s: %s", file, ct_last_error());
        if (s != CT_OK) continue;
        int w = jint(im, "width"), h = jint(im, "height");
        CHECK_MSG(img.w == w && img.h == h, "%s: size %dx%d, Pillow %dx%d", file, img.w, img.h,
                  w, h);
        char *want;
        size_t n;
        CHECK_OK(ct_read_file(ref, &want, &n));
        if (img.w == w && img.h == h && n == (size_t)w * h * 3) {
            int c = class_of(file), md = 0;
            size_t nd = 0;
            for (size_t i = 0; i < n; i++) {
                int d = abs((int)img.rgb[i] - (int)(uint8_t)want[i]);
                if (d) nd++;
                if (d > md) md = d;
            }
            /* Every format, JPEG included (same libjpeg-turbo, same
             * settings), must be byte-identical to Pillow. */
            CHECK_MSG(md == 0, "%s (Pillow mode %s): %zu of %zu bytes differ, max %d", file,
                      jstr(im, "mode"), nd, n, md);
            if (md > maxd[c]) maxd[c] = md;
            differ[c] += nd;
            count[c]++;
        }
        free(want);
        ct_image_free(&img);
    }
    for (int c = 0; c < 5; c++)
        printf("    decode %-4s: %2d files, max |d| = %d/255, %zu bytes differ\n", CLASS_NAMES[c],
               count[c], maxd[c], differ[c]);
    CHECK(count[0] >= 5 && count[1] >= 10 && count[2] >= 3 && count[3] >= 3 && count[4] >= 5);
}

static void test_from_pixels(void) {
    const uint8_t px[2 * 4] = {10, 20, 30, 40, 50, 60, 70, 80};
    ct_image img;
    CHECK_OK(ct_image_from_pixels(px, 2, 1, 4, &img));
    CHECK(img.w == 2 && img.h == 1);
    CHECK(img.rgb && !memcmp(img.rgb, (uint8_t[]){10, 20, 30, 50, 60, 70}, 6));
    ct_image_free(&img);
    CHECK(img.rgb == NULL && img.w == 0);
    CHECK_OK(ct_image_from_pixels(px, 4, 2, 1, &img));
    CHECK(img.rgb[0] == 10 && img.rgb[1] == 10 && img.rgb[2] == 10 && img.rgb[21] == 80);
    ct_image_free(&img);
    CHECK_OK(ct_image_from_pixels(px, 2, 2, 2, &img)); /* grey + alpha */
    CHECK(img.rgb[3] == 30 && img.rgb[4] == 30 && img.rgb[9] == 70);
    ct_image_free(&img);
    CHECK_OK(ct_image_from_pixels(px, 1, 2, 3, &img));
    CHECK(!memcmp(img.rgb, px, 6));
    ct_image_free(&img);
    CHECK(ct_image_from_pixels(px, 1, 1, 5, &img) == CT_ERR_ARG);
    CHECK(ct_image_from_pixels(px, 0, 1, 3, &img) != CT_OK);
    CHECK(ct_image_from_pixels(px, 20000, 1, 3, &img) != CT_OK);
    CHECK(ct_image_from_pixels(NULL, 1, 1, 3, &img) == CT_ERR_ARG);
    ct_image_free(NULL);
}

/* ---- preprocessing ------------------------------------------------------ */

typedef struct stats {
    double max_err;  /* max |got - want| * std, over values */
    size_t n, exact;
    int cases;
} stats;

static void compare(const char *what, const float *got, const ct_npy *want, const float *std,
                    int oh, int ow, stats *st) {
    size_t plane = (size_t)oh * ow;
    CHECK_MSG(want->dtype == CT_F32 && want->ndim == 3 && want->shape[0] == 3 &&
                  want->shape[1] == oh && want->shape[2] == ow,
              "%s: reference shape (%lld, %lld, %lld), ours (3, %d, %d)", what,
              (long long)want->shape[0], (long long)want->shape[1], (long long)want->shape[2], oh,
              ow);
    if (want->numel != 3 * plane) return;
    const float *w = want->data;
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < 3 * plane; i++) {
        double d = fabs((double)got[i] - (double)w[i]) * std[i / plane];
        if (d > worst) {
            worst = d;
            at = i;
        }
        if (got[i] == w[i]) st->exact++;
    }
    st->n += 3 * plane;
    st->cases++;
    if (worst > st->max_err) st->max_err = worst;
    CHECK_MSG(worst <= 1.0 / 255 + 1e-6, "%s: |d*std| = %g at %zu (got %g, want %g)", what, worst,
              at, (double)got[at], (double)w[at]);
}

static void test_preprocess_matches_reference(void) {
    const cJSON *m = manifest();
    if (!m) return;
    stats st[3] = {{0}}; /* oa, hf, hf config files */
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(m, "cases")) {
        char path[4200], ref[4200], what[512];
        const char *file = jstr(c, "image");
        const char *cfgfile = jstr(c, "config");
        snprintf(what, sizeof what, "%s %s%s", file, jstr(c, "case"), cfgfile);
        ct_preprocess_cfg cfg;
        int k;
        if (*cfgfile) {
            CHECK_OK(ct_preprocess_cfg_from_hf(fx(path, sizeof path, cfgfile), &cfg));
            k = 2;
        } else {
            ct_preprocess_cfg_openai(&cfg, 224);
            cfg.resize_short = jint(c, "resize_short");
            cfg.crop_h = jint(c, "crop_h");
            cfg.crop_w = jint(c, "crop_w");
            k = strcmp(jstr(c, "family"), "hf") == 0;
            if (k) cfg.crop_rounding = CT_CROP_FLOOR;
        }
        ct_image img;
        ct_status s = ct_image_load(fx(path, sizeof path, file), &img);
        CHECK_MSG(s == CT_OK, "%s: %s", what, ct_last_error());
        if (s != CT_OK) continue;
        int oh = 0, ow = 0;
        CHECK_OK(ct_preprocess_out_size(&cfg, img.w, img.h, &oh, &ow));
        float *out = malloc((size_t)3 * oh * ow * sizeof *out);
        ct_npy want;
        s = ct_preprocess(&img, &cfg, out);
        CHECK_MSG(s == CT_OK, "%s: %s", what, ct_last_error());
        if (s == CT_OK && ct_npy_read(fx(ref, sizeof ref, jstr(c, "npy")), &want) == CT_OK) {
            compare(what, out, &want, cfg.std, oh, ow, &st[k]);
            ct_npy_free(&want);
        }
        free(out);
        ct_image_free(&img);
    }
    const char *names[3] = {"torchvision (OpenAI)", "HF CLIPImageProcessor", "HF config files"};
    for (int k = 0; k < 3; k++)
        printf("    %-22s: %3d cases, max |d*std| = %.3g, %zu of %zu values bit-exact\n",
               names[k], st[k].cases, st[k].max_err, st[k].exact, st[k].n);
    CHECK(st[0].cases >= 40 && st[1].cases >= 40 && st[2].cases >= 3);
}

/* Crop offsets on a synthetic image whose pixel (x, y) has R = x, G = y:
 * the output's first pixel shows where the crop started. */
static void crop_origin(int w, int h, int ch, int cw, ct_crop_rounding r, int *ox, int *oy,
                        bool *padded) {
    uint8_t *px = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            uint8_t *p = px + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(x + 1);
            p[1] = (uint8_t)(y + 1);
            p[2] = 0;
        }
    }
    ct_image img;
    CHECK_OK(ct_image_from_pixels(px, w, h, 3, &img));
    ct_preprocess_cfg cfg;
    ct_preprocess_cfg_openai(&cfg, 224);
    cfg.resize_short = 0; /* no resize */
    cfg.crop_h = ch;
    cfg.crop_w = cw;
    cfg.crop_rounding = r;
    cfg.rescale = 1.0;
    for (int c = 0; c < 3; c++) {
        cfg.mean[c] = 0;
        cfg.std[c] = 1;
    }
    float *out = malloc((size_t)3 * ch * cw * sizeof *out);
    CHECK_OK(ct_preprocess(&img, &cfg, out));
    /* Find the first non-padding pixel to recover the offset. */
    *padded = out[0] == 0.0f;
    *ox = *oy = 0;
    for (int y = 0; y < ch; y++) {
        for (int x = 0; x < cw; x++) {
            float r0 = out[(size_t)y * cw + x], g0 = out[(size_t)ch * cw + (size_t)y * cw + x];
            if (r0 != 0.0f) {
                *ox = (int)r0 - 1 - x;
                *oy = (int)g0 - 1 - y;
                goto found;
            }
        }
    }
found:
    free(out);
    free(px);
    ct_image_free(&img);
}

static void test_crop_rounding(void) {
    /* margin d = size - crop: torchvision int(round(d / 2.0)) with Python's
     * half-to-even, HF d // 2; negative d: torchvision pads floor(|d|/2)
     * before, HF ceil(|d|/2). */
    static const struct {
        int d, round, floor;
    } t[] = {{0, 0, 0},   {1, 0, 0},   {2, 1, 1},   {3, 2, 1},   {5, 2, 2},  {7, 4, 3},
             {9, 4, 4},   {11, 6, 5},  {-1, 0, -1}, {-2, -1, -1}, {-3, -1, -2}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int size = 20, crop = size - t[i].d;
        int ox, oy;
        bool pad;
        crop_origin(size, 30, 10, crop, CT_CROP_ROUND, &ox, &oy, &pad);
        CHECK_MSG(ox == t[i].round, "round d=%d: offset %d, want %d", t[i].d, ox, t[i].round);
        CHECK(oy == 10);
        crop_origin(size, 30, 10, crop, CT_CROP_FLOOR, &ox, &oy, &pad);
        CHECK_MSG(ox == t[i].floor, "floor d=%d: offset %d, want %d", t[i].d, ox, t[i].floor);
        CHECK(oy == 10);
    }
}

static void test_resize_sizes(void) {
    /* torchvision / HF: shorter side to n, longer int(n * long / short). */
    ct_preprocess_cfg cfg;
    ct_preprocess_cfg_openai(&cfg, 224);
    cfg.crop_h = cfg.crop_w = 0;
    int oh, ow;
    CHECK_OK(ct_preprocess_out_size(&cfg, 640, 427, &oh, &ow));
    CHECK(oh == 224 && ow == 335); /* 224 * 640 / 427 = 335.7 */
    CHECK_OK(ct_preprocess_out_size(&cfg, 17, 301, &oh, &ow));
    CHECK(ow == 224 && oh == 3966); /* 224 * 301 / 17 = 3966.1 */
    CHECK_OK(ct_preprocess_out_size(&cfg, 300, 300, &oh, &ow));
    CHECK(oh == 224 && ow == 224);
    CHECK_OK(ct_preprocess_out_size(&cfg, 224, 225, &oh, &ow));
    CHECK(oh == 225 && ow == 224);
    ct_preprocess_cfg_openai(&cfg, 224);
    CHECK_OK(ct_preprocess_out_size(&cfg, 1, 1000, &oh, &ow));
    CHECK(oh == 224 && ow == 224);
    cfg.crop_h = 0; /* one of crop h/w set: invalid */
    CHECK(ct_preprocess_out_size(&cfg, 10, 10, &oh, &ow) == CT_ERR_ARG);
    ct_preprocess_cfg_openai(&cfg, 224);
    cfg.std[1] = 0;
    CHECK(ct_preprocess_out_size(&cfg, 10, 10, &oh, &ow) == CT_ERR_ARG);

    /* Same-size resize is a copy (Pillow returns a copy; torchvision skips). */
    char p[4200];
    ct_image a, b;
    CHECK_OK(ct_image_load(fx(p, sizeof p, "photo_444.jpg"), &a));
    CHECK_OK(ct_image_resize(&a, a.w, a.h, CT_RESAMPLE_BICUBIC, &b));
    CHECK(b.rgb && !memcmp(a.rgb, b.rgb, (size_t)a.w * a.h * 3));
    ct_image_free(&b);
    CHECK(ct_image_resize(&a, 0, 5, CT_RESAMPLE_BICUBIC, &b) == CT_ERR_ARG && !b.rgb);
    ct_image_free(&a);
}

/* Results must not depend on the thread count (each output pixel has its own
 * weights; rows are only split between threads). */
static void test_threads_deterministic(void) {
    char p[4200];
    ct_image a, big;
    CHECK_OK(ct_image_load(fx(p, sizeof p, "photo_prog.jpg"), &a));
    /* Large enough that the horizontal pass crosses the parallel threshold. */
    CHECK_OK(ct_image_resize(&a, 2400, 1600, CT_RESAMPLE_BICUBIC, &big));
    ct_preprocess_cfg cfg;
    ct_preprocess_cfg_openai(&cfg, 224);
    size_t n = 3 * 224 * 224;
    float *o1 = malloc(n * sizeof *o1), *o2 = malloc(n * sizeof *o2);
    int saved = ct_get_num_threads();
    ct_set_num_threads(1);
    CHECK_OK(ct_preprocess(&big, &cfg, o1));
    ct_set_num_threads(4);
    CHECK_OK(ct_preprocess(&big, &cfg, o2));
    ct_set_num_threads(saved);
    CHECK(!memcmp(o1, o2, n * sizeof *o1));
    free(o1);
    free(o2);
    ct_image_free(&a);
    ct_image_free(&big);
}

/* ---- HF configs ----------------------------------------------------------- */

static void test_hf_config(void) {
    char p[4200];
    ct_preprocess_cfg a, b, oa;
    ct_preprocess_cfg_openai(&oa, 224);
    CHECK_OK(ct_preprocess_cfg_from_hf(fx(p, sizeof p, "hf/new_schema.json"), &a));
    CHECK_OK(ct_preprocess_cfg_from_hf(fx(p, sizeof p, "hf/old_schema.json"), &b));
    CHECK(!memcmp(&a, &b, sizeof a)); /* both schemas, same meaning */
    CHECK(a.resize_short == 224 && a.resize_h == 0 && a.crop_h == 224 && a.crop_w == 224);
    CHECK(a.crop_rounding == CT_CROP_FLOOR && a.resample == CT_RESAMPLE_BICUBIC);
    CHECK(a.rescale == 1.0 / 255.0);
    CHECK(!memcmp(a.mean, oa.mean, sizeof a.mean) && !memcmp(a.std, oa.std, sizeof a.std));

    CHECK_OK(ct_preprocess_cfg_from_hf(fx(p, sizeof p, "hf/fixed_size.json"), &a));
    CHECK(a.resize_short == 0 && a.resize_h == 24 && a.resize_w == 40);
    CHECK(a.crop_h == 0 && a.crop_w == 0); /* do_center_crop false */
    CHECK(a.mean[0] == 0.5f && a.std[2] == 0.5f);

    CHECK_OK(ct_preprocess_cfg_from_hf(fx(p, sizeof p, "hf/small_bilinear.json"), &a));
    CHECK(a.resample == CT_RESAMPLE_BILINEAR && a.resize_short == 35);
    CHECK(a.crop_h == 30 && a.crop_w == 32);

    CHECK_OK(ct_preprocess_cfg_from_hf(fx(p, sizeof p, "hf/no_resize_no_norm.json"), &a));
    CHECK(a.resize_short == 0 && a.resize_h == 0 && a.crop_h == 32);
    CHECK(a.mean[0] == 0.0f && a.std[0] == 1.0f && a.rescale == 1.0 / 255.0);

    ct_status s = ct_preprocess_cfg_from_hf(fx(p, sizeof p, "bad/hf_bad_size.json"), &a);
    CHECK(s == CT_ERR_UNSUPPORTED && strstr(ct_last_error(), "hf_bad_size.json") &&
          strstr(ct_last_error(), "longest_edge"));
    s = ct_preprocess_cfg_from_hf(fx(p, sizeof p, "bad/hf_bad_mean.json"), &a);
    CHECK(s == CT_ERR_FORMAT && strstr(ct_last_error(), "image_mean"));
    s = ct_preprocess_cfg_from_hf(fx(p, sizeof p, "hf/missing.json"), &a);
    CHECK(s != CT_OK && strstr(ct_last_error(), "missing.json"));
}

/* ---- TIFF and WebP (libtiff, libwebp) ----------------------------------- */

/* tests/fixtures/images/tiff_webp, written by tools/ref/gen_tiff_webp_ref.py:
 * decoded from memory, every file must equal Pillow's convert("RGB") byte
 * for byte, the lossy ones too (JPEG-in-TIFF and lossy WebP go through the
 * same libjpeg-turbo / libwebp as Pillow's). */
static void test_tiff_webp_match_pillow(void) {
    char mp[4200];
    cJSON *m = ct_json_load(fx(mp, sizeof mp, "tiff_webp/manifest.json"));
    CHECK_MSG(m != NULL, "tiff_webp manifest: %s", ct_last_error());
    if (!m) return;
    int count[2] = {0}, maxd[2] = {0};
    size_t differ[2] = {0};
    const cJSON *im;
    cJSON_ArrayForEach(im, cJSON_GetObjectItemCaseSensitive(m, "images")) {
        char rel[512], path[4200], ref[4200];
        const char *file = jstr(im, "file");
        snprintf(rel, sizeof rel, "tiff_webp/%s", file);
        fx(path, sizeof path, rel);
        snprintf(rel, sizeof rel, "tiff_webp/%s", jstr(im, "rgb"));
        fx(ref, sizeof ref, rel);
        char *data, *want;
        size_t size, n;
        CHECK_OK(ct_read_file(path, &data, &size));
        ct_image img;
        ct_status s = ct_image_decode((const uint8_t *)data, size, file, &img);
        free(data);
        CHECK_MSG(s == CT_OK, "%s: %s", file, ct_last_error());
        if (s != CT_OK) continue;
        int w = jint(im, "width"), h = jint(im, "height");
        int k = strcmp(jstr(im, "format"), "WEBP") == 0;
        CHECK_MSG(img.w == w && img.h == h, "%s: size %dx%d, Pillow %dx%d", file, img.w, img.h,
                  w, h);
        CHECK_OK(ct_read_file(ref, &want, &n));
        if (img.w == w && img.h == h && n == (size_t)w * h * 3) {
            int md = 0;
            size_t nd = 0;
            for (size_t i = 0; i < n; i++) {
                int d = abs((int)img.rgb[i] - (int)(uint8_t)want[i]);
                nd += d != 0;
                if (d > md) md = d;
            }
            CHECK_MSG(md == 0, "%s (Pillow mode %s): %zu of %zu bytes differ, max %d", file,
                      jstr(im, "mode"), nd, n, md);
            if (md > maxd[k]) maxd[k] = md;
            differ[k] += nd;
            count[k]++;
        }
        free(want);
        ct_image_free(&img);
    }
    for (int k = 0; k < 2; k++)
        printf("    decode %-4s: %2d files, max |d| = %d/255, %zu bytes differ\n",
               k ? "WebP" : "TIFF", count[k], maxd[k], differ[k]);
    CHECK(count[0] >= 19 && count[1] >= 6);
    cJSON_Delete(m);
}

/* Every prefix (in steps) and some byte-flipped copies of each TIFF / WebP
 * fixture: decoded or refused with an error naming the input and a zeroed
 * image, and libtiff / libwebp print nothing. */
static void test_tiff_webp_damage(void) {
    char mp[4200];
    cJSON *m = ct_json_load(fx(mp, sizeof mp, "tiff_webp/manifest.json"));
    if (!m) return;
    fflush(stderr);
    int saved = dup(2);
    FILE *cap = tmpfile();
    CHECK(saved >= 0 && cap);
    if (saved < 0 || !cap) return;
    dup2(fileno(cap), 2);
    int tried = 0, refused = 0, unnamed = 0, dirty = 0;
    const cJSON *im;
    cJSON_ArrayForEach(im, cJSON_GetObjectItemCaseSensitive(m, "images")) {
        char rel[512], path[4200];
        snprintf(rel, sizeof rel, "tiff_webp/%s", jstr(im, "file"));
        char *data;
        size_t size;
        if (ct_read_file(fx(path, sizeof path, rel), &data, &size) != CT_OK) continue;
        uint8_t *copy = malloc(size);
        size_t step = size / 40 + 1;
        for (int pass = 0; pass < 2; pass++) {
            for (size_t cut = 0; cut < size; cut += step) {
                size_t n = size;
                memcpy(copy, data, size);
                if (pass == 0) {
                    n = cut; /* prefix */
                } else {
                    for (size_t i = cut; i < size; i += 97) copy[i] ^= (uint8_t)(0x5A + i);
                }
                ct_image img;
                ct_status s = ct_image_decode(copy, n, "damaged.bin", &img);
                tried++;
                if (s != CT_OK) {
                    refused++;
                    unnamed += strstr(ct_last_error(), "damaged.bin") == NULL;
                    dirty += img.rgb != NULL || img.w != 0 || img.h != 0;
                } else {
                    dirty += img.rgb == NULL || img.w < 1 || img.h < 1;
                    ct_image_free(&img);
                }
            }
        }
        free(copy);
        free(data);
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    long printed = (fseek(cap, 0, SEEK_END), ftell(cap));
    fclose(cap);
    cJSON_Delete(m);
    printf("    damaged TIFF/WebP: %d inputs, %d refused, %ld bytes printed\n", tried, refused,
           printed);
    CHECK(tried > 1000 && refused > tried / 3);
    CHECK_MSG(unnamed == 0, "%d errors do not name the input", unnamed);
    CHECK(dirty == 0);
    CHECK_MSG(printed == 0, "the decoders printed %ld bytes to stderr", printed);
}

static void copy_fixture(const char *rel, const char *dst) {
    char p[4200];
    char *data;
    size_t n;
    CHECK_OK(ct_read_file(fx(p, sizeof p, rel), &data, &n));
    CHECK_OK(ct_write_file_atomic(dst, data, n));
    free(data);
}

/* folder:DIR finds .tif / .tiff / .webp files in any letter case (as
 * torchvision's IMG_EXTENSIONS) and its images decode. */
static void test_folder_tiff_webp(void) {
    char dir[4200], a[4300], b[4300], spec[4400];
    snprintf(dir, sizeof dir, "%s/tw_folder", ct_test_tmpdir());
    snprintf(a, sizeof a, "%s/cat", dir);
    snprintf(b, sizeof b, "%s/dog", dir);
    CHECK_OK(ct_mkdir_p(a));
    CHECK_OK(ct_mkdir_p(b));
    static const char *const files[][2] = {
        {"tiff_webp/rgb_lzw.tif", "cat/a.tif"},   {"tiff_webp/grey.tif", "cat/b.TIFF"},
        {"tiff_webp/tiled.tif", "cat/c.Tif"},     {"tiff_webp/lossy.webp", "dog/d.webp"},
        {"tiff_webp/anim.webp", "dog/e.WEBP"},    {"tiff_webp/lossless.webp", "dog/f.WebP"},
        {"tiff_webp/lossless.webp", "dog/g.webp.txt"}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char dst[4400];
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i][1]);
        copy_fixture(files[i][0], dst);
    }
    snprintf(spec, sizeof spec, "folder:%s", dir);
    ct_splits sp;
    CHECK_OK(ct_data_open(spec, &sp));
    if (!sp.train) return;
    ct_dataset *parts[3] = {sp.train, sp.val, sp.test};
    int64_t total = 0, decoded = 0;
    for (int k = 0; k < 3; k++) {
        for (int64_t i = 0; parts[k] && i < parts[k]->n_items; i++) {
            ct_image img;
            ct_status s = ct_dataset_image(parts[k], i, &img);
            CHECK_MSG(s == CT_OK, "%s: %s", parts[k]->items[i].path, ct_last_error());
            decoded += s == CT_OK && img.w > 0;
            ct_image_free(&img);
            total++;
        }
    }
    CHECK_MSG(total == 6, "folder dataset has %lld items (want 6)", (long long)total);
    CHECK(decoded == total);
    CHECK(sp.train->n_classes == 2);
    ct_splits_free(&sp);
}

/* ---- errors ------------------------------------------------------------- */

static void test_errors(void) {
    static const struct {
        const char *file, *needle;
        ct_status want;
    } t[] = {
        {"bad/no_such_file.png", "no_such_file.png", CT_ERR_IO},
        {"bad/truncated.png", "truncated", CT_ERR_FORMAT},
        {"bad/bad_crc.png", "bad checksum in chunk 'IHDR'", CT_ERR_FORMAT},
        {"bad/bad_adler.png", "incorrect data check", CT_ERR_FORMAT},
        {"bad/truncated.bmp", "truncated", CT_ERR_FORMAT},
        {"bad/truncated.jpg", "truncated", CT_ERR_FORMAT},
        {"bad/truncated_prog.jpg", "truncated", CT_ERR_FORMAT},
        {"bad/not_an_image.png", "not a recognised image", CT_ERR_FORMAT},
        {"bad/empty.jpg", "empty", CT_ERR_FORMAT},
        {"bad/huge.png", "100000x100000 exceeds", CT_ERR_FORMAT},
        {"bad/zero_width.png", "empty", CT_ERR_FORMAT},
        {"bad/huge.jpg", "60000x60000 exceeds", CT_ERR_FORMAT},
        {"bad/huge.gif", "40000x40000 exceeds", CT_ERR_FORMAT},
        {"bad/huge.bmp", "50000x50000 exceeds", CT_ERR_FORMAT},
        {"bad/huge.ppm", "20000x20000 exceeds", CT_ERR_FORMAT},
        {"bad/truncated.gif", "truncated", CT_ERR_FORMAT},
        {"bad/early_end.gif", "end code", CT_ERR_FORMAT},
        {"bad/truncated.ppm", "truncated", CT_ERR_FORMAT},
        {"bad/badtoken.pgm", "bad sample", CT_ERR_FORMAT},
        {"bad/bigvalue.pgm", "over maxval", CT_ERR_FORMAT},
        /* pixel data cut off (the directory is intact) */
        {"tiff_webp/bad/truncated.tif", "truncated", CT_ERR_FORMAT},
        /* the directory cut off */
        {"tiff_webp/bad/truncated_lzw.tif", "TIFF: cannot read the header", CT_ERR_FORMAT},
        {"tiff_webp/bad/huge.tif", "100000x100000 exceeds", CT_ERR_FORMAT},
        /* 32-bit float samples: Pillow's mode F, not read here */
        {"tiff_webp/bad/float.tif", "unsupported layout", CT_ERR_UNSUPPORTED},
        {"tiff_webp/bad/truncated.webp", "truncated", CT_ERR_FORMAT},
        {"tiff_webp/bad/corrupt.webp", "WebP: cannot decode", CT_ERR_FORMAT},
        {"tiff_webp/bad/huge.webp", "16384x16384 exceeds", CT_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char p[4200];
        ct_image img;
        memset(&img, 0x5A, sizeof img);
        ct_status s = ct_image_load(fx(p, sizeof p, t[i].file), &img);
        const char *base = strrchr(t[i].file, '/') + 1;
        CHECK_MSG(s == t[i].want, "%s: status %s (want %s): %s", t[i].file, ct_status_str(s),
                  ct_status_str(t[i].want), ct_last_error());
        CHECK_MSG(strstr(ct_last_error(), base) != NULL, "%s: message does not name the file: %s",
                  t[i].file, ct_last_error());
        CHECK_MSG(strstr(ct_last_error(), t[i].needle) != NULL, "%s: message lacks '%s': %s",
                  t[i].file, t[i].needle, ct_last_error());
        CHECK(img.rgb == NULL && img.w == 0 && img.h == 0);
        printf("    %-26s -> %s\n", base, strstr(ct_last_error(), base));
    }
    ct_image img;
    /* GIF with 12-bit literals (13-bit codes): the code after the table's
     * end repeats itself (KwKwK) and then points past the table, which
     * Pillow rejects; must be an error, not an out-of-bounds read. */
    {
        uint8_t gif[64] = "GIF89a\x05\x00\x01\x00\x00\x00\x00"
                          ",\x00\x00\x00\x00\x05\x00\x01\x00\x00\x0c";
        size_t n = 6 + 7 + 10 + 1;
        const int codes[] = {4096, 5, 4098, 4098, 4097};
        uint8_t data[16] = {0};
        int bits = 0;
        for (int i = 0; i < 5; i++, bits += 13) {
            for (int b = 0; b < 13; b++) {
                if (codes[i] >> b & 1) data[(bits + b) / 8] |= (uint8_t)(1 << ((bits + b) % 8));
            }
        }
        int nd = (bits + 7) / 8;
        gif[n++] = (uint8_t)nd;
        memcpy(gif + n, data, (size_t)nd);
        n += (size_t)nd;
        gif[n++] = 0;
        gif[n++] = ';';
        ct_status s = ct_image_decode(gif, n, "lzw12.gif", &img);
        CHECK_MSG(s == CT_ERR_FORMAT && strstr(ct_last_error(), "LZW"), "lzw12.gif: %s: %s",
                  ct_status_str(s), ct_last_error());
        /* The same codes fill a 3-pixel frame before the bad one: fine. */
        gif[6] = 3;
        gif[13 + 5] = 3;
        CHECK_OK(ct_image_decode(gif, n, "lzw12.gif", &img));
        CHECK(img.w == 3 && img.rgb[0] == 5 && img.rgb[8] == 5);
        ct_image_free(&img);
    }
    /* From memory: the name stands in for the path. */
    CHECK(ct_image_decode((const uint8_t *)"GIF89a", 6, NULL, &img) == CT_ERR_FORMAT);
    CHECK(strstr(ct_last_error(), "<memory>") != NULL);
    CHECK(ct_image_decode((const uint8_t *)"P6 1 1 255\n\1\2\3", 14, "x.ppm", &img) == CT_OK);
    CHECK(img.w == 1 && img.h == 1 && img.rgb[0] == 1 && img.rgb[2] == 3);
    ct_image_free(&img);
    CHECK(ct_image_load(NULL, &img) == CT_ERR_ARG);
}

/* Decompression bombs: a 30-byte GIF declaring 13,904 x 14,090 pixels (more
 * than Pillow's 178,956,970-pixel error threshold) is refused before any
 * pixel is allocated. */
static void test_bomb_refused(void) {
    uint8_t gif[40] = {'G', 'I', 'F', '8', '9', 'a'};
    int w = 13904, h = 14090;
    gif[6] = (uint8_t)(w & 255), gif[7] = (uint8_t)(w >> 8);
    gif[8] = (uint8_t)(h & 255), gif[9] = (uint8_t)(h >> 8);
    gif[10] = 0, gif[11] = 0, gif[12] = 0; /* no global palette */
    gif[13] = 0x2C;                        /* image descriptor at 0,0, same size */
    gif[18] = gif[6], gif[19] = gif[7], gif[20] = gif[8], gif[21] = gif[9];
    gif[22] = 0, gif[23] = 2, gif[24] = 0, gif[25] = 0x3B;
    ct_image img = {0};
    ct_status st = ct_image_decode(gif, 26, "bomb.gif", &img);
    CHECK_MSG(st == CT_ERR_FORMAT && strstr(ct_last_error(), "bomb.gif") &&
                  strstr(ct_last_error(), "decompression-bomb"), "%s", ct_last_error());
    CHECK(img.rgb == NULL);
    CHECK(CT_IMAGE_MAX_PIXELS == 178956970);
}

int main(void) {
    RUN(test_decode_matches_pillow);
    RUN(test_from_pixels);
    RUN(test_tiff_webp_match_pillow);
    RUN(test_tiff_webp_damage);
    RUN(test_folder_tiff_webp);
    RUN(test_preprocess_matches_reference);
    RUN(test_crop_rounding);
    RUN(test_resize_sizes);
    RUN(test_threads_deterministic);
    RUN(test_hf_config);
    RUN(test_errors);
    RUN(test_bomb_refused);
    cJSON_Delete(g_manifest);
    return ct_test_summary();
}
