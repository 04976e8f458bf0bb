/* CLIP BPE tokenizer: a C rendering of OpenAI's clip/simple_tokenizer.py.
 *
 * Pipeline of encode (each step is the Python expression it reproduces):
 *   1. UTF-8 -> codepoints; invalid bytes -> U+FFFD as bytes.decode("utf-8",
 *      "replace") does (Python never hands the tokenizer undecodable text);
 *   2. basic_clean: ftfy.fix_text is NOT applied: Debian does not package
 *      ftfy, and its mojibake repair is a heuristic that cannot be redone
 *      faithfully without its code; the references are made with the same
 *      identity stub, and docs/tokenizer.md lists what ftfy would change.
 *      Then html.unescape twice and str.strip();
 *   3. whitespace_clean: regex.sub(r'\s+', ' ', text).strip();
 *   4. str.lower(), with its final-sigma rule;
 *   5. regex.findall of CLIP's pattern under re.IGNORECASE;
 *   6. each piece as byte symbols, "</w>" on the last, merged by rank.
 * Character classes, case mappings and HTML entities come from tables that
 * tools/ref/gen_unicode_tables.py measures from Python itself
 * (unicode_tables.inc), so the quirks of those functions carry over.
 *
 * BPE works on token ids instead of strings: a symbol's id is its vocabulary
 * id, and a merge (a, b) is keyed by the ids of its two halves. This is the
 * string algorithm exactly because every symbol that can occur is in the
 * vocabulary (checked at load) and no two ids share a string (also checked). */
#include "cliptune.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/error.h"
#include "base/hash.h"
#include "base/json.h"

#include "model/tokenizer.h"
#include "model/unicode_tables.inc"

/* simple_tokenizer.py and transformers' CLIPTokenizer both keep lines
 * [1 : 49152 - 256 - 2 + 1] of the merges file: 48,894 merges. */
#define BPE_MAX_MERGES (49152 - 256 - 2)
/* The released .gz inflates to 3.2 MB; anything near this is not a merges
 * file but a decompression bomb. */
#define BPE_MAX_TEXT ((size_t)256 << 20)
/* HF ids above this would make us allocate for a vocabulary no model has. */
#define HF_MAX_ID (1 << 24)
#define HF_MAX_UNUSED 1024
#define STR_NONE UINT32_MAX
/* Longest token string quoted in an error message. */
#define ERR_QUOTE 40

static const char k_sot[] = "<|startoftext|>";
static const char k_eot[] = "<|endoftext|>";

struct ct_tokenizer {
    int n_ids;             /* 1 + largest id                                 */
    char *pool;            /* token strings, each NUL-terminated             */
    uint32_t *str_off;     /* id -> offset into pool, STR_NONE if unused     */
    uint32_t *str_len;
    uint8_t *dec_pool;     /* id -> the bytes its string stands for          */
    uint32_t *dec_off;
    int32_t *dec_len;      /* -1: a character outside the byte alphabet      */
    int32_t byte_id[256];  /* symbol of byte b inside a word                 */
    int32_t byte_id_w[256]; /* symbol of byte b ending a word ("</w>")       */
    /* merge (a, b) -> rank and result id; open addressing, key a<<32|b */
    uint64_t *mkey;
    int32_t *mrank;
    int32_t *mres;
    size_t mmask;
    int64_t sot, eot;
};

/* ------------------------------------------------------------------------ */
/* UTF-8                                                                     */
/* ------------------------------------------------------------------------ */

/* Next codepoint of s[*i..n). An invalid sequence yields U+FFFD and consumes
 * its maximal subpart (the longest prefix of a valid sequence, at least one
 * byte), which is what CPython's decoder does under errors="replace". */
static uint32_t utf8_next(const uint8_t *s, size_t n, size_t *i, bool *bad) {
    size_t p = *i;
    uint32_t c = s[p];
    *bad = false;
    if (c < 0x80) {
        *i = p + 1;
        return c;
    }
    int need;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
        c &= 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F; /* no surrogates */
        c &= 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
        c &= 0x07;
    } else {
        *i = p + 1;
        *bad = true;
        return 0xFFFD;
    }
    p++;
    for (int k = 0; k < need; k++, p++) {
        uint8_t b = p < n ? s[p] : 0;
        bool ok = p < n && (k == 0 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF));
        if (!ok) {
            *i = p;
            *bad = true;
            return 0xFFFD;
        }
        c = (c << 6) | (b & 0x3F);
    }
    *i = p;
    return c;
}

static int utf8_put(uint32_t c, uint8_t *o) {
    if (c < 0x80) {
        o[0] = (uint8_t)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (uint8_t)(0xC0 | (c >> 6));
        o[1] = (uint8_t)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (c >> 12));
        o[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | (c >> 18));
    o[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (c & 0x3F));
    return 4;
}

/* Offset of the first invalid UTF-8 byte of s[0..n), or n. */
static size_t utf8_invalid_at(const uint8_t *s, size_t n) {
    size_t i = 0;
    bool bad;
    while (i < n) {
        size_t at = i;
        utf8_next(s, n, &i, &bad);
        if (bad) return at;
    }
    return n;
}

/* 1-based line of byte offset off in s. */
static size_t line_of(const char *s, size_t off) {
    size_t line = 1;
    for (size_t i = 0; i < off; i++) line += s[i] == '\n';
    return line;
}

/* At most ERR_QUOTE bytes of s, cut at a character boundary, for quoting. */
static int quote_len(const char *s, size_t n) {
    if (n <= ERR_QUOTE) return (int)n;
    size_t k = ERR_QUOTE;
    while (k > 0 && ((uint8_t)s[k] & 0xC0) == 0x80) k--;
    return (int)k;
}

/* ------------------------------------------------------------------------ */
/* Character tables                                                          */
/* ------------------------------------------------------------------------ */

static uint8_t cp_flags(uint32_t c) {
    size_t lo = 0, hi = sizeof ctu_flag_ranges / sizeof ctu_flag_ranges[0];
    while (hi - lo > 1) { /* last entry with .lo <= c; entry 0 starts at 0 */
        size_t mid = (lo + hi) / 2;
        if (ctu_flag_ranges[mid].lo <= c)
            lo = mid;
        else
            hi = mid;
    }
    return ctu_flag_ranges[lo].flags;
}

/* str.lower() of c (not U+03A3, whose result depends on context) into out;
 * returns the number of codepoints. */
static int cp_lower(uint32_t c, uint32_t *out) {
    if (c < 0x80) {
        out[0] = c >= 'A' && c <= 'Z' ? c + 32 : c;
        return 1;
    }
    size_t lo = 0, hi = sizeof ctu_lower1 / sizeof ctu_lower1[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ctu_lower1[mid].cp == c) {
            out[0] = ctu_lower1[mid].lower;
            return 1;
        }
        if (ctu_lower1[mid].cp < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t k = 0; k < sizeof ctu_lower_multi / sizeof ctu_lower_multi[0]; k++) {
        if (ctu_lower_multi[k].cp == c) {
            for (int j = 0; j < ctu_lower_multi[k].n; j++) out[j] = ctu_lower_multi[k].out[j];
            return ctu_lower_multi[k].n;
        }
    }
    out[0] = c;
    return 1;
}

/* Does c match the pattern's literal lowercase ASCII letter a under
 * re.IGNORECASE? (U+017F matches 's'.) */
static bool lit_eq(uint32_t c, char a) {
    if (c == (uint32_t)(unsigned char)a) return true;
    for (size_t k = 0; k < sizeof ctu_fold / sizeof ctu_fold[0]; k++)
        if (ctu_fold[k].cp == c) return ctu_fold[k].ascii == a;
    return false;
}

/* ------------------------------------------------------------------------ */
/* Text cleaning (codepoint arrays)                                          */
/* ------------------------------------------------------------------------ */

/* Entity whose name is exactly name[0..len), or NULL. */
static const struct ctu_entity *entity_find(const char *name, size_t len) {
    size_t lo = 0, hi = sizeof ctu_entities / sizeof ctu_entities[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *e = ctu_entities[mid].name;
        int r = strncmp(e, name, len);
        if (r == 0) r = e[len] != 0; /* longer entity name sorts after */
        if (r == 0) return &ctu_entities[mid];
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* html._replace_charref for a numeric reference of value num (saturated
 * above U+10FFFF). Writes 0 or 1 codepoint. */
static size_t charref(uint32_t num, uint32_t *out) {
    for (size_t k = 0; k < sizeof ctu_invalid_charrefs / sizeof ctu_invalid_charrefs[0]; k++) {
        if (ctu_invalid_charrefs[k].num == num) {
            out[0] = ctu_invalid_charrefs[k].cp;
            return 1;
        }
    }
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
        out[0] = 0xFFFD;
        return 1;
    }
    size_t lo = 0, hi = sizeof ctu_invalid_codepoints / sizeof ctu_invalid_codepoints[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ctu_invalid_codepoints[mid] == num) return 0;
        if (ctu_invalid_codepoints[mid] < num)
            lo = mid + 1;
        else
            hi = mid;
    }
    out[0] = num;
    return 1;
}

static int hex_val(uint32_t c) {
    if (c >= '0' && c <= '9') return (int)(c - '0');
    if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return (int)(c - 'A' + 10);
    return -1;
}

/* Python's html.unescape: every match of
 *   &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
 * left to right is replaced as html._replace_charref does. Never lengthens
 * the text (every replacement is at most as long as its reference). */
static size_t html_unescape(const uint32_t *in, size_t n, uint32_t *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        if (in[i] != '&') {
            out[o++] = in[i++];
            continue;
        }
        size_t j = i + 1;
        if (j < n && in[j] == '#') {
            size_t k = j + 1;
            int base = 10;
            if (k < n && (in[k] == 'x' || in[k] == 'X') && k + 1 < n && hex_val(in[k + 1]) >= 0) {
                base = 16;
                k++;
            } else if (!(k < n && in[k] >= '0' && in[k] <= '9')) {
                out[o++] = in[i++]; /* '#' cannot start a name: no match */
                continue;
            }
            uint32_t num = 0;
            for (; k < n; k++) {
                int d = base == 16 ? hex_val(in[k]) : (in[k] >= '0' && in[k] <= '9'
                                                           ? (int)(in[k] - '0') : -1);
                if (d < 0) break;
                /* Python's int is unbounded; every value above U+10FFFF
                 * gives the same result, so saturate. */
                if (num <= 0x10FFFF) num = num * (uint32_t)base + (uint32_t)d;
            }
            if (k < n && in[k] == ';') k++;
            o += charref(num, out + o);
            i = k;
            continue;
        }
        size_t k = j;
        while (k < n && k - j < 32) {
            uint32_t c = in[k];
            if (c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' ||
                c == '#' || c == ';')
                break;
            k++;
        }
        if (k == j) {
            out[o++] = in[i++];
            continue;
        }
        size_t end = k < n && in[k] == ';' ? k + 1 : k;
        /* Names are ASCII; a non-ASCII codepoint becomes a byte no name has. */
        char name[40];
        size_t len = end - j;
        for (size_t q = 0; q < len; q++) name[q] = in[j + q] < 0x80 ? (char)in[j + q] : '\x01';
        const struct ctu_entity *e = entity_find(name, len);
        size_t used = len;
        /* Else the longest prefix of at least 2 characters that is a name
         * (only names without ';' can match a proper prefix). */
        for (size_t x = len - 1; !e && x >= 2; x--) {
            e = entity_find(name, x);
            used = x;
        }
        if (e) {
            out[o++] = e->cp[0];
            if (e->cp[1]) out[o++] = e->cp[1];
            for (size_t q = j + used; q < end; q++) out[o++] = in[q];
        } else {
            for (size_t q = i; q < end; q++) out[o++] = in[q];
        }
        i = end;
    }
    return o;
}

/* str.strip(): trim str.isspace() characters at both ends, in place. */
static size_t py_strip(uint32_t *s, size_t n) {
    size_t a = 0, b = n;
    while (a < b && (cp_flags(s[a]) & CTU_PY_SPACE)) a++;
    while (b > a && (cp_flags(s[b - 1]) & CTU_PY_SPACE)) b--;
    if (a) memmove(s, s + a, (b - a) * sizeof *s);
    return b - a;
}

/* regex.sub(r'\s+', ' ', s), in place. */
static size_t collapse_space(uint32_t *s, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (cp_flags(s[i]) & CTU_RE_SPACE) {
            while (i < n && (cp_flags(s[i]) & CTU_RE_SPACE)) i++;
            s[o++] = ' ';
        } else {
            s[o++] = s[i++];
        }
    }
    return o;
}

/* CPython's handle_capital_sigma: U+03A3 at i lowers to final U+03C2 when a
 * cased character precedes it (skipping case-ignorable ones) and none
 * follows it (likewise), else to U+03C3. */
static uint32_t lower_sigma(const uint32_t *s, size_t n, size_t i) {
    size_t j = i;
    uint8_t f = 0;
    while (j > 0) {
        f = cp_flags(s[--j]);
        if (!(f & CTU_CASE_IGN)) break;
        f = 0;
    }
    bool final = (f & CTU_CASED) != 0;
    if (final) {
        for (j = i + 1; j < n; j++) {
            f = cp_flags(s[j]);
            if (!(f & CTU_CASE_IGN)) break;
        }
        final = j == n || !(f & CTU_CASED);
    }
    return final ? 0x3C2 : 0x3C3;
}

/* str.lower(); out holds CTU_LOWER_MAX * n codepoints. */
static size_t py_lower(const uint32_t *in, size_t n, uint32_t *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == 0x3A3)
            out[o++] = lower_sigma(in, n, i);
        else
            o += (size_t)cp_lower(in[i], out + o);
    }
    return o;
}

/* ------------------------------------------------------------------------ */
/* BPE                                                                       */
/* ------------------------------------------------------------------------ */

static inline size_t pair_hash(uint64_t key) {
    key ^= key >> 31;
    key *= 0x9E3779B97F4A7C15ull;
    key ^= key >> 29;
    return (size_t)key;
}

static inline uint64_t pair_key(int32_t a, int32_t b) {
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

/* Slot of merge (a, b): its own, or the empty one where it would go. */
static size_t pair_slot(const ct_tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = pair_key(a, b);
    size_t h = pair_hash(key) & t->mmask;
    while (t->mkey[h] != UINT64_MAX && t->mkey[h] != key) h = (h + 1) & t->mmask;
    return h;
}

typedef struct bpe_item {
    int32_t rank, pos, a, b, res;
} bpe_item;

/* Per-call scratch, grown to the longest piece of the text. */
typedef struct scratch {
    size_t cap; /* symbols */
    int32_t *sym, *prev, *next, *merged;
    bpe_item *heap;
    uint8_t *bytes;
} scratch;

static void scratch_free(scratch *s) {
    free(s->sym);
    free(s->prev);
    free(s->next);
    free(s->merged);
    free(s->heap);
    free(s->bytes);
    memset(s, 0, sizeof *s);
}

/* Room for a piece of nb bytes (one symbol per byte). */
static ct_status scratch_reserve(scratch *s, size_t nb) {
    if (nb > INT32_MAX / 4)
        return ct_set_error(CT_ERR_ARG, "tokenizer: a single word of %zu bytes is too long", nb);
    if (nb <= s->cap) return CT_OK;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < nb) cap *= 2;
    int32_t *sym = realloc(s->sym, cap * sizeof *sym);
    if (sym) s->sym = sym;
    int32_t *prev = realloc(s->prev, cap * sizeof *prev);
    if (prev) s->prev = prev;
    int32_t *next = realloc(s->next, cap * sizeof *next);
    if (next) s->next = next;
    int32_t *merged = realloc(s->merged, cap * sizeof *merged);
    if (merged) s->merged = merged;
    bpe_item *heap = realloc(s->heap, 3 * cap * sizeof *heap);
    if (heap) s->heap = heap;
    uint8_t *bytes = realloc(s->bytes, cap);
    if (bytes) s->bytes = bytes;
    if (!sym || !prev || !next || !merged || !heap || !bytes)
        return ct_set_error(CT_ERR_NOMEM, "tokenizer: cannot allocate scratch for %zu bytes", cap);
    s->cap = cap;
    return CT_OK;
}

static inline bool item_less(const bpe_item *x, const bpe_item *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(bpe_item *h, size_t *n, bpe_item it) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!item_less(&it, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static bpe_item heap_pop(bpe_item *h, size_t *n) {
    bpe_item top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && item_less(&h[c + 1], &h[c])) c++;
        if (!item_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

/* Queue the pair starting at node p, if it is a merge. */
static void push_pair(const ct_tokenizer *t, scratch *s, size_t *hn, int32_t p) {
    int32_t q = s->next[p];
    if (q < 0) return;
    size_t h = pair_slot(t, s->sym[p], s->sym[q]);
    if (t->mkey[h] == UINT64_MAX) return;
    bpe_item it = {t->mrank[h], p, s->sym[p], s->sym[q], t->mres[h]};
    heap_push(s->heap, hn, it);
}

static inline bool item_valid(const scratch *s, const bpe_item *it) {
    if (s->sym[it->pos] != it->a) return false; /* merged away or changed */
    int32_t q = s->next[it->pos];
    return q >= 0 && s->sym[q] == it->b;
}

/* simple_tokenizer.bpe on the n bytes in s->bytes, as symbols in s->sym (the
 * merged word is the list from node 0 along s->next).
 *
 * Python repeatedly takes the lowest-ranked pair present and merges all its
 * non-overlapping occurrences left to right in one pass, then looks again.
 * The heap holds every present pair that is a merge, ordered by (rank,
 * position); popping all entries of the lowest rank in position order (and
 * skipping those an earlier merge of the pass consumed) is that pass. Pairs
 * created by a pass are queued only after it, so a lower-ranked new pair
 * cannot cut into it: the result equals Python's for any merges file, in
 * O(n log n) instead of O(n^2) for long words. */
static void bpe_word(const ct_tokenizer *t, scratch *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        s->sym[i] = i + 1 < n ? t->byte_id[s->bytes[i]] : t->byte_id_w[s->bytes[i]];
        s->prev[i] = (int32_t)i - 1;
        s->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    size_t hn = 0;
    for (size_t i = 0; i + 1 < n; i++) push_pair(t, s, &hn, (int32_t)i);
    while (hn) {
        bpe_item it = heap_pop(s->heap, &hn);
        if (!item_valid(s, &it)) continue;
        int32_t rank = it.rank;
        size_t nm = 0;
        for (;;) {
            int32_t p = it.pos, q = s->next[p];
            s->sym[p] = it.res;
            s->sym[q] = -1;
            s->next[p] = s->next[q];
            if (s->next[q] >= 0) s->prev[s->next[q]] = p;
            s->merged[nm++] = p;
            do {
                if (!hn || s->heap[0].rank != rank) goto pass_done;
                it = heap_pop(s->heap, &hn);
            } while (!item_valid(s, &it));
        }
    pass_done:
        for (size_t k = 0; k < nm; k++) {
            int32_t p = s->merged[k];
            if (s->prev[p] >= 0) push_pair(t, s, &hn, s->prev[p]);
            push_pair(t, s, &hn, p);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Encode                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct out_ids {
    int64_t *ids;
    size_t cap, count;
} out_ids;

static inline void emit(out_ids *o, int64_t id) {
    if (o->count < o->cap) o->ids[o->count] = id;
    o->count++;
}

/* Length of the pattern's match at s[i..n), 0 if none; tries the
 * alternatives in the pattern's order:
 *   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|
 *   [\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+            (re.IGNORECASE) */
static size_t match_at(const uint32_t *s, size_t n, size_t i) {
    uint32_t c = s[i];
    if (c == '<') {
        static const char *const lits[2] = {k_sot, k_eot};
        for (int L = 0; L < 2; L++) {
            size_t len = strlen(lits[L]), k = 0;
            while (k < len && i + k < n) {
                char a = lits[L][k];
                uint32_t x = s[i + k];
                if (a >= 'a' && a <= 'z' ? !lit_eq(x, a) : x != (uint32_t)a) break;
                k++;
            }
            if (k == len) return len;
        }
    } else if (c == '\'' && i + 1 < n) {
        uint32_t x = s[i + 1];
        if (lit_eq(x, 's') || lit_eq(x, 't') || lit_eq(x, 'm') || lit_eq(x, 'd')) return 2;
        if (i + 2 < n) {
            uint32_t y = s[i + 2];
            if ((lit_eq(x, 'r') && lit_eq(y, 'e')) || (lit_eq(x, 'v') && lit_eq(y, 'e')) ||
                (lit_eq(x, 'l') && lit_eq(y, 'l')))
                return 3;
        }
    }
    uint8_t f = cp_flags(c);
    if (f & CTU_LETTER) {
        size_t k = i + 1;
        while (k < n && (cp_flags(s[k]) & CTU_LETTER)) k++;
        return k - i;
    }
    if (f & CTU_NUMBER) return 1;
    if (f & CTU_OTHER) {
        size_t k = i + 1;
        while (k < n && (cp_flags(s[k]) & CTU_OTHER)) k++;
        return k - i;
    }
    return 0;
}

ct_status ct_tok_split(const char *text, ct_tok_piece_fn fn, void *ctx) {
    const uint8_t *src = (const uint8_t *)text;
    size_t nb = strlen(text), words;
    /* buffer a: the decoded text; b: unescape output, then lowered text */
    if (!ct_add_size(nb, 1, &words) || !ct_mul_size(words, CTU_LOWER_MAX + 1, &words) ||
        !ct_mul_size(words, sizeof(uint32_t), &words))
        return ct_set_error(CT_ERR_ARG, "tokenizer: text of %zu bytes is too long", nb);
    uint32_t *a = malloc(words);
    if (!a) return ct_set_error(CT_ERR_NOMEM, "tokenizer: cannot allocate %zu bytes", words);
    uint32_t *b = a + nb + 1;

    size_t n = 0;
    bool bad;
    for (size_t i = 0; i < nb;) a[n++] = utf8_next(src, nb, &i, &bad);
    n = html_unescape(a, n, b);
    n = html_unescape(b, n, a);
    n = py_strip(a, n);
    n = collapse_space(a, n);
    n = py_strip(a, n);
    n = py_lower(a, n, b);

    /* a piece's UTF-8 (at most 4 bytes per codepoint), grown as needed */
    uint8_t *bytes = NULL;
    size_t cap = 0;
    ct_status st = CT_OK;
    for (size_t i = 0; i < n && st == CT_OK;) {
        size_t len = match_at(b, n, i);
        if (!len) {
            i++;
            continue;
        }
        if (4 * len > cap) {
            size_t ncap = cap ? cap : 64;
            while (ncap < 4 * len) ncap *= 2;
            uint8_t *nbuf = realloc(bytes, ncap);
            if (!nbuf) {
                st = ct_set_error(CT_ERR_NOMEM, "tokenizer: cannot allocate %zu bytes", ncap);
                break;
            }
            bytes = nbuf;
            cap = ncap;
        }
        size_t m = 0;
        for (size_t k = 0; k < len; k++) m += (size_t)utf8_put(b[i + k], bytes + m);
        i += len;
        /* simple_tokenizer's cache starts with these two: they are not BPE'd. */
        int kind = CT_TOK_WORD;
        if (m == sizeof k_sot - 1 && !memcmp(bytes, k_sot, m))
            kind = CT_TOK_SOT;
        else if (m == sizeof k_eot - 1 && !memcmp(bytes, k_eot, m))
            kind = CT_TOK_EOT;
        st = fn(ctx, bytes, m, kind);
    }
    free(bytes);
    free(a);
    return st;
}

typedef struct encode_ctx {
    const ct_tokenizer *t;
    scratch s;
    out_ids *o;
} encode_ctx;

static ct_status encode_piece(void *ctx, const uint8_t *bytes, size_t m, int kind) {
    encode_ctx *e = ctx;
    if (kind == CT_TOK_SOT) {
        emit(e->o, e->t->sot);
        return CT_OK;
    }
    if (kind == CT_TOK_EOT) {
        emit(e->o, e->t->eot);
        return CT_OK;
    }
    ct_status st = scratch_reserve(&e->s, m);
    if (st != CT_OK) return st;
    memcpy(e->s.bytes, bytes, m);
    bpe_word(e->t, &e->s, m);
    for (int32_t p = 0; p >= 0; p = e->s.next[p]) emit(e->o, e->s.sym[p]);
    return CT_OK;
}

/* All ids of text into o (the first o->cap stored, all counted). */
static ct_status encode_impl(const ct_tokenizer *t, const char *text, out_ids *o) {
    encode_ctx e = {t, {0}, o};
    ct_status st = ct_tok_split(text, encode_piece, &e);
    scratch_free(&e.s);
    return st;
}

ct_status ct_tokenizer_encode(const ct_tokenizer *t, const char *text, int64_t *ids, int cap,
                              int *n) {
    if (n) *n = 0;
    if (!t || !text || !n || cap < 0 || (cap > 0 && !ids))
        return ct_set_error(CT_ERR_ARG, "ct_tokenizer_encode: NULL argument or negative cap");
    out_ids o = {ids, (size_t)cap, 0};
    ct_status st = encode_impl(t, text, &o);
    if (st != CT_OK) return st;
    if (o.count > INT_MAX)
        return ct_set_error(CT_ERR_ARG, "ct_tokenizer_encode: text encodes to %zu ids (> INT_MAX)",
                            o.count);
    *n = (int)o.count;
    if (o.count > (size_t)cap)
        return ct_set_error(CT_ERR_ARG, "ct_tokenizer_encode: text encodes to %zu ids, cap is %d",
                            o.count, cap);
    return CT_OK;
}

ct_status ct_tokenizer_tokenize(const ct_tokenizer *t, const char *text, int context_length,
                                bool truncate, int64_t *row) {
    if (!t || !text || !row)
        return ct_set_error(CT_ERR_ARG, "ct_tokenizer_tokenize: NULL argument");
    if (context_length < 1)
        return ct_set_error(CT_ERR_ARG, "ct_tokenizer_tokenize: context_length %d < 1",
                            context_length);
    size_t ctx = (size_t)context_length;
    memset(row, 0, ctx * sizeof *row);
    row[0] = t->sot;
    out_ids o = {row + 1, ctx - 1, 0};
    ct_status st = encode_impl(t, text, &o);
    if (st != CT_OK) {
        memset(row, 0, ctx * sizeof *row);
        return st;
    }
    size_t total = o.count + 2;
    if (total <= ctx) {
        row[1 + o.count] = t->eot;
        return CT_OK;
    }
    if (truncate) {
        row[ctx - 1] = t->eot; /* tokens[:ctx], then tokens[-1] = eot */
        return CT_OK;
    }
    memset(row, 0, ctx * sizeof *row);
    size_t tl = strlen(text);
    return ct_set_error(CT_ERR_ARG,
                        "ct_tokenizer_tokenize: text \"%.*s%s\" (%zu bytes) encodes to %zu tokens "
                        "with <|startoftext|> and <|endoftext|>, more than context length %d",
                        quote_len(text, tl), text, quote_len(text, tl) < (int)tl ? "..." : "", tl,
                        total, context_length);
}

/* ------------------------------------------------------------------------ */
/* Decode and accessors                                                      */
/* ------------------------------------------------------------------------ */

ct_status ct_tokenizer_decode(const ct_tokenizer *t, const int64_t *ids, int n, char *out,
                              size_t cap) {
    if (!t || n < 0 || (n > 0 && !ids) || (cap > 0 && !out))
        return ct_set_error(CT_ERR_ARG, "ct_tokenizer_decode: NULL argument or negative n");
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_ids || t->str_off[ids[i]] == STR_NONE)
            return ct_set_error(CT_ERR_ARG, "ct_tokenizer_decode: ids[%d] = %lld is not a token",
                                i, (long long)ids[i]);
        if (t->dec_len[ids[i]] < 0)
            return ct_set_error(CT_ERR_ARG,
                                "ct_tokenizer_decode: token %lld (\"%.*s\") has a character "
                                "outside the byte alphabet",
                                (long long)ids[i],
                                quote_len(t->pool + t->str_off[ids[i]], t->str_len[ids[i]]),
                                t->pool + t->str_off[ids[i]]);
        total += (size_t)t->dec_len[ids[i]];
    }
    /* raw bytes, then their UTF-8 with U+FFFD (3 bytes) for each bad byte */
    size_t need;
    if (!ct_mul_size(total, 4, &need) || !ct_add_size(need, 1, &need))
        return ct_set_error(CT_ERR_ARG, "ct_tokenizer_decode: %zu bytes is too long", total);
    uint8_t *raw = malloc(need);
    if (!raw) return ct_set_error(CT_ERR_NOMEM, "ct_tokenizer_decode: cannot allocate %zu", need);
    size_t m = 0;
    for (int i = 0; i < n; i++) {
        memcpy(raw + m, t->dec_pool + t->dec_off[ids[i]], (size_t)t->dec_len[ids[i]]);
        m += (size_t)t->dec_len[ids[i]];
    }
    uint8_t *txt = raw + total;
    size_t tn = 0;
    bool bad;
    for (size_t i = 0; i < m;) tn += (size_t)utf8_put(utf8_next(raw, m, &i, &bad), txt + tn);
    /* .replace('</w>', ' '), in place (never lengthens) */
    size_t o = 0;
    for (size_t i = 0; i < tn;) {
        if (i + 4 <= tn && !memcmp(txt + i, "</w>", 4)) {
            txt[o++] = ' ';
            i += 4;
        } else {
            txt[o++] = txt[i++];
        }
    }
    ct_status st = CT_OK;
    if (o + 1 > cap) {
        st = ct_set_error(CT_ERR_ARG, "ct_tokenizer_decode: output needs %zu bytes, cap is %zu",
                          o + 1, cap);
    } else {
        memcpy(out, txt, o);
        out[o] = 0;
    }
    free(raw);
    return st;
}

int ct_tokenizer_vocab_size(const ct_tokenizer *t) { return t ? t->n_ids : 0; }
int64_t ct_tokenizer_sot(const ct_tokenizer *t) { return t ? t->sot : -1; }
int64_t ct_tokenizer_eot(const ct_tokenizer *t) { return t ? t->eot : -1; }

const char *ct_tokenizer_token_str(const ct_tokenizer *t, int64_t id) {
    if (!t || id < 0 || id >= t->n_ids || t->str_off[id] == STR_NONE) return NULL;
    return t->pool + t->str_off[id];
}

void ct_tokenizer_free(ct_tokenizer *t) {
    if (!t) return;
    free(t->pool);
    free(t->str_off);
    free(t->str_len);
    free(t->dec_pool);
    free(t->dec_off);
    free(t->dec_len);
    free(t->mkey);
    free(t->mrank);
    free(t->mres);
    free(t);
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                   */
/* ------------------------------------------------------------------------ */

/* bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the
 * other 68 for U+0100.. in byte order. Fills enc[256] and, when order is
 * given, the bytes in vocabulary order (printable ones first, as the Python
 * dict's insertion order). */
static void byte_alphabet(uint32_t enc[256], int order[256]) {
    int n = 0, k = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        if (printable) {
            enc[b] = (uint32_t)b;
            if (order) order[k++] = b;
        }
    }
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        if (!printable) {
            enc[b] = 256u + (uint32_t)n++;
            if (order) order[k++] = b;
        }
    }
}

void ct_tok_byte_alphabet(uint32_t enc[256], int order[256]) { byte_alphabet(enc, order); }

int ct_tok_utf8_put(uint32_t c, uint8_t *o) { return utf8_put(c, o); }

/* One merge line: two symbols (pointers into the file text). An empty
 * line (only the one a trailing newline leaves, see parse_merges) has
 * alen == blen == 0 and is no merge. */
typedef struct merge_line {
    const char *a, *b;
    uint32_t alen, blen;
    size_t line;
} merge_line;

/* A growable string pool with a string -> id hash, used while loading. */
typedef struct vocab_build {
    char *pool;
    size_t pool_len, pool_cap;
    uint32_t *off, *len; /* per id */
    int n_ids;
    int32_t *hash; /* id or -1 */
    size_t hmask;
} vocab_build;

static void vb_free(vocab_build *v) {
    free(v->pool);
    free(v->off);
    free(v->len);
    free(v->hash);
}

static uint64_t str_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h ^ (h >> 32);
}

static ct_status vb_init(vocab_build *v, int n_ids, size_t pool_hint, const char *ctx) {
    memset(v, 0, sizeof *v);
    v->n_ids = n_ids;
    v->pool_cap = pool_hint + 64;
    v->pool = malloc(v->pool_cap);
    v->off = malloc((size_t)n_ids * sizeof *v->off);
    v->len = malloc((size_t)n_ids * sizeof *v->len);
    if (!v->pool || !v->off || !v->len)
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate the vocabulary", ctx);
    for (int i = 0; i < n_ids; i++) v->off[i] = STR_NONE;
    return CT_OK;
}

/* Set id's string to s1 + s2. */
static ct_status vb_set(vocab_build *v, int id, const char *s1, size_t n1, const char *s2,
                        size_t n2, const char *ctx) {
    size_t n = n1 + n2;
    if (v->pool_len + n + 1 > UINT32_MAX)
        return ct_set_error(CT_ERR_FORMAT, "%s: vocabulary strings exceed 4 GiB", ctx);
    if (v->pool_len + n + 1 > v->pool_cap) {
        size_t cap = v->pool_cap;
        while (cap < v->pool_len + n + 1) cap *= 2;
        char *p = realloc(v->pool, cap);
        if (!p) return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate the vocabulary", ctx);
        v->pool = p;
        v->pool_cap = cap;
    }
    memcpy(v->pool + v->pool_len, s1, n1);
    if (n2) memcpy(v->pool + v->pool_len + n1, s2, n2);
    v->pool[v->pool_len + n] = 0;
    v->off[id] = (uint32_t)v->pool_len;
    v->len[id] = (uint32_t)n;
    v->pool_len += n + 1;
    return CT_OK;
}

static int32_t vb_find(const vocab_build *v, const char *s, size_t n) {
    size_t h = str_hash(s, n) & v->hmask;
    for (; v->hash[h] >= 0; h = (h + 1) & v->hmask) {
        int32_t id = v->hash[h];
        if (v->len[id] == n && !memcmp(v->pool + v->off[id], s, n)) return id;
    }
    return -1;
}

/* Index every string; on a duplicate, *dup_a < *dup_b are the two ids. */
static ct_status vb_index(vocab_build *v, int *dup_a, int *dup_b, const char *ctx) {
    *dup_a = *dup_b = -1;
    size_t cap = 16;
    while (cap < 2 * (size_t)v->n_ids) cap *= 2;
    v->hash = malloc(cap * sizeof *v->hash);
    if (!v->hash) return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate the vocabulary", ctx);
    for (size_t i = 0; i < cap; i++) v->hash[i] = -1;
    v->hmask = cap - 1;
    for (int id = 0; id < v->n_ids; id++) {
        if (v->off[id] == STR_NONE) continue;
        const char *s = v->pool + v->off[id];
        int32_t other = vb_find(v, s, v->len[id]);
        if (other >= 0) {
            *dup_a = other;
            *dup_b = id;
            return CT_ERR_FORMAT; /* the caller words the message */
        }
        size_t h = str_hash(s, v->len[id]) & v->hmask;
        while (v->hash[h] >= 0) h = (h + 1) & v->hmask;
        v->hash[h] = id;
    }
    return CT_OK;
}

/* Everything after the strings of all ids are known: byte symbols, special
 * tokens, the merge table and the decode table. Takes over v's strings. */
static ct_tokenizer *finish(vocab_build *v, const merge_line *m, size_t nm,
                            const char *vocab_ctx, const char *merges_path) {
    ct_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate the tokenizer", merges_path);
        return NULL;
    }
    t->n_ids = v->n_ids;
    uint32_t enc[256];
    byte_alphabet(enc, NULL);
    for (int b = 0; b < 256; b++) {
        uint8_t u[8];
        int ul = utf8_put(enc[b], u);
        memcpy(u + ul, "</w>", 4);
        t->byte_id[b] = vb_find(v, (const char *)u, (size_t)ul);
        t->byte_id_w[b] = vb_find(v, (const char *)u, (size_t)ul + 4);
        if (t->byte_id[b] < 0 || t->byte_id_w[b] < 0) {
            ct_set_error(CT_ERR_FORMAT, "%s: byte symbol \"%.*s%s\" (byte 0x%02x) is missing",
                         vocab_ctx, ul, (const char *)u, t->byte_id[b] < 0 ? "" : "</w>", b);
            goto fail;
        }
    }
    t->sot = vb_find(v, k_sot, sizeof k_sot - 1);
    t->eot = vb_find(v, k_eot, sizeof k_eot - 1);
    if (t->sot < 0 || t->eot < 0) {
        ct_set_error(CT_ERR_FORMAT, "%s: special token \"%s\" is missing", vocab_ctx,
                     t->sot < 0 ? k_sot : k_eot);
        goto fail;
    }

    size_t cap = 16;
    while (cap < 2 * nm) cap *= 2;
    t->mmask = cap - 1;
    t->mkey = malloc(cap * sizeof *t->mkey);
    t->mrank = malloc(cap * sizeof *t->mrank);
    t->mres = malloc(cap * sizeof *t->mres);
    char *join = NULL;
    size_t join_cap = 0;
    if (!t->mkey || !t->mrank || !t->mres) {
        ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate the merge table", merges_path);
        goto fail;
    }
    for (size_t i = 0; i < cap; i++) t->mkey[i] = UINT64_MAX;
    for (size_t r = 0; r < nm; r++) {
        const merge_line *ml = &m[r];
        if (ml->alen == 0) continue; /* the empty last line */
        int32_t a = vb_find(v, ml->a, ml->alen), b = vb_find(v, ml->b, ml->blen);
        if (a < 0 || b < 0) {
            const char *s = a < 0 ? ml->a : ml->b;
            size_t sl = a < 0 ? ml->alen : ml->blen;
            ct_set_error(CT_ERR_FORMAT,
                         "%s: line %zu: symbol \"%.*s\" is neither a byte symbol nor a merge "
                         "result in the vocabulary",
                         merges_path, ml->line, quote_len(s, sl), s);
            goto fail_join;
        }
        size_t jl = (size_t)ml->alen + ml->blen;
        if (jl > join_cap) {
            char *nj = realloc(join, jl);
            if (!nj) {
                ct_set_error(CT_ERR_NOMEM, "%s: out of memory", merges_path);
                goto fail_join;
            }
            join = nj;
            join_cap = jl;
        }
        memcpy(join, ml->a, ml->alen);
        memcpy(join + ml->alen, ml->b, ml->blen);
        int32_t res = vb_find(v, join, jl);
        if (res < 0) {
            ct_set_error(CT_ERR_FORMAT,
                         "%s: line %zu: merge result \"%.*s\" is not in the vocabulary (%s)",
                         merges_path, ml->line, quote_len(join, jl), join, vocab_ctx);
            goto fail_join;
        }
        size_t h = pair_slot(t, a, b);
        /* A repeated pair keeps its last rank, like dict(zip(merges, ...)). */
        t->mkey[h] = pair_key(a, b);
        t->mrank[h] = (int32_t)r;
        t->mres[h] = res;
    }
    free(join);
    join = NULL;

    /* decoder: each token's characters back to bytes (byte_decoder) */
    int16_t dec[256 + 68];
    for (int c = 0; c < 256 + 68; c++) dec[c] = -1;
    for (int b = 0; b < 256; b++) dec[enc[b]] = (int16_t)b;
    t->dec_off = malloc((size_t)t->n_ids * sizeof *t->dec_off);
    t->dec_len = malloc((size_t)t->n_ids * sizeof *t->dec_len);
    t->dec_pool = malloc(v->pool_len + 1); /* a character is never shorter than its byte */
    if (!t->dec_off || !t->dec_len || !t->dec_pool) {
        ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate the decoder", vocab_ctx);
        goto fail;
    }
    size_t dp = 0;
    for (int id = 0; id < t->n_ids; id++) {
        t->dec_off[id] = (uint32_t)dp;
        t->dec_len[id] = -1;
        if (v->off[id] == STR_NONE) continue;
        const uint8_t *s = (const uint8_t *)v->pool + v->off[id];
        size_t n = v->len[id], start = dp;
        bool ok = true, bad;
        for (size_t i = 0; i < n && ok;) {
            uint32_t c = utf8_next(s, n, &i, &bad);
            ok = !bad && c < 256 + 68 && dec[c] >= 0;
            if (ok) t->dec_pool[dp++] = (uint8_t)dec[c];
        }
        if (ok)
            t->dec_len[id] = (int32_t)(dp - start);
        else
            dp = start;
    }

    t->pool = v->pool;
    t->str_off = v->off;
    t->str_len = v->len;
    v->pool = NULL;
    v->off = v->len = NULL;
    return t;

fail_join:
    free(join);
fail:
    ct_tokenizer_free(t);
    return NULL;
}

/* Split line s[0..n) at str.isspace() characters (str.split()). Stores up to
 * two fields and returns how many there are. The text is valid UTF-8. */
static int split_fields(const char *s, size_t n, const char **f, uint32_t *fl) {
    int count = 0;
    size_t i = 0;
    bool bad;
    while (i < n) {
        size_t at = i;
        uint32_t c = utf8_next((const uint8_t *)s, n, &i, &bad);
        if (cp_flags(c) & CTU_PY_SPACE) continue;
        size_t end = i;
        while (end < n) {
            size_t q = end;
            c = utf8_next((const uint8_t *)s, n, &q, &bad);
            if (cp_flags(c) & CTU_PY_SPACE) break;
            end = q;
        }
        if (count < 2) {
            f[count] = s + at;
            fl[count] = (uint32_t)(end - at);
        }
        count++;
        i = end;
    }
    return count;
}

/* Parse merge lines [1 : 1 + BPE_MAX_MERGES) of text (whose first line is
 * line number first_line of path). universal_newlines: "\r\n" and "\r" end
 * lines too (Python's text-mode open). *out is malloc'ed. */
static ct_status parse_merges(const char *text, size_t n, size_t first_line,
                              bool universal_newlines, const char *path, merge_line **out,
                              size_t *n_out) {
    *out = NULL;
    *n_out = 0;
    merge_line *m = malloc(BPE_MAX_MERGES * sizeof *m);
    if (!m) return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate merges", path);
    size_t nm = 0, line = first_line, i = 0;
    /* skip the header line */
    bool more = false;
    while (i < n) {
        char c = text[i++];
        if (c == '\n' || (universal_newlines && c == '\r')) {
            if (c == '\r' && i < n && text[i] == '\n') i++;
            more = true;
            break;
        }
    }
    line++;
    while (more && nm < BPE_MAX_MERGES) {
        size_t start = i, end = i;
        more = false;
        while (end < n && text[end] != '\n' && !(universal_newlines && text[end] == '\r')) end++;
        if (end < n) {
            more = true;
            i = end + 1;
            if (text[end] == '\r' && i < n && text[i] == '\n') i++;
        } else {
            i = n;
        }
        /* When the file has fewer lines than the slice, the empty string
         * that split('\n') leaves after the final newline is read by Python
         * as an empty merge: it adds "" to the vocabulary (shifting the
         * special tokens by one) and can never apply. Keep that quirk, so
         * that ids match for short files; any other blank line is an error. */
        if (!more && start == end) {
            if (!universal_newlines) {
                m[nm] = (merge_line){"", "", 0, 0, line};
                nm++;
            }
            break;
        }
        const char *f[2] = {NULL, NULL};
        uint32_t fl[2] = {0, 0};
        int k = split_fields(text + start, end - start, f, fl);
        if (k != 2) {
            ct_set_error(CT_ERR_FORMAT,
                         "%s: line %zu: expected two symbols separated by a space, found %d "
                         "(\"%.*s\")",
                         path, line, k, quote_len(text + start, end - start), text + start);
            free(m);
            return CT_ERR_FORMAT;
        }
        m[nm].a = f[0];
        m[nm].alen = fl[0];
        m[nm].b = f[1];
        m[nm].blen = fl[1];
        m[nm].line = line;
        nm++;
        line++;
    }
    *out = m;
    *n_out = nm;
    return CT_OK;
}

static ct_status check_utf8(const char *text, size_t n, const char *path) {
    size_t bad = utf8_invalid_at((const uint8_t *)text, n);
    if (bad < n)
        return ct_set_error(CT_ERR_FORMAT,
                            "%s: line %zu: invalid UTF-8 (byte 0x%02x at offset %zu)", path,
                            line_of(text, bad), (uint8_t)text[bad], bad);
    return CT_OK;
}

/* Inflate a whole gzip file (all members, as Python's gzip module). */
static ct_status gunzip_file(const char *path, char **out, size_t *out_n) {
    *out = NULL;
    *out_n = 0;
    char *comp;
    size_t cn;
    ct_status st = ct_read_file(path, &comp, &cn);
    if (st != CT_OK) return st;
    const uint8_t *c = (const uint8_t *)comp;
    if (cn < 2 || c[0] != 0x1f || c[1] != 0x8b) {
        free(comp);
        return ct_set_error(CT_ERR_FORMAT, "%s: not a gzip file (no 1f 8b signature)", path);
    }
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
        free(comp);
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot initialise zlib", path);
    }
    size_t cap = cn < BPE_MAX_TEXT / 8 ? cn * 4 + 1024 : BPE_MAX_TEXT, len = 0, pos = 0;
    char *buf = malloc(cap);
    if (!buf) {
        st = ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, cap);
        goto done;
    }
    for (;;) {
        if (len == cap) {
            if (cap >= BPE_MAX_TEXT) {
                st = ct_set_error(CT_ERR_FORMAT, "%s: inflates to more than %zu MiB", path,
                                  BPE_MAX_TEXT >> 20);
                goto done;
            }
            size_t ncap = cap * 2 > BPE_MAX_TEXT ? BPE_MAX_TEXT : cap * 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                st = ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, ncap);
                goto done;
            }
            buf = nb;
            cap = ncap;
        }
        size_t in_n = cn - pos > UINT_MAX ? UINT_MAX : cn - pos;
        size_t out_room = cap - len > UINT_MAX ? UINT_MAX : cap - len;
        zs.next_in = (Bytef *)(comp + pos);
        zs.avail_in = (uInt)in_n;
        zs.next_out = (Bytef *)(buf + len);
        zs.avail_out = (uInt)out_room;
        int r = inflate(&zs, Z_NO_FLUSH);
        pos += in_n - zs.avail_in;
        len += out_room - zs.avail_out;
        if (r == Z_STREAM_END) {
            /* Python skips zero padding after a member; anything else must
             * be another member. */
            while (pos < cn && c[pos] == 0) pos++;
            if (pos == cn) break;
            if (cn - pos < 2 || c[pos] != 0x1f || c[pos + 1] != 0x8b) {
                st = ct_set_error(CT_ERR_FORMAT, "%s: unexpected data after the gzip stream "
                                  "at byte %zu", path, pos);
                goto done;
            }
            inflateReset(&zs);
            continue;
        }
        if (r == Z_NEED_DICT || r == Z_DATA_ERROR || r == Z_STREAM_ERROR) {
            st = ct_set_error(CT_ERR_FORMAT, "%s: corrupt gzip data near byte %zu: %s", path, pos,
                              zs.msg ? zs.msg : "invalid data");
            goto done;
        }
        if (r == Z_MEM_ERROR) {
            st = ct_set_error(CT_ERR_NOMEM, "%s: zlib out of memory", path);
            goto done;
        }
        if (pos == cn && zs.avail_out > 0) {
            st = ct_set_error(CT_ERR_FORMAT, "%s: truncated gzip data (the stream ends early, "
                              "after %zu compressed bytes)", path, cn);
            goto done;
        }
    }
done:
    inflateEnd(&zs);
    free(comp);
    if (st != CT_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    *out_n = len;
    return CT_OK;
}

ct_tokenizer *ct_tokenizer_load_openai(const char *bpe_txt_gz) {
    if (!bpe_txt_gz) {
        ct_set_error(CT_ERR_ARG, "ct_tokenizer_load_openai: NULL path");
        return NULL;
    }
    const char *path = bpe_txt_gz;
    char *text;
    size_t n;
    if (gunzip_file(path, &text, &n) != CT_OK) return NULL;
    ct_tokenizer *t = NULL;
    merge_line *m = NULL;
    size_t nm = 0;
    vocab_build v;
    memset(&v, 0, sizeof v);
    /* gzip.open(path).read().decode("utf-8") checks the whole file */
    if (check_utf8(text, n, path) != CT_OK) goto done;
    if (parse_merges(text, n, 1, false, path, &m, &nm) != CT_OK) goto done;

    /* vocab = bytes, bytes + "</w>", merges joined, <|startoftext|>, <|endoftext|> */
    int n_ids = 512 + (int)nm + 2;
    if (vb_init(&v, n_ids, 16 * (size_t)n_ids, path) != CT_OK) goto done;
    uint32_t enc[256];
    int order[256];
    byte_alphabet(enc, order);
    for (int k = 0; k < 512; k++) {
        uint8_t u[4];
        int ul = utf8_put(enc[order[k % 256]], u);
        if (vb_set(&v, k, (const char *)u, (size_t)ul, "</w>", k < 256 ? 0 : 4, path) != CT_OK)
            goto done;
    }
    for (size_t r = 0; r < nm; r++)
        if (vb_set(&v, 512 + (int)r, m[r].a, m[r].alen, m[r].b, m[r].blen, path) != CT_OK)
            goto done;
    if (vb_set(&v, n_ids - 2, k_sot, sizeof k_sot - 1, "", 0, path) != CT_OK ||
        vb_set(&v, n_ids - 1, k_eot, sizeof k_eot - 1, "", 0, path) != CT_OK)
        goto done;
    int da, db;
    if (vb_index(&v, &da, &db, path) != CT_OK) {
        if (db < 0) goto done; /* out of memory, message set */
        /* Python's dict would silently keep the later id. */
        const char *s = v.pool + v.off[db];
        if (db >= 512 && db < 512 + (int)nm)
            ct_set_error(CT_ERR_FORMAT, "%s: line %zu: merge result \"%.*s\" repeats token %d",
                         path, m[db - 512].line, quote_len(s, v.len[db]), s, da);
        else
            ct_set_error(CT_ERR_FORMAT, "%s: token \"%.*s\" (id %d) repeats token %d", path,
                         quote_len(s, v.len[db]), s, db, da);
        goto done;
    }
    t = finish(&v, m, nm, path, path);
done:
    vb_free(&v);
    free(m);
    free(text);
    return t;
}

ct_tokenizer *ct_tokenizer_load_hf(const char *vocab_json, const char *merges_txt) {
    if (!vocab_json || !merges_txt) {
        ct_set_error(CT_ERR_ARG, "ct_tokenizer_load_hf: NULL path");
        return NULL;
    }
    ct_tokenizer *t = NULL;
    char *text = NULL;
    merge_line *m = NULL;
    vocab_build v;
    memset(&v, 0, sizeof v);
    cJSON *root = ct_json_load(vocab_json);
    if (!root) return NULL;
    if (!cJSON_IsObject(root)) {
        ct_set_error(CT_ERR_FORMAT, "%s: expected a JSON object {\"token\": id, ...}",
                     vocab_json);
        goto done;
    }
    int max_id = -1;
    size_t count = 0, bytes = 0;
    for (const cJSON *it = root->child; it; it = it->next) {
        double d = it->valuedouble;
        if (!it->string || !cJSON_IsNumber(it) || !(d >= 0 && d < HF_MAX_ID) || d != (int)d) {
            ct_set_error(CT_ERR_FORMAT, "%s: token \"%.*s\": id must be an integer in [0, %d)",
                         vocab_json, it->string ? quote_len(it->string, strlen(it->string)) : 0,
                         it->string ? it->string : "", HF_MAX_ID);
            goto done;
        }
        size_t sl = strlen(it->string);
        if (utf8_invalid_at((const uint8_t *)it->string, sl) < sl) {
            ct_set_error(CT_ERR_FORMAT, "%s: token with id %d is not valid UTF-8", vocab_json,
                         (int)d);
            goto done;
        }
        if ((int)d > max_id) max_id = (int)d;
        count++;
        bytes += sl + 1;
    }
    if (count == 0) {
        ct_set_error(CT_ERR_FORMAT, "%s: empty vocabulary", vocab_json);
        goto done;
    }
    /* Ids index an embedding table: a few unused ones are tolerated, a
     * vocabulary that is mostly holes is a corrupt file. */
    if ((size_t)max_id + 1 > count + HF_MAX_UNUSED) {
        ct_set_error(CT_ERR_FORMAT, "%s: id %d is too large for a vocabulary of %zu tokens "
                     "(at most %d ids may be unused)", vocab_json, max_id, count, HF_MAX_UNUSED);
        goto done;
    }
    if (vb_init(&v, max_id + 1, bytes, vocab_json) != CT_OK) goto done;
    for (const cJSON *it = root->child; it; it = it->next) {
        int id = (int)it->valuedouble;
        if (v.off[id] != STR_NONE) {
            const char *s = v.pool + v.off[id];
            ct_set_error(CT_ERR_FORMAT, "%s: tokens \"%.*s\" and \"%.*s\" share id %d",
                         vocab_json, quote_len(s, v.len[id]), s,
                         quote_len(it->string, strlen(it->string)), it->string, id);
            goto done;
        }
        if (vb_set(&v, id, it->string, strlen(it->string), "", 0, vocab_json) != CT_OK)
            goto done;
    }
    int da, db;
    if (vb_index(&v, &da, &db, vocab_json) != CT_OK) {
        if (db < 0) goto done;
        const char *s = v.pool + v.off[db];
        ct_set_error(CT_ERR_FORMAT, "%s: token \"%.*s\" appears twice (ids %d and %d)",
                     vocab_json, quote_len(s, v.len[db]), s, da, db);
        goto done;
    }

    size_t n;
    if (ct_read_file(merges_txt, &text, &n) != CT_OK) goto done;
    if (check_utf8(text, n, merges_txt) != CT_OK) goto done;
    /* read().strip(): skip leading str.isspace() characters, counting the
     * lines they span so that messages give the file's own line numbers. */
    size_t a = 0, first_line = 1;
    bool bad;
    for (size_t i = 0; i < n;) {
        size_t at = i;
        uint32_t c = utf8_next((const uint8_t *)text, n, &i, &bad);
        if (!(cp_flags(c) & CTU_PY_SPACE)) {
            a = at;
            break;
        }
        if (c == '\n' || (c == '\r' && !(i < n && text[i] == '\n'))) first_line++;
        a = i;
    }
    size_t b = n;
    while (b > a) { /* trailing isspace() characters */
        size_t q = b - 1;
        while (q > a && ((uint8_t)text[q] & 0xC0) == 0x80) q--;
        size_t i = q;
        uint32_t c = utf8_next((const uint8_t *)text, n, &i, &bad);
        if (!(cp_flags(c) & CTU_PY_SPACE)) break;
        b = q;
    }
    size_t nm;
    if (parse_merges(text + a, b - a, first_line, true, merges_txt, &m, &nm) != CT_OK)
        goto done;
    t = finish(&v, m, nm, vocab_json, merges_txt);
done:
    vb_free(&v);
    free(m);
    free(text);
    cJSON_Delete(root);
    return t;
}

uint64_t ct_tokenizer_hash(const ct_tokenizer *t) {
    uint64_t h = ct_hash_u64(CT_HASH_INIT, (uint64_t)t->n_ids);
    for (int i = 0; i < t->n_ids; i++)
        if (t->str_off[i] != STR_NONE) h = ct_hash_bytes(h, t->pool + t->str_off[i], t->str_len[i]);
        else h = ct_hash_u64(h, 0x5EEDull);
    /* the merges: each rank's pair and result, in slot order (the table is
     * filled deterministically from merges.txt) */
    for (size_t k = 0; k <= t->mmask; k++)
        if (t->mkey[k] != UINT64_MAX)
            h = ct_hash_u64(ct_hash_u64(h, t->mkey[k]),
                            ((uint64_t)(uint32_t)t->mrank[k] << 32) | (uint32_t)t->mres[k]);
    return ct_hash_u64(ct_hash_u64(h, (uint64_t)t->sot), (uint64_t)t->eot);
}
