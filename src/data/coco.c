/* coco:ROOT — COCO instance annotations as multi-label classification (the
 * 2014 layout DualCoOp trains on, and the scenes set):
 *
 *   ROOT/annotations/instances_train<YEAR>.json   train (required)
 *   ROOT/annotations/instances_val<YEAR>.json     val
 *   ROOT/annotations/instances_test<YEAR>.json    test (optional)
 *   images of instances_<split><YEAR>.json in ROOT/<split><YEAR>/, else
 *   ROOT/images/<split><YEAR>/, else ROOT/JPEGImages/
 *
 * YEAR is digits or nothing. Classes are the categories sorted by id, named
 * by their "name"; an image's classes are the categories of its
 * annotations (crowd ones too, as pycocotools' imgToAnns). As DualCoOp's
 * CocoDetection (ids = coco.imgToAnns.keys()), images without annotations
 * are left out. Without a test file, the val file is the test split and 10%
 * of train is held out as val (DualCoOp evaluates on val2014). */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/json.h"
#include "data/dataset.h"

#define PATH_BUF 4096
/* Integers a double holds exactly. */
#define COCO_MAX_ID 9007199254740992.0
/* Annotation tools round; a box may pass the image's edge by this much. */
#define COCO_BOX_SLACK 0.5

static const char *const SPLITS[3] = {"train", "val", "test"};

typedef struct coco_cat {
    double id;
    const char *name; /* into the first file's tree */
} coco_cat;

typedef struct coco_img {
    double id;
    int64_t pos;      /* in "images" */
} coco_img;

static int cmp_cat(const void *a, const void *b) {
    double x = ((const coco_cat *)a)->id, y = ((const coco_cat *)b)->id;
    return (x > y) - (x < y);
}

static int cmp_cat_id(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_img(const void *a, const void *b) {
    double x = ((const coco_img *)a)->id, y = ((const coco_img *)b)->id;
    return (x > y) - (x < y);
}

/* obj[key] as an integer id in [0, 2^53]. */
static bool get_id(const cJSON *obj, const char *key, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= COCO_MAX_ID) || d != floor(d)) return false;
    *out = d;
    return true;
}

static const cJSON *get_array(const char *file, const cJSON *root, const char *key,
                              ct_status *s) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!cJSON_IsArray(a))
        *s = ct_set_error(CT_ERR_FORMAT, "%s: %s \"%s\" array", file,
                          a ? "expected an" : "missing the", key);
    return a;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The categories of root sorted by id (names point into root). */
static ct_status read_categories(const char *file, const cJSON *root, coco_cat **out, int *n_out) {
    ct_status s = CT_OK;
    const cJSON *cats = get_array(file, root, "categories", &s);
    if (s != CT_OK) return s;
    int n = cJSON_GetArraySize(cats);
    if (n == 0) return ct_set_error(CT_ERR_FORMAT, "%s: \"categories\" is empty", file);
    if (n > CT_DATA_MAX_CLASSES)
        return ct_set_error(CT_ERR_FORMAT, "%s: %d categories exceed the limit of %d", file, n,
                            CT_DATA_MAX_CLASSES);
    coco_cat *v = calloc((size_t)n, sizeof *v);
    const char **names = calloc((size_t)n, sizeof *names);
    if (!v || !names) {
        free(v);
        free(names);
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate %d categories", file, n);
    }
    int i = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cats) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "name");
        if (!cJSON_IsObject(c) || !get_id(c, "id", &v[i].id))
            s = ct_set_error(CT_ERR_FORMAT, "%s: categories[%d]: expected an object with an "
                             "integer \"id\" >= 0", file, i);
        else if (!cJSON_IsString(name) || !name->valuestring[0])
            s = ct_set_error(CT_ERR_FORMAT, "%s: categories[%d] (id %.0f): \"name\" must be a "
                             "non-empty string", file, i, v[i].id);
        if (s != CT_OK) break;
        names[i] = v[i].name = name->valuestring;
        i++;
    }
    if (s == CT_OK) {
        qsort(v, (size_t)n, sizeof *v, cmp_cat);
        qsort(names, (size_t)n, sizeof *names, cmp_str);
    }
    for (int k = 1; k < n && s == CT_OK; k++) {
        if (v[k].id == v[k - 1].id)
            s = ct_set_error(CT_ERR_FORMAT, "%s: category id %.0f repeats", file, v[k].id);
        else if (strcmp(names[k], names[k - 1]) == 0)
            s = ct_set_error(CT_ERR_FORMAT, "%s: category name '%s' repeats", file, names[k]);
    }
    free(names);
    if (s != CT_OK) {
        free(v);
        return s;
    }
    *out = v;
    *n_out = n;
    return CT_OK;
}

typedef struct coco_ctx {
    const char *root;      /* dataset root: item paths are relative to it */
    const char *cats_file; /* the file that gave the classes            */
    int n_classes;
    double *cat_ids;       /* n_classes, ascending                      */
    char **names;          /* n_classes                                 */
    int64_t n_missing;
    char missing[PATH_BUF + 256];
} coco_ctx;

/* The classes from the first file; every other file must have the same. */
static ct_status set_classes(coco_ctx *c, const char *file, const coco_cat *cats, int n) {
    if (c->names) {
        for (int k = 0; k < n && k < c->n_classes; k++)
            if (cats[k].id != c->cat_ids[k] || strcmp(cats[k].name, c->names[k]) != 0)
                return ct_set_error(CT_ERR_FORMAT, "%s: categories differ from %s's: id %.0f "
                                    "'%s' where it has id %.0f '%s'", file, c->cats_file,
                                    cats[k].id, cats[k].name, c->cat_ids[k], c->names[k]);
        if (n != c->n_classes)
            return ct_set_error(CT_ERR_FORMAT, "%s: %d categories, %s has %d", file, n,
                                c->cats_file, c->n_classes);
        return CT_OK;
    }
    c->cat_ids = malloc((size_t)n * sizeof *c->cat_ids);
    c->names = calloc((size_t)n, sizeof *c->names);
    if (!c->cat_ids || !c->names) return ct_set_error(CT_ERR_NOMEM, "%s: no memory", file);
    c->n_classes = n;
    c->cats_file = file;
    for (int k = 0; k < n; k++) {
        c->cat_ids[k] = cats[k].id;
        if (!(c->names[k] = strdup(cats[k].name)))
            return ct_set_error(CT_ERR_NOMEM, "%s: no memory", file);
    }
    return CT_OK;
}

/* Image i of "images", checked; its position in keys[i]. */
static ct_status read_image(const char *file, int64_t i, const cJSON *im, coco_img *key,
                            const char **fname, double *w, double *h) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(im, "file_name");
    if (!cJSON_IsObject(im) || !get_id(im, "id", &key->id))
        return ct_set_error(CT_ERR_FORMAT, "%s: images[%lld]: expected an object with an "
                            "integer \"id\" >= 0", file, (long long)i);
    if (!cJSON_IsString(f) || !f->valuestring[0])
        return ct_set_error(CT_ERR_FORMAT, "%s: images[%lld] (id %.0f): \"file_name\" must be a "
                            "non-empty string", file, (long long)i, key->id);
    if (!get_id(im, "width", w) || !get_id(im, "height", h) || *w < 1 || *h < 1)
        return ct_set_error(CT_ERR_FORMAT, "%s: images[%lld] (id %.0f): \"width\" and \"height\" "
                            "must be positive integers", file, (long long)i, key->id);
    key->pos = i;
    *fname = f->valuestring;
    return CT_OK;
}

/* annotations[i]: sets its image's row; *img its position in "images". */
static ct_status read_annotation(const coco_ctx *c, const char *file, int64_t i,
                                 const cJSON *an, const coco_img *keys, int64_t n_img,
                                 const double *wh, int64_t *img, int *cat) {
    coco_img want;
    double cid;
    if (!cJSON_IsObject(an) || !get_id(an, "image_id", &want.id) ||
        !get_id(an, "category_id", &cid))
        return ct_set_error(CT_ERR_FORMAT, "%s: annotations[%lld]: expected an object with "
                            "integer \"image_id\" and \"category_id\"", file, (long long)i);
    const coco_img *hit = bsearch(&want, keys, (size_t)n_img, sizeof *keys, cmp_img);
    if (!hit)
        return ct_set_error(CT_ERR_FORMAT, "%s: annotations[%lld]: image_id %.0f is not in "
                            "\"images\"", file, (long long)i, want.id);
    const double *cp = bsearch(&cid, c->cat_ids, (size_t)c->n_classes, sizeof *c->cat_ids,
                               cmp_cat_id);
    if (!cp)
        return ct_set_error(CT_ERR_FORMAT, "%s: annotations[%lld]: category_id %.0f is not in "
                            "\"categories\"", file, (long long)i, cid);
    const cJSON *bb = cJSON_GetObjectItemCaseSensitive(an, "bbox");
    if (bb) {
        double b[4];
        bool ok = cJSON_IsArray(bb) && cJSON_GetArraySize(bb) == 4;
        for (int t = 0; ok && t < 4; t++) {
            const cJSON *e = cJSON_GetArrayItem(bb, t);
            ok = cJSON_IsNumber(e) && isfinite(e->valuedouble);
            if (ok) b[t] = e->valuedouble;
        }
        if (!ok)
            return ct_set_error(CT_ERR_FORMAT, "%s: annotations[%lld]: \"bbox\" must be [x, y, "
                                "width, height] numbers", file, (long long)i);
        double W = wh[2 * hit->pos], H = wh[2 * hit->pos + 1];
        if (b[2] < 0 || b[3] < 0 || b[0] < -COCO_BOX_SLACK || b[1] < -COCO_BOX_SLACK ||
            b[0] + b[2] > W + COCO_BOX_SLACK || b[1] + b[3] > H + COCO_BOX_SLACK)
            return ct_set_error(CT_ERR_FORMAT, "%s: annotations[%lld]: bbox [%g, %g, %g, %g] is "
                                "outside image %.0f (%.0fx%.0f)", file, (long long)i, b[0], b[1],
                                b[2], b[3], want.id, W, H);
    }
    *img = hit->pos;
    *cat = (int)(cp - c->cat_ids);
    return CT_OK;
}

/* One instances file into v: the annotated images, in "images" order. */
static ct_status read_file(coco_ctx *c, const char *file, const char *img_dir, ct_ml_vec *v) {
    cJSON *root = ct_json_load(file);
    if (!root) return ct_data_is_file(file) ? CT_ERR_FORMAT : CT_ERR_IO;
    ct_status s = CT_OK;
    coco_cat *cats = NULL;
    coco_img *keys = NULL;
    double *wh = NULL;
    const char **fnames = NULL;
    int8_t *rows = NULL;
    int n_cats = 0;
    if (!cJSON_IsObject(root))
        s = ct_set_error(CT_ERR_FORMAT, "%s: expected an object with \"images\", "
                         "\"annotations\" and \"categories\"", file);
    const cJSON *images = s == CT_OK ? get_array(file, root, "images", &s) : NULL;
    const cJSON *anns = s == CT_OK ? get_array(file, root, "annotations", &s) : NULL;
    if (s == CT_OK) s = read_categories(file, root, &cats, &n_cats);
    if (s == CT_OK) s = set_classes(c, file, cats, n_cats);
    v->n_classes = c->n_classes;
    int64_t n_img = s == CT_OK ? cJSON_GetArraySize(images) : 0;
    size_t K = (size_t)c->n_classes, bytes = 0;
    if (s == CT_OK && !ct_mul_size((size_t)(n_img ? n_img : 1), K, &bytes))
        s = ct_set_error(CT_ERR_NOMEM, "%s: %lld images x %zu classes overflow", file,
                         (long long)n_img, K);
    if (s == CT_OK) {
        keys = malloc((size_t)(n_img ? n_img : 1) * sizeof *keys);
        wh = malloc((size_t)(n_img ? n_img : 1) * 2 * sizeof *wh);
        fnames = malloc((size_t)(n_img ? n_img : 1) * sizeof *fnames);
        rows = calloc(bytes, 1);
        if (!keys || !wh || !fnames || !rows)
            s = ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate for %lld images", file,
                             (long long)n_img);
    }
    int64_t i = 0;
    const cJSON *e;
    if (s == CT_OK) cJSON_ArrayForEach(e, images) {
        s = read_image(file, i, e, &keys[i], &fnames[i], &wh[2 * i], &wh[2 * i + 1]);
        if (s != CT_OK) break;
        i++;
    }
    if (s == CT_OK) qsort(keys, (size_t)n_img, sizeof *keys, cmp_img);
    for (int64_t k = 1; k < n_img && s == CT_OK; k++)
        if (keys[k].id == keys[k - 1].id)
            s = ct_set_error(CT_ERR_FORMAT, "%s: image id %.0f repeats (images[%lld] and "
                             "images[%lld])", file, keys[k].id, (long long)keys[k - 1].pos,
                             (long long)keys[k].pos);
    /* rows[img * K + k]: 1 present; images[] without annotations stay out */
    uint8_t *annotated = s == CT_OK ? calloc((size_t)(n_img ? n_img : 1), 1) : NULL;
    if (s == CT_OK && !annotated) s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", file);
    i = 0;
    if (s == CT_OK) cJSON_ArrayForEach(e, anns) {
        int64_t img = 0;
        int cat = 0;
        s = read_annotation(c, file, i, e, keys, n_img, wh, &img, &cat);
        if (s != CT_OK) break;
        rows[(size_t)img * K + (size_t)cat] = 1;
        annotated[img] = 1;
        i++;
    }
    char rel[PATH_BUF], full[PATH_BUF];
    for (int64_t k = 0; k < n_img && s == CT_OK; k++) {
        if (!annotated[k]) continue;
        if (!ct_data_join(rel, sizeof rel, img_dir, fnames[k]) ||
            !ct_data_join(full, sizeof full, c->root, rel)) {
            s = ct_set_error(CT_ERR_FORMAT, "%s: images[%lld]: file_name too long", file,
                             (long long)k);
            break;
        }
        if (!ct_data_is_file(full) && c->n_missing++ == 0)
            snprintf(c->missing, sizeof c->missing, "%s: images[%lld]: image file '%s' does not "
                     "exist", file, (long long)k, full);
        s = ct_ml_vec_push(v, rel, rows + (size_t)k * K);
    }
    free(annotated);
    free(rows);
    free(fnames);
    free(wh);
    free(keys);
    free(cats);
    cJSON_Delete(root);
    return s;
}

ct_status ct_data_open_coco_files(const char *const files[3], const char *const img_dirs[3],
                                  const char *root, const char *name, ct_splits *out) {
    memset(out, 0, sizeof *out);
    if (!files[0] || (!files[1] && !files[2]))
        return ct_set_error(CT_ERR_ARG, "coco: needs a train file and a val or test file");
    coco_ctx c = {.root = root};
    ct_ml_vec v[3];
    memset(v, 0, sizeof v);
    ct_status s = CT_OK;
    for (int k = 0; k < 3 && s == CT_OK; k++) {
        if (!files[k]) continue;
        s = read_file(&c, files[k], img_dirs[k] ? img_dirs[k] : "", &v[k]);
    }
    for (int k = 0; k < 3; k++) v[k].n_classes = c.n_classes; /* an absent file's too */
    if (s == CT_OK && c.n_missing)
        s = ct_set_error(CT_ERR_IO, "%s (%lld image%s missing in all)", c.missing,
                         (long long)c.n_missing, c.n_missing == 1 ? "" : "s");
    if (s == CT_OK) {
        bool has_test = files[2] != NULL;
        if (!has_test) { /* the val file is the test split; val is held out of train */
            ct_ml_vec t = v[2];
            v[2] = v[1];
            v[1] = t;
        }
        s = ct_ml_splits(name, root, c.names, v, has_test && files[1], true, files[0], out);
    }
    for (int k = 0; k < 3; k++) ct_ml_vec_free(&v[k]);
    free(c.cat_ids);
    if (c.names) ct_strv_free(c.names, c.n_classes);
    if (s != CT_OK) ct_splits_free(out);
    return s;
}

/* "instances_<split><digits>.json" -> the digits (the year), or NULL. */
static const char *year_of(const char *entry, const char *split) {
    size_t pl = strlen("instances_"), sl = strlen(split), n = strlen(entry);
    if (strncmp(entry, "instances_", pl) != 0 || strncmp(entry + pl, split, sl) != 0 ||
        n < pl + sl + 5 || strcmp(entry + n - 5, ".json") != 0)
        return NULL;
    for (size_t i = pl + sl; i < n - 5; i++)
        if (entry[i] < '0' || entry[i] > '9') return NULL;
    return entry + pl + sl;
}

ct_status ct_data_open_coco(const char *root, ct_splits *out) {
    memset(out, 0, sizeof *out);
    char ann_dir[PATH_BUF];
    if (!ct_data_join(ann_dir, sizeof ann_dir, root, "annotations"))
        return ct_set_error(CT_ERR_ARG, "%s: path too long", root);
    DIR *d = opendir(ann_dir);
    if (!d)
        return ct_set_error(CT_ERR_IO, "%s: cannot open directory: %s (coco: wants "
                            "ROOT/annotations/instances_{train,val}<YEAR>.json)", ann_dir,
                            strerror(errno));
    char *found[3] = {NULL, NULL, NULL};
    ct_status s = CT_OK;
    struct dirent *e;
    while (s == CT_OK && (e = readdir(d)) != NULL) {
        for (int sp = 0; sp < 3 && s == CT_OK; sp++) {
            if (!year_of(e->d_name, SPLITS[sp])) continue;
            if (found[sp])
                s = ct_set_error(CT_ERR_FORMAT, "%s: both %s and %s are %s files; keep one",
                                 ann_dir, found[sp], e->d_name, SPLITS[sp]);
            else if (!(found[sp] = strdup(e->d_name)))
                s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", ann_dir);
        }
    }
    closedir(d);
    if (s == CT_OK && !found[0])
        s = ct_set_error(CT_ERR_IO, "%s: no instances_train<YEAR>.json", ann_dir);
    if (s == CT_OK && !found[1] && !found[2])
        s = ct_set_error(CT_ERR_IO, "%s: neither instances_val<YEAR>.json nor "
                         "instances_test<YEAR>.json", ann_dir);
    char files[3][PATH_BUF], dirs[3][PATH_BUF];
    const char *fp[3] = {NULL, NULL, NULL}, *dp[3] = {NULL, NULL, NULL};
    for (int sp = 0; sp < 3 && s == CT_OK; sp++) {
        if (!found[sp]) continue;
        const char *year = year_of(found[sp], SPLITS[sp]);
        int yl = (int)(strlen(year) - 5);
        if (!ct_data_join(files[sp], PATH_BUF, ann_dir, found[sp])) {
            s = ct_set_error(CT_ERR_ARG, "%s: path too long", ann_dir);
            break;
        }
        fp[sp] = files[sp];
        char cand[3][PATH_BUF], full[PATH_BUF];
        snprintf(cand[0], PATH_BUF, "%s%.*s", SPLITS[sp], yl, year);
        snprintf(cand[1], PATH_BUF, "images/%s%.*s", SPLITS[sp], yl, year);
        snprintf(cand[2], PATH_BUF, "JPEGImages");
        for (int k = 0; k < 3 && !dp[sp]; k++)
            if (ct_data_join(full, sizeof full, root, cand[k]) && ct_data_is_dir(full))
                dp[sp] = strcpy(dirs[sp], cand[k]);
        if (!dp[sp])
            s = ct_set_error(CT_ERR_IO, "%s: no image folder for %s: none of %s/%s, %s/%s, "
                             "%s/JPEGImages exists", root, found[sp], root, cand[0], root,
                             cand[1], root);
    }
    char *name = s == CT_OK ? ct_data_stem(root, NULL) : NULL;
    if (s == CT_OK && !name) s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", root);
    if (s == CT_OK) s = ct_data_open_coco_files(fp, dp, root, name, out);
    free(name);
    for (int sp = 0; sp < 3; sp++) free(found[sp]);
    return s;
}
