/* mlcsv:TRAIN.csv[,VAL.csv],TEST.csv[@ROOT] — multi-label CSV files (the
 * scenes set's labels_{train,val,test}.csv):
 *
 *   path,labels                    <- optional header (csv:'s header words)
 *   JPEGImages/000001.jpg,bag;coat <- present classes, ';'-separated
 *   JPEGImages/000002.jpg,coat;?bag   '?name': unknown for this image
 *   JPEGImages/000003.jpg,         <- nothing present
 *
 * Paths are relative to ROOT (default: the first file's folder). One file
 * is split 80/10/10, two are train and test (10% of train held out as
 * val), three are train, val and test. Classes are the sorted union of the
 * names in all files; readable names are the names with '_' read as a
 * space, unless classnames.txt beside the first file says otherwise. Fields
 * are quoted as in csv: (csv.c). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "data/dataset.h"

#define PATH_BUF 4096

typedef struct tok {
    const char *name;
    bool unknown;
} tok;

typedef struct mrow {
    const char *path;
    int64_t tok0, n_tok; /* into the file's tokens */
    int line;
} mrow;

typedef struct mfile {
    const char *path;
    char *text;
    mrow *rows;
    int64_t n;
    tok *toks;
    int64_t n_toks;
} mfile;

static char *trim(char *s) {
    while (*s && isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

/* Split a labels field (in place) into f's tokens. */
static ct_status split_labels(mfile *f, char *labels, int line, mrow *r) {
    r->tok0 = f->n_toks;
    r->n_tok = 0;
    if (!*trim(labels)) return CT_OK;
    for (char *p = labels;;) {
        char *semi = strchr(p, ';');
        if (semi) *semi = 0;
        char *t = trim(p);
        bool unknown = *t == '?';
        if (unknown) t = trim(t + 1);
        if (!*t)
            return ct_set_error(CT_ERR_FORMAT, "%s:%d: an empty label%s (labels are "
                                "'name;name;?name')", f->path, line, unknown ? " after '?'" : "");
        f->toks[f->n_toks++] = (tok){t, unknown};
        r->n_tok++;
        if (!semi) break;
        p = semi + 1;
    }
    return CT_OK;
}

static ct_status read_file(const char *path, mfile *f) {
    memset(f, 0, sizeof *f);
    f->path = path;
    size_t size;
    ct_status s = ct_read_file(path, &f->text, &size);
    if (s != CT_OK) return s;
    if (memchr(f->text, 0, size))
        return ct_set_error(CT_ERR_FORMAT, "%s: contains a NUL byte", path);
    /* every row has at most one token per ';' plus one */
    int64_t n_lines = 1, n_semis = 0;
    for (size_t i = 0; i < size; i++) {
        n_lines += f->text[i] == '\n';
        n_semis += f->text[i] == ';';
    }
    f->rows = malloc((size_t)n_lines * sizeof *f->rows);
    f->toks = malloc((size_t)(n_lines + n_semis) * sizeof *f->toks);
    if (!f->rows || !f->toks) return ct_set_error(CT_ERR_NOMEM, "%s: no memory", path);
    ct_csv_rows rows;
    ct_csv_rows_init(&rows, f->text, size, path, "path,labels");
    char *a, *b;
    int line, got;
    while ((got = ct_csv_rows_next(&rows, &a, &b, &line)) > 0) {
        if (!a[0]) return ct_set_error(CT_ERR_FORMAT, "%s:%d: empty path", path, line);
        mrow *r = &f->rows[f->n++];
        r->path = a;
        r->line = line;
        if ((s = split_labels(f, b, line, r)) != CT_OK) return s;
    }
    return got < 0 ? CT_ERR_FORMAT : CT_OK;
}

static void free_file(mfile *f) {
    free(f->text);
    free(f->rows);
    free(f->toks);
    memset(f, 0, sizeof *f);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted union of every file's names (pointing into the files). */
static ct_status make_classes(const mfile *files, int n_files, const char ***out, int *n_out) {
    int64_t total = 0;
    for (int k = 0; k < n_files; k++) total += files[k].n_toks;
    const char **v = malloc((size_t)(total ? total : 1) * sizeof *v);
    if (!v) return ct_set_error(CT_ERR_NOMEM, "%s: no memory", files[0].path);
    int64_t n = 0, u = 0;
    for (int k = 0; k < n_files; k++)
        for (int64_t t = 0; t < files[k].n_toks; t++) v[n++] = files[k].toks[t].name;
    qsort(v, (size_t)n, sizeof *v, cmp_str);
    for (int64_t i = 0; i < n; i++)
        if (u == 0 || strcmp(v[u - 1], v[i]) != 0) v[u++] = v[i];
    if (u == 0 || u > CT_DATA_MAX_CLASSES) {
        free(v);
        if (u == 0)
            return ct_set_error(CT_ERR_FORMAT, "%s: no labels in any file (no classes)",
                                files[0].path);
        return ct_set_error(CT_ERR_FORMAT, "%s: %lld class names exceed the limit of %d",
                            files[0].path, (long long)u, CT_DATA_MAX_CLASSES);
    }
    *out = v;
    *n_out = (int)u;
    return CT_OK;
}

static ct_status make_items(const mfile *f, const char **ids, int n_classes, const char *root,
                            int64_t *n_missing, char *missing, size_t mlen, ct_ml_vec *v) {
    int8_t *row = malloc((size_t)n_classes);
    if (!row) return ct_set_error(CT_ERR_NOMEM, "%s: no memory", f->path);
    char full[PATH_BUF];
    ct_status s = CT_OK;
    for (int64_t i = 0; i < f->n && s == CT_OK; i++) {
        const mrow *r = &f->rows[i];
        memset(row, 0, (size_t)n_classes);
        for (int64_t t = 0; t < r->n_tok && s == CT_OK; t++) {
            const tok *tk = &f->toks[r->tok0 + t];
            const char **hit = bsearch(&tk->name, ids, (size_t)n_classes, sizeof *ids, cmp_str);
            int8_t want = tk->unknown ? -1 : 1;
            if (row[hit - ids] == -want)
                s = ct_set_error(CT_ERR_FORMAT, "%s:%d: '%s' is both present and unknown ('?')",
                                 f->path, r->line, tk->name);
            row[hit - ids] = want;
        }
        if (s != CT_OK) break;
        if (!ct_data_join(full, sizeof full, root, r->path)) {
            s = ct_set_error(CT_ERR_FORMAT, "%s:%d: path too long", f->path, r->line);
            break;
        }
        if (!ct_data_is_file(full) && (*n_missing)++ == 0)
            snprintf(missing, mlen, "%s:%d: image file '%s' does not exist", f->path, r->line,
                     full);
        s = ct_ml_vec_push(v, r->path, row);
    }
    free(row);
    return s;
}

ct_status ct_data_open_mlcsv(char *const *paths, int n_files, const char *root, ct_splits *out) {
    memset(out, 0, sizeof *out);
    if (n_files < 1 || n_files > 3)
        return ct_set_error(CT_ERR_ARG, "mlcsv: %d files; expected 1 (split 80/10/10), 2 (train,"
                            " test) or 3 (train, val, test)", n_files);
    mfile files[3];
    memset(files, 0, sizeof files);
    ct_ml_vec v[3];
    memset(v, 0, sizeof v);
    const char **ids = NULL;
    char **names = NULL, *dir = NULL, *name = NULL;
    int n_classes = 0;
    int64_t n_missing = 0;
    char missing[PATH_BUF + 256];
    /* file k of the spec feeds split slot[k] */
    static const int SLOTS[4][3] = {{0}, {0}, {0, 2}, {0, 1, 2}};
    ct_status s = CT_OK;
    for (int k = 0; k < n_files && s == CT_OK; k++) s = read_file(paths[k], &files[k]);
    if (s == CT_OK) s = make_classes(files, n_files, &ids, &n_classes);
    for (int k = 0; k < 3; k++) v[k].n_classes = n_classes;
    for (int k = 0; k < n_files && s == CT_OK; k++)
        s = make_items(&files[k], ids, n_classes, root, &n_missing, missing, sizeof missing,
                       &v[SLOTS[n_files][k]]);
    if (s == CT_OK && n_missing)
        s = ct_set_error(CT_ERR_IO, "%s (%lld image%s missing in all; paths are relative to "
                         "'%s')", missing, (long long)n_missing, n_missing == 1 ? "" : "s", root);
    if (s == CT_OK && (!(names = ct_strv_dup((char *const *)ids, n_classes)) ||
                       !(dir = ct_data_dirname(paths[0])) ||
                       !(name = ct_data_stem(paths[0], ".csv"))))
        s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", paths[0]);
    if (s == CT_OK) {
        ct_ml_underscores(names, n_classes);
        s = ct_classnames_apply(dir, n_classes, names, ids);
    }
    if (s == CT_OK) s = ct_ml_splits(name, root, names, v, n_files == 3, n_files >= 2, paths[0], out);
    for (int k = 0; k < 3; k++) {
        ct_ml_vec_free(&v[k]);
        free_file(&files[k]);
    }
    free(ids);
    ct_strv_free(names, names ? n_classes : 0);
    free(dir);
    free(name);
    if (s != CT_OK) ct_splits_free(out);
    return s;
}
