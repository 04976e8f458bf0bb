/* Image-caption corpora: CSV or folder-of-images-with-.txt (see captions.h).
 * Both readers produce rows (resolved path, caption, source line); one
 * builder sorts, merges and checks them. */
#include "data/captions.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "base/error.h"
#include "data/dataset.h"

#define PATH_BUF 4096
/* Deeper trees are far more likely a symlink loop than a corpus. */
#define MAX_DEPTH 16

typedef struct cap_row {
    char *path;    /* resolved, normalised; owned                 */
    char *caption; /* owned                                       */
    int64_t line;  /* record's first line (CSV), 0 in folder mode  */
    int64_t seq;   /* input order, to keep captions in file order  */
} cap_row;

typedef struct row_vec {
    cap_row *v;
    int64_t n, cap;
} row_vec;

static void rows_free(row_vec *r) {
    for (int64_t i = 0; i < r->n; i++) {
        free(r->v[i].path);
        free(r->v[i].caption);
    }
    free(r->v);
    memset(r, 0, sizeof *r);
}

/* Takes ownership of path and caption (freed on failure too). */
static ct_status rows_push(row_vec *r, char *path, char *caption, int64_t line, const char *src) {
    if (r->n == r->cap) {
        int64_t cap = r->cap ? r->cap * 2 : 64;
        cap_row *v = (size_t)cap <= SIZE_MAX / sizeof *v ? realloc(r->v, (size_t)cap * sizeof *v)
                                                          : NULL;
        if (!v) {
            free(path);
            free(caption);
            return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate %lld caption rows", src,
                                (long long)cap);
        }
        r->v = v;
        r->cap = cap;
    }
    r->v[r->n] = (cap_row){path, caption, line, r->n};
    r->n++;
    return CT_OK;
}

/* Drop "./" components and repeated slashes, in place; ".." is kept (the
 * file system decides what it means through links). */
static void normalise(char *s) {
    char *r = s, *w = s;
    if (*r == '/') *w++ = '/';
    while (*r) {
        while (*r == '/') r++;
        if (!*r) break;
        char *e = r;
        while (*e && *e != '/') e++;
        size_t len = (size_t)(e - r);
        if (!(len == 1 && r[0] == '.')) {
            if (w > s && w[-1] != '/') *w++ = '/';
            memmove(w, r, len);
            w += len;
        }
        r = e;
    }
    if (w == s) *w++ = '.';
    *w = 0;
}

/* *out = root/path (path alone when absolute), normalised, malloc'ed. */
static ct_status resolve(const char *root, const char *path, const char *src, int64_t line,
                         char **out) {
    char buf[PATH_BUF];
    if (!ct_data_join(buf, sizeof buf, root, path))
        return ct_set_error(CT_ERR_FORMAT, "%s:%lld: path too long", src, (long long)line);
    normalise(buf);
    if (!(*out = strdup(buf))) return ct_set_error(CT_ERR_NOMEM, "%s: no memory", src);
    return CT_OK;
}

static bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* A copy of s without surrounding whitespace (NULL: no memory). */
static char *trimmed_dup(const char *s, size_t n) {
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    return strndup(s, n);
}

/* ------------------------------------------------------------------------ */
/* CSV                                                                       */
/* ------------------------------------------------------------------------ */

static const char *const PATH_WORDS[] = {"path", "image", "file", "filename", "filepath",
                                         "image_path"};
static const char *const CAPTION_WORDS[] = {"caption", "text", "title"};

static bool in_words(const char *s, const char *const *words, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(s, words[i]) == 0) return true;
    return false;
}

typedef struct csv_cursor {
    char *p, *end;
    int64_t line; /* line of *p */
    const char *file;
} csv_cursor;

/* One field at c->p, unescaped in place and NUL-terminated; *last is set
 * when the record ends after it. Quoted fields keep their blanks (trimmed
 * later for captions), unquoted ones lose them. */
static ct_status csv_field(csv_cursor *c, char **field, bool *last) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t')) c->p++;
    char *w, *start;
    char delim;
    if (c->p < c->end && *c->p == '"') {
        int64_t open_line = c->line;
        start = w = ++c->p;
        for (;;) {
            if (c->p == c->end)
                return ct_set_error(CT_ERR_FORMAT, "%s:%lld: unterminated quoted field",
                                    c->file, (long long)open_line);
            if (*c->p == '"') {
                if (c->p + 1 < c->end && c->p[1] == '"') {
                    *w++ = '"';
                    c->p += 2;
                    continue;
                }
                c->p++;
                break;
            }
            if (*c->p == '\n') c->line++;
            *w++ = *c->p++;
        }
        while (c->p < c->end && is_blank(*c->p)) c->p++;
        delim = c->p < c->end ? *c->p : '\n';
        if (delim != ',' && delim != '\n')
            return ct_set_error(CT_ERR_FORMAT, "%s:%lld: text after a closing quote", c->file,
                                (long long)c->line);
    } else {
        start = c->p;
        while (c->p < c->end && *c->p != ',' && *c->p != '\n') c->p++;
        delim = c->p < c->end ? *c->p : '\n';
        w = c->p;
        while (w > start && isspace((unsigned char)w[-1])) w--;
    }
    /* The delimiter has been read; w <= c->p, so this cannot clobber what
     * is still to be parsed. */
    *w = 0;
    if (c->p < c->end) {
        c->line += delim == '\n';
        c->p++;
    }
    *field = start;
    *last = delim == '\n';
    return CT_OK;
}

static ct_status read_csv(const char *file, row_vec *rows, char **root_out) {
    char *text = NULL, *root = NULL;
    size_t size;
    ct_status s = ct_read_file(file, &text, &size);
    if (s != CT_OK) return s;
    if (memchr(text, 0, size)) s = ct_set_error(CT_ERR_FORMAT, "%s: contains a NUL byte", file);
    if (s == CT_OK && !(root = ct_data_dirname(file)))
        s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", file);
    if (s == CT_OK) normalise(root);
    csv_cursor c = {text, text + size, 1, file};
    if (size >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) c.p += 3;
    bool header = false;
    while (s == CT_OK && c.p < c.end) {
        /* Blank lines between records. */
        char *q = c.p;
        while (q < c.end && is_blank(*q)) q++;
        if (q == c.end) break;
        if (*q == '\n') {
            c.p = q + 1;
            c.line++;
            continue;
        }
        int64_t line = c.line;
        char *f[2] = {NULL, NULL};
        int nf = 0;
        bool last = false;
        while (s == CT_OK && !last) {
            char *field = NULL;
            s = csv_field(&c, &field, &last);
            if (s == CT_OK && nf < 2) f[nf] = field;
            nf += s == CT_OK;
        }
        if (s != CT_OK) break;
        if (nf != 2) {
            s = ct_set_error(CT_ERR_FORMAT, "%s:%lld: expected 2 fields \"path,caption\", got %d%s",
                             file, (long long)line, nf,
                             nf > 2 ? " (quote captions that contain commas)" : "");
            break;
        }
        if (!header) {
            if (!in_words(f[0], PATH_WORDS, sizeof PATH_WORDS / sizeof *PATH_WORDS) ||
                !in_words(f[1], CAPTION_WORDS, sizeof CAPTION_WORDS / sizeof *CAPTION_WORDS)) {
                s = ct_set_error(CT_ERR_FORMAT, "%s:%lld: expected the header \"path,caption\" "
                                 "as the first line", file, (long long)line);
                break;
            }
            header = true;
            continue;
        }
        if (!f[0][0]) {
            s = ct_set_error(CT_ERR_FORMAT, "%s:%lld: empty path", file, (long long)line);
            break;
        }
        char *cap = trimmed_dup(f[1], strlen(f[1]));
        if (!cap) {
            s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", file);
            break;
        }
        if (!cap[0]) {
            free(cap);
            s = ct_set_error(CT_ERR_FORMAT, "%s:%lld: empty caption", file, (long long)line);
            break;
        }
        char *path = NULL;
        s = resolve(root, f[0], file, line, &path);
        if (s != CT_OK) {
            free(cap);
            break;
        }
        s = rows_push(rows, path, cap, line, file);
    }
    if (s == CT_OK && !header)
        s = ct_set_error(CT_ERR_FORMAT, "%s: empty file (expected the header \"path,caption\")",
                         file);
    free(text);
    if (s != CT_OK) {
        free(root);
        return s;
    }
    *root_out = root;
    return CT_OK;
}

/* ------------------------------------------------------------------------ */
/* Folder of images with .txt captions                                       */
/* ------------------------------------------------------------------------ */

/* The captions of one image from its .txt (one per non-empty line). */
static ct_status read_txt(const char *image, row_vec *rows) {
    char txt[PATH_BUF];
    const char *slash = strrchr(image, '/'), *dot = strrchr(image, '.');
    size_t stem = dot && (!slash || dot > slash) ? (size_t)(dot - image) : strlen(image);
    if (stem + 5 > sizeof txt) return ct_set_error(CT_ERR_FORMAT, "%s: path too long", image);
    memcpy(txt, image, stem);
    memcpy(txt + stem, ".txt", 5);
    if (!ct_data_is_file(txt))
        return ct_set_error(CT_ERR_IO, "%s: no caption file %s beside it", image, txt);
    char *text;
    size_t size;
    ct_status s = ct_read_file(txt, &text, &size);
    if (s != CT_OK) return s;
    if (memchr(text, 0, size)) s = ct_set_error(CT_ERR_FORMAT, "%s: contains a NUL byte", txt);
    char *p = text, *end = text + size;
    if (size >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3;
    int64_t line = 0, found = 0;
    while (s == CT_OK && p < end) {
        line++;
        char *e = memchr(p, '\n', (size_t)(end - p));
        if (!e) e = end;
        char *cap = trimmed_dup(p, (size_t)(e - p));
        char *path = cap ? strdup(image) : NULL;
        if (!cap || !path) {
            free(cap);
            s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", txt);
        } else if (!cap[0]) {
            free(cap);
            free(path);
        } else {
            s = rows_push(rows, path, cap, line, txt);
            found++;
        }
        p = e + (e < end);
    }
    free(text);
    if (s == CT_OK && !found)
        s = ct_set_error(CT_ERR_FORMAT, "%s: no captions (every line is empty)", txt);
    return s;
}

/* Images under dir (full paths), recursively, unsorted. */
static ct_status walk(const char *dir, int depth, row_vec *images) {
    if (depth > MAX_DEPTH)
        return ct_set_error(CT_ERR_FORMAT, "%s: more than %d nested folders (a symlink loop?)",
                            dir, MAX_DEPTH);
    DIR *d = opendir(dir);
    if (!d) return ct_set_error(CT_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    ct_status s = CT_OK;
    struct dirent *e;
    char full[PATH_BUF];
    while (s == CT_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (!ct_data_join(full, sizeof full, dir, e->d_name)) {
            s = ct_set_error(CT_ERR_FORMAT, "%s/%s: path too long", dir, e->d_name);
        } else if (ct_data_is_dir(full)) {
            s = walk(full, depth + 1, images);
        } else if (ct_data_is_image_name(e->d_name) && ct_data_is_file(full)) {
            char *p = strdup(full);
            s = p ? rows_push(images, p, NULL, 0, dir)
                  : ct_set_error(CT_ERR_NOMEM, "%s: no memory", dir);
        }
    }
    closedir(d);
    return s;
}

static int cmp_row_path(const void *a, const void *b) {
    const cap_row *x = a, *y = b;
    int c = strcmp(x->path, y->path);
    return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

static ct_status read_folder(const char *dir, row_vec *rows, char **root_out) {
    char *root = strdup(dir);
    if (!root) return ct_set_error(CT_ERR_NOMEM, "%s: no memory", dir);
    normalise(root);
    row_vec images = {0};
    ct_status s = walk(root, 0, &images);
    if (s == CT_OK) {
        for (int64_t i = 0; i < images.n; i++) normalise(images.v[i].path);
        if (images.n > 1) qsort(images.v, (size_t)images.n, sizeof *images.v, cmp_row_path);
    }
    for (int64_t i = 0; i < images.n && s == CT_OK; i++) s = read_txt(images.v[i].path, rows);
    if (s == CT_OK && images.n == 0)
        s = ct_set_error(CT_ERR_FORMAT, "%s: no images (.jpg .jpeg .png .bmp .gif .ppm .pgm "
                         ".pbm .pnm) found", dir);
    rows_free(&images);
    if (s != CT_OK) {
        free(root);
        return s;
    }
    *root_out = root;
    return CT_OK;
}

/* ------------------------------------------------------------------------ */
/* Building the set                                                          */
/* ------------------------------------------------------------------------ */

void ct_captions_free(ct_caption_set *s) {
    if (!s) return;
    if (s->paths)
        for (int64_t i = 0; i < s->n_images; i++) free(s->paths[i]);
    if (s->captions && s->cap_off)
        for (int64_t i = 0; i < s->cap_off[s->n_images]; i++) free(s->captions[i]);
    free(s->paths);
    free(s->cap_off);
    free(s->captions);
    free(s->root);
    memset(s, 0, sizeof *s);
}

/* Allocate the arrays of a set of n images and nc captions. */
static ct_status set_alloc(ct_caption_set *s, int64_t n, int64_t nc, const char *src) {
    s->paths = calloc((size_t)(n ? n : 1), sizeof *s->paths);
    s->cap_off = calloc((size_t)n + 1, sizeof *s->cap_off);
    s->captions = calloc((size_t)(nc ? nc : 1), sizeof *s->captions);
    if (!s->paths || !s->cap_off || !s->captions)
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate %lld images / %lld captions", src,
                            (long long)n, (long long)nc);
    return CT_OK;
}

/* Sort, merge equal paths, check the images exist; rows are emptied (their
 * strings move into out). */
static ct_status build(row_vec *rows, char *root, const char *src, ct_caption_set *out) {
    out->root = root;
    if (rows->n == 0) return ct_set_error(CT_ERR_FORMAT, "%s: no captions", src);
    qsort(rows->v, (size_t)rows->n, sizeof *rows->v, cmp_row_path);
    int64_t n = 0, n_missing = 0;
    const cap_row *first_missing = NULL;
    for (int64_t i = 0; i < rows->n; i++) {
        if (i > 0 && strcmp(rows->v[i].path, rows->v[i - 1].path) == 0) continue;
        n++;
        /* rows->v[i] is the path's earliest record (ties sort by seq); the
         * message names the earliest missing one in the file. */
        if (!ct_data_is_file(rows->v[i].path)) {
            if (!first_missing || rows->v[i].seq < first_missing->seq)
                first_missing = &rows->v[i];
            n_missing++;
        }
    }
    if (n_missing) {
        if (first_missing->line)
            return ct_set_error(CT_ERR_IO, "%s:%lld: image '%s' does not exist (%lld image%s "
                                "missing in all)", src, (long long)first_missing->line,
                                first_missing->path, (long long)n_missing,
                                n_missing == 1 ? "" : "s");
        return ct_set_error(CT_ERR_IO, "%s: image '%s' does not exist", src,
                            first_missing->path);
    }
    ct_status s = set_alloc(out, n, rows->n, src);
    if (s != CT_OK) return s;
    int64_t img = -1;
    for (int64_t i = 0; i < rows->n; i++) {
        cap_row *r = &rows->v[i];
        if (img < 0 || strcmp(r->path, out->paths[img]) != 0) {
            out->paths[++img] = r->path;
            out->n_images = img + 1;
            out->cap_off[img] = i;
        } else {
            free(r->path);
        }
        out->captions[i] = r->caption;
        out->cap_off[img + 1] = i + 1;
        r->path = r->caption = NULL;
    }
    rows->n = 0;
    return CT_OK;
}

ct_status ct_captions_open(const char *spec, ct_caption_set *out) {
    if (!out) return ct_set_error(CT_ERR_ARG, "ct_captions_open: NULL output");
    memset(out, 0, sizeof *out);
    if (!spec || !spec[0]) return ct_set_error(CT_ERR_ARG, "ct_captions_open: empty spec");
    bool folder;
    if (strncmp(spec, "csv:", 4) == 0) {
        folder = false;
        spec += 4;
    } else if (strncmp(spec, "folder:", 7) == 0) {
        folder = true;
        spec += 7;
    } else {
        folder = ct_data_is_dir(spec);
    }
    row_vec rows = {0};
    char *root = NULL;
    ct_status s = folder ? read_folder(spec, &rows, &root) : read_csv(spec, &rows, &root);
    if (s == CT_OK) s = build(&rows, root, spec, out);
    rows_free(&rows);
    if (s != CT_OK) ct_captions_free(out);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Held-out split                                                            */
/* ------------------------------------------------------------------------ */

/* The path relative to root when it lies under it (what stays the same when
 * the corpus moves), else the path itself. */
static const char *rel_key(const char *root, const char *path) {
    if (!root || !root[0] || (root[0] == '.' && !root[1])) return path;
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/') return path[0] == '/' ? path + 1 : path;
    if (strncmp(path, root, n) == 0 && path[n] == '/') return path + n + 1;
    return path;
}

/* Deep copy of the images of all marked with side, in order. */
static ct_status copy_side(const ct_caption_set *all, const uint8_t *side, uint8_t want,
                           ct_caption_set *out) {
    int64_t n = 0, nc = 0;
    for (int64_t i = 0; i < all->n_images; i++)
        if (side[i] == want) {
            n++;
            nc += all->cap_off[i + 1] - all->cap_off[i];
        }
    ct_status s = set_alloc(out, n, nc, "caption split");
    if (s == CT_OK && !(out->root = strdup(all->root ? all->root : "")))
        s = ct_set_error(CT_ERR_NOMEM, "caption split: no memory");
    int64_t k = 0, c = 0;
    for (int64_t i = 0; i < all->n_images && s == CT_OK; i++) {
        if (side[i] != want) continue;
        out->cap_off[k] = c;
        if (!(out->paths[k] = strdup(all->paths[i]))) s = CT_ERR_NOMEM;
        out->n_images = ++k;
        for (int64_t j = all->cap_off[i]; j < all->cap_off[i + 1] && s == CT_OK; j++) {
            if (!(out->captions[c] = strdup(all->captions[j]))) s = CT_ERR_NOMEM;
            out->cap_off[k] = ++c;
        }
        out->cap_off[k] = c;
    }
    return s == CT_ERR_NOMEM ? ct_set_error(CT_ERR_NOMEM, "caption split: no memory") : s;
}

ct_status ct_captions_split(const ct_caption_set *all, double heldout_frac,
                            ct_caption_set *train, ct_caption_set *heldout) {
    if (train) memset(train, 0, sizeof *train);
    if (heldout) memset(heldout, 0, sizeof *heldout);
    if (!all || !train || !heldout || (all->n_images && (!all->paths || !all->cap_off)))
        return ct_set_error(CT_ERR_ARG, "ct_captions_split: NULL argument");
    if (!(heldout_frac >= 0.0 && heldout_frac <= 1.0))
        return ct_set_error(CT_ERR_ARG, "ct_captions_split: held-out fraction %g outside [0, 1]",
                            heldout_frac);
    int64_t n = all->n_images;
    uint8_t *side = calloc((size_t)(n ? n : 1), 1);
    if (!side) return ct_set_error(CT_ERR_NOMEM, "ct_captions_split: no memory");
    int64_t n_out = 0, lo = -1, hi = -1;
    uint64_t hlo = UINT64_MAX, hhi = 0;
    for (int64_t i = 0; i < n; i++) {
        uint64_t h = ct_data_path_hash(rel_key(all->root, all->paths[i]));
        side[i] = (double)(h >> 11) * 0x1p-53 < heldout_frac;
        n_out += side[i];
        if (lo < 0 || h < hlo) hlo = h, lo = i;
        if (hi < 0 || h > hhi) hhi = h, hi = i;
    }
    if (n >= 2 && heldout_frac > 0 && n_out == 0) side[lo] = 1;
    if (n >= 2 && heldout_frac < 1 && n_out == n) side[hi] = 0;
    ct_status s = copy_side(all, side, 0, train);
    if (s == CT_OK) s = copy_side(all, side, 1, heldout);
    free(side);
    if (s != CT_OK) {
        ct_captions_free(train);
        ct_captions_free(heldout);
    }
    return s;
}
