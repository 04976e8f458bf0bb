/* Texts that contain CLIP's special-token strings, <|startoftext|> and
 * <|endoftext|> (any case, anywhere): ids, clip.tokenize rows, decode and the
 * EOT positions that pool them, as OpenAI's tokenizer and model give them
 * (tests/fixtures/special_tokens_ref.h, tools/ref/gen_special_tokens.py).
 * Runs everywhere: the vocabulary is tests/fixtures/bpe/clip_subset, which
 * covers these texts with OpenAI's ids (test_tokenizer.c checks the same
 * fixture against OpenAI's full vocabulary where it is available). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cliptune.h"
#include "harness.h"
#include "fixtures/special_tokens_ref.h"

#define N_CASES ((int)(sizeof spt_cases / sizeof spt_cases[0]))

static ct_tokenizer *g_tok;

static ct_tokenizer *subset_tokenizer(void) {
    if (!g_tok) {
        char v[4096], m[4096];
        snprintf(v, sizeof v, "%s/vocab.json", ct_test_clip_bpe());
        snprintf(m, sizeof m, "%s/merges.txt", ct_test_clip_bpe());
        g_tok = ct_tokenizer_load_hf(v, m);
        CHECK_MSG(g_tok != NULL, "load_hf(%s): %s", ct_test_clip_bpe(), ct_last_error());
    }
    return g_tok;
}

/* The first 60 bytes of s, printable. */
static const char *show(const char *s) {
    static char buf[256];
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && o < 60; p++) {
        if (*p >= 0x20 && *p < 0x7F && *p != '\\')
            buf[o++] = (char)*p;
        else
            o += (size_t)snprintf(buf + o, sizeof buf - o, "\\x%02x", *p);
    }
    if (strlen(s) > o) o += (size_t)snprintf(buf + o, sizeof buf - o, "...");
    buf[o] = 0;
    return buf;
}

static void test_vocabulary(void) {
    ct_tokenizer *t = subset_tokenizer();
    if (!t) return;
    CHECK(ct_tokenizer_sot(t) == SPT_SOT && ct_tokenizer_eot(t) == SPT_EOT);
    CHECK(!strcmp(ct_tokenizer_token_str(t, SPT_SOT), "<|startoftext|>"));
    CHECK(!strcmp(ct_tokenizer_token_str(t, SPT_EOT), "<|endoftext|>"));
}

/* encode: the special strings, in any case, anywhere, are their own ids
 * unless a run of punctuation before them took the "<|". */
static void test_encode(void) {
    ct_tokenizer *t = subset_tokenizer();
    if (!t) return;
    int64_t ids[SPT_CONTEXT * 4];
    int bad = 0, embedded = 0;
    for (int c = 0; c < N_CASES; c++) {
        const spt_case *k = &spt_cases[c];
        int n = -1;
        ct_status st = ct_tokenizer_encode(t, k->text, ids, SPT_CONTEXT * 4, &n);
        bool ok = st == CT_OK && n == k->n_ids;
        for (int i = 0; ok && i < n; i++) ok = ids[i] == spt_data[k->ids_off + i];
        for (int i = 0; ok && i + 1 < n; i++) embedded += ids[i] == SPT_EOT;
        if (!ok && bad++ < 5)
            CHECK_MSG(false, "encode(\"%s\"): %s, %d ids (want %d)%s", show(k->text),
                      ct_status_str(st), n, k->n_ids, st == CT_OK ? ", ids differ" : "");
    }
    CHECK_MSG(bad == 0, "%d of %d texts encode differently", bad, N_CASES);
    CHECK(embedded > 0);
    printf("  %d texts, %d inner <|endoftext|> ids\n", N_CASES, embedded);
}

/* clip.tokenize: [sot] + encode + [eot], zero-padded; an inner <|endoftext|>
 * stays in place; too long is an error, or with truncate the first
 * context_length tokens with the last set to <|endoftext|>. */
static void test_rows(void) {
    ct_tokenizer *t = subset_tokenizer();
    if (!t) return;
    int64_t row[SPT_CONTEXT];
    int bad = 0, n_long = 0;
    for (int c = 0; c < N_CASES; c++) {
        const spt_case *k = &spt_cases[c];
        for (int trunc = 0; trunc < 2; trunc++) {
            ct_status st = ct_tokenizer_tokenize(t, k->text, SPT_CONTEXT, trunc, row);
            bool ok;
            if (k->too_long && !trunc) {
                ok = st == CT_ERR_ARG;
                n_long++;
            } else {
                ok = st == CT_OK;
                for (int i = 0; ok && i < SPT_CONTEXT; i++)
                    ok = row[i] == (i < k->n_row ? spt_data[k->row_off + i] : 0);
            }
            if (!ok && bad++ < 5)
                CHECK_MSG(false, "tokenize(\"%s\", truncate=%d): %s%s", show(k->text), trunc,
                          ct_status_str(st), st == CT_OK ? ", row differs" : "");
        }
    }
    CHECK_MSG(bad == 0, "%d rows differ", bad);
    CHECK(n_long > 0);
}

/* decode(encode(text)) as simple_tokenizer.decode: the special tokens are
 * their strings, with no space after. */
static void test_decode(void) {
    ct_tokenizer *t = subset_tokenizer();
    if (!t) return;
    int64_t ids[SPT_CONTEXT * 4];
    static char out[16384];
    int bad = 0;
    for (int c = 0; c < N_CASES; c++) {
        const spt_case *k = &spt_cases[c];
        for (int i = 0; i < k->n_ids; i++) ids[i] = spt_data[k->ids_off + i];
        ct_status st = ct_tokenizer_decode(t, ids, k->n_ids, out, sizeof out);
        if ((st != CT_OK || strcmp(out, k->decoded)) && bad++ < 5)
            CHECK_MSG(false, "decode(encode(\"%s\")): %s \"%s\", want \"%s\"", show(k->text),
                      ct_status_str(st), st == CT_OK ? show(out) : "", k->decoded);
    }
    CHECK_MSG(bad == 0, "%d decodes differ", bad);
}

/* The position that pools each row: OpenAI's text.argmax(dim=-1) (the first
 * maximum) and transformers' first eos_token_id are the inner <|endoftext|>
 * when there is one, as ct_clip_eot_positions gives for both rules. */
static void test_eot_positions(void) {
    ct_clip_config c = {0};
    c.format = CT_CLIP_HF;
    c.image_size = 16, c.patch_size = 8, c.vision_width = 8, c.vision_layers = 1;
    c.vision_heads = 1, c.vision_mlp = 8, c.context_length = SPT_CONTEXT;
    c.vocab_size = SPT_EOT + 1, c.text_width = 8, c.text_layers = 1, c.text_heads = 1;
    c.text_mlp = 8, c.embed_dim = 4;
    c.vision_act = c.text_act = CT_QUICK_GELU, c.vision_ln_eps = c.text_ln_eps = 1e-5f;
    int64_t *rows = calloc((size_t)N_CASES * SPT_CONTEXT, sizeof *rows);
    int64_t pos[N_CASES];
    CHECK(rows != NULL);
    if (!rows) return;
    for (int k = 0; k < N_CASES; k++)
        for (int i = 0; i < spt_cases[k].n_row; i++)
            rows[(size_t)k * SPT_CONTEXT + i] = spt_data[spt_cases[k].row_off + i];
    for (int rule = 0; rule < 2; rule++) {
        c.eot_rule = rule ? CT_EOT_FIRST_ID : CT_EOT_ARGMAX;
        c.eot_id = SPT_EOT;
        ct_clip *m = ct_clip_create(&c, 1);
        CHECK_MSG(m != NULL, "ct_clip_create: %s", ct_last_error());
        if (!m) break;
        CHECK_OK(ct_clip_eot_positions(m, rows, N_CASES, SPT_CONTEXT, pos));
        for (int k = 0; k < N_CASES; k++) {
            int want = rule ? spt_cases[k].eot_first : spt_cases[k].eot_argmax;
            CHECK_MSG(pos[k] == want, "%s: EOT position of \"%s\" is %lld, torch gives %d",
                      rule ? "first eos" : "argmax", show(spt_cases[k].text),
                      (long long)pos[k], want);
        }
        ct_clip_free(m);
    }
    free(rows);
}

int main(void) {
    RUN(test_vocabulary);
    RUN(test_encode);
    RUN(test_rows);
    RUN(test_decode);
    RUN(test_eot_positions);
    ct_tokenizer_free(g_tok);
    return ct_test_summary();
}
