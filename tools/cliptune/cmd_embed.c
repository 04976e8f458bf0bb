/* cliptune embed: raw projected embeddings of images or texts to .npy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_args.h"

static const char *HELP =
    "usage: cliptune embed --model MODEL (--images IMG... | --texts TEXT...) --out FILE.npy\n"
    "                      [--bpe FILE] [--act quick_gelu|gelu] [--truncate]\n"
    "                      [--precision f32|bf16]\n"
    "\n"
    "Write the projected CLIP embeddings (not normalised), float32, one row per\n"
    "input in the order given, to FILE.npy (written atomically). Images are\n"
    "decoded and preprocessed as the checkpoint's own library does (Pillow\n"
    "bicubic resize, centre crop, normalisation).\n"
    "\n" MODEL_ARGS_PRECISION_HELP;

int cmd_embed(int argc, char **argv) {
    if (cli_help_requested(argc, argv)) {
        fputs(HELP, stdout);
        return 0;
    }
    model_args a = {0};
    const char *out = NULL;
    bool bad = false, truncate = false;
    int mode = 0; /* 1 images, 2 texts */
    char **items = calloc((size_t)argc, sizeof *items);
    int n = 0, rc = 1;
    for (int i = 1; i < argc && !bad; i++) {
        if (model_args_parse_inference(argc, argv, &i, &a, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--out", &out, &bad)) continue;
        if (!strcmp(argv[i], "--images") || !strcmp(argv[i], "--texts")) {
            int want = argv[i][2] == 'i' ? 1 : 2;
            if (mode && mode != want) {
                cli_error("embed: give either --images or --texts, not both");
                goto out;
            }
            mode = want;
        } else if (!strcmp(argv[i], "--truncate")) {
            truncate = true;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            cli_usage("embed: unknown option %s (see --help)", argv[i]);
            goto out;
        } else if (!mode) {
            cli_error("embed: %s: say --images or --texts first", argv[i]);
            goto out;
        } else {
            items[n++] = argv[i];
        }
    }
    if (bad) goto out;
    if (!mode || n == 0) {
        cli_error("embed: nothing to embed (--images IMG... or --texts TEXT...)");
        goto out;
    }
    if (!out) {
        cli_usage("embed: no --out FILE.npy given");
        goto out;
    }
    ct_model *m = model_load(&a, mode == 2, "embed");
    if (!m) goto out;
    int64_t E = ct_model_embed_dim(m);
    float *emb = malloc((size_t)n * (size_t)E * sizeof *emb);
    ct_status st = !emb ? CT_ERR_NOMEM
                   : mode == 1 ? ct_model_encode_images(m, (const char *const *)items, n, emb)
                               : ct_model_encode_texts(m, (const char *const *)items, n,
                                                       truncate, emb);
    if (st != CT_OK) {
        cli_error("embed: %s%s", emb ? ct_last_error() : "out of memory",
                  mode == 2 && !truncate && st == CT_ERR_ARG
                      ? " (--truncate keeps the first tokens)" : "");
    } else {
        int64_t shape[2] = {n, E};
        if (ct_npy_write(out, CT_F32, 2, shape, emb) != CT_OK)
            cli_lib_error("embed");
        else
            rc = 0;
    }
    free(emb);
    ct_model_free(m);
out:
    free(items);
    return rc;
}
