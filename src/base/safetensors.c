/* safetensors reading (mmap + full validation) and writing.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON
 *   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "value", ...}}
 * then the data section; offsets are relative to its start.
 *
 * Checkpoints come from other tools and sometimes from broken downloads, so
 * every field is checked before any tensor pointer is handed out: after a
 * successful open, each tensor's [data, data + nbytes) lies inside the
 * mapping and matches its shape and dtype. */
#include <cJSON.h>
#include <stdint.h>
#include <string.h>

#include "base/safetensors.h"
#include "base/error.h"
#include "base/file.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "the safetensors writer stores host arrays as-is and assumes a little-endian host"
#endif

/* The official implementation's limit; a larger header is a corrupt length
 * field rather than a real model. */
#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
#define ST_MAX_RANK 8
/* Largest integer a JSON number (a double in cJSON) holds exactly. */
#define JSON_MAX_EXACT 9007199254740992.0

struct ct_safetensors {
    ct_mmap map;
    int n;
    ct_st_tensor *t;              /* file order                      */
    const ct_st_tensor **by_name; /* sorted by name, for bsearch     */
    int n_meta;
    char **meta;                  /* key0, value0, key1, value1, ... */
};

size_t ct_dtype_size(ct_dtype d) {
    switch (d) {
    case CT_F32: return 4;
    case CT_F16: return 2;
    case CT_BF16: return 2;
    case CT_I64: return 8;
    case CT_I32: return 4;
    case CT_U8: return 1;
    }
    return 0;
}

const char *ct_dtype_name(ct_dtype d) {
    switch (d) {
    case CT_F32: return "F32";
    case CT_F16: return "F16";
    case CT_BF16: return "BF16";
    case CT_I64: return "I64";
    case CT_I32: return "I32";
    case CT_U8: return "U8";
    }
    return "?";
}

static bool dtype_valid(ct_dtype d) { return ct_dtype_size(d) != 0; }

static bool dtype_parse(const char *s, ct_dtype *out) {
    static const ct_dtype all[] = {CT_F32, CT_F16, CT_BF16, CT_I64, CT_I32, CT_U8};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(s, ct_dtype_name(all[i])) == 0) {
            *out = all[i];
            return true;
        }
    }
    return false;
}

/* dtypes the format defines but this engine does not load: a file using them
 * is valid, just not supported, and the caller deserves to know which. */
static bool dtype_known_elsewhere(const char *s) {
    static const char *const other[] = {"F64", "I8", "I16", "U16", "U32", "U64", "BOOL",
                                        "F8_E4M3", "F8_E5M2", "C64"};
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        if (strcmp(s, other[i]) == 0) return true;
    return false;
}

static uint64_t ld_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint32_t ld_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t ld_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* A JSON number that is a non-negative integer cJSON stored exactly. */
static bool json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return false;
    double v = j->valuedouble;
    if (!(v >= 0 && v <= JSON_MAX_EXACT) || v != (double)(uint64_t)v) return false;
    *out = (uint64_t)v;
    return true;
}

/* "(2, 3)" for error messages. */
static const char *shape_str(const int64_t *shape, int ndim, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, ")");
    return buf;
}

static bool numel_of(const int64_t *shape, int ndim, size_t *out) {
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (uint64_t)shape[i] > SIZE_MAX) return false;
        if (!ct_mul_size(numel, (size_t)shape[i], &numel)) return false;
    }
    *out = numel;
    return true;
}

void ct_safetensors_close(ct_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++) free(st->t[i].name);
    for (int i = 0; i < 2 * st->n_meta; i++) free(st->meta[i]);
    free(st->t);
    free(st->by_name);
    free(st->meta);
    ct_mmap_close(&st->map);
    free(st);
}

/* ---- parsing ------------------------------------------------------------ */

static ct_status parse_meta(ct_safetensors *st, const cJSON *m, const char *path) {
    if (!cJSON_IsObject(m))
        return ct_set_error(CT_ERR_FORMAT, "%s: __metadata__ is not an object", path);
    int n = cJSON_GetArraySize(m);
    st->meta = calloc((size_t)n * 2 + 1, sizeof *st->meta);
    if (!st->meta) return ct_set_error(CT_ERR_NOMEM, "%s: out of memory for metadata", path);
    for (const cJSON *kv = m->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv))
            return ct_set_error(CT_ERR_FORMAT, "%s: __metadata__ value for \"%s\" is not a string",
                                path, kv->string);
        char *k = strdup(kv->string), *v = strdup(kv->valuestring);
        if (!k || !v) {
            free(k);
            free(v);
            return ct_set_error(CT_ERR_NOMEM, "%s: out of memory for metadata", path);
        }
        st->meta[2 * st->n_meta] = k;
        st->meta[2 * st->n_meta + 1] = v;
        st->n_meta++;
    }
    return CT_OK;
}

/* Validate one tensor entry and fill *t (except data, set once all entries
 * are known to be sane). begin/end are returned for the overlap check. */
static ct_status parse_entry(const cJSON *e, const char *path, size_t data_size, ct_st_tensor *t,
                             uint64_t *begin, uint64_t *end) {
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return ct_set_error(CT_ERR_FORMAT, "%s: tensor \"%s\": entry is not an object", path,
                            name);

    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(dt))
        return ct_set_error(CT_ERR_FORMAT, "%s: tensor \"%s\": dtype missing or not a string",
                            path, name);
    if (!dtype_parse(dt->valuestring, &t->dtype)) {
        if (dtype_known_elsewhere(dt->valuestring))
            return ct_set_error(CT_ERR_UNSUPPORTED, "%s: tensor \"%s\": dtype \"%s\" is not "
                                "supported (F32, F16, BF16, I64, I32, U8 are)", path, name,
                                dt->valuestring);
        return ct_set_error(CT_ERR_FORMAT, "%s: tensor \"%s\": unknown dtype \"%s\"", path, name,
                            dt->valuestring);
    }

    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsArray(sh))
        return ct_set_error(CT_ERR_FORMAT, "%s: tensor \"%s\": shape missing or not an array",
                            path, name);
    int rank = cJSON_GetArraySize(sh);
    if (rank > ST_MAX_RANK)
        return ct_set_error(CT_ERR_UNSUPPORTED, "%s: tensor \"%s\": rank %d exceeds the maximum "
                            "of %d", path, name, rank, ST_MAX_RANK);
    t->ndim = rank;
    int d = 0;
    for (const cJSON *x = sh->child; x; x = x->next, d++) {
        uint64_t v;
        if (!json_uint(x, &v))
            return ct_set_error(CT_ERR_FORMAT, "%s: tensor \"%s\": shape[%d] is not a "
                                "non-negative integer", path, name, d);
        t->shape[d] = (int64_t)v;
    }

    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    const cJSON *b = cJSON_GetArrayItem(off, 0), *en = cJSON_GetArrayItem(off, 1);
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_uint(b, begin) ||
        !json_uint(en, end))
        return ct_set_error(CT_ERR_FORMAT, "%s: tensor \"%s\": data_offsets must be [begin, end] "
                            "with non-negative integers", path, name);
    if (*begin > *end)
        return ct_set_error(CT_ERR_FORMAT, "%s: tensor \"%s\": data_offsets begin %llu > end "
                            "%llu", path, name, (unsigned long long)*begin,
                            (unsigned long long)*end);
    if (*end > data_size)
        return ct_set_error(CT_ERR_FORMAT, "%s: tensor \"%s\": data_offsets end %llu is beyond "
                            "the data section (%zu bytes)", path, name,
                            (unsigned long long)*end, data_size);

    char sbuf[160];
    size_t numel, nbytes;
    if (!numel_of(t->shape, t->ndim, &numel) ||
        !ct_mul_size(numel, ct_dtype_size(t->dtype), &nbytes))
        return ct_set_error(CT_ERR_FORMAT, "%s: tensor \"%s\": byte size of shape %s x %s "
                            "overflows", path, name, shape_str(t->shape, t->ndim, sbuf,
                            sizeof sbuf), dt->valuestring);
    if (nbytes != *end - *begin)
        return ct_set_error(CT_ERR_FORMAT, "%s: tensor \"%s\": shape %s x %s is %zu bytes, which "
                            "does not match data_offsets [%llu, %llu] (%llu bytes)", path, name,
                            shape_str(t->shape, t->ndim, sbuf, sizeof sbuf), dt->valuestring,
                            nbytes, (unsigned long long)*begin, (unsigned long long)*end,
                            (unsigned long long)(*end - *begin));
    t->nbytes = nbytes;
    return CT_OK;
}

typedef struct range {
    uint64_t begin, end;
    int idx;
} range;

static int range_cmp(const void *a, const void *b) {
    const range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int by_name_cmp(const void *a, const void *b) {
    const ct_st_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* Sorted by begin, non-empty ranges are disjoint iff each starts at or after
 * the end of the previous one. Empty tensors occupy no bytes, so they cannot
 * overlap anything (writers often give them the offset of a neighbour). */
static ct_status check_overlaps(const ct_safetensors *st, range *r, const char *path) {
    qsort(r, (size_t)st->n, sizeof *r, range_cmp);
    const range *prev = NULL;
    for (int i = 0; i < st->n; i++) {
        if (r[i].begin == r[i].end) continue;
        if (prev && r[i].begin < prev->end) {
            const ct_st_tensor *a = &st->t[prev->idx], *b = &st->t[r[i].idx];
            return ct_set_error(CT_ERR_FORMAT, "%s: tensors \"%s\" [%llu, %llu) and \"%s\" "
                                "[%llu, %llu) overlap", path, a->name,
                                (unsigned long long)prev->begin, (unsigned long long)prev->end,
                                b->name, (unsigned long long)r[i].begin,
                                (unsigned long long)r[i].end);
        }
        prev = &r[i];
    }
    return CT_OK;
}

static ct_status parse_header(ct_safetensors *st, const char *path) {
    const uint8_t *base = st->map.data;
    size_t size = st->map.size;
    if (size < 8)
        return ct_set_error(CT_ERR_FORMAT, "%s: file is %zu bytes, too short for the 8-byte "
                            "header length", path, size);
    uint64_t hlen = ld_u64(base);
    if (hlen == 0) return ct_set_error(CT_ERR_FORMAT, "%s: header length is 0", path);
    if (hlen > ST_MAX_HEADER)
        return ct_set_error(CT_ERR_FORMAT, "%s: header length %llu exceeds the 100 MB limit "
                            "(corrupt length field?)", path, (unsigned long long)hlen);
    if (hlen > size - 8)
        return ct_set_error(CT_ERR_FORMAT, "%s: header length %llu exceeds the %zu bytes after "
                            "the length field (truncated file?)", path, (unsigned long long)hlen,
                            size - 8);
    const char *json = (const char *)base + 8;
    size_t data_size = size - 8 - (size_t)hlen;

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, (size_t)hlen, &end, false);
    if (!root) {
        size_t at = end && end >= json ? (size_t)(end - json) : 0;
        return ct_set_error(CT_ERR_FORMAT, "%s: header is not valid JSON (error near header byte "
                            "%zu, file offset %zu)", path, at, at + 8);
    }
    /* Only space padding may follow the object: anything else means the
     * length field and the JSON disagree. */
    for (const char *p = end; p < json + hlen; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            size_t at = (size_t)(p - json);
            cJSON_Delete(root);
            return ct_set_error(CT_ERR_FORMAT, "%s: unexpected bytes after the JSON header at "
                                "header byte %zu", path, at);
        }
    }
    ct_status s = CT_OK;
    range *ranges = NULL;
    if (!cJSON_IsObject(root)) {
        s = ct_set_error(CT_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto done;
    }

    int n_items = cJSON_GetArraySize(root);
    st->t = calloc((size_t)n_items + 1, sizeof *st->t);
    ranges = calloc((size_t)n_items + 1, sizeof *ranges);
    if (!st->t || !ranges) {
        s = ct_set_error(CT_ERR_NOMEM, "%s: out of memory for %d header entries", path, n_items);
        goto done;
    }
    bool seen_meta = false;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (seen_meta) {
                s = ct_set_error(CT_ERR_FORMAT, "%s: duplicate __metadata__", path);
                goto done;
            }
            seen_meta = true;
            s = parse_meta(st, e, path);
            if (s != CT_OK) goto done;
            continue;
        }
        ct_st_tensor *t = &st->t[st->n];
        range *r = &ranges[st->n];
        s = parse_entry(e, path, data_size, t, &r->begin, &r->end);
        if (s != CT_OK) goto done;
        t->name = strdup(e->string);
        if (!t->name) {
            s = ct_set_error(CT_ERR_NOMEM, "%s: out of memory for tensor names", path);
            goto done;
        }
        t->data = base + 8 + hlen + r->begin;
        r->idx = st->n;
        st->n++;
    }

    s = check_overlaps(st, ranges, path);
    if (s != CT_OK) goto done;

    st->by_name = malloc(((size_t)st->n + 1) * sizeof *st->by_name);
    if (!st->by_name) {
        s = ct_set_error(CT_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < st->n; i++) st->by_name[i] = &st->t[i];
    qsort(st->by_name, (size_t)st->n, sizeof *st->by_name, by_name_cmp);
    for (int i = 1; i < st->n; i++) {
        if (strcmp(st->by_name[i - 1]->name, st->by_name[i]->name) == 0) {
            s = ct_set_error(CT_ERR_FORMAT, "%s: duplicate tensor name \"%s\"", path,
                             st->by_name[i]->name);
            goto done;
        }
    }
done:
    free(ranges);
    cJSON_Delete(root);
    return s;
}

ct_safetensors *ct_safetensors_open(const char *path) {
    if (!path) {
        ct_set_error(CT_ERR_ARG, "ct_safetensors_open: NULL path");
        return NULL;
    }
    ct_safetensors *st = calloc(1, sizeof *st);
    if (!st) {
        ct_set_error(CT_ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    if (ct_mmap_open(&st->map, path) != CT_OK || parse_header(st, path) != CT_OK) {
        ct_safetensors_close(st);
        return NULL;
    }
    return st;
}

int ct_safetensors_count(const ct_safetensors *st) { return st ? st->n : 0; }

const ct_st_tensor *ct_safetensors_at(const ct_safetensors *st, int i) {
    if (!st || i < 0 || i >= st->n) {
        ct_set_error(CT_ERR_ARG, "ct_safetensors_at: index %d out of range [0, %d)", i,
                     st ? st->n : 0);
        return NULL;
    }
    return &st->t[i];
}

const ct_st_tensor *ct_safetensors_find(const ct_safetensors *st, const char *name) {
    if (!st || !name || st->n == 0) return NULL;
    ct_st_tensor key = {.name = (char *)name};
    const ct_st_tensor *kp = &key;
    const ct_st_tensor **hit =
        bsearch(&kp, st->by_name, (size_t)st->n, sizeof *st->by_name, by_name_cmp);
    return hit ? *hit : NULL;
}

const char *ct_safetensors_meta(const ct_safetensors *st, const char *key) {
    if (!st || !key) return NULL;
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[2 * i], key) == 0) return st->meta[2 * i + 1];
    return NULL;
}

/* ---- conversion --------------------------------------------------------- */

static float bits_to_float(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* IEEE binary16 -> binary32, exact for every input (binary32 is a superset). */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0x1f) /* inf, or nan with its payload kept */
        return bits_to_float(sign | 0x7f800000u | mant << 13);
    if (exp != 0) /* normal: rebias 15 -> 127 */
        return bits_to_float(sign | (exp + 112) << 23 | mant << 13);
    /* zero or subnormal: mant * 2^-24, exact in float */
    float f = (float)mant * 0x1p-24f;
    return sign ? -f : f;
}

ct_status ct_st_to_real(const ct_st_tensor *t, ct_real *out, size_t n) {
    if (!t) return ct_set_error(CT_ERR_ARG, "ct_st_to_real: NULL tensor");
    const char *name = t->name ? t->name : "(unnamed)";
    size_t numel, nbytes;
    if (t->ndim < 0 || t->ndim > ST_MAX_RANK || !numel_of(t->shape, t->ndim, &numel) ||
        !ct_mul_size(numel, ct_dtype_size(t->dtype), &nbytes) || nbytes != t->nbytes)
        return ct_set_error(CT_ERR_ARG, "ct_st_to_real: tensor \"%s\": shape, dtype and nbytes "
                            "%zu disagree", name, t->nbytes);
    if (t->dtype != CT_F32 && t->dtype != CT_F16 && t->dtype != CT_BF16)
        return ct_set_error(CT_ERR_UNSUPPORTED, "ct_st_to_real: tensor \"%s\" has dtype %s, not "
                            "a float type", name, ct_dtype_name(t->dtype));
    if (n != numel)
        return ct_set_error(CT_ERR_ARG, "ct_st_to_real: tensor \"%s\" has %zu elements, output "
                            "has room for %zu", name, numel, n);
    if (n > 0 && (!out || !t->data))
        return ct_set_error(CT_ERR_ARG, "ct_st_to_real: tensor \"%s\": NULL buffer", name);
    /* Byte-wise loads: tensor data in a mapping is often not aligned to its
     * element size. */
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case CT_F32:
        for (size_t i = 0; i < n; i++) out[i] = (ct_real)bits_to_float(ld_u32(p + 4 * i));
        break;
    case CT_F16:
        for (size_t i = 0; i < n; i++) out[i] = (ct_real)half_to_float(ld_u16(p + 2 * i));
        break;
    case CT_BF16:
        for (size_t i = 0; i < n; i++)
            out[i] = (ct_real)bits_to_float((uint32_t)ld_u16(p + 2 * i) << 16);
        break;
    default: break;
    }
    return CT_OK;
}

/* ---- writing ------------------------------------------------------------ */

static int str_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first string occurring twice in names[0..n), or NULL. */
static const char *find_duplicate(const char **names, int n) {
    qsort(names, (size_t)n, sizeof *names, str_cmp);
    for (int i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0) return names[i];
    return NULL;
}

/* Numbers go in as raw text so that offsets are printed exactly, whatever
 * cJSON's double formatting does with large values. */
static bool add_u64_array(cJSON *obj, const char *key, const uint64_t *v, int n) {
    cJSON *a = cJSON_CreateArray();
    if (!a) return false;
    if (!cJSON_AddItemToObject(obj, key, a)) {
        cJSON_Delete(a);
        return false;
    }
    for (int i = 0; i < n; i++) {
        char buf[24];
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)v[i]);
        cJSON *r = cJSON_CreateRaw(buf);
        if (!r || !cJSON_AddItemToArray(a, r)) {
            cJSON_Delete(r);
            return false;
        }
    }
    return true;
}

static ct_status validate_entries(const char *path, const ct_st_entry *entries, int n,
                                  size_t *nbytes) {
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const ct_st_entry *e = &entries[i];
        if (!e->name || !*e->name)
            return ct_set_error(CT_ERR_ARG, "%s: entry %d has an empty name", path, i);
        if (strcmp(e->name, "__metadata__") == 0)
            return ct_set_error(CT_ERR_ARG, "%s: entry %d: \"__metadata__\" is reserved", path, i);
        if (!dtype_valid(e->dtype))
            return ct_set_error(CT_ERR_ARG, "%s: tensor \"%s\": invalid dtype %d", path, e->name,
                                (int)e->dtype);
        if (e->ndim < 0 || e->ndim > ST_MAX_RANK || (e->ndim > 0 && !e->shape))
            return ct_set_error(CT_ERR_ARG, "%s: tensor \"%s\": invalid rank %d", path, e->name,
                                e->ndim);
        size_t numel;
        if (!numel_of(e->shape, e->ndim, &numel) ||
            !ct_mul_size(numel, ct_dtype_size(e->dtype), &nbytes[i]))
            return ct_set_error(CT_ERR_ARG, "%s: tensor \"%s\": negative or oversized shape",
                                path, e->name);
        if (nbytes[i] > 0 && !e->data)
            return ct_set_error(CT_ERR_ARG, "%s: tensor \"%s\": NULL data", path, e->name);
        /* Readers hold offsets in JSON numbers, exact only up to 2^53. */
        if (!ct_add_size(total, nbytes[i], &total) || total > (size_t)JSON_MAX_EXACT)
            return ct_set_error(CT_ERR_ARG, "%s: tensor \"%s\": data section too large", path,
                                e->name);
    }
    return CT_OK;
}

static ct_status validate_names(const char *path, const ct_st_entry *entries, int n,
                                const char *const *meta_kv, int n_meta) {
    int most = n > n_meta ? n : n_meta;
    const char **names = malloc(((size_t)most + 1) * sizeof *names);
    if (!names) return ct_set_error(CT_ERR_NOMEM, "%s: out of memory", path);
    ct_status s = CT_OK;
    for (int i = 0; i < n; i++) names[i] = entries[i].name;
    const char *dup = find_duplicate(names, n);
    if (dup) {
        s = ct_set_error(CT_ERR_ARG, "%s: duplicate tensor name \"%s\"", path, dup);
        goto done;
    }
    for (int i = 0; i < n_meta; i++) {
        if (!meta_kv[2 * i] || !meta_kv[2 * i + 1]) {
            s = ct_set_error(CT_ERR_ARG, "%s: metadata pair %d has a NULL key or value", path, i);
            goto done;
        }
        names[i] = meta_kv[2 * i];
    }
    dup = find_duplicate(names, n_meta);
    if (dup) s = ct_set_error(CT_ERR_ARG, "%s: duplicate metadata key \"%s\"", path, dup);
done:
    free(names);
    return s;
}

/* The header JSON, padded with spaces so that the data section starts at a
 * multiple of 8 bytes (as the reference writer does; lets readers map
 * tensors aligned). */
static ct_status build_header(const char *path, const ct_st_entry *entries, int n,
                              const size_t *nbytes, const char *const *meta_kv, int n_meta,
                              char **out, size_t *out_len) {
    cJSON *root = cJSON_CreateObject();
    bool ok = root != NULL;
    if (ok && n_meta > 0) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        ok = m != NULL;
        for (int i = 0; ok && i < n_meta; i++)
            ok = cJSON_AddStringToObject(m, meta_kv[2 * i], meta_kv[2 * i + 1]) != NULL;
    }
    uint64_t offset = 0;
    for (int i = 0; ok && i < n; i++) {
        const ct_st_entry *e = &entries[i];
        cJSON *o = cJSON_AddObjectToObject(root, e->name);
        ok = o && cJSON_AddStringToObject(o, "dtype", ct_dtype_name(e->dtype));
        uint64_t shape[ST_MAX_RANK];
        for (int d = 0; d < e->ndim; d++) shape[d] = (uint64_t)e->shape[d];
        uint64_t offs[2] = {offset, offset + nbytes[i]};
        ok = ok && add_u64_array(o, "shape", shape, e->ndim) &&
             add_u64_array(o, "data_offsets", offs, 2);
        offset = offs[1];
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text) return ct_set_error(CT_ERR_NOMEM, "%s: out of memory building the header", path);
    size_t len = strlen(text);
    size_t padded = (len + 7) / 8 * 8;
    char *buf = realloc(text, padded);
    if (!buf) {
        free(text);
        return ct_set_error(CT_ERR_NOMEM, "%s: out of memory building the header", path);
    }
    memset(buf + len, ' ', padded - len);
    *out = buf;
    *out_len = padded;
    return CT_OK;
}

ct_status ct_safetensors_write(const char *path, const ct_st_entry *entries, int n,
                               const char *const *meta_kv, int n_meta) {
    if (!path || !*path) return ct_set_error(CT_ERR_ARG, "ct_safetensors_write: empty path");
    if (n < 0 || (n > 0 && !entries) || n_meta < 0 || (n_meta > 0 && !meta_kv))
        return ct_set_error(CT_ERR_ARG, "%s: invalid entry or metadata arrays", path);
    size_t *nbytes = malloc(((size_t)n + 1) * sizeof *nbytes);
    if (!nbytes) return ct_set_error(CT_ERR_NOMEM, "%s: out of memory", path);
    char *header = NULL;
    size_t hlen = 0;
    ct_atomic_file *f = NULL;
    ct_status s = validate_entries(path, entries, n, nbytes);
    if (s == CT_OK) s = validate_names(path, entries, n, meta_kv, n_meta);
    if (s == CT_OK) s = build_header(path, entries, n, nbytes, meta_kv, n_meta, &header, &hlen);
    if (s == CT_OK) s = ct_atomic_create(path, &f);
    if (s == CT_OK) {
        uint8_t len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
        s = ct_atomic_write(f, len8, sizeof len8);
        if (s == CT_OK) s = ct_atomic_write(f, header, hlen);
        for (int i = 0; s == CT_OK && i < n; i++)
            s = ct_atomic_write(f, entries[i].data, nbytes[i]);
        if (s == CT_OK) {
            s = ct_atomic_commit(f);
        } else {
            ct_atomic_abort(f);
        }
    }
    free(header);
    free(nbytes);
    return s;
}

ct_status ct_st_copy_exact(const ct_safetensors *st, const char *name, ct_dtype dtype,
                           void *dst, size_t nbytes, const char *path) {
    const ct_st_tensor *t = ct_safetensors_find(st, name);
    if (!t || t->dtype != dtype || t->nbytes != nbytes)
        return ct_set_error(CT_ERR_FORMAT, "%s: tensor %s is missing or does not match the run",
                            path, name);
    memcpy(dst, t->data, nbytes);
    return CT_OK;
}
