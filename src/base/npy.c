/* NumPy .npy reading and writing (little-endian float32 / int64, C order).
 *
 * Layout: "\x93NUMPY", major, minor, header length (u16 LE for 1.0, u32 LE
 * for 2.0 and 3.0), then the header: a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * padded with spaces and ended by '\n', then the raw data.
 *
 * The header is Python syntax, not JSON, so it gets its own small parser.
 * It accepts what numpy writes (and old numpy's "3L" integers) and rejects
 * anything else with the byte offset of the first surprise. */
#include <stdint.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "npy data is copied as-is and assumed little-endian like the host"
#endif

#define NPY_MAX_RANK 8
#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
/* numpy pads the preamble + header to this, so data can be mapped aligned. */
#define NPY_ALIGN 64

typedef struct cursor {
    const char *path;
    const char *begin, *p, *end;
} cursor;

static size_t at(const cursor *c) { return (size_t)(c->p - c->begin); }

static ct_status syntax(const cursor *c, const char *what) {
    return ct_set_error(CT_ERR_FORMAT, "%s: npy header: expected %s at header byte %zu", c->path,
                        what, at(c));
}

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool accept(cursor *c, char ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

static bool accept_word(cursor *c, const char *w) {
    skip_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n) != 0) return false;
    c->p += n;
    return true;
}

/* A quoted string without escapes (numpy never writes any in keys or
 * simple descrs). Copied into buf, truncated to fit (only used for
 * messages beyond the short strings we compare against). */
static ct_status parse_string(cursor *c, char *buf, size_t n) {
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return syntax(c, "a quoted string");
    char q = *c->p++;
    const char *s = c->p;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || *c->p == '\n') return syntax(c, "a simple string");
        c->p++;
    }
    if (c->p >= c->end) return syntax(c, "a closing quote");
    size_t len = (size_t)(c->p - s);
    if (len >= n) len = n - 1;
    memcpy(buf, s, len);
    buf[len] = 0;
    c->p++;
    return CT_OK;
}

static ct_status parse_dim(cursor *c, int d, int64_t *out) {
    skip_ws(c);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9')
        return ct_set_error(CT_ERR_FORMAT, "%s: npy header: shape[%d] is not a non-negative "
                            "integer (header byte %zu)", c->path, d, at(c));
    int64_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        int digit = *c->p - '0';
        if (v > (INT64_MAX - digit) / 10)
            return ct_set_error(CT_ERR_FORMAT, "%s: npy header: shape[%d] overflows (header "
                                "byte %zu)", c->path, d, at(c));
        v = v * 10 + digit;
        c->p++;
    }
    if (c->p < c->end && *c->p == 'L') c->p++; /* Python 2 long */
    *out = v;
    return CT_OK;
}

/* "()", "(3,)", "(2, 3)", "(2, 3,)". */
static ct_status parse_shape(cursor *c, int *ndim, int64_t *shape) {
    if (!accept(c, '(')) return syntax(c, "'(' starting the shape tuple");
    *ndim = 0;
    if (accept(c, ')')) return CT_OK;
    for (;;) {
        if (*ndim == NPY_MAX_RANK)
            return ct_set_error(CT_ERR_UNSUPPORTED, "%s: npy header: rank above %d is not "
                                "supported", c->path, NPY_MAX_RANK);
        skip_ws(c);
        if (c->p >= c->end) return syntax(c, "')' closing the shape tuple");
        ct_status s = parse_dim(c, *ndim, &shape[*ndim]);
        if (s != CT_OK) return s;
        (*ndim)++;
        if (accept(c, ')')) return CT_OK;
        if (!accept(c, ',')) return syntax(c, "',' or ')' in the shape tuple");
        if (accept(c, ')')) return CT_OK;
    }
}

typedef struct npy_header {
    char descr[64];
    bool fortran;
    int ndim;
    int64_t shape[NPY_MAX_RANK];
} npy_header;

static ct_status parse_dict(cursor *c, npy_header *h) {
    bool has_descr = false, has_fortran = false, has_shape = false;
    if (!accept(c, '{')) return syntax(c, "'{'");
    while (!accept(c, '}')) {
        char key[32];
        skip_ws(c);
        size_t key_at = at(c);
        ct_status s = parse_string(c, key, sizeof key);
        if (s != CT_OK) return s;
        if (!accept(c, ':')) return syntax(c, "':'");
        bool *seen;
        if (strcmp(key, "descr") == 0) {
            seen = &has_descr;
            skip_ws(c);
            if (c->p < c->end && (*c->p == '[' || *c->p == '('))
                return ct_set_error(CT_ERR_UNSUPPORTED, "%s: npy header: structured descr is "
                                    "not supported (header byte %zu)", c->path, at(c));
            s = parse_string(c, h->descr, sizeof h->descr);
        } else if (strcmp(key, "fortran_order") == 0) {
            seen = &has_fortran;
            if (accept_word(c, "True")) {
                h->fortran = true;
            } else if (accept_word(c, "False")) {
                h->fortran = false;
            } else {
                s = syntax(c, "True or False for fortran_order");
            }
        } else if (strcmp(key, "shape") == 0) {
            seen = &has_shape;
            s = parse_shape(c, &h->ndim, h->shape);
        } else {
            return ct_set_error(CT_ERR_FORMAT, "%s: npy header: unexpected key '%s' at header "
                                "byte %zu", c->path, key, key_at);
        }
        if (s != CT_OK) return s;
        if (*seen)
            return ct_set_error(CT_ERR_FORMAT, "%s: npy header: duplicate key '%s' at header "
                                "byte %zu", c->path, key, key_at);
        *seen = true;
        if (accept(c, '}')) break;
        if (!accept(c, ',')) return syntax(c, "',' or '}'");
    }
    skip_ws(c);
    if (c->p != c->end) return syntax(c, "only padding after the dict");
    if (!has_descr || !has_fortran || !has_shape)
        return ct_set_error(CT_ERR_FORMAT, "%s: npy header: missing key '%s'", c->path,
                            !has_descr ? "descr" : !has_fortran ? "fortran_order" : "shape");
    return CT_OK;
}

static ct_status parse_npy(const char *path, const ct_mmap *m, ct_npy *out,
                           const uint8_t **data, size_t *nbytes) {
    const uint8_t *b = m->data;
    if (m->size < NPY_MAGIC_LEN + 2 || memcmp(b, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
        return ct_set_error(CT_ERR_FORMAT, "%s: not a .npy file (bad magic)", path);
    unsigned major = b[6], minor = b[7];
    size_t pre, hlen;
    if (major == 1 && minor == 0) {
        pre = 10;
        if (m->size < pre) return ct_set_error(CT_ERR_FORMAT, "%s: npy preamble truncated", path);
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
    } else if ((major == 2 || major == 3) && minor == 0) {
        /* 3.0 only changes the header text encoding to UTF-8; everything we
         * accept in it is ASCII. */
        pre = 12;
        if (m->size < pre) return ct_set_error(CT_ERR_FORMAT, "%s: npy preamble truncated", path);
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    } else {
        return ct_set_error(CT_ERR_UNSUPPORTED, "%s: npy version %u.%u is not supported", path,
                            major, minor);
    }
    if (hlen > m->size - pre)
        return ct_set_error(CT_ERR_FORMAT, "%s: npy header length %zu exceeds the %zu bytes "
                            "after the preamble", path, hlen, m->size - pre);

    cursor c = {path, (const char *)b + pre, (const char *)b + pre, (const char *)b + pre + hlen};
    npy_header h = {0};
    ct_status s = parse_dict(&c, &h);
    if (s != CT_OK) return s;

    if (strcmp(h.descr, "<f4") == 0) {
        out->dtype = CT_F32;
    } else if (strcmp(h.descr, "<i8") == 0) {
        out->dtype = CT_I64;
    } else {
        return ct_set_error(CT_ERR_UNSUPPORTED, "%s: npy descr '%s' is not supported (only '<f4' "
                            "and '<i8')", path, h.descr);
    }
    if (h.fortran)
        return ct_set_error(CT_ERR_UNSUPPORTED, "%s: npy fortran_order True is not supported "
                            "(save a C-contiguous array)", path);

    size_t numel = 1, want;
    for (int i = 0; i < h.ndim; i++) {
        if ((uint64_t)h.shape[i] > SIZE_MAX || !ct_mul_size(numel, (size_t)h.shape[i], &numel))
            return ct_set_error(CT_ERR_FORMAT, "%s: npy shape overflows", path);
    }
    if (!ct_mul_size(numel, ct_dtype_size(out->dtype), &want))
        return ct_set_error(CT_ERR_FORMAT, "%s: npy shape overflows", path);
    size_t have = m->size - pre - hlen;
    if (have != want)
        return ct_set_error(CT_ERR_FORMAT, "%s: npy data is %zu bytes at offset %zu, expected %zu "
                            "for %zu elements of %s", path, have, pre + hlen, want, numel,
                            h.descr);
    out->ndim = h.ndim;
    memcpy(out->shape, h.shape, sizeof h.shape);
    out->numel = numel;
    *data = b + pre + hlen;
    *nbytes = want;
    return CT_OK;
}

ct_status ct_npy_read(const char *path, ct_npy *out) {
    if (!out) return ct_set_error(CT_ERR_ARG, "ct_npy_read: NULL output");
    memset(out, 0, sizeof *out);
    if (!path) return ct_set_error(CT_ERR_ARG, "ct_npy_read: NULL path");
    ct_mmap m;
    ct_status s = ct_mmap_open(&m, path);
    if (s != CT_OK) return s;
    const uint8_t *data = NULL;
    size_t nbytes = 0;
    s = parse_npy(path, &m, out, &data, &nbytes);
    if (s == CT_OK) {
        /* Never malloc(0): a non-NULL pointer keeps "data == NULL" meaning
         * "nothing was read". */
        out->data = malloc(nbytes ? nbytes : 1);
        if (!out->data) {
            s = ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, nbytes);
        } else if (nbytes) {
            memcpy(out->data, data, nbytes);
        }
    }
    ct_mmap_close(&m);
    if (s != CT_OK) memset(out, 0, sizeof *out);
    return s;
}

void ct_npy_free(ct_npy *a) {
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

ct_status ct_npy_write(const char *path, ct_dtype dtype, int ndim, const int64_t *shape,
                       const void *data) {
    if (!path || !*path) return ct_set_error(CT_ERR_ARG, "ct_npy_write: empty path");
    const char *descr;
    if (dtype == CT_F32) {
        descr = "<f4";
    } else if (dtype == CT_I64) {
        descr = "<i8";
    } else {
        return ct_set_error(CT_ERR_UNSUPPORTED, "%s: npy writing supports F32 and I64, not %s",
                            path, ct_dtype_name(dtype));
    }
    if (ndim < 0 || ndim > NPY_MAX_RANK || (ndim > 0 && !shape))
        return ct_set_error(CT_ERR_ARG, "%s: invalid rank %d for npy", path, ndim);
    size_t numel = 1, nbytes;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (uint64_t)shape[i] > SIZE_MAX ||
            !ct_mul_size(numel, (size_t)shape[i], &numel))
            return ct_set_error(CT_ERR_ARG, "%s: invalid shape[%d] = %lld", path, i,
                                (long long)shape[i]);
    }
    if (!ct_mul_size(numel, ct_dtype_size(dtype), &nbytes))
        return ct_set_error(CT_ERR_ARG, "%s: npy shape overflows", path);
    if (nbytes > 0 && !data) return ct_set_error(CT_ERR_ARG, "%s: NULL data", path);

    /* Version 1.0 preamble + header; 8 dims of 19 digits fit easily. */
    char buf[512];
    memcpy(buf, NPY_MAGIC "\x01\x00", 8);
    size_t k = 10;
    k += (size_t)snprintf(buf + k, sizeof buf - k,
                          "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < ndim; i++)
        k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%lld", i ? ", " : "",
                              (long long)shape[i]);
    k += (size_t)snprintf(buf + k, sizeof buf - k, "%s), }", ndim == 1 ? "," : "");
    /* Pad so the data starts 64-byte aligned; the newline ends the header. */
    size_t total = (k + 1 + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
    CT_ASSERT(total <= sizeof buf);
    memset(buf + k, ' ', total - 1 - k);
    buf[total - 1] = '\n';
    size_t hlen = total - 10;
    buf[8] = (char)(hlen & 0xff);
    buf[9] = (char)(hlen >> 8);

    ct_atomic_file *f;
    ct_status s = ct_atomic_create(path, &f);
    if (s != CT_OK) return s;
    s = ct_atomic_write(f, buf, total);
    if (s == CT_OK) s = ct_atomic_write(f, data, nbytes);
    if (s != CT_OK) {
        ct_atomic_abort(f);
        return s;
    }
    return ct_atomic_commit(f);
}
