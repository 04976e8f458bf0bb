/* BPE vocabulary training (ct_bpe_train): byte-identical vocab.json and
 * merges.txt against the independent Python trainer (tools/ref/gen_bpe_ref.py)
 * on the corpora in tests/fixtures/bpe, the trained folder loading with
 * ct_tokenizer_load_hf, every training text encoding and decoding back to its
 * pieces, independence from text order, bad arguments and unwritable output,
 * and the speed on a larger synthetic corpus. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/json.h"
#include "cliptune.h"
#include "harness.h"
#include "model/tokenizer.h"

#define FIX CT_SOURCE_DIR "/tests/fixtures/bpe"

/* One text per line, lines of only ASCII blanks skipped (as the generator's
 * bytes.strip()). */
typedef struct corpus {
    char *text;
    char **lines;
    int64_t n;
} corpus;

static bool corpus_read(const char *path, corpus *c) {
    memset(c, 0, sizeof *c);
    size_t len;
    if (ct_read_file(path, &c->text, &len) != CT_OK) {
        CHECK_MSG(false, "read %s: %s", path, ct_last_error());
        return false;
    }
    c->lines = malloc((len + 1) * sizeof *c->lines);
    for (char *p = c->text; *p;) {
        char *e = strchr(p, '\n');
        if (e) *e = 0;
        if (strspn(p, " \t\r\v\f") != strlen(p)) c->lines[c->n++] = p;
        if (!e) break;
        p = e + 1;
    }
    return true;
}

static void corpus_free(corpus *c) {
    free(c->lines);
    free(c->text);
}

static const char *tmp_path(const char *name) {
    static char buf[8][4096];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", ct_test_tmpdir(), name);
    return b;
}

/* Files a and b are equal; else report the first differing line. */
static void check_same_file(const char *got, const char *want) {
    char *g = NULL, *w = NULL;
    size_t gn = 0, wn = 0;
    CHECK_OK(ct_read_file(got, &g, &gn));
    CHECK_OK(ct_read_file(want, &w, &wn));
    if (g && w && (gn != wn || memcmp(g, w, gn))) {
        size_t i = 0, line = 1, ls = 0;
        while (i < gn && i < wn && g[i] == w[i]) {
            if (g[i] == '\n') {
                line++;
                ls = i + 1;
            }
            i++;
        }
        /* vocab.json is one line: show the place, not the line */
        size_t from = i - ls > 60 ? i - 60 : ls;
        CHECK_MSG(false, "%s differs from %s at line %zu byte %zu: got \"%.80s\" want \"%.80s\"",
                  got, want, line, i, g + from, w + from);
    }
    free(g);
    free(w);
}

static const struct {
    const char *name, *corpus;
    int vocab_size, min_frequency;
    int want_vocab, want_merges; /* what the generator printed */
    bool stopped_early;
} CONFIGS[] = {
    {"v900_f1", "captions.txt", 900, 1, 900, 386, false},
    {"full_f3", "captions.txt", 49408, 3, 748, 234, true},
    {"words_f2", "words.txt", 49408, 2, 935, 421, true},
};
#define N_CONFIGS ((int)(sizeof CONFIGS / sizeof CONFIGS[0]))

static void test_matches_reference(void) {
    for (int k = 0; k < N_CONFIGS; k++) {
        corpus c;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", FIX, CONFIGS[k].corpus);
        if (!corpus_read(path, &c)) return;
        const char *out = tmp_path(CONFIGS[k].name);
        ct_bpe_stats st;
        CHECK_OK(ct_bpe_train((const char *const *)c.lines, c.n, CONFIGS[k].vocab_size,
                              CONFIGS[k].min_frequency, out, &st));
        CHECK_MSG(st.vocab_size == CONFIGS[k].want_vocab && st.n_merges == CONFIGS[k].want_merges &&
                      st.stopped_early == CONFIGS[k].stopped_early,
                  "%s: vocab %d merges %d early %d, want %d %d %d", CONFIGS[k].name, st.vocab_size,
                  st.n_merges, st.stopped_early, CONFIGS[k].want_vocab, CONFIGS[k].want_merges,
                  CONFIGS[k].stopped_early);
        const char *files[2] = {"vocab.json", "merges.txt"};
        for (int f = 0; f < 2; f++) {
            char got[4096], want[4096];
            snprintf(got, sizeof got, "%s/%s", out, files[f]);
            snprintf(want, sizeof want, "%s/%s/%s", FIX, CONFIGS[k].name, files[f]);
            check_same_file(got, want);
        }
        corpus_free(&c);
    }
}

/* decode(encode(text)) is each piece followed by a space ("</w>"), the
 * special-token literals as they are. */
typedef struct expect {
    char *s;
    size_t n, cap;
} expect;

static ct_status expect_piece(void *ctx, const uint8_t *bytes, size_t n, int kind) {
    expect *e = ctx;
    if (e->n + n + 2 > e->cap) {
        e->cap = 2 * (e->n + n + 2);
        e->s = realloc(e->s, e->cap);
    }
    memcpy(e->s + e->n, bytes, n);
    e->n += n;
    if (kind == CT_TOK_WORD) e->s[e->n++] = ' ';
    e->s[e->n] = 0;
    return CT_OK;
}

static void test_loads_and_round_trips(void) {
    for (int k = 0; k < N_CONFIGS; k++) {
        corpus c;
        char path[4096], vocab[4096], merges[4096];
        snprintf(path, sizeof path, "%s/%s", FIX, CONFIGS[k].corpus);
        if (!corpus_read(path, &c)) return;
        const char *out = tmp_path(CONFIGS[k].name);
        CHECK_OK(ct_bpe_train((const char *const *)c.lines, c.n, CONFIGS[k].vocab_size,
                              CONFIGS[k].min_frequency, out, NULL));
        snprintf(vocab, sizeof vocab, "%s/vocab.json", out);
        snprintf(merges, sizeof merges, "%s/merges.txt", out);
        ct_tokenizer *t = ct_tokenizer_load_hf(vocab, merges);
        CHECK_MSG(t != NULL, "%s: load_hf: %s", CONFIGS[k].name, ct_last_error());
        if (!t) {
            corpus_free(&c);
            continue;
        }
        int V = CONFIGS[k].want_vocab;
        CHECK(ct_tokenizer_vocab_size(t) == V);
        CHECK(ct_tokenizer_sot(t) == V - 2 && ct_tokenizer_eot(t) == V - 1);
        CHECK(!strcmp(ct_tokenizer_token_str(t, 0), "!"));
        CHECK(!strcmp(ct_tokenizer_token_str(t, 256), "!</w>"));
        int64_t ids[4096];
        char dec[16384];
        int64_t n_ids = 0, n_bytes = 0, bad = 0;
        for (int64_t i = 0; i < c.n; i++) {
            int n;
            expect e = {0};
            CHECK_OK(ct_tok_split(c.lines[i], expect_piece, &e));
            CHECK_OK(ct_tokenizer_encode(t, c.lines[i], ids, 4096, &n));
            CHECK_OK(ct_tokenizer_decode(t, ids, n, dec, sizeof dec));
            if (strcmp(dec, e.s ? e.s : "") && bad++ < 5)
                CHECK_MSG(false, "%s: text %lld \"%s\" decodes to \"%s\", want \"%s\"",
                          CONFIGS[k].name, (long long)i, c.lines[i], dec, e.s ? e.s : "");
            n_ids += n;
            n_bytes += (int64_t)e.n;
            free(e.s);
        }
        /* the vocabulary was fitted to this text: far fewer ids than bytes */
        CHECK_MSG(n_ids * 2 < n_bytes, "%s: %lld ids for %lld bytes", CONFIGS[k].name,
                  (long long)n_ids, (long long)n_bytes);
        ct_tokenizer_free(t);
        /* the two config files are JSON with CLIPTokenizer's fields */
        snprintf(path, sizeof path, "%s/tokenizer_config.json", out);
        cJSON *j = ct_json_load(path);
        const char *cls = NULL, *eos = NULL;
        CHECK_OK(ct_json_get_string(j, "tokenizer_class", &cls, path));
        CHECK(cls && !strcmp(cls, "CLIPTokenizer"));
        cJSON_Delete(j);
        snprintf(path, sizeof path, "%s/special_tokens_map.json", out);
        j = ct_json_load(path);
        CHECK_OK(ct_json_get_string(j, "eos_token", &eos, path));
        CHECK(eos && !strcmp(eos, "<|endoftext|>"));
        cJSON_Delete(j);
        corpus_free(&c);
    }
}

static void test_order_independent(void) {
    corpus c;
    if (!corpus_read(FIX "/captions.txt", &c)) return;
    for (int64_t i = 0; i < c.n / 2; i++) { /* reverse */
        char *x = c.lines[i];
        c.lines[i] = c.lines[c.n - 1 - i];
        c.lines[c.n - 1 - i] = x;
    }
    const char *out = tmp_path("reversed");
    CHECK_OK(ct_bpe_train((const char *const *)c.lines, c.n, 900, 1, out, NULL));
    check_same_file(tmp_path("reversed/vocab.json"), FIX "/v900_f1/vocab.json");
    check_same_file(tmp_path("reversed/merges.txt"), FIX "/v900_f1/merges.txt");
    corpus_free(&c);
}

static void check_fails(ct_status st, ct_status want, const char *needle, const char *what) {
    CHECK_MSG(st == want, "%s: status %s, want %s (%s)", what, ct_status_str(st),
              ct_status_str(want), ct_last_error());
    CHECK_MSG(strstr(ct_last_error(), needle) != NULL, "%s: message \"%s\" lacks \"%s\"", what,
              ct_last_error(), needle);
}

static void test_errors(void) {
    const char *texts[] = {"a photo of a dog", "a photo of a cat"};
    const char *out = tmp_path("err");
    struct stat sb;
    check_fails(ct_bpe_train(texts, 0, 1000, 2, out, NULL), CT_ERR_ARG, "no texts", "empty");
    check_fails(ct_bpe_train(texts, 2, 513, 2, out, NULL), CT_ERR_ARG, "vocab_size 513",
                "vocab too small");
    check_fails(ct_bpe_train(texts, 2, 49409, 2, out, NULL), CT_ERR_ARG, "vocab_size 49409",
                "vocab too large");
    check_fails(ct_bpe_train(texts, 2, 1000, 0, out, NULL), CT_ERR_ARG, "min_frequency 0",
                "min_frequency");
    check_fails(ct_bpe_train(NULL, 2, 1000, 2, out, NULL), CT_ERR_ARG, "NULL", "NULL texts");
    const char *with_null[] = {"fine", NULL};
    check_fails(ct_bpe_train(with_null, 2, 1000, 2, out, NULL), CT_ERR_ARG, "texts[1]",
                "NULL entry");
    const char *blank[] = {"   ", "\t\n", "<|endoftext|>", "&#1;"};
    check_fails(ct_bpe_train(blank, 4, 1000, 2, out, NULL), CT_ERR_ARG, "hold no words",
                "no words");
    CHECK_MSG(stat(out, &sb) != 0, "a failed call created %s", out);

    /* out_dir below a regular file: nothing can be created there */
    const char *file = tmp_path("plainfile");
    CHECK_OK(ct_write_file_atomic(file, "x", 1));
    char below[4096];
    snprintf(below, sizeof below, "%s/tok", file);
    ct_status st = ct_bpe_train(texts, 2, 1000, 2, below, NULL);
    check_fails(st, CT_ERR_IO, "plainfile", "unwritable out_dir");

    /* min_frequency above every count: only the byte symbols, still loadable */
    ct_bpe_stats s;
    CHECK_OK(ct_bpe_train(texts, 2, 1000, 100, tmp_path("bytes_only"), &s));
    CHECK(s.vocab_size == 514 && s.n_merges == 0 && s.stopped_early);
    CHECK(s.n_words == 10 && s.n_distinct_words == 5);
    ct_tokenizer *t = ct_tokenizer_load_hf(tmp_path("bytes_only/vocab.json"),
                                           tmp_path("bytes_only/merges.txt"));
    CHECK_MSG(t != NULL, "bytes-only vocabulary: %s", ct_last_error());
    int64_t ids[64];
    int n = 0;
    if (t) CHECK_OK(ct_tokenizer_encode(t, "dog", ids, 64, &n));
    CHECK(n == 3);
    ct_tokenizer_free(t);
}

/* A caption-like synthetic corpus: a few thousand words, Zipf-distributed. */
static void test_speed(void) {
    const int n_caps = 50000, n_pool = 6000;
    uint64_t r = 12345;
#define RNG() (r = r * 6364136223846793005ull + 1442695040888963407ull, (uint32_t)(r >> 33))
    char **pool = malloc(n_pool * sizeof *pool);
    for (int i = 0; i < n_pool; i++) {
        int len = 2 + (int)(RNG() % 9);
        pool[i] = malloc((size_t)len + 1);
        for (int k = 0; k < len; k++)
            pool[i][k] = "etaoinshrdlucmfwypvbgkjqxz"[RNG() % (k ? 26 : 18)];
        pool[i][len] = 0;
    }
    char **caps = malloc(n_caps * sizeof *caps);
    for (int i = 0; i < n_caps; i++) {
        char line[256];
        size_t o = 0;
        int words = 5 + (int)(RNG() % 8);
        for (int w = 0; w < words; w++) {
            /* rank ~ pool^u: roughly Zipf */
            double u = (RNG() % 100000) / 100000.0;
            int k = (int)(exp(u * log((double)n_pool))) - 1;
            o += (size_t)snprintf(line + o, sizeof line - o, w ? " %s" : "%s", pool[k]);
        }
        if (RNG() % 3 == 0) o += (size_t)snprintf(line + o, sizeof line - o, ", %u.", RNG() % 100);
        caps[i] = strdup(line);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ct_bpe_stats st;
    CHECK_OK(ct_bpe_train((const char *const *)caps, n_caps, 8000, 2, tmp_path("speed"), &st));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("  bpe-train: %d captions, %lld words (%lld distinct) -> %d ids, %d merges in %.2f s\n",
           n_caps, (long long)st.n_words, (long long)st.n_distinct_words, st.vocab_size,
           st.n_merges, sec);
    CHECK(st.vocab_size == 8000);
    ct_tokenizer *t = ct_tokenizer_load_hf(tmp_path("speed/vocab.json"),
                                           tmp_path("speed/merges.txt"));
    CHECK_MSG(t != NULL, "load: %s", ct_last_error());
    ct_tokenizer_free(t);
    for (int i = 0; i < n_caps; i++) free(caps[i]);
    for (int i = 0; i < n_pool; i++) free(pool[i]);
    free(caps);
    free(pool);
#undef RNG
}

int main(void) {
    RUN(test_matches_reference);
    RUN(test_loads_and_round_trips);
    RUN(test_order_independent);
    RUN(test_errors);
    RUN(test_speed);
    return ct_test_summary();
}
