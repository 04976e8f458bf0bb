/* cliptune bpe-train: train a CLIP BPE vocabulary on a caption corpus and
 * write a Hugging Face tokenizer folder (ct_bpe_train). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char *HELP =
    "usage: cliptune bpe-train --captions SPEC --vocab-size N [--min-frequency F] --out DIR\n"
    "\n"
    "Train a CLIP byte-level BPE vocabulary on the captions and write DIR/vocab.json,\n"
    "DIR/merges.txt, DIR/tokenizer_config.json and DIR/special_tokens_map.json (a\n"
    "Hugging Face CLIP tokenizer folder). Text is cleaned, lowercased and split\n"
    "exactly as the tokenizer does; the most frequent adjacent pair is merged until\n"
    "there are N ids (512 byte symbols + merges + 2 special tokens) or no pair\n"
    "occurs F times. Ties go to the lexicographically smallest pair.\n"
    "\n"
    "SPEC: a .txt file (or txt:FILE) with one caption per line (blank lines skipped);\n"
    "      a CSV file (csv:FILE) with the header path,caption (RFC 4180 quoting);\n"
    "      a folder (folder:DIR) of images, each with a .txt of the same stem holding\n"
    "      one caption per line. CSV and folder corpora are read as `pretrain` reads\n"
    "      them, so their images must exist.\n"
    "N:    514 .. 49408 (CLIP: 49408).   F: default 2.\n";

/* Lines of a text file as captions (blank ones skipped, CR of CRLF dropped).
 * *text owns the strings. */
static bool read_lines(const char *path, char **text, char ***lines, int64_t *n) {
    size_t len;
    if (ct_read_file(path, text, &len) != CT_OK) {
        cli_lib_error("bpe-train");
        return false;
    }
    char *t = *text;
    if (memchr(t, 0, len)) {
        size_t at = (size_t)((char *)memchr(t, 0, len) - t), line = 1;
        for (size_t i = 0; i < at; i++) line += t[i] == '\n';
        cli_error("bpe-train: %s: line %zu: NUL byte (not a text file?)", path, line);
        return false;
    }
    int64_t cap = 1;
    for (size_t i = 0; i < len; i++) cap += t[i] == '\n';
    *lines = malloc((size_t)cap * sizeof **lines);
    if (!*lines) {
        cli_error("bpe-train: out of memory");
        return false;
    }
    *n = 0;
    for (char *p = t; p < t + len;) {
        char *e = memchr(p, '\n', (size_t)(t + len - p));
        if (!e) e = t + len;
        *e = 0;
        if (e > p && e[-1] == '\r') e[-1] = 0;
        if (strspn(p, " \t\r\f\v") != strlen(p)) (*lines)[(*n)++] = p;
        p = e + 1;
    }
    return true;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

int cmd_bpe_train(int argc, char **argv) {
    if (cli_help_requested(argc, argv)) {
        fputs(HELP, stdout);
        return 0;
    }
    const char *spec = NULL, *vs = NULL, *mf = "2", *out = NULL;
    bool bad = false;
    for (int i = 1; i < argc && !bad; i++) {
        if (cli_opt(argc, argv, &i, "--captions", &spec, &bad) ||
            cli_opt(argc, argv, &i, "--vocab-size", &vs, &bad) ||
            cli_opt(argc, argv, &i, "--min-frequency", &mf, &bad) ||
            cli_opt(argc, argv, &i, "--out", &out, &bad))
            continue;
        return cli_usage("bpe-train: unknown argument %s (see --help)", argv[i]);
    }
    if (bad) return 1;
    if (!spec || !vs || !out)
        return cli_usage("bpe-train: --captions, --vocab-size and --out are required");
    long long vocab = 0, minf = 0;
    if (!cli_parse_ll(vs, "bpe-train: --vocab-size", INT_MIN, INT_MAX, &vocab) ||
        !cli_parse_ll(mf, "bpe-train: --min-frequency", INT_MIN, INT_MAX, &minf))
        return 1;

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char *text = NULL, **lines = NULL;
    int64_t n = 0;
    const char *const *texts;
    ct_caption_set cs = {0};
    int rc = 1;
    if (!strncmp(spec, "txt:", 4) || ends_with(spec, ".txt")) {
        const char *path = strncmp(spec, "txt:", 4) ? spec : spec + 4;
        if (!read_lines(path, &text, &lines, &n)) goto done;
        if (n == 0) {
            cli_error("bpe-train: %s: no captions (every line is blank)", path);
            goto done;
        }
        texts = (const char *const *)lines;
    } else {
        if (ct_captions_open(spec, &cs) != CT_OK) {
            cli_lib_error("bpe-train");
            goto done;
        }
        n = cs.cap_off[cs.n_images];
        texts = (const char *const *)cs.captions;
    }
    ct_bpe_stats st;
    if (ct_bpe_train(texts, n, (int)vocab, (int)minf, out, &st) != CT_OK) {
        cli_lib_error("bpe-train");
        goto done;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%lld captions, %lld words (%lld distinct) -> %d tokens, %d merges in %s "
           "(%.2f s)\n",
           (long long)n, (long long)st.n_words, (long long)st.n_distinct_words, st.vocab_size,
           st.n_merges, out, (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec));
    if (st.stopped_early)
        printf("stopped before %lld tokens: no pair occurs %lld times any more\n", vocab, minf);
    rc = 0;
done:
    ct_captions_free(&cs);
    free(lines);
    free(text);
    return rc;
}
