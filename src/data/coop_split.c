/* coop:SPLIT.json@IMAGES — the split files CoOp ships and Dassl reads
 * (split_zhou_OxfordPets.json, ...), taken as they are:
 *
 *   {"train": [[relpath, label, classname], ...], "val": [...], "test": [...]}
 *
 * As Dassl's DatasetBase, the class count is max(train label) + 1 and class
 * names come from the train entries. Stricter than Dassl, which would carry
 * on with a broken file: every label 0..n-1 needs a train item, a label must
 * keep one class name everywhere, val/test labels must be train's, and every
 * image must exist (Dassl's Datum asserts that one too, without saying
 * which). "val" may be absent or empty (no val split). */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/json.h"
#include "data/dataset.h"

#define PATH_BUF 4096

static const char *const SPLIT_NAMES[3] = {"train", "val", "test"};

typedef struct coop_ctx {
    const char *file;   /* the JSON path, for messages  */
    const char *images; /* image root                    */
    int n_classes;
    char **names;       /* n_classes, from train         */
    int64_t *first;     /* train index that named each   */
    int64_t n_missing;  /* image files not found         */
    char missing_msg[PATH_BUF + 256];
} coop_ctx;

static const char *json_type(const cJSON *v) {
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    return "an invalid value";
}

/* Entry i of split sp, checked: its path, label and class name. */
static ct_status parse_entry(const coop_ctx *c, int sp, int64_t i, const cJSON *e,
                             const char **path, int *label, const char **cname) {
    const char *sn = SPLIT_NAMES[sp];
    long long ii = (long long)i;
    if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 3)
        return ct_set_error(CT_ERR_FORMAT, "%s: %s[%lld]: expected an array [path, label, "
                            "classname], got %s%s", c->file, sn, ii, json_type(e),
                            cJSON_IsArray(e) ? " of another length" : "");
    const cJSON *p = cJSON_GetArrayItem(e, 0), *l = cJSON_GetArrayItem(e, 1),
                *n = cJSON_GetArrayItem(e, 2);
    if (!cJSON_IsString(p) || !p->valuestring[0])
        return ct_set_error(CT_ERR_FORMAT, "%s: %s[%lld][0] (path): expected a non-empty "
                            "string, got %s", c->file, sn, ii, json_type(p));
    double v = l->valuedouble;
    if (!cJSON_IsNumber(l) || !(v >= 0) || v != floor(v))
        return ct_set_error(CT_ERR_FORMAT, "%s: %s[%lld][1] (label): expected a non-negative "
                            "integer, got %s", c->file, sn, ii,
                            cJSON_IsNumber(l) ? "a negative or fractional number" : json_type(l));
    if (v >= CT_DATA_MAX_CLASSES)
        return ct_set_error(CT_ERR_FORMAT, "%s: %s[%lld][1] (label): %.0f exceeds the limit of "
                            "%d classes", c->file, sn, ii, v, CT_DATA_MAX_CLASSES);
    if (!cJSON_IsString(n) || !n->valuestring[0])
        return ct_set_error(CT_ERR_FORMAT, "%s: %s[%lld][2] (classname): expected a non-empty "
                            "string, got %s", c->file, sn, ii, json_type(n));
    *path = p->valuestring;
    *label = (int)v;
    *cname = n->valuestring;
    return CT_OK;
}

/* The class list from train: n = max label + 1, one consistent name each. */
static ct_status read_classes(coop_ctx *c, const cJSON *train) {
    int max_label = -1, n_entries = cJSON_GetArraySize(train);
    for (int i = 0; i < n_entries; i++) {
        const char *path, *cname;
        int label;
        ct_status s = parse_entry(c, 0, i, cJSON_GetArrayItem(train, i), &path, &label, &cname);
        if (s != CT_OK) return s;
        if (label > max_label) max_label = label;
    }
    if (max_label < 0) return ct_set_error(CT_ERR_FORMAT, "%s: \"train\" is empty", c->file);
    c->n_classes = max_label + 1;
    c->names = calloc((size_t)c->n_classes, sizeof *c->names);
    c->first = calloc((size_t)c->n_classes, sizeof *c->first);
    if (!c->names || !c->first)
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate %d classes", c->file,
                            c->n_classes);
    const cJSON *e;
    int64_t i = 0;
    cJSON_ArrayForEach(e, train) {
        const char *path, *cname;
        int label;
        parse_entry(c, 0, i, e, &path, &label, &cname); /* checked above */
        if (!c->names[label]) {
            if (!(c->names[label] = strdup(cname)))
                return ct_set_error(CT_ERR_NOMEM, "%s: no memory", c->file);
            c->first[label] = i;
        } else if (strcmp(c->names[label], cname) != 0) {
            return ct_set_error(CT_ERR_FORMAT, "%s: train[%lld][2] (classname): '%s' for label "
                                "%d, but train[%lld] names it '%s'", c->file, (long long)i,
                                cname, label, (long long)c->first[label], c->names[label]);
        }
        i++;
    }
    for (int l = 0; l < c->n_classes; l++)
        if (!c->names[l])
            return ct_set_error(CT_ERR_FORMAT, "%s: label %d has no items in train (labels "
                                "must be 0..%d without gaps)", c->file, l, c->n_classes - 1);
    return CT_OK;
}

static ct_status read_items(coop_ctx *c, int sp, const cJSON *arr, ct_item_vec *items) {
    const cJSON *e;
    int64_t i = 0;
    char full[PATH_BUF];
    cJSON_ArrayForEach(e, arr) {
        const char *path, *cname;
        int label;
        ct_status s = parse_entry(c, sp, i, e, &path, &label, &cname);
        if (s != CT_OK) return s;
        if (label >= c->n_classes)
            return ct_set_error(CT_ERR_FORMAT, "%s: %s[%lld][1] (label): %d is not a train label "
                                "(0..%d)", c->file, SPLIT_NAMES[sp], (long long)i, label,
                                c->n_classes - 1);
        if (strcmp(cname, c->names[label]) != 0)
            return ct_set_error(CT_ERR_FORMAT, "%s: %s[%lld][2] (classname): '%s' for label %d, "
                                "but train[%lld] names it '%s'", c->file, SPLIT_NAMES[sp],
                                (long long)i, cname, label, (long long)c->first[label],
                                c->names[label]);
        if (!ct_data_join(full, sizeof full, c->images, path))
            return ct_set_error(CT_ERR_FORMAT, "%s: %s[%lld][0] (path): too long", c->file,
                                SPLIT_NAMES[sp], (long long)i);
        /* Count every missing file but describe the first: one message tells
         * both where to look and how big the problem is. */
        if (!ct_data_is_file(full) && c->n_missing++ == 0)
            snprintf(c->missing_msg, sizeof c->missing_msg, "%s[%lld][0] (path): image file "
                     "'%s' does not exist", SPLIT_NAMES[sp], (long long)i, full);
        s = ct_item_vec_push(items, path, 0, label);
        if (s != CT_OK) return s;
        i++;
    }
    return CT_OK;
}

/* "split_zhou_OxfordPets.json" -> "OxfordPets". */
static char *dataset_name(const char *file) {
    char *stem = ct_data_stem(file, ".json");
    const char *prefix = "split_zhou_";
    size_t pl = strlen(prefix);
    if (stem && strncmp(stem, prefix, pl) == 0 && stem[pl]) memmove(stem, stem + pl,
                                                                     strlen(stem + pl) + 1);
    return stem;
}

ct_status ct_data_open_coop(const char *json_path, const char *images, ct_splits *out) {
    memset(out, 0, sizeof *out);
    cJSON *root = ct_json_load(json_path);
    /* ct_json_load's message says which; its NULL does not. */
    if (!root) return ct_data_is_file(json_path) ? CT_ERR_FORMAT : CT_ERR_IO;
    coop_ctx c = {.file = json_path, .images = images};
    ct_item_vec items[3] = {{0}, {0}, {0}};
    const cJSON *arr[3];
    ct_status s = CT_OK;
    if (!cJSON_IsObject(root))
        s = ct_set_error(CT_ERR_FORMAT, "%s: expected an object with \"train\", \"val\" and "
                         "\"test\" arrays, got %s", json_path, json_type(root));
    for (int sp = 0; sp < 3 && s == CT_OK; sp++) {
        arr[sp] = cJSON_GetObjectItemCaseSensitive(root, SPLIT_NAMES[sp]);
        if (sp == 1 && (!arr[sp] || cJSON_IsNull(arr[sp]))) continue;
        if (!arr[sp])
            s = ct_set_error(CT_ERR_FORMAT, "%s: missing field \"%s\"", json_path,
                             SPLIT_NAMES[sp]);
        else if (!cJSON_IsArray(arr[sp]))
            s = ct_set_error(CT_ERR_FORMAT, "%s: field \"%s\" must be an array, got %s",
                             json_path, SPLIT_NAMES[sp], json_type(arr[sp]));
    }
    if (s == CT_OK) s = read_classes(&c, arr[0]);
    for (int sp = 0; sp < 3 && s == CT_OK; sp++)
        if (arr[sp] && cJSON_IsArray(arr[sp])) s = read_items(&c, sp, arr[sp], &items[sp]);
    if (s == CT_OK && c.n_missing)
        s = ct_set_error(CT_ERR_IO, "%s: %s (%lld image%s missing in all; paths are relative "
                         "to '%s')", json_path, c.missing_msg, (long long)c.n_missing,
                         c.n_missing == 1 ? "" : "s", images);
    cJSON_Delete(root);

    char *dir = s == CT_OK ? ct_data_dirname(json_path) : NULL;
    char *name = s == CT_OK ? dataset_name(json_path) : NULL;
    if (s == CT_OK && (!dir || !name)) s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", json_path);
    if (s == CT_OK) s = ct_classnames_apply(dir, c.n_classes, c.names, NULL);
    ct_dataset **dst[3] = {&out->train, &out->val, &out->test};
    for (int sp = 0; sp < 3 && s == CT_OK; sp++) {
        if (sp == 1 && items[sp].n == 0) continue;
        *dst[sp] = ct_dataset_build(name, images, c.n_classes, c.names, NULL, &items[sp]);
        if (!*dst[sp]) s = CT_ERR_NOMEM;
    }
    for (int sp = 0; sp < 3; sp++) ct_item_vec_free(&items[sp]);
    if (c.names) ct_strv_free(c.names, c.n_classes);
    free(c.first);
    free(dir);
    free(name);
    if (s != CT_OK) ct_splits_free(out);
    return s;
}
