/* Training a CLIP byte-level BPE vocabulary (ct_bpe_train, docs/tokenizer.md).
 *
 * OpenAI did not release the code that built bpe_simple_vocab_16e6.txt; its
 * format is that of subword-nmt's learn_bpe.py ("#version: 0.2" header,
 * "</w>" glued to a word's last symbol), and the vocabulary simple_tokenizer.py
 * builds from it (bytes, bytes + "</w>", one token per merge, SOT, EOT) fixes
 * the id layout. The algorithm is learn_bpe's:
 *
 *   1. every text is split exactly as ct_tokenizer_encode splits it
 *      (ct_tok_split: cleaning, str.lower(), CLIP's pattern); the literal
 *      special tokens are not words;
 *   2. each distinct piece is a word: its UTF-8 bytes as bytes_to_unicode
 *      symbols, the last one with "</w>", counted by frequency;
 *   3. repeatedly, the adjacent pair with the highest total frequency is
 *      merged (all its non-overlapping occurrences, left to right, in every
 *      word), until the vocabulary has vocab_size tokens or no pair occurs
 *      min_frequency times.
 *
 * Ties are broken towards the lexicographically smallest pair: the smallest
 * first symbol, then the smallest second symbol, comparing their UTF-8
 * strings bytewise (the same order as Python's comparison of (str, str)
 * tuples). learn_bpe breaks ties towards the largest pair; any fixed rule
 * gives a vocabulary of the same quality, and this one makes the result
 * independent of input order.
 *
 * If a merge produces a string that is already a token (two different
 * splits of the same string, e.g. "ab"+"c" and "a"+"bc"), the merge is kept
 * and the token reused, as Hugging Face's BPE trainer does: every merge is in
 * merges.txt, but vocab.json has one id per distinct string.
 *
 * Cost: pair counts are kept incrementally. Each pair knows the words it
 * occurs in; a merge rewrites only those words, taking their old pairs out of
 * the counts and putting the new ones in. A word shrinks by at least one
 * symbol per rewrite, so all rewrites together cost O(total word length), and
 * the best pair comes from a max-heap with lazy deletion (an entry whose
 * count is out of date is re-queued with the current count when popped). */
#include "cliptune.h"

#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "model/tokenizer.h"

/* What transformers' CLIPTokenizer (and simple_tokenizer.py) read of a
 * merges file: lines 1..48,894 after the header. */
#define BPE_MAX_MERGES (49152 - 256 - 2)
#define BPE_MIN_VOCAB (512 + 2)
#define BPE_MAX_VOCAB (512 + BPE_MAX_MERGES + 2)

static const char k_sot[] = "<|startoftext|>";
static const char k_eot[] = "<|endoftext|>";

static uint64_t str_hash(const uint8_t *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h ^ (h >> 32);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

/* ------------------------------------------------------------------------ */
/* Byte strings with an index: words (while counting) and symbols           */
/* ------------------------------------------------------------------------ */

typedef struct str_set {
    uint8_t *pool;
    size_t pool_len, pool_cap;
    size_t *off;   /* (n) */
    uint32_t *len; /* (n) */
    int32_t n, cap;
    int32_t *slot; /* open addressing: index or -1 */
    size_t mask;
} str_set;

static void ss_free(str_set *s) {
    free(s->pool);
    free(s->off);
    free(s->len);
    free(s->slot);
    memset(s, 0, sizeof *s);
}

static size_t ss_probe(const str_set *s, const uint8_t *b, size_t n) {
    size_t h = str_hash(b, n) & s->mask;
    for (; s->slot[h] >= 0; h = (h + 1) & s->mask) {
        int32_t i = s->slot[h];
        if (s->len[i] == n && !memcmp(s->pool + s->off[i], b, n)) break;
    }
    return h;
}

/* *out = index of key[0..tot), added if new (*added). key must not point
 * into s's pool (which may move). */
static ct_status ss_intern(str_set *s, const uint8_t *key, size_t tot, int32_t *out, bool *added,
                           const char *what) {
    if (tot > UINT32_MAX)
        return ct_set_error(CT_ERR_ARG, "ct_bpe_train: a %s of %zu bytes is too long", what, tot);
    if ((size_t)s->n + 1 > (s->mask + 1) / 2) { /* keep the load under 1/2 */
        size_t cap = pow2_at_least(4 * ((size_t)s->n + 1));
        int32_t *slot = malloc(cap * sizeof *slot);
        if (!slot)
            return ct_set_error(CT_ERR_NOMEM, "ct_bpe_train: cannot allocate the %s index", what);
        for (size_t i = 0; i < cap; i++) slot[i] = -1;
        free(s->slot);
        s->slot = slot;
        s->mask = cap - 1;
        for (int32_t i = 0; i < s->n; i++)
            s->slot[ss_probe(s, s->pool + s->off[i], s->len[i])] = i;
    }
    size_t h = ss_probe(s, key, tot);
    *added = s->slot[h] < 0;
    if (!*added) {
        *out = s->slot[h];
        return CT_OK;
    }
    if (s->n == INT32_MAX)
        return ct_set_error(CT_ERR_ARG, "ct_bpe_train: more than %d distinct %ss", INT32_MAX, what);
    if (s->n == s->cap) {
        int32_t cap = s->cap ? (s->cap > INT32_MAX / 2 ? INT32_MAX : s->cap * 2) : 1024;
        size_t *off = realloc(s->off, (size_t)cap * sizeof *off);
        if (off) s->off = off;
        uint32_t *len = realloc(s->len, (size_t)cap * sizeof *len);
        if (len) s->len = len;
        if (!off || !len)
            return ct_set_error(CT_ERR_NOMEM, "ct_bpe_train: cannot allocate %d %ss", cap, what);
        s->cap = cap;
    }
    if (s->pool_len + tot > s->pool_cap) {
        size_t cap = s->pool_cap ? s->pool_cap : 4096;
        while (cap < s->pool_len + tot) cap *= 2;
        uint8_t *pool = realloc(s->pool, cap);
        if (!pool)
            return ct_set_error(CT_ERR_NOMEM, "ct_bpe_train: cannot allocate %zu bytes of %ss", cap,
                                what);
        s->pool = pool;
        s->pool_cap = cap;
    }
    memcpy(s->pool + s->pool_len, key, tot);
    s->off[s->n] = s->pool_len;
    s->len[s->n] = (uint32_t)tot;
    s->pool_len += tot;
    s->slot[h] = s->n;
    *out = s->n++;
    return CT_OK;
}

/* ------------------------------------------------------------------------ */
/* Counting words                                                           */
/* ------------------------------------------------------------------------ */

typedef struct word_count {
    str_set words;
    int64_t *freq; /* (words.cap) */
    int64_t total; /* pieces seen */
} word_count;

static ct_status count_piece(void *ctx, const uint8_t *bytes, size_t n, int kind) {
    word_count *wc = ctx;
    if (kind != CT_TOK_WORD) return CT_OK; /* special tokens are not words */
    if (n > INT32_MAX / 4) /* encode's limit too */
        return ct_set_error(CT_ERR_ARG, "a single word of %zu bytes is too long", n);
    int32_t id;
    bool added;
    int32_t old_cap = wc->words.cap;
    ct_status st = ss_intern(&wc->words, bytes, n, &id, &added, "word");
    if (st != CT_OK) return st;
    if (wc->words.cap != old_cap) {
        int64_t *f = realloc(wc->freq, (size_t)wc->words.cap * sizeof *f);
        if (!f) return ct_set_error(CT_ERR_NOMEM, "ct_bpe_train: cannot allocate word counts");
        wc->freq = f;
    }
    if (added) wc->freq[id] = 0;
    wc->freq[id]++;
    wc->total++;
    return CT_OK;
}

/* ------------------------------------------------------------------------ */
/* Pairs                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct pair_info {
    int32_t a, b;
    int64_t count;
    int32_t *where; /* words it may occur in (stale entries allowed) */
    int32_t n_where, cap_where;
    int32_t stamp;  /* last merge that queued it */
} pair_info;

typedef struct heap_item {
    int64_t count;
    int32_t pair;
} heap_item;

typedef struct trainer {
    str_set sym;       /* symbol strings; ids 0..511 are the byte symbols */
    /* words as symbol ids: word w is ws[wo[w] .. wo[w] + wl[w]) */
    int32_t *ws;
    size_t *wo;
    int32_t *wl;
    int64_t *wf;
    int32_t *wstamp;
    int32_t n_words;
    pair_info *p;
    int32_t n_pairs, cap_pairs;
    int32_t *pslot;    /* open addressing on (a, b): pair index or -1 */
    size_t pmask;
    heap_item *heap;
    size_t n_heap, cap_heap;
    int32_t *touched;  /* pairs with the new symbol, to queue after a merge */
    int32_t n_touched, cap_touched;
    int32_t *merges;   /* (2 * n_merges) symbol ids */
    int32_t n_merges;
} trainer;

static void tr_free(trainer *t) {
    ss_free(&t->sym);
    free(t->ws);
    free(t->wo);
    free(t->wl);
    free(t->wf);
    free(t->wstamp);
    for (int32_t i = 0; i < t->n_pairs; i++) free(t->p[i].where);
    free(t->p);
    free(t->pslot);
    free(t->heap);
    free(t->touched);
    free(t->merges);
}

static inline size_t pair_hash(int32_t a, int32_t b) {
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    k ^= k >> 31;
    k *= 0x9E3779B97F4A7C15ull;
    k ^= k >> 29;
    return (size_t)k;
}

static size_t pair_probe(const trainer *t, int32_t a, int32_t b) {
    size_t h = pair_hash(a, b) & t->pmask;
    while (t->pslot[h] >= 0 && (t->p[t->pslot[h]].a != a || t->p[t->pslot[h]].b != b))
        h = (h + 1) & t->pmask;
    return h;
}

/* *out = index of pair (a, b), created with count 0 if new. */
static ct_status pair_get(trainer *t, int32_t a, int32_t b, int32_t *out) {
    size_t h = pair_probe(t, a, b);
    if (t->pslot[h] >= 0) {
        *out = t->pslot[h];
        return CT_OK;
    }
    if (t->n_pairs == INT32_MAX)
        return ct_set_error(CT_ERR_ARG, "ct_bpe_train: more than %d distinct pairs", INT32_MAX);
    if ((size_t)t->n_pairs + 1 > (t->pmask + 1) / 2) {
        size_t cap = pow2_at_least(4 * ((size_t)t->n_pairs + 1));
        int32_t *slot = malloc(cap * sizeof *slot);
        if (!slot)
            return ct_set_error(CT_ERR_NOMEM, "ct_bpe_train: cannot allocate the pair index");
        for (size_t i = 0; i < cap; i++) slot[i] = -1;
        free(t->pslot);
        t->pslot = slot;
        t->pmask = cap - 1;
        for (int32_t i = 0; i < t->n_pairs; i++) t->pslot[pair_probe(t, t->p[i].a, t->p[i].b)] = i;
        h = pair_probe(t, a, b);
    }
    if (t->n_pairs == t->cap_pairs) {
        int32_t cap = t->cap_pairs > INT32_MAX / 2 ? INT32_MAX : 2 * t->cap_pairs + 1024;
        pair_info *p = realloc(t->p, (size_t)cap * sizeof *p);
        if (!p) return ct_set_error(CT_ERR_NOMEM, "ct_bpe_train: cannot allocate %d pairs", cap);
        t->p = p;
        t->cap_pairs = cap;
    }
    t->p[t->n_pairs] = (pair_info){a, b, 0, NULL, 0, 0, -1};
    t->pslot[h] = t->n_pairs;
    *out = t->n_pairs++;
    return CT_OK;
}

static ct_status pair_add_word(trainer *t, int32_t pi, int32_t w) {
    pair_info *p = &t->p[pi];
    if (p->n_where && p->where[p->n_where - 1] == w) return CT_OK;
    if (p->n_where == p->cap_where) {
        int32_t cap = p->cap_where > INT32_MAX / 2 ? INT32_MAX : 2 * p->cap_where + 4;
        if (p->n_where == INT32_MAX)
            return ct_set_error(CT_ERR_ARG, "ct_bpe_train: a pair occurs in too many words");
        int32_t *v = realloc(p->where, (size_t)cap * sizeof *v);
        if (!v) return ct_set_error(CT_ERR_NOMEM, "ct_bpe_train: cannot allocate word lists");
        p->where = v;
        p->cap_where = cap;
    }
    p->where[p->n_where++] = w;
    return CT_OK;
}

/* Symbol strings in the tie-break order: bytewise, a prefix first. */
static int sym_cmp(const trainer *t, int32_t x, int32_t y) {
    size_t lx = t->sym.len[x], ly = t->sym.len[y];
    int r = memcmp(t->sym.pool + t->sym.off[x], t->sym.pool + t->sym.off[y], lx < ly ? lx : ly);
    if (r) return r;
    return (lx > ly) - (lx < ly);
}

/* Does item x come out of the heap before y: higher count, then the
 * lexicographically smaller pair. */
static bool item_before(const trainer *t, const heap_item *x, const heap_item *y) {
    if (x->count != y->count) return x->count > y->count;
    const pair_info *px = &t->p[x->pair], *py = &t->p[y->pair];
    int r = sym_cmp(t, px->a, py->a);
    if (!r) r = sym_cmp(t, px->b, py->b);
    return r < 0;
}

static ct_status heap_push(trainer *t, int32_t pair) {
    if (t->n_heap == t->cap_heap) {
        size_t cap = t->cap_heap * 2 + 1024;
        heap_item *h = realloc(t->heap, cap * sizeof *h);
        if (!h) return ct_set_error(CT_ERR_NOMEM, "ct_bpe_train: cannot allocate the pair queue");
        t->heap = h;
        t->cap_heap = cap;
    }
    heap_item it = {t->p[pair].count, pair};
    size_t i = t->n_heap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!item_before(t, &it, &t->heap[up])) break;
        t->heap[i] = t->heap[up];
        i = up;
    }
    t->heap[i] = it;
    return CT_OK;
}

static heap_item heap_pop(trainer *t) {
    heap_item top = t->heap[0], last = t->heap[--t->n_heap];
    size_t i = 0, n = t->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && item_before(t, &t->heap[c + 1], &t->heap[c])) c++;
        if (!item_before(t, &t->heap[c], &last)) break;
        t->heap[i] = t->heap[c];
        i = c;
    }
    if (n) t->heap[i] = last;
    return top;
}

/* The best pair with count >= min_count, or -1. Every pair's current count
 * is at most the count of its best entry in the heap (counts of existing
 * pairs only fall; a pair that gains is queued again), so the first entry
 * popped whose count is current is the best pair. */
static int32_t best_pair(trainer *t, int64_t min_count, ct_status *st) {
    *st = CT_OK;
    while (t->n_heap) {
        if (t->heap[0].count < min_count) return -1;
        heap_item it = heap_pop(t);
        int64_t now = t->p[it.pair].count;
        if (now == it.count) return it.pair;
        /* now > it.count: a pair that gained was queued again; drop this */
        if (now > 0 && now < it.count && (*st = heap_push(t, it.pair)) != CT_OK) return -1;
    }
    return -1;
}

/* Add f to the count of every adjacent pair of word w; when adding, new
 * pairs containing sym_new are recorded for queueing and get w in their
 * word lists. */
static ct_status word_pairs(trainer *t, int32_t w, int64_t f, int32_t sym_new, int32_t stamp) {
    const int32_t *s = t->ws + t->wo[w];
    for (int32_t i = 0; i + 1 < t->wl[w]; i++) {
        int32_t pi;
        ct_status st = pair_get(t, s[i], s[i + 1], &pi);
        if (st != CT_OK) return st;
        t->p[pi].count += f;
        if (f > 0 && (s[i] == sym_new || s[i + 1] == sym_new)) {
            st = pair_add_word(t, pi, w);
            if (st != CT_OK) return st;
            if (t->p[pi].stamp != stamp) {
                t->p[pi].stamp = stamp;
                if (t->n_touched == t->cap_touched) {
                    int32_t cap = t->cap_touched * 2 + 256;
                    int32_t *v = realloc(t->touched, (size_t)cap * sizeof *v);
                    if (!v) return ct_set_error(CT_ERR_NOMEM, "ct_bpe_train: out of memory");
                    t->touched = v;
                    t->cap_touched = cap;
                }
                t->touched[t->n_touched++] = pi;
            }
        }
    }
    return CT_OK;
}

/* Merge every (a, b) in the words that hold it into c. */
static ct_status apply_merge(trainer *t, int32_t pi, int32_t c, int32_t stamp) {
    int32_t a = t->p[pi].a, b = t->p[pi].b;
    /* the list stays put: no pair created below is (a, b) */
    int32_t *where = t->p[pi].where, n_where = t->p[pi].n_where;
    t->n_touched = 0;
    ct_status st = CT_OK;
    for (int32_t k = 0; k < n_where && st == CT_OK; k++) {
        int32_t w = where[k];
        if (t->wstamp[w] == stamp) continue;
        t->wstamp[w] = stamp;
        int32_t *s = t->ws + t->wo[w], n = t->wl[w], i = 0;
        while (i + 1 < n && !(s[i] == a && s[i + 1] == b)) i++;
        if (i + 1 >= n) continue; /* stale: merged away earlier */
        if ((st = word_pairs(t, w, -t->wf[w], c, stamp)) != CT_OK) break;
        int32_t o = 0;
        for (i = 0; i < n;) {
            if (i + 1 < n && s[i] == a && s[i + 1] == b) {
                s[o++] = c;
                i += 2;
            } else {
                s[o++] = s[i++];
            }
        }
        t->wl[w] = o;
        st = word_pairs(t, w, t->wf[w], c, stamp);
    }
    free(t->p[pi].where);
    t->p[pi].where = NULL;
    t->p[pi].n_where = t->p[pi].cap_where = 0;
    for (int32_t k = 0; k < t->n_touched && st == CT_OK; k++)
        if (t->p[t->touched[k]].count > 0) st = heap_push(t, t->touched[k]);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Output                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct buf {
    char *p;
    size_t n, cap;
    bool oom;
} buf;

static void buf_put(buf *b, const void *s, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void buf_str(buf *b, const char *s) { buf_put(b, s, strlen(s)); }

/* A JSON string as Python's json.dumps(..., ensure_ascii=False) writes it. */
static void buf_json_str(buf *b, const uint8_t *s, size_t n) {
    buf_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        char esc[8];
        uint8_t c = s[i];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            buf_put(b, esc, 2);
        } else if (c < 0x20) {
            const char *named = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t"
                              : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
            if (named) {
                buf_str(b, named);
            } else {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                buf_put(b, esc, 6);
            }
        } else {
            buf_put(b, &s[i], 1);
        }
    }
    buf_put(b, "\"", 1);
}

static ct_status write_buf(const char *dir, const char *name, buf *b) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return ct_set_error(CT_ERR_ARG, "ct_bpe_train: output path \"%s/%s\" is too long", dir,
                            name);
    if (b->oom) return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate the file text", path);
    return ct_write_file_atomic(path, b->p, b->n);
}

/* tokenizer_config.json and special_tokens_map.json with the fields
 * transformers' CLIPTokenizer reads, valued as in openai/clip-vit-base-patch32
 * (<|endoftext|> is also the unknown and padding token there). */
static ct_status write_configs(const char *dir) {
    char path[4096];
    ct_status st = CT_OK;
    for (int k = 0; k < 2 && st == CT_OK; k++) {
        cJSON *o = cJSON_CreateObject();
        if (!o) return ct_set_error(CT_ERR_NOMEM, "ct_bpe_train: cannot allocate JSON");
        bool ok = true;
        if (k == 0) {
            ok = ok && cJSON_AddStringToObject(o, "tokenizer_class", "CLIPTokenizer");
            ok = ok && cJSON_AddNumberToObject(o, "model_max_length", CT_CLIP_CONTEXT_LENGTH);
            ok = ok && cJSON_AddBoolToObject(o, "do_lower_case", true);
            ok = ok && cJSON_AddStringToObject(o, "errors", "replace");
            ok = ok && cJSON_AddBoolToObject(o, "add_prefix_space", false);
        }
        ok = ok && cJSON_AddStringToObject(o, "bos_token", k_sot);
        ok = ok && cJSON_AddStringToObject(o, "eos_token", k_eot);
        ok = ok && cJSON_AddStringToObject(o, "unk_token", k_eot);
        ok = ok && cJSON_AddStringToObject(o, "pad_token", k_eot);
        const char *name = k == 0 ? "tokenizer_config.json" : "special_tokens_map.json";
        snprintf(path, sizeof path, "%s/%s", dir, name);
        st = ok ? ct_json_save(path, o)
                : ct_set_error(CT_ERR_NOMEM, "ct_bpe_train: cannot allocate JSON");
        cJSON_Delete(o);
    }
    return st;
}

/* vocab.json ({"token": id, ...} in id order, one line, as json.dumps with
 * ensure_ascii=False) and merges.txt ("#version: 0.2", then "a b" lines). */
static ct_status write_vocab(const trainer *t, const char *dir) {
    buf v = {0}, m = {0};
    buf_put(&v, "{", 1);
    for (int32_t id = 0; id < t->sym.n + 2; id++) {
        char num[32];
        if (id) buf_put(&v, ", ", 2);
        if (id < t->sym.n)
            buf_json_str(&v, t->sym.pool + t->sym.off[id], t->sym.len[id]);
        else
            buf_json_str(&v, (const uint8_t *)(id == t->sym.n ? k_sot : k_eot),
                         strlen(id == t->sym.n ? k_sot : k_eot));
        int nn = snprintf(num, sizeof num, ": %d", id);
        buf_put(&v, num, (size_t)nn);
    }
    buf_put(&v, "}\n", 2);
    buf_str(&m, "#version: 0.2\n");
    for (int32_t r = 0; r < t->n_merges; r++) {
        int32_t a = t->merges[2 * r], b = t->merges[2 * r + 1];
        buf_put(&m, t->sym.pool + t->sym.off[a], t->sym.len[a]);
        buf_put(&m, " ", 1);
        buf_put(&m, t->sym.pool + t->sym.off[b], t->sym.len[b]);
        buf_put(&m, "\n", 1);
    }
    ct_status st = write_buf(dir, "vocab.json", &v);
    if (st == CT_OK) st = write_buf(dir, "merges.txt", &m);
    free(v.p);
    free(m.p);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Training                                                                 */
/* ------------------------------------------------------------------------ */

/* Byte symbols (ids 0..511 in CLIP's order), the words as symbol ids, and
 * the initial pair counts and queue. */
static ct_status tr_init(trainer *t, const word_count *wc) {
    uint32_t enc[256];
    int order[256], byte_sym[256];
    ct_tok_byte_alphabet(enc, order);
    for (int k = 0; k < 512; k++) {
        uint8_t u[8];
        int ul = ct_tok_utf8_put(enc[order[k % 256]], u);
        if (k >= 256) {
            memcpy(u + ul, "</w>", 4);
            ul += 4;
        }
        int32_t id;
        bool added;
        ct_status st = ss_intern(&t->sym, u, (size_t)ul, &id, &added, "symbol");
        if (st != CT_OK) return st;
        CT_ASSERT(added && id == k);
        if (k < 256) byte_sym[order[k]] = k;
    }
    t->n_words = wc->words.n;
    size_t n = (size_t)t->n_words, ws_bytes; /* n < 2^31: no overflow below */
    if (!ct_mul_size(wc->words.pool_len, sizeof *t->ws, &ws_bytes))
        return ct_set_error(CT_ERR_NOMEM, "ct_bpe_train: %zu bytes of words is too much",
                            wc->words.pool_len);
    t->wo = malloc(n * sizeof *t->wo);
    t->wl = malloc(n * sizeof *t->wl);
    t->wf = malloc(n * sizeof *t->wf);
    t->wstamp = malloc(n * sizeof *t->wstamp);
    t->ws = malloc(ws_bytes);
    t->pmask = 15;
    t->pslot = malloc(16 * sizeof *t->pslot);
    if (!t->wo || !t->wl || !t->wf || !t->wstamp || !t->ws || !t->pslot)
        return ct_set_error(CT_ERR_NOMEM, "ct_bpe_train: cannot allocate %zu words", n);
    for (int i = 0; i < 16; i++) t->pslot[i] = -1;
    for (size_t w = 0; w < n; w++) {
        const uint8_t *b = wc->words.pool + wc->words.off[w];
        uint32_t len = wc->words.len[w];
        t->wo[w] = wc->words.off[w];
        t->wl[w] = (int32_t)len;
        t->wf[w] = wc->freq[w];
        t->wstamp[w] = -1;
        for (uint32_t i = 0; i < len; i++)
            t->ws[t->wo[w] + i] = byte_sym[b[i]] + (i + 1 == len ? 256 : 0);
        const int32_t *s = t->ws + t->wo[w];
        for (uint32_t i = 0; i + 1 < len; i++) {
            int32_t pi;
            ct_status st = pair_get(t, s[i], s[i + 1], &pi);
            if (st == CT_OK) st = pair_add_word(t, pi, (int32_t)w);
            if (st != CT_OK) return st;
            t->p[pi].count += t->wf[w];
        }
    }
    for (int32_t pi = 0; pi < t->n_pairs; pi++) {
        ct_status st = heap_push(t, pi);
        if (st != CT_OK) return st;
    }
    return CT_OK;
}

ct_status ct_bpe_train(const char *const *texts, int64_t n_texts, int vocab_size,
                       int min_frequency, const char *out_dir, ct_bpe_stats *stats) {
    if (stats) memset(stats, 0, sizeof *stats);
    if ((n_texts > 0 && !texts) || n_texts < 0 || !out_dir || !*out_dir)
        return ct_set_error(CT_ERR_ARG, "ct_bpe_train: NULL texts or out_dir, or n_texts < 0");
    if (vocab_size < BPE_MIN_VOCAB || vocab_size > BPE_MAX_VOCAB)
        return ct_set_error(CT_ERR_ARG,
                            "ct_bpe_train: vocab_size %d is outside [%d, %d] (256 byte symbols, "
                            "their 256 \"</w>\" forms and 2 special tokens come first; CLIP "
                            "tokenizers read at most %d merges)",
                            vocab_size, BPE_MIN_VOCAB, BPE_MAX_VOCAB, BPE_MAX_MERGES);
    if (min_frequency < 1)
        return ct_set_error(CT_ERR_ARG, "ct_bpe_train: min_frequency %d < 1", min_frequency);
    if (n_texts == 0) return ct_set_error(CT_ERR_ARG, "ct_bpe_train: no texts to train on");

    word_count wc = {0};
    trainer t = {0};
    ct_status st = CT_OK;
    for (int64_t i = 0; i < n_texts && st == CT_OK; i++) {
        if (!texts[i]) {
            st = ct_set_error(CT_ERR_ARG, "ct_bpe_train: texts[%lld] is NULL", (long long)i);
            break;
        }
        st = ct_tok_split(texts[i], count_piece, &wc);
        if (st != CT_OK) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", ct_last_error());
            st = ct_set_error(st, "ct_bpe_train: text %lld: %s", (long long)i, msg);
        }
    }
    if (st == CT_OK && wc.words.n == 0)
        st = ct_set_error(CT_ERR_ARG, "ct_bpe_train: the %lld texts hold no words (all blank "
                          "or special tokens)", (long long)n_texts);
    if (st == CT_OK) st = tr_init(&t, &wc);
    int64_t n_words = wc.total, n_distinct = wc.words.n;
    ss_free(&wc.words);
    free(wc.freq);
    wc.freq = NULL;

    int32_t target = vocab_size - 2; /* symbols before the two special tokens */
    bool by_freq = false;
    if (st == CT_OK) {
        t.merges = malloc(2 * (size_t)(target - 512 + 1) * sizeof *t.merges);
        if (!t.merges) st = ct_set_error(CT_ERR_NOMEM, "ct_bpe_train: cannot allocate merges");
    }
    size_t merges_cap = (size_t)(target - 512 + 1);
    while (st == CT_OK && t.sym.n < target && t.n_merges < BPE_MAX_MERGES) {
        int32_t pi = best_pair(&t, min_frequency, &st);
        if (st != CT_OK) break;
        if (pi < 0) {
            by_freq = true;
            break;
        }
        int32_t a = t.p[pi].a, b = t.p[pi].b, c;
        bool added;
        /* a copy: the pool may move while interning */
        size_t la = t.sym.len[a], lb = t.sym.len[b];
        uint8_t *ab = malloc(la + lb + 1);
        if (!ab) {
            st = ct_set_error(CT_ERR_NOMEM, "ct_bpe_train: out of memory");
            break;
        }
        memcpy(ab, t.sym.pool + t.sym.off[a], la);
        memcpy(ab + la, t.sym.pool + t.sym.off[b], lb);
        st = ss_intern(&t.sym, ab, la + lb, &c, &added, "symbol");
        free(ab);
        if (st != CT_OK) break;
        if ((size_t)t.n_merges == merges_cap) { /* only when results repeat */
            size_t cap = merges_cap * 2;
            int32_t *m = realloc(t.merges, 2 * cap * sizeof *m);
            if (!m) {
                st = ct_set_error(CT_ERR_NOMEM, "ct_bpe_train: cannot allocate merges");
                break;
            }
            t.merges = m;
            merges_cap = cap;
        }
        t.merges[2 * t.n_merges] = a;
        t.merges[2 * t.n_merges + 1] = b;
        t.n_merges++;
        st = apply_merge(&t, pi, c, t.n_merges);
    }
    if (st == CT_OK) st = ct_mkdir_p(out_dir);
    if (st == CT_OK) st = write_vocab(&t, out_dir);
    if (st == CT_OK) st = write_configs(out_dir);
    if (st == CT_OK && stats) {
        stats->vocab_size = t.sym.n + 2;
        stats->n_merges = t.n_merges;
        stats->n_words = n_words;
        stats->n_distinct_words = n_distinct;
        stats->stopped_early = by_freq || t.sym.n < target;
    }
    tr_free(&t);
    return st;
}
