/* COCO caption files and TaI-DPT's word-based caption labels (see
 * coco_captions.h). */
#include "data/coco_captions.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/json.h"
#include "data/dataset.h"

#define CAPTION_MAX 4096
#define ID_MAX 9007199254740992.0 /* integers a double holds exactly */

void ct_coco_captions_free(ct_coco_captions *c) {
    if (!c) return;
    for (int64_t i = 0; c->captions && i < c->n; i++) free(c->captions[i]);
    free(c->captions), free(c->ids), free(c->image_ids);
    memset(c, 0, sizeof *c);
}

static bool get_id(const cJSON *obj, const char *key, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= -ID_MAX && d <= ID_MAX) || d != floor(d)) return false;
    *out = (int64_t)d;
    return true;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

ct_status ct_coco_captions_load(const char *path, ct_coco_captions *out) {
    if (!out) return ct_set_error(CT_ERR_ARG, "coco captions: no output");
    memset(out, 0, sizeof *out);
    if (!path || !*path) return ct_set_error(CT_ERR_ARG, "coco captions: no file given");
    cJSON *root = ct_json_load(path);
    if (!root) return ct_data_is_file(path) ? CT_ERR_FORMAT : CT_ERR_IO;
    ct_status s = CT_OK;
    int64_t *img = NULL;
    const cJSON *images = cJSON_GetObjectItemCaseSensitive(root, "images");
    const cJSON *anns = cJSON_GetObjectItemCaseSensitive(root, "annotations");
    if (!cJSON_IsObject(root) || !cJSON_IsArray(images) || !cJSON_IsArray(anns)) {
        s = ct_set_error(CT_ERR_FORMAT, "%s: expected a COCO captions object with \"images\" "
                         "and \"annotations\" arrays", path);
        goto done;
    }
    int64_t ni = cJSON_GetArraySize(images), na = cJSON_GetArraySize(anns);
    img = malloc((size_t)(ni ? ni : 1) * sizeof *img);
    out->ids = malloc((size_t)(na ? na : 1) * sizeof *out->ids);
    out->image_ids = malloc((size_t)(na ? na : 1) * sizeof *out->image_ids);
    out->captions = calloc((size_t)(na ? na : 1), sizeof *out->captions);
    if (!img || !out->ids || !out->image_ids || !out->captions) {
        s = ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate for %lld captions", path,
                         (long long)na);
        goto done;
    }
    int64_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, images) {
        if (!cJSON_IsObject(e) || !get_id(e, "id", &img[i])) {
            s = ct_set_error(CT_ERR_FORMAT, "%s: images[%lld]: expected an object with an "
                             "integer \"id\"", path, (long long)i);
            goto done;
        }
        i++;
    }
    qsort(img, (size_t)ni, sizeof *img, cmp_i64);
    for (int64_t k = 1; k < ni; k++)
        if (img[k] == img[k - 1]) {
            s = ct_set_error(CT_ERR_FORMAT, "%s: image id %lld repeats", path,
                             (long long)img[k]);
            goto done;
        }
    i = 0;
    cJSON_ArrayForEach(e, anns) {
        int64_t id = 0, iid = 0;
        if (!cJSON_IsObject(e) || !get_id(e, "id", &id) || !get_id(e, "image_id", &iid)) {
            s = ct_set_error(CT_ERR_FORMAT, "%s: annotations[%lld]: expected an object with "
                             "integer \"id\" and \"image_id\"", path, (long long)i);
            goto done;
        }
        if (!bsearch(&iid, img, (size_t)ni, sizeof *img, cmp_i64)) {
            s = ct_set_error(CT_ERR_FORMAT, "%s: annotations[%lld]: image_id %lld is not among "
                             "the images", path, (long long)i, (long long)iid);
            goto done;
        }
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "caption");
        const char *txt = cJSON_IsString(c) ? c->valuestring : NULL;
        size_t len = txt ? strlen(txt) : 0;
        if (!txt || len == 0 || len > CAPTION_MAX) {
            s = ct_set_error(CT_ERR_FORMAT, "%s: annotations[%lld] (id %lld): \"caption\" must "
                             "be a non-empty string of at most %d bytes", path, (long long)i,
                             (long long)id, CAPTION_MAX);
            goto done;
        }
        if (!(out->captions[i] = strdup(txt))) {
            s = ct_set_error(CT_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        out->ids[i] = id, out->image_ids[i] = iid;
        out->n = ++i;
    }
done:
    free(img);
    cJSON_Delete(root);
    if (s != CT_OK) ct_coco_captions_free(out);
    return s;
}

/* ---- words and names ---- */

static bool is_word_byte(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c >= 0x80;
}

static bool ends(const char *w, size_t n, const char *suf) {
    size_t k = strlen(suf);
    return n >= k && memcmp(w + n - k, suf, k) == 0;
}

/* w (n bytes, lower case) lemmatised as a noun, in place; the new length */
static size_t lemma(char *w, size_t n) {
    if (n >= 5 && ends(w, n, "ies")) {
        w[n - 3] = 'y';
        return n - 2;
    }
    if (n >= 5 && (ends(w, n, "sses") || ends(w, n, "xes") || ends(w, n, "ches") ||
                   ends(w, n, "shes") || ends(w, n, "zes")))
        return n - 2;
    if (n >= 4 && w[n - 1] == 's' && !ends(w, n, "ss") && !ends(w, n, "us") && !ends(w, n, "is"))
        return n - 1;
    return n;
}

/* " w1 w2 ... " of text's lemmatised words (malloc'd; NULL: out of memory). */
static char *words_of(const char *text) {
    size_t len = strlen(text);
    char *out = malloc(2 * len + 3), *o = out;
    if (!out) return NULL;
    *o++ = ' ';
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)tolower((unsigned char)text[i]);
        if (!is_word_byte(c)) {
            i++;
            continue;
        }
        char *w = o;
        while (i < len && is_word_byte(c = (unsigned char)tolower((unsigned char)text[i])))
            *o++ = (char)c, i++;
        o = w + lemma(w, (size_t)(o - w));
        *o++ = ' ';
    }
    *o = 0;
    return out;
}

void ct_synonyms_free(ct_synonyms *s) {
    if (!s) return;
    for (int i = 0; s->names && s->off && i < s->off[s->K]; i++) free(s->names[i]);
    free(s->names), free(s->off);
    memset(s, 0, sizeof *s);
}

/* Append name (raw text) as its lemmatised words "w1 w2" to the class being
 * read (the last, K - 1: off[K] counts the names so far); false: no memory.
 * A name with no word is skipped. */
static bool push_name(ct_synonyms *s, int *cap, const char *raw) {
    char *w = words_of(raw);
    if (!w) return false;
    size_t n = strlen(w);
    if (n <= 1) { /* " ": no word */
        free(w);
        return true;
    }
    memmove(w, w + 1, n - 1); /* drop the padding spaces */
    w[n - 2] = 0;
    int used = s->off[s->K];
    if (used == *cap) {
        int nc = *cap ? 2 * *cap : 64;
        char **p = realloc(s->names, (size_t)nc * sizeof *p);
        if (!p) {
            free(w);
            return false;
        }
        s->names = p, *cap = nc;
    }
    s->names[used] = w;
    s->off[s->K]++;
    return true;
}

ct_status ct_synonyms_load(const char *path, int K, char *const *classnames, ct_synonyms *out) {
    memset(out, 0, sizeof *out);
    if (K < 1) return ct_set_error(CT_ERR_ARG, "synonyms: %d classes", K);
    out->off = calloc((size_t)K + 1, sizeof *out->off);
    if (!out->off) return ct_set_error(CT_ERR_NOMEM, "synonyms: out of memory");
    int cap = 0;
    ct_status s = CT_OK;
    char buf[1024];
    if (!path || !*path) {
        for (int k = 0; k < K && s == CT_OK; k++) {
            snprintf(buf, sizeof buf, "%s", classnames && classnames[k] ? classnames[k] : "");
            for (char *p = buf; *p; p++)
                if (*p == '_') *p = ' ';
            out->K = k + 1;
            out->off[k + 1] = out->off[k];
            if (!push_name(out, &cap, buf)) s = ct_set_error(CT_ERR_NOMEM, "synonyms: no memory");
            else if (out->off[k + 1] == out->off[k])
                s = ct_set_error(CT_ERR_ARG, "synonyms: class %d's name '%s' has no word", k,
                                 buf);
        }
        out->K = K;
        if (s != CT_OK) ct_synonyms_free(out);
        return s;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        free(out->off);
        memset(out, 0, sizeof *out);
        return ct_set_error(CT_ERR_IO, "%s: cannot open", path);
    }
    int line = 0, k = 0;
    while (s == CT_OK && fgets(buf, sizeof buf, f)) {
        line++;
        size_t n = strlen(buf);
        if (n == sizeof buf - 1 && buf[n - 1] != '\n' && !feof(f)) {
            s = ct_set_error(CT_ERR_FORMAT, "%s:%d: line longer than %d bytes", path, line,
                             (int)sizeof buf - 2);
            break;
        }
        bool blank = true;
        for (size_t i = 0; i < n; i++) blank = blank && isspace((unsigned char)buf[i]);
        if (blank) continue;
        if (k == K) {
            s = ct_set_error(CT_ERR_FORMAT, "%s:%d: more lines than the %d classes", path, line,
                             K);
            break;
        }
        out->K = k + 1;
        out->off[k + 1] = out->off[k];
        /* {'a','b c'} or a, b c: braces and quotes are separators' decoration */
        for (char *p = buf; *p; p++)
            if (*p == '{' || *p == '}' || *p == '\'' || *p == '"') *p = ' ';
        for (char *p = buf, *q; s == CT_OK && p; p = q ? q + 1 : NULL) {
            q = strchr(p, ',');
            if (q) *q = 0;
            if (!push_name(out, &cap, p)) s = ct_set_error(CT_ERR_NOMEM, "%s: no memory", path);
        }
        if (s == CT_OK && out->off[k + 1] == out->off[k])
            s = ct_set_error(CT_ERR_FORMAT, "%s:%d: no name for class %d", path, line, k);
        k++;
    }
    if (s == CT_OK && ferror(f)) s = ct_set_error(CT_ERR_IO, "%s: read error", path);
    fclose(f);
    out->K = k;
    if (s == CT_OK && k != K)
        s = ct_set_error(CT_ERR_FORMAT, "%s: %d lines of names for %d classes", path, k, K);
    if (s != CT_OK) ct_synonyms_free(out);
    return s;
}

/* Blank every " name " in cap (python's str.replace(" name ", " ")); whether
 * any was found. */
static bool take(char *cap, const char *name, bool squeeze) {
    char pat[1100];
    size_t n = 0;
    pat[n++] = ' ';
    for (const char *p = name; *p && n + 2 < sizeof pat; p++)
        if (!(squeeze && *p == ' ')) pat[n++] = *p;
    pat[n++] = ' ';
    pat[n] = 0;
    bool hit = false;
    char *w = cap, *r = cap;
    while (*r) {
        if (strncmp(r, pat, n) == 0) {
            *w++ = ' ';
            r += n;
            hit = true;
        } else {
            *w++ = *r++;
        }
    }
    *w = 0;
    return hit;
}

bool ct_caption_labels(const ct_synonyms *s, const char *caption, int8_t *row) {
    memset(row, 0, (size_t)s->K);
    char *cap = words_of(caption);
    if (!cap) return false;
    bool any = false;
    /* multi-word names first, then the single words and the squeezed names */
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < s->K; k++)
            for (int j = s->off[k]; j < s->off[k + 1]; j++) {
                bool multi = strchr(s->names[j], ' ') != NULL;
                if (pass == 0 && !multi) continue;
                if (take(cap, s->names[j], pass == 1)) row[k] = 1, any = true;
            }
    free(cap);
    return any;
}
