/* What the multi-label loaders (voc, coco, mlcsv, mljson) share: item lists
 * with target rows, and the split rules. */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "data/dataset.h"

ct_status ct_ml_vec_push(ct_ml_vec *v, const char *path, const int8_t *row) {
    size_t k = (size_t)(v->n_classes > 0 ? v->n_classes : 0);
    if (v->items.n == v->cap) {
        int64_t cap = v->cap ? v->cap * 2 : 64;
        size_t bytes;
        if (!ct_mul_size((size_t)cap, k ? k : 1, &bytes))
            return ct_set_error(CT_ERR_NOMEM, "dataset: too many items for %d classes",
                                v->n_classes);
        int8_t *t = realloc(v->targets, bytes);
        if (!t)
            return ct_set_error(CT_ERR_NOMEM, "dataset: cannot grow the labels to %lld items",
                                (long long)cap);
        v->targets = t;
        v->cap = cap;
    }
    int label = 0;
    for (size_t c = 0; c < k; c++)
        if (row[c] == 1) {
            label = (int)c;
            break;
        }
    ct_status s = ct_item_vec_push(&v->items, path, 0, label);
    if (s != CT_OK) return s;
    if (k) memcpy(v->targets + (size_t)(v->items.n - 1) * k, row, k);
    return CT_OK;
}

void ct_ml_vec_free(ct_ml_vec *v) {
    if (!v) return;
    ct_item_vec_free(&v->items);
    free(v->targets);
    int k = v->n_classes;
    memset(v, 0, sizeof *v);
    v->n_classes = k;
}

ct_dataset *ct_ml_dataset_build(const char *name, const char *root, char *const *names,
                                ct_ml_vec *v) {
    /* a multi-label dataset keeps non-NULL targets even when it is empty */
    if (!v->targets && !(v->targets = malloc(1))) {
        ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate the labels", name);
        return NULL;
    }
    ct_dataset *d = ct_dataset_build(name, root, v->n_classes, names, NULL, &v->items);
    if (!d) return NULL;
    d->targets = v->targets;
    v->targets = NULL;
    v->cap = 0;
    return d;
}

ct_status ct_ml_splits(const char *name, const char *root, char *const *names, ct_ml_vec v[3],
                       bool has_val, bool has_test, const char *src, ct_splits *out) {
    memset(out, 0, sizeof *out);
    if (v[0].items.n == 0) return ct_set_error(CT_ERR_FORMAT, "%s: no training items", src);
    ct_dataset *all = ct_ml_dataset_build(name, root, names, &v[0]);
    if (!all) return CT_ERR_NOMEM;
    ct_status s = CT_OK;
    if (!has_test) {
        s = ct_dataset_holdout(all, 10, 10, &out->train, &out->val, &out->test);
    } else {
        if (has_val) {
            out->train = all;
            all = NULL;
            if (v[1].items.n && !(out->val = ct_ml_dataset_build(name, root, names, &v[1])))
                s = CT_ERR_NOMEM;
        } else {
            s = ct_dataset_holdout(all, 10, 0, &out->train, &out->val, NULL);
        }
        if (s == CT_OK && !(out->test = ct_ml_dataset_build(name, root, names, &v[2])))
            s = CT_ERR_NOMEM;
    }
    ct_dataset_free(all);
    if (s != CT_OK) ct_splits_free(out);
    return s;
}

void ct_ml_underscores(char **names, int n) {
    for (int k = 0; k < n; k++)
        for (char *p = names[k]; *p; p++)
            if (*p == '_') *p = ' ';
}
