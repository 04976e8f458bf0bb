/* digits[:FILE] — scikit-learn's 8x8 handwritten digits (load_digits; the
 * UCI "Optical Recognition of Handwritten Digits" test set, 1,797 images):
 * sklearn/datasets/data/digits.csv.gz of Debian's python3-sklearn, read
 * without Python. Default FILE: that file where python3-sklearn installs it;
 * `cliptune demo` extracts it from the .deb when the package is absent.
 *
 * Format: one image per line, 64 integers 0..16 (row-major 8x8) and the
 * label 0..9, comma-separated; gzip or plain (zlib reads both). Pixels are
 * scaled to 0..255 as round(v * 255 / 16) — dark strokes on white in the
 * source's sense are "ink = 16", which becomes white-on-black like MNIST.
 *
 * The source has no split: per class, a fixed hash of the row index holds
 * out 50% as test and 10% as val (ct_dataset_holdout): 717 / 179 / 901
 * images. Class names are the numerals "0" .. "9", as CLIP's MNIST classes. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/error.h"
#include "data/dataset.h"

#define DIGITS_MAX_ROWS 100000
#define DIGITS_LINE 1024

/* CLIP's class names for MNIST (the numerals) */
static const char *const DIGIT_NAMES[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};

/* One line "v0,...,v63,label": 65 integers; false with *why set if not. */
static bool parse_row(const char *line, uint8_t *px, int *label, const char **why) {
    const char *p = line;
    for (int k = 0; k < 65; k++) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) {
            *why = k < 64 ? "expected 64 pixel values and a label" : "missing label";
            return false;
        }
        if (k < 64) {
            if (v < 0 || v > 16) {
                *why = "pixel value outside 0..16";
                return false;
            }
            px[k] = (uint8_t)((v * 255 + 8) / 16);
        } else {
            if (v < 0 || v > 9) {
                *why = "label outside 0..9";
                return false;
            }
            *label = (int)v;
        }
        p = end;
        while (*p == ' ' || *p == '\t') p++;
        if (k < 64) {
            if (*p != ',') {
                *why = "expected 64 pixel values and a label";
                return false;
            }
            p++;
        }
    }
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
    if (*p) {
        *why = "more than 65 values";
        return false;
    }
    return true;
}

ct_status ct_data_open_digits(const char *file, ct_splits *out) {
    memset(out, 0, sizeof *out);
    gzFile gz = gzopen(file, "rb");
    if (!gz)
        return ct_set_error(CT_ERR_IO, "%s: cannot open (install python3-sklearn, run "
                            "`cliptune demo` once to extract it, or give digits:FILE)", file);
    ct_status s = CT_OK;
    uint8_t *px = NULL;
    int *labels = NULL;
    int64_t n = 0, cap = 0;
    char line[DIGITS_LINE];
    int64_t lineno = 0;
    while (s == CT_OK && gzgets(gz, line, sizeof line)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            s = ct_set_error(CT_ERR_FORMAT, "%s:%lld: line too long", file, (long long)lineno);
            break;
        }
        if (strspn(line, " \t\r\n") == len) continue;
        if (n == DIGITS_MAX_ROWS) {
            s = ct_set_error(CT_ERR_FORMAT, "%s: more than %d rows", file, DIGITS_MAX_ROWS);
            break;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 2048;
            uint8_t *np = realloc(px, (size_t)cap * 64);
            int *nl = realloc(labels, (size_t)cap * sizeof *nl);
            if (np) px = np;
            if (nl) labels = nl;
            if (!np || !nl) {
                s = ct_set_error(CT_ERR_NOMEM, "%s: out of memory", file);
                break;
            }
        }
        const char *why = NULL;
        if (!parse_row(line, px + n * 64, &labels[n], &why)) {
            s = ct_set_error(CT_ERR_FORMAT, "%s:%lld: %s", file, (long long)lineno, why);
            break;
        }
        n++;
    }
    int zerr = 0;
    const char *zmsg = gzerror(gz, &zerr);
    if (s == CT_OK && zerr != Z_OK && zerr != Z_STREAM_END)
        s = ct_set_error(CT_ERR_FORMAT, "%s: %s", file, zmsg);
    gzclose(gz);
    if (s == CT_OK && n == 0) s = ct_set_error(CT_ERR_FORMAT, "%s: no images", file);
    ct_pixel_store *store = NULL;
    ct_item_vec items = {0};
    ct_dataset *all = NULL;
    char *names[10] = {0};
    for (int c = 0; c < 10 && s == CT_OK; c++)
        if (!(names[c] = strdup(DIGIT_NAMES[c]))) s = ct_set_error(CT_ERR_NOMEM, "digits: no memory");
    if (s == CT_OK && !(store = ct_pixel_store_new("digits", n, 8, 8, 1))) s = CT_ERR_NOMEM;
    if (s == CT_OK) memcpy(store->data, px, (size_t)n * 64);
    for (int64_t i = 0; s == CT_OK && i < n; i++) s = ct_item_vec_push(&items, NULL, i, labels[i]);
    if (s == CT_OK && !(all = ct_dataset_build("digits", "", 10, names, store, &items)))
        s = CT_ERR_NOMEM;
    if (s == CT_OK) s = ct_dataset_check_nonempty(all, file);
    if (s == CT_OK) s = ct_dataset_holdout(all, 10, 50, &out->train, &out->val, &out->test);
    ct_dataset_free(all);
    ct_pixel_store_release(store);
    ct_item_vec_free(&items);
    for (int c = 0; c < 10; c++) free(names[c]);
    free(px), free(labels);
    if (s != CT_OK) ct_splits_free(out);
    return s;
}
