/* Semantic segmentation layouts as mmsegmentation 0.x reads them (the
 * classes MaskCLIP and DenseCLIP evaluate through):
 *
 * adeseg:ROOT — ADE20K's ADEChallengeData2016 (mmseg/datasets/ade.py
 * ADE20KDataset over custom.py's CustomDataset without a split file):
 *
 *   ROOT/images/{training,validation}/ **.jpg         the images
 *   ROOT/annotations/{training,validation}/ **.png    greyscale label maps
 *
 * The images are every *.jpg below the split's folder (mmcv.scandir with
 * recursive=True: hidden files skipped, sub-folders followed), sorted by
 * relative path; each one's map is the same relative path with .png.
 * Map value 0 is "other" (not one of the 150 classes) and reduce_zero_label
 * is fixed on: read through ct_label_map_load_for, 0 becomes 255 (void) and
 * v becomes v - 1, so class c is map value c + 1. Class names: mmseg's
 * ADE20KDataset.CLASSES (its "bed " without the trailing space).
 *
 * pcontextseg:ROOT, pcontext60seg:ROOT — PASCAL-Context as mmseg's
 * tools/convert_datasets/pascal_context.py writes it into VOCdevkit/VOC2010
 * (ROOT), read by mmseg/datasets/pascal_context.py:
 *
 *   ROOT/ImageSets/SegmentationContext/{train,val}.txt  image ids
 *   ROOT/JPEGImages/<id>.jpg                            the images
 *   ROOT/SegmentationClassContext/<id>.png              greyscale maps, 0
 *                                   background, 1..59 the 59 classes
 *
 * pcontextseg is PascalContextDataset59 (reduce_zero_label: background void,
 * 59 classes; MaskCLIP's configs/_base_/datasets/pascal_context_59.py, the
 * setting its paper reports), pcontext60seg is PascalContextDataset (60
 * classes, "background" class 0, no reduction).
 *
 * Both have no test split of their own: validation (val.txt) is test and a
 * fixed, hash-chosen 10% of training is held out as val (as vocseg:). An
 * optional ROOT/classnames.txt (one name a line, in class order) renames the
 * classes. Every image and map must exist (errors name the file); maps are
 * decoded, and checked against their image and the class range, when read
 * (ct_label_map_load_for). */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "data/dataset.h"

#define PATH_BUF 4096
#define SCAN_MAX_DEPTH 32

static const char *const ADE_CLASSES[150] = {
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing",
    "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
};

static const char *const PCONTEXT_CLASSES[59] = {
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle",
    "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow",
    "cup", "curtain", "dog", "door", "fence", "floor", "flower", "food", "grass", "ground",
    "horse", "keyboard", "light", "motorbike", "mountain", "mouse", "person", "plate", "platform",
    "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign", "sky", "snow", "sofa",
    "table", "track", "train", "tree", "truck", "tvmonitor", "wall", "water", "window", "wood",
};

/* ---- adeseg: ------------------------------------------------------------ */

typedef struct path_list {
    char **v;
    int64_t n, cap;
} path_list;

static void path_list_free(path_list *l) {
    for (int64_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static ct_status path_list_push(path_list *l, const char *p) {
    if (l->n == l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 256;
        char **v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return ct_set_error(CT_ERR_NOMEM, "adeseg: cannot grow the image list");
        l->v = v, l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(p))) return ct_set_error(CT_ERR_NOMEM, "adeseg: no memory");
    l->n++;
    return CT_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !memcmp(s + n - m, suffix, m);
}

/* Every *.jpg below dir/rel (rel "" at the top), as paths relative to dir:
 * mmcv.scandir(dir, '.jpg', recursive=True). */
static ct_status scan_jpg(const char *dir, const char *rel, int depth, path_list *out) {
    char here[PATH_BUF], full[PATH_BUF], sub[PATH_BUF];
    int k = *rel ? snprintf(here, sizeof here, "%s/%s", dir, rel)
                 : snprintf(here, sizeof here, "%s", dir);
    if (k < 0 || (size_t)k >= sizeof here) return ct_set_error(CT_ERR_ARG, "%s: too long", dir);
    if (depth > SCAN_MAX_DEPTH)
        return ct_set_error(CT_ERR_FORMAT, "%s: more than %d folder levels (a link loop?)", here,
                            SCAN_MAX_DEPTH);
    DIR *dp = opendir(here);
    if (!dp) return ct_set_error(CT_ERR_IO, "%s: cannot open the folder", here);
    ct_status s = CT_OK;
    for (struct dirent *e; s == CT_OK && (e = readdir(dp));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        int a = snprintf(full, sizeof full, "%s/%s", here, e->d_name);
        int b = *rel ? snprintf(sub, sizeof sub, "%s/%s", rel, e->d_name)
                     : snprintf(sub, sizeof sub, "%s", e->d_name);
        if (a < 0 || b < 0 || (size_t)a >= sizeof full || (size_t)b >= sizeof sub) {
            s = ct_set_error(CT_ERR_ARG, "%s/%s: path too long", here, e->d_name);
            break;
        }
        struct stat st;
        if (stat(full, &st) != 0) continue; /* a dangling link: not a file, not a folder */
        if (e->d_name[0] != '.' && S_ISREG(st.st_mode)) {
            if (ends_with(e->d_name, ".jpg")) s = path_list_push(out, sub);
        } else if (S_ISDIR(st.st_mode)) {
            s = scan_jpg(dir, sub, depth + 1, out);
        }
    }
    closedir(dp);
    return s;
}

/* The items of one ADE split (training, validation). */
static ct_status ade_items(const char *root, const char *split, ct_seg_vec *v) {
    char dir[PATH_BUF], img[PATH_BUF], mask[PATH_BUF], full[PATH_BUF];
    int k = snprintf(dir, sizeof dir, "%s/images/%s", root, split);
    if (k < 0 || (size_t)k >= sizeof dir) return ct_set_error(CT_ERR_ARG, "%s: too long", root);
    if (!ct_data_is_dir(dir))
        return ct_set_error(CT_ERR_IO, "%s: no such folder (adeseg: wants ADEChallengeData2016's "
                            "images/{training,validation} and annotations/{training,validation})",
                            dir);
    snprintf(full, sizeof full, "%s/annotations/%s", root, split);
    if (!ct_data_is_dir(full))
        return ct_set_error(CT_ERR_IO, "%s: no such folder (adeseg: the label maps of images/%s)",
                            full, split);
    path_list l = {0};
    ct_status s = scan_jpg(dir, "", 0, &l);
    if (s == CT_OK && l.n == 0)
        s = ct_set_error(CT_ERR_FORMAT, "%s: no .jpg image", dir);
    if (s == CT_OK) qsort(l.v, (size_t)l.n, sizeof *l.v, cmp_str);
    for (int64_t i = 0; i < l.n && s == CT_OK; i++) {
        size_t n = strlen(l.v[i]) - 4; /* without ".jpg" */
        int a = snprintf(img, sizeof img, "images/%s/%s", split, l.v[i]);
        int b = snprintf(mask, sizeof mask, "annotations/%s/%.*s.png", split, (int)n, l.v[i]);
        if (a < 0 || b < 0 || (size_t)a >= sizeof img || (size_t)b >= sizeof mask ||
            !ct_data_join(full, sizeof full, root, mask)) {
            s = ct_set_error(CT_ERR_ARG, "%s/%s: path too long", dir, l.v[i]);
            break;
        }
        if (!ct_data_is_file(full))
            s = ct_set_error(CT_ERR_IO, "%s: label map of image %s/%s does not exist", full, dir,
                             l.v[i]);
        else
            s = ct_seg_vec_push(v, img, mask);
    }
    path_list_free(&l);
    return s;
}

/* Class names from a static table, renamed by ROOT/classnames.txt. */
static ct_status table_names(const char *root, const char *const *table, int n, bool background,
                             char ***out) {
    int K = n + (background ? 1 : 0);
    char **names = calloc((size_t)K, sizeof *names);
    ct_status s = names ? CT_OK : ct_set_error(CT_ERR_NOMEM, "%s: no memory", root);
    for (int c = 0; c < K && s == CT_OK; c++)
        if (!(names[c] = strdup(background && c == 0 ? "background"
                                                     : table[c - (background ? 1 : 0)])))
            s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", root);
    if (s == CT_OK) s = ct_classnames_apply(root, K, names, NULL);
    if (s != CT_OK) {
        ct_strv_free(names, names ? K : 0);
        return s;
    }
    *out = names;
    return CT_OK;
}

ct_status ct_data_open_adeseg(const char *root, ct_splits *out) {
    memset(out, 0, sizeof *out);
    if (!ct_data_is_dir(root))
        return ct_set_error(CT_ERR_IO, "%s: not a directory (adeseg: wants ADEChallengeData2016 "
                            "with images/ and annotations/)", root);
    ct_seg_vec v[3];
    memset(v, 0, sizeof v);
    char **names = NULL, *name = NULL;
    const int K = 150;
    ct_status s = ade_items(root, "training", &v[0]);
    if (s == CT_OK) s = ade_items(root, "validation", &v[1]);
    if (s == CT_OK) s = table_names(root, ADE_CLASSES, K, false, &names);
    if (s == CT_OK && !(name = ct_data_stem(root, NULL)))
        s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", root);
    if (s == CT_OK) s = ct_seg_splits(name, root, K, names, true, v, true, false, out);
    for (int sp = 0; sp < 3; sp++) ct_seg_vec_free(&v[sp]);
    ct_strv_free(names, names ? K : 0);
    free(name);
    if (s != CT_OK) ct_splits_free(out);
    return s;
}

/* ---- pcontextseg: / pcontext60seg: --------------------------------------- */

ct_status ct_data_open_pcontextseg(const char *root, int classes, ct_splits *out) {
    memset(out, 0, sizeof *out);
    const char *spec = classes == 60 ? "pcontext60seg" : "pcontextseg";
    if (classes != 59 && classes != 60)
        return ct_set_error(CT_ERR_ARG, "pascal context: %d classes (59 or 60)", classes);
    if (!ct_data_is_dir(root))
        return ct_set_error(CT_ERR_IO, "%s: not a directory (%s: wants VOCdevkit/VOC2010 with "
                            "ImageSets/SegmentationContext, JPEGImages and "
                            "SegmentationClassContext)", root, spec);
    char dir[PATH_BUF], path[PATH_BUF];
    if (!ct_data_join(dir, sizeof dir, root, "ImageSets/SegmentationContext"))
        return ct_set_error(CT_ERR_ARG, "%s: path too long", root);
    if (!ct_data_is_dir(dir))
        return ct_set_error(CT_ERR_IO, "%s: no such directory (%s: wants ImageSets/"
                            "SegmentationContext/{train,val}.txt, as mmsegmentation's "
                            "tools/convert_datasets/pascal_context.py writes them)", dir, spec);
    ct_voc_ids lists[2];
    ct_seg_vec v[3];
    memset(lists, 0, sizeof lists);
    memset(v, 0, sizeof v);
    char **names = NULL, *name = NULL;
    ct_status s = CT_OK;
    static const char *const SPLIT[2] = {"train", "val"};
    for (int sp = 0; sp < 2 && s == CT_OK; sp++) {
        int k = snprintf(path, sizeof path, "%s/%s.txt", dir, SPLIT[sp]);
        if (k < 0 || (size_t)k >= sizeof path) s = ct_set_error(CT_ERR_ARG, "%s: too long", dir);
        else s = ct_voc_read_ids(path, &lists[sp]);
        if (s == CT_OK && !lists[sp].path)
            s = ct_set_error(CT_ERR_IO, "%s: no such file (%s: needs the %s ids)", path, spec,
                             SPLIT[sp]);
        else if (s == CT_OK && lists[sp].n == 0)
            s = ct_set_error(CT_ERR_FORMAT, "%s: no image ids", path);
    }
    for (int sp = 0; sp < 2 && s == CT_OK; sp++)
        s = ct_seg_items(root, &lists[sp], "JPEGImages", "SegmentationClassContext", &v[sp]);
    if (s == CT_OK) s = table_names(root, PCONTEXT_CLASSES, 59, classes == 60, &names);
    if (s == CT_OK && !(name = ct_data_stem(root, NULL)))
        s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", root);
    if (s == CT_OK)
        s = ct_seg_splits(name, root, classes, names, classes == 59, v, true, false, out);
    for (int sp = 0; sp < 2; sp++) ct_voc_ids_free(&lists[sp]);
    for (int sp = 0; sp < 3; sp++) ct_seg_vec_free(&v[sp]);
    ct_strv_free(names, names ? classes : 0);
    free(name);
    if (s != CT_OK) ct_splits_free(out);
    return s;
}
