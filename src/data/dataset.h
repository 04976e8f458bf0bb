/* Internal API shared by the dataset loaders (src/data); the public part is
 * the "Datasets" section of cliptune.h and docs/datasets.md.
 *
 * Every loader works the same way: gather the class list and the items of
 * each split, apply an optional classnames.txt, then build one ct_dataset per
 * split. Datasets own everything they point to except the pixel store, which
 * is reference-counted so that views (few-shot, base/novel, val held out of
 * train) share one copy of the pixels. */
#ifndef CT_DATA_DATASET_H
#define CT_DATA_DATASET_H

#include <stdatomic.h>
#include <stdint.h>

#include "cliptune.h"

/* Labels are ints, and class lists are allocated up front: refuse absurd
 * label values before allocating for them. */
#define CT_DATA_MAX_CLASSES (1 << 20)

/* ---- pixel store: n images of h x w x c bytes, tightly packed ---- */

struct ct_pixel_store {
    atomic_int refs;
    char *name;      /* identity used in item keys: "fashion-mnist/train"       */
    int64_t n;
    int h, w, c;     /* c: 1 (grey) or 3 (RGB); 2 and 4 keep alpha, dropped on use */
    uint8_t *data;   /* n * h * w * c bytes                                      */
};

/* A store with uninitialised pixels and one reference. NULL (error set) on
 * bad sizes or no memory. */
ct_pixel_store *ct_pixel_store_new(const char *name, int64_t n, int h, int w, int c);
ct_pixel_store *ct_pixel_store_retain(ct_pixel_store *p);
void ct_pixel_store_release(ct_pixel_store *p);
/* Bytes of one image. */
static inline size_t ct_pixel_store_stride(const ct_pixel_store *p) {
    return (size_t)p->h * (size_t)p->w * (size_t)p->c;
}

/* ---- the parts of merged datasets (ct_dataset_merge) ---- */

/* Copies of the parts, shared by a merged dataset and its views. */
struct ct_data_sources {
    atomic_int refs;
    int n;
    ct_dataset **parts;
};
struct ct_data_sources *ct_data_sources_retain(struct ct_data_sources *s);
void ct_data_sources_release(struct ct_data_sources *s);

/* ---- item lists under construction ---- */

typedef struct ct_item_vec {
    ct_item *items;
    int64_t n, cap;
} ct_item_vec;

/* Append (path copied; NULL for in-memory items). */
ct_status ct_item_vec_push(ct_item_vec *v, const char *path, int64_t index, int label);
void ct_item_vec_free(ct_item_vec *v);

/* ---- string vectors (class lists) ---- */

char **ct_strv_dup(char *const *v, int n);
void ct_strv_free(char **v, int n);

/* ---- datasets ---- */

/* A dataset taking over items (the vector is emptied) and copying name,
 * root and class names; pixels (may be NULL) gains a reference. */
ct_dataset *ct_dataset_build(const char *name, const char *root, int n_classes,
                             char *const *classnames, ct_pixel_store *pixels, ct_item_vec *items);
/* root + "/" + path for relative item paths (path itself when absolute or
 * root is empty), into buf. False when it does not fit. */
bool ct_data_join(char *buf, size_t n, const char *root, const char *path);
/* True if path names an existing regular file (following links). */
bool ct_data_is_file(const char *path);
/* True if path names an existing directory (following links). */
bool ct_data_is_dir(const char *path);
/* Final path component, without ext if it ends with it (ext may be NULL),
 * into a malloc'ed string. */
char *ct_data_stem(const char *path, const char *ext);
/* Directory part of path ("." when it has none), malloc'ed. */
char *ct_data_dirname(const char *path);

/* ---- class names ---- */

/* Apply DIR/classnames.txt when it exists (nothing to do otherwise):
 *   - "wnid name" lines (a first token of 'n' and 8 digits): class i gets the
 *     name on the line whose wnid equals keys[i] (keys NULL: names[i]); every
 *     class needs a line, extra lines are ignored;
 *   - otherwise one name per line, in label order; the count must equal n.
 * names[i] are replaced in place (freed and reallocated). */
ct_status ct_classnames_apply(const char *dir, int n, char **names, const char *const *keys);
/* DIR/classnames.txt's names (trimmed non-blank lines; for the "wnid name"
 * form the names, *keyed true), in file order, malloc'ed (ct_strv_free);
 * *n = -1 and *names NULL when there is no such file. */
ct_status ct_classnames_read(const char *dir, char ***names, int *n, bool *keyed);

/* The "wnid name" lines of the classnames.txt at path (CoOp's ImageNet
 * file) in file order, wnids and names malloc'ed (ct_strv_free): a missing
 * file (what: the spec it is for, named in the message), lines of another
 * form and a repeated wnid are errors naming path (and line). */
ct_status ct_classnames_read_wnids(const char *path, const char *what, char ***wnids,
                                   char ***names, int *n);

/* ---- splitting (sampler.c) ---- */

/* Per-class holdout by a fixed hash of each item (its path, or its index for
 * in-memory items): within a class, items ordered by (hash, position); the
 * first round(n * val_pct / 100) go to *val, the next round(n * test_pct /
 * 100) to *test, the rest to *train; each output keeps the input's order.
 * Rounding is half-up. test may be NULL when test_pct is 0. An output with
 * no items is returned as NULL for val, as an empty dataset otherwise. */
ct_status ct_dataset_holdout(const ct_dataset *all, int val_pct, int test_pct,
                             ct_dataset **train, ct_dataset **val, ct_dataset **test);
/* The fixed hash the holdout orders a path-backed item by (FNV-1a of the
 * path, splitmix64 finaliser); other stable splits (caption corpora) reuse it. */
uint64_t ct_data_path_hash(const char *path);
/* Error naming src if a class of d has no items (labels are assumed in
 * range). */
ct_status ct_dataset_check_nonempty(const ct_dataset *d, const char *src);
/* CoOp's shots for the validation set: min(k, 4). */
int ct_fewshot_val_shots(int k);

/* ---- multi-label item lists (multilabel.c) ---- */

/* Items with their target rows (1 present, 0 absent, -1 unknown) over
 * n_classes, under construction. */
typedef struct ct_ml_vec {
    ct_item_vec items;
    int8_t *targets; /* (items.n, n_classes) */
    int64_t cap;     /* rows allocated        */
    int n_classes;
} ct_ml_vec;

/* Append an item (path copied) with its row of n_classes targets (copied);
 * its label is the lowest present class, 0 when none is present. */
ct_status ct_ml_vec_push(ct_ml_vec *v, const char *path, const int8_t *row);
void ct_ml_vec_free(ct_ml_vec *v);
/* A multi-label dataset taking over v's items and targets (v is emptied). */
ct_dataset *ct_ml_dataset_build(const char *name, const char *root, char *const *names,
                                ct_ml_vec *v);
/* The splits of a multi-label source from its train, val and test lists
 * (v[0..2], emptied): has_val false holds out a hash-chosen 10% of train as
 * val (ct_dataset_holdout), and has_test false also 10% as test (80/10/10);
 * a val list that is there but empty gives no val split. An empty train is
 * an error naming src. */
ct_status ct_ml_splits(const char *name, const char *root, char *const *names, ct_ml_vec v[3],
                       bool has_val, bool has_test, const char *src, ct_splits *out);
/* Readable names from identifiers: '_' read as a space. In place. */
void ct_ml_underscores(char **names, int n);

/* ---- multi-label annotation formats ---- */

/* One PASCAL VOC annotation (Annotations/<id>.xml), checked: the root is
 * <annotation>; one <size> with integer <width>, <height> >= 1 (and
 * <depth> >= 0 when given); every <object> has a non-empty <name> (trimmed
 * and lowercased, as DualCoOp's reader), an optional <difficult> 0 or 1,
 * and an optional <bndbox> whose xmin <= xmax, ymin <= ymax lie within [0,
 * width] x [0, height]. Errors name file and line. */
typedef struct ct_voc_object {
    char *name;
    bool difficult;
    int line;
} ct_voc_object;
typedef struct ct_voc_ann {
    int width, height, depth; /* depth -1 when not given */
    int n_objects;
    ct_voc_object *objects;
} ct_voc_ann;
ct_status ct_voc_parse_annotation(const char *file, const char *text, size_t size,
                                  ct_voc_ann *out);
void ct_voc_ann_free(ct_voc_ann *a);

/* A VOC id list (ImageSets/{Main,Segmentation}/<split>.txt). */
typedef struct ct_voc_ids {
    char *path;  /* the list file; NULL when absent */
    char *text;  /* ids point into it               */
    char **ids;
    int *lines;
    int64_t n;
} ct_voc_ids;
/* Read the list at path: one id a line (trimmed; blank lines skipped; an id
 * with white space inside or '/' is an error naming path:line). A missing
 * file is not an error: l->path stays NULL. */
ct_status ct_voc_read_ids(const char *path, ct_voc_ids *l);
void ct_voc_ids_free(ct_voc_ids *l);
/* The lowercased <class> of every MAIN_DIR/<class>_train.txt, sorted in byte
 * order, repeats dropped (ct_strv_free); none found: *n_out 0. */
ct_status ct_voc_class_lists(const char *main_dir, char ***out, int *n_out);

/* ---- loaders (one per spec form) ---- */

ct_status ct_data_open_folder(const char *dir, ct_splits *out);
ct_status ct_data_open_coop(const char *json_path, const char *images, ct_splits *out);
ct_status ct_data_open_csv(const char *file, const char *root, ct_splits *out);
ct_status ct_data_open_fashion_mnist(const char *dir, ct_splits *out);
/* scikit-learn's digits.csv(.gz) (digits.c). */
#define CT_DIGITS_DEFAULT "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"
ct_status ct_data_open_digits(const char *file, ct_splits *out);
/* paths: 2 (X, Y), 4 (train, test) or 6 (train, val, test) files. */
ct_status ct_data_open_npy(char *const *paths, int n_paths, ct_splits *out);
/* Multi-label sources (docs/datasets.md): voc:ROOT, coco:ROOT,
 * mlcsv:FILES[@ROOT] (1 to 3 CSV files), mljson:FILE[@ROOT]. */
ct_status ct_data_open_voc(const char *root, ct_splits *out);
ct_status ct_data_open_coco(const char *root, ct_splits *out);
/* Semantic segmentation: vocseg:ROOT (vocseg.c); adeseg:ROOT,
 * pcontextseg:ROOT and pcontext60seg:ROOT (segsets.c). */
ct_status ct_data_open_vocseg(const char *root, ct_splits *out);
ct_status ct_data_open_adeseg(const char *root, ct_splits *out);
/* classes 59 (background void: PascalContextDataset59) or 60 */
ct_status ct_data_open_pcontextseg(const char *root, int classes, ct_splits *out);

/* CoOp's ImageNet family and FGVC-Aircraft as they sit on disk
 * (imagenet.c, fgvc_aircraft.c; docs/datasets.md): which = one of the
 * CT_IMAGENET_* forms, ROOT CoOp's dataset folder. */
enum { CT_IMAGENET, CT_IMAGENET_V2, CT_IMAGENET_SKETCH, CT_IMAGENET_A, CT_IMAGENET_R };
ct_status ct_data_open_imagenet(const char *root, int which, ct_splits *out);
ct_status ct_data_open_fgvc_aircraft(const char *root, ct_splits *out);
/* One FGVC-Aircraft list (images_variant_<split>.txt: "<image id> <variant>"
 * lines, the variant the rest of the line) parsed against the variants
 * (variants.txt's lines, in order): items "images/<id>.jpg" with the
 * variant's index as label, pushed to items. text is modified. Errors name
 * file:line (a variant not in variants.txt, an id with '/' or none). */
ct_status ct_fgvc_parse_list(const char *file, char *text, size_t size,
                             char *const *variants, int n_variants, ct_item_vec *items);
/* variants.txt's trimmed non-blank lines (ct_strv_free); an empty file or a
 * repeated variant is an error naming file:line. text is modified. */
ct_status ct_fgvc_parse_variants(const char *file, char *text, size_t size, char ***out,
                                 int *n);

/* rgb (h, w, 3) as a baseline JPEG (libjpeg's defaults: 4:2:0, islow DCT,
 * the scenes set's quality), written atomically to path (scenes.c). */
ct_status ct_data_write_jpeg(const char *path, const uint8_t *rgb, int w, int h);

/* ---- segmentation item lists (vocseg.c) ---- */

/* 8-bit maps: values 0..254 are classes, 255 is void. */
#define CT_SEG_MAX_CLASSES 255
/* Items and their mask paths (relative to the root) under construction. */
typedef struct ct_seg_vec {
    ct_item_vec items;
    char **masks;
    int64_t cap;
} ct_seg_vec;
/* Append an image and its mask (both copied); label 0. */
ct_status ct_seg_vec_push(ct_seg_vec *v, const char *img, const char *mask);
void ct_seg_vec_free(ct_seg_vec *v);
/* The items of an id list: IMG_DIR/<id>.jpg and MASK_DIR/<id>.png (relative
 * to root), each of which must exist (an error naming the missing file and
 * the list's line otherwise). */
ct_status ct_seg_items(const char *root, const ct_voc_ids *l, const char *img_dir,
                       const char *mask_dir, ct_seg_vec *v);
/* train / val / test from the lists v[0..2] (emptied), voc:'s rules:
 * without a test list the val list is test and 10% of train is held out as
 * val; reduce: the datasets' reduce_zero_label. */
ct_status ct_seg_splits(const char *name, const char *root, int K, char *const *names,
                        bool reduce, ct_seg_vec v[3], bool has_val, bool has_test,
                        ct_splits *out);
/* COCO from given instances files: files[0] train (required), files[1]
 * val and files[2] test (either may be NULL, not both); images of
 * files[k] under root/img_dirs[k]; name: the dataset's. */
ct_status ct_data_open_coco_files(const char *const files[3], const char *const img_dirs[3],
                                  const char *root, const char *name, ct_splits *out);
ct_status ct_data_open_mlcsv(char *const *files, int n_files, const char *root, ct_splits *out);
ct_status ct_data_open_mljson(const char *file, const char *root, ct_splits *out);

/* ---- CSV fields (csv.c), shared with mlcsv ---- */

/* Split one line (modified in place) into at most 3 fields (a third means
 * "too many"): commas separate, double quotes quote ("" is a quote),
 * unquoted fields are trimmed. False with *why set on a quoting error. */
bool ct_csv_split_fields(char *line, char **f, int *nf, const char **why);
/* True when "a,b" is a header line (path words / label words, any case). */
bool ct_csv_is_header(const char *a, const char *b);
/* The two-field rows of a CSV text (modified in place): a UTF-8 BOM, blank
 * lines and a first row that is a header are skipped. what names the fields
 * for errors ("path,label"). ct_csv_rows_next sets the next row's fields
 * and 1-based line: 1, 0 at the end, -1 with the error set (path:line). */
typedef struct ct_csv_rows {
    char *p;
    const char *path, *what;
    int line;
    bool first;
} ct_csv_rows;
void ct_csv_rows_init(ct_csv_rows *r, char *text, size_t size, const char *path,
                      const char *what);
int ct_csv_rows_next(ct_csv_rows *r, char **a, char **b, int *line);

#endif
