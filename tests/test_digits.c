/* digits[:FILE]: scikit-learn's 8x8 digits CSV, read without Python. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cliptune.h"
#include "data/dataset.h"
#include "harness.h"

static const char *write_csv(const char *name, const char *body) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", ct_test_tmpdir(), name);
    FILE *f = fopen(path, "w");
    fputs(body, f);
    fclose(f);
    return path;
}

/* n rows per class: pixel k of a row is (k + label) % 17 */
static char *synthetic(int per_class) {
    size_t cap = (size_t)per_class * 10 * 256 + 1, len = 0;
    char *b = malloc(cap);
    for (int i = 0; i < per_class * 10; i++) {
        int label = i % 10;
        for (int k = 0; k < 64; k++) len += (size_t)snprintf(b + len, cap - len, "%d,", (k + label) % 17);
        len += (size_t)snprintf(b + len, cap - len, "%d\n", label);
    }
    return b;
}

static void test_synthetic(void) {
    char *body = synthetic(20);
    char spec[1100];
    snprintf(spec, sizeof spec, "digits:%s", write_csv("d.csv", body));
    free(body);
    ct_splits sp;
    CHECK_OK(ct_data_open(spec, &sp));
    if (!sp.train) return;
    CHECK(sp.train->n_classes == 10);
    CHECK(!strcmp(sp.train->classnames[7], "7"));
    int64_t total = sp.train->n_items + sp.val->n_items + sp.test->n_items;
    CHECK(total == 200);
    CHECK(sp.test->n_items == 100); /* 50% of each class */
    CHECK(sp.val->n_items == 20);   /* 10% */
    ct_image img;
    CHECK_OK(ct_dataset_image(sp.test, 0, &img));
    CHECK(img.w == 8 && img.h == 8);
    /* row r of the test split: pixel k = (k + label) % 17, scaled by 255/16 */
    int label = sp.test->items[0].label;
    for (int k = 0; k < 64; k++) {
        int v = (k + label) % 17, want = (v * 255 + 8) / 16;
        CHECK_MSG(img.rgb[3 * k] == want && img.rgb[3 * k + 2] == want, "pixel %d: %d vs %d", k,
                  img.rgb[3 * k], want);
    }
    ct_image_free(&img);
    ct_splits_free(&sp);
}

static void expect_error(const char *body, const char *needle) {
    char spec[1100];
    snprintf(spec, sizeof spec, "digits:%s", write_csv("bad.csv", body));
    ct_splits sp;
    CHECK(ct_data_open(spec, &sp) != CT_OK);
    CHECK_MSG(strstr(ct_last_error(), needle) != NULL, "'%s' not in '%s'", needle,
              ct_last_error());
}

static void test_errors(void) {
    char row[512] = "", bad[600];
    for (int k = 0; k < 64; k++) strcat(row, "1,");
    snprintf(bad, sizeof bad, "%s3\n%s17\n", row, row);
    expect_error(bad, "bad.csv:2: label outside 0..9");
    snprintf(bad, sizeof bad, "%s3\n%s", row, "1,2,3\n");
    expect_error(bad, "bad.csv:2: expected 64 pixel values");
    char hi[512] = "";
    for (int k = 0; k < 63; k++) strcat(hi, "1,");
    strcat(hi, "40,2\n");
    expect_error(hi, "pixel value outside 0..16");
    snprintf(bad, sizeof bad, "%s3,4\n", row);
    expect_error(bad, "more than 65 values");
    expect_error("", "no images");
    ct_splits sp;
    CHECK(ct_data_open("digits:/nonexistent/digits.csv.gz", &sp) == CT_ERR_IO);
    CHECK(strstr(ct_last_error(), "/nonexistent/digits.csv.gz") != NULL);
}

static void test_real_file(void) {
    /* the installed package's file, or the copy scripts/test.sh extracted */
    const char *path = getenv("CT_DIGITS_CSV");
    if (!path || !*path) path = CT_DIGITS_DEFAULT;
    FILE *f = fopen(path, "rb");
    if (!f) {
        ct_test_skip("no digits.csv.gz: install python3-sklearn or run scripts/test.sh, which "
                     "extracts it from the package");
        return;
    }
    fclose(f);
    ct_splits sp;
    char spec[4200];
    snprintf(spec, sizeof spec, "digits:%s", path);
    CHECK_OK(ct_data_open(strcmp(path, CT_DIGITS_DEFAULT) ? spec : "digits", &sp));
    if (!sp.train) return;
    CHECK(sp.train->n_items + sp.val->n_items + sp.test->n_items == 1797);
    CHECK(sp.test->n_items > 880 && sp.test->n_items < 920);
    ct_splits_free(&sp);
}

int main(void) {
    RUN(test_synthetic);
    RUN(test_errors);
    RUN(test_real_file);
    return ct_test_summary();
}
