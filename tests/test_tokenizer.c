/* CLIP BPE tokenizer: ids of OpenAI's simple_tokenizer.py / clip.tokenize for
 * ~2000 strings (tests/fixtures/tokenizer_ref.h) with both loaders, rows and
 * truncation, decode, BPE semantics on hand-made merges, malformed files, and
 * concurrent use. Tests that need the released vocabulary read it from
 * ../shared/data/clip-bpe and skip without it. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zlib.h>

#include "cliptune.h"
#include "harness.h"
#include "cliptune.h"
#include "fixtures/tokenizer_ref.h"
#include "fixtures/special_tokens_ref.h"

#define N_CASES ((int)(sizeof tref_cases / sizeof tref_cases[0]))

/* ---- helpers ------------------------------------------------------------ */

static char g_gz[4096], g_vocab[4096], g_merges[4096];
static ct_tokenizer *g_openai, *g_hf;
static bool g_loaded;

/* Both released tokenizers, loaded once; false (and the test skipped) when
 * ../shared is absent. A failed load is a failure, not a skip. */
static bool shared_tokenizers(void) {
    const char *dir = ct_test_shared_dir();
    if (!dir) {
        ct_test_skip("../shared not found: set CT_SHARED_DIR (ctest does) to run the parity tests");
        return false;
    }
    if (!g_loaded) {
        g_loaded = true;
        snprintf(g_gz, sizeof g_gz, "%s/data/clip-bpe/bpe_simple_vocab_16e6.txt.gz", dir);
        snprintf(g_vocab, sizeof g_vocab, "%s/data/clip-bpe/hf/vocab.json", dir);
        snprintf(g_merges, sizeof g_merges, "%s/data/clip-bpe/hf/merges.txt", dir);
        struct stat st;
        if (stat(g_gz, &st) == 0) {
            g_openai = ct_tokenizer_load_openai(g_gz);
            CHECK_MSG(g_openai != NULL, "load_openai: %s", ct_last_error());
            g_hf = ct_tokenizer_load_hf(g_vocab, g_merges);
            CHECK_MSG(g_hf != NULL, "load_hf: %s", ct_last_error());
        }
    }
    if (!g_openai || !g_hf) {
        struct stat st;
        if (stat(g_gz, &st) != 0) {
            ct_test_skip("../shared not found: no data/clip-bpe/bpe_simple_vocab_16e6.txt.gz");
        } else {
            CHECK_MSG(false, "the released tokenizer files did not load");
        }
        return false;
    }
    return true;
}

/* text as a printable C-ish literal (for failure messages). */
static const char *show(const char *s) {
    static char buf[256];
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && o + 8 < sizeof buf; p++) {
        if (*p >= 0x20 && *p < 0x7F && *p != '\\')
            buf[o++] = (char)*p;
        else
            o += (size_t)snprintf(buf + o, sizeof buf - o, "\\x%02x", *p);
    }
    buf[o] = 0;
    return buf;
}

static const char *tmp_path(const char *name) {
    static char buf[8][4096];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", ct_test_tmpdir(), name);
    return b;
}

static void write_raw(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK_MSG(f != NULL, "cannot create %s", path);
    if (!f) return;
    CHECK(fwrite(data, 1, n, f) == n);
    CHECK(fclose(f) == 0);
}

/* gzip-compress data into a malloc'ed buffer (zlib directly, not the code
 * under test). */
static unsigned char *gzip_bytes(const char *data, size_t n, size_t *out_n) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    CHECK(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    size_t cap = deflateBound(&zs, (uLong)n) + 64;
    unsigned char *out = malloc(cap);
    zs.next_in = (Bytef *)data;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    CHECK(deflate(&zs, Z_FINISH) == Z_STREAM_END);
    *out_n = zs.total_out;
    deflateEnd(&zs);
    return out;
}

static void write_gz(const char *path, const char *text) {
    size_t n;
    unsigned char *gz = gzip_bytes(text, strlen(text), &n);
    write_raw(path, gz, n);
    free(gz);
}

static bool err_has(const char *needle) {
    return strstr(ct_last_error(), needle) != NULL;
}

#define CHECK_ERR(needle) \
    CHECK_MSG(err_has(needle), "error \"%s\" does not mention \"%s\"", ct_last_error(), needle)

/* bytes_to_unicode() of simple_tokenizer.py, rewritten for the tests: the
 * UTF-8 of the symbol of byte b, and the bytes in vocabulary order. */
static void byte_symbol(int b, char out[3]) {
    bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    unsigned cp = (unsigned)b;
    if (!printable) {
        cp = 256;
        for (int x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) cp++;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = 0;
    }
}

static int vocab_order(int order[256]) {
    int k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int b = 0; b < 256; b++) {
            bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
            if (printable == (pass == 0)) order[k++] = b;
        }
    return k;
}

/* Append a JSON string literal. */
static void json_str(char **p, const char *s) {
    *(*p)++ = '"';
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') *(*p)++ = '\\';
        *(*p)++ = *s;
    }
    *(*p)++ = '"';
}

/* A small HF folder: the 512 byte symbols, then extra tokens, then the two
 * special tokens unless drop names one of all these to leave out. */
static void write_hf_vocab(const char *path, const char *const *extra, int n_extra,
                           const char *drop, const char *append_raw) {
    char *buf = malloc(1 << 16), *p = buf;
    int order[256], id = 0;
    vocab_order(order);
    *p++ = '{';
    for (int k = 0; k < 512 + n_extra + 2; k++) {
        char tok[64];
        if (k < 512) {
            byte_symbol(order[k % 256], tok);
            if (k >= 256) strcat(tok, "</w>");
        } else if (k < 512 + n_extra) {
            snprintf(tok, sizeof tok, "%s", extra[k - 512]);
        } else {
            snprintf(tok, sizeof tok, "%s", k == 512 + n_extra ? "<|startoftext|>"
                                                                : "<|endoftext|>");
        }
        if (drop && !strcmp(tok, drop)) {
            id++;
            continue;
        }
        if (p != buf + 1) *p++ = ',';
        json_str(&p, tok);
        p += sprintf(p, ": %d", id++);
    }
    if (append_raw) p += sprintf(p, "%s", append_raw);
    *p++ = '}';
    write_raw(path, buf, (size_t)(p - buf));
    free(buf);
}

/* ---- parity with simple_tokenizer.py ------------------------------------ */

static void check_fixtures(const ct_tokenizer *t, const char *which) {
    int64_t ids[4096], row[TREF_CONTEXT];
    int bad = 0;
    for (int c = 0; c < N_CASES && bad < 10; c++) {
        const tref_case *tc = &tref_cases[c];
        int n = -1;
        ct_status st = ct_tokenizer_encode(t, tc->text, ids, 4096, &n);
        bool ok = st == CT_OK && n == tc->n_ids;
        for (int i = 0; ok && i < n; i++) ok = ids[i] == tref_data[tc->ids_off + i];
        if (!ok) {
            bad++;
            int i = 0;
            while (i < n && i < tc->n_ids && ids[i] == tref_data[tc->ids_off + i]) i++;
            CHECK_MSG(false, "%s case %d \"%s\": %d ids (expected %d), first difference at %d: "
                      "got %lld expected %d (%s)", which, c, show(tc->text), n, tc->n_ids, i,
                      i < n ? (long long)ids[i] : -1LL,
                      i < tc->n_ids ? tref_data[tc->ids_off + i] : -1, ct_last_error());
            continue;
        }
        CHECK_OK(ct_tokenizer_tokenize(t, tc->text, TREF_CONTEXT, true, row));
        for (int i = 0; i < TREF_CONTEXT; i++) {
            int64_t want = i < tc->n_row ? tref_data[tc->row_off + i] : 0;
            if (row[i] != want) {
                bad++;
                CHECK_MSG(false, "%s case %d \"%s\": row[%d] = %lld, expected %lld", which, c,
                          show(tc->text), i, (long long)row[i], (long long)want);
                break;
            }
        }
        if (tc->n_ids + 2 > TREF_CONTEXT) {
            ct_status s2 = ct_tokenizer_tokenize(t, tc->text, TREF_CONTEXT, false, row);
            CHECK(s2 == CT_ERR_ARG);
            char want[64];
            snprintf(want, sizeof want, "encodes to %d tokens", tc->n_ids + 2);
            CHECK_ERR(want);
        }
    }
    CHECK_MSG(bad == 0, "%s: stopped after %d mismatching cases", which, bad);
}

static void test_fixture_openai(void) {
    if (!shared_tokenizers()) return;
    check_fixtures(g_openai, "openai");
    printf("  %d reference strings checked (openai .gz)\n", N_CASES);
}

static void test_fixture_hf(void) {
    if (!shared_tokenizers()) return;
    check_fixtures(g_hf, "hf");
    printf("  %d reference strings checked (hf vocab.json + merges.txt)\n", N_CASES);
}

/* The two loaders build the same vocabulary from the two formats. */
static void test_hf_matches_openai(void) {
    if (!shared_tokenizers()) return;
    const ct_tokenizer *ts[2] = {g_openai, g_hf};
    for (int k = 0; k < 2; k++) {
        CHECK(ct_tokenizer_vocab_size(ts[k]) == TREF_VOCAB_SIZE);
        CHECK(ct_tokenizer_sot(ts[k]) == TREF_SOT);
        CHECK(ct_tokenizer_eot(ts[k]) == TREF_EOT);
        for (size_t i = 0; i < sizeof tref_tokens / sizeof tref_tokens[0]; i++) {
            const char *s = ct_tokenizer_token_str(ts[k], tref_tokens[i].id);
            CHECK_MSG(s && !strcmp(s, tref_tokens[i].str), "token %d: \"%s\", expected \"%s\"",
                      tref_tokens[i].id, s ? show(s) : "(null)", tref_tokens[i].str);
        }
        CHECK(ct_tokenizer_token_str(ts[k], -1) == NULL);
        CHECK(ct_tokenizer_token_str(ts[k], TREF_VOCAB_SIZE) == NULL);
    }
    int diff = 0;
    for (int id = 0; id < TREF_VOCAB_SIZE; id++) {
        const char *a = ct_tokenizer_token_str(g_openai, id);
        const char *b = ct_tokenizer_token_str(g_hf, id);
        if (!a || !b || strcmp(a, b)) diff++;
    }
    CHECK_MSG(diff == 0, "%d ids have different strings in the two formats", diff);
}

/* ---- rows, truncation, capacities ---------------------------------------- */

static void test_tokenize_rows(void) {
    if (!shared_tokenizers()) return;
    const ct_tokenizer *t = g_openai;
    int64_t row[TREF_CONTEXT + 8];
    int64_t ids[256];
    int n;

    /* "a " * 75 is exactly 77 tokens with SOT/EOT; 76 is one too many */
    char text[400] = "";
    for (int i = 0; i < 75; i++) strcat(text, "a ");
    CHECK_OK(ct_tokenizer_encode(t, text, ids, 256, &n));
    CHECK(n == 75);
    CHECK_OK(ct_tokenizer_tokenize(t, text, 77, false, row));
    CHECK(row[0] == TREF_SOT && row[1] == ids[0] && row[75] == ids[74] && row[76] == TREF_EOT);
    strcat(text, "a ");
    CHECK(ct_tokenizer_tokenize(t, text, 77, false, row) == CT_ERR_ARG);
    CHECK_ERR("78 tokens");
    CHECK_ERR("context length 77");
    bool zero = true;
    for (int i = 0; i < 77; i++) zero &= row[i] == 0;
    CHECK_MSG(zero, "row not cleared after the too-long error");
    CHECK_OK(ct_tokenizer_tokenize(t, text, 77, true, row));
    CHECK(row[0] == TREF_SOT && row[75] == ids[0] && row[76] == TREF_EOT);

    /* small contexts: tokens[:ctx] with the last replaced by EOT */
    const char *s = "a photo of a dog.";
    CHECK_OK(ct_tokenizer_encode(t, s, ids, 256, &n));
    CHECK(n == 6);
    row[5] = 12345;
    CHECK_OK(ct_tokenizer_tokenize(t, s, 5, true, row));
    CHECK(row[0] == TREF_SOT && row[1] == ids[0] && row[2] == ids[1] && row[3] == ids[2] &&
          row[4] == TREF_EOT);
    CHECK(row[5] == 12345); /* nothing written past context_length */
    CHECK_OK(ct_tokenizer_tokenize(t, s, 2, true, row));
    CHECK(row[0] == TREF_SOT && row[1] == TREF_EOT);
    CHECK_OK(ct_tokenizer_tokenize(t, s, 1, true, row));
    CHECK(row[0] == TREF_EOT); /* Python: [SOT][:1], then [-1] = EOT */
    CHECK(ct_tokenizer_tokenize(t, s, 1, false, row) == CT_ERR_ARG);
    CHECK(ct_tokenizer_tokenize(t, s, 0, true, row) == CT_ERR_ARG);
    CHECK(ct_tokenizer_tokenize(t, s, -3, true, row) == CT_ERR_ARG);
    CHECK(ct_tokenizer_tokenize(t, NULL, 77, true, row) == CT_ERR_ARG);
    CHECK(ct_tokenizer_tokenize(NULL, s, 77, true, row) == CT_ERR_ARG);
    CHECK(ct_tokenizer_tokenize(t, s, 77, true, NULL) == CT_ERR_ARG);

    /* empty text: [SOT, EOT, 0...] */
    CHECK_OK(ct_tokenizer_tokenize(t, "", 77, false, row));
    CHECK(row[0] == TREF_SOT && row[1] == TREF_EOT && row[2] == 0 && row[76] == 0);
    CHECK_OK(ct_tokenizer_encode(t, " \t\n ", ids, 256, &n));
    CHECK(n == 0);
}

static void test_encode_capacity(void) {
    if (!shared_tokenizers()) return;
    const ct_tokenizer *t = g_openai;
    int64_t ids[8] = {0};
    int n = -1;
    const char *s = "a photo of a dog.";
    CHECK(ct_tokenizer_encode(t, s, NULL, 0, &n) == CT_ERR_ARG);
    CHECK(n == 6);
    CHECK_ERR("6 ids");
    ids[3] = -7;
    CHECK(ct_tokenizer_encode(t, s, ids, 3, &n) == CT_ERR_ARG);
    CHECK(n == 6);
    CHECK(ids[0] == 320 && ids[1] == 1125 && ids[2] == 539 && ids[3] == -7);
    CHECK_OK(ct_tokenizer_encode(t, s, ids, 6, &n));
    CHECK(n == 6 && ids[5] == 269);
    CHECK(ct_tokenizer_encode(t, s, ids, -1, &n) == CT_ERR_ARG);
    CHECK(ct_tokenizer_encode(t, s, ids, 8, NULL) == CT_ERR_ARG);
    CHECK(ct_tokenizer_encode(t, NULL, ids, 8, &n) == CT_ERR_ARG);
    CHECK(ct_tokenizer_encode(NULL, s, ids, 8, &n) == CT_ERR_ARG);
}

/* ---- decode -------------------------------------------------------------- */

static void test_decode(void) {
    if (!shared_tokenizers()) return;
    const ct_tokenizer *t = g_openai;
    char out[8192];
    for (size_t i = 0; i < sizeof tref_decodes / sizeof tref_decodes[0]; i++) {
        const tref_decode *d = &tref_decodes[i];
        CHECK_OK(ct_tokenizer_decode(t, d->ids, d->n, out, sizeof out));
        CHECK_MSG(!strcmp(out, d->text), "decode %zu: \"%s\"", i, show(out));
    }
    /* round trip on the ASCII references: encode(decode(ids)) == ids */
    int64_t ids[4096], again[4096];
    int checked = 0;
    for (int c = 0; c < N_CASES; c++) {
        const tref_case *tc = &tref_cases[c];
        bool ascii = true;
        for (const char *p = tc->text; *p; p++) ascii &= (unsigned char)*p < 0x80;
        if (!ascii || tc->n_ids > 4096) continue;
        int n, m;
        CHECK_OK(ct_tokenizer_encode(t, tc->text, ids, 4096, &n));
        CHECK_OK(ct_tokenizer_decode(t, ids, n, out, sizeof out));
        CHECK_OK(ct_tokenizer_encode(t, out, again, 4096, &m));
        bool same = m == n;
        for (int i = 0; same && i < n; i++) same = ids[i] == again[i];
        CHECK_MSG(same, "round trip of \"%s\" via \"%s\"", show(tc->text), out);
        checked++;
    }
    CHECK(checked > 1000);
    printf("  %d ASCII strings round-tripped\n", checked);

    int64_t bad_id = TREF_VOCAB_SIZE;
    CHECK(ct_tokenizer_decode(t, &bad_id, 1, out, sizeof out) == CT_ERR_ARG);
    CHECK_ERR("49408");
    int64_t two[2] = {320, 1125}; /* "a photo " */
    CHECK(ct_tokenizer_decode(t, two, 2, out, 8) == CT_ERR_ARG);
    CHECK_ERR("needs 9 bytes");
    CHECK_OK(ct_tokenizer_decode(t, two, 2, out, 9));
    CHECK(!strcmp(out, "a photo "));
    CHECK_OK(ct_tokenizer_decode(t, NULL, 0, out, 1));
    CHECK(out[0] == 0);
    CHECK(ct_tokenizer_decode(t, NULL, 0, NULL, 0) == CT_ERR_ARG);
}

/* ---- semantics on small hand-made vocabularies (no ../shared needed) ----- */

/* Merges chosen so that a lower-ranked pair ("ab a") only appears after a
 * pass of a higher-ranked one ("a b"): Python merges every "a b" of the pass
 * before looking again. Expected ids were printed by simple_tokenizer.py on
 * this file: ababx [513, 513, 343], aaaaa [514, 514, 320], hello [518],
 * abax [512, 343], hell [515, 75, 331], aab [514, 321]; 522 ids (id 519 is
 * "", from the final newline). */
static const char k_small_merges[] =
    "#version: 0.2\nab a\na b\na a\nh e\nl l\nhe ll\nhell o</w>\n";
static const char *const k_small_extra[] = {"aba", "ab", "aa", "he", "ll", "hell", "hello</w>"};

/* OpenAI's format: the trailing newline of the file adds an empty token
 * (519) before the special ones, as in Python; the HF vocab has none. */
static void check_small(const ct_tokenizer *t, const char *which, int sot) {
    static const struct {
        const char *text;
        int n;
        int64_t ids[4];
    } cases[] = {
        {"ababx", 3, {513, 513, 343}}, {"aaaaa", 3, {514, 514, 320}}, {"hello", 1, {518}},
        {"abax", 2, {512, 343}},       {"hell", 3, {515, 75, 331}},   {"aab", 2, {514, 321}},
        {"HELLO hello", 2, {518, 518}},
    };
    CHECK(ct_tokenizer_vocab_size(t) == sot + 2);
    CHECK(ct_tokenizer_sot(t) == sot && ct_tokenizer_eot(t) == sot + 1);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t ids[16];
        int n;
        CHECK_OK(ct_tokenizer_encode(t, cases[c].text, ids, 16, &n));
        bool ok = n == cases[c].n;
        for (int i = 0; ok && i < n; i++) ok = ids[i] == cases[c].ids[i];
        CHECK_MSG(ok, "%s: \"%s\" -> %d ids [%lld, ...]", which, cases[c].text, n,
                  n ? (long long)ids[0] : -1LL);
    }
}

static ct_tokenizer *small_openai(void) {
    const char *gz = tmp_path("small.txt.gz");
    write_gz(gz, k_small_merges);
    ct_tokenizer *t = ct_tokenizer_load_openai(gz);
    CHECK_MSG(t != NULL, "%s", ct_last_error());
    return t;
}

static void test_small_vocab(void) {
    ct_tokenizer *t = small_openai();
    if (t) {
        check_small(t, "openai", 520);
        const char *e = ct_tokenizer_token_str(t, 519);
        CHECK(e && !strcmp(e, ""));
    }
    ct_tokenizer_free(t);

    const char *v = tmp_path("small_vocab.json"), *m = tmp_path("small_merges.txt");
    write_hf_vocab(v, k_small_extra, 7, NULL, NULL);
    write_raw(m, k_small_merges, strlen(k_small_merges));
    t = ct_tokenizer_load_hf(v, m);
    CHECK_MSG(t != NULL, "%s", ct_last_error());
    if (t) check_small(t, "hf", 519);
    ct_tokenizer_free(t);

    /* CRLF line ends and blank lines around the text (HF reads in text mode
     * and strips the file first) */
    const char *crlf = "\r\n\n#version: 0.2\r\nab a\r\na b\r\na a\r\nh e\r\nl l\r\nhe ll\r\n"
                       "hell o</w>\r\n\r\n";
    write_raw(m, crlf, strlen(crlf));
    t = ct_tokenizer_load_hf(v, m);
    CHECK_MSG(t != NULL, "%s", ct_last_error());
    if (t) check_small(t, "hf crlf", 519);
    ct_tokenizer_free(t);

    /* OpenAI's file: lines after the first 48,894 merges are never read */
    const char *gz = tmp_path("multi.txt.gz");
    size_t n1, n2;
    unsigned char *a = gzip_bytes(k_small_merges, 30, &n1);
    unsigned char *b = gzip_bytes(k_small_merges + 30, strlen(k_small_merges) - 30, &n2);
    unsigned char *both = malloc(n1 + n2 + 16);
    memcpy(both, a, n1);
    memcpy(both + n1, b, n2);
    memset(both + n1 + n2, 0, 16); /* zero padding, which gzip tolerates */
    write_raw(gz, both, n1 + n2 + 16);
    t = ct_tokenizer_load_openai(gz);
    CHECK_MSG(t != NULL, "multi-member gzip: %s", ct_last_error());
    if (t) check_small(t, "openai multi-member", 520);
    ct_tokenizer_free(t);
    free(a);
    free(b);
    free(both);
}

/* Invalid UTF-8 is read as Python's bytes.decode("utf-8", "replace"). */
static void test_invalid_utf8(void) {
    ct_tokenizer *t = small_openai();
    if (!t) return;
    static const char *const pairs[][2] = {
        {"a\xff" "b", "a\xef\xbf\xbd" "b"},
        {"\xe2\x82", "\xef\xbf\xbd"},                       /* truncated: one U+FFFD */
        {"\xe2\x82x", "\xef\xbf\xbdx"},
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate: three */
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xf0\x9f\x98x", "\xef\xbf\xbdx"},
        {"caf\xe9", "caf\xef\xbf\xbd"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        int64_t a[64], b[64];
        int na, nb;
        CHECK_OK(ct_tokenizer_encode(t, pairs[i][0], a, 64, &na));
        CHECK_OK(ct_tokenizer_encode(t, pairs[i][1], b, 64, &nb));
        bool same = na == nb;
        for (int k = 0; same && k < na; k++) same = a[k] == b[k];
        CHECK_MSG(same, "\"%s\" is not read as its replacement", show(pairs[i][0]));
    }
    ct_tokenizer_free(t);
}

/* ---- malformed files ------------------------------------------------------ */

static void expect_openai_error(const char *name, const char *text, const char *needle) {
    const char *gz = tmp_path(name);
    write_gz(gz, text);
    ct_clear_error();
    ct_tokenizer *t = ct_tokenizer_load_openai(gz);
    CHECK_MSG(t == NULL, "%s loaded", name);
    ct_tokenizer_free(t);
    CHECK_ERR(name);
    CHECK_ERR(needle);
}

static void test_malformed_openai(void) {
    expect_openai_error("one.gz", "#version: 0.2\nh e\nl\nhe ll\n", "line 3: expected two");
    expect_openai_error("three.gz", "#version: 0.2\nh e\nl l x\n", "line 3: expected two "
                        "symbols separated by a space, found 3");
    expect_openai_error("blank.gz", "#version: 0.2\nh e\n\nl l\n", "line 3");
    expect_openai_error("unknown.gz", "#version: 0.2\nh e\nzz q\n",
                        "line 3: symbol \"zz\" is neither a byte symbol nor a merge result");
    expect_openai_error("dup.gz", "#version: 0.2\nh e\nl l\nh e\n",
                        "line 4: merge result \"he\" repeats token 512");
    expect_openai_error("utf8.gz", "#version: 0.2\nh e\nl \xff\n", "line 3: invalid UTF-8");

    const char *gz = tmp_path("small_ok.gz");
    write_gz(gz, k_small_merges);
    char *data;
    size_t n;
    CHECK_OK(ct_read_file(gz, &data, &n));
    /* truncated: the stream ends before its end marker */
    const char *cut = tmp_path("cut.gz");
    write_raw(cut, data, n - 12);
    CHECK(ct_tokenizer_load_openai(cut) == NULL);
    CHECK_ERR("cut.gz");
    CHECK_ERR("truncated");
    /* a flipped byte in the CRC */
    data[n - 6] ^= 0x55;
    const char *crc = tmp_path("crc.gz");
    write_raw(crc, data, n);
    CHECK(ct_tokenizer_load_openai(crc) == NULL);
    CHECK_ERR("crc.gz: corrupt gzip data");
    data[n - 6] ^= 0x55;
    /* garbage after the stream */
    const char *tail = tmp_path("tail.gz");
    char *more = malloc(n + 3);
    memcpy(more, data, n);
    memcpy(more + n, "xyz", 3);
    write_raw(tail, more, n + 3);
    CHECK(ct_tokenizer_load_openai(tail) == NULL);
    CHECK_ERR("unexpected data after the gzip stream");
    free(more);
    free(data);
    /* not gzip at all */
    const char *plain = tmp_path("plain.txt");
    write_raw(plain, k_small_merges, strlen(k_small_merges));
    CHECK(ct_tokenizer_load_openai(plain) == NULL);
    CHECK_ERR("not a gzip file");
    CHECK(ct_tokenizer_load_openai(tmp_path("missing.gz")) == NULL);
    CHECK_ERR("missing.gz");
    CHECK(ct_tokenizer_load_openai(NULL) == NULL);
}

static void expect_hf_error(const char *vocab_raw, const char *merges, const char *needle) {
    const char *v = tmp_path("bad_vocab.json"), *m = tmp_path("bad_merges.txt");
    if (vocab_raw)
        write_raw(v, vocab_raw, strlen(vocab_raw));
    else
        write_hf_vocab(v, k_small_extra, 7, NULL, NULL);
    write_raw(m, merges, strlen(merges));
    ct_clear_error();
    ct_tokenizer *t = ct_tokenizer_load_hf(v, m);
    CHECK_MSG(t == NULL, "loaded despite: %s", needle);
    ct_tokenizer_free(t);
    CHECK_ERR(needle);
}

static void test_malformed_hf(void) {
    /* merges */
    expect_hf_error(NULL, "#version: 0.2\nab a\na\n", "bad_merges.txt: line 3: expected two "
                    "symbols separated by a space, found 1 (\"a\")");
    expect_hf_error(NULL, "#version: 0.2\nab a\na b c\n", "bad_merges.txt: line 3");
    expect_hf_error(NULL, "\n\n#version: 0.2\nab a\na b\nq\n", "bad_merges.txt: line 6");
    expect_hf_error(NULL, "#version: 0.2\nab a\nb c\n",
                    "bad_merges.txt: line 3: merge result \"bc\" is not in the vocabulary");
    expect_hf_error(NULL, "#version: 0.2\nab a\nbc d\n", "bad_merges.txt: line 3: symbol \"bc\"");
    expect_hf_error(NULL, "#version: 0.2\nab \xc3\n", "bad_merges.txt: line 2: invalid UTF-8");

    /* vocab.json */
    const char *ok = "#version: 0.2\nab a\n";
    expect_hf_error("{\"a\": 1,", ok, "bad_vocab.json: JSON parse error");
    expect_hf_error("[1, 2]", ok, "bad_vocab.json: expected a JSON object");
    expect_hf_error("{}", ok, "bad_vocab.json: empty vocabulary");
    expect_hf_error("{\"a\": 1.5}", ok, "bad_vocab.json: token \"a\": id must be an integer");
    expect_hf_error("{\"a\": \"1\"}", ok, "token \"a\": id must be an integer");
    expect_hf_error("{\"a\": -1}", ok, "token \"a\": id must be an integer");
    expect_hf_error("{\"a\": 1e12}", ok, "token \"a\": id must be an integer");
    expect_hf_error("{\"a\": 0, \"b\": 0}", ok, "share id 0");
    expect_hf_error("{\"a\": 0, \"a\": 1}", ok, "token \"a\" appears twice (ids 0 and 1)");
    expect_hf_error("{\"a\": 0, \"b\": 5000}", ok, "id 5000 is too large");
    expect_hf_error("{\"a\": 0}", ok,
                    "bad_vocab.json: byte symbol \"\xc4\x80\" (byte 0x00) is missing");

    const char *v = tmp_path("bad_vocab.json"), *m = tmp_path("bad_merges.txt");
    write_raw(m, k_small_merges, strlen(k_small_merges));
    write_hf_vocab(v, k_small_extra, 7, "a</w>", NULL);
    CHECK(ct_tokenizer_load_hf(v, m) == NULL);
    CHECK_ERR("byte symbol \"a</w>\" (byte 0x61) is missing");
    write_hf_vocab(v, k_small_extra, 7, "<|endoftext|>", NULL);
    CHECK(ct_tokenizer_load_hf(v, m) == NULL);
    CHECK_ERR("special token \"<|endoftext|>\" is missing");
    write_hf_vocab(v, k_small_extra, 7, "ll", NULL); /* a merge result */
    CHECK(ct_tokenizer_load_hf(v, m) == NULL);
    CHECK_ERR("bad_merges.txt: line 6: merge result \"ll\" is not in the vocabulary");
    write_hf_vocab(v, k_small_extra, 7, NULL, ", \"zz\": 600");
    ct_tokenizer *t = ct_tokenizer_load_hf(v, m);
    CHECK_MSG(t != NULL, "unused ids and extra tokens are allowed: %s", ct_last_error());
    if (t) {
        CHECK(ct_tokenizer_vocab_size(t) == 601);
        CHECK(ct_tokenizer_token_str(t, 550) == NULL);
        CHECK(!strcmp(ct_tokenizer_token_str(t, 600), "zz"));
        int64_t id = 550;
        char out[16];
        CHECK(ct_tokenizer_decode(t, &id, 1, out, sizeof out) == CT_ERR_ARG);
    }
    ct_tokenizer_free(t);
    CHECK(ct_tokenizer_load_hf(tmp_path("nope.json"), m) == NULL);
    CHECK_ERR("nope.json");
    CHECK(ct_tokenizer_load_hf(v, tmp_path("nope.txt")) == NULL);
    CHECK_ERR("nope.txt");
    CHECK(ct_tokenizer_load_hf(NULL, m) == NULL);

    ct_tokenizer_free(NULL);
    CHECK(ct_tokenizer_vocab_size(NULL) == 0);
    CHECK(ct_tokenizer_token_str(NULL, 0) == NULL);
}

/* The released .gz cut in half. */
static void test_truncated_release(void) {
    if (!shared_tokenizers()) return;
    char *data;
    size_t n;
    CHECK_OK(ct_read_file(g_gz, &data, &n));
    const char *cut = tmp_path("half.txt.gz");
    write_raw(cut, data, n / 2);
    free(data);
    CHECK(ct_tokenizer_load_openai(cut) == NULL);
    CHECK_ERR("half.txt.gz: truncated gzip data");
}

/* ---- concurrency and speed ----------------------------------------------- */

typedef struct worker {
    const ct_tokenizer *t;
    int first, bad;
} worker;

static void *work(void *arg) {
    worker *w = arg;
    int64_t row[TREF_CONTEXT];
    for (int rep = 0; rep < 3; rep++)
        for (int c = w->first; c < N_CASES; c += 2) {
            const tref_case *tc = &tref_cases[c];
            if (ct_tokenizer_tokenize(w->t, tc->text, TREF_CONTEXT, true, row) != CT_OK) {
                w->bad++;
                continue;
            }
            for (int i = 0; i < tc->n_row; i++) w->bad += row[i] != tref_data[tc->row_off + i];
        }
    return NULL;
}

static void test_threads(void) {
    if (!shared_tokenizers()) return;
    pthread_t th[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){i < 2 ? g_openai : g_hf, i % 2, 0};
        CHECK(pthread_create(&th[i], NULL, work, &w[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_MSG(w[i].bad == 0, "thread %d: %d wrong values", i, w[i].bad);
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void test_throughput(void) {
    if (!shared_tokenizers()) return;
    enum { N = 10000 };
    int64_t row[TREF_CONTEXT];
    int64_t sum = 0;
    double t0 = now();
    for (int i = 0; i < N; i++) {
        const char *s = tref_cases[i % N_CASES].text;
        CHECK_OK(ct_tokenizer_tokenize(g_openai, s, TREF_CONTEXT, true, row));
        sum += row[1];
    }
    double dt = now() - t0;
    printf("  tokenize: %d reference strings in %.3f s (%.1f us each; checksum %lld)\n", N, dt,
           1e6 * dt / N, (long long)sum);
    char prompt[256];
    t0 = now();
    for (int i = 0; i < N; i++) {
        const char *cls = tref_cases[i % N_CASES].text;
        size_t skip = (size_t)(i % 7);
        snprintf(prompt, sizeof prompt, "a photo of a %s.", strlen(cls) > skip ? cls + skip : cls);
        CHECK_OK(ct_tokenizer_tokenize(g_openai, prompt, TREF_CONTEXT, true, row));
    }
    dt = now() - t0;
    printf("  tokenize: %d CoOp-style prompts in %.3f s\n", N, dt);
    t0 = now();
    ct_tokenizer *t = ct_tokenizer_load_openai(g_gz);
    printf("  load_openai: %.3f s\n", now() - t0);
    ct_tokenizer_free(t);
}

/* Texts with <|startoftext|> / <|endoftext|> in them (any case, anywhere;
 * tests/fixtures/special_tokens_ref.h): ids and clip.tokenize rows with
 * OpenAI's full vocabulary, both loaders. test_special_tokens.c checks the
 * same fixture everywhere with the subset vocabulary. */
static void test_special_tokens(void) {
    if (!shared_tokenizers()) return;
    int n_cases = (int)(sizeof spt_cases / sizeof spt_cases[0]);
    int64_t ids[SPT_CONTEXT * 4], row[SPT_CONTEXT];
    int bad = 0;
    for (int l = 0; l < 2; l++) {
        const ct_tokenizer *t = l ? g_hf : g_openai;
        CHECK(ct_tokenizer_sot(t) == SPT_SOT && ct_tokenizer_eot(t) == SPT_EOT);
        for (int c = 0; c < n_cases; c++) {
            const spt_case *k = &spt_cases[c];
            int n = -1;
            ct_status st = ct_tokenizer_encode(t, k->text, ids, SPT_CONTEXT * 4, &n);
            bool ok = st == CT_OK && n == k->n_ids;
            for (int i = 0; ok && i < n; i++) ok = ids[i] == spt_data[k->ids_off + i];
            if (ok) {
                st = ct_tokenizer_tokenize(t, k->text, SPT_CONTEXT, true, row);
                ok = st == CT_OK;
                for (int i = 0; ok && i < SPT_CONTEXT; i++)
                    ok = row[i] == (i < k->n_row ? spt_data[k->row_off + i] : 0);
            }
            if (ok)
                ok = (ct_tokenizer_tokenize(t, k->text, SPT_CONTEXT, false, row) == CT_OK) ==
                     !k->too_long;
            if (!ok && bad++ < 5)
                CHECK_MSG(false, "%s: \"%s\" tokenizes differently from OpenAI's",
                          l ? "hf" : "openai", show(k->text));
        }
    }
    CHECK_MSG(bad == 0, "%d of %d texts differ", bad, 2 * n_cases);
    printf("  %d texts with special-token strings checked (both loaders)\n", n_cases);
}

int main(void) {
    RUN(test_small_vocab);
    RUN(test_invalid_utf8);
    RUN(test_malformed_openai);
    RUN(test_malformed_hf);
    RUN(test_fixture_openai);
    RUN(test_fixture_hf);
    RUN(test_hf_matches_openai);
    RUN(test_tokenize_rows);
    RUN(test_special_tokens);
    RUN(test_encode_capacity);
    RUN(test_decode);
    RUN(test_truncated_release);
    RUN(test_threads);
    RUN(test_throughput);
    ct_tokenizer_free(g_openai);
    ct_tokenizer_free(g_hf);
    return ct_test_summary();
}
