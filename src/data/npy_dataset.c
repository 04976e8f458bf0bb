/* npy:X.npy,Y.npy — in-memory images from NumPy arrays:
 *
 *   X  (N, H, W) grey or (N, H, W, C) channel-last, C in 1..4 (2 and 4 carry
 *      alpha, dropped on use); float32 pixel values in [0, 255] (rounded to
 *      the nearest integer) or int64 in 0..255. ct_npy_read reads only <f4
 *      and <i8, so a uint8 array is saved with x.astype(np.float32) (or
 *      np.int64); arrays scaled to [0, 1] are refused rather than read as
 *      near-black images.
 *   Y  (N) int64 labels >= 0; n_classes = max label + 1 over all files,
 *      names "0", "1", ... unless classnames.txt sits beside the first X.
 *
 * Two files are split 80/10/10 per class (hash of the row index); four are
 * train and test (10% of train held out as val); six are train, val, test. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "data/dataset.h"
#include "cliptune.h"

static const char *const SPLIT[3] = {"train", "val", "test"};

typedef struct npy_split {
    ct_pixel_store *store;
    ct_item_vec items;
} npy_split;

static ct_status check_labels(const char *ypath, const ct_npy *y, int64_t n, int *max) {
    if (y->dtype != CT_I64 || y->ndim != 1 || y->shape[0] != n)
        return ct_set_error(CT_ERR_FORMAT, "%s: labels must be int64 of shape (%lld,) to match "
                            "the images, got %s of rank %d", ypath, (long long)n,
                            y->dtype == CT_I64 ? "int64" : "float32", y->ndim);
    const int64_t *v = y->data;
    for (int64_t i = 0; i < n; i++) {
        if (v[i] < 0 || v[i] >= CT_DATA_MAX_CLASSES)
            return ct_set_error(CT_ERR_FORMAT, "%s: label %lld at index %lld is outside 0..%d",
                                ypath, (long long)v[i], (long long)i, CT_DATA_MAX_CLASSES - 1);
        if (v[i] > *max) *max = (int)v[i];
    }
    return CT_OK;
}

/* X's values into the store as bytes. */
static ct_status convert_pixels(const char *xpath, const ct_npy *x, uint8_t *dst) {
    if (x->dtype == CT_I64) {
        const int64_t *v = x->data;
        for (size_t i = 0; i < x->numel; i++) {
            if (v[i] < 0 || v[i] > 255)
                return ct_set_error(CT_ERR_FORMAT, "%s: element %zu is %lld, outside 0..255",
                                    xpath, i, (long long)v[i]);
            dst[i] = (uint8_t)v[i];
        }
        return CT_OK;
    }
    const float *v = x->data;
    bool fractional = false, above_one = false;
    for (size_t i = 0; i < x->numel; i++) {
        float f = v[i];
        if (!(f >= 0.0f && f <= 255.0f))
            return ct_set_error(CT_ERR_FORMAT, "%s: element %zu is %g, outside [0, 255] (images "
                                "are float32 pixel values 0..255)", xpath, i, (double)f);
        fractional |= f != floorf(f);
        above_one |= f > 1.0f;
        dst[i] = (uint8_t)(f + 0.5f);
    }
    if (fractional && !above_one)
        return ct_set_error(CT_ERR_FORMAT, "%s: every value lies in [0, 1]; images must be "
                            "pixel values 0..255 (multiply by 255)", xpath);
    return CT_OK;
}

static ct_status read_pair(const char *xpath, const char *ypath, const char *store_name,
                           npy_split *out, int *max_label) {
    ct_npy x, y;
    ct_status s = ct_npy_read(xpath, &x);
    if (s == CT_ERR_UNSUPPORTED) {
        char msg[768];
        snprintf(msg, sizeof msg, "%s", ct_last_error());
        return ct_set_error(s, "%s; save images as float32 0..255 or int64 "
                            "(x.astype(np.float32))", msg);
    }
    if (s != CT_OK) return s;
    s = ct_npy_read(ypath, &y);
    if (s == CT_ERR_UNSUPPORTED) {
        char msg[768];
        snprintf(msg, sizeof msg, "%s", ct_last_error());
        s = ct_set_error(s, "%s; save labels as int64 (y.astype(np.int64))", msg);
    }
    if (s != CT_OK) {
        ct_npy_free(&x);
        return s;
    }
    int c = x.ndim == 4 ? (int)x.shape[3] : 1;
    if (x.ndim != 3 && x.ndim != 4)
        s = ct_set_error(CT_ERR_FORMAT, "%s: images must be (N, H, W) or (N, H, W, C), got rank "
                         "%d", xpath, x.ndim);
    else if (x.shape[1] < 1 || x.shape[2] < 1 || x.shape[1] > CT_IMAGE_MAX_SIDE ||
             x.shape[2] > CT_IMAGE_MAX_SIDE)
        s = ct_set_error(CT_ERR_FORMAT, "%s: image size %lldx%lld outside 1..%d", xpath,
                         (long long)x.shape[1], (long long)x.shape[2], CT_IMAGE_MAX_SIDE);
    else if (x.ndim == 4 && (x.shape[3] < 1 || x.shape[3] > 4))
        s = ct_set_error(CT_ERR_FORMAT, "%s: last dim %lld: expected channel-last (N, H, W, C) "
                         "with C in 1..4 (transpose (N, C, H, W) arrays)", xpath,
                         (long long)x.shape[3]);
    if (s == CT_OK) s = check_labels(ypath, &y, x.shape[0], max_label);
    if (s == CT_OK) {
        out->store = ct_pixel_store_new(store_name, x.shape[0], (int)x.shape[1],
                                        (int)x.shape[2], c);
        if (!out->store) s = CT_ERR_NOMEM;
    }
    if (s == CT_OK) s = convert_pixels(xpath, &x, out->store->data);
    const int64_t *labels = y.data;
    for (int64_t i = 0; s == CT_OK && i < x.shape[0]; i++)
        s = ct_item_vec_push(&out->items, NULL, i, (int)labels[i]);
    ct_npy_free(&x);
    ct_npy_free(&y);
    return s;
}

ct_status ct_data_open_npy(char *const *paths, int n_paths, ct_splits *out) {
    memset(out, 0, sizeof *out);
    if (n_paths != 2 && n_paths != 4 && n_paths != 6)
        return ct_set_error(CT_ERR_ARG, "npy dataset: %d paths (expected 2, 4 or 6)", n_paths);
    /* Which split each X,Y pair feeds: all; train, test; train, val, test. */
    static const int WHICH[3][3] = {{0, -1, -1}, {0, 2, -1}, {0, 1, 2}};
    const int *which = WHICH[n_paths / 2 - 1];
    npy_split sp[3];
    memset(sp, 0, sizeof sp);
    char *name = ct_data_stem(paths[0], ".npy"), *dir = ct_data_dirname(paths[0]);
    char **names = NULL;
    int max_label = -1, n_classes = 0;
    ct_dataset *all = NULL;
    ct_status s = name && dir ? CT_OK : ct_set_error(CT_ERR_NOMEM, "npy dataset: no memory");
    for (int p = 0; p < n_paths / 2 && s == CT_OK; p++) {
        char store_name[512];
        /* Keys of in-memory rows are "<store>#<row>": one store per split
         * keeps train row 5 and test row 5 apart. */
        if (n_paths == 2) snprintf(store_name, sizeof store_name, "%s", name);
        else snprintf(store_name, sizeof store_name, "%s/%s", name, SPLIT[which[p]]);
        s = read_pair(paths[2 * p], paths[2 * p + 1], store_name, &sp[which[p]], &max_label);
    }
    if (s == CT_OK && max_label < 0)
        s = ct_set_error(CT_ERR_FORMAT, "%s: no items", paths[1]);
    if (s == CT_OK) {
        n_classes = max_label + 1;
        if (!(names = calloc((size_t)n_classes, sizeof *names)))
            s = ct_set_error(CT_ERR_NOMEM, "npy dataset: no memory");
        for (int c = 0; s == CT_OK && c < n_classes; c++) {
            char buf[16];
            snprintf(buf, sizeof buf, "%d", c);
            if (!(names[c] = strdup(buf))) s = ct_set_error(CT_ERR_NOMEM, "npy: no memory");
        }
    }
    if (s == CT_OK) s = ct_classnames_apply(dir, n_classes, names, NULL);
    if (s == CT_OK &&
        !(all = ct_dataset_build(name, "", n_classes, names, sp[0].store, &sp[0].items)))
        s = CT_ERR_NOMEM;
    if (s == CT_OK) s = ct_dataset_check_nonempty(all, paths[1]);
    if (s == CT_OK && n_paths == 2) {
        s = ct_dataset_holdout(all, 10, 10, &out->train, &out->val, &out->test);
    } else if (s == CT_OK) {
        if (n_paths == 6) {
            out->train = all;
            all = NULL;
            if (sp[1].items.n && !(out->val = ct_dataset_build(name, "", n_classes, names,
                                                               sp[1].store, &sp[1].items)))
                s = CT_ERR_NOMEM;
        } else {
            s = ct_dataset_holdout(all, 10, 0, &out->train, &out->val, NULL);
        }
        if (s == CT_OK && !(out->test = ct_dataset_build(name, "", n_classes, names, sp[2].store,
                                                         &sp[2].items)))
            s = CT_ERR_NOMEM;
    }
    ct_dataset_free(all);
    for (int k = 0; k < 3; k++) {
        ct_pixel_store_release(sp[k].store);
        ct_item_vec_free(&sp[k].items);
    }
    ct_strv_free(names, n_classes);
    free(name);
    free(dir);
    if (s != CT_OK) ct_splits_free(out);
    return s;
}

ct_status ct_data_from_arrays(const char *name, const uint8_t *images, int64_t n, int h, int w,
                              int c, const int *labels, int n_classes,
                              const char *const *classnames, ct_splits *out) {
    if (!out) return ct_set_error(CT_ERR_ARG, "data_from_arrays: NULL output");
    memset(out, 0, sizeof *out);
    if (!name || !images || !labels || n < 1 || n_classes < 1)
        return ct_set_error(CT_ERR_ARG, "data_from_arrays: NULL name, images or labels, or no "
                            "items or classes");
    if (h < 1 || w < 1 || h > CT_IMAGE_MAX_SIDE || w > CT_IMAGE_MAX_SIDE || (c != 1 && c != 3))
        return ct_set_error(CT_ERR_ARG, "data_from_arrays: images %dx%dx%d (1..%d pixels a "
                            "side, 1 or 3 channels)", h, w, c, CT_IMAGE_MAX_SIDE);
    for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= n_classes)
            return ct_set_error(CT_ERR_ARG, "data_from_arrays: label %d of item %lld is outside "
                                "0..%d", labels[i], (long long)i, n_classes - 1);
    char **names = calloc((size_t)n_classes, sizeof *names);
    ct_status s = names ? CT_OK : ct_set_error(CT_ERR_NOMEM, "data_from_arrays: no memory");
    for (int k = 0; s == CT_OK && k < n_classes; k++) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d", k);
        const char *nm = classnames && classnames[k] ? classnames[k] : buf;
        if (!(names[k] = strdup(nm))) s = ct_set_error(CT_ERR_NOMEM, "data_from_arrays: no memory");
    }
    ct_pixel_store *store = s == CT_OK ? ct_pixel_store_new(name, n, h, w, c) : NULL;
    if (s == CT_OK && !store) s = ct_set_error(CT_ERR_NOMEM, "data_from_arrays: no memory");
    if (s == CT_OK) memcpy(store->data, images, (size_t)n * (size_t)h * (size_t)w * (size_t)c);
    ct_item_vec items = {0};
    for (int64_t i = 0; s == CT_OK && i < n; i++) s = ct_item_vec_push(&items, NULL, i, labels[i]);
    ct_dataset *all = NULL;
    if (s == CT_OK && !(all = ct_dataset_build(name, "", n_classes, names, store, &items)))
        s = CT_ERR_NOMEM;
    /* the npy spec's split: a fixed, hash-chosen 10% val and 10% test per class */
    if (s == CT_OK) s = ct_dataset_holdout(all, 10, 10, &out->train, &out->val, &out->test);
    ct_dataset_free(all);
    ct_pixel_store_release(store);
    ct_item_vec_free(&items);
    ct_strv_free(names, names ? n_classes : 0);
    if (s != CT_OK) ct_splits_free(out);
    return s;
}
