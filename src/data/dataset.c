/* Dataset core: ownership (datasets, splits, the shared pixel store), item
 * decoding and keys, classnames.txt, and the spec dispatch of ct_data_open.
 * The loaders for each spec form live in their own files. */
#include "data/dataset.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "base/error.h"
#include "cliptune.h"

#define PATH_BUF 4096

/* ------------------------------------------------------------------------ */
/* Pixel store                                                               */
/* ------------------------------------------------------------------------ */

ct_pixel_store *ct_pixel_store_new(const char *name, int64_t n, int h, int w, int c) {
    if (n < 0 || h < 1 || w < 1 || c < 1 || c > 4 || h > CT_IMAGE_MAX_SIDE ||
        w > CT_IMAGE_MAX_SIDE) {
        ct_set_error(CT_ERR_ARG, "%s: invalid pixel store shape (%lld, %d, %d, %d)",
                     name ? name : "dataset", (long long)n, h, w, c);
        return NULL;
    }
    size_t stride = (size_t)h * (size_t)w * (size_t)c, bytes;
    if ((uint64_t)n > SIZE_MAX || !ct_mul_size(stride, (size_t)n, &bytes)) {
        ct_set_error(CT_ERR_NOMEM, "%s: %lld images of %dx%dx%d overflow memory",
                     name ? name : "dataset", (long long)n, h, w, c);
        return NULL;
    }
    ct_pixel_store *p = calloc(1, sizeof *p);
    char *nm = strdup(name ? name : "");
    /* Never malloc(0): data stays non-NULL for an empty store. */
    uint8_t *data = malloc(bytes ? bytes : 1);
    if (!p || !nm || !data) {
        free(p);
        free(nm);
        free(data);
        ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate %zu bytes of pixels",
                     name ? name : "dataset", bytes);
        return NULL;
    }
    atomic_init(&p->refs, 1);
    p->name = nm;
    p->n = n;
    p->h = h;
    p->w = w;
    p->c = c;
    p->data = data;
    return p;
}

ct_pixel_store *ct_pixel_store_retain(ct_pixel_store *p) {
    if (p) atomic_fetch_add(&p->refs, 1);
    return p;
}

void ct_pixel_store_release(ct_pixel_store *p) {
    if (!p || atomic_fetch_sub(&p->refs, 1) != 1) return;
    free(p->name);
    free(p->data);
    free(p);
}

/* ------------------------------------------------------------------------ */
/* Item vectors, string vectors                                              */
/* ------------------------------------------------------------------------ */

ct_status ct_item_vec_push(ct_item_vec *v, const char *path, int64_t index, int label) {
    if (v->n == v->cap) {
        int64_t cap = v->cap ? v->cap * 2 : 64;
        size_t bytes;
        if (!ct_mul_size((size_t)cap, sizeof *v->items, &bytes))
            return ct_set_error(CT_ERR_NOMEM, "dataset: too many items");
        ct_item *items = realloc(v->items, bytes);
        if (!items) return ct_set_error(CT_ERR_NOMEM, "dataset: cannot grow the item list");
        v->items = items;
        v->cap = cap;
    }
    char *p = NULL;
    if (path && !(p = strdup(path)))
        return ct_set_error(CT_ERR_NOMEM, "dataset: cannot copy a path");
    v->items[v->n++] = (ct_item){.path = p, .index = index, .label = label};
    return CT_OK;
}

void ct_item_vec_free(ct_item_vec *v) {
    if (!v) return;
    for (int64_t i = 0; i < v->n; i++) free(v->items[i].path);
    free(v->items);
    memset(v, 0, sizeof *v);
}

char **ct_strv_dup(char *const *v, int n) {
    char **out = calloc(n > 0 ? (size_t)n : 1, sizeof *out);
    if (!out) return NULL;
    for (int i = 0; i < n; i++) {
        if (!(out[i] = strdup(v[i]))) {
            ct_strv_free(out, i);
            return NULL;
        }
    }
    return out;
}

void ct_strv_free(char **v, int n) {
    if (!v) return;
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* ------------------------------------------------------------------------ */
/* Datasets and splits                                                       */
/* ------------------------------------------------------------------------ */

/* Offset of the first byte that does not start or continue a well-formed
 * UTF-8 sequence (no overlongs, surrogates or code points above U+10FFFF),
 * or -1 when s is valid. */
static long utf8_bad_at(const char *str) {
    const unsigned char *s = (const unsigned char *)str;
    for (long i = 0; s[i];) {
        unsigned c = s[i];
        int n = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2
                : (c & 0xF8) == 0xF0 ? 3 : -1;
        if (n < 0 || (n == 1 && c < 0xC2)) return i;
        unsigned cp = n == 0 ? c : c & (0x3F >> n);
        for (int k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return i;
        i += n + 1;
    }
    return -1;
}

ct_dataset *ct_dataset_build(const char *name, const char *root, int n_classes,
                             char *const *classnames, ct_pixel_store *pixels, ct_item_vec *items) {
    /* class names end up in JSON (config.json, metrics.json) and reports:
     * they must be text */
    for (int k = 0; k < n_classes; k++) {
        long at = classnames && classnames[k] ? utf8_bad_at(classnames[k]) : -1;
        if (at >= 0) {
            ct_set_error(CT_ERR_FORMAT, "%s%s%s: class name %d is not UTF-8 text (byte 0x%02x at "
                         "offset %ld); rename the folder or label", name ? name : "dataset",
                         root && *root ? " at " : "", root ? root : "", k,
                         (unsigned char)classnames[k][at], at);
            return NULL;
        }
    }
    ct_dataset *d = calloc(1, sizeof *d);
    if (!d || !(d->name = strdup(name ? name : "")) || !(d->root = strdup(root ? root : "")) ||
        !(d->classnames = ct_strv_dup(classnames, n_classes))) {
        ct_dataset_free(d);
        ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate the dataset", name ? name : "dataset");
        return NULL;
    }
    d->n_classes = n_classes;
    d->items = items->items;
    d->n_items = items->n;
    memset(items, 0, sizeof *items);
    d->pixels = ct_pixel_store_retain(pixels);
    return d;
}

struct ct_data_sources *ct_data_sources_retain(struct ct_data_sources *s) {
    if (s) atomic_fetch_add(&s->refs, 1);
    return s;
}

void ct_data_sources_release(struct ct_data_sources *s) {
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1) return;
    for (int t = 0; t < s->n; t++) ct_dataset_free(s->parts[t]);
    free(s->parts);
    free(s);
}

ct_dataset *ct_dataset_merge(const ct_dataset *const *parts, int n, const char *name) {
    if (!parts || n < 1) {
        ct_set_error(CT_ERR_ARG, "ct_dataset_merge: no parts");
        return NULL;
    }
    int64_t items = 0;
    int K = 0;
    size_t nlen = 1;
    for (int t = 0; t < n; t++) {
        const ct_dataset *p = parts[t];
        if (!p) {
            ct_set_error(CT_ERR_ARG, "ct_dataset_merge: part %d is NULL", t);
            return NULL;
        }
        if (p->targets || p->masks) {
            ct_set_error(CT_ERR_UNSUPPORTED, "ct_dataset_merge: part %d (%s) is not single-label "
                         "classification", t, p->name);
            return NULL;
        }
        if (p->n_classes > CT_DATA_MAX_CLASSES - K) {
            ct_set_error(CT_ERR_ARG, "ct_dataset_merge: too many classes");
            return NULL;
        }
        K += p->n_classes, items += p->n_items, nlen += strlen(p->name) + 1;
    }
    struct ct_data_sources *src = calloc(1, sizeof *src);
    char **cn = calloc((size_t)(K ? K : 1), sizeof *cn);
    char *joined = malloc(nlen);
    int *which = malloc((size_t)(items ? items : 1) * sizeof *which);
    ct_item_vec v = {0};
    ct_dataset *out = NULL;
    ct_status s = src && cn && joined && which ? CT_OK
                                              : ct_set_error(CT_ERR_NOMEM, "ct_dataset_merge: "
                                                             "out of memory");
    if (s == CT_OK && !(src->parts = calloc((size_t)n, sizeof *src->parts)))
        s = ct_set_error(CT_ERR_NOMEM, "ct_dataset_merge: out of memory");
    if (s == CT_OK) {
        atomic_init(&src->refs, 1);
        src->n = n;
        joined[0] = 0;
    }
    for (int t = 0, off = 0; t < n && s == CT_OK; off += parts[t]->n_classes, t++) {
        const ct_dataset *p = parts[t];
        if (t) strcat(joined, "+");
        strcat(joined, p->name);
        if (!(src->parts[t] = ct_dataset_head(p, 0))) {
            s = CT_ERR_NOMEM;
            break;
        }
        for (int k = 0; k < p->n_classes; k++) cn[off + k] = p->classnames[k];
        for (int64_t i = 0; i < p->n_items && s == CT_OK; i++) {
            which[v.n] = t;
            s = ct_item_vec_push(&v, NULL, i, p->items[i].label + off);
        }
    }
    if (s == CT_OK)
        out = ct_dataset_build(name ? name : joined, "", K, cn, NULL, &v);
    if (out) {
        out->sources = src, out->item_source = which;
        src = NULL, which = NULL;
    }
    ct_item_vec_free(&v);
    ct_data_sources_release(src);
    free(which), free(cn), free(joined);
    return out;
}

void ct_dataset_free(ct_dataset *d) {
    if (!d) return;
    ct_data_sources_release(d->sources);
    free(d->item_source);
    for (int64_t i = 0; i < d->n_items; i++) free(d->items[i].path);
    free(d->items);
    free(d->targets);
    for (int64_t i = 0; d->masks && i < d->n_items; i++) free(d->masks[i]);
    free(d->masks);
    ct_strv_free(d->classnames, d->n_classes);
    ct_pixel_store_release(d->pixels);
    free(d->name);
    free(d->root);
    free(d);
}

void ct_splits_free(ct_splits *s) {
    if (!s) return;
    ct_dataset_free(s->train);
    ct_dataset_free(s->val);
    ct_dataset_free(s->test);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------------------ */
/* Paths                                                                     */
/* ------------------------------------------------------------------------ */

bool ct_data_join(char *buf, size_t n, const char *root, const char *path) {
    int k;
    if (path[0] == '/' || !root || !root[0])
        k = snprintf(buf, n, "%s", path);
    else
        k = snprintf(buf, n, "%s%s%s", root, root[strlen(root) - 1] == '/' ? "" : "/", path);
    return k >= 0 && (size_t)k < n;
}

bool ct_data_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

char *ct_data_stem(const char *path, const char *ext) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--; /* "dir/" names "dir" */
    size_t start = len;
    while (start > 0 && path[start - 1] != '/') start--;
    size_t end = len, el = ext ? strlen(ext) : 0;
    if (el && end - start > el && strncmp(path + end - el, ext, el) == 0) end -= el;
    return strndup(path + start, end - start);
}

char *ct_data_dirname(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* ------------------------------------------------------------------------ */
/* Decoding and keys                                                         */
/* ------------------------------------------------------------------------ */

ct_status ct_dataset_image(const ct_dataset *d, int64_t i, struct ct_image *out) {
    if (!out) return ct_set_error(CT_ERR_ARG, "ct_dataset_image: NULL output");
    memset(out, 0, sizeof *out);
    if (!d) return ct_set_error(CT_ERR_ARG, "ct_dataset_image: NULL dataset");
    if (i < 0 || i >= d->n_items)
        return ct_set_error(CT_ERR_ARG, "%s: item %lld out of range [0, %lld)", d->name,
                            (long long)i, (long long)d->n_items);
    const ct_item *it = &d->items[i];
    if (d->sources) {
        int t = d->item_source[i];
        if (t < 0 || t >= d->sources->n)
            return ct_set_error(CT_ERR_ARG, "%s: item %lld: part %d out of range", d->name,
                                (long long)i, t);
        return ct_dataset_image(d->sources->parts[t], it->index, out);
    }
    if (it->path) {
        char path[PATH_BUF];
        if (!ct_data_join(path, sizeof path, d->root, it->path))
            return ct_set_error(CT_ERR_ARG, "%s: item %lld: path '%s' under '%s' is too long",
                                d->name, (long long)i, it->path, d->root);
        return ct_image_load(path, out);
    }
    const ct_pixel_store *p = d->pixels;
    if (!p || it->index < 0 || it->index >= p->n)
        return ct_set_error(CT_ERR_ARG, "%s: item %lld: pixel row %lld out of range [0, %lld)",
                            d->name, (long long)i, (long long)it->index,
                            (long long)(p ? p->n : 0));
    return ct_image_from_pixels(p->data + (size_t)it->index * ct_pixel_store_stride(p), p->w,
                                p->h, p->c, out);
}

const char *ct_dataset_item_key(const ct_dataset *d, int64_t i, char *buf, size_t n) {
    if (!d || !buf || n == 0) {
        ct_set_error(CT_ERR_ARG, "ct_dataset_item_key: NULL dataset or buffer");
        return NULL;
    }
    if (i < 0 || i >= d->n_items) {
        ct_set_error(CT_ERR_ARG, "%s: item %lld out of range [0, %lld)", d->name, (long long)i,
                     (long long)d->n_items);
        return NULL;
    }
    const ct_item *it = &d->items[i];
    if (d->sources) { /* a merged item is its part's item */
        int t = d->item_source[i];
        if (t < 0 || t >= d->sources->n) {
            ct_set_error(CT_ERR_ARG, "%s: item %lld: part %d out of range", d->name, (long long)i,
                         t);
            return NULL;
        }
        return ct_dataset_item_key(d->sources->parts[t], it->index, buf, n);
    }
    /* In-memory rows are named after their store, not the dataset: train
     * and test of one source share a dataset name but not a store. */
    int k = it->path ? snprintf(buf, n, "%s", it->path)
                     : snprintf(buf, n, "%s#%lld", d->pixels ? d->pixels->name : d->name,
                                (long long)it->index);
    if (k < 0 || (size_t)k >= n) {
        /* A truncated key could collide with another item's in a cache. */
        ct_set_error(CT_ERR_ARG, "%s: item %lld: key needs %d bytes, buffer has %zu", d->name,
                     (long long)i, k + 1, n);
        return NULL;
    }
    return buf;
}

/* ------------------------------------------------------------------------ */
/* classnames.txt                                                            */
/* ------------------------------------------------------------------------ */

typedef struct cn_line {
    const char *key; /* wnid, or NULL in positional files */
    const char *name;
    int line;
} cn_line;

static bool is_wnid(const char *s, size_t len) {
    if (len != 9 || s[0] != 'n') return false;
    for (size_t i = 1; i < 9; i++)
        if (!isdigit((unsigned char)s[i])) return false;
    return true;
}

static int cmp_key(const void *a, const void *b) {
    const cn_line *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* Split text (modified in place) into trimmed non-empty lines, detecting the
 * "wnid name" form from the first one. */
static ct_status cn_parse(const char *path, char *text, size_t size, cn_line **out, int *count) {
    *out = NULL;
    *count = 0;
    if (memchr(text, 0, size))
        return ct_set_error(CT_ERR_FORMAT, "%s: contains a NUL byte", path);
    if (size >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) text += 3; /* UTF-8 BOM */
    int n_lines = 1;
    for (const char *p = text; *p; p++) n_lines += *p == '\n';
    cn_line *lines = calloc((size_t)n_lines, sizeof *lines);
    if (!lines) return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate %d lines", path, n_lines);
    int n = 0, lineno = 0, keyed = -1;
    char *p = text;
    while (*p) {
        lineno++;
        char *e = strchr(p, '\n'), *next = e ? e + 1 : p + strlen(p);
        if (e) *e = 0;
        while (*p && isspace((unsigned char)*p)) p++;
        char *end = p + strlen(p);
        while (end > p && isspace((unsigned char)end[-1])) *--end = 0;
        if (*p) {
            size_t tok = strcspn(p, " \t");
            bool wnid = is_wnid(p, tok);
            if (keyed < 0) keyed = wnid;
            if (keyed && !wnid) {
                free(lines);
                return ct_set_error(CT_ERR_FORMAT, "%s:%d: expected \"wnid name\" like the "
                                    "first line, got '%s'", path, lineno, p);
            }
            cn_line *l = &lines[n++];
            l->line = lineno;
            if (keyed) {
                char *name = p + tok;
                if (*name) *name++ = 0;
                while (*name && isspace((unsigned char)*name)) name++;
                if (!*name) {
                    free(lines);
                    return ct_set_error(CT_ERR_FORMAT, "%s:%d: wnid '%s' has no class name",
                                        path, lineno, p);
                }
                l->key = p;
                l->name = name;
            } else {
                l->name = p;
            }
        }
        p = next;
    }
    *out = lines;
    *count = n;
    return CT_OK;
}

ct_status ct_classnames_read(const char *dir, char ***names, int *n, bool *keyed) {
    *names = NULL;
    *n = -1;
    *keyed = false;
    char path[PATH_BUF];
    if (!ct_data_join(path, sizeof path, dir, "classnames.txt"))
        return ct_set_error(CT_ERR_ARG, "%s: directory name too long", dir);
    if (!ct_data_is_file(path)) return CT_OK;
    char *text;
    size_t size;
    ct_status s = ct_read_file(path, &text, &size);
    if (s != CT_OK) return s;
    cn_line *lines;
    int count;
    s = cn_parse(path, text, size, &lines, &count);
    char **v = s == CT_OK ? calloc(count ? (size_t)count : 1, sizeof *v) : NULL;
    if (s == CT_OK && !v) s = ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate", path);
    for (int i = 0; s == CT_OK && i < count; i++)
        if (!(v[i] = strdup(lines[i].name))) {
            ct_strv_free(v, i);
            v = NULL;
            s = ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate", path);
        }
    if (s == CT_OK) {
        *names = v;
        *n = count;
        *keyed = count > 0 && lines[0].key;
    }
    free(lines);
    free(text);
    return s;
}

ct_status ct_classnames_read_wnids(const char *path, const char *what, char ***wnids,
                                   char ***names, int *n) {
    *wnids = *names = NULL;
    *n = 0;
    if (!ct_data_is_file(path))
        return ct_set_error(CT_ERR_IO, "%s: missing: %s needs ImageNet's class names, one "
                            "\"wnid name\" line per class as CoOp ships it (copy "
                            "imagenet/classnames.txt there)", path, what);
    char *text;
    size_t size;
    ct_status s = ct_read_file(path, &text, &size);
    if (s != CT_OK) return s;
    cn_line *lines = NULL;
    int count = 0;
    s = cn_parse(path, text, size, &lines, &count);
    if (s == CT_OK && count == 0) s = ct_set_error(CT_ERR_FORMAT, "%s: no class names", path);
    if (s == CT_OK && !lines[0].key)
        s = ct_set_error(CT_ERR_FORMAT, "%s:%d: expected \"wnid name\" lines (e.g. "
                         "\"n01440764 tench\"), got '%s'", path, lines[0].line, lines[0].name);
    char **k = s == CT_OK ? calloc((size_t)count, sizeof *k) : NULL;
    char **v = s == CT_OK ? calloc((size_t)count, sizeof *v) : NULL;
    if (s == CT_OK && (!k || !v)) s = ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate", path);
    for (int i = 0; s == CT_OK && i < count; i++)
        if (!(k[i] = strdup(lines[i].key)) || !(v[i] = strdup(lines[i].name)))
            s = ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate", path);
    if (s == CT_OK) { /* a repeated wnid: which name would a folder get? */
        qsort(lines, (size_t)count, sizeof *lines, cmp_key);
        for (int i = 1; s == CT_OK && i < count; i++)
            if (strcmp(lines[i - 1].key, lines[i].key) == 0)
                s = ct_set_error(CT_ERR_FORMAT, "%s:%d: wnid '%s' repeats line %d", path,
                                 lines[i].line, lines[i].key, lines[i - 1].line);
    }
    if (s == CT_OK) {
        *wnids = k, *names = v, *n = count;
    } else {
        if (k) ct_strv_free(k, count);
        if (v) ct_strv_free(v, count);
    }
    free(lines);
    free(text);
    return s;
}

ct_status ct_classnames_apply(const char *dir, int n, char **names, const char *const *keys) {
    char path[PATH_BUF];
    if (!ct_data_join(path, sizeof path, dir, "classnames.txt"))
        return ct_set_error(CT_ERR_ARG, "%s: directory name too long", dir);
    if (!ct_data_is_file(path)) return CT_OK;
    char *text;
    size_t size;
    ct_status s = ct_read_file(path, &text, &size);
    if (s != CT_OK) return s;
    cn_line *lines;
    int count;
    s = cn_parse(path, text, size, &lines, &count);
    if (s != CT_OK) {
        free(text);
        return s;
    }
    bool keyed = count > 0 && lines[0].key;
    const char **chosen = calloc(n > 0 ? (size_t)n : 1, sizeof *chosen);
    if (!chosen) s = ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate", path);
    if (s == CT_OK && !keyed) {
        if (count != n)
            s = ct_set_error(CT_ERR_FORMAT, "%s: has %d class names, the dataset has %d classes",
                             path, count, n);
        for (int i = 0; s == CT_OK && i < n; i++) chosen[i] = lines[i].name;
    } else if (s == CT_OK) {
        qsort(lines, (size_t)count, sizeof *lines, cmp_key);
        for (int i = 1; s == CT_OK && i < count; i++)
            if (strcmp(lines[i - 1].key, lines[i].key) == 0)
                s = ct_set_error(CT_ERR_FORMAT, "%s:%d: wnid '%s' repeats line %d", path,
                                 lines[i].line, lines[i].key, lines[i - 1].line);
        for (int i = 0; s == CT_OK && i < n; i++) {
            cn_line want = {.key = keys ? keys[i] : names[i], .line = 0};
            /* Line 0 sorts before any real line with the same key. */
            size_t lo = 0, hi = (size_t)count;
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (cmp_key(&lines[mid], &want) < 0) lo = mid + 1;
                else hi = mid;
            }
            if (lo == (size_t)count || strcmp(lines[lo].key, want.key) != 0)
                s = ct_set_error(CT_ERR_FORMAT, "%s: no line for class %d ('%s')", path, i,
                                 want.key);
            else
                chosen[i] = lines[lo].name;
        }
    }
    /* Replace only once every name is known, so a failure changes nothing. */
    char **fresh = s == CT_OK ? ct_strv_dup((char *const *)chosen, n) : NULL;
    if (s == CT_OK && !fresh) s = ct_set_error(CT_ERR_NOMEM, "%s: cannot copy names", path);
    if (s == CT_OK) {
        for (int i = 0; i < n; i++) {
            free(names[i]);
            names[i] = fresh[i];
        }
        free(fresh);
    }
    free(chosen);
    free(lines);
    free(text);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Spec dispatch                                                             */
/* ------------------------------------------------------------------------ */

static bool starts(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* "A@B" split at the last '@' (paths before it may contain '@'); *b is NULL
 * when there is none. Both malloc'ed. */
static ct_status split_at(const char *spec, const char *rest, char **a, char **b) {
    const char *at = strrchr(rest, '@');
    *a = at ? strndup(rest, (size_t)(at - rest)) : strdup(rest);
    *b = at ? strdup(at + 1) : NULL;
    if (!*a || (at && !*b)) {
        free(*a);
        free(*b);
        *a = *b = NULL;
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate", spec);
    }
    return CT_OK;
}

static ct_status open_npy_spec(const char *spec, const char *rest, ct_splits *out) {
    char *copy = strdup(rest);
    if (!copy) return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate", spec);
    char *paths[7];
    int n = 0;
    ct_status s = CT_OK;
    for (char *p = copy;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = 0;
        if (n == 7 || !*p) {
            s = ct_set_error(CT_ERR_ARG, "'%s': expected npy:X.npy,Y.npy (2, 4 or 6 non-empty "
                             "paths separated by commas)", spec);
            break;
        }
        paths[n++] = p;
        if (!comma) break;
        p = comma + 1;
    }
    if (s == CT_OK && n != 2 && n != 4 && n != 6)
        s = ct_set_error(CT_ERR_ARG, "'%s': %d paths; expected 2 (X,Y), 4 (train X,Y, test X,Y) "
                         "or 6 (train, val, test)", spec, n);
    if (s == CT_OK) s = ct_data_open_npy(paths, n, out);
    free(copy);
    return s;
}

/* mlcsv:A.csv[,B.csv[,C.csv]][@ROOT] */
static ct_status open_mlcsv_spec(const char *spec, const char *rest, ct_splits *out) {
    char *files = NULL, *root = NULL;
    ct_status s = split_at(spec, rest, &files, &root);
    if (s != CT_OK) return s;
    char *paths[4];
    int n = 0;
    for (char *p = files;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = 0;
        if (n == 3 || !*p) {
            s = ct_set_error(CT_ERR_ARG, "'%s': expected mlcsv:TRAIN.csv[,VAL.csv],TEST.csv[@ROOT]"
                             " (1 to 3 non-empty paths separated by commas)", spec);
            break;
        }
        paths[n++] = p;
        if (!comma) break;
        p = comma + 1;
    }
    if (s == CT_OK && root && !*root)
        s = ct_set_error(CT_ERR_ARG, "'%s': empty ROOT after '@'", spec);
    if (s == CT_OK && !root && !(root = ct_data_dirname(paths[0])))
        s = ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate", spec);
    if (s == CT_OK) s = ct_data_open_mlcsv(paths, n, root, out);
    free(files);
    free(root);
    return s;
}

ct_status ct_data_open(const char *spec, ct_splits *out) {
    if (!out) return ct_set_error(CT_ERR_ARG, "ct_data_open: NULL output");
    memset(out, 0, sizeof *out);
    if (!spec) return ct_set_error(CT_ERR_ARG, "ct_data_open: NULL spec");
    ct_status s;
    char *a = NULL, *b = NULL;
    if (starts(spec, "folder:")) {
        const char *dir = spec + 7;
        if (!*dir) return ct_set_error(CT_ERR_ARG, "'%s': expected folder:DIR", spec);
        s = ct_data_open_folder(dir, out);
    } else if (starts(spec, "coop:")) {
        s = split_at(spec, spec + 5, &a, &b);
        if (s == CT_OK && (!b || !*a || !*b))
            s = ct_set_error(CT_ERR_ARG, "'%s': expected coop:SPLIT.json@IMAGES (the image "
                             "directory is required)", spec);
        if (s == CT_OK) s = ct_data_open_coop(a, b, out);
    } else if (starts(spec, "csv:")) {
        s = split_at(spec, spec + 4, &a, &b);
        if (s == CT_OK && (!*a || (b && !*b)))
            s = ct_set_error(CT_ERR_ARG, "'%s': expected csv:FILE or csv:FILE@ROOT", spec);
        if (s == CT_OK && !b && !(b = ct_data_dirname(a)))
            s = ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate", spec);
        if (s == CT_OK) s = ct_data_open_csv(a, b, out);
    } else if (starts(spec, "voc:") || starts(spec, "coco:")) {
        bool voc = starts(spec, "voc:");
        const char *dir = spec + (voc ? 4 : 5);
        if (!*dir)
            return ct_set_error(CT_ERR_ARG, "'%s': expected %s:ROOT", spec, voc ? "voc" : "coco");
        s = voc ? ct_data_open_voc(dir, out) : ct_data_open_coco(dir, out);
    } else if (starts(spec, "vocseg:")) {
        if (!spec[7]) return ct_set_error(CT_ERR_ARG, "'%s': expected vocseg:ROOT", spec);
        s = ct_data_open_vocseg(spec + 7, out);
    } else if (starts(spec, "adeseg:")) {
        if (!spec[7]) return ct_set_error(CT_ERR_ARG, "'%s': expected adeseg:ROOT", spec);
        s = ct_data_open_adeseg(spec + 7, out);
    } else if (starts(spec, "pcontextseg:") || starts(spec, "pcontext60seg:")) {
        bool c60 = starts(spec, "pcontext60seg:");
        const char *dir = spec + (c60 ? 14 : 12);
        if (!*dir)
            return ct_set_error(CT_ERR_ARG, "'%s': expected %s:ROOT", spec,
                                c60 ? "pcontext60seg" : "pcontextseg");
        s = ct_data_open_pcontextseg(dir, c60 ? 60 : 59, out);
    } else if (starts(spec, "mlcsv:")) {
        s = open_mlcsv_spec(spec, spec + 6, out);
    } else if (starts(spec, "mljson:")) {
        s = split_at(spec, spec + 7, &a, &b);
        if (s == CT_OK && (!*a || (b && !*b)))
            s = ct_set_error(CT_ERR_ARG, "'%s': expected mljson:FILE or mljson:FILE@ROOT", spec);
        if (s == CT_OK && !b && !(b = ct_data_dirname(a)))
            s = ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate", spec);
        if (s == CT_OK) s = ct_data_open_mljson(a, b, out);
    } else if (starts(spec, "imagenet:") || starts(spec, "imagenetv2:") ||
               starts(spec, "imagenet-sketch:") || starts(spec, "imagenet-a:") ||
               starts(spec, "imagenet-r:")) {
        static const char *const form[] = {"imagenet:", "imagenetv2:", "imagenet-sketch:",
                                           "imagenet-a:", "imagenet-r:"};
        int w = 0;
        while (!starts(spec, form[w])) w++;
        const char *dir = spec + strlen(form[w]);
        if (!*dir) return ct_set_error(CT_ERR_ARG, "'%s': expected %sROOT", spec, form[w]);
        s = ct_data_open_imagenet(dir, CT_IMAGENET + w, out);
    } else if (starts(spec, "fgvc-aircraft:")) {
        if (!spec[14]) return ct_set_error(CT_ERR_ARG, "'%s': expected fgvc-aircraft:ROOT", spec);
        s = ct_data_open_fgvc_aircraft(spec + 14, out);
    } else if (strcmp(spec, "fashion-mnist") == 0) {
        s = ct_data_open_fashion_mnist("/usr/share/datasets/fashion-mnist", out);
    } else if (starts(spec, "fashion-mnist:")) {
        const char *dir = spec + 14;
        if (!*dir) return ct_set_error(CT_ERR_ARG, "'%s': expected fashion-mnist:DIR", spec);
        s = ct_data_open_fashion_mnist(dir, out);
    } else if (strcmp(spec, "digits") == 0) {
        s = ct_data_open_digits(CT_DIGITS_DEFAULT, out);
    } else if (starts(spec, "digits:")) {
        if (!spec[7]) return ct_set_error(CT_ERR_ARG, "'%s': expected digits:FILE", spec);
        s = ct_data_open_digits(spec + 7, out);
    } else if (starts(spec, "npy:")) {
        s = open_npy_spec(spec, spec + 4, out);
    } else {
        s = ct_set_error(CT_ERR_ARG, "unknown dataset spec '%s' (expected folder:DIR, "
                         "coop:SPLIT.json@IMAGES, csv:FILE[@ROOT], fashion-mnist[:DIR], "
                         "digits[:FILE], npy:X.npy,Y.npy, voc:ROOT, coco:ROOT, vocseg:ROOT, "
                         "adeseg:ROOT, pcontextseg:ROOT, pcontext60seg:ROOT, imagenet:ROOT, "
                         "imagenetv2:ROOT, imagenet-sketch:ROOT, imagenet-a:ROOT, imagenet-r:ROOT, "
                         "fgvc-aircraft:ROOT, mlcsv:TRAIN.csv[,VAL.csv],TEST.csv[@ROOT] or "
                         "mljson:FILE[@ROOT])",
                         spec);
    }
    free(a);
    free(b);
    if (s != CT_OK) {
        ct_splits_free(out);
    } else if (!out->train || !out->test) {
        ct_splits_free(out);
        s = ct_set_error(CT_ERR_STATE, "'%s': loader returned no train or test split", spec);
    }
    return s;
}

/* path made absolute (realpath when it exists, else cwd/path), appended to
 * out; false when it does not fit. */
static bool put_abs(char *out, size_t n, const char *path, size_t len) {
    char rel[4096], abs_[4096];
    if (len >= sizeof rel) return false;
    memcpy(rel, path, len);
    rel[len] = 0;
    const char *use = rel;
    if (len && rel[0] != '/') {
        if (realpath(rel, abs_)) {
            use = abs_;
        } else {
            char cwd[2048];
            if (getcwd(cwd, sizeof cwd) && (size_t)snprintf(abs_, sizeof abs_, "%s/%s", cwd, rel) <
                                               sizeof abs_)
                use = abs_;
        }
    }
    size_t have = strlen(out);
    return (size_t)snprintf(out + have, n - have, "%s", use) < n - have;
}

ct_status ct_data_spec_absolute(const char *spec, char *out, size_t n) {
    static const char *const one[] = {"folder:", "fashion-mnist:", "digits:", "voc:", "coco:",
                                      "vocseg:", "adeseg:", "pcontextseg:",
                                      "pcontext60seg:", "imagenet:", "imagenetv2:",
                                      "imagenet-sketch:", "imagenet-a:", "imagenet-r:",
                                      "fgvc-aircraft:"};
    if (!spec || !out || n == 0) return ct_set_error(CT_ERR_ARG, "ct_data_spec_absolute: NULL");
    out[0] = 0;
    const char *rest = NULL, *seps = "";
    size_t plen = 0;
    for (size_t k = 0; k < sizeof one / sizeof *one && !rest; k++)
        if (starts(spec, one[k])) rest = spec + (plen = strlen(one[k]));
    if (!rest && (starts(spec, "coop:") || starts(spec, "csv:") || starts(spec, "mljson:")))
        rest = spec + (plen = (size_t)(strchr(spec, ':') - spec) + 1), seps = "@";
    if (!rest && starts(spec, "npy:")) rest = spec + (plen = 4), seps = ",";
    /* mlcsv: commas between the files, then the last '@' before ROOT */
    if (!rest && starts(spec, "mlcsv:")) rest = spec + (plen = 6), seps = ",@";
    if (!rest || !*rest) { /* a named dataset at its default place, or unknown */
        if ((size_t)snprintf(out, n, "%s", spec) >= n) goto too_long;
        return CT_OK;
    }
    if (plen >= n) goto too_long;
    memcpy(out, spec, plen);
    out[plen] = 0;
    for (const char *p = rest;;) {
        /* coop/csv: the last '@' separates the two paths, as ct_data_open splits */
        const char *sep = *seps == '@' ? (p == rest ? strrchr(p, '@') : NULL)
                          : *seps ? strchr(p, *seps) : NULL;
        if (seps[0] == ',' && seps[1] == '@') { /* mlcsv */
            const char *last_at = strrchr(rest, '@');
            if (last_at && p > last_at) sep = NULL; /* ROOT: may hold commas */
            else if (last_at && (!sep || sep > last_at)) sep = last_at;
        }
        size_t len = sep ? (size_t)(sep - p) : strlen(p);
        if (!put_abs(out, n, p, len)) goto too_long;
        if (!sep) break;
        size_t have = strlen(out);
        if (have + 1 >= n) goto too_long;
        out[have] = *sep, out[have + 1] = 0;
        p = sep + 1;
    }
    return CT_OK;
too_long:
    return ct_set_error(CT_ERR_ARG, "dataset spec '%s' is too long", spec);
}
