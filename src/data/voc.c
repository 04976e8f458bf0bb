/* voc:ROOT — PASCAL VOC 2007/2012 classification (a VOCdevkit/VOC2007
 * folder, or the scenes set):
 *
 *   ROOT/ImageSets/Main/{train,val,test}.txt   image ids, one a line
 *   ROOT/ImageSets/Main/<class>_train.txt      the class list (names only)
 *   ROOT/Annotations/<id>.xml                  <object><name> per object
 *   ROOT/JPEGImages/<id>.jpg                   the images
 *
 * As DualCoOp's voc2007 dataset (dataloaders/pascal_voc.py): an image's
 * classes are the <name>s of its objects, lowercased, skipping objects
 * marked <difficult>1 (their class stays absent, 0, unless another object
 * names it). Classes are the sorted <class> of the <class>_train.txt files
 * (VOC's 20 in the usual alphabetical order), or, without such files, the
 * sorted object names of every listed annotation. No test.txt (VOC2012,
 * whose test annotations are not public): val.txt is the test split and
 * 10% of train is held out as val. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/xml.h"
#include "data/dataset.h"

#define PATH_BUF 4096
/* Real annotations are a few kB. */
#define VOC_MAX_XML_BYTES ((int64_t)4 << 20)
#define VOC_MAX_SIDE 1000000

static const char *const SPLITS[3] = {"train", "val", "test"};

/* ------------------------------------------------------------------------ */
/* One annotation                                                            */
/* ------------------------------------------------------------------------ */

/* s without surrounding white space: start and length. */
static const char *trim_span(const char *s, size_t *len) {
    while (*s && isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) n--;
    *len = n;
    return s;
}

/* A finite number, the whole (trimmed) text. */
static bool parse_num(const char *text, double *out) {
    size_t n;
    const char *s = trim_span(text, &n);
    if (n == 0 || n > 64) return false;
    char buf[80];
    memcpy(buf, s, n);
    buf[n] = 0;
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (end != buf + n || errno == ERANGE || !isfinite(v)) return false;
    *out = v;
    return true;
}

/* The text of node's child named name as an integer in [lo, hi]. */
static ct_status child_int(const char *file, const ct_xml *x, int node, const char *name, int lo,
                           int hi, bool required, int *out) {
    int k = ct_xml_child(x, node, name);
    if (k < 0) {
        if (!required) return CT_OK;
        return ct_set_error(CT_ERR_FORMAT, "%s:%d: <%s> has no <%s>", file, x->nodes[node].line,
                            ct_xml_name(x, node), name);
    }
    double v;
    if (!parse_num(ct_xml_text(x, k), &v) || v != floor(v) || v < lo || v > hi)
        return ct_set_error(CT_ERR_FORMAT, "%s:%d: <%s> '%.40s' is not an integer in [%d, %d]",
                            file, x->nodes[k].line, name, ct_xml_text(x, k), lo, hi);
    *out = (int)v;
    return CT_OK;
}

static ct_status parse_box(const char *file, const ct_xml *x, int box, const ct_voc_ann *a) {
    static const char *const KEYS[4] = {"xmin", "ymin", "xmax", "ymax"};
    double v[4];
    for (int t = 0; t < 4; t++) {
        int k = ct_xml_child(x, box, KEYS[t]);
        if (k < 0)
            return ct_set_error(CT_ERR_FORMAT, "%s:%d: <bndbox> has no <%s>", file,
                                x->nodes[box].line, KEYS[t]);
        if (!parse_num(ct_xml_text(x, k), &v[t]))
            return ct_set_error(CT_ERR_FORMAT, "%s:%d: <%s> '%.40s' is not a number", file,
                                x->nodes[k].line, KEYS[t], ct_xml_text(x, k));
    }
    int line = x->nodes[box].line;
    if (v[0] > v[2] || v[1] > v[3])
        return ct_set_error(CT_ERR_FORMAT, "%s:%d: empty box: xmin %g > xmax %g or ymin %g > "
                            "ymax %g", file, line, v[0], v[2], v[1], v[3]);
    /* VOC's boxes are 1-based and inclusive ([1, width]); 0 is let through
     * for writers that count from 0. */
    if (v[0] < 0 || v[1] < 0 || v[2] > a->width || v[3] > a->height)
        return ct_set_error(CT_ERR_FORMAT, "%s:%d: box outside the image: (xmin %g, ymin %g, "
                            "xmax %g, ymax %g) in a %dx%d <size>", file, line, v[0], v[1], v[2],
                            v[3], a->width, a->height);
    return CT_OK;
}

void ct_voc_ann_free(ct_voc_ann *a) {
    if (!a) return;
    for (int i = 0; i < a->n_objects; i++) free(a->objects[i].name);
    free(a->objects);
    memset(a, 0, sizeof *a);
}

static ct_status parse_ann(const char *file, const ct_xml *x, ct_voc_ann *a) {
    if (strcmp(ct_xml_name(x, 0), "annotation") != 0)
        return ct_set_error(CT_ERR_FORMAT, "%s:%d: the root element is <%s>, expected "
                            "<annotation>", file, x->nodes[0].line, ct_xml_name(x, 0));
    int size = ct_xml_child(x, 0, "size");
    if (size < 0) return ct_set_error(CT_ERR_FORMAT, "%s: <annotation> has no <size>", file);
    int again = ct_xml_next(x, size, "size");
    if (again >= 0)
        return ct_set_error(CT_ERR_FORMAT, "%s:%d: a second <size> (the first is on line %d)",
                            file, x->nodes[again].line, x->nodes[size].line);
    ct_status s = child_int(file, x, size, "width", 1, VOC_MAX_SIDE, true, &a->width);
    if (s == CT_OK) s = child_int(file, x, size, "height", 1, VOC_MAX_SIDE, true, &a->height);
    if (s == CT_OK) s = child_int(file, x, size, "depth", 0, 1 << 16, false, &a->depth);
    if (s != CT_OK) return s;
    int n = 0;
    for (int o = ct_xml_child(x, 0, "object"); o >= 0; o = ct_xml_next(x, o, "object")) n++;
    if (!(a->objects = calloc(n ? (size_t)n : 1, sizeof *a->objects)))
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate %d objects", file, n);
    for (int o = ct_xml_child(x, 0, "object"); o >= 0; o = ct_xml_next(x, o, "object")) {
        int line = x->nodes[o].line;
        /* the object's own <name>, not those of its <part>s */
        int nm = ct_xml_child(x, o, "name");
        size_t len = 0;
        const char *name = nm >= 0 ? trim_span(ct_xml_text(x, nm), &len) : NULL;
        if (!len)
            return ct_set_error(CT_ERR_FORMAT, "%s:%d: <object> without a <name>", file, line);
        int difficult = 0;
        s = child_int(file, x, o, "difficult", 0, 1, false, &difficult);
        if (s != CT_OK) return s;
        int box = ct_xml_child(x, o, "bndbox");
        if (box >= 0 && (s = parse_box(file, x, box, a)) != CT_OK) return s;
        ct_voc_object *ob = &a->objects[a->n_objects];
        if (!(ob->name = strndup(name, len)))
            return ct_set_error(CT_ERR_NOMEM, "%s: no memory", file);
        for (char *p = ob->name; *p; p++) *p = (char)tolower((unsigned char)*p);
        ob->difficult = difficult == 1;
        ob->line = line;
        a->n_objects++;
    }
    return CT_OK;
}

ct_status ct_voc_parse_annotation(const char *file, const char *text, size_t size,
                                  ct_voc_ann *out) {
    memset(out, 0, sizeof *out);
    out->depth = -1;
    ct_xml x;
    ct_status s = ct_xml_parse(file, text, size, &x);
    if (s != CT_OK) return s;
    s = parse_ann(file, &x, out);
    ct_xml_free(&x);
    if (s != CT_OK) ct_voc_ann_free(out);
    return s;
}

/* ------------------------------------------------------------------------ */
/* The folder                                                                */
/* ------------------------------------------------------------------------ */

void ct_voc_ids_free(ct_voc_ids *l) {
    free(l->path);
    free(l->text);
    free(l->ids);
    free(l->lines);
    memset(l, 0, sizeof *l);
}

ct_status ct_voc_read_ids(const char *path, ct_voc_ids *l) {
    memset(l, 0, sizeof *l);
    if (!ct_data_is_file(path)) return CT_OK;
    size_t size;
    ct_status s = ct_read_file(path, &l->text, &size);
    if (s != CT_OK) return s;
    if (!(l->path = strdup(path))) return ct_set_error(CT_ERR_NOMEM, "%s: no memory", path);
    if (memchr(l->text, 0, size))
        return ct_set_error(CT_ERR_FORMAT, "%s: contains a NUL byte", path);
    int64_t n_lines = 1;
    for (size_t i = 0; i < size; i++) n_lines += l->text[i] == '\n';
    l->ids = malloc((size_t)n_lines * sizeof *l->ids);
    l->lines = malloc((size_t)n_lines * sizeof *l->lines);
    if (!l->ids || !l->lines) return ct_set_error(CT_ERR_NOMEM, "%s: no memory", path);
    int line = 0;
    for (char *p = l->text; *p;) {
        line++;
        char *e = strchr(p, '\n'), *next = e ? e + 1 : p + strlen(p);
        if (e) *e = 0;
        while (*p && isspace((unsigned char)*p)) p++;
        char *end = p + strlen(p);
        while (end > p && isspace((unsigned char)end[-1])) *--end = 0;
        if (*p) {
            if (strpbrk(p, " \t"))
                return ct_set_error(CT_ERR_FORMAT, "%s:%d: expected one image id, got '%.60s'",
                                    path, line, p);
            if (strchr(p, '/'))
                return ct_set_error(CT_ERR_FORMAT, "%s:%d: image id '%.60s' contains '/'", path,
                                    line, p);
            l->ids[l->n] = p;
            l->lines[l->n++] = line;
        }
        p = next;
    }
    return CT_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort and drop repeats; returns the new count. */
static int sort_unique(char **v, int n) {
    if (n > 1) qsort(v, (size_t)n, sizeof *v, cmp_str);
    int u = 0;
    for (int i = 0; i < n; i++) {
        if (u && strcmp(v[u - 1], v[i]) == 0) free(v[i]);
        else v[u++] = v[i];
    }
    return u;
}

ct_status ct_voc_class_lists(const char *main_dir, char ***out, int *n_out) {
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(main_dir);
    if (!d)
        return ct_set_error(CT_ERR_IO, "%s: cannot open directory: %s", main_dir,
                            strerror(errno));
    char **v = NULL;
    int n = 0, cap = 0;
    ct_status s = CT_OK;
    const char *suffix = "_train.txt";
    size_t sl = strlen(suffix);
    struct dirent *e;
    while (s == CT_OK && (e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len <= sl || strcmp(e->d_name + len - sl, suffix) != 0)
            continue;
        if (n == cap) {
            int nc = cap ? cap * 2 : 32;
            char **nv = cap > CT_DATA_MAX_CLASSES ? NULL : realloc(v, (size_t)nc * sizeof *nv);
            if (!nv) {
                s = ct_set_error(CT_ERR_NOMEM, "%s: too many class lists", main_dir);
                break;
            }
            v = nv;
            cap = nc;
        }
        if (!(v[n] = strndup(e->d_name, len - sl))) {
            s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", main_dir);
            break;
        }
        for (char *p = v[n]; *p; p++) *p = (char)tolower((unsigned char)*p);
        n++;
    }
    closedir(d);
    if (s == CT_OK && n > CT_DATA_MAX_CLASSES)
        s = ct_set_error(CT_ERR_FORMAT, "%s: %d classes exceed the limit of %d", main_dir, n,
                         CT_DATA_MAX_CLASSES);
    if (s != CT_OK) {
        ct_strv_free(v, n);
        return s;
    }
    *n_out = sort_unique(v, n);
    *out = v;
    return CT_OK;
}

typedef struct voc_ctx {
    const char *root;
    ct_voc_ids lists[3];
    ct_voc_ann *anns[3]; /* per split, per id */
    int64_t n_missing;
    char missing[PATH_BUF + 256];
} voc_ctx;

static ct_status read_annotations(voc_ctx *c, int sp) {
    ct_voc_ids *l = &c->lists[sp];
    if (!(c->anns[sp] = calloc(l->n ? (size_t)l->n : 1, sizeof *c->anns[sp])))
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate %lld annotations", l->path,
                            (long long)l->n);
    char rel[PATH_BUF], full[PATH_BUF];
    for (int64_t i = 0; i < l->n; i++) {
        const char *id = l->ids[i];
        int k = snprintf(rel, sizeof rel, "Annotations/%s.xml", id);
        if (k < 0 || (size_t)k >= sizeof rel || !ct_data_join(full, sizeof full, c->root, rel))
            return ct_set_error(CT_ERR_FORMAT, "%s:%d: image id too long", l->path, l->lines[i]);
        struct stat st;
        if (stat(full, &st) != 0 || !S_ISREG(st.st_mode))
            return ct_set_error(CT_ERR_IO, "%s: annotation of image '%s' (%s:%d) does not exist",
                                full, id, l->path, l->lines[i]);
        if (st.st_size > VOC_MAX_XML_BYTES)
            return ct_set_error(CT_ERR_FORMAT, "%s: %lld bytes is too large for an annotation",
                                full, (long long)st.st_size);
        char *text;
        size_t size;
        ct_status s = ct_read_file(full, &text, &size);
        if (s != CT_OK) return s;
        s = ct_voc_parse_annotation(full, text, size, &c->anns[sp][i]);
        free(text);
        if (s != CT_OK) return s;
        k = snprintf(rel, sizeof rel, "JPEGImages/%s.jpg", id);
        if (k < 0 || (size_t)k >= sizeof rel || !ct_data_join(full, sizeof full, c->root, rel))
            return ct_set_error(CT_ERR_FORMAT, "%s:%d: image id too long", l->path, l->lines[i]);
        if (!ct_data_is_file(full) && c->n_missing++ == 0)
            snprintf(c->missing, sizeof c->missing, "%s:%d: image file '%s' does not exist",
                     l->path, l->lines[i], full);
    }
    return CT_OK;
}

/* Without class lists: every object name of every listed annotation. */
static ct_status classes_from_objects(voc_ctx *c, char ***out, int *n_out) {
    int64_t total = 0;
    for (int sp = 0; sp < 3; sp++)
        for (int64_t i = 0; i < c->lists[sp].n; i++) total += c->anns[sp][i].n_objects;
    char **v = calloc(total ? (size_t)total : 1, sizeof *v);
    if (!v) return ct_set_error(CT_ERR_NOMEM, "%s: no memory", c->root);
    int64_t n = 0;
    for (int sp = 0; sp < 3; sp++)
        for (int64_t i = 0; i < c->lists[sp].n; i++)
            for (int o = 0; o < c->anns[sp][i].n_objects; o++)
                if (!(v[n++] = strdup(c->anns[sp][i].objects[o].name))) {
                    ct_strv_free(v, (int)n - 1);
                    return ct_set_error(CT_ERR_NOMEM, "%s: no memory", c->root);
                }
    if (n > INT_MAX) {
        ct_strv_free(v, INT_MAX);
        return ct_set_error(CT_ERR_FORMAT, "%s: too many objects", c->root);
    }
    int u = sort_unique(v, (int)n);
    if (u > CT_DATA_MAX_CLASSES) {
        ct_strv_free(v, u);
        return ct_set_error(CT_ERR_FORMAT, "%s: %d object names exceed the limit of %d classes",
                            c->root, u, CT_DATA_MAX_CLASSES);
    }
    *out = v;
    *n_out = u;
    return CT_OK;
}

static ct_status make_items(voc_ctx *c, int sp, char **ids, int n_classes, bool from_lists,
                            ct_ml_vec *v) {
    int8_t *row = malloc((size_t)n_classes);
    if (!row) return ct_set_error(CT_ERR_NOMEM, "%s: no memory", c->root);
    char rel[PATH_BUF];
    ct_status s = CT_OK;
    for (int64_t i = 0; i < c->lists[sp].n && s == CT_OK; i++) {
        const ct_voc_ann *a = &c->anns[sp][i];
        memset(row, 0, (size_t)n_classes);
        for (int o = 0; o < a->n_objects && s == CT_OK; o++) {
            char **hit = bsearch(&a->objects[o].name, ids, (size_t)n_classes, sizeof *ids,
                                 cmp_str);
            if (!hit)
                s = ct_set_error(CT_ERR_FORMAT, "%s/Annotations/%s.xml:%d: object name '%s' is "
                                 "not a class (%d classes%s)", c->root, c->lists[sp].ids[i],
                                 a->objects[o].line, a->objects[o].name, n_classes,
                                 from_lists ? " from ImageSets/Main/<class>_train.txt" : "");
            else if (!a->objects[o].difficult)
                row[hit - ids] = 1;
        }
        snprintf(rel, sizeof rel, "JPEGImages/%s.jpg", c->lists[sp].ids[i]); /* fits: read */
        if (s == CT_OK) s = ct_ml_vec_push(v, rel, row);
    }
    free(row);
    return s;
}

ct_status ct_data_open_voc(const char *root, ct_splits *out) {
    memset(out, 0, sizeof *out);
    voc_ctx c = {.root = root};
    char main_dir[PATH_BUF], path[PATH_BUF];
    char **ids = NULL, **names = NULL, *name = NULL;
    int n_classes = 0;
    bool from_lists = false;
    ct_ml_vec v[3];
    memset(v, 0, sizeof v);
    ct_status s = CT_OK;
    if (!ct_data_is_dir(root))
        return ct_set_error(CT_ERR_IO, "%s: not a directory (voc: wants a VOC2007-style folder "
                            "with ImageSets/Main, Annotations and JPEGImages)", root);
    if (!ct_data_join(main_dir, sizeof main_dir, root, "ImageSets/Main"))
        return ct_set_error(CT_ERR_ARG, "%s: path too long", root);
    if (!ct_data_is_dir(main_dir))
        return ct_set_error(CT_ERR_IO, "%s: no such directory (voc: wants ImageSets/Main/"
                            "{train,val,test}.txt)", main_dir);
    for (int sp = 0; sp < 3 && s == CT_OK; sp++) {
        int k = snprintf(path, sizeof path, "%s/%s.txt", main_dir, SPLITS[sp]);
        if (k < 0 || (size_t)k >= sizeof path) s = ct_set_error(CT_ERR_ARG, "%s: too long", root);
        else s = ct_voc_read_ids(path, &c.lists[sp]);
    }
    if (s == CT_OK && !c.lists[0].path)
        s = ct_set_error(CT_ERR_IO, "%s/train.txt: no such file (voc: needs the training ids)",
                         main_dir);
    if (s == CT_OK && !c.lists[1].path && !c.lists[2].path)
        s = ct_set_error(CT_ERR_IO, "%s: neither test.txt nor val.txt (voc: needs a test split;"
                         " without test.txt, val.txt is the test split)", main_dir);
    if (s == CT_OK && c.lists[0].n == 0)
        s = ct_set_error(CT_ERR_FORMAT, "%s: no image ids", c.lists[0].path);
    for (int sp = 0; sp < 3 && s == CT_OK; sp++) s = read_annotations(&c, sp);
    if (s == CT_OK && c.n_missing)
        s = ct_set_error(CT_ERR_IO, "%s (%lld image%s missing in all)", c.missing,
                         (long long)c.n_missing, c.n_missing == 1 ? "" : "s");
    if (s == CT_OK) s = ct_voc_class_lists(main_dir, &ids, &n_classes);
    if (s == CT_OK && n_classes == 0) {
        free(ids);
        ids = NULL;
        s = classes_from_objects(&c, &ids, &n_classes);
    } else if (s == CT_OK) {
        from_lists = true;
    }
    if (s == CT_OK && n_classes == 0)
        s = ct_set_error(CT_ERR_FORMAT, "%s: no classes: no ImageSets/Main/<class>_train.txt "
                         "and no <object> in the annotations", root);
    for (int sp = 0; sp < 3 && s == CT_OK; sp++) {
        v[sp].n_classes = n_classes;
        s = make_items(&c, sp, ids, n_classes, from_lists, &v[sp]);
    }
    if (s == CT_OK && (!(names = ct_strv_dup(ids, n_classes)) || !(name = ct_data_stem(root, NULL))))
        s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", root);
    if (s == CT_OK) {
        ct_ml_underscores(names, n_classes);
        s = ct_classnames_apply(root, n_classes, names, (const char *const *)ids);
    }
    if (s == CT_OK) {
        bool has_test = c.lists[2].path != NULL;
        if (!has_test) { /* val.txt is the test split; val is held out of train */
            ct_ml_vec t = v[2];
            v[2] = v[1];
            v[1] = t;
        }
        s = ct_ml_splits(name, root, names, v, has_test && c.lists[1].path, true,
                         c.lists[0].path, out);
    }
    for (int sp = 0; sp < 3; sp++) {
        for (int64_t i = 0; c.anns[sp] && i < c.lists[sp].n; i++) ct_voc_ann_free(&c.anns[sp][i]);
        free(c.anns[sp]);
        ct_voc_ids_free(&c.lists[sp]);
        ct_ml_vec_free(&v[sp]);
    }
    ct_strv_free(ids, n_classes);
    ct_strv_free(names, n_classes);
    free(name);
    if (s != CT_OK) ct_splits_free(out);
    return s;
}
