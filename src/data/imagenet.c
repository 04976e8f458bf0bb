/* ImageNet and its four test-only variants as CoOp's loaders read them
 * (KaiyangZhou/CoOp datasets/imagenet.py, imagenetv2.py, imagenet_sketch.py,
 * imagenet_a.py, imagenet_r.py), each from CoOp's dataset folder ROOT with
 * its classnames.txt ("wnid name" lines, ImageNet's 1000 classes; CoOp's
 * DATASETS.md has it copied from imagenet/ into each variant's folder):
 *
 *   imagenet:ROOT         ROOT/images/train/<wnid>/ (train) and
 *                         ROOT/images/val/<wnid>/ (test); classes the train
 *                         folders in byte order, named by classnames.txt
 *   imagenetv2:ROOT       ROOT/imagenetv2-matched-frequency-format-val/<i>/
 *                         for i = 0 .. n-1: folder i is class i of
 *                         classnames.txt (file order), not string order
 *   imagenet-sketch:ROOT  ROOT/images/<wnid>/
 *   imagenet-a:ROOT       ROOT/imagenet-a/<wnid>/ (200 of the classes)
 *   imagenet-r:ROOT       ROOT/imagenet-r/<wnid>/ (200 of the classes)
 *
 * Sketch, -A and -R label their folders in byte order with the names of
 * classnames.txt, as CoOp does; a 1000-class ImageNet run scores -A and -R
 * on their 200 classes by name (ct_saved_run_evaluate). The variants are
 * test sets: as in CoOp (train_x = test = the data) their train split is the
 * test images again, and none has a val split. Images are the non-hidden
 * files with an image extension directly in each class folder, sorted. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "data/dataset.h"

#define PATH_BUF 4096

static const char *const SPEC[] = {"imagenet", "imagenetv2", "imagenet-sketch", "imagenet-a",
                                   "imagenet-r"};
/* CoOp's dataset class names: its per-dataset prompt templates key on them */
static const char *const NAME[] = {"ImageNet", "ImageNetV2", "ImageNetSketch", "ImageNetA",
                                   "ImageNetR"};
static const char *const IMG_DIR[] = {"images", "imagenetv2-matched-frequency-format-val",
                                      "images", "imagenet-a", "imagenet-r"};

typedef struct names_v {
    char **v;
    int n, cap;
} names_v;

static ct_status nv_push(names_v *l, const char *s) {
    if (l->n == l->cap) {
        if (l->cap > (1 << 28)) return ct_set_error(CT_ERR_NOMEM, "too many directory entries");
        int cap = l->cap ? 2 * l->cap : 64;
        char **v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return ct_set_error(CT_ERR_NOMEM, "out of memory listing a directory");
        l->v = v, l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(s))) return ct_set_error(CT_ERR_NOMEM, "out of memory");
    l->n++;
    return CT_OK;
}

static void nv_free(names_v *l) {
    ct_strv_free(l->v, l->n);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The non-hidden sub-directories (dirs) or image files (!dirs) of dir, in
 * byte order. */
static ct_status list_dir(const char *dir, bool dirs, names_v *out) {
    DIR *d = opendir(dir);
    if (!d) return ct_set_error(CT_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    ct_status s = CT_OK;
    struct dirent *e;
    char path[PATH_BUF];
    while (s == CT_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (!ct_data_join(path, sizeof path, dir, e->d_name))
            s = ct_set_error(CT_ERR_ARG, "%s/%s: path too long", dir, e->d_name);
        else if (dirs ? ct_data_is_dir(path)
                      : ct_data_is_image_name(e->d_name) && ct_data_is_file(path))
            s = nv_push(out, e->d_name);
    }
    closedir(d);
    if (s == CT_OK && out->n > 1) qsort(out->v, (size_t)out->n, sizeof *out->v, cmp_str);
    return s;
}

/* The images of root/rel/<folder>/ as items "rel/<folder>/<file>" of label;
 * a folder without images is an error naming it. */
static ct_status read_folder(const char *root, const char *rel, const char *folder, int label,
                             ct_item_vec *items) {
    char sub[PATH_BUF], dir[PATH_BUF], item[PATH_BUF];
    int k = snprintf(sub, sizeof sub, "%s/%s", rel, folder);
    if (k < 0 || (size_t)k >= sizeof sub || !ct_data_join(dir, sizeof dir, root, sub))
        return ct_set_error(CT_ERR_ARG, "%s/%s: path too long", root, sub);
    names_v files = {0};
    ct_status s = list_dir(dir, false, &files);
    if (s == CT_OK && files.n == 0)
        s = ct_set_error(CT_ERR_FORMAT, "%s: class folder has no images (.jpg, .jpeg, .png, "
                         ".bmp, .gif, .ppm, .pgm, .pbm, .pnm, .tif, .tiff, .webp)", dir);
    for (int i = 0; s == CT_OK && i < files.n; i++) {
        k = snprintf(item, sizeof item, "%s/%s", sub, files.v[i]);
        if (k < 0 || (size_t)k >= sizeof item)
            s = ct_set_error(CT_ERR_ARG, "%s/%s: path too long", dir, files.v[i]);
        else
            s = ct_item_vec_push(items, item, 0, label);
    }
    nv_free(&files);
    return s;
}

static int find_str(char *const *v, int n, const char *s) {
    for (int i = 0; i < n; i++)
        if (!strcmp(v[i], s)) return i;
    return -1;
}

/* The wnid folders of root/rel, in byte order, into *folders with their
 * class names (from classnames.txt) in *names; none, or one whose wnid
 * classnames.txt lacks, is an error. */
static ct_status wnid_folders(const char *root, const char *rel, const char *cn_path,
                              char *const *wnids, char *const *cn, int n_cn, names_v *folders,
                              names_v *names) {
    char dir[PATH_BUF];
    if (!ct_data_join(dir, sizeof dir, root, rel))
        return ct_set_error(CT_ERR_ARG, "%s/%s: path too long", root, rel);
    ct_status s = list_dir(dir, true, folders);
    if (s == CT_OK && folders->n == 0)
        s = ct_set_error(CT_ERR_FORMAT, "%s: no class folders (expected one <wnid>/ folder "
                         "per class, e.g. n01440764/)", dir);
    for (int f = 0; s == CT_OK && f < folders->n; f++) {
        int at = find_str(wnids, n_cn, folders->v[f]);
        if (at < 0)
            s = ct_set_error(CT_ERR_FORMAT, "%s/%s: folder '%s' is not a wnid of %s", dir,
                             folders->v[f], folders->v[f], cn_path);
        else
            s = nv_push(names, cn[at]);
    }
    return s;
}

/* train (may be NULL: the test set again, as CoOp's test-only loaders) and
 * test from their items. */
static ct_status build(const char *name, const char *root, int n, char *const *names,
                       ct_item_vec *train, ct_item_vec *test, ct_splits *out) {
    if (!(out->test = ct_dataset_build(name, root, n, names, NULL, test))) return CT_ERR_NOMEM;
    out->train = train ? ct_dataset_build(name, root, n, names, NULL, train)
                       : ct_dataset_head(out->test, 0);
    return out->train ? CT_OK : CT_ERR_NOMEM;
}

static ct_status open_v2(const char *root, char *const *cn, int n_cn, const char *cn_path,
                         ct_item_vec *te) {
    const char *rel = IMG_DIR[CT_IMAGENET_V2];
    char dir[PATH_BUF];
    if (!ct_data_join(dir, sizeof dir, root, rel))
        return ct_set_error(CT_ERR_ARG, "%s/%s: path too long", root, rel);
    if (!ct_data_is_dir(dir))
        return ct_set_error(CT_ERR_IO, "%s: missing (imagenetv2:ROOT reads ImageNet-V2's "
                            "matched-frequency folders 0..%d there)", dir, n_cn - 1);
    names_v found = {0};
    ct_status s = list_dir(dir, true, &found);
    /* every folder a class index: no leading zeros, below the class count */
    for (int f = 0; s == CT_OK && f < found.n; f++) {
        const char *p = found.v[f];
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (*end || p[0] < '0' || p[0] > '9' || (p[0] == '0' && p[1]) || errno || v < 0 ||
            v >= n_cn)
            s = ct_set_error(CT_ERR_FORMAT, "%s/%s: folder '%s' is not a class index 0..%d "
                             "(%s has %d classes)", dir, p, p, n_cn - 1, cn_path, n_cn);
    }
    nv_free(&found);
    char num[32], sub[PATH_BUF];
    for (int c = 0; s == CT_OK && c < n_cn; c++) {
        snprintf(num, sizeof num, "%d", c);
        if (!ct_data_join(sub, sizeof sub, dir, num))
            return ct_set_error(CT_ERR_ARG, "%s: path too long", dir);
        if (!ct_data_is_dir(sub))
            s = ct_set_error(CT_ERR_FORMAT, "%s: missing: folder %d holds class %d of %s "
                             "('%s')", sub, c, c, cn_path, cn[c]);
        else
            s = read_folder(root, rel, num, c, te);
    }
    return s;
}

ct_status ct_data_open_imagenet(const char *root, int which, ct_splits *out) {
    memset(out, 0, sizeof *out);
    if (which < CT_IMAGENET || which > CT_IMAGENET_R)
        return ct_set_error(CT_ERR_ARG, "ct_data_open_imagenet: unknown form %d", which);
    if (!ct_data_is_dir(root))
        return ct_set_error(CT_ERR_IO, "%s: not a directory (%s:ROOT)", root, SPEC[which]);
    char cn_path[PATH_BUF], what[64];
    if (!ct_data_join(cn_path, sizeof cn_path, root, "classnames.txt"))
        return ct_set_error(CT_ERR_ARG, "%s: path too long", root);
    snprintf(what, sizeof what, "%s:ROOT", SPEC[which]);
    char **wnids = NULL, **cn = NULL;
    int n_cn = 0;
    ct_status s = ct_classnames_read_wnids(cn_path, what, &wnids, &cn, &n_cn);
    if (s != CT_OK) return s;
    names_v folders = {0}, names = {0};
    ct_item_vec tr = {0}, te = {0};
    char rel[PATH_BUF], dir[PATH_BUF];
    if (which == CT_IMAGENET_V2) {
        s = open_v2(root, cn, n_cn, cn_path, &te);
        if (s == CT_OK) s = build(NAME[which], root, n_cn, cn, NULL, &te, out);
    } else {
        const char *split = which == CT_IMAGENET ? "/train" : "";
        snprintf(rel, sizeof rel, "%s%s", IMG_DIR[which], split);
        if (!ct_data_join(dir, sizeof dir, root, rel))
            s = ct_set_error(CT_ERR_ARG, "%s: path too long", root);
        else if (!ct_data_is_dir(dir))
            s = ct_set_error(CT_ERR_IO, "%s: missing (%s:ROOT reads its <wnid>/ class folders "
                             "there)", dir, SPEC[which]);
        if (s == CT_OK) s = wnid_folders(root, rel, cn_path, wnids, cn, n_cn, &folders, &names);
        ct_item_vec *first = which == CT_IMAGENET ? &tr : &te;
        for (int f = 0; s == CT_OK && f < folders.n; f++)
            s = read_folder(root, rel, folders.v[f], f, first);
        if (s == CT_OK && which == CT_IMAGENET) {
            /* CoOp tests on val; its classes must be train's */
            snprintf(rel, sizeof rel, "%s/val", IMG_DIR[which]);
            names_v vf = {0};
            if (!ct_data_join(dir, sizeof dir, root, rel))
                s = ct_set_error(CT_ERR_ARG, "%s: path too long", root);
            else if (!ct_data_is_dir(dir))
                s = ct_set_error(CT_ERR_IO, "%s: missing (imagenet:ROOT tests on the "
                                 "validation images, in <wnid>/ folders there)", dir);
            if (s == CT_OK) s = list_dir(dir, true, &vf);
            if (s == CT_OK && vf.n == 0)
                s = ct_set_error(CT_ERR_FORMAT, "%s: no class folders", dir);
            for (int f = 0; s == CT_OK && f < vf.n; f++) {
                char **hit = bsearch(&vf.v[f], folders.v, (size_t)folders.n, sizeof *folders.v,
                                     cmp_str);
                if (!hit)
                    s = ct_set_error(CT_ERR_FORMAT, "%s/%s: class folder not among the %d of "
                                     "%s/%s/train", dir, vf.v[f], folders.n, root, IMG_DIR[which]);
                else
                    s = read_folder(root, rel, vf.v[f], (int)(hit - folders.v), &te);
            }
            nv_free(&vf);
        }
        if (s == CT_OK)
            s = build(NAME[which], root, names.n, names.v, which == CT_IMAGENET ? &tr : NULL, &te,
                      out);
    }
    ct_item_vec_free(&tr);
    ct_item_vec_free(&te);
    nv_free(&folders);
    nv_free(&names);
    ct_strv_free(wnids, n_cn);
    ct_strv_free(cn, n_cn);
    if (s != CT_OK) ct_splits_free(out);
    return s;
}
