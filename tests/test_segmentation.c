/* Semantic segmentation data and metrics: ct_seg_* against a numpy port of
 * mmsegmentation's intersect_and_union / total_area_to_metrics
 * (tests/fixtures/segmetrics_ref.h, tools/ref/gen_segmetrics_ref.py) and a
 * hand-worked case; ct_label_map_load on PNGs written here with libpng;
 * vocseg: on hand-made layouts (classes, names, splits, views carrying the
 * masks, malformed layouts) and on the scenes set (every mask against its
 * image and against voc:'s labels of the same image). */
#include <png.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/json.h"
#include "cliptune.h"
#include "data/dataset.h"
#include "fixtures/segmetrics_ref.h"
#include "harness.h"
#include "train/metrics.h"

#define FM_DIR "/usr/share/datasets/fashion-mnist"

#define CHECK_ERR_HAS(word)                                                                  \
    CHECK_MSG(strstr(ct_last_error(), (word)) != NULL, "error message \"%s\" lacks \"%s\"", \
              ct_last_error(), (word))

/* ---- files ---------------------------------------------------------------- */

/* tmpdir/rel with every level created, into buf. */
static const char *path_in(char *buf, size_t n, const char *rel) {
    snprintf(buf, n, "%s/%s", ct_test_tmpdir(), rel);
    for (char *p = buf + strlen(ct_test_tmpdir()) + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(buf, 0777);
            *p = '/';
        }
    return buf;
}

static void write_bytes(const char *rel, const void *data, size_t n) {
    char p[2048];
    FILE *f = fopen(path_in(p, sizeof p, rel), "wb");
    CHECK_MSG(f != NULL, "cannot create %s", p);
    if (!f) return;
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static void write_text(const char *rel, const char *text) { write_bytes(rel, text, strlen(text)); }

static void touch(const char *rel) { write_text(rel, "not decoded"); }

/* A PNG by libpng: px holds h rows of w samples of (depth > 8 ? 2 : 1) bytes
 * times the channels of type; depth < 8 is packed by libpng. */
static void write_png(const char *rel, int w, int h, int type, int depth, bool interlace,
                      const uint8_t *px, int n_pal) {
    char p[2048];
    FILE *f = fopen(path_in(p, sizeof p, rel), "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (!f || !png || !info || setjmp(png_jmpbuf(png))) {
        ct_test_fail(__FILE__, __LINE__, "cannot write %s", p);
        png_destroy_write_struct(&png, &info);
        if (f) fclose(f);
        return;
    }
    png_init_io(png, f);
    png_set_check_for_invalid_index(png, 0); /* pal_short: indices past the palette */
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, type,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (type == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[256];
        for (int i = 0; i < 256; i++)
            pal[i] = (png_color){(png_byte)(i * 37), (png_byte)(i * 11), (png_byte)(255 - i)};
        png_set_PLTE(png, info, pal, n_pal);
    }
    png_write_info(png, info);
    if (depth < 8) png_set_packing(png);
    int ch = type == PNG_COLOR_TYPE_RGB ? 3 : type == PNG_COLOR_TYPE_RGB_ALPHA ? 4
             : type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : 1;
    size_t stride = (size_t)w * ch * (depth > 8 ? 2 : 1);
    png_bytep *rows = malloc((size_t)h * sizeof *rows);
    for (int y = 0; y < h; y++) rows[y] = (png_bytep)px + (size_t)y * stride;
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    fclose(f);
}

static const char *tmp(char *buf, size_t n, const char *rel) {
    snprintf(buf, n, "%s/%s", ct_test_tmpdir(), rel);
    return buf;
}

/* ---- metrics ---------------------------------------------------------------- */

static void check_metrics(const char *name, const ct_seg_metrics *m, int K, double miou,
                          double macc, double aacc, int n_iou, const double *iou,
                          const double *acc, const double *area_label, const double *area_pred) {
    CHECK_MSG(m->n_classes == K, "%s: n_classes %d, want %d", name, m->n_classes, K);
    CHECK_NEAR("miou", m->miou, miou, 1e-12, 1e-12);
    CHECK_NEAR("macc", m->macc, macc, 1e-12, 1e-12);
    CHECK_NEAR("aacc", m->aacc, aacc, 1e-12, 1e-12);
    CHECK_MSG(m->n_iou_classes == n_iou, "%s: n_iou_classes %d, want %d", name, m->n_iou_classes,
              n_iou);
    double sum = 0;
    for (int c = 0; c < K; c++) {
        CHECK_MSG(isnan(iou[c]) == isnan(m->iou[c]) &&
                      (isnan(iou[c]) || fabs(m->iou[c] - iou[c]) <= 1e-12),
                  "%s: iou[%d] = %.17g, want %.17g", name, c, m->iou[c], iou[c]);
        CHECK_MSG(isnan(acc[c]) == isnan(m->acc[c]) &&
                      (isnan(acc[c]) || fabs(m->acc[c] - acc[c]) <= 1e-12),
                  "%s: acc[%d] = %.17g, want %.17g", name, c, m->acc[c], acc[c]);
        CHECK_MSG((double)m->area_label[c] == area_label[c] &&
                      (double)m->area_pred[c] == area_pred[c],
                  "%s: class %d areas label %lld pred %lld, want %.0f %.0f", name, c,
                  (long long)m->area_label[c], (long long)m->area_pred[c], area_label[c],
                  area_pred[c]);
        sum += area_label[c];
    }
    CHECK_MSG((double)m->n_pixels == sum, "%s: n_pixels %lld, want %.0f", name,
              (long long)m->n_pixels, sum);
}

static void test_metrics_ref(void) {
    for (int k = 0; k < SEGREF_N_CASES; k++) {
        const segref_case *c = &SEGREF_CASES[k];
        int64_t *conf = calloc((size_t)(c->K + 1) * c->K, sizeof *conf);
        size_t at = 0;
        for (int i = 0; i < c->n_images; i++) {
            int64_t n = (int64_t)c->h[i] * c->w[i];
            CHECK_OK(ct_seg_confusion_add(conf, c->K, c->pred + at, c->gt + at, n,
                                          c->ignore_index));
            at += (size_t)n;
        }
        ct_seg_metrics m;
        CHECK_OK(ct_seg_metrics_compute(conf, c->K, &m));
        check_metrics(c->name, &m, c->K, c->miou, c->macc, c->aacc, c->n_iou_classes, c->iou,
                      c->acc, c->area_label, c->area_pred);
        /* the images in one call: the same confusion */
        int64_t *one = calloc((size_t)(c->K + 1) * c->K, sizeof *one);
        CHECK_OK(ct_seg_confusion_add(one, c->K, c->pred, c->gt, (int64_t)at, c->ignore_index));
        CHECK(memcmp(one, conf, (size_t)(c->K + 1) * c->K * sizeof *one) == 0);
        if (k == 0) { /* JSON: NaN as null, names */
            char p[2048];
            const char *names[6] = {"background", "a", "b", "c", "d", "e"};
            CHECK_OK(ct_seg_metrics_save_json(&m, names, tmp(p, sizeof p, "seg_metrics.json")));
            char *text = NULL;
            size_t size = 0;
            CHECK_OK(ct_read_file(p, &text, &size));
            cJSON *j = text ? cJSON_Parse(text) : NULL;
            CHECK(j != NULL);
            if (j) {
                CHECK(!strcmp(cJSON_GetObjectItem(j, "task")->valuestring, "segmentation"));
                CHECK_NEAR("json miou", cJSON_GetObjectItem(j, "miou")->valuedouble, c->miou,
                           1e-12, 1e-12);
                cJSON *per = cJSON_GetObjectItem(j, "per_class");
                CHECK(cJSON_GetArraySize(per) == 6);
                cJSON *e4 = cJSON_GetArrayItem(per, 4);
                CHECK(cJSON_IsNull(cJSON_GetObjectItem(e4, "iou")));
                CHECK(!strcmp(cJSON_GetObjectItem(e4, "name")->valuestring, "d"));
                CHECK(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(per, 5), "acc")));
                cJSON_Delete(j);
            }
            free(text);
        }
        ct_seg_metrics_free(&m);
        free(one);
        free(conf);
    }
}

/* By hand, K = 4, ignore 255:
 *   gt   0 0 1 1 2 255 9      (9: >= K, not ignored: mmseg keeps its pred)
 *   pred 0 1 1 1 0 2   0
 * intersect 1 2 0 0; area_label 2 2 1 0; area_pred (255 dropped) 3 3 0 0;
 * union 4 3 1 0; IoU 1/4 2/3 0 NaN -> mIoU (1/4 + 2/3) / 3; Acc 1/2 1 0 NaN
 * -> mAcc 1/2; aAcc 3/5. */
static void test_metrics_hand(void) {
    const uint8_t gt[7] = {0, 0, 1, 1, 2, 255, 9}, pred[7] = {0, 1, 1, 1, 0, 2, 0};
    int64_t conf[5 * 4] = {0};
    CHECK_OK(ct_seg_confusion_add(conf, 4, pred, gt, 7, CT_SEG_IGNORE_DEFAULT));
    CHECK(conf[4 * 4 + 0] == 1); /* the out-of-range row */
    ct_seg_metrics m;
    CHECK_OK(ct_seg_metrics_compute(conf, 4, &m));
    const double iou[4] = {0.25, 2.0 / 3, 0, NAN}, acc[4] = {0.5, 1, 0, NAN};
    const double al[4] = {2, 2, 1, 0}, ap[4] = {3, 3, 0, 0};
    check_metrics("hand", &m, 4, (0.25 + 2.0 / 3) / 3, 0.5, 0.6, 3, iou, acc, al, ap);
    ct_seg_metrics_free(&m);
    ct_seg_metrics_free(&m); /* zeroed: twice is fine */
    ct_seg_metrics_free(NULL);
    /* ignore_index -1: nothing dropped, 255 is then >= K like 9 */
    int64_t c2[5 * 4] = {0};
    CHECK_OK(ct_seg_confusion_add(c2, 4, pred, gt, 7, -1));
    CHECK(c2[4 * 4 + 0] == 1 && c2[4 * 4 + 2] == 1);
    /* perfect */
    int64_t c3[3 * 2] = {0};
    const uint8_t g3[4] = {0, 1, 1, 0};
    CHECK_OK(ct_seg_confusion_add(c3, 2, g3, g3, 4, 255));
    CHECK_OK(ct_seg_metrics_compute(c3, 2, &m));
    CHECK(m.miou == 1 && m.macc == 1 && m.aacc == 1 && m.n_pixels == 4);
    ct_seg_metrics_free(&m);
}

static void test_metrics_errors(void) {
    const uint8_t gt[4] = {0, 1, 2, 255}, bad[4] = {0, 1, 3, 0};
    int64_t conf[4 * 3] = {0};
    CHECK(ct_seg_confusion_add(conf, 3, bad, gt, 4, 255) == CT_ERR_ARG);
    CHECK_ERR_HAS("prediction 3 at pixel 2");
    for (int i = 0; i < 12; i++) CHECK_MSG(conf[i] == 0, "conf[%d] changed on error", i);
    CHECK(ct_seg_confusion_add(conf, 0, gt, gt, 4, 255) == CT_ERR_ARG);
    CHECK(ct_seg_confusion_add(conf, 257, gt, gt, 4, 255) == CT_ERR_ARG);
    CHECK(ct_seg_confusion_add(NULL, 3, gt, gt, 4, 255) == CT_ERR_ARG);
    CHECK(ct_seg_confusion_add(conf, 3, NULL, gt, 4, 255) == CT_ERR_ARG);
    CHECK(ct_seg_confusion_add(conf, 3, gt, gt, -1, 255) == CT_ERR_ARG);
    CHECK_OK(ct_seg_confusion_add(conf, 3, NULL, NULL, 0, 255));
    ct_seg_metrics m;
    /* nothing counted */
    CHECK(ct_seg_metrics_compute(conf, 3, &m) == CT_ERR_ARG);
    CHECK_ERR_HAS("no pixel");
    CHECK(m.iou == NULL && m.n_classes == 0);
    const uint8_t ign[2] = {255, 255}, p0[2] = {0, 0};
    CHECK_OK(ct_seg_confusion_add(conf, 3, p0, ign, 2, 255));
    CHECK(ct_seg_metrics_compute(conf, 3, &m) == CT_ERR_ARG);
    conf[0] = -5;
    CHECK(ct_seg_metrics_compute(conf, 3, &m) == CT_ERR_ARG);
    CHECK_ERR_HAS("negative");
    CHECK(ct_seg_metrics_compute(NULL, 3, &m) == CT_ERR_ARG);
    CHECK(ct_seg_metrics_compute(conf, 0, &m) == CT_ERR_ARG);
    CHECK(ct_seg_metrics_compute(conf, 3, NULL) == CT_ERR_ARG);
    char p[2048];
    CHECK(ct_seg_metrics_save_json(&m, NULL, tmp(p, sizeof p, "x.json")) == CT_ERR_ARG);
    CHECK_MSG(ct_struct_size("ct_seg_metrics") == sizeof(ct_seg_metrics),
              "ct_struct_size(ct_seg_metrics) = %zu", ct_struct_size("ct_seg_metrics"));
}

/* ---- label maps ---------------------------------------------------------- */

static void check_map(const char *rel, int w, int h, const uint8_t *want) {
    char p[2048];
    int gw = -1, gh = -1;
    uint8_t *got = NULL;
    CHECK_OK(ct_label_map_load(tmp(p, sizeof p, rel), &gw, &gh, &got));
    CHECK_MSG(gw == w && gh == h, "%s: %dx%d, want %dx%d", rel, gw, gh, w, h);
    if (got && gw == w && gh == h)
        for (int i = 0; i < w * h; i++)
            if (got[i] != want[i]) {
                ct_test_fail(__FILE__, __LINE__, "%s: pixel %d = %d, want %d", rel, i, got[i],
                             want[i]);
                break;
            }
    free(got);
}

static void check_refused(const char *rel, const char *word) {
    char p[2048];
    int w = -1, h = -1;
    uint8_t *got = (uint8_t *)1;
    CHECK_MSG(ct_label_map_load(tmp(p, sizeof p, rel), &w, &h, &got) != CT_OK, "%s loaded", rel);
    CHECK_MSG(got == NULL && w == 0 && h == 0, "%s: outputs not cleared on failure", rel);
    CHECK_ERR_HAS(p);
    CHECK_ERR_HAS(word);
}

static void test_label_map(void) {
    enum { W = 13, H = 7 };
    uint8_t v[W * H], v4[W * H], rgb[W * H * 3], g16[W * H * 2], ga[W * H * 2];
    for (int i = 0; i < W * H; i++) {
        v[i] = (uint8_t)(i % 5 == 0 ? 255 : i % 21); /* classes and void */
        v4[i] = (uint8_t)(i % 16);
        rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = v[i];
        g16[2 * i] = 0, g16[2 * i + 1] = v[i];
        ga[2 * i] = v[i], ga[2 * i + 1] = 255;
    }
    /* palette: indices, never colours (a 256-entry palette as VOC's) */
    write_png("lm/pal.png", W, H, PNG_COLOR_TYPE_PALETTE, 8, false, v, 256);
    check_map("lm/pal.png", W, H, v);
    /* a palette shorter than the indices used: still the indices */
    write_png("lm/pal_short.png", W, H, PNG_COLOR_TYPE_PALETTE, 8, false, v, 21);
    check_map("lm/pal_short.png", W, H, v);
    write_png("lm/pal_interlaced.png", W, H, PNG_COLOR_TYPE_PALETTE, 8, true, v, 256);
    check_map("lm/pal_interlaced.png", W, H, v);
    write_png("lm/pal4.png", W, H, PNG_COLOR_TYPE_PALETTE, 4, false, v4, 16);
    check_map("lm/pal4.png", W, H, v4);
    /* greyscale: raw values (ADE20K, Pascal Context), 4-bit not scaled */
    write_png("lm/grey.png", W, H, PNG_COLOR_TYPE_GRAY, 8, false, v, 0);
    check_map("lm/grey.png", W, H, v);
    write_png("lm/grey4.png", W, H, PNG_COLOR_TYPE_GRAY, 4, false, v4, 0);
    check_map("lm/grey4.png", W, H, v4);
    write_png("lm/one.png", 1, 1, PNG_COLOR_TYPE_GRAY, 8, false, v + 1, 0);
    check_map("lm/one.png", 1, 1, v + 1);
    /* refused, the file named */
    write_png("lm/rgb.png", W, H, PNG_COLOR_TYPE_RGB, 8, false, rgb, 0);
    check_refused("lm/rgb.png", "an RGB label map: convert it to palette indices");
    write_png("lm/g16.png", W, H, PNG_COLOR_TYPE_GRAY, 16, false, g16, 0);
    check_refused("lm/g16.png", "16-bit");
    write_png("lm/ga.png", W, H, PNG_COLOR_TYPE_GRAY_ALPHA, 8, false, ga, 0);
    check_refused("lm/ga.png", "alpha");
    write_text("lm/text.png", "this is not a PNG file at all");
    check_refused("lm/text.png", "not a PNG");
    write_bytes("lm/empty.png", "", 0);
    check_refused("lm/empty.png", "not a PNG");
    check_refused("lm/missing.png", "no such");
    /* truncated: cut the palette map at several points */
    char p[2048];
    char *full = NULL;
    size_t size = 0;
    CHECK_OK(ct_read_file(tmp(p, sizeof p, "lm/pal.png"), &full, &size));
    if (full) {
        size_t cuts[4] = {12, 40, size / 2, size - 6};
        for (int k = 0; k < 4; k++) {
            write_bytes("lm/cut.png", full, cuts[k]);
            check_refused("lm/cut.png", "");
        }
        /* a flipped byte inside IDAT: CRC error */
        full[size - 20] ^= 0x55;
        write_bytes("lm/crc.png", full, size);
        check_refused("lm/crc.png", "corrupt");
        free(full);
    }
    /* absurd dimensions in the header: refused before allocating */
    static const uint8_t huge[] = {
        0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 'I', 'H', 'D', 'R',
        0x00, 0x10, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 8, 0, 0, 0, 0, 0x39, 0x2C, 0x26, 0x1F};
    write_bytes("lm/huge.png", huge, sizeof huge);
    check_refused("lm/huge.png", "");
    int w, h;
    uint8_t *o;
    CHECK(ct_label_map_load(NULL, &w, &h, &o) == CT_ERR_ARG);
}

/* ---- vocseg: hand-made layouts ---------------------------------------------- */

static void make_ids(const char *root, const char *split, const char *ids) {
    char rel[512];
    snprintf(rel, sizeof rel, "%s/ImageSets/Segmentation/%s.txt", root, split);
    write_text(rel, ids);
}

/* Images and masks for ids (space-separated). */
static void make_files(const char *root, const char *ids) {
    char buf[1024], rel[512];
    snprintf(buf, sizeof buf, "%s", ids);
    for (char *id = strtok(buf, " "); id; id = strtok(NULL, " ")) {
        snprintf(rel, sizeof rel, "%s/JPEGImages/%s.jpg", root, id);
        touch(rel);
        snprintf(rel, sizeof rel, "%s/SegmentationClass/%s.png", root, id);
        touch(rel);
    }
}

static ct_status open_seg(const char *root, ct_splits *s) {
    char spec[2048];
    snprintf(spec, sizeof spec, "vocseg:%s/%s", ct_test_tmpdir(), root);
    return ct_data_open(spec, s);
}

/* Every item's mask is SegmentationClass/<id>.png for JPEGImages/<id>.jpg. */
static void check_masks_follow(const ct_dataset *d, const char *what) {
    if (!d) return;
    CHECK_MSG(d->masks != NULL, "%s: no masks", what);
    CHECK_MSG(d->targets == NULL, "%s: targets set", what);
    for (int64_t i = 0; d->masks && i < d->n_items; i++) {
        char want[512];
        const char *p = d->items[i].path;
        const char *slash = strrchr(p, '/'), *dot = strrchr(p, '.');
        snprintf(want, sizeof want, "SegmentationClass/%.*s.png", (int)(dot - slash - 1),
                 slash + 1);
        CHECK_MSG(d->masks[i] && !strcmp(d->masks[i], want), "%s: item %lld (%s): mask %s",
                  what, (long long)i, p, d->masks[i] ? d->masks[i] : "NULL");
        CHECK(d->items[i].label == 0);
    }
}

static void test_vocseg_layouts(void) {
    /* VOC2012-like: Main class lists, no test.txt, names for the objects */
    const char *R = "v12";
    char rel[512];
    const char *train = "a1 a2 a3 a4 a5 a6 a7 a8 a9 a10 a11 a12 a13 a14 a15 a16 a17 a18 a19 a20";
    char lines[1024] = "";
    for (const char *p = train; *p;) {
        size_t n = strcspn(p, " ");
        strncat(lines, p, n);
        strcat(lines, "\n");
        p += n + (p[n] == ' ');
    }
    make_ids(R, "train", lines);
    make_ids(R, "val", "b1\r\nb2\n\n");
    make_files(R, train);
    make_files(R, "b1 b2");
    const char *cls[3] = {"dining_table", "aeroplane", "person"};
    for (int c = 0; c < 3; c++) {
        snprintf(rel, sizeof rel, "%s/ImageSets/Main/%s_train.txt", R, cls[c]);
        write_text(rel, "a1 1\n");
    }
    ct_splits s;
    CHECK_OK(open_seg(R, &s));
    if (s.train) {
        CHECK(s.train->n_classes == 4);
        const char *want[4] = {"background", "aeroplane", "dining table", "person"};
        for (int c = 0; c < 4 && s.train->n_classes == 4; c++)
            CHECK_MSG(!strcmp(s.train->classnames[c], want[c]), "class %d: '%s', want '%s'", c,
                      s.train->classnames[c], want[c]);
        CHECK_MSG(s.train->n_items == 18 && s.val && s.val->n_items == 2 && s.test &&
                      s.test->n_items == 2,
                  "splits %lld / %lld / %lld", (long long)s.train->n_items,
                  (long long)(s.val ? s.val->n_items : -1),
                  (long long)(s.test ? s.test->n_items : -1));
        CHECK(!strcmp(s.train->name, "v12"));
        check_masks_follow(s.train, "train");
        check_masks_follow(s.val, "val (held out)");
        check_masks_follow(s.test, "test (val.txt)");
        if (s.test && s.test->n_items == 2)
            CHECK(!strcmp(s.test->items[0].path, "JPEGImages/b1.jpg"));
        /* views */
        ct_dataset *v = ct_dataset_fewshot(s.train, 0, 0);
        check_masks_follow(v, "fewshot(0)");
        ct_dataset_free(v);
        v = ct_dataset_fewshot(s.train, 3, 1);
        check_masks_follow(v, "fewshot(3)");
        ct_dataset_free(v);
        v = ct_dataset_head(s.train, 5);
        CHECK(v && v->n_items == 5);
        check_masks_follow(v, "head(5)");
        ct_dataset_free(v);
        v = ct_dataset_sample(s.train, 7, 3);
        CHECK(v && v->n_items == 7);
        check_masks_follow(v, "sample(7)");
        ct_dataset_free(v);
        ct_dataset *tr, *va, *te;
        CHECK_OK(ct_dataset_holdout(s.train, 20, 20, &tr, &va, &te));
        check_masks_follow(tr, "holdout train");
        check_masks_follow(va, "holdout val");
        check_masks_follow(te, "holdout test");
        ct_dataset_free(tr), ct_dataset_free(va), ct_dataset_free(te);
        CHECK(ct_dataset_subsample_classes(s.train, 0) == NULL);
        CHECK_ERR_HAS("segmentation");
        /* not multi-label */
        CHECK(ct_dataset_partial_labels(s.train, 0.5, 0) == NULL);
    }
    ct_splits_free(&s);
    /* classnames.txt naming every class, background included */
    snprintf(rel, sizeof rel, "%s/classnames.txt", R);
    write_text(rel, "bg\nplane\ntable\nhuman\n");
    CHECK_OK(open_seg(R, &s));
    if (s.train) CHECK(!strcmp(s.train->classnames[0], "bg") &&
                       !strcmp(s.train->classnames[3], "human"));
    ct_splits_free(&s);
    /* the objects only (as the scenes set's file) */
    write_text(rel, "plane\ntable\nhuman\n");
    CHECK_OK(open_seg(R, &s));
    if (s.train) CHECK(!strcmp(s.train->classnames[0], "background") &&
                       !strcmp(s.train->classnames[1], "plane") &&
                       !strcmp(s.train->classnames[3], "human"));
    ct_splits_free(&s);
    write_text(rel, "plane\ntable\n");
    CHECK(open_seg(R, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("classnames.txt");
    CHECK_ERR_HAS("has 2 class names");
    write_text(rel, "n00000001 plane\nn00000002 table\nn00000003 human\n");
    CHECK(open_seg(R, &s) == CT_ERR_FORMAT); /* keyed by identifiers that are not wnids */
    CHECK_ERR_HAS("no line for class");

    /* classes from classnames.txt alone (no ImageSets/Main), with test.txt */
    const char *Q = "ctx";
    make_ids(Q, "train", "x1\nx2\nx3\n");
    make_ids(Q, "test", "y1\n");
    make_files(Q, "x1 x2 x3 y1");
    snprintf(rel, sizeof rel, "%s/classnames.txt", Q);
    write_text(rel, "cat\nsky_blue\n");
    CHECK_OK(open_seg(Q, &s));
    if (s.train) {
        CHECK(s.train->n_classes == 3 && !strcmp(s.train->classnames[0], "background") &&
              !strcmp(s.train->classnames[2], "sky blue"));
        CHECK(s.test && s.test->n_items == 1);
    }
    ct_splits_free(&s);
    write_text(rel, "Background\ncat\n");
    CHECK_OK(open_seg(Q, &s));
    if (s.train) CHECK(s.train->n_classes == 2 && !strcmp(s.train->classnames[1], "cat"));
    ct_splits_free(&s);

    /* malformed */
    write_text(rel, "");
    CHECK(open_seg(Q, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("no classes");
    write_text(rel, "cat\n");
    snprintf(rel, sizeof rel, "%s/SegmentationClass/x2.png", Q);
    char p[2048];
    remove(tmp(p, sizeof p, rel));
    CHECK(open_seg(Q, &s) == CT_ERR_IO);
    CHECK_ERR_HAS(p);
    CHECK_ERR_HAS("train.txt:2");
    touch(rel);
    snprintf(rel, sizeof rel, "%s/JPEGImages/y1.jpg", Q);
    remove(tmp(p, sizeof p, rel));
    CHECK(open_seg(Q, &s) == CT_ERR_IO);
    CHECK_ERR_HAS(p);
    touch(rel);
    CHECK_OK(open_seg(Q, &s));
    ct_splits_free(&s);
    snprintf(rel, sizeof rel, "%s/ImageSets/Segmentation/train.txt", Q);
    remove(tmp(p, sizeof p, rel));
    CHECK(open_seg(Q, &s) == CT_ERR_IO);
    CHECK_ERR_HAS("train.txt: no such file");
    make_ids(Q, "train", "x1 x2\n");
    CHECK(open_seg(Q, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("train.txt:1");
    make_ids(Q, "train", "\n\n");
    CHECK(open_seg(Q, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("no image ids");
    make_ids(Q, "train", "x1\n");
    snprintf(rel, sizeof rel, "%s/ImageSets/Segmentation/test.txt", Q);
    remove(tmp(p, sizeof p, rel));
    CHECK(open_seg(Q, &s) == CT_ERR_IO);
    CHECK_ERR_HAS("neither test.txt nor val.txt");
    CHECK(open_seg("nowhere", &s) == CT_ERR_IO);
    CHECK_ERR_HAS("not a directory");
    write_text("flat/readme.txt", "x");
    CHECK(open_seg("flat", &s) == CT_ERR_IO);
    CHECK_ERR_HAS("ImageSets/Segmentation");
    CHECK(ct_data_open("vocseg:", &s) == CT_ERR_ARG);
    /* spec_absolute makes ROOT absolute */
    char abs_[4096];
    CHECK_OK(ct_data_spec_absolute("vocseg:some/dir", abs_, sizeof abs_));
    CHECK_MSG(!strncmp(abs_, "vocseg:/", 8), "spec_absolute: %s", abs_);
    CHECK(ct_struct_size("ct_dataset") == sizeof(ct_dataset));
}

/* ---- vocseg: the scenes set ---------------------------------------------- */

static void test_vocseg_scenes(void) {
    struct stat st;
    if (stat(FM_DIR "/t10k-labels-idx1-ubyte.gz", &st) != 0 ||
        stat(FM_DIR "/train-images-idx3-ubyte.gz", &st) != 0) {
        ct_test_skip("no Fashion-MNIST at " FM_DIR);
        return;
    }
    ct_scenes_cfg cfg = ct_scenes_cfg_default();
    cfg.n_train = 24, cfg.n_val = 6, cfg.n_test = 10, cfg.seed = 5;
    char root[2048], spec[2100];
    tmp(root, sizeof root, "scenes");
    CHECK_OK(ct_data_make_scenes(&cfg, root));
    ct_splits seg, voc;
    snprintf(spec, sizeof spec, "vocseg:%s", root);
    CHECK_OK(ct_data_open(spec, &seg));
    snprintf(spec, sizeof spec, "voc:%s", root);
    CHECK_OK(ct_data_open(spec, &voc));
    if (!seg.train || !voc.train) {
        ct_splits_free(&seg);
        ct_splits_free(&voc);
        return;
    }
    CHECK_MSG(seg.train->n_classes == 11, "%d classes", seg.train->n_classes);
    CHECK(!strcmp(seg.train->classnames[0], "background"));
    for (int c = 1; c < 11 && seg.train->n_classes == 11; c++)
        CHECK_MSG(!strcmp(seg.train->classnames[c], voc.train->classnames[c - 1]),
                  "class %d: '%s', voc: '%s'", c, seg.train->classnames[c],
                  voc.train->classnames[c - 1]);
    const ct_dataset *S[3] = {seg.train, seg.val, seg.test}, *V[3] = {voc.train, voc.val,
                                                                      voc.test};
    const int64_t want_n[3] = {24, 6, 10};
    int64_t checked = 0;
    for (int sp = 0; sp < 3; sp++) {
        const ct_dataset *d = S[sp], *v = V[sp];
        CHECK_MSG(d && d->n_items == want_n[sp] && v && v->n_items == want_n[sp],
                  "split %d: %lld items", sp, (long long)(d ? d->n_items : -1));
        if (!d || !v || d->n_items != v->n_items) continue;
        check_masks_follow(d, "scenes");
        for (int64_t i = 0; i < d->n_items; i++) {
            CHECK(!strcmp(d->items[i].path, v->items[i].path)); /* same lists */
            char mp[4096];
            snprintf(mp, sizeof mp, "%s/%s", root, d->masks[i]);
            int w = 0, h = 0;
            uint8_t *m = NULL;
            ct_image img = {0};
            CHECK_OK(ct_label_map_load(mp, &w, &h, &m));
            CHECK_OK(ct_dataset_image(d, i, &img));
            CHECK_MSG(m && w == img.w && h == img.h, "%s: %dx%d, image %dx%d", mp, w, h, img.w,
                      img.h);
            bool present[11] = {false};
            int bad = -1;
            for (int k = 0; m && k < w * h; k++) {
                if (m[k] <= 10) present[m[k]] = true;
                else if (m[k] != 255 && bad < 0) bad = m[k];
            }
            CHECK_MSG(bad < 0, "%s: value %d outside {0..10, 255}", mp, bad);
            for (int c = 0; c < 10; c++)
                CHECK_MSG(present[c + 1] == (v->targets[i * 10 + c] == 1),
                          "%s: class %d in mask %d, voc: target %d", mp, c, present[c + 1],
                          v->targets[i * 10 + c]);
            free(m);
            ct_image_free(&img);
            checked++;
        }
    }
    CHECK(checked == 40);
    ct_splits_free(&seg);
    ct_splits_free(&voc);
}

int main(void) {
    RUN(test_metrics_ref);
    RUN(test_metrics_hand);
    RUN(test_metrics_errors);
    RUN(test_label_map);
    RUN(test_vocseg_layouts);
    RUN(test_vocseg_scenes);
    return ct_test_summary();
}
