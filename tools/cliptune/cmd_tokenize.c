/* cliptune tokenize --model MODEL TEXT...: one line of ids per text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_args.h"

static const char *HELP =
    "usage: cliptune tokenize --model MODEL [--bpe FILE] [--pad] [--truncate] TEXT...\n"
    "\n"
    "Print one line of token ids per TEXT, as clip.tokenize builds them:\n"
    "<|startoftext|> ids <|endoftext|> (with --pad, zero-padded to the model's\n"
    "context length). A text longer than the context is an error unless\n"
    "--truncate (then the last kept token becomes <|endoftext|>).\n"
    "MODEL: Hugging Face CLIP folder (uses its vocab.json + merges.txt) or an\n"
    "OpenAI-layout .safetensors with --bpe bpe_simple_vocab_16e6.txt.gz.\n";

int cmd_tokenize(int argc, char **argv) {
    if (cli_help_requested(argc, argv)) {
        fputs(HELP, stdout);
        return 0;
    }
    model_args a = {0};
    bool bad = false, pad = false, truncate = false;
    char **texts = calloc((size_t)argc, sizeof *texts);
    int n = 0;
    for (int i = 1; i < argc && !bad; i++) {
        if (model_args_parse(argc, argv, &i, &a, &bad)) continue;
        if (!strcmp(argv[i], "--pad")) pad = true;
        else if (!strcmp(argv[i], "--truncate")) truncate = true;
        else if (!strcmp(argv[i], "--")) {
            while (++i < argc) texts[n++] = argv[i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            free(texts);
            return cli_usage("tokenize: unknown option %s (see --help)", argv[i]);
        } else texts[n++] = argv[i];
    }
    ct_model *m = NULL;
    int rc = 1;
    if (bad) goto out;
    if (n == 0) {
        cli_usage("tokenize: no TEXT given");
        goto out;
    }
    if (!(m = model_load(&a, true, "tokenize"))) goto out;
    ct_tokenizer *tok = ct_model_tokenizer(m);
    int ctx = ct_clip_get_config(ct_model_clip(m))->context_length;
    int64_t *row = malloc((size_t)ctx * sizeof *row);
    rc = 0;
    for (int t = 0; t < n && rc == 0; t++) {
        if (ct_tokenizer_tokenize(tok, texts[t], ctx, truncate, row) != CT_OK) {
            rc = cli_error("tokenize: text %d: %s%s", t + 1, ct_last_error(),
                           truncate ? "" : " (--truncate keeps the first tokens)");
            break;
        }
        int len = ctx;
        if (!pad) {
            int64_t eot = ct_tokenizer_eot(tok);
            /* through the closing <|endoftext|>, the last one (padding is 0; a
             * text may hold the token itself, as OpenAI's tokenizer keeps it) */
            for (len = ctx; len > 1 && row[len - 1] != eot; len--) {}
        }
        for (int k = 0; k < len; k++) printf(k ? " %lld" : "%lld", (long long)row[k]);
        putchar('\n');
    }
    free(row);
    ct_model_free(m);
out:
    free(texts);
    return rc;
}
