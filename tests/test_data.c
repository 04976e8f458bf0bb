/* Datasets: every spec form of ct_data_open (with fixtures written here),
 * their error messages, the few-shot sampler, base/novel classes and the
 * training augmentation. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "cliptune.h"
#include "data/augment.h"
#include "data/dataset.h"
#include "harness.h"
#include "cliptune.h"

/* ---- fixtures ----------------------------------------------------------- */

#define CHECK_ERR_HAS(word)                                                                  \
    CHECK_MSG(strstr(ct_last_error(), (word)) != NULL, "error message \"%s\" lacks \"%s\"", \
              ct_last_error(), (word))

/* tmpdir/a/b/... with every level created. */
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

/* A w x h binary PPM whose pixels encode (seed, x, y). */
static void write_ppm(const char *rel, int w, int h, int seed) {
    char p[2048];
    FILE *f = fopen(path_in(p, sizeof p, rel), "wb");
    CHECK_MSG(f != NULL, "cannot create %s", p);
    if (!f) return;
    fprintf(f, "P6\n%d %d\n255\n", w, h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            unsigned char px[3] = {(unsigned char)seed, (unsigned char)x, (unsigned char)y};
            fwrite(px, 1, 3, f);
        }
    fclose(f);
}

static const char *tmp(char *buf, size_t n, const char *rel) {
    snprintf(buf, n, "%s/%s", ct_test_tmpdir(), rel);
    return buf;
}

static int count_label(const ct_dataset *d, int label) {
    int n = 0;
    for (int64_t i = 0; d && i < d->n_items; i++) n += d->items[i].label == label;
    return n;
}

static int64_t n_items(const ct_dataset *d) { return d ? d->n_items : 0; }

/* ---- folder ------------------------------------------------------------- */

static void make_folder(const char *root) {
    char rel[256];
    for (int i = 0; i < 6; i++) {
        snprintf(rel, sizeof rel, "%s/golden_retriever/g%d.ppm", root, i);
        write_ppm(rel, 4, 3, i);
    }
    for (int i = 0; i < 4; i++) {
        snprintf(rel, sizeof rel, "%s/siamese-cat/s%d.PPM", root, i);
        write_ppm(rel, 4, 3, 10 + i);
    }
    snprintf(rel, sizeof rel, "%s/siamese-cat/nested/deep/s9.ppm", root);
    write_ppm(rel, 4, 3, 19);
    snprintf(rel, sizeof rel, "%s/siamese-cat/README.txt", root);
    write_text(rel, "not an image\n");
    snprintf(rel, sizeof rel, "%s/siamese-cat/.hidden.ppm", root);
    write_ppm(rel, 4, 3, 99);
    snprintf(rel, sizeof rel, "%s/Zebra/z0.ppm", root);
    write_ppm(rel, 4, 3, 30);
    snprintf(rel, sizeof rel, "%s/notes.txt", root);
    write_text(rel, "top-level files are not classes\n");
}

static void test_folder(void) {
    make_folder("fold");
    char spec[2048], dir[2048];
    snprintf(spec, sizeof spec, "folder:%s", tmp(dir, sizeof dir, "fold"));
    ct_splits s;
    CHECK_OK(ct_data_open(spec, &s));
    if (!s.train) return;
    /* Byte order puts "Zebra" first; '_' and '-' read as spaces. */
    CHECK(s.train->n_classes == 3);
    CHECK(strcmp(s.train->classnames[0], "Zebra") == 0);
    CHECK(strcmp(s.train->classnames[1], "golden retriever") == 0);
    CHECK(strcmp(s.train->classnames[2], "siamese cat") == 0);
    CHECK(strcmp(s.train->name, "fold") == 0);
    CHECK(strcmp(s.train->root, dir) == 0);
    /* 6 -> 4/1/1, 5 (nested one included, README and hidden skipped) -> 3/1/1,
     * 1 -> 1/0/0. */
    CHECK(count_label(s.train, 1) == 4 && count_label(s.val, 1) == 1 &&
          count_label(s.test, 1) == 1);
    CHECK(count_label(s.train, 2) == 3 && count_label(s.val, 2) == 1 &&
          count_label(s.test, 2) == 1);
    CHECK(count_label(s.train, 0) == 1 && count_label(s.val, 0) == 0);
    CHECK(n_items(s.train) + n_items(s.val) + n_items(s.test) == 12);
    /* Keys are root-relative paths; decoding goes through the image loader. */
    char key[256];
    bool nested = false;
    for (int64_t i = 0; i < s.train->n_items; i++) {
        CHECK(ct_dataset_item_key(s.train, i, key, sizeof key) == key);
        nested |= strcmp(key, "siamese-cat/nested/deep/s9.ppm") == 0;
        CHECK(strstr(key, ".hidden") == NULL && strstr(key, "README") == NULL);
    }
    for (int64_t i = 0; s.val && i < s.val->n_items; i++) {
        ct_dataset_item_key(s.val, i, key, sizeof key);
        nested |= strcmp(key, "siamese-cat/nested/deep/s9.ppm") == 0;
    }
    for (int64_t i = 0; i < s.test->n_items; i++) {
        ct_dataset_item_key(s.test, i, key, sizeof key);
        nested |= strcmp(key, "siamese-cat/nested/deep/s9.ppm") == 0;
    }
    CHECK(nested);
    ct_image img;
    CHECK_OK(ct_dataset_image(s.train, 0, &img));
    /* Pixel 5 of z0.ppm is (x 1, y 1): bytes (seed, 1, 1). */
    CHECK(img.w == 4 && img.h == 3 && img.rgb && img.rgb[3 * 5 + 1] == 1 &&
          img.rgb[3 * 5 + 2] == 1);
    ct_image_free(&img);
    CHECK(ct_dataset_image(s.train, s.train->n_items, &img) == CT_ERR_ARG);
    CHECK(ct_dataset_item_key(s.train, 0, key, 4) == NULL); /* never truncated */

    /* The split is a pure function of the paths. */
    ct_splits again;
    CHECK_OK(ct_data_open(spec, &again));
    CHECK(again.test && again.test->n_items == s.test->n_items);
    for (int64_t i = 0; again.test && i < s.test->n_items; i++)
        CHECK(strcmp(again.test->items[i].path, s.test->items[i].path) == 0);
    ct_splits_free(&again);
    ct_splits_free(&s);
    ct_splits_free(&s); /* zeroed: harmless */
    ct_splits_free(NULL);
    ct_dataset_free(NULL);
}

static void test_folder_classnames(void) {
    char spec[2048], dir[2048];
    ct_splits s;
    make_folder("foldcn");
    snprintf(spec, sizeof spec, "folder:%s", tmp(dir, sizeof dir, "foldcn"));
    write_text("foldcn/classnames.txt", "\xEF\xBB\xBFzebra\n\n  golden retriever dog \r\ncat\n");
    CHECK_OK(ct_data_open(spec, &s));
    CHECK(s.test && strcmp(s.test->classnames[0], "zebra") == 0 &&
          strcmp(s.test->classnames[1], "golden retriever dog") == 0 &&
          strcmp(s.test->classnames[2], "cat") == 0);
    ct_splits_free(&s);
    write_text("foldcn/classnames.txt", "zebra\ndog\n");
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("classnames.txt");
    CHECK_ERR_HAS("2 class names");

    /* ImageNet style: folders are wnids, the file maps them (any order). */
    write_ppm("foldwn/n01443537/a.ppm", 2, 2, 1);
    write_ppm("foldwn/n01440764/b.ppm", 2, 2, 2);
    write_text("foldwn/classnames.txt", "n01443537 goldfish\nn01440764 tench\nn09999999 extra\n");
    snprintf(spec, sizeof spec, "folder:%s", tmp(dir, sizeof dir, "foldwn"));
    CHECK_OK(ct_data_open(spec, &s));
    CHECK(s.train && strcmp(s.train->classnames[0], "tench") == 0 &&
          strcmp(s.train->classnames[1], "goldfish") == 0);
    ct_splits_free(&s);
    write_text("foldwn/classnames.txt", "n01443537 goldfish\n");
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("n01440764");
    write_text("foldwn/classnames.txt", "n01443537 goldfish\nn01440764 tench\nn01443537 again\n");
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("classnames.txt:3");
    write_text("foldwn/classnames.txt", "n01443537 goldfish\njust a name\n");
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("classnames.txt:2");
}

static void test_folder_presplit(void) {
    char spec[2048], dir[2048];
    ct_splits s;
    for (int i = 0; i < 10; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "pre/train/a/%d.ppm", i);
        write_ppm(rel, 2, 2, i);
        snprintf(rel, sizeof rel, "pre/train/b/%d.ppm", i);
        write_ppm(rel, 2, 2, i);
    }
    write_ppm("pre/test/b/t.ppm", 2, 2, 0);
    snprintf(spec, sizeof spec, "folder:%s", tmp(dir, sizeof dir, "pre"));
    CHECK_OK(ct_data_open(spec, &s));
    /* No val folder: 1 of each class's 10 held out. */
    CHECK(s.train && s.train->n_classes == 2 && s.train->n_items == 18);
    CHECK(s.val && s.val->n_items == 2 && count_label(s.val, 0) == 1);
    CHECK(s.test && s.test->n_items == 1 && s.test->items[0].label == 1);
    CHECK(s.test && strcmp(s.test->items[0].path, "test/b/t.ppm") == 0);
    ct_splits_free(&s);
    write_ppm("pre/val/a/v.ppm", 2, 2, 0);
    CHECK_OK(ct_data_open(spec, &s));
    CHECK(s.train && s.train->n_items == 20 && s.val && s.val->n_items == 1);
    ct_splits_free(&s);
    write_ppm("pre/test/zebra/t.ppm", 2, 2, 0);
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("zebra");

    mkdir(path_in(dir, sizeof dir, "emptycls/a/x"), 0777);
    write_ppm("emptycls/b/1.ppm", 2, 2, 0);
    snprintf(spec, sizeof spec, "folder:%s", tmp(dir, sizeof dir, "emptycls"));
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("emptycls/a");
    CHECK_ERR_HAS("no images");
    CHECK(ct_data_open("folder:/nonexistent/dir", &s) == CT_ERR_IO);
    CHECK_ERR_HAS("/nonexistent/dir");
}

/* ---- CoOp split JSON ---------------------------------------------------- */

static ct_status open_coop(const char *json, ct_splits *s) {
    char spec[4096], a[2048], b[2048];
    write_text("coop/split_zhou_Tiny.json", json);
    snprintf(spec, sizeof spec, "coop:%s@%s", tmp(a, sizeof a, "coop/split_zhou_Tiny.json"),
             tmp(b, sizeof b, "coop/images"));
    return ct_data_open(spec, s);
}

static void test_coop(void) {
    write_ppm("coop/images/cat/1.ppm", 3, 3, 1);
    write_ppm("coop/images/cat/2.ppm", 3, 3, 2);
    write_ppm("coop/images/dog/1.ppm", 3, 3, 3);
    write_ppm("coop/images/dog/2.ppm", 3, 3, 4);
    ct_splits s;
    CHECK_OK(open_coop("{\"train\": [[\"dog/1.ppm\", 1, \"dog\"], [\"cat/1.ppm\", 0, \"cat\"],"
                       " [\"cat/2.ppm\", 0, \"cat\"]],"
                       " \"val\": [[\"dog/2.ppm\", 1, \"dog\"]],"
                       " \"test\": [[\"cat/2.ppm\", 0, \"cat\"], [\"dog/2.ppm\", 1, \"dog\"]]}",
                       &s));
    if (s.train) {
        CHECK(strcmp(s.train->name, "Tiny") == 0);
        CHECK(s.train->n_classes == 2 && strcmp(s.train->classnames[0], "cat") == 0 &&
              strcmp(s.train->classnames[1], "dog") == 0);
        CHECK(s.train->n_items == 3 && s.train->items[0].label == 1);
        CHECK(s.val && s.val->n_items == 1 && s.test && s.test->n_items == 2);
        char key[64];
        CHECK(ct_dataset_item_key(s.test, 1, key, sizeof key) &&
              strcmp(key, "dog/2.ppm") == 0);
        ct_image img;
        CHECK_OK(ct_dataset_image(s.test, 1, &img));
        CHECK(img.rgb && img.rgb[0] == 4);
        ct_image_free(&img);
    }
    ct_splits_free(&s);
    /* No val in the file: none in the splits. */
    CHECK_OK(open_coop("{\"train\": [[\"cat/1.ppm\", 0, \"cat\"]], \"test\": []}", &s));
    CHECK(s.train && !s.val && s.test && s.test->n_items == 0);
    ct_splits_free(&s);

    static const struct {
        const char *json, *want1, *want2;
        ct_status st;
    } bad[] = {
        {"[1, 2]", "expected an object", "an array", CT_ERR_FORMAT},
        {"{\"train\": [[\"cat/1.ppm\", 0]], \"test\": []}", "train[0]", "[path, label, "
         "classname]", CT_ERR_FORMAT},
        {"{\"train\": [[\"cat/1.ppm\", \"0\", \"cat\"]], \"test\": []}", "train[0][1] (label)",
         "a string", CT_ERR_FORMAT},
        {"{\"train\": [[\"cat/1.ppm\", 0.5, \"cat\"]], \"test\": []}", "train[0][1] (label)",
         "integer", CT_ERR_FORMAT},
        {"{\"train\": [[\"cat/1.ppm\", 0, \"cat\"], [\"cat/2.ppm\", 0, \"kitty\"]], "
         "\"test\": []}", "train[1][2] (classname)", "'kitty'", CT_ERR_FORMAT},
        {"{\"train\": [[\"cat/1.ppm\", 0, \"cat\"]], \"test\": [[\"cat/2.ppm\", 0, \"dog\"]]}",
         "test[0][2] (classname)", "train[0] names it 'cat'", CT_ERR_FORMAT},
        {"{\"train\": [[\"cat/1.ppm\", 0, \"cat\"]], \"test\": [[\"cat/2.ppm\", 3, \"x\"]]}",
         "test[0][1] (label)", "not a train label", CT_ERR_FORMAT},
        {"{\"train\": [[\"cat/1.ppm\", 0, \"cat\"], [\"dog/1.ppm\", 2, \"dog\"]], \"test\": []}",
         "label 1 has no items in train", "split_zhou_Tiny.json", CT_ERR_FORMAT},
        {"{\"train\": [[\"cat/1.ppm\", 0, \"cat\"]], \"val\": [[\"cat/9.ppm\", 0, \"cat\"]], "
         "\"test\": [[\"cat/8.ppm\", 0, \"cat\"]]}", "val[0][0] (path)", "cat/9.ppm' does not "
         "exist (2 images missing", CT_ERR_IO},
        {"{\"train\": [[\"cat/1.ppm\", 0, \"cat\"]]}", "missing field \"test\"", "Tiny.json",
         CT_ERR_FORMAT},
        {"{\"train\": {}, \"test\": []}", "\"train\" must be an array", "an object",
         CT_ERR_FORMAT},
        {"{\"train\": [], \"test\": []}", "\"train\" is empty", "Tiny", CT_ERR_FORMAT},
        {"{\"train\": [[\"cat/1.ppm\", 0, \"cat\"]], \"test\": []", "JSON parse error", "line 1",
         CT_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ct_status st = open_coop(bad[i].json, &s);
        CHECK_MSG(st == bad[i].st, "case %zu: status %s (%s)", i, ct_status_str(st),
                  ct_last_error());
        CHECK(s.train == NULL && s.test == NULL);
        CHECK_ERR_HAS(bad[i].want1);
        CHECK_ERR_HAS(bad[i].want2);
        CHECK_ERR_HAS("split_zhou_Tiny.json");
    }
    CHECK(ct_data_open("coop:/x/split.json", &s) == CT_ERR_ARG);
    CHECK_ERR_HAS("@IMAGES");
}

/* ---- CSV ---------------------------------------------------------------- */

static void test_csv(void) {
    char spec[4096], a[2048];
    ct_splits s;
    write_ppm("csv/img/a,1.ppm", 2, 2, 1);
    write_ppm("csv/img/b.ppm", 2, 2, 2);
    write_ppm("csv/img/c.ppm", 2, 2, 3);
    write_text("csv/data.csv", "Path,Label\n\"img/a,1.ppm\",dog\n\nimg/b.ppm , cat \r\n"
                               "img/c.ppm,\"cat\"\n");
    write_text("csv/data.test.csv", "img/c.ppm,dog\n");
    snprintf(spec, sizeof spec, "csv:%s", tmp(a, sizeof a, "csv/data.csv"));
    CHECK_OK(ct_data_open(spec, &s));
    if (s.train) {
        /* Names sorted; too few items per class for a val holdout. */
        CHECK(s.train->n_classes == 2 && strcmp(s.train->classnames[0], "cat") == 0);
        CHECK(s.train->n_items == 3 && strcmp(s.train->items[0].path, "img/a,1.ppm") == 0);
        CHECK(s.train->items[0].label == 1 && s.train->items[1].label == 0);
        CHECK(s.val == NULL && s.test && s.test->n_items == 1 && s.test->items[0].label == 1);
        CHECK(strcmp(s.train->name, "data") == 0);
    }
    ct_splits_free(&s);

    /* Integer labels with names from classnames.txt; explicit root. */
    write_text("csvi/train.csv", "b.ppm,1\nc.ppm,0\n");
    write_text("csvi/classnames.txt", "zero\none\n");
    snprintf(spec, sizeof spec, "csv:%s@%s/csv/img", tmp(a, sizeof a, "csvi/train.csv"),
             ct_test_tmpdir());
    CHECK_OK(ct_data_open(spec, &s));
    CHECK(s.train && s.train->n_classes == 2 && strcmp(s.train->classnames[1], "one") == 0);
    /* No split files: 80/10/10 (here everything stays in train). */
    CHECK(s.train && s.train->n_items == 2 && s.test && s.test->n_items == 0);
    ct_splits_free(&s);

    write_text("csv/data.test.csv", "img/c.ppm,dog\nimg/b.ppm\n");
    snprintf(spec, sizeof spec, "csv:%s", tmp(a, sizeof a, "csv/data.csv"));
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("data.test.csv:2");
    CHECK_ERR_HAS("2 fields");
    write_text("csv/data.test.csv", "img/c.ppm,\"dog\n");
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("data.test.csv:1: unterminated");
    write_text("csv/data.test.csv", "img/c.ppm,horse\n");
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("data.test.csv:1: class 'horse'");
    write_text("csv/data.test.csv", "img/zz.ppm,cat\n");
    CHECK(ct_data_open(spec, &s) == CT_ERR_IO);
    CHECK_ERR_HAS("data.test.csv:1: image file");
    CHECK_ERR_HAS("zz.ppm");
    write_text("csv/data.test.csv", "img/c.ppm,cat\n");
    write_text("csv/data.val.csv", "img/c.ppm,cat\n");
    CHECK_OK(ct_data_open(spec, &s));
    CHECK(s.val && s.val->n_items == 1 && s.train && s.train->n_items == 3);
    ct_splits_free(&s);

    write_text("csvi/train.csv", "b.ppm,1\nc.ppm,3\n");
    snprintf(spec, sizeof spec, "csv:%s@%s/csv/img", tmp(a, sizeof a, "csvi/train.csv"),
             ct_test_tmpdir());
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT); /* classnames.txt has 2 names, n = 4 */
    CHECK_ERR_HAS("classnames.txt");
    remove(tmp(a, sizeof a, "csvi/classnames.txt"));
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("class 0 ('0') has no training items");
}

/* ---- IDX ---------------------------------------------------------------- */

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* An IDX file (gzip when gz) with the given header and `body` data bytes. */
static void write_idx(const char *rel, bool gz, uint32_t magic, int ndim, const uint32_t *dims,
                      const uint8_t *body, size_t n) {
    char p[2048];
    uint8_t h[16];
    put_be32(h, magic);
    for (int i = 0; i < ndim; i++) put_be32(h + 4 + 4 * i, dims[i]);
    path_in(p, sizeof p, rel);
    if (gz) {
        gzFile f = gzopen(p, "wb");
        CHECK(f != NULL);
        if (!f) return;
        gzwrite(f, h, (unsigned)(4 + 4 * ndim));
        if (n) gzwrite(f, body, (unsigned)n);
        gzclose(f);
    } else {
        FILE *f = fopen(p, "wb");
        CHECK(f != NULL);
        if (!f) return;
        fwrite(h, 1, (size_t)(4 + 4 * ndim), f);
        fwrite(body, 1, n, f);
        fclose(f);
    }
}

/* train: 100 images 3x4 (rows 3), labels i % 10; test: 20. */
static void write_fmnist(const char *dir, bool gz) {
    static uint8_t px[100 * 12], lab[100];
    for (int i = 0; i < 100 * 12; i++) px[i] = (uint8_t)(i * 7);
    for (int i = 0; i < 100; i++) lab[i] = (uint8_t)(i % 10);
    char rel[256];
    const char *ext = gz ? ".gz" : "";
    uint32_t d3[3] = {100, 3, 4}, d1[1] = {100}, t3[3] = {20, 3, 4}, t1[1] = {20};
    snprintf(rel, sizeof rel, "%s/train-images-idx3-ubyte%s", dir, ext);
    write_idx(rel, gz, 0x803, 3, d3, px, sizeof px);
    snprintf(rel, sizeof rel, "%s/train-labels-idx1-ubyte%s", dir, ext);
    write_idx(rel, gz, 0x801, 1, d1, lab, sizeof lab);
    snprintf(rel, sizeof rel, "%s/t10k-images-idx3-ubyte%s", dir, ext);
    write_idx(rel, gz, 0x803, 3, t3, px + 12, 20 * 12);
    snprintf(rel, sizeof rel, "%s/t10k-labels-idx1-ubyte%s", dir, ext);
    write_idx(rel, gz, 0x801, 1, t1, lab + 3, 20);
}

static void test_idx(void) {
    char spec[2048], dir[2048];
    ct_splits s;
    for (int gz = 1; gz >= 0; gz--) {
        const char *d = gz ? "fm" : "fmraw";
        write_fmnist(d, gz);
        snprintf(spec, sizeof spec, "fashion-mnist:%s", tmp(dir, sizeof dir, d));
        CHECK_OK(ct_data_open(spec, &s));
        if (!s.train) continue;
        CHECK(s.train->n_classes == 10 && strcmp(s.train->classnames[0], "T-shirt/top") == 0 &&
              strcmp(s.train->classnames[9], "Ankle boot") == 0);
        CHECK(s.train->n_items == 90 && s.val && s.val->n_items == 10 && s.test->n_items == 20);
        for (int c = 0; c < 10; c++) CHECK(count_label(s.val, c) == 1);
        CHECK(s.test->items[0].label == 3 && s.test->items[0].index == 0);
        ct_image img;
        CHECK_OK(ct_dataset_image(s.test, 1, &img)); /* row 1 of test = px + 24 */
        CHECK(img.w == 4 && img.h == 3 && img.rgb);
        if (img.rgb)
            CHECK(img.rgb[0] == (uint8_t)(24 * 7) && img.rgb[1] == img.rgb[0] &&
                  img.rgb[3 * 11] == (uint8_t)(35 * 7));
        ct_image_free(&img);
        char key[64];
        CHECK(ct_dataset_item_key(s.test, 1, key, sizeof key) &&
              strcmp(key, "fashion-mnist/test#1") == 0);
        CHECK(ct_dataset_item_key(s.val, 0, key, sizeof key) &&
              strncmp(key, "fashion-mnist/train#", 20) == 0);
        ct_splits_free(&s);
    }
    snprintf(spec, sizeof spec, "fashion-mnist:%s", tmp(dir, sizeof dir, "fm"));
    uint8_t body[64] = {0};
    uint32_t d3[3] = {100, 3, 4}, d1[1] = {100};
    write_idx("fm/train-labels-idx1-ubyte.gz", true, 0x803, 1, d1, body, 64);
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("train-labels-idx1-ubyte.gz: bad magic 0x00000803");
    d1[0] = 99;
    write_idx("fm/train-labels-idx1-ubyte.gz", true, 0x801, 1, d1, body, 64);
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("99 labels");
    CHECK_ERR_HAS("100 images");
    d1[0] = 100;
    write_idx("fm/train-labels-idx1-ubyte.gz", true, 0x801, 1, d1, body, 64);
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("train-labels-idx1-ubyte.gz: truncated: 64 of 100");
    write_fmnist("fm", true);
    write_idx("fm/train-images-idx3-ubyte.gz", true, 0x803, 3, d3, body, 64);
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("train-images-idx3-ubyte.gz: truncated");
    /* A forged count is refused before anything is allocated for it. */
    uint32_t huge[3] = {4000000000u, 4096, 4096};
    write_idx("fm/train-images-idx3-ubyte.gz", true, 0x803, 3, huge, body, 64);
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("more than the file can hold");
    write_idx("fm/train-images-idx3-ubyte.gz", true, 0x803, 2, d3, NULL, 0);
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("truncated header");
    write_fmnist("fm", true);
    uint8_t lab[100];
    for (int i = 0; i < 100; i++) lab[i] = (uint8_t)(i % 10);
    lab[7] = 10;
    write_idx("fm/train-labels-idx1-ubyte.gz", true, 0x801, 1, d1, lab, 100);
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("label 10 at index 7");
    CHECK(ct_data_open("fashion-mnist:/nonexistent", &s) == CT_ERR_IO);
    CHECK_ERR_HAS("dataset-fashion-mnist");
}

static void test_fashion_mnist_real(void) {
    struct stat st;
    if (stat("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", &st) != 0) {
        ct_test_skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return;
    }
    ct_splits s;
    CHECK_OK(ct_data_open("fashion-mnist", &s));
    if (!s.train) return;
    CHECK(s.train->n_items == 54000 && s.val && s.val->n_items == 6000);
    CHECK(s.test->n_items == 10000 && s.train->pixels->n == 60000);
    CHECK(s.train->n_classes == 10 && strcmp(s.train->classnames[9], "Ankle boot") == 0);
    for (int c = 0; c < 10; c++) CHECK(count_label(s.val, c) == 600);
    /* Known values (checked with Python's gzip + struct): the first test and
     * train labels are 9, their pixel sums 33456 and 76247. */
    CHECK(s.test->items[0].label == 9);
    const ct_dataset *with0 = s.train->items[0].index == 0 ? s.train : s.val;
    CHECK(with0->items[0].index == 0 && with0->items[0].label == 9);
    long sum_test = 0, sum_train = 0;
    for (int i = 0; i < 784; i++) {
        sum_test += s.test->pixels->data[i];
        sum_train += s.train->pixels->data[i];
    }
    CHECK(sum_test == 33456 && sum_train == 76247);
    ct_image img;
    CHECK_OK(ct_dataset_image(s.test, 0, &img));
    CHECK(img.w == 28 && img.h == 28);
    ct_image_free(&img);
    ct_splits_free(&s);
}

/* ---- npy ---------------------------------------------------------------- */

static void test_npy(void) {
    char x[2048], y[2048], spec[4200];
    ct_splits s;
    float px[20 * 2 * 3 * 3];
    int64_t lab[20], shape[4] = {20, 2, 3, 3}, n20 = 20;
    for (int i = 0; i < 20 * 18; i++) px[i] = (float)(i % 256);
    for (int i = 0; i < 20; i++) lab[i] = i % 2;
    tmp(x, sizeof x, "x.npy");
    tmp(y, sizeof y, "y.npy");
    CHECK_OK(ct_npy_write(x, CT_F32, 4, shape, px));
    CHECK_OK(ct_npy_write(y, CT_I64, 1, &n20, lab));
    snprintf(spec, sizeof spec, "npy:%s,%s", x, y);
    CHECK_OK(ct_data_open(spec, &s));
    if (s.train) {
        /* 10 per class -> 8/1/1. */
        CHECK(s.train->n_items == 16 && s.val && s.val->n_items == 2 && s.test->n_items == 2);
        CHECK(s.train->n_classes == 2 && strcmp(s.train->classnames[1], "1") == 0);
        const ct_item *it = &s.train->items[3];
        ct_image img;
        CHECK_OK(ct_dataset_image(s.train, 3, &img));
        CHECK(img.w == 3 && img.h == 2 && img.rgb &&
              img.rgb[5] == (uint8_t)((it->index * 18 + 5) % 256));
        ct_image_free(&img);
        char key[64], want[64];
        snprintf(want, sizeof want, "x#%lld", (long long)it->index);
        CHECK(ct_dataset_item_key(s.train, 3, key, sizeof key) && strcmp(key, want) == 0);
    }
    ct_splits_free(&s);
    snprintf(spec, sizeof spec, "npy:%s,%s,%s,%s", x, y, x, y);
    CHECK_OK(ct_data_open(spec, &s));
    CHECK(s.train && s.train->n_items == 18 && s.val && s.val->n_items == 2 &&
          s.test->n_items == 20 && strcmp(s.test->pixels->name, "x/test") == 0);
    ct_splits_free(&s);

    px[7] = 0.5f; /* fractional, but others are above 1: fine */
    CHECK_OK(ct_npy_write(x, CT_F32, 4, shape, px));
    snprintf(spec, sizeof spec, "npy:%s,%s", x, y);
    CHECK_OK(ct_data_open(spec, &s));
    ct_splits_free(&s);
    for (int i = 0; i < 20 * 18; i++) px[i] = (float)(i % 7) / 7.0f;
    CHECK_OK(ct_npy_write(x, CT_F32, 4, shape, px));
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("multiply by 255");
    px[3] = 256.0f;
    CHECK_OK(ct_npy_write(x, CT_F32, 4, shape, px));
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("element 3 is 256");
    for (int i = 0; i < 20 * 18; i++) px[i] = (float)(i % 256);
    int64_t chw[4] = {20, 3, 2, 3};
    CHECK_OK(ct_npy_write(x, CT_F32, 3, chw, px));
    CHECK_OK(ct_data_open(spec, &s)); /* (20, 3, 2) grey */
    ct_splits_free(&s);
    int64_t bad_c[4] = {20, 1, 3, 6};
    CHECK_OK(ct_npy_write(x, CT_F32, 4, bad_c, px));
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("channel-last");
    int64_t n19 = 19;
    CHECK_OK(ct_npy_write(x, CT_F32, 4, shape, px));
    CHECK_OK(ct_npy_write(y, CT_I64, 1, &n19, lab));
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("y.npy");
    CHECK_ERR_HAS("(20,)");
    CHECK_OK(ct_npy_write(y, CT_F32, 1, &n20, px));
    CHECK(ct_data_open(spec, &s) == CT_ERR_FORMAT);
    CHECK_ERR_HAS("int64");
    CHECK(ct_data_open("npy:a.npy", &s) == CT_ERR_ARG);
    CHECK(ct_data_open("npy:a.npy,b.npy,c.npy", &s) == CT_ERR_ARG);
    CHECK(ct_data_open("nonsense:x", &s) == CT_ERR_ARG);
    CHECK_ERR_HAS("folder:DIR");
    CHECK(ct_data_open(NULL, &s) == CT_ERR_ARG);
}

/* ---- sampler ------------------------------------------------------------ */

/* In-memory-free dataset: counts[c] items of class c, interleaved. */
static ct_dataset *synthetic(const int *counts, int n_classes) {
    ct_item_vec v = {0};
    char *names[16], path[64];
    int left[16], total = 0;
    for (int c = 0; c < n_classes; c++) {
        char buf[16];
        snprintf(buf, sizeof buf, "c%d", c);
        names[c] = strdup(buf);
        left[c] = counts[c];
        total += counts[c];
    }
    for (int i = 0; total > 0; i++)
        for (int c = n_classes - 1; c >= 0; c--)
            if (left[c] > 0) {
                snprintf(path, sizeof path, "c%d/%d.jpg", c, left[c]--);
                ct_item_vec_push(&v, path, 0, c);
                total--;
            }
    ct_dataset *d = ct_dataset_build("syn", "/r", n_classes, names, NULL, &v);
    for (int c = 0; c < n_classes; c++) free(names[c]);
    return d;
}

static bool same_items(const ct_dataset *a, const ct_dataset *b) {
    if (a->n_items != b->n_items) return false;
    for (int64_t i = 0; i < a->n_items; i++)
        if (strcmp(a->items[i].path, b->items[i].path) != 0) return false;
    return true;
}

static void test_fewshot(void) {
    int counts[5] = {10, 10, 3, 7, 1};
    ct_dataset *d = synthetic(counts, 5);
    ct_dataset *f = ct_dataset_fewshot(d, 4, 1);
    if (!d || !f) return;
    int want[5] = {4, 4, 3, 4, 1};
    for (int c = 0; c < 5; c++) CHECK(count_label(f, c) == want[c]);
    for (int64_t i = 0; i < f->n_items; i++) {
        char pre[8];
        snprintf(pre, sizeof pre, "c%d/", f->items[i].label);
        CHECK(strncmp(f->items[i].path, pre, 3) == 0); /* right class */
        for (int64_t j = 0; j < i; j++) CHECK(strcmp(f->items[i].path, f->items[j].path) != 0);
    }
    /* Classes in order of first appearance (c4 comes first in d). */
    CHECK(f->items[0].label == 4 && f->n_classes == 5 && strcmp(f->root, "/r") == 0);
    ct_dataset *g = ct_dataset_fewshot(d, 4, 1), *h = ct_dataset_fewshot(d, 4, 2);
    CHECK(g && same_items(f, g));
    CHECK(h && !same_items(f, h));
    /* Smaller shot counts are subsets for one seed. */
    ct_dataset *two = ct_dataset_fewshot(d, 2, 1);
    for (int64_t i = 0; two && i < two->n_items; i++) {
        bool found = false;
        for (int64_t j = 0; j < f->n_items; j++)
            found |= !strcmp(two->items[i].path, f->items[j].path);
        CHECK(found);
    }
    ct_dataset *all = ct_dataset_fewshot(d, 0, 1);
    CHECK(all && same_items(all, d));
    CHECK(ct_fewshot_val_shots(16) == 4 && ct_fewshot_val_shots(2) == 2 &&
          ct_fewshot_val_shots(4) == 4);
    /* Uniform draws: 1-shot from a class of 10 over many seeds. */
    int hits[11] = {0};
    for (uint64_t seed = 0; seed < 3000; seed++) {
        ct_dataset *o = ct_dataset_fewshot(d, 1, seed);
        for (int64_t i = 0; o && i < o->n_items; i++)
            if (o->items[i].label == 0) hits[atoi(o->items[i].path + 3)]++;
        ct_dataset_free(o);
    }
    for (int k = 1; k <= 10; k++)
        CHECK_MSG(hits[k] > 220 && hits[k] < 380, "item %d: %d of 3000", k, hits[k]);
    ct_dataset_free(f);
    ct_dataset_free(g);
    ct_dataset_free(h);
    ct_dataset_free(two);
    ct_dataset_free(all);
    ct_dataset_free(d);
    CHECK(ct_dataset_fewshot(NULL, 1, 0) == NULL);
}

/* Class names go into JSON: a class folder whose name is not UTF-8 is a
 * clear error naming it, and a UTF-8 one (accents) is fine. */
static void test_classnames_utf8(void) {
    char rel[256], spec[2048], dir[2048];
    for (int bad = 0; bad < 2; bad++) {
        const char *root = bad ? "utf8bad" : "utf8ok";
        snprintf(rel, sizeof rel, "%s/plain/p0.ppm", root);
        write_ppm(rel, 4, 3, 1);
        snprintf(rel, sizeof rel, "%s/%s/c0.ppm", root, bad ? "caf\xe9" : "caf\xc3\xa9");
        write_ppm(rel, 4, 3, 2);
        snprintf(spec, sizeof spec, "folder:%s", tmp(dir, sizeof dir, root));
        ct_splits sp = {0};
        ct_status st = ct_data_open(spec, &sp);
        if (bad)
            CHECK_MSG(st != CT_OK && strstr(ct_last_error(), "not UTF-8") &&
                          strstr(ct_last_error(), "0xe9"), "%s", ct_last_error());
        else
            CHECK_OK(st);
        ct_splits_free(&sp);
    }
}

/* A random part of a dataset: n distinct items in the dataset's order, the
 * same for the same seed, another for another, all for n <= 0. */
static void test_sample(void) {
    int counts[5] = {10, 10, 3, 7, 1};
    ct_dataset *d = synthetic(counts, 5);
    ct_dataset *a = ct_dataset_sample(d, 12, 1), *b = ct_dataset_sample(d, 12, 1);
    ct_dataset *c = ct_dataset_sample(d, 12, 2), *all = ct_dataset_sample(d, 0, 1);
    CHECK(a && b && c && all && a->n_items == 12 && same_items(a, b) && !same_items(a, c));
    CHECK(all && same_items(all, d));
    int64_t last = -1;
    for (int64_t i = 0; a && i < a->n_items; i++) {
        int64_t at = -1;
        for (int64_t j = 0; j < d->n_items; j++)
            if (!strcmp(a->items[i].path, d->items[j].path)) at = j;
        CHECK_MSG(at > last, "item %lld out of order or repeated", (long long)i);
        CHECK(at >= 0 && a->items[i].label == d->items[at].label);
        last = at;
    }
    ct_dataset_free(a), ct_dataset_free(b), ct_dataset_free(c), ct_dataset_free(all);
    ct_dataset_free(d);
}

static void test_subsample(void) {
    int counts5[5] = {2, 1, 3, 1, 2}, counts4[4] = {1, 1, 1, 2};
    ct_dataset *d5 = synthetic(counts5, 5), *d4 = synthetic(counts4, 4);
    ct_dataset *b = ct_dataset_subsample_classes(d5, 0), *n = ct_dataset_subsample_classes(d5, 1);
    CHECK(b && b->n_classes == 3 && n && n->n_classes == 2);
    if (b && n) {
        CHECK(strcmp(b->classnames[2], "c2") == 0 && strcmp(n->classnames[0], "c3") == 0 &&
              strcmp(n->classnames[1], "c4") == 0);
        CHECK(b->n_items == 6 && n->n_items == 3);
        CHECK(count_label(n, 0) == 1 && count_label(n, 1) == 2);
        for (int64_t i = 0; i < n->n_items; i++)
            CHECK(n->items[i].path[1] - '0' == n->items[i].label + 3);
    }
    ct_dataset *b4 = ct_dataset_subsample_classes(d4, 0), *n4 = ct_dataset_subsample_classes(d4, 1);
    CHECK(b4 && b4->n_classes == 2 && b4->n_items == 2 && n4 && n4->n_classes == 2 &&
          n4->n_items == 3 && count_label(n4, 1) == 2);
    int one[1] = {3};
    ct_dataset *d1 = synthetic(one, 1);
    CHECK(ct_dataset_subsample_classes(d1, 1) == NULL);
    CHECK_ERR_HAS("no novel classes");
    CHECK(ct_dataset_subsample_classes(d5, 2) == NULL);
    ct_dataset *b1 = ct_dataset_subsample_classes(d1, 0);
    CHECK(b1 && b1->n_classes == 1 && b1->n_items == 3);
    ct_dataset *list[] = {d5, d4, b, n, b4, n4, d1, b1};
    for (size_t i = 0; i < sizeof list / sizeof *list; i++) ct_dataset_free(list[i]);
}

/* ---- augmentation ------------------------------------------------------- */

static void make_image(ct_image *img, int w, int h) {
    uint8_t *px = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h * 3; i++) px[i] = (uint8_t)((i * 37) ^ (i >> 3));
    CHECK_OK(ct_image_from_pixels(px, w, h, 3, img));
    free(px);
}

static void test_augment(void) {
    ct_augment_cfg cfg;
    ct_augment_cfg_coop(&cfg, 24);
    ct_image src, a, b;
    make_image(&src, 40, 30);
    ct_rng r1, r2;
    int differ = 0;
    for (uint64_t seed = 0; seed < 8; seed++) {
        ct_rng_init(&r1, seed);
        ct_rng_init(&r2, seed);
        ct_crop_box ba, bb;
        CHECK_OK(ct_augment_train(&src, &cfg, &r1, &a, &ba, NULL));
        CHECK_OK(ct_augment_train(&src, &cfg, &r2, &b, &bb, NULL));
        CHECK(a.w == 24 && a.h == 24 && a.rgb && b.rgb && memcmp(a.rgb, b.rgb, 24 * 24 * 3) == 0);
        CHECK(memcmp(&ba, &bb, sizeof ba) == 0);
        ct_image c;
        ct_rng_init(&r1, seed + 100);
        CHECK_OK(ct_augment_train(&src, &cfg, &r1, &c, NULL, NULL));
        differ += c.rgb && a.rgb && memcmp(a.rgb, c.rgb, 24 * 24 * 3) != 0;
        ct_image_free(&a);
        ct_image_free(&b);
        ct_image_free(&c);
    }
    CHECK(differ >= 7);

    /* Whole-image box and same size: the output is the image or its mirror. */
    ct_image sq, out;
    make_image(&sq, 16, 16);
    ct_augment_cfg id = cfg;
    id.size = 16;
    id.scale_min = id.scale_max = 1.0;
    id.ratio_min = id.ratio_max = 1.0;
    id.flip_p = 1.0f;
    bool flipped = false;
    CHECK_OK(ct_augment_train(&sq, &id, &r1, &out, NULL, &flipped));
    CHECK(flipped && out.rgb);
    for (int y = 0; out.rgb && y < 16; y++)
        for (int x = 0; x < 16; x++)
            CHECK(memcmp(out.rgb + (y * 16 + x) * 3, sq.rgb + (y * 16 + 15 - x) * 3, 3) == 0);
    ct_image_free(&out);
    id.flip_p = 0.0f;
    CHECK_OK(ct_augment_train(&sq, &id, &r1, &out, NULL, &flipped));
    CHECK(!flipped && out.rgb && memcmp(out.rgb, sq.rgb, 16 * 16 * 3) == 0);
    ct_image_free(&out);
    int flips = 0;
    for (int i = 0; i < 400; i++) {
        CHECK_OK(ct_augment_train(&sq, &cfg, &r1, &out, NULL, &flipped));
        flips += flipped;
        ct_image_free(&out);
    }
    CHECK_MSG(flips > 150 && flips < 250, "%d flips of 400", flips);

    /* Boxes always inside, also for extreme shapes that fall back. */
    static const int shapes[][2] = {{37, 23}, {100, 10}, {10, 100}, {1, 1}, {2, 500}};
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++)
        for (int i = 0; i < 3000; i++) {
            ct_crop_box bx;
            int w = shapes[k][0], h = shapes[k][1];
            CHECK_OK(ct_rrc_params(w, h, &cfg, &r1, &bx));
            if (bx.x < 0 || bx.y < 0 || bx.w < 1 || bx.h < 1 || bx.x + bx.w > w ||
                bx.y + bx.h > h) {
                CHECK_MSG(false, "%dx%d: box %dx%d at (%d, %d)", w, h, bx.w, bx.h, bx.x, bx.y);
                break;
            }
        }
    /* torchvision's fallback: too thin for any try -> centred, ratio clamped. */
    ct_crop_box fb;
    CHECK_OK(ct_rrc_params(3, 300, &cfg, &r1, &fb));
    CHECK(fb.w == 3 && fb.h == 4 && fb.x == 0 && fb.y == 148);
    CHECK_OK(ct_rrc_params(1000, 1, &cfg, &r1, &fb));
    CHECK(fb.w == 1 && fb.h == 1 && fb.x == 499 && fb.y == 0);

    /* Statistics on a large square image (almost every first try fits). */
    double sum_scale = 0, sum_logr = 0, min_s = 9, max_s = 0, min_r = 9, max_r = 0;
    int n = 20000;
    for (int i = 0; i < n; i++) {
        ct_crop_box bx;
        ct_rrc_params(1000, 1000, &cfg, &r1, &bx);
        double sc = (double)bx.w * bx.h / 1e6, ra = (double)bx.w / bx.h;
        sum_scale += sc;
        sum_logr += log(ra);
        min_s = fmin(min_s, sc), max_s = fmax(max_s, sc);
        min_r = fmin(min_r, ra), max_r = fmax(max_r, ra);
    }
    CHECK_MSG(min_s > 0.079 && max_s <= 1.0 && min_s < 0.09 && max_s > 0.9, "scale [%g, %g]",
              min_s, max_s);
    CHECK_MSG(min_r > 0.745 && max_r < 1.34 && min_r < 0.76 && max_r > 1.3, "ratio [%g, %g]",
              min_r, max_r);
    /* Not 0.54: tries with scale > min(r, 1/r) do not fit and are redrawn;
     * 0.4776 by simulating torchvision's loop in Python. */
    CHECK_MSG(fabs(sum_scale / n - 0.4776) < 0.01, "mean scale %g", sum_scale / n);
    CHECK_MSG(fabs(sum_logr / n) < 0.01, "mean log ratio %g", sum_logr / n);

    ct_augment_cfg badc = cfg;
    badc.scale_min = 0;
    CHECK(ct_rrc_params(10, 10, &badc, &r1, &fb) == CT_ERR_ARG);
    ct_crop_box outside = {5, 5, 40, 30};
    CHECK(ct_image_crop(&src, &outside, &out) == CT_ERR_ARG && out.rgb == NULL);
    ct_image_free(&src);
    ct_image_free(&sq);
}

int main(void) {
    RUN(test_folder);
    RUN(test_folder_classnames);
    RUN(test_folder_presplit);
    RUN(test_coop);
    RUN(test_csv);
    RUN(test_idx);
    RUN(test_fashion_mnist_real);
    RUN(test_npy);
    RUN(test_fewshot);
    RUN(test_sample);
    RUN(test_classnames_utf8);
    RUN(test_subsample);
    RUN(test_augment);
    return ct_test_summary();
}
