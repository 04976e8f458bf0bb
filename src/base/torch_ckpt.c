/* PyTorch checkpoints (torch.save): the zip and legacy containers, a
 * restricted pickle interpreter that only builds values, and the flat
 * listing of tensors and scalars (see torch_ckpt.h).
 *
 * Zip (torch >= 1.6): every entry is STORED; names "<archive>/data.pkl",
 * "<archive>/data/<key>" (one per storage, 64-byte aligned through local
 * extra-field padding), "<archive>/version", maybe "<archive>/byteorder".
 * torch's writer sets the data-descriptor flag (local header sizes 0), so
 * sizes come from the central directory; it also writes a zip64 end
 * record, and zip64 extra fields once sizes or offsets pass 4 GiB.
 *
 * Legacy (torch < 1.6): consecutive pickles (the magic number as a LONG1,
 * the protocol version 1001, a system-info dict, the main object, the list
 * of storage keys), then per key in that list: the element count as a
 * little-endian int64 and the raw elements. Persistent ids carry a sixth
 * field, view_metadata (None unless the storage is a view of another).
 *
 * The pickle: protocol 2 to 5 binary opcodes. Values live in one pool and
 * refer to each other by index; nothing is ever called. The persistent id
 * ('storage', torch.<T>Storage, key, location, numel) makes a storage
 * value, checked against its entry (zip) or record (legacy); a tensor's
 * (offset, size, stride) is checked against the storage's declared numel.
 *
 * Files come from the network, so every length, count, index and offset is
 * checked before use, and the interpreter's memory is bounded by limits on
 * values, stack, memo and nesting. */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/torch_ckpt.h"
#include "base/error.h"
#include "base/file.h"

/* ---- limits --------------------------------------------------------------
 * Far above what real checkpoints use (a CLIP state_dict pickle has a few
 * thousand values), low enough that a hostile pickle cannot exhaust memory. */
#define TC_MAX_VALUES (1 << 22)
#define TC_MAX_STACK (1 << 22)
#define TC_MAX_MEMO (1 << 22)   /* highest memo index + 1 */
#define TC_MAX_MARKS 4096       /* MARKs open at once */
#define TC_MAX_ITEMS (1 << 22)  /* items in one container */
#define TC_MAX_DEPTH 64         /* nesting of the listed tree (also stops cycles) */
#define TC_MAX_VISITS (1 << 22) /* values visited while listing (shared subtrees) */
#define TC_MAX_LISTED (1 << 20) /* tensors + scalars listed */
#define TC_MAX_PATH 4096        /* a dotted key path, bytes */
#define TC_MAX_GLOBAL 256       /* GLOBAL's module and name lines */
#define TC_MAX_KEY 1024         /* a storage key */
#define TC_MAX_ENTRIES (1 << 20) /* zip entries */

/* ---- element types -------------------------------------------------------- */

typedef struct elem_info {
    const char *storage; /* torch.<storage> */
    size_t size;
    int dtype; /* ct_dtype listed, -1: checked but not listed */
    bool f64;
} elem_info;

static const elem_info ELEMS[] = {
    {"FloatStorage", 4, CT_F32, false},     {"HalfStorage", 2, CT_F16, false},
    {"BFloat16Storage", 2, CT_BF16, false}, {"DoubleStorage", 8, CT_F32, true},
    {"LongStorage", 8, CT_I64, false},      {"IntStorage", 4, CT_I32, false},
    {"ByteStorage", 1, CT_U8, false},       {"ShortStorage", 2, -1, false},
    {"CharStorage", 1, -1, false},          {"BoolStorage", 1, -1, false},
    {"ComplexHalfStorage", 4, -1, false},   {"ComplexFloatStorage", 8, -1, false},
    {"ComplexDoubleStorage", 16, -1, false}, {"UntypedStorage", 1, -1, false},
};
#define N_ELEMS ((int)(sizeof ELEMS / sizeof ELEMS[0]))

/* ---- values ---------------------------------------------------------------- */

enum {
    V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_BYTES, V_TUPLE, V_LIST, V_DICT, V_SET,
    V_GLOBAL, V_STORAGE, V_TENSOR, V_OBJECT
};
static const char *const KIND_NAME[] = {"None", "bool", "int", "float", "str", "bytes",
                                        "tuple", "list", "dict", "set", "global",
                                        "storage", "tensor", "object"};

/* what a GLOBAL names */
enum { G_OTHER, G_ODICT, G_DDICT, G_TENSOR_V2, G_PARAM, G_STORAGE };

typedef struct val {
    uint8_t kind;
    uint8_t g;     /* V_GLOBAL: G_* */
    int16_t elem;  /* V_GLOBAL G_STORAGE: index in ELEMS */
    int32_t n, cap; /* containers: items (a dict's keys and values alternate) */
    union {
        int64_t i;
        double f;
        struct {
            const uint8_t *p;
            size_t len;
        } s;            /* V_STR, V_BYTES; V_GLOBAL: its "module.name" isn't kept, its name is */
        int32_t *items; /* V_TUPLE, V_LIST, V_DICT */
        int32_t ref;    /* V_STORAGE: storage record; V_TENSOR: tensor record */
    } u;
} val;

typedef struct srec {
    const uint8_t *key;
    size_t key_len;
    int elem;
    uint64_t numel;      /* declared by the persistent id */
    const uint8_t *data; /* NULL until resolved */
} srec;

typedef struct trec {
    int32_t storage;
    int ndim;
    bool requires_grad;
    int64_t offset;
    int64_t shape[CT_TORCH_MAX_RANK], stride[CT_TORCH_MAX_RANK];
    size_t numel;
} trec;

typedef struct zent {
    const uint8_t *name;
    size_t name_len;
    uint64_t csize, usize, lho;
    uint32_t crc;
    uint16_t method, flags;
    bool checked; /* data located and CRC verified */
    const uint8_t *data;
} zent;

typedef struct scalar {
    char *name;
    bool is_float;
    int64_t i;
    double f;
} scalar;

struct ct_torch_ckpt {
    ct_mmap map;
    int n;
    ct_torch_tensor *t;                /* pickle order */
    const ct_torch_tensor **by_name;   /* sorted */
    int n_sc;
    scalar *sc;                        /* sorted by name */
    int skipped;
};

/* Parser state (freed once the listing is built). */
typedef struct tc {
    const char *path;
    const uint8_t *file;
    size_t size;
    bool legacy;
    const char *where; /* "data.pkl" or "pickle": for messages */

    zent *ents; /* sorted by name */
    int n_ents;
    uint64_t cd_off; /* entries' data must lie below */
    const uint8_t *prefix;
    size_t prefix_len; /* "<archive>/" */

    val *v;
    int32_t nv, capv;
    int32_t *stack;
    int32_t nstack, capstack;
    int32_t *marks;
    int32_t nmarks, capmarks;
    int32_t *memo;
    int32_t capmemo, memo_count;
    srec *st;
    int32_t nst, capst;
    trec *tr;
    int32_t ntr, captr;

    /* listing */
    ct_torch_ckpt *ck;
    int cap_t, cap_sc;
    long visits;
    char path_buf[TC_MAX_PATH + 1];
} tc;

/* ---- errors ---------------------------------------------------------------- */

static ct_status fail(tc *c, ct_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static ct_status fail(tc *c, ct_status s, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ct_set_error(s, "%s: %s", c->path, msg);
}
#define BAD(...) fail(c, CT_ERR_FORMAT, __VA_ARGS__)
#define UNSUP(...) fail(c, CT_ERR_UNSUPPORTED, __VA_ARGS__)
#define NOMEM() fail(c, CT_ERR_NOMEM, "out of memory")
#define TRY(x)                          \
    do {                                \
        ct_status s_ = (x);             \
        if (s_ != CT_OK) return s_;     \
    } while (0)

/* ---- little helpers ---------------------------------------------------------- */

static uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t ld32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t ld64(const uint8_t *p) { return (uint64_t)ld32(p) | (uint64_t)ld32(p + 4) << 32; }

/* Grow *arr (elements of sz bytes, *cap of them) to hold need; max bounds need. */
static bool grow(void **arr, int32_t *cap, int64_t need, size_t sz) {
    if (need <= *cap) return true;
    int64_t nc = *cap ? (int64_t)*cap * 2 : 16;
    while (nc < need) nc *= 2;
    if (nc > INT32_MAX) nc = INT32_MAX;
    if (nc < need) return false;
    void *p = realloc(*arr, (size_t)nc * sz);
    if (!p) return false;
    *arr = p;
    *cap = (int32_t)nc;
    return true;
}

/* (p, n) as a printable, bounded string for messages. */
static const char *show(const uint8_t *p, size_t n, char *buf, size_t cap) {
    size_t k = 0, i = 0;
    for (; i < n && k + 8 < cap; i++) {
        uint8_t ch = p[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"') buf[k++] = (char)ch;
        else k += (size_t)snprintf(buf + k, cap - k, "\\x%02x", ch);
    }
    if (i < n) memcpy(buf + k, "...", 3), k += 3;
    buf[k] = 0;
    return buf;
}

static bool str_eq(const val *v, const char *s) {
    size_t n = strlen(s);
    return v->kind == V_STR && v->u.s.len == n && memcmp(v->u.s.p, s, n) == 0;
}

/* ---- the zip container ------------------------------------------------------- */

static int zent_cmp(const void *a, const void *b) {
    const zent *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int r = memcmp(x->name, y->name, n);
    if (r) return r;
    return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

/* The entry named a + b + c (parts may be empty), or NULL. */
static zent *zip_find3(tc *c, const uint8_t *a, size_t na, const char *b, const uint8_t *k,
                       size_t nk) {
    size_t nb = strlen(b), n = na + nb + nk;
    uint8_t stackbuf[512], *buf = n <= sizeof stackbuf ? stackbuf : malloc(n);
    if (!buf) return NULL;
    memcpy(buf, a, na);
    memcpy(buf + na, b, nb);
    if (nk) memcpy(buf + na + nb, k, nk);
    zent key = {.name = buf, .name_len = n};
    zent *hit = c->n_ents ? bsearch(&key, c->ents, (size_t)c->n_ents, sizeof *c->ents, zent_cmp)
                          : NULL;
    if (buf != stackbuf) free(buf);
    return hit;
}

/* Locate an entry's bytes (stored, inside the file, before the central
 * directory, local header consistent) and check its CRC-32, once. */
static ct_status zip_data(tc *c, zent *e, const uint8_t **out, size_t *n) {
    char nb[200];
    const char *name = show(e->name, e->name_len, nb, sizeof nb);
    if (!e->checked) {
        if (e->flags & 1) return UNSUP("zip entry \"%s\" is encrypted", name);
        if (e->method != 0)
            return UNSUP("zip entry \"%s\" is compressed (method %u); only stored entries "
                         "are supported, as torch.save writes them", name, e->method);
        if (e->csize != e->usize)
            return BAD("zip entry \"%s\": stored entry with compressed size %llu != size %llu",
                       name, (unsigned long long)e->csize, (unsigned long long)e->usize);
        if (e->lho > c->size || c->size - e->lho < 30 || ld32(c->file + e->lho) != 0x04034b50)
            return BAD("zip entry \"%s\": no local header at offset %llu", name,
                       (unsigned long long)e->lho);
        const uint8_t *lh = c->file + e->lho;
        uint64_t nlen = ld16(lh + 26), xlen = ld16(lh + 28);
        uint64_t data_off = e->lho + 30 + nlen + xlen;
        if (data_off > c->cd_off || e->usize > c->cd_off - data_off)
            return BAD("zip entry \"%s\": data (%llu bytes at offset %llu) runs past the "
                       "entries' area", name, (unsigned long long)e->usize,
                       (unsigned long long)data_off);
        if (nlen != e->name_len || memcmp(lh + 30, e->name, e->name_len) != 0)
            return BAD("zip entry \"%s\": local header names another entry", name);
        const uint8_t *p = c->file + data_off;
        uLong crc = crc32(0L, Z_NULL, 0);
        for (uint64_t done = 0; done < e->usize;) {
            uint64_t chunk = e->usize - done;
            if (chunk > (1u << 30)) chunk = 1u << 30;
            crc = crc32(crc, p + done, (uInt)chunk);
            done += chunk;
        }
        if ((uint32_t)crc != e->crc)
            return BAD("zip entry \"%s\": CRC-32 mismatch (corrupt file)", name);
        e->data = p;
        e->checked = true;
    }
    *out = e->data;
    *n = (size_t)e->usize;
    return CT_OK;
}

/* zip64 extended information for one central-directory entry. */
static ct_status zip64_extra(tc *c, const uint8_t *x, size_t xlen, zent *e, bool need_u,
                             bool need_c, bool need_o) {
    size_t p = 0;
    while (p + 4 <= xlen) {
        uint16_t id = ld16(x + p), len = ld16(x + p + 2);
        if (len > xlen - p - 4) return BAD("zip central directory: extra field runs past its entry");
        if (id == 1) {
            const uint8_t *f = x + p + 4;
            size_t k = 0;
            uint64_t *want[3] = {need_u ? &e->usize : NULL, need_c ? &e->csize : NULL,
                                 need_o ? &e->lho : NULL};
            for (int i = 0; i < 3; i++) {
                if (!want[i]) continue;
                if (k + 8 > len) return BAD("zip64 extra field too short");
                *want[i] = ld64(f + k);
                k += 8;
            }
            return CT_OK;
        }
        p += 4 + (size_t)len;
    }
    return BAD("zip central directory: entry needs a zip64 extra field and has none");
}

static ct_status zip_open(tc *c) {
    const uint8_t *f = c->file;
    size_t size = c->size;
    if (size < 22) return BAD("truncated zip archive (no end of central directory)");
    size_t eocd = SIZE_MAX;
    for (size_t pos = size - 22;; pos--) {
        if (ld32(f + pos) == 0x06054b50 && (size_t)ld16(f + pos + 20) == size - pos - 22) {
            eocd = pos;
            break;
        }
        if (pos == 0 || size - pos >= 22 + 65535) break;
    }
    if (eocd == SIZE_MAX)
        return BAD("no zip end-of-central-directory record (truncated or not a zip archive)");
    const uint8_t *e = f + eocd;
    uint16_t disk = ld16(e + 4), cd_disk = ld16(e + 6);
    uint64_t n_disk = ld16(e + 8), n = ld16(e + 10), cd_size = ld32(e + 12), cd_off = ld32(e + 16);
    uint64_t limit = eocd; /* the central directory ends before this */
    if (eocd >= 20 && ld32(f + eocd - 20) == 0x07064b50) {
        uint64_t z = ld64(f + eocd - 20 + 8);
        if (ld32(f + eocd - 20 + 4) != 0 || ld32(f + eocd - 20 + 16) > 1)
            return UNSUP("multi-disk zip archives are not supported");
        if (z > eocd - 20 || eocd - 20 - z < 56 || ld32(f + z) != 0x06064b50)
            return BAD("zip64 end record locator points outside the file");
        disk = (uint16_t)(ld32(f + z + 16) ? 1 : 0);
        cd_disk = (uint16_t)(ld32(f + z + 20) ? 1 : 0);
        n_disk = ld64(f + z + 24);
        n = ld64(f + z + 32);
        cd_size = ld64(f + z + 40);
        cd_off = ld64(f + z + 48);
        limit = z;
    } else if (n == 0xFFFF || cd_size == 0xFFFFFFFF || cd_off == 0xFFFFFFFF) {
        return BAD("zip end record needs a zip64 end record and there is none");
    }
    if (disk != 0 || cd_disk != 0 || n_disk != n)
        return UNSUP("multi-disk zip archives are not supported");
    if (cd_off > limit || cd_size > limit - cd_off)
        return BAD("zip central directory (%llu bytes at %llu) lies outside the file",
                   (unsigned long long)cd_size, (unsigned long long)cd_off);
    if (n > TC_MAX_ENTRIES) return UNSUP("zip archive with %llu entries", (unsigned long long)n);
    if (n * 46 > cd_size) return BAD("zip central directory too small for %llu entries",
                                     (unsigned long long)n);
    c->cd_off = cd_off;
    c->ents = calloc(n ? (size_t)n : 1, sizeof *c->ents);
    if (!c->ents) return NOMEM();
    const uint8_t *p = f + cd_off, *end = f + cd_off + cd_size;
    for (uint64_t i = 0; i < n; i++) {
        if ((size_t)(end - p) < 46 || ld32(p) != 0x02014b50)
            return BAD("zip central directory entry %llu is malformed", (unsigned long long)i);
        size_t nlen = ld16(p + 28), xlen = ld16(p + 30), clen = ld16(p + 32);
        if ((size_t)(end - p) - 46 < nlen + xlen + clen)
            return BAD("zip central directory entry %llu runs past the directory",
                       (unsigned long long)i);
        zent *z = &c->ents[c->n_ents++];
        z->flags = ld16(p + 8);
        z->method = ld16(p + 10);
        z->crc = ld32(p + 16);
        z->csize = ld32(p + 20);
        z->usize = ld32(p + 24);
        z->lho = ld32(p + 42);
        z->name = p + 46;
        z->name_len = nlen;
        bool nu = z->usize == 0xFFFFFFFF, nc = z->csize == 0xFFFFFFFF, no = z->lho == 0xFFFFFFFF;
        if (nu || nc || no) TRY(zip64_extra(c, p + 46 + nlen, xlen, z, nu, nc, no));
        p += 46 + nlen + xlen + clen;
    }
    qsort(c->ents, (size_t)c->n_ents, sizeof *c->ents, zent_cmp);
    for (int i = 1; i < c->n_ents; i++)
        if (zent_cmp(&c->ents[i - 1], &c->ents[i]) == 0) {
            char nb[200];
            return BAD("zip archive has two entries named \"%s\"",
                       show(c->ents[i].name, c->ents[i].name_len, nb, sizeof nb));
        }
    return CT_OK;
}

/* ---- the pickle machine -------------------------------------------------------- */

static ct_status new_val(tc *c, uint8_t kind, int32_t *out) {
    if (c->nv >= TC_MAX_VALUES) return UNSUP("pickle builds more than %d values", TC_MAX_VALUES);
    if (!grow((void **)&c->v, &c->capv, (int64_t)c->nv + 1, sizeof *c->v)) return NOMEM();
    val *v = &c->v[c->nv];
    memset(v, 0, sizeof *v);
    v->kind = kind;
    *out = c->nv++;
    return CT_OK;
}

static int32_t mark_top(const tc *c) { return c->nmarks ? c->marks[c->nmarks - 1] : 0; }

static ct_status push(tc *c, int32_t x) {
    if (c->nstack >= TC_MAX_STACK) return UNSUP("pickle stack deeper than %d", TC_MAX_STACK);
    if (!grow((void **)&c->stack, &c->capstack, (int64_t)c->nstack + 1, sizeof *c->stack))
        return NOMEM();
    c->stack[c->nstack++] = x;
    return CT_OK;
}

static ct_status pop(tc *c, size_t at, int32_t *out) {
    if (c->nstack <= mark_top(c)) return BAD("%s byte %zu: pickle stack underflow", c->where, at);
    *out = c->stack[--c->nstack];
    return CT_OK;
}

static ct_status top(tc *c, size_t at, int32_t *out) {
    if (c->nstack <= mark_top(c)) return BAD("%s byte %zu: pickle stack underflow", c->where, at);
    *out = c->stack[c->nstack - 1];
    return CT_OK;
}

/* Pop to the last MARK: the items are stack[*from .. nstack) until the next push. */
static ct_status pop_mark(tc *c, size_t at, int32_t *from) {
    if (!c->nmarks) return BAD("%s byte %zu: no MARK to pop to", c->where, at);
    *from = c->marks[--c->nmarks];
    return CT_OK;
}

static ct_status add_item(tc *c, int32_t cont, int32_t item) {
    val *v = &c->v[cont];
    if (v->n >= TC_MAX_ITEMS) return UNSUP("a container with more than %d items", TC_MAX_ITEMS);
    if (!grow((void **)&v->u.items, &v->cap, (int64_t)v->n + 1, sizeof *v->u.items)) return NOMEM();
    v->u.items[v->n++] = item;
    return CT_OK;
}

/* A tuple (or list) of stack[from .. nstack); pops them. */
static ct_status make_seq(tc *c, uint8_t kind, int32_t from, int32_t *out) {
    int32_t k = c->nstack - from;
    if (k > TC_MAX_ITEMS) return UNSUP("a tuple with more than %d items", TC_MAX_ITEMS);
    TRY(new_val(c, kind, out));
    val *v = &c->v[*out];
    if (k > 0) {
        v->u.items = malloc((size_t)k * sizeof *v->u.items);
        if (!v->u.items) return NOMEM();
        memcpy(v->u.items, c->stack + from, (size_t)k * sizeof *v->u.items);
        v->n = v->cap = k;
    }
    c->nstack = from;
    return CT_OK;
}

static ct_status memo_put(tc *c, uint64_t idx, int32_t x, size_t at) {
    if (idx >= TC_MAX_MEMO) return UNSUP("%s byte %zu: memo index %llu exceeds %d", c->where, at,
                                         (unsigned long long)idx, TC_MAX_MEMO);
    if ((int64_t)idx >= c->capmemo) {
        int32_t old = c->capmemo;
        if (!grow((void **)&c->memo, &c->capmemo, (int64_t)idx + 1, sizeof *c->memo))
            return NOMEM();
        for (int32_t i = old; i < c->capmemo; i++) c->memo[i] = -1;
    }
    if (c->memo[idx] < 0) c->memo_count++;
    c->memo[idx] = x;
    return CT_OK;
}

static ct_status memo_get(tc *c, uint64_t idx, size_t at) {
    if ((int64_t)idx >= c->capmemo || c->memo[idx] < 0)
        return BAD("%s byte %zu: memo entry %llu was never stored", c->where, at,
                   (unsigned long long)idx);
    return push(c, c->memo[idx]);
}

static ct_status make_global(tc *c, const uint8_t *mod, size_t nm, const uint8_t *name, size_t nn,
                             int32_t *out) {
    TRY(new_val(c, V_GLOBAL, out));
    val *v = &c->v[*out];
    v->g = G_OTHER;
    v->u.s.p = name;
    v->u.s.len = nn;
#define IS(s, p, n) ((n) == strlen(s) && memcmp((p), (s), (n)) == 0)
    if (IS("collections", mod, nm)) {
        if (IS("OrderedDict", name, nn)) v->g = G_ODICT;
        else if (IS("defaultdict", name, nn)) v->g = G_DDICT;
    } else if (IS("torch._utils", mod, nm)) {
        if (IS("_rebuild_tensor_v2", name, nn)) v->g = G_TENSOR_V2;
        else if (IS("_rebuild_parameter", name, nn) || IS("_rebuild_parameter_with_state", name, nn))
            v->g = G_PARAM;
    } else if (IS("torch", mod, nm) || IS("torch.storage", mod, nm)) {
        for (int i = 0; i < N_ELEMS; i++)
            if (IS(ELEMS[i].storage, name, nn)) {
                v->g = G_STORAGE;
                v->elem = (int16_t)i;
            }
    }
#undef IS
    return CT_OK;
}

/* BINPERSID: ('storage', torch.<T>Storage, key, location, numel[, view_metadata]). */
static ct_status persistent_load(tc *c, int32_t pid, size_t at, int32_t *out) {
    const val *t = &c->v[pid];
    int want = c->legacy ? 6 : 5;
    if (t->kind != V_TUPLE || t->n != want)
        return BAD("%s byte %zu: persistent id is a %s of %d items, not a %d-tuple", c->where, at,
                   KIND_NAME[t->kind], t->kind == V_TUPLE ? t->n : 0, want);
    const val *tag = &c->v[t->u.items[0]], *ty = &c->v[t->u.items[1]],
              *key = &c->v[t->u.items[2]], *loc = &c->v[t->u.items[3]],
              *num = &c->v[t->u.items[4]];
    if (!str_eq(tag, "storage"))
        return BAD("%s byte %zu: persistent id is not a ('storage', ...) tuple", c->where, at);
    char nb[200];
    if (ty->kind != V_GLOBAL || ty->g != G_STORAGE) {
        if (ty->kind == V_GLOBAL)
            return UNSUP("%s byte %zu: storage type %s is not supported", c->where, at,
                         show(ty->u.s.p, ty->u.s.len, nb, sizeof nb));
        return BAD("%s byte %zu: storage type is a %s", c->where, at, KIND_NAME[ty->kind]);
    }
    if (key->kind != V_STR || key->u.s.len == 0 || key->u.s.len > TC_MAX_KEY)
        return BAD("%s byte %zu: storage key is not a short string", c->where, at);
    if (loc->kind != V_STR) return BAD("%s byte %zu: storage location is not a string", c->where, at);
    if (num->kind != V_INT || num->u.i < 0)
        return BAD("%s byte %zu: storage size is not a non-negative int", c->where, at);
    if (c->legacy && c->v[t->u.items[5]].kind != V_NONE)
        return UNSUP("%s byte %zu: legacy storage views (view_metadata) are not supported",
                     c->where, at);
    const elem_info *ei = &ELEMS[ty->elem];
    uint64_t nbytes;
    if (__builtin_mul_overflow((uint64_t)num->u.i, (uint64_t)ei->size, &nbytes))
        return BAD("%s byte %zu: storage size overflows", c->where, at);
    srec r = {.key = key->u.s.p, .key_len = key->u.s.len, .elem = ty->elem,
              .numel = (uint64_t)num->u.i};
    if (!c->legacy) {
        zent *z = zip_find3(c, c->prefix, c->prefix_len, "data/", r.key, r.key_len);
        if (!z)
            return BAD("storage \"%s\": no entry \"%.*sdata/%s\" in the archive",
                       show(r.key, r.key_len, nb, sizeof nb), (int)c->prefix_len,
                       (const char *)c->prefix, nb);
        const uint8_t *d;
        size_t n;
        TRY(zip_data(c, z, &d, &n));
        if (nbytes > n)
            return BAD("storage \"%s\": %llu elements of %zu bytes do not fit its %zu-byte entry",
                       show(r.key, r.key_len, nb, sizeof nb), (unsigned long long)r.numel,
                       ei->size, n);
        r.data = d;
    }
    if (c->nst >= TC_MAX_VALUES) return UNSUP("too many storages");
    if (!grow((void **)&c->st, &c->capst, (int64_t)c->nst + 1, sizeof *c->st)) return NOMEM();
    c->st[c->nst] = r;
    TRY(new_val(c, V_STORAGE, out));
    c->v[*out].u.ref = c->nst++;
    return CT_OK;
}

static ct_status int_tuple(tc *c, const val *t, int64_t *out, int *n, const char *what, size_t at) {
    if (t->kind != V_TUPLE) return BAD("%s byte %zu: tensor %s is not a tuple", c->where, at, what);
    if (t->n > CT_TORCH_MAX_RANK)
        return UNSUP("%s byte %zu: tensor of rank %d (at most %d)", c->where, at, t->n,
                     CT_TORCH_MAX_RANK);
    for (int i = 0; i < t->n; i++) {
        const val *x = &c->v[t->u.items[i]];
        if (x->kind != V_INT || x->u.i < 0)
            return BAD("%s byte %zu: tensor %s[%d] is not a non-negative int", c->where, at, what, i);
        out[i] = x->u.i;
    }
    *n = t->n;
    return CT_OK;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]) */
static ct_status rebuild_tensor(tc *c, int32_t args, size_t at, int32_t *out) {
    const val *a = &c->v[args];
    if (a->n != 6 && a->n != 7)
        return BAD("%s byte %zu: _rebuild_tensor_v2 takes 6 or 7 arguments, not %d", c->where, at,
                   a->n);
    const val *sv = &c->v[a->u.items[0]], *ov = &c->v[a->u.items[1]], *rg = &c->v[a->u.items[4]];
    if (sv->kind != V_STORAGE) return BAD("%s byte %zu: tensor storage is a %s", c->where, at,
                                          KIND_NAME[sv->kind]);
    if (ov->kind != V_INT || ov->u.i < 0)
        return BAD("%s byte %zu: tensor storage offset is not a non-negative int", c->where, at);
    trec r = {.storage = sv->u.ref, .offset = ov->u.i};
    int ns, nd;
    TRY(int_tuple(c, &c->v[a->u.items[2]], r.shape, &ns, "size", at));
    TRY(int_tuple(c, &c->v[a->u.items[3]], r.stride, &nd, "stride", at));
    if (ns != nd) return BAD("%s byte %zu: tensor size and stride differ in length", c->where, at);
    r.ndim = ns;
    if (rg->kind != V_BOOL && rg->kind != V_INT)
        return BAD("%s byte %zu: tensor requires_grad is a %s", c->where, at, KIND_NAME[rg->kind]);
    r.requires_grad = rg->u.i != 0;
    uint64_t numel = 1, last = (uint64_t)r.offset;
    for (int d = 0; d < r.ndim; d++)
        if (__builtin_mul_overflow(numel, (uint64_t)r.shape[d], &numel))
            return BAD("%s byte %zu: tensor element count overflows", c->where, at);
    const srec *s = &c->st[r.storage];
    if (numel > 0) {
        for (int d = 0; d < r.ndim; d++) {
            uint64_t span;
            if (__builtin_mul_overflow((uint64_t)(r.shape[d] - 1), (uint64_t)r.stride[d], &span) ||
                __builtin_add_overflow(last, span, &last))
                return BAD("%s byte %zu: tensor extent overflows", c->where, at);
        }
        if (last >= s->numel)
            return BAD("%s byte %zu: tensor reaches element %llu of a %llu-element storage",
                       c->where, at, (unsigned long long)last, (unsigned long long)s->numel);
    } else if (last > s->numel) {
        return BAD("%s byte %zu: tensor offset %llu past its %llu-element storage", c->where, at,
                   (unsigned long long)last, (unsigned long long)s->numel);
    }
    if (numel > SIZE_MAX) return BAD("%s byte %zu: tensor too large", c->where, at);
    r.numel = (size_t)numel;
    if (c->ntr >= TC_MAX_VALUES) return UNSUP("too many tensors");
    if (!grow((void **)&c->tr, &c->captr, (int64_t)c->ntr + 1, sizeof *c->tr)) return NOMEM();
    c->tr[c->ntr] = r;
    TRY(new_val(c, V_TENSOR, out));
    c->v[*out].u.ref = c->ntr++;
    return CT_OK;
}

/* REDUCE / NEWOBJ: only the known constructors do anything; the rest are
 * inert objects. */
static ct_status call(tc *c, int32_t fn, int32_t args, bool newobj, size_t at, int32_t *out) {
    const val *f = &c->v[fn], *a = &c->v[args];
    if (f->kind == V_OBJECT) return new_val(c, V_OBJECT, out);
    if (f->kind != V_GLOBAL)
        return BAD("%s byte %zu: %s called on a %s", c->where, at, newobj ? "NEWOBJ" : "REDUCE",
                   KIND_NAME[f->kind]);
    if (a->kind != V_TUPLE)
        return BAD("%s byte %zu: call arguments are a %s, not a tuple", c->where, at,
                   KIND_NAME[a->kind]);
    switch (f->g) {
    case G_ODICT:
        if (a->n != 0) return UNSUP("%s byte %zu: OrderedDict built from arguments", c->where, at);
        return new_val(c, V_DICT, out);
    case G_DDICT: return new_val(c, V_DICT, out); /* the default factory is not kept */
    case G_TENSOR_V2:
        if (newobj) break;
        return rebuild_tensor(c, args, at, out);
    case G_PARAM:
        if (newobj) break;
        if ((a->n == 3 || a->n == 4) && c->v[a->u.items[0]].kind == V_TENSOR) {
            int32_t t = a->u.items[0];
            const val *rg = &c->v[a->u.items[1]];
            if (rg->kind == V_BOOL || rg->kind == V_INT)
                c->tr[c->v[t].u.ref].requires_grad = rg->u.i != 0;
            *out = t;
            return CT_OK;
        }
        break;
    default: break;
    }
    return new_val(c, V_OBJECT, out);
}

static ct_status set_items(tc *c, int32_t target, int32_t from, size_t at) {
    int32_t k = c->nstack - from;
    val *d = &c->v[target];
    if (d->kind == V_DICT) {
        if (k % 2) return BAD("%s byte %zu: SETITEMS with an odd number of items", c->where, at);
        for (int32_t i = from; i < c->nstack; i++) TRY(add_item(c, target, c->stack[i]));
    } else if (d->kind != V_OBJECT) {
        return BAD("%s byte %zu: SETITEM on a %s", c->where, at, KIND_NAME[d->kind]);
    }
    c->nstack = from;
    return CT_OK;
}

static ct_status append_items(tc *c, int32_t target, int32_t from, size_t at) {
    val *l = &c->v[target];
    if (l->kind == V_LIST) {
        for (int32_t i = from; i < c->nstack; i++) TRY(add_item(c, target, c->stack[i]));
    } else if (l->kind != V_OBJECT && l->kind != V_SET) {
        return BAD("%s byte %zu: APPEND to a %s", c->where, at, KIND_NAME[l->kind]);
    }
    c->nstack = from;
    return CT_OK;
}

/* Little-endian two's-complement integer of n bytes: an int when it fits
 * in 64 bits, else an inert object. */
static ct_status make_long(tc *c, const uint8_t *p, size_t n, int32_t *out) {
    if (n > 8) {
        /* still an int64 if the high bytes only sign-extend */
        uint8_t ext = (p[n - 1] & 0x80) ? 0xFF : 0;
        bool fits = (p[7] & 0x80) == (ext & 0x80);
        for (size_t i = 8; i < n && fits; i++) fits = p[i] == ext;
        if (!fits) return new_val(c, V_OBJECT, out);
        n = 8;
    }
    uint64_t u = 0;
    for (size_t i = 0; i < n; i++) u |= (uint64_t)p[i] << (8 * i);
    if (n > 0 && n < 8 && (p[n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n);
    TRY(new_val(c, V_INT, out));
    c->v[*out].u.i = (int64_t)u;
    return CT_OK;
}

/* Run the pickle in p[0, n) to its STOP; *root is the value, *used the
 * bytes consumed. */
static ct_status run_pickle(tc *c, const uint8_t *p, size_t n, int32_t *root, size_t *used) {
    c->nstack = c->nmarks = 0;
    c->memo_count = 0;
    for (int32_t i = 0; i < c->capmemo; i++) c->memo[i] = -1;
    size_t pos = 0;
#define NEED(k)                                                                          \
    do {                                                                                 \
        if ((uint64_t)(k) > n - pos)                                                     \
            return BAD("%s byte %zu: pickle truncated (opcode 0x%02x needs %llu bytes)", \
                       c->where, at, op, (unsigned long long)(k));                       \
    } while (0)
    for (;;) {
        if (pos >= n) return BAD("%s: pickle ends without STOP", c->where);
        size_t at = pos;
        uint8_t op = p[pos++];
        int32_t x = -1, y = -1, z = -1, from = 0;
        switch (op) {
        case 0x80: /* PROTO */
            NEED(1);
            if (p[pos] > 5) return UNSUP("%s: pickle protocol %d", c->where, p[pos]);
            pos++;
            break;
        case 0x95: /* FRAME: the whole pickle is in memory; just check the length */
            NEED(8);
            if (ld64(p + pos) > n - pos - 8)
                return BAD("%s byte %zu: pickle frame runs past the end", c->where, at);
            pos += 8;
            break;
        case '.': /* STOP */
            TRY(pop(c, at, root));
            *used = pos;
            return CT_OK;
        case '(': /* MARK */
            if (c->nmarks >= TC_MAX_MARKS) return UNSUP("%s: MARKs nested deeper than %d",
                                                        c->where, TC_MAX_MARKS);
            if (!grow((void **)&c->marks, &c->capmarks, (int64_t)c->nmarks + 1, sizeof *c->marks))
                return NOMEM();
            c->marks[c->nmarks++] = c->nstack;
            break;
        case '0': /* POP */
            if (c->nstack > mark_top(c)) c->nstack--;
            else TRY(pop_mark(c, at, &from));
            break;
        case '1': /* POP_MARK */
            TRY(pop_mark(c, at, &from));
            c->nstack = from;
            break;
        case '2': /* DUP */
            TRY(top(c, at, &x));
            TRY(push(c, x));
            break;
        case '}': TRY(new_val(c, V_DICT, &x)); TRY(push(c, x)); break;
        case ']': TRY(new_val(c, V_LIST, &x)); TRY(push(c, x)); break;
        case ')': TRY(new_val(c, V_TUPLE, &x)); TRY(push(c, x)); break;
        case 0x8f: TRY(new_val(c, V_SET, &x)); TRY(push(c, x)); break; /* EMPTY_SET */
        case 't': /* TUPLE */
            TRY(pop_mark(c, at, &from));
            TRY(make_seq(c, V_TUPLE, from, &x));
            TRY(push(c, x));
            break;
        case 0x85: case 0x86: case 0x87: { /* TUPLE1..3 */
            int k = op - 0x84;
            if (c->nstack - mark_top(c) < k)
                return BAD("%s byte %zu: pickle stack underflow", c->where, at);
            TRY(make_seq(c, V_TUPLE, c->nstack - k, &x));
            TRY(push(c, x));
            break;
        }
        case 'N': TRY(new_val(c, V_NONE, &x)); TRY(push(c, x)); break;
        case 0x88: case 0x89: /* NEWTRUE, NEWFALSE */
            TRY(new_val(c, V_BOOL, &x));
            c->v[x].u.i = op == 0x88;
            TRY(push(c, x));
            break;
        case 'J': /* BININT */
            NEED(4);
            TRY(new_val(c, V_INT, &x));
            c->v[x].u.i = (int32_t)ld32(p + pos);
            pos += 4;
            TRY(push(c, x));
            break;
        case 'K': /* BININT1 */
            NEED(1);
            TRY(new_val(c, V_INT, &x));
            c->v[x].u.i = p[pos++];
            TRY(push(c, x));
            break;
        case 'M': /* BININT2 */
            NEED(2);
            TRY(new_val(c, V_INT, &x));
            c->v[x].u.i = ld16(p + pos);
            pos += 2;
            TRY(push(c, x));
            break;
        case 0x8a: case 0x8b: { /* LONG1, LONG4 */
            size_t w = op == 0x8a ? 1 : 4;
            NEED(w);
            uint64_t k = w == 1 ? p[pos] : ld32(p + pos);
            if (w == 4 && k > INT32_MAX) return BAD("%s byte %zu: negative LONG4 length", c->where, at);
            pos += w;
            NEED(k);
            TRY(make_long(c, p + pos, (size_t)k, &x));
            pos += (size_t)k;
            TRY(push(c, x));
            break;
        }
        case 'G': { /* BINFLOAT, big-endian */
            NEED(8);
            uint64_t u = 0;
            for (int i = 0; i < 8; i++) u = u << 8 | p[pos + i];
            pos += 8;
            double d;
            memcpy(&d, &u, sizeof d);
            TRY(new_val(c, V_FLOAT, &x));
            c->v[x].u.f = d;
            TRY(push(c, x));
            break;
        }
        case 'X': case 0x8c: case 0x8d: /* BINUNICODE, SHORT_BINUNICODE, BINUNICODE8 */
        case 'T': case 'U':             /* BINSTRING, SHORT_BINSTRING (protocol 1 str) */
        case 'B': case 'C': case 0x8e: case 0x96: { /* BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8 */
            size_t w = (op == 0x8c || op == 'U' || op == 'C') ? 1
                       : (op == 0x8d || op == 0x8e || op == 0x96) ? 8 : 4;
            NEED(w);
            uint64_t k = w == 1 ? p[pos] : w == 4 ? ld32(p + pos) : ld64(p + pos);
            if (op == 'T' && k > INT32_MAX) return BAD("%s byte %zu: negative string length", c->where, at);
            pos += w;
            NEED(k);
            bool text = op == 'X' || op == 0x8c || op == 0x8d || op == 'T' || op == 'U';
            TRY(new_val(c, text ? V_STR : V_BYTES, &x));
            c->v[x].u.s.p = p + pos;
            c->v[x].u.s.len = (size_t)k;
            pos += (size_t)k;
            TRY(push(c, x));
            break;
        }
        case 'q': case 'r': { /* BINPUT, LONG_BINPUT */
            size_t w = op == 'q' ? 1 : 4;
            NEED(w);
            uint64_t idx = w == 1 ? p[pos] : ld32(p + pos);
            pos += w;
            TRY(top(c, at, &x));
            TRY(memo_put(c, idx, x, at));
            break;
        }
        case 0x94: /* MEMOIZE */
            TRY(top(c, at, &x));
            TRY(memo_put(c, (uint64_t)c->memo_count, x, at));
            break;
        case 'h': case 'j': { /* BINGET, LONG_BINGET */
            size_t w = op == 'h' ? 1 : 4;
            NEED(w);
            uint64_t idx = w == 1 ? p[pos] : ld32(p + pos);
            pos += w;
            TRY(memo_get(c, idx, at));
            break;
        }
        case 'c': { /* GLOBAL "module\nname\n" */
            const uint8_t *line[2];
            size_t len[2];
            for (int i = 0; i < 2; i++) {
                size_t lim = n - pos < TC_MAX_GLOBAL + 1 ? n - pos : TC_MAX_GLOBAL + 1;
                const uint8_t *nl = memchr(p + pos, '\n', lim);
                if (!nl) return BAD("%s byte %zu: GLOBAL name unterminated or too long", c->where, at);
                line[i] = p + pos;
                len[i] = (size_t)(nl - (p + pos));
                pos += len[i] + 1;
            }
            TRY(make_global(c, line[0], len[0], line[1], len[1], &x));
            TRY(push(c, x));
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            TRY(pop(c, at, &y));
            TRY(pop(c, at, &x));
            if (c->v[x].kind != V_STR || c->v[y].kind != V_STR)
                return BAD("%s byte %zu: STACK_GLOBAL on non-strings", c->where, at);
            {
                const uint8_t *mp = c->v[x].u.s.p, *np = c->v[y].u.s.p;
                size_t ml = c->v[x].u.s.len, nl = c->v[y].u.s.len;
                TRY(make_global(c, mp, ml, np, nl, &z));
            }
            TRY(push(c, z));
            break;
        case 'R': /* REDUCE */
            TRY(pop(c, at, &y));
            TRY(pop(c, at, &x));
            TRY(call(c, x, y, false, at, &z));
            TRY(push(c, z));
            break;
        case 0x81: /* NEWOBJ */
            TRY(pop(c, at, &y));
            TRY(pop(c, at, &x));
            TRY(call(c, x, y, true, at, &z));
            TRY(push(c, z));
            break;
        case 0x92: /* NEWOBJ_EX: cls, args, kwargs */
            TRY(pop(c, at, &z));
            TRY(pop(c, at, &y));
            TRY(pop(c, at, &x));
            if (c->v[z].kind != V_DICT)
                return BAD("%s byte %zu: NEWOBJ_EX keyword arguments are a %s", c->where, at,
                           KIND_NAME[c->v[z].kind]);
            TRY(call(c, x, y, true, at, &z));
            TRY(push(c, z));
            break;
        case 'b': /* BUILD: the state of an object; nothing here keeps it */
            TRY(pop(c, at, &y));
            TRY(top(c, at, &x));
            break;
        case 's': /* SETITEM */
            if (c->nstack - mark_top(c) < 3)
                return BAD("%s byte %zu: pickle stack underflow", c->where, at);
            TRY(set_items(c, c->stack[c->nstack - 3], c->nstack - 2, at));
            break;
        case 'u': /* SETITEMS */
            TRY(pop_mark(c, at, &from));
            if (from <= mark_top(c)) return BAD("%s byte %zu: SETITEMS without a dict", c->where, at);
            TRY(set_items(c, c->stack[from - 1], from, at));
            break;
        case 'a': /* APPEND */
            if (c->nstack - mark_top(c) < 2)
                return BAD("%s byte %zu: pickle stack underflow", c->where, at);
            TRY(append_items(c, c->stack[c->nstack - 2], c->nstack - 1, at));
            break;
        case 'e': case 0x90: /* APPENDS, ADDITEMS */
            TRY(pop_mark(c, at, &from));
            if (from <= mark_top(c)) return BAD("%s byte %zu: APPENDS without a list", c->where, at);
            TRY(append_items(c, c->stack[from - 1], from, at));
            break;
        case 0x91: /* FROZENSET */
            TRY(pop_mark(c, at, &from));
            c->nstack = from;
            TRY(new_val(c, V_SET, &x));
            TRY(push(c, x));
            break;
        case 'Q': /* BINPERSID */
            TRY(pop(c, at, &x));
            TRY(persistent_load(c, x, at, &y));
            TRY(push(c, y));
            break;
        case 'I': case 'L': case 'F': case 'S': case 'V': case 'p': case 'g': case 'P':
        case 'd': case 'l': case 'o': case 'i': case 0x82: case 0x83: case 0x84:
        case 0x97: case 0x98:
            return UNSUP("%s byte %zu: pickle opcode 0x%02x (text protocol, extension registry or "
                         "out-of-band buffer) is not supported", c->where, at, op);
        default:
            return BAD("%s byte %zu: unknown pickle opcode 0x%02x", c->where, at, op);
        }
    }
#undef NEED
}

/* ---- the listing ----------------------------------------------------------------- */

static ct_status add_tensor(tc *c, const trec *r, size_t plen) {
    ct_torch_ckpt *ck = c->ck;
    const srec *s = &c->st[r->storage];
    const elem_info *ei = &ELEMS[s->elem];
    if (ei->dtype < 0) {
        ck->skipped++;
        return CT_OK;
    }
    if (ck->n + ck->n_sc >= TC_MAX_LISTED) return UNSUP("more than %d values listed", TC_MAX_LISTED);
    if (!grow((void **)&ck->t, &c->cap_t, (int64_t)ck->n + 1, sizeof *ck->t)) return NOMEM();
    ct_torch_tensor *t = &ck->t[ck->n];
    memset(t, 0, sizeof *t);
    char *name = strndup(c->path_buf, plen);
    if (!name) return NOMEM();
    t->name = name;
    ck->n++;
    t->dtype = (ct_dtype)ei->dtype;
    t->from_f64 = ei->f64;
    t->requires_grad = r->requires_grad;
    t->ndim = r->ndim;
    memcpy(t->shape, r->shape, sizeof t->shape);
    memcpy(t->stride, r->stride, sizeof t->stride);
    t->offset = r->offset;
    t->numel = r->numel;
    t->elem_size = ei->size;
    t->storage = s->data;
    t->storage_bytes = (size_t)(s->numel * ei->size); /* checked against the file */
    return CT_OK;
}

static ct_status add_scalar(tc *c, const val *v, size_t plen) {
    ct_torch_ckpt *ck = c->ck;
    if (ck->n + ck->n_sc >= TC_MAX_LISTED) return UNSUP("more than %d values listed", TC_MAX_LISTED);
    if (!grow((void **)&ck->sc, &c->cap_sc, (int64_t)ck->n_sc + 1, sizeof *ck->sc)) return NOMEM();
    scalar *s = &ck->sc[ck->n_sc];
    s->name = strndup(c->path_buf, plen);
    if (!s->name) return NOMEM();
    ck->n_sc++;
    s->is_float = v->kind == V_FLOAT;
    s->i = v->kind == V_FLOAT ? 0 : v->u.i;
    s->f = v->kind == V_FLOAT ? v->u.f : (double)v->u.i;
    return CT_OK;
}

static ct_status walk(tc *c, int32_t vi, size_t plen, int depth);

/* Descend into child under the path component (p, n). */
static ct_status walk_child(tc *c, int32_t child, size_t plen, const char *p, size_t n, int depth) {
    if (memchr(p, 0, n)) return BAD("a dict key contains a NUL byte");
    size_t need = plen + (plen ? 1 : 0) + n;
    if (need > TC_MAX_PATH) return UNSUP("a key path longer than %d bytes", TC_MAX_PATH);
    size_t k = plen;
    if (plen) c->path_buf[k++] = '.';
    memcpy(c->path_buf + k, p, n);
    return walk(c, child, k + n, depth + 1);
}

static ct_status walk(tc *c, int32_t vi, size_t plen, int depth) {
    if (depth > TC_MAX_DEPTH)
        return BAD("values nested deeper than %d levels (or a cycle)", TC_MAX_DEPTH);
    if (++c->visits > TC_MAX_VISITS)
        return UNSUP("more than %d values reachable (shared containers?)", TC_MAX_VISITS);
    const val *v = &c->v[vi];
    char num[24];
    switch (v->kind) {
    case V_TENSOR: return add_tensor(c, &c->tr[v->u.ref], plen);
    case V_INT: case V_BOOL: case V_FLOAT: return add_scalar(c, v, plen);
    case V_DICT:
        for (int32_t i = 0; i + 1 < v->n; i += 2) {
            const val *k = &c->v[v->u.items[i]];
            if (k->kind == V_STR) {
                TRY(walk_child(c, v->u.items[i + 1], plen, (const char *)k->u.s.p, k->u.s.len,
                               depth));
            } else if (k->kind == V_INT) {
                int m = snprintf(num, sizeof num, "%lld", (long long)k->u.i);
                TRY(walk_child(c, v->u.items[i + 1], plen, num, (size_t)m, depth));
            }
        }
        return CT_OK;
    case V_LIST: case V_TUPLE:
        for (int32_t i = 0; i < v->n; i++) {
            int m = snprintf(num, sizeof num, "%d", i);
            TRY(walk_child(c, v->u.items[i], plen, num, (size_t)m, depth));
        }
        return CT_OK;
    default: return CT_OK;
    }
}

static int tensor_ptr_cmp(const void *a, const void *b) {
    return strcmp((*(const ct_torch_tensor *const *)a)->name,
                  (*(const ct_torch_tensor *const *)b)->name);
}
static int scalar_cmp(const void *a, const void *b) {
    return strcmp(((const scalar *)a)->name, ((const scalar *)b)->name);
}

static ct_status build_listing(tc *c, int32_t root) {
    ct_torch_ckpt *ck = c->ck;
    TRY(walk(c, root, 0, 0));
    ck->by_name = malloc((ck->n ? (size_t)ck->n : 1) * sizeof *ck->by_name);
    if (!ck->by_name) return NOMEM();
    for (int i = 0; i < ck->n; i++) ck->by_name[i] = &ck->t[i];
    if (ck->n > 1) qsort(ck->by_name, (size_t)ck->n, sizeof *ck->by_name, tensor_ptr_cmp);
    for (int i = 1; i < ck->n; i++)
        if (strcmp(ck->by_name[i - 1]->name, ck->by_name[i]->name) == 0)
            return BAD("two tensors are named \"%.200s\"", ck->by_name[i]->name);
    if (ck->n_sc > 1) qsort(ck->sc, (size_t)ck->n_sc, sizeof *ck->sc, scalar_cmp);
    for (int i = 1; i < ck->n_sc; i++)
        if (strcmp(ck->sc[i - 1].name, ck->sc[i].name) == 0)
            return BAD("two values are named \"%.200s\"", ck->sc[i].name);
    return CT_OK;
}

/* ---- the two containers ------------------------------------------------------------ */

static ct_status open_zip(tc *c, int32_t *root) {
    TRY(zip_open(c));
    zent *pkl = NULL;
    for (int i = 0; i < c->n_ents; i++) {
        zent *e = &c->ents[i];
        static const char tail[] = "/data.pkl";
        size_t tl = sizeof tail - 1;
        if (e->name_len <= tl || memcmp(e->name + e->name_len - tl, tail, tl) != 0) continue;
        if (memchr(e->name, '/', e->name_len - tl)) continue; /* "<archive>/data.pkl" only */
        if (pkl) return BAD("zip archive has several <archive>/data.pkl entries");
        pkl = e;
    }
    if (!pkl) return BAD("zip archive without an <archive>/data.pkl entry (not written by torch.save)");
    c->prefix = pkl->name;
    c->prefix_len = pkl->name_len - (sizeof "data.pkl" - 1);
    zent *bo = zip_find3(c, c->prefix, c->prefix_len, "byteorder", NULL, 0);
    if (bo) {
        const uint8_t *d;
        size_t n;
        TRY(zip_data(c, bo, &d, &n));
        if (n == 3 && memcmp(d, "big", 3) == 0)
            return UNSUP("big-endian checkpoint (byteorder \"big\")");
        if (n != 6 || memcmp(d, "little", 6) != 0) return BAD("byteorder entry is neither little nor big");
    }
    const uint8_t *d;
    size_t n, used;
    TRY(zip_data(c, pkl, &d, &n));
    c->where = "data.pkl";
    return run_pickle(c, d, n, root, &used);
}

static const uint8_t LEGACY_MAGIC[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                       0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e};

/* Storage records by key (the legacy records are matched to them). A
 * merge sort of indices: qsort has no context argument in C11. */
static int srec_key_cmp(const srec *x, const srec *y) {
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int r = memcmp(x->key, y->key, n);
    if (r) return r;
    return x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
}
static void sort_by_key(const srec *st, int32_t *idx, int32_t *tmp, int32_t n) {
    if (n < 2) return;
    int32_t h = n / 2;
    sort_by_key(st, idx, tmp, h);
    sort_by_key(st, idx + h, tmp, n - h);
    int32_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = srec_key_cmp(&st[idx[j]], &st[idx[i]]) < 0 ? idx[j++] : idx[i++];
    while (i < h) tmp[k++] = idx[i++];
    while (j < n) tmp[k++] = idx[j++];
    memcpy(idx, tmp, (size_t)n * sizeof *idx);
}

static ct_status open_legacy(tc *c, int32_t *root) {
    const uint8_t *f = c->file;
    size_t size = c->size, pos = sizeof LEGACY_MAGIC, used;
    c->legacy = true;
    c->where = "pickle";
    if (size < pos || memcmp(f, LEGACY_MAGIC, pos) != 0)
        return BAD("truncated legacy checkpoint (magic number)");
    int32_t ver, info, keys;
    TRY(run_pickle(c, f + pos, size - pos, &ver, &used));
    pos += used;
    if (c->v[ver].kind != V_INT) return BAD("legacy protocol version is not an int");
    if (c->v[ver].u.i != 1001)
        return UNSUP("legacy protocol version %lld (1001 is read)", (long long)c->v[ver].u.i);
    TRY(run_pickle(c, f + pos, size - pos, &info, &used));
    pos += used;
    const val *iv = &c->v[info];
    if (iv->kind != V_DICT) return BAD("legacy system info is not a dict");
    for (int32_t i = 0; i + 1 < iv->n; i += 2)
        if (str_eq(&c->v[iv->u.items[i]], "little_endian")) {
            const val *le = &c->v[iv->u.items[i + 1]];
            if (le->kind != V_BOOL) return BAD("legacy system info: little_endian is not a bool");
            if (!le->u.i) return UNSUP("big-endian checkpoint");
        }
    TRY(run_pickle(c, f + pos, size - pos, root, &used));
    pos += used;
    TRY(run_pickle(c, f + pos, size - pos, &keys, &used));
    pos += used;
    const val *kv = &c->v[keys];
    if (kv->kind != V_LIST) return BAD("legacy storage keys are not a list");

    int32_t *idx = malloc(((size_t)c->nst + 1) * sizeof *idx);
    int32_t *tmp = malloc(((size_t)c->nst + 1) * sizeof *tmp);
    if (!idx || !tmp) {
        free(idx);
        free(tmp);
        return NOMEM();
    }
    for (int32_t i = 0; i < c->nst; i++) idx[i] = i;
    sort_by_key(c->st, idx, tmp, c->nst);
    free(tmp);
    ct_status s = CT_OK;
    char nb[200];
    for (int32_t i = 0; i < kv->n && s == CT_OK; i++) {
        const val *k = &c->v[kv->u.items[i]];
        if (k->kind != V_STR) {
            s = BAD("legacy storage key %d is not a string", i);
            break;
        }
        srec probe = {.key = k->u.s.p, .key_len = k->u.s.len};
        /* first index with key >= probe */
        int32_t lo = 0, hi = c->nst;
        while (lo < hi) {
            int32_t mid = lo + (hi - lo) / 2;
            if (srec_key_cmp(&c->st[idx[mid]], &probe) < 0) lo = mid + 1;
            else hi = mid;
        }
        if (lo == c->nst || srec_key_cmp(&c->st[idx[lo]], &probe) != 0) {
            s = BAD("legacy storage \"%s\" is stored but no tensor uses it",
                    show(k->u.s.p, k->u.s.len, nb, sizeof nb));
            break;
        }
        if (c->st[idx[lo]].data) {
            s = BAD("legacy storage \"%s\" is stored twice", show(k->u.s.p, k->u.s.len, nb, sizeof nb));
            break;
        }
        size_t es = ELEMS[c->st[idx[lo]].elem].size;
        if (size - pos < 8) {
            s = BAD("truncated legacy storage \"%s\"", show(k->u.s.p, k->u.s.len, nb, sizeof nb));
            break;
        }
        uint64_t numel = ld64(f + pos), nbytes;
        pos += 8;
        if (__builtin_mul_overflow(numel, (uint64_t)es, &nbytes) || nbytes > size - pos) {
            s = BAD("truncated legacy storage \"%s\" (%llu elements of %zu bytes)",
                    show(k->u.s.p, k->u.s.len, nb, sizeof nb), (unsigned long long)numel, es);
            break;
        }
        for (int32_t j = lo; j < c->nst && srec_key_cmp(&c->st[idx[j]], &probe) == 0; j++) {
            srec *r = &c->st[idx[j]];
            if (ELEMS[r->elem].size != es || r->numel > numel) {
                s = BAD("legacy storage \"%s\" is used with another type or size than stored",
                        show(k->u.s.p, k->u.s.len, nb, sizeof nb));
                break;
            }
            r->data = f + pos;
        }
        pos += (size_t)nbytes;
    }
    for (int32_t i = 0; i < c->nst && s == CT_OK; i++)
        if (!c->st[i].data)
            s = BAD("legacy storage \"%s\" is used but not stored",
                    show(c->st[i].key, c->st[i].key_len, nb, sizeof nb));
    free(idx);
    return s;
}

/* ---- public ---------------------------------------------------------------------- */

static void tc_free(tc *c) {
    for (int32_t i = 0; i < c->nv; i++) {
        uint8_t k = c->v[i].kind;
        if (k == V_TUPLE || k == V_LIST || k == V_DICT) free(c->v[i].u.items);
    }
    free(c->v);
    free(c->stack);
    free(c->marks);
    free(c->memo);
    free(c->st);
    free(c->tr);
    free(c->ents);
}

void ct_torch_ckpt_close(ct_torch_ckpt *ck) {
    if (!ck) return;
    for (int i = 0; i < ck->n; i++) free((char *)ck->t[i].name);
    for (int i = 0; i < ck->n_sc; i++) free(ck->sc[i].name);
    free(ck->t);
    free(ck->by_name);
    free(ck->sc);
    ct_mmap_close(&ck->map);
    free(ck);
}

ct_status ct_torch_ckpt_open(const char *path, ct_torch_ckpt **out) {
    if (!out) return ct_set_error(CT_ERR_ARG, "ct_torch_ckpt_open: NULL output");
    *out = NULL;
    if (!path) return ct_set_error(CT_ERR_ARG, "ct_torch_ckpt_open: NULL path");
    ct_torch_ckpt *ck = calloc(1, sizeof *ck);
    if (!ck) return ct_set_error(CT_ERR_NOMEM, "%s: out of memory", path);
    ct_status s = ct_mmap_open(&ck->map, path);
    if (s != CT_OK) {
        ct_torch_ckpt_close(ck);
        return s;
    }
    tc *c = calloc(1, sizeof *c);
    if (!c) {
        ct_torch_ckpt_close(ck);
        return ct_set_error(CT_ERR_NOMEM, "%s: out of memory", path);
    }
    c->path = path;
    c->file = ck->map.data;
    c->size = ck->map.size;
    c->ck = ck;
    int32_t root = -1;
    if (c->size >= 4 && memcmp(c->file, "PK\x03\x04", 4) == 0) {
        s = open_zip(c, &root);
    } else if (c->size >= 2 && c->file[0] == 0x80 && c->file[1] == 0x02) {
        s = open_legacy(c, &root);
    } else if (c->size >= 262 && memcmp(c->file + 257, "ustar", 5) == 0) {
        s = UNSUP("tar-format checkpoint (torch < 0.4) is not supported");
    } else {
        s = BAD(c->size ? "not a PyTorch checkpoint (neither a zip archive nor a legacy pickle)"
                        : "empty file");
    }
    if (s == CT_OK) s = build_listing(c, root);
    tc_free(c);
    free(c);
    if (s != CT_OK) {
        ct_torch_ckpt_close(ck);
        return s;
    }
    *out = ck;
    return CT_OK;
}

int ct_torch_ckpt_count(const ct_torch_ckpt *ck) { return ck ? ck->n : 0; }
int ct_torch_ckpt_skipped(const ct_torch_ckpt *ck) { return ck ? ck->skipped : 0; }

const ct_torch_tensor *ct_torch_ckpt_at(const ct_torch_ckpt *ck, int i) {
    if (!ck || i < 0 || i >= ck->n) return NULL;
    return &ck->t[i];
}

const ct_torch_tensor *ct_torch_ckpt_find(const ct_torch_ckpt *ck, const char *name) {
    if (!ck || !name || ck->n == 0) return NULL;
    ct_torch_tensor key = {.name = name};
    const ct_torch_tensor *kp = &key;
    const ct_torch_tensor **hit =
        bsearch(&kp, ck->by_name, (size_t)ck->n, sizeof *ck->by_name, tensor_ptr_cmp);
    return hit ? *hit : NULL;
}

static const scalar *find_scalar(const ct_torch_ckpt *ck, const char *name) {
    if (!ck || !name || ck->n_sc == 0) return NULL;
    scalar key = {.name = (char *)name};
    return bsearch(&key, ck->sc, (size_t)ck->n_sc, sizeof *ck->sc, scalar_cmp);
}

bool ct_torch_ckpt_int(const ct_torch_ckpt *ck, const char *name, int64_t *out) {
    const scalar *s = find_scalar(ck, name);
    if (!s || s->is_float) return false;
    if (out) *out = s->i;
    return true;
}

bool ct_torch_ckpt_real(const ct_torch_ckpt *ck, const char *name, double *out) {
    const scalar *s = find_scalar(ck, name);
    if (!s) return false;
    if (out) *out = s->f;
    return true;
}

static float half_bits_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
    if (e == 0x1f) {
        bits = sign | 0x7f800000u | m << 13; /* inf, nan */
    } else if (e != 0) {
        bits = sign | (e + 112) << 23 | m << 13;
    } else if (m == 0) {
        bits = sign;
    } else { /* subnormal: m * 2^-24, exact in float */
        float v = (float)m * 0x1p-24f;
        return sign ? -v : v;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static float load_elem(const uint8_t *p, ct_dtype dt, bool f64) {
    switch (dt) {
    case CT_F32: {
        if (f64) {
            uint64_t u = ld64(p);
            double d;
            memcpy(&d, &u, sizeof d);
            return (float)d;
        }
        uint32_t u = ld32(p);
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    case CT_F16: return half_bits_to_f32(ld16(p));
    case CT_BF16: {
        uint32_t u = (uint32_t)ld16(p) << 16;
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    case CT_I64: return (float)(int64_t)ld64(p);
    case CT_I32: return (float)(int32_t)ld32(p);
    case CT_U8: return (float)p[0];
    }
    return 0.0f;
}

ct_status ct_torch_tensor_to_f32(const ct_torch_tensor *t, float *out, size_t n) {
    if (!t) return ct_set_error(CT_ERR_ARG, "ct_torch_tensor_to_f32: NULL tensor");
    if (n != t->numel)
        return ct_set_error(CT_ERR_ARG, "ct_torch_tensor_to_f32: tensor \"%s\" has %zu elements, "
                            "not %zu", t->name, t->numel, n);
    if (n == 0) return CT_OK;
    if (!out) return ct_set_error(CT_ERR_ARG, "ct_torch_tensor_to_f32: NULL output");
    if (t->ndim == 0) {
        out[0] = load_elem(t->storage + (size_t)t->offset * t->elem_size, t->dtype, t->from_f64);
        return CT_OK;
    }
    /* the innermost dimension as a run, the outer ones as an odometer */
    int last = t->ndim - 1;
    int64_t idx[CT_TORCH_MAX_RANK] = {0};
    size_t base = (size_t)t->offset, k = 0, es = t->elem_size;
    size_t inner = (size_t)t->shape[last], step = (size_t)t->stride[last];
    for (;;) {
        for (size_t j = 0; j < inner; j++)
            out[k++] = load_elem(t->storage + (base + j * step) * es, t->dtype, t->from_f64);
        int d = last - 1;
        for (; d >= 0; d--) {
            base += (size_t)t->stride[d];
            if (++idx[d] < t->shape[d]) break;
            base -= (size_t)t->stride[d] * (size_t)t->shape[d];
            idx[d] = 0;
        }
        if (d < 0) break;
    }
    CT_ASSERT(k == n);
    return CT_OK;
}
