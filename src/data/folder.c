/* folder:DIR — one sub-folder per class, as torchvision's ImageFolder:
 *
 *   DIR/<class>/<images...>                       split 80/10/10 per class
 *   DIR/train/<class>/..., DIR/test/<class>/...   (and optional DIR/val/):
 *                                                 used as given; without val,
 *                                                 10% of train is held out
 *
 * Classes are the sub-folders of DIR (or DIR/train) in byte order; images
 * are searched recursively, sorted by path, and recognised by extension
 * (the decoder itself goes by content, but a listing must skip README files
 * and the like). Hidden entries (".name") are skipped. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "base/error.h"
#include "data/dataset.h"

#define PATH_BUF 4096
/* Deeper trees are far more likely a symlink loop than a dataset. */
#define MAX_DEPTH 16

/* torchvision's IMG_EXTENSIONS (.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff
 * .webp), matched case-insensitively as there, plus the other formats the
 * decoder reads. */
static const char *const IMAGE_EXTS[] = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm",
                                         ".pgm", ".pbm", ".pnm", ".tif", ".tiff", ".webp"};

bool ct_data_is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return false;
    for (size_t i = 0; i < sizeof IMAGE_EXTS / sizeof *IMAGE_EXTS; i++)
        if (strcasecmp(dot, IMAGE_EXTS[i]) == 0) return true;
    return false;
}

bool ct_data_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct strlist {
    char **v;
    int n, cap;
} strlist;

static ct_status strlist_push(strlist *l, const char *s) {
    if (l->n == l->cap) {
        if (l->cap > INT_MAX / 2)
            return ct_set_error(CT_ERR_NOMEM, "folder dataset: too many entries");
        int cap = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return ct_set_error(CT_ERR_NOMEM, "folder dataset: too many entries");
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(s))) return ct_set_error(CT_ERR_NOMEM, "folder dataset: no memory");
    l->n++;
    return CT_OK;
}

static void strlist_free(strlist *l) {
    ct_strv_free(l->v, l->n);
    memset(l, 0, sizeof *l);
}

/* The non-hidden sub-directories of dir, sorted. */
static ct_status list_subdirs(const char *dir, strlist *out) {
    DIR *d = opendir(dir);
    if (!d) return ct_set_error(CT_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    ct_status s = CT_OK;
    struct dirent *e;
    char path[PATH_BUF];
    while (s == CT_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (!ct_data_join(path, sizeof path, dir, e->d_name))
            s = ct_set_error(CT_ERR_ARG, "%s/%s: path too long", dir, e->d_name);
        else if (ct_data_is_dir(path))
            s = strlist_push(out, e->d_name);
    }
    closedir(d);
    if (s == CT_OK && out->n > 1) qsort(out->v, (size_t)out->n, sizeof *out->v, cmp_str);
    return s;
}

/* Image files under base/rel, recursively, as paths relative to base. */
static ct_status walk(const char *base, const char *rel, int depth, strlist *out) {
    char dir[PATH_BUF], sub[PATH_BUF];
    if (!ct_data_join(dir, sizeof dir, base, rel))
        return ct_set_error(CT_ERR_ARG, "%s/%s: path too long", base, rel);
    if (depth > MAX_DEPTH)
        return ct_set_error(CT_ERR_FORMAT, "%s: more than %d nested folders (a symlink loop?)",
                            dir, MAX_DEPTH);
    DIR *d = opendir(dir);
    if (!d) return ct_set_error(CT_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    ct_status s = CT_OK;
    struct dirent *e;
    while (s == CT_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        int k = snprintf(sub, sizeof sub, "%s/%s", rel, e->d_name);
        if (k < 0 || (size_t)k >= sizeof sub) {
            s = ct_set_error(CT_ERR_ARG, "%s/%s: path too long", dir, e->d_name);
            break;
        }
        char full[PATH_BUF];
        if (!ct_data_join(full, sizeof full, base, sub)) {
            s = ct_set_error(CT_ERR_ARG, "%s/%s: path too long", base, sub);
        } else if (ct_data_is_dir(full)) {
            s = walk(base, sub, depth + 1, out);
        } else if (ct_data_is_image_name(e->d_name) && ct_data_is_file(full)) {
            s = strlist_push(out, sub);
        }
    }
    closedir(d);
    return s;
}

/* Items of one split folder: root/<prefix>/<class>/... for each class folder
 * found there, whose name must be in classes (sorted). Paths are stored
 * relative to root, with prefix. */
static ct_status read_split(const char *root, const char *prefix, const strlist *classes,
                            ct_item_vec *items) {
    char split_dir[PATH_BUF];
    if (!ct_data_join(split_dir, sizeof split_dir, root, prefix))
        return ct_set_error(CT_ERR_ARG, "%s/%s: path too long", root, prefix);
    strlist found = {0};
    ct_status s = list_subdirs(split_dir, &found);
    for (int f = 0; s == CT_OK && f < found.n; f++) {
        char **hit = bsearch(&found.v[f], classes->v, (size_t)classes->n, sizeof *classes->v,
                             cmp_str);
        if (!hit) {
            s = ct_set_error(CT_ERR_FORMAT, "%s/%s: class folder not among the %d of %s/train",
                             split_dir, found.v[f], classes->n, root);
            break;
        }
        int label = (int)(hit - classes->v);
        char rel[PATH_BUF];
        int k = prefix[0] ? snprintf(rel, sizeof rel, "%s/%s", prefix, found.v[f])
                          : snprintf(rel, sizeof rel, "%s", found.v[f]);
        if (k < 0 || (size_t)k >= sizeof rel) {
            s = ct_set_error(CT_ERR_ARG, "%s/%s: path too long", split_dir, found.v[f]);
            break;
        }
        strlist files = {0};
        s = walk(root, rel, 0, &files);
        if (s == CT_OK && files.n > 1) qsort(files.v, (size_t)files.n, sizeof *files.v, cmp_str);
        for (int i = 0; s == CT_OK && i < files.n; i++)
            s = ct_item_vec_push(items, files.v[i], 0, label);
        strlist_free(&files);
    }
    strlist_free(&found);
    return s;
}

/* Human-readable names from folder names: '_' and '-' read as spaces. */
static char **names_from_folders(const strlist *classes) {
    char **names = ct_strv_dup(classes->v, classes->n);
    if (!names) return NULL;
    for (int c = 0; c < classes->n; c++)
        for (char *p = names[c]; *p; p++)
            if (*p == '_' || *p == '-') *p = ' ';
    return names;
}

ct_status ct_data_open_folder(const char *dir, ct_splits *out) {
    memset(out, 0, sizeof *out);
    if (!ct_data_is_dir(dir)) return ct_set_error(CT_ERR_IO, "%s: not a directory", dir);
    char train_dir[PATH_BUF], test_dir[PATH_BUF], val_dir[PATH_BUF];
    if (!ct_data_join(train_dir, sizeof train_dir, dir, "train") ||
        !ct_data_join(test_dir, sizeof test_dir, dir, "test") ||
        !ct_data_join(val_dir, sizeof val_dir, dir, "val"))
        return ct_set_error(CT_ERR_ARG, "%s: path too long", dir);
    bool presplit = ct_data_is_dir(train_dir) && ct_data_is_dir(test_dir);
    bool has_val = presplit && ct_data_is_dir(val_dir);

    strlist classes = {0};
    ct_status s = list_subdirs(presplit ? train_dir : dir, &classes);
    if (s == CT_OK && classes.n == 0)
        s = ct_set_error(CT_ERR_FORMAT, "%s: no class folders", presplit ? train_dir : dir);
    if (s == CT_OK && classes.n > CT_DATA_MAX_CLASSES)
        s = ct_set_error(CT_ERR_FORMAT, "%s: %d class folders exceed the limit of %d",
                         presplit ? train_dir : dir, classes.n, CT_DATA_MAX_CLASSES);
    char **names = s == CT_OK ? names_from_folders(&classes) : NULL;
    if (s == CT_OK && !names) s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", dir);
    if (s == CT_OK)
        s = ct_classnames_apply(dir, classes.n, names, (const char *const *)classes.v);

    ct_item_vec tr = {0}, va = {0}, te = {0};
    if (s == CT_OK) s = read_split(dir, presplit ? "train" : "", &classes, &tr);
    if (s == CT_OK && presplit) s = read_split(dir, "test", &classes, &te);
    if (s == CT_OK && has_val) s = read_split(dir, "val", &classes, &va);

    /* An empty class would silently vanish from few-shot sets and metrics. */
    if (s == CT_OK) {
        int64_t *count = calloc((size_t)classes.n, sizeof *count);
        if (!count) s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", dir);
        for (int64_t i = 0; s == CT_OK && i < tr.n; i++) count[tr.items[i].label]++;
        for (int c = 0; s == CT_OK && c < classes.n; c++)
            if (count[c] == 0)
                s = ct_set_error(CT_ERR_FORMAT, "%s/%s: class folder has no images (.jpg, "
                                 ".jpeg, .png, .bmp, .gif, .ppm, .pgm, .pbm, .pnm)",
                                 presplit ? train_dir : dir, classes.v[c]);
        free(count);
    }

    char *name = s == CT_OK ? ct_data_stem(dir, NULL) : NULL;
    if (s == CT_OK && !name) s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", dir);
    ct_dataset *all = NULL;
    if (s == CT_OK) {
        all = ct_dataset_build(name, dir, classes.n, names, NULL, &tr);
        if (!all) s = CT_ERR_NOMEM;
    }
    if (s == CT_OK && !presplit) {
        s = ct_dataset_holdout(all, 10, 10, &out->train, &out->val, &out->test);
    } else if (s == CT_OK) {
        if (has_val) {
            out->train = all;
            all = NULL;
            if (va.n && !(out->val = ct_dataset_build(name, dir, classes.n, names, NULL, &va)))
                s = CT_ERR_NOMEM;
        } else {
            s = ct_dataset_holdout(all, 10, 0, &out->train, &out->val, NULL);
        }
        if (s == CT_OK && !(out->test = ct_dataset_build(name, dir, classes.n, names, NULL, &te)))
            s = CT_ERR_NOMEM;
    }
    ct_dataset_free(all);
    ct_item_vec_free(&tr);
    ct_item_vec_free(&va);
    ct_item_vec_free(&te);
    ct_strv_free(names, classes.n);
    strlist_free(&classes);
    free(name);
    if (s != CT_OK) ct_splits_free(out);
    return s;
}
