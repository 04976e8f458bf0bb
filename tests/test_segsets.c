/* adeseg:, pcontextseg: and pcontext60seg: (src/data/segsets.c) on small
 * folders written here in exactly the layouts mmsegmentation reads
 * (ADEChallengeData2016; VOCdevkit/VOC2010 as tools/convert_datasets/
 * pascal_context.py writes it): real JPEGs (the scenes set's writer) and
 * greyscale PNG label maps (libpng). Checks the classes, the splits, the
 * order of ADE's scanned images, reduce_zero_label as mmseg's
 * LoadAnnotations applies it (through ct_label_map_load_for, carried by
 * every view), and the errors: missing folders, lists, images and maps,
 * a map whose size is not its image's, values outside the class range. */
#include <png.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cliptune.h"
#include "data/dataset.h"
#include "harness.h"

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

static void write_text(const char *rel, const char *text) {
    char p[2048];
    FILE *f = fopen(path_in(p, sizeof p, rel), "wb");
    CHECK_MSG(f != NULL, "cannot create %s", p);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* A w x h JPEG of a colour ramp. */
static void write_jpg(const char *rel, int w, int h) {
    char p[2048];
    uint8_t *rgb = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h * 3; i++) rgb[i] = (uint8_t)(i * 7);
    CHECK_OK(ct_data_write_jpeg(path_in(p, sizeof p, rel), rgb, w, h));
    free(rgb);
}

/* An 8-bit greyscale PNG (what PIL's Image.fromarray(uint8) saves, as the
 * converters write ADE's and Pascal Context's maps). */
static void write_grey_png(const char *rel, int w, int h, const uint8_t *px) {
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
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)px + (size_t)y * w);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(f);
}

/* A map of w x h pixels filled with v (pixel 0 .. n-1 from vals). */
static void write_map(const char *rel, int w, int h, uint8_t v, const uint8_t *vals, int n) {
    uint8_t *px = malloc((size_t)w * h);
    memset(px, v, (size_t)w * h);
    if (vals) memcpy(px, vals, (size_t)n);
    write_grey_png(rel, w, h, px);
    free(px);
}

static ct_status open_spec(const char *kind, const char *root, ct_splits *s) {
    char spec[2048];
    snprintf(spec, sizeof spec, "%s:%s/%s", kind, ct_test_tmpdir(), root);
    return ct_data_open(spec, s);
}

static int index_of(const ct_dataset *d, const char *path) {
    for (int64_t i = 0; d && i < d->n_items; i++)
        if (!strcmp(d->items[i].path, path)) return (int)i;
    return -1;
}

/* Item i's map through ct_label_map_load_for equals want[0..n) (the rest
 * fill). */
static void check_read(const ct_dataset *d, int i, int w, int h, const uint8_t *want, int n,
                       uint8_t fill) {
    int mw, mh;
    uint8_t *m;
    CHECK_OK(ct_label_map_load_for(d, i, 0, 0, &mw, &mh, &m));
    if (!m) return;
    CHECK(mw == w && mh == h);
    for (int j = 0; j < w * h; j++) {
        uint8_t e = j < n ? want[j] : fill;
        if (m[j] != e) {
            CHECK_MSG(m[j] == e, "%s item %d pixel %d: %d, want %d", d->name, i, j, m[j], e);
            break;
        }
    }
    free(m);
    /* the caller's image size, when it has one, is used instead of decoding */
    CHECK_OK(ct_label_map_load_for(d, i, w, h, &mw, &mh, &m));
    free(m);
}

/* ---- adeseg: ------------------------------------------------------------ */

static void make_ade(const char *R, int n_train) {
    char rel[512];
    for (int i = n_train; i >= 1; i--) { /* written out of order: the loader sorts */
        snprintf(rel, sizeof rel, "%s/images/training/ADE_train_%08d.jpg", R, i);
        write_jpg(rel, 6, 4);
        snprintf(rel, sizeof rel, "%s/annotations/training/ADE_train_%08d.png", R, i);
        write_map(rel, 6, 4, (uint8_t)i, NULL, 0);
    }
    for (int i = 1; i <= 2; i++) {
        snprintf(rel, sizeof rel, "%s/images/validation/ADE_val_%08d.jpg", R, i);
        write_jpg(rel, 6, 4);
        snprintf(rel, sizeof rel, "%s/annotations/validation/ADE_val_%08d.png", R, i);
        write_map(rel, 6, 4, 3, NULL, 0);
    }
}

static void test_ade(void) {
    const char *R = "ade/ADEChallengeData2016";
    char rel[512];
    make_ade(R, 9);
    /* a sub-folder is scanned (mmcv.scandir recursive=True); hidden files
     * and other suffixes are not images */
    snprintf(rel, sizeof rel, "%s/images/training/extra/a.jpg", R);
    write_jpg(rel, 5, 3);
    snprintf(rel, sizeof rel, "%s/annotations/training/extra/a.png", R);
    const uint8_t vals[6] = {0, 1, 150, 255, 2, 149};
    write_map(rel, 5, 3, 0, vals, 6);
    snprintf(rel, sizeof rel, "%s/images/training/.hidden.jpg", R);
    write_text(rel, "not an image");
    snprintf(rel, sizeof rel, "%s/images/training/notes.txt", R);
    write_text(rel, "not an image");
    snprintf(rel, sizeof rel, "%s/images/training/b.JPG", R); /* mmseg's suffix is '.jpg' */
    write_text(rel, "not an image");

    ct_splits s;
    CHECK_OK(open_spec("adeseg", R, &s));
    if (!s.train) return;
    CHECK(s.train->n_classes == 150 && s.test->n_classes == 150);
    CHECK(!strcmp(s.train->classnames[0], "wall"));
    CHECK(!strcmp(s.train->classnames[7], "bed")); /* mmseg's 'bed ' */
    CHECK(!strcmp(s.train->classnames[149], "flag"));
    CHECK(!strcmp(s.train->name, "ADEChallengeData2016"));
    /* 10 training images: 1 held out as val; validation is test */
    CHECK_MSG(s.train->n_items == 9 && s.val && s.val->n_items == 1 && s.test->n_items == 2,
              "splits %lld / %lld / %lld", (long long)s.train->n_items,
              (long long)(s.val ? s.val->n_items : -1), (long long)s.test->n_items);
    CHECK(s.train->reduce_zero_label && s.test->reduce_zero_label &&
          (!s.val || s.val->reduce_zero_label));
    CHECK(!strcmp(s.test->items[0].path, "images/validation/ADE_val_00000001.jpg"));
    CHECK(!strcmp(s.test->masks[0], "annotations/validation/ADE_val_00000001.png"));
    /* every item's map is the same relative path, sorted in byte order */
    const ct_dataset *parts[2] = {s.train, s.val};
    int total = 0;
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; parts[k] && i < parts[k]->n_items; i++, total++) {
            const char *p = parts[k]->items[i].path, *m = parts[k]->masks[i];
            CHECK(!strncmp(p, "images/training/", 16) && !strncmp(m, "annotations/training/", 21));
            CHECK(!strcmp(p + 16 + strlen(p + 16) - 4, ".jpg") && !strncmp(p + 16, m + 21,
                                                                          strlen(p + 16) - 4));
            if (i > 0) CHECK(strcmp(parts[k]->items[i - 1].path, p) < 0);
        }
    CHECK(total == 10);
    /* reduce_zero_label: 0 -> 255, v -> v - 1, 255 stays */
    const ct_dataset *has = index_of(s.train, "images/training/extra/a.jpg") >= 0 ? s.train
                                                                                    : s.val;
    int at = index_of(has, "images/training/extra/a.jpg");
    CHECK(at >= 0);
    const uint8_t want[6] = {255, 0, 149, 255, 1, 148};
    if (at >= 0) check_read(has, at, 5, 3, want, 6, 255);
    check_read(s.test, 1, 6, 4, NULL, 0, 2);
    /* views carry the flag */
    ct_dataset *v = ct_dataset_fewshot(s.train, 0, 0), *h = ct_dataset_head(s.test, 1);
    CHECK(v && v->reduce_zero_label && h && h->reduce_zero_label);
    if (h) check_read(h, 0, 6, 4, NULL, 0, 2);
    ct_dataset_free(v);
    ct_dataset_free(h);
    /* errors: a map of another size than its image, a value past 150 */
    int mw, mh;
    uint8_t *m;
    CHECK(ct_label_map_load_for(s.test, 0, 7, 4, &mw, &mh, &m) == CT_ERR_FORMAT && !m);
    CHECK_ERR_HAS("ADE_val_00000001.png");
    CHECK_ERR_HAS("ADE_val_00000001.jpg is 7x4");
    snprintf(rel, sizeof rel, "%s/annotations/validation/ADE_val_00000002.png", R);
    write_map(rel, 6, 3, 3, NULL, 0);
    CHECK(ct_label_map_load_for(s.test, 1, 0, 0, &mw, &mh, &m) == CT_ERR_FORMAT && !m);
    CHECK_ERR_HAS("label map of 6x3 pixels, its image");
    CHECK_ERR_HAS("ADE_val_00000002.jpg is 6x4");
    const uint8_t bad[3] = {1, 2, 151};
    write_map(rel, 6, 4, 3, bad, 3);
    CHECK(ct_label_map_load_for(s.test, 1, 0, 0, &mw, &mh, &m) == CT_ERR_FORMAT && !m);
    CHECK_ERR_HAS("ADE_val_00000002.png: pixel (x 2, y 0) has value 151");
    CHECK(ct_label_map_load_for(s.test, 2, 0, 0, &mw, &mh, &m) == CT_ERR_ARG);
    ct_splits_free(&s);

    /* a missing annotation, a missing validation folder, no image */
    const char *R2 = "ade2/ADEChallengeData2016";
    make_ade(R2, 3);
    snprintf(rel, sizeof rel, "%s/images/training/ADE_train_00000009.jpg", R2);
    write_jpg(rel, 6, 4);
    CHECK(open_spec("adeseg", R2, &s) == CT_ERR_IO);
    CHECK_ERR_HAS("annotations/training/ADE_train_00000009.png: label map of image");
    CHECK(!s.train && !s.test);
    CHECK(open_spec("adeseg", "ade3/nothing", &s) == CT_ERR_IO);
    CHECK_ERR_HAS("not a directory");
    snprintf(rel, sizeof rel, "ade4/R/images/training/x.jpg");
    write_jpg(rel, 6, 4);
    snprintf(rel, sizeof rel, "ade4/R/annotations/training/x.png");
    write_map(rel, 6, 4, 1, NULL, 0);
    CHECK(open_spec("adeseg", "ade4/R", &s) == CT_ERR_IO);
    CHECK_ERR_HAS("images/validation: no such folder");
    write_text("ade5/R/images/training/readme.txt", "x");
    write_text("ade5/R/annotations/training/readme.txt", "x");
    write_text("ade5/R/images/validation/readme.txt", "x");
    write_text("ade5/R/annotations/validation/readme.txt", "x");
    CHECK(open_spec("adeseg", "ade5/R", &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("images/training: no .jpg image");
    CHECK(ct_data_open("adeseg:", &s) == CT_ERR_ARG);
}

/* ---- pcontextseg: / pcontext60seg: ---------------------------------------- */

static void make_pcontext(const char *R, int n_train, bool with_val) {
    char rel[512], list[1024] = "";
    for (int i = 1; i <= n_train + 2; i++) {
        char id[32];
        snprintf(id, sizeof id, "2008_%06d", i);
        snprintf(rel, sizeof rel, "%s/JPEGImages/%s.jpg", R, id);
        write_jpg(rel, 4, 5);
        snprintf(rel, sizeof rel, "%s/SegmentationClassContext/%s.png", R, id);
        const uint8_t vals[4] = {0, 1, 59, 255};
        write_map(rel, 4, 5, (uint8_t)(i % 60), vals, 4);
        if (i <= n_train) {
            strcat(list, id);
            strcat(list, "\n");
        }
    }
    snprintf(rel, sizeof rel, "%s/ImageSets/SegmentationContext/train.txt", R);
    write_text(rel, list);
    if (with_val) {
        snprintf(rel, sizeof rel, "%s/ImageSets/SegmentationContext/val.txt", R);
        char val[128];
        snprintf(val, sizeof val, "2008_%06d\r\n2008_%06d\n", n_train + 1, n_train + 2);
        write_text(rel, val);
    }
}

static void test_pcontext(void) {
    const char *R = "pc/VOCdevkit/VOC2010";
    make_pcontext(R, 10, true);
    ct_splits s;
    /* 59 classes: background (0) void, class c is map value c + 1 */
    CHECK_OK(open_spec("pcontextseg", R, &s));
    if (s.train) {
        CHECK(s.train->n_classes == 59);
        CHECK(!strcmp(s.train->classnames[0], "aeroplane"));
        CHECK(!strcmp(s.train->classnames[58], "wood"));
        CHECK(s.train->reduce_zero_label && s.test->reduce_zero_label);
        CHECK_MSG(s.train->n_items == 9 && s.val && s.val->n_items == 1 && s.test->n_items == 2,
                  "splits %lld / %lld / %lld", (long long)s.train->n_items,
                  (long long)(s.val ? s.val->n_items : -1), (long long)s.test->n_items);
        CHECK(!strcmp(s.test->items[0].path, "JPEGImages/2008_000011.jpg"));
        CHECK(!strcmp(s.test->masks[0], "SegmentationClassContext/2008_000011.png"));
        const uint8_t want[4] = {255, 0, 58, 255};
        check_read(s.test, 0, 4, 5, want, 4, 10); /* fill 11 -> 10 */
    }
    ct_splits_free(&s);
    /* 60 classes: background is class 0, values as they are */
    CHECK_OK(open_spec("pcontext60seg", R, &s));
    if (s.train) {
        CHECK(s.train->n_classes == 60);
        CHECK(!strcmp(s.train->classnames[0], "background"));
        CHECK(!strcmp(s.train->classnames[1], "aeroplane"));
        CHECK(!strcmp(s.train->classnames[59], "wood"));
        CHECK(!s.train->reduce_zero_label && !s.test->reduce_zero_label);
        const uint8_t want[4] = {0, 1, 59, 255};
        check_read(s.test, 1, 4, 5, want, 4, 12);
        ct_dataset *v = ct_dataset_fewshot(s.train, 0, 0);
        CHECK(v && !v->reduce_zero_label);
        ct_dataset_free(v);
        /* 60 is past the 60 classes (0..59) */
        char rel[512];
        snprintf(rel, sizeof rel, "%s/SegmentationClassContext/2008_000012.png", R);
        const uint8_t bad[2] = {59, 60};
        write_map(rel, 4, 5, 0, bad, 2);
        int mw, mh;
        uint8_t *m;
        CHECK(ct_label_map_load_for(s.test, 1, 0, 0, &mw, &mh, &m) == CT_ERR_FORMAT && !m);
        CHECK_ERR_HAS("2008_000012.png: pixel (x 1, y 0) has value 60");
    }
    ct_splits_free(&s);
    /* renamed by classnames.txt (one a line, class order) */
    char rel[512], names[2048] = "";
    for (int c = 0; c < 59; c++) strcat(names, c == 0 ? "air plane\n" : "x\n");
    snprintf(rel, sizeof rel, "%s/classnames.txt", R);
    write_text(rel, names);
    CHECK_OK(open_spec("pcontextseg", R, &s));
    if (s.train) CHECK(!strcmp(s.train->classnames[0], "air plane"));
    ct_splits_free(&s);
    CHECK(open_spec("pcontext60seg", R, &s) == CT_ERR_FORMAT); /* 59 names for 60 classes */
    CHECK(!s.train);

    /* errors */
    make_pcontext("pc2/VOC2010", 3, false);
    CHECK(open_spec("pcontextseg", "pc2/VOC2010", &s) == CT_ERR_IO);
    CHECK_ERR_HAS("SegmentationContext/val.txt: no such file");
    make_pcontext("pc3/VOC2010", 3, true);
    remove(path_in(rel, sizeof rel, "pc3/VOC2010/JPEGImages/2008_000002.jpg"));
    CHECK(open_spec("pcontext60seg", "pc3/VOC2010", &s) == CT_ERR_IO);
    CHECK_ERR_HAS("JPEGImages/2008_000002.jpg: image '2008_000002' (");
    CHECK_ERR_HAS("train.txt:2)");
    make_pcontext("pc4/VOC2010", 3, true);
    remove(path_in(rel, sizeof rel, "pc4/VOC2010/SegmentationClassContext/2008_000005.png"));
    CHECK(open_spec("pcontextseg", "pc4/VOC2010", &s) == CT_ERR_IO);
    CHECK_ERR_HAS("SegmentationClassContext/2008_000005.png: label map of image '2008_000005'");
    CHECK(open_spec("pcontextseg", "pc5/none", &s) == CT_ERR_IO);
    write_text("pc6/VOC2010/JPEGImages/readme.txt", "x");
    CHECK(open_spec("pcontextseg", "pc6/VOC2010", &s) == CT_ERR_IO);
    CHECK_ERR_HAS("ImageSets/SegmentationContext: no such directory");
    CHECK(ct_data_open("pcontextseg:", &s) == CT_ERR_ARG);
    CHECK(ct_data_open("pcontext60seg:", &s) == CT_ERR_ARG);
    char abs_[4096];
    CHECK_OK(ct_data_spec_absolute("pcontext60seg:some/dir", abs_, sizeof abs_));
    CHECK_MSG(!strncmp(abs_, "pcontext60seg:/", 15), "spec_absolute: %s", abs_);
    CHECK_OK(ct_data_spec_absolute("adeseg:some/dir", abs_, sizeof abs_));
    CHECK_MSG(!strncmp(abs_, "adeseg:/", 8), "spec_absolute: %s", abs_);
}

/* vocseg: keeps its values (no reduction); ct_label_map_load_for refuses a
 * dataset without maps. */
static void test_other(void) {
    ct_splits s;
    CHECK_OK(ct_data_open("fashion-mnist", &s));
    if (s.test) {
        int w, h;
        uint8_t *m;
        CHECK(!s.test->reduce_zero_label);
        CHECK(ct_label_map_load_for(s.test, 0, 0, 0, &w, &h, &m) == CT_ERR_ARG && !m);
        CHECK_ERR_HAS("not a segmentation dataset");
    }
    ct_splits_free(&s);
    CHECK(ct_label_map_load_for(NULL, 0, 0, 0, NULL, NULL, NULL) == CT_ERR_ARG);
}

int main(void) {
    RUN(test_ade);
    RUN(test_pcontext);
    RUN(test_other);
    return ct_test_summary();
}
