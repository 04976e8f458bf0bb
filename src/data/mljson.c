/* mljson:FILE[@ROOT] — a multi-label dataset in one JSON file:
 *
 *   {"classes": ["cat", "dog", ...],
 *    "train": [{"path": "a.jpg", "labels": ["cat"], "unknown": ["dog"]}, ...],
 *    "val":   [...],            (optional)
 *    "test":  [...]}
 *
 * Class i is classes[i]; "labels" (present) and "unknown" (-1, partial
 * labels) are optional lists of class names, every other class is absent.
 * Paths are relative to ROOT (default: FILE's folder). "val" absent or null:
 * 10% of train is held out; [] : no val split. Readable names are the
 * classes with '_' read as a space unless classnames.txt beside FILE says
 * otherwise. */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/json.h"
#include "data/dataset.h"

#define PATH_BUF 4096

static const char *const SPLITS[3] = {"train", "val", "test"};

typedef struct cls_key {
    const char *name;
    int index;
} cls_key;

static int cmp_key(const void *a, const void *b) {
    return strcmp(((const cls_key *)a)->name, ((const cls_key *)b)->name);
}

typedef struct mj_ctx {
    const char *file, *root;
    int n_classes;
    cls_key *keys; /* sorted by name */
    int64_t n_missing;
    char missing[PATH_BUF + 256];
} mj_ctx;

static ct_status read_classes(mj_ctx *c, const cJSON *arr, const char ***ids) {
    if (!cJSON_IsArray(arr))
        return ct_set_error(CT_ERR_FORMAT, "%s: %s \"classes\" array of names", c->file,
                            arr ? "expected a" : "missing the");
    int n = cJSON_GetArraySize(arr);
    if (n == 0) return ct_set_error(CT_ERR_FORMAT, "%s: \"classes\" is empty", c->file);
    if (n > CT_DATA_MAX_CLASSES)
        return ct_set_error(CT_ERR_FORMAT, "%s: %d classes exceed the limit of %d", c->file, n,
                            CT_DATA_MAX_CLASSES);
    c->keys = malloc((size_t)n * sizeof *c->keys);
    *ids = malloc((size_t)n * sizeof **ids);
    if (!c->keys || !*ids) return ct_set_error(CT_ERR_NOMEM, "%s: no memory", c->file);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        if (!cJSON_IsString(e) || !e->valuestring[0])
            return ct_set_error(CT_ERR_FORMAT, "%s: classes[%d]: expected a non-empty string",
                                c->file, i);
        c->keys[i] = (cls_key){e->valuestring, i};
        (*ids)[i] = e->valuestring;
        i++;
    }
    qsort(c->keys, (size_t)n, sizeof *c->keys, cmp_key);
    for (int k = 1; k < n; k++)
        if (strcmp(c->keys[k].name, c->keys[k - 1].name) == 0)
            return ct_set_error(CT_ERR_FORMAT, "%s: classes[%d]: '%s' repeats classes[%d]",
                                c->file, c->keys[k].index, c->keys[k].name,
                                c->keys[k - 1].index);
    c->n_classes = n;
    return CT_OK;
}

/* entry[field] (optional list of class names) into row as value. */
static ct_status mark(const mj_ctx *c, const char *sn, int64_t i, const cJSON *entry,
                      const char *field, int8_t value, int8_t *row) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(entry, field);
    if (!arr || cJSON_IsNull(arr)) return CT_OK;
    if (!cJSON_IsArray(arr))
        return ct_set_error(CT_ERR_FORMAT, "%s: %s[%lld].%s: expected an array of class names",
                            c->file, sn, (long long)i, field);
    int t = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        if (!cJSON_IsString(e))
            return ct_set_error(CT_ERR_FORMAT, "%s: %s[%lld].%s[%d]: expected a class name",
                                c->file, sn, (long long)i, field, t);
        cls_key want = {e->valuestring, 0};
        const cls_key *hit = bsearch(&want, c->keys, (size_t)c->n_classes, sizeof *c->keys,
                                     cmp_key);
        if (!hit)
            return ct_set_error(CT_ERR_FORMAT, "%s: %s[%lld].%s[%d]: '%s' is not in \"classes\"",
                                c->file, sn, (long long)i, field, t, e->valuestring);
        if (row[hit->index] == -value)
            return ct_set_error(CT_ERR_FORMAT, "%s: %s[%lld]: '%s' is in both \"labels\" and "
                                "\"unknown\"", c->file, sn, (long long)i, e->valuestring);
        row[hit->index] = value;
        t++;
    }
    return CT_OK;
}

static ct_status read_split(mj_ctx *c, int sp, const cJSON *arr, ct_ml_vec *v) {
    const char *sn = SPLITS[sp];
    int8_t *row = malloc((size_t)c->n_classes);
    if (!row) return ct_set_error(CT_ERR_NOMEM, "%s: no memory", c->file);
    char full[PATH_BUF];
    ct_status s = CT_OK;
    int64_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        const cJSON *path = cJSON_GetObjectItemCaseSensitive(e, "path");
        if (!cJSON_IsObject(e) || !cJSON_IsString(path) || !path->valuestring[0]) {
            s = ct_set_error(CT_ERR_FORMAT, "%s: %s[%lld]: expected an object with a non-empty "
                             "\"path\"", c->file, sn, (long long)i);
            break;
        }
        memset(row, 0, (size_t)c->n_classes);
        s = mark(c, sn, i, e, "labels", 1, row);
        if (s == CT_OK) s = mark(c, sn, i, e, "unknown", -1, row);
        if (s != CT_OK) break;
        if (!ct_data_join(full, sizeof full, c->root, path->valuestring)) {
            s = ct_set_error(CT_ERR_FORMAT, "%s: %s[%lld].path: too long", c->file, sn,
                             (long long)i);
            break;
        }
        if (!ct_data_is_file(full) && c->n_missing++ == 0)
            snprintf(c->missing, sizeof c->missing, "%s[%lld].path: image file '%s' does not "
                     "exist", sn, (long long)i, full);
        if ((s = ct_ml_vec_push(v, path->valuestring, row)) != CT_OK) break;
        i++;
    }
    free(row);
    return s;
}

ct_status ct_data_open_mljson(const char *file, const char *root, ct_splits *out) {
    memset(out, 0, sizeof *out);
    cJSON *json = ct_json_load(file);
    if (!json) return ct_data_is_file(file) ? CT_ERR_FORMAT : CT_ERR_IO;
    mj_ctx c = {.file = file, .root = root};
    ct_ml_vec v[3];
    memset(v, 0, sizeof v);
    const char **ids = NULL;
    char **names = NULL, *dir = NULL, *name = NULL;
    const cJSON *arr[3] = {NULL, NULL, NULL};
    ct_status s = CT_OK;
    if (!cJSON_IsObject(json))
        s = ct_set_error(CT_ERR_FORMAT, "%s: expected an object with \"classes\", \"train\" and "
                         "\"test\"", file);
    if (s == CT_OK)
        s = read_classes(&c, cJSON_GetObjectItemCaseSensitive(json, "classes"), &ids);
    for (int sp = 0; sp < 3 && s == CT_OK; sp++) {
        arr[sp] = cJSON_GetObjectItemCaseSensitive(json, SPLITS[sp]);
        if (sp == 1 && cJSON_IsNull(arr[sp])) arr[sp] = NULL;
        if (!arr[sp] && sp != 1)
            s = ct_set_error(CT_ERR_FORMAT, "%s: missing the \"%s\" array", file, SPLITS[sp]);
        else if (arr[sp] && !cJSON_IsArray(arr[sp]))
            s = ct_set_error(CT_ERR_FORMAT, "%s: \"%s\" must be an array", file, SPLITS[sp]);
    }
    for (int sp = 0; sp < 3; sp++) v[sp].n_classes = c.n_classes;
    for (int sp = 0; sp < 3 && s == CT_OK; sp++)
        if (arr[sp]) s = read_split(&c, sp, arr[sp], &v[sp]);
    if (s == CT_OK && c.n_missing)
        s = ct_set_error(CT_ERR_IO, "%s: %s (%lld image%s missing in all; paths are relative to "
                         "'%s')", file, c.missing, (long long)c.n_missing,
                         c.n_missing == 1 ? "" : "s", root);
    if (s == CT_OK && (!(names = ct_strv_dup((char *const *)ids, c.n_classes)) ||
                       !(dir = ct_data_dirname(file)) || !(name = ct_data_stem(file, ".json"))))
        s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", file);
    if (s == CT_OK) {
        ct_ml_underscores(names, c.n_classes);
        s = ct_classnames_apply(dir, c.n_classes, names, ids);
    }
    if (s == CT_OK) s = ct_ml_splits(name, root, names, v, arr[1] != NULL, true, file, out);
    for (int sp = 0; sp < 3; sp++) ct_ml_vec_free(&v[sp]);
    cJSON_Delete(json);
    free(c.keys);
    free(ids);
    ct_strv_free(names, names ? c.n_classes : 0);
    free(dir);
    free(name);
    if (s != CT_OK) ct_splits_free(out);
    return s;
}
