/* csv:FILE[@ROOT] — lines "path,label", paths relative to ROOT (default: the
 * folder of FILE).
 *
 *   - Splits: FILE is train; STEM.val.csv and STEM.test.csv beside it (STEM is
 *     FILE without ".csv") are val and test when present. With neither, FILE
 *     is split 80/10/10 per class; with only a test file, 10% of train is held
 *     out as val; a val file without a test file is an error.
 *   - Labels: when every label in every file is a plain non-negative integer
 *     they are class indices (n = max + 1, names "0", "1", ... unless
 *     classnames.txt says otherwise); otherwise every label is a class name,
 *     classes being train's distinct names in byte order.
 *   - Fields may be double-quoted ("a,b.jpg", "" for a quote); blank lines are
 *     skipped; a first line whose two fields are header words (path, file,
 *     filename, image, ... / label, class, classname, target, ...) is a
 *     header. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "data/dataset.h"

#define PATH_BUF 4096

typedef struct row {
    const char *path, *label;
    int line;
} row;

typedef struct csv_file {
    char *path;  /* NULL when the file is absent */
    char *text;
    row *rows;
    int64_t n;
} csv_file;

static const char *const PATH_WORDS[] = {"path", "filepath", "file", "filename", "image",
                                         "img", "impath", "image_path", "imagepath"};
static const char *const LABEL_WORDS[] = {"label", "labels", "class", "classname",
                                          "class_name", "target", "y", "category"};
#define N_PATH_WORDS (sizeof PATH_WORDS / sizeof *PATH_WORDS)
#define N_LABEL_WORDS (sizeof LABEL_WORDS / sizeof *LABEL_WORDS)

static bool in_words(const char *s, const char *const *words, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(s, words[i]) == 0) return true;
    return false;
}

static char *trim(char *s) {
    while (*s && isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

bool ct_csv_is_header(const char *a, const char *b) {
    return in_words(a, PATH_WORDS, N_PATH_WORDS) && in_words(b, LABEL_WORDS, N_LABEL_WORDS);
}

bool ct_csv_split_fields(char *line, char **f, int *nf, const char **why) {
    *nf = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t') p++;
        char *start, *end;
        if (*p == '"') {
            /* Unescape "" in place as we go. */
            start = end = ++p;
            for (;;) {
                if (!*p) {
                    *why = "unterminated quoted field";
                    return false;
                }
                if (*p == '"') {
                    if (p[1] != '"') break;
                    p++;
                }
                *end++ = *p++;
            }
            p++;
            while (*p == ' ' || *p == '\t') p++;
            if (*p && *p != ',') {
                *why = "text after a closing quote";
                return false;
            }
        } else {
            start = p;
            while (*p && *p != ',') p++;
            end = p;
            /* Unquoted fields lose surrounding blanks; quoted ones keep them. */
            while (end > start && isspace((unsigned char)end[-1])) end--;
        }
        bool more = *p == ',';
        *end = 0; /* terminates the field (end <= p) */
        if (*nf < 3) f[(*nf)++] = start;
        if (!more) break;
        p++;
    }
    return true;
}

/* Read and split a file into rows. A missing optional file leaves f->path
 * NULL. */
static ct_status read_csv(const char *path, bool optional, csv_file *f) {
    memset(f, 0, sizeof *f);
    if (optional && !ct_data_is_file(path)) return CT_OK;
    size_t size;
    ct_status s = ct_read_file(path, &f->text, &size);
    if (s != CT_OK) return s;
    if (!(f->path = strdup(path))) return ct_set_error(CT_ERR_NOMEM, "%s: no memory", path);
    if (memchr(f->text, 0, size))
        return ct_set_error(CT_ERR_FORMAT, "%s: contains a NUL byte", path);
    int64_t n_lines = 1;
    for (size_t i = 0; i < size; i++) n_lines += f->text[i] == '\n';
    if (!(f->rows = malloc((size_t)n_lines * sizeof *f->rows)))
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate %lld rows", path,
                            (long long)n_lines);
    ct_csv_rows rows;
    ct_csv_rows_init(&rows, f->text, size, path, "path,label");
    char *a, *b;
    int line, got;
    while ((got = ct_csv_rows_next(&rows, &a, &b, &line)) > 0) {
        if (!a[0] || !b[0])
            return ct_set_error(CT_ERR_FORMAT, "%s:%d: empty %s", path, line,
                                !a[0] ? "path" : "label");
        f->rows[f->n++] = (row){a, b, line};
    }
    return got < 0 ? CT_ERR_FORMAT : CT_OK;
}

void ct_csv_rows_init(ct_csv_rows *r, char *text, size_t size, const char *path,
                      const char *what) {
    *r = (ct_csv_rows){text, path, what, 0, true};
    if (size >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) r->p += 3;
}

int ct_csv_rows_next(ct_csv_rows *r, char **a, char **b, int *line) {
    while (*r->p) {
        r->line++;
        char *p = r->p, *e = strchr(p, '\n');
        r->p = e ? e + 1 : p + strlen(p);
        if (e) *e = 0;
        if (!*trim(p)) continue;
        char *fields[3];
        int nf;
        const char *why;
        if (!ct_csv_split_fields(p, fields, &nf, &why)) {
            ct_set_error(CT_ERR_FORMAT, "%s:%d: %s", r->path, r->line, why);
            return -1;
        }
        if (nf != 2) {
            ct_set_error(CT_ERR_FORMAT, "%s:%d: expected 2 fields \"%s\", got %s", r->path,
                         r->line, r->what, nf < 2 ? "1" : "more");
            return -1;
        }
        bool header = r->first && ct_csv_is_header(fields[0], fields[1]);
        r->first = false;
        if (header) continue;
        *a = fields[0], *b = fields[1], *line = r->line;
        return 1;
    }
    return 0;
}

static void free_csv(csv_file *f) {
    free(f->path);
    free(f->text);
    free(f->rows);
    memset(f, 0, sizeof *f);
}

/* A plain non-negative decimal below the class limit. */
static bool parse_index(const char *s, int *out) {
    if (!*s) return false;
    long v = 0;
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p) || v >= CT_DATA_MAX_CLASSES) return false;
        v = v * 10 + (*p - '0');
    }
    if (v >= CT_DATA_MAX_CLASSES) return false;
    *out = (int)v;
    return true;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Class list: indices ("0".."max") or train's distinct names, sorted. */
static ct_status make_classes(csv_file *files, bool *numeric, char ***names_out, int *n_out) {
    *numeric = true;
    int max = -1, v;
    for (int k = 0; k < 3; k++)
        for (int64_t i = 0; i < files[k].n; i++) {
            if (!parse_index(files[k].rows[i].label, &v)) *numeric = false;
            else if (v > max) max = v;
        }
    if (*numeric) {
        char **names = calloc((size_t)max + 1, sizeof *names);
        if (!names) return ct_set_error(CT_ERR_NOMEM, "%s: no memory", files[0].path);
        for (int c = 0; c <= max; c++) {
            char buf[16];
            snprintf(buf, sizeof buf, "%d", c);
            if (!(names[c] = strdup(buf))) {
                ct_strv_free(names, c);
                return ct_set_error(CT_ERR_NOMEM, "%s: no memory", files[0].path);
            }
        }
        *names_out = names;
        *n_out = max + 1;
        return CT_OK;
    }
    int64_t n = files[0].n;
    const char **all = malloc((size_t)(n ? n : 1) * sizeof *all);
    if (!all) return ct_set_error(CT_ERR_NOMEM, "%s: no memory", files[0].path);
    for (int64_t i = 0; i < n; i++) all[i] = files[0].rows[i].label;
    qsort(all, (size_t)n, sizeof *all, cmp_str);
    int64_t u = 0;
    for (int64_t i = 0; i < n; i++)
        if (u == 0 || strcmp(all[u - 1], all[i]) != 0) all[u++] = all[i];
    ct_status s = CT_OK;
    if (u > CT_DATA_MAX_CLASSES)
        s = ct_set_error(CT_ERR_FORMAT, "%s: %lld class names exceed the limit of %d",
                         files[0].path, (long long)u, CT_DATA_MAX_CLASSES);
    char **names = s == CT_OK ? ct_strv_dup((char *const *)all, (int)u) : NULL;
    if (s == CT_OK && !names) s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", files[0].path);
    free(all);
    *names_out = names;
    *n_out = s == CT_OK ? (int)u : 0;
    return s;
}

/* Items of one file, labels resolved, image files checked. */
static ct_status make_items(const csv_file *f, bool numeric, char **names, int n_classes,
                            const char *root, int64_t *n_missing, char *missing, size_t mlen,
                            ct_item_vec *items) {
    char full[PATH_BUF];
    for (int64_t i = 0; i < f->n; i++) {
        const row *r = &f->rows[i];
        int label = -1;
        if (numeric) {
            parse_index(r->label, &label);
        } else {
            char **hit = bsearch(&r->label, names, (size_t)n_classes, sizeof *names, cmp_str);
            if (!hit)
                return ct_set_error(CT_ERR_FORMAT, "%s:%d: class '%s' does not occur in the "
                                    "training file", f->path, r->line, r->label);
            label = (int)(hit - names);
        }
        if (!ct_data_join(full, sizeof full, root, r->path))
            return ct_set_error(CT_ERR_FORMAT, "%s:%d: path too long", f->path, r->line);
        if (!ct_data_is_file(full) && (*n_missing)++ == 0)
            snprintf(missing, mlen, "%s:%d: image file '%s' does not exist", f->path, r->line,
                     full);
        ct_status s = ct_item_vec_push(items, r->path, 0, label);
        if (s != CT_OK) return s;
    }
    return CT_OK;
}

ct_status ct_data_open_csv(const char *file, const char *root, ct_splits *out) {
    memset(out, 0, sizeof *out);
    csv_file files[3]; /* train, val, test */
    memset(files, 0, sizeof files);
    char *stem_path = NULL, *dir = NULL, *name = NULL, **names = NULL;
    int n_classes = 0;
    ct_item_vec items[3] = {{0}, {0}, {0}};
    ct_dataset *all = NULL;
    char other[PATH_BUF], missing[PATH_BUF + 256];
    int64_t n_missing = 0;
    bool numeric = false;

    size_t len = strlen(file);
    bool dotcsv = len > 4 && strcmp(file + len - 4, ".csv") == 0;
    ct_status s = CT_OK;
    if (!(stem_path = strndup(file, dotcsv ? len - 4 : len)) || !(dir = ct_data_dirname(file)) ||
        !(name = ct_data_stem(file, ".csv")))
        s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", file);
    if (s == CT_OK) s = read_csv(file, false, &files[0]);
    for (int k = 1; k < 3 && s == CT_OK; k++) {
        int n = snprintf(other, sizeof other, "%s.%s.csv", stem_path, k == 1 ? "val" : "test");
        if (n < 0 || (size_t)n >= sizeof other)
            s = ct_set_error(CT_ERR_ARG, "%s: path too long", file);
        else
            s = read_csv(other, true, &files[k]);
    }
    if (s == CT_OK && files[1].path && !files[2].path)
        s = ct_set_error(CT_ERR_FORMAT, "%s exists but %s.test.csv does not (give both, only "
                         "the test file, or neither)", files[1].path, stem_path);
    if (s == CT_OK && files[0].n == 0)
        s = ct_set_error(CT_ERR_FORMAT, "%s: no rows", file);
    if (s == CT_OK) s = make_classes(files, &numeric, &names, &n_classes);
    if (s == CT_OK)
        s = ct_classnames_apply(dir, n_classes, names, NULL);
    for (int k = 0; k < 3 && s == CT_OK; k++)
        s = make_items(&files[k], numeric, names, n_classes, root, &n_missing, missing,
                       sizeof missing, &items[k]);
    if (s == CT_OK && n_missing)
        s = ct_set_error(CT_ERR_IO, "%s (%lld image%s missing in all; paths are relative to "
                         "'%s')", missing, (long long)n_missing, n_missing == 1 ? "" : "s", root);
    if (s == CT_OK && !(all = ct_dataset_build(name, root, n_classes, names, NULL, &items[0])))
        s = CT_ERR_NOMEM;
    if (s == CT_OK) s = ct_dataset_check_nonempty(all, file);
    if (s == CT_OK && !files[2].path) {
        s = ct_dataset_holdout(all, 10, 10, &out->train, &out->val, &out->test);
    } else if (s == CT_OK) {
        if (files[1].path) {
            out->train = all;
            all = NULL;
            if (items[1].n &&
                !(out->val = ct_dataset_build(name, root, n_classes, names, NULL, &items[1])))
                s = CT_ERR_NOMEM;
        } else {
            s = ct_dataset_holdout(all, 10, 0, &out->train, &out->val, NULL);
        }
        if (s == CT_OK &&
            !(out->test = ct_dataset_build(name, root, n_classes, names, NULL, &items[2])))
            s = CT_ERR_NOMEM;
    }
    ct_dataset_free(all);
    for (int k = 0; k < 3; k++) {
        ct_item_vec_free(&items[k]);
        free_csv(&files[k]);
    }
    ct_strv_free(names, n_classes);
    free(stem_path);
    free(dir);
    free(name);
    if (s != CT_OK) ct_splits_free(out);
    return s;
}
