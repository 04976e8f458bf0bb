/* fgvc-aircraft:ROOT — FGVC-Aircraft in its own files, as CoOp's
 * datasets/fgvc_aircraft.py reads them from its fgvc_aircraft folder (the
 * archive's data/ folder):
 *
 *   ROOT/variants.txt                      the 100 variants, one a line: the
 *                                          classes, in that order
 *   ROOT/images_variant_{train,val,test}.txt  "<image id> <variant>" lines
 *   ROOT/images/<image id>.jpg
 *
 * The variant is the rest of the line after the first space (names such as
 * "Cessna 172" and "F-16A/B" hold spaces and slashes). Stricter than CoOp,
 * which stops at a KeyError or a missing file: a variant not in
 * variants.txt, a line without one and missing images are errors naming the
 * file and line, and every variant needs a training image. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "data/dataset.h"

#define PATH_BUF 4096

/* The next line of *p (NUL-terminated, trimmed) or NULL at the end. */
static char *next_line(char **p, int *lineno) {
    if (!**p) return NULL;
    char *line = *p, *e = strchr(line, '\n');
    if (e) *e = 0, *p = e + 1;
    else *p = line + strlen(line);
    (*lineno)++;
    while (*line && isspace((unsigned char)*line)) line++;
    char *end = line + strlen(line);
    while (end > line && isspace((unsigned char)end[-1])) *--end = 0;
    return line;
}

static char *skip_bom(char *text, size_t size) {
    return size >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3) ? text + 3 : text;
}

ct_status ct_fgvc_parse_variants(const char *file, char *text, size_t size, char ***out,
                                 int *n) {
    *out = NULL, *n = 0;
    if (memchr(text, 0, size)) return ct_set_error(CT_ERR_FORMAT, "%s: contains a NUL byte", file);
    char *p = skip_bom(text, size), *line;
    int count = 0, lineno = 0, cap = 0;
    char **v = NULL;
    int *at = NULL;
    ct_status s = CT_OK;
    while (s == CT_OK && (line = next_line(&p, &lineno)) != NULL) {
        if (!*line) continue;
        for (int i = 0; s == CT_OK && i < count; i++)
            if (!strcmp(v[i], line))
                s = ct_set_error(CT_ERR_FORMAT, "%s:%d: variant '%s' repeats line %d", file,
                                 lineno, line, at[i]);
        if (s == CT_OK && count == CT_DATA_MAX_CLASSES)
            s = ct_set_error(CT_ERR_FORMAT, "%s:%d: more than %d variants", file, lineno,
                             CT_DATA_MAX_CLASSES);
        if (s == CT_OK && count == cap) {
            cap = cap ? 2 * cap : 128;
            char **nv = realloc(v, (size_t)cap * sizeof *nv);
            int *na = nv ? realloc(at, (size_t)cap * sizeof *na) : NULL;
            if (nv) v = nv;
            if (na) at = na;
            if (!nv || !na) s = ct_set_error(CT_ERR_NOMEM, "%s: out of memory", file);
        }
        if (s == CT_OK && !(v[count] = strdup(line)))
            s = ct_set_error(CT_ERR_NOMEM, "%s: out of memory", file);
        if (s == CT_OK) at[count++] = lineno;
    }
    if (s == CT_OK && count == 0) s = ct_set_error(CT_ERR_FORMAT, "%s: no variants", file);
    free(at);
    if (s != CT_OK) {
        ct_strv_free(v, count);
        return s;
    }
    *out = v, *n = count;
    return CT_OK;
}

ct_status ct_fgvc_parse_list(const char *file, char *text, size_t size,
                             char *const *variants, int n_variants, ct_item_vec *items) {
    if (memchr(text, 0, size)) return ct_set_error(CT_ERR_FORMAT, "%s: contains a NUL byte", file);
    char *p = skip_bom(text, size), *line, path[PATH_BUF];
    int lineno = 0;
    while ((line = next_line(&p, &lineno)) != NULL) {
        if (!*line) continue;
        char *sp = strchr(line, ' ');
        if (!sp || sp == line || !sp[1])
            return ct_set_error(CT_ERR_FORMAT, "%s:%d: expected \"<image id> <variant>\", got "
                                "'%s'", file, lineno, line);
        *sp = 0;
        const char *id = line, *variant = sp + 1;
        if (strchr(id, '/') || strchr(id, '\t') || !strcmp(id, "..") || !strcmp(id, "."))
            return ct_set_error(CT_ERR_FORMAT, "%s:%d: image id '%s' is not a file name", file,
                                lineno, id);
        int label = -1;
        for (int k = 0; k < n_variants && label < 0; k++)
            if (!strcmp(variants[k], variant)) label = k;
        if (label < 0)
            return ct_set_error(CT_ERR_FORMAT, "%s:%d: variant '%s' is not in variants.txt", file,
                                lineno, variant);
        int k = snprintf(path, sizeof path, "images/%s.jpg", id);
        if (k < 0 || (size_t)k >= sizeof path)
            return ct_set_error(CT_ERR_FORMAT, "%s:%d: image id too long", file, lineno);
        ct_status s = ct_item_vec_push(items, path, 0, label);
        if (s != CT_OK) return s;
    }
    return CT_OK;
}

/* ROOT/name read whole (error naming it when missing). */
static ct_status read_text(const char *root, const char *name, char *path, size_t n, char **text,
                           size_t *size) {
    if (!ct_data_join(path, n, root, name))
        return ct_set_error(CT_ERR_ARG, "%s: path too long", root);
    if (!ct_data_is_file(path))
        return ct_set_error(CT_ERR_IO, "%s: missing (fgvc-aircraft:ROOT reads FGVC-Aircraft's "
                            "variants.txt, images_variant_{train,val,test}.txt and images/ "
                            "there: the archive's data/ folder)", path);
    return ct_read_file(path, text, size);
}

ct_status ct_data_open_fgvc_aircraft(const char *root, ct_splits *out) {
    memset(out, 0, sizeof *out);
    if (!ct_data_is_dir(root))
        return ct_set_error(CT_ERR_IO, "%s: not a directory (fgvc-aircraft:ROOT)", root);
    static const char *const LIST[3] = {"images_variant_train.txt", "images_variant_val.txt",
                                        "images_variant_test.txt"};
    char path[PATH_BUF], full[PATH_BUF];
    char *text = NULL;
    size_t size = 0;
    char **variants = NULL;
    int nv = 0;
    ct_item_vec items[3] = {{0}, {0}, {0}};
    ct_status s = read_text(root, "variants.txt", path, sizeof path, &text, &size);
    if (s == CT_OK) s = ct_fgvc_parse_variants(path, text, size, &variants, &nv);
    free(text), text = NULL;
    for (int sp = 0; sp < 3 && s == CT_OK; sp++) {
        s = read_text(root, LIST[sp], path, sizeof path, &text, &size);
        if (s == CT_OK) s = ct_fgvc_parse_list(path, text, size, variants, nv, &items[sp]);
        free(text), text = NULL;
        /* count the missing images, name the first: where to look and how many */
        int64_t missing = 0, first = -1;
        for (int64_t i = 0; s == CT_OK && i < items[sp].n; i++) {
            if (!ct_data_join(full, sizeof full, root, items[sp].items[i].path))
                s = ct_set_error(CT_ERR_ARG, "%s: path too long", root);
            else if (!ct_data_is_file(full) && missing++ == 0)
                first = i;
        }
        if (s == CT_OK && missing) {
            ct_data_join(full, sizeof full, root, items[sp].items[first].path);
            s = ct_set_error(CT_ERR_IO, "%s: image '%s' does not exist (%lld of its images "
                             "missing)", path, full, (long long)missing);
        }
        if (s == CT_OK && sp != 1 && items[sp].n == 0)
            s = ct_set_error(CT_ERR_FORMAT, "%s: no images listed", path);
    }
    ct_dataset **dst[3] = {&out->train, &out->val, &out->test};
    for (int sp = 0; sp < 3 && s == CT_OK; sp++) {
        if (sp == 1 && items[sp].n == 0) continue;
        if (!(*dst[sp] = ct_dataset_build("FGVCAircraft", root, nv, variants, NULL, &items[sp])))
            s = CT_ERR_NOMEM;
    }
    if (s == CT_OK) {
        ct_data_join(path, sizeof path, root, LIST[0]);
        s = ct_dataset_check_nonempty(out->train, path);
    }
    for (int sp = 0; sp < 3; sp++) ct_item_vec_free(&items[sp]);
    ct_strv_free(variants, nv);
    if (s != CT_OK) ct_splits_free(out);
    return s;
}
