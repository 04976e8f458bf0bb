/* vocseg:ROOT — PASCAL VOC 2012 semantic segmentation (a VOCdevkit/VOC2012
 * folder, or the scenes set):
 *
 *   ROOT/ImageSets/Segmentation/{train,val,test}.txt  image ids, one a line
 *   ROOT/JPEGImages/<id>.jpg                          the images
 *   ROOT/SegmentationClass/<id>.png                   label maps (palette PNG)
 *   ROOT/ImageSets/Main/<class>_train.txt             the class list
 *
 * Classes: "background" then voc:'s classes (the sorted <class> of the
 * <class>_train.txt files), so class c is mask value c as VOC's devkit and
 * mmsegmentation's PascalVOCDataset number them (255 void). Without class
 * lists, classnames.txt defines them, one a line in mask-value order, with
 * "background" prepended unless its first line is background. No test.txt
 * (VOC2012): val.txt is test and 10% of train is held out as val, as voc:.
 * Masks are not decoded here (ct_label_map_load does, when they are used);
 * every listed image and mask must exist. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "data/dataset.h"

#define PATH_BUF 4096
#define SEG_MAX_CLASSES CT_SEG_MAX_CLASSES

static const char *const SPLITS[3] = {"train", "val", "test"};

ct_status ct_seg_vec_push(ct_seg_vec *v, const char *img, const char *mask) {
    if (v->items.n == v->cap) {
        int64_t cap = v->cap ? v->cap * 2 : 64;
        char **m = realloc(v->masks, (size_t)cap * sizeof *m);
        if (!m) return ct_set_error(CT_ERR_NOMEM, "dataset: cannot grow the mask list");
        v->masks = m;
        v->cap = cap;
    }
    char *mp = strdup(mask);
    if (!mp) return ct_set_error(CT_ERR_NOMEM, "dataset: cannot copy a path");
    ct_status s = ct_item_vec_push(&v->items, img, 0, 0);
    if (s != CT_OK) {
        free(mp);
        return s;
    }
    v->masks[v->items.n - 1] = mp;
    return CT_OK;
}

void ct_seg_vec_free(ct_seg_vec *v) {
    for (int64_t i = 0; v->masks && i < v->items.n; i++) free(v->masks[i]);
    free(v->masks);
    ct_item_vec_free(&v->items);
    memset(v, 0, sizeof *v);
}

/* A segmentation dataset taking over v's items and masks (v is emptied). */
static ct_dataset *seg_build(const char *name, const char *root, int K, char *const *names,
                             bool reduce, ct_seg_vec *v) {
    /* a segmentation dataset keeps non-NULL masks even when it is empty */
    if (!v->masks && !(v->masks = calloc(1, sizeof *v->masks))) {
        ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate the masks", name);
        return NULL;
    }
    char **masks = v->masks;
    ct_dataset *d = ct_dataset_build(name, root, K, names, NULL, &v->items);
    if (!d) return NULL; /* v keeps the masks (its items are still there) */
    d->masks = masks;
    d->reduce_zero_label = reduce;
    memset(v, 0, sizeof *v);
    return d;
}

ct_status ct_seg_splits(const char *name, const char *root, int K, char *const *names,
                        bool reduce, ct_seg_vec v[3], bool has_val, bool has_test,
                        ct_splits *out) {
    ct_dataset *all = seg_build(name, root, K, names, reduce, &v[0]);
    if (!all) return CT_ERR_NOMEM;
    ct_status s = CT_OK;
    if (!has_test) { /* val.txt is the test split; val is held out of train */
        s = ct_dataset_holdout(all, 10, 0, &out->train, &out->val, NULL);
        if (s == CT_OK && !(out->test = seg_build(name, root, K, names, reduce, &v[1])))
            s = CT_ERR_NOMEM;
    } else {
        if (has_val) {
            out->train = all;
            all = NULL;
            if (v[1].items.n && !(out->val = seg_build(name, root, K, names, reduce, &v[1])))
                s = CT_ERR_NOMEM;
        } else {
            s = ct_dataset_holdout(all, 10, 0, &out->train, &out->val, NULL);
        }
        if (s == CT_OK && !(out->test = seg_build(name, root, K, names, reduce, &v[2])))
            s = CT_ERR_NOMEM;
    }
    ct_dataset_free(all);
    return s;
}

/* Class identifiers (ids) and readable names, index 0 background. */
static ct_status seg_classes(const char *root, char ***ids_out, char ***names_out, int *K_out) {
    char main_dir[PATH_BUF];
    char **ids = NULL, **names = NULL, **lines = NULL;
    int n = 0, n_lines = -1;
    bool keyed = false;
    ct_status s = CT_OK;
    if (!ct_data_join(main_dir, sizeof main_dir, root, "ImageSets/Main"))
        return ct_set_error(CT_ERR_ARG, "%s: path too long", root);
    if (ct_data_is_dir(main_dir)) s = ct_voc_class_lists(main_dir, &ids, &n);
    if (s == CT_OK) s = ct_classnames_read(root, &lines, &n_lines, &keyed);
    bool from_lists = s == CT_OK && n > 0;
    if (s == CT_OK && !from_lists) {
        ct_strv_free(ids, n);
        ids = NULL;
        n = 0;
        if (n_lines <= 0)
            s = ct_set_error(CT_ERR_FORMAT, "%s: no classes: neither ImageSets/Main/<class>_"
                             "train.txt files nor a classnames.txt (vocseg: wants VOC's class "
                             "lists, or the class names one a line in mask-value order)", root);
        else if (keyed)
            s = ct_set_error(CT_ERR_FORMAT, "%s/classnames.txt: \"wnid name\" lines cannot "
                             "define the classes of vocseg: (no ImageSets/Main/<class>_train.txt"
                             "): write one name a line in mask-value order", root);
        if (s == CT_OK) { /* the lines are the classes; background first */
            bool has_bg = strcasecmp(lines[0], "background") == 0;
            n = n_lines - (has_bg ? 1 : 0);
            if (!(ids = calloc(n ? (size_t)n : 1, sizeof *ids)))
                s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", root);
            for (int k = 0; s == CT_OK && k < n; k++)
                if (!(ids[k] = strdup(lines[k + (has_bg ? 1 : 0)]))) {
                    ct_strv_free(ids, k);
                    ids = NULL;
                    s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", root);
                }
        }
    }
    int K = n + 1;
    if (s == CT_OK && K > SEG_MAX_CLASSES)
        s = ct_set_error(CT_ERR_FORMAT, "%s: %d classes (background + %d) do not fit 8-bit label "
                         "maps (at most %d: 255 is void)", root, K, n, SEG_MAX_CLASSES);
    /* ids with background in front */
    char **all_ids = s == CT_OK ? calloc((size_t)K, sizeof *all_ids) : NULL;
    if (s == CT_OK && (!all_ids || !(all_ids[0] = strdup("background"))))
        s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", root);
    if (s == CT_OK) {
        memcpy(all_ids + 1, ids, (size_t)n * sizeof *ids);
        free(ids);
        ids = all_ids;
        all_ids = NULL;
        n = K;
        if (!(names = ct_strv_dup(ids, K))) s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", root);
    } else if (all_ids) {
        free(all_ids[0]);
        free(all_ids);
    }
    if (s == CT_OK && from_lists) {
        ct_ml_underscores(names, K);
        /* classnames.txt may name every class, or the K - 1 objects only
         * (the scenes set's, shared with voc:) */
        if (n_lines >= 0 && !keyed && n_lines != K && n_lines != K - 1)
            s = ct_set_error(CT_ERR_FORMAT, "%s/classnames.txt: has %d class names, the dataset "
                             "has %d classes (background and %d from ImageSets/Main; the file "
                             "may leave background out)", root, n_lines, K, K - 1);
        else if (n_lines == K)
            s = ct_classnames_apply(root, K, names, (const char *const *)ids);
        else if (n_lines >= 0)
            s = ct_classnames_apply(root, K - 1, names + 1, (const char *const *)ids + 1);
    } else if (s == CT_OK) {
        ct_ml_underscores(names, K);
    }
    ct_strv_free(lines, n_lines);
    if (s != CT_OK) {
        ct_strv_free(ids, n);
        ct_strv_free(names, names ? K : 0);
        return s;
    }
    *ids_out = ids;
    *names_out = names;
    *K_out = K;
    return CT_OK;
}

ct_status ct_seg_items(const char *root, const ct_voc_ids *l, const char *img_dir,
                       const char *mask_dir, ct_seg_vec *v) {
    char img[PATH_BUF], mask[PATH_BUF], full[PATH_BUF];
    for (int64_t i = 0; i < l->n; i++) {
        const char *id = l->ids[i];
        int a = snprintf(img, sizeof img, "%s/%s.jpg", img_dir, id);
        int b = snprintf(mask, sizeof mask, "%s/%s.png", mask_dir, id);
        if (a < 0 || b < 0 || (size_t)a >= sizeof img || (size_t)b >= sizeof mask ||
            !ct_data_join(full, sizeof full, root, mask))
            return ct_set_error(CT_ERR_FORMAT, "%s:%d: image id too long", l->path, l->lines[i]);
        if (!ct_data_is_file(full))
            return ct_set_error(CT_ERR_IO, "%s: label map of image '%s' (%s:%d) does not exist",
                                full, id, l->path, l->lines[i]);
        if (!ct_data_join(full, sizeof full, root, img))
            return ct_set_error(CT_ERR_FORMAT, "%s:%d: image id too long", l->path, l->lines[i]);
        if (!ct_data_is_file(full))
            return ct_set_error(CT_ERR_IO, "%s: image '%s' (%s:%d) does not exist", full, id,
                                l->path, l->lines[i]);
        ct_status s = ct_seg_vec_push(v, img, mask);
        if (s != CT_OK) return s;
    }
    return CT_OK;
}

ct_status ct_data_open_vocseg(const char *root, ct_splits *out) {
    memset(out, 0, sizeof *out);
    char dir[PATH_BUF], path[PATH_BUF];
    ct_voc_ids lists[3];
    ct_seg_vec v[3];
    memset(lists, 0, sizeof lists);
    memset(v, 0, sizeof v);
    char **ids = NULL, **names = NULL, *name = NULL;
    int K = 0;
    ct_status s = CT_OK;
    if (!ct_data_is_dir(root))
        return ct_set_error(CT_ERR_IO, "%s: not a directory (vocseg: wants a VOC2012-style folder "
                            "with ImageSets/Segmentation, JPEGImages and SegmentationClass)", root);
    if (!ct_data_join(dir, sizeof dir, root, "ImageSets/Segmentation"))
        return ct_set_error(CT_ERR_ARG, "%s: path too long", root);
    if (!ct_data_is_dir(dir))
        return ct_set_error(CT_ERR_IO, "%s: no such directory (vocseg: wants ImageSets/"
                            "Segmentation/{train,val,test}.txt)", dir);
    for (int sp = 0; sp < 3 && s == CT_OK; sp++) {
        int k = snprintf(path, sizeof path, "%s/%s.txt", dir, SPLITS[sp]);
        if (k < 0 || (size_t)k >= sizeof path) s = ct_set_error(CT_ERR_ARG, "%s: too long", root);
        else s = ct_voc_read_ids(path, &lists[sp]);
    }
    if (s == CT_OK && !lists[0].path)
        s = ct_set_error(CT_ERR_IO, "%s/train.txt: no such file (vocseg: needs the training ids)",
                         dir);
    if (s == CT_OK && !lists[1].path && !lists[2].path)
        s = ct_set_error(CT_ERR_IO, "%s: neither test.txt nor val.txt (vocseg: needs a test "
                         "split; without test.txt, val.txt is the test split)", dir);
    if (s == CT_OK && lists[0].n == 0)
        s = ct_set_error(CT_ERR_FORMAT, "%s: no image ids", lists[0].path);
    for (int sp = 0; sp < 3 && s == CT_OK; sp++)
        s = ct_seg_items(root, &lists[sp], "JPEGImages", "SegmentationClass", &v[sp]);
    if (s == CT_OK) s = seg_classes(root, &ids, &names, &K);
    if (s == CT_OK && !(name = ct_data_stem(root, NULL)))
        s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", root);
    if (s == CT_OK)
        s = ct_seg_splits(name, root, K, names, false, v, lists[1].path != NULL,
                          lists[2].path != NULL, out);
    for (int sp = 0; sp < 3; sp++) {
        ct_voc_ids_free(&lists[sp]);
        ct_seg_vec_free(&v[sp]);
    }
    ct_strv_free(ids, K);
    ct_strv_free(names, K);
    free(name);
    if (s != CT_OK) ct_splits_free(out);
    return s;
}
