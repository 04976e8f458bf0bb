/* cliptune info MODEL: architecture, sizes and parameter count. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char *HELP =
    "usage: cliptune info MODEL [--act quick_gelu|gelu]\n"
    "\n"
    "Print a CLIP checkpoint's architecture and size. MODEL is a Hugging Face\n"
    "CLIP folder (config.json + model.safetensors) or an OpenAI-layout\n"
    ".safetensors file (its activation cannot be read from the file: --act,\n"
    "default quick_gelu as OpenAI's own models).\n";

static const char *act_name(ct_activation a) { return a == CT_GELU ? "gelu" : "quick_gelu"; }

int cmd_info(int argc, char **argv) {
    if (cli_help_requested(argc, argv)) {
        fputs(HELP, stdout);
        return 0;
    }
    const char *model = NULL, *act = NULL;
    bool bad = false;
    for (int i = 1; i < argc && !bad; i++) {
        if (cli_opt(argc, argv, &i, "--act", &act, &bad)) continue;
        if (argv[i][0] == '-') return cli_usage("info: unknown option %s (see --help)", argv[i]);
        if (model) return cli_error("info: more than one MODEL given (%s, %s)", model, argv[i]);
        model = argv[i];
    }
    if (bad) return 1;
    if (!model) return cli_usage("info: no MODEL given (see --help)");
    ct_clip_load_opts opts = {CT_QUICK_GELU, 64};
    if (act && !strcmp(act, "gelu"))
        opts.openai_act = CT_GELU;
    else if (act && strcmp(act, "quick_gelu"))
        return cli_error("info: --act %s: expected quick_gelu or gelu", act);
    ct_clip *m = ct_clip_load(model, &opts);
    if (!m) return cli_lib_error("info");
    const ct_clip_config *c = ct_clip_get_config(m);
    int grid = c->image_size / c->patch_size;
    printf("model:      %s\n", model);
    printf("layout:     %s\n", c->format == CT_CLIP_HF ? "Hugging Face folder" : "OpenAI / open_clip");
    const int *rl = c->vision_resnet_layers;
    if (rl[0] > 0)
        printf("vision:     ModifiedResNet, %dx%d input, layers (%d, %d, %d, %d), width %d "
               "(features %d), attention pooling %d heads over %dx%d (%d tokens)\n",
               c->image_size, c->image_size, rl[0], rl[1], rl[2], rl[3], c->vision_width,
               32 * c->vision_width, c->vision_heads, grid, grid, grid * grid + 1);
    else
        printf("vision:     ViT, %dx%d input, patch %d (%d tokens), width %d, %d layers, %d "
               "heads, MLP %d, %s\n", c->image_size, c->image_size, c->patch_size,
               grid * grid + 1, c->vision_width, c->vision_layers, c->vision_heads,
               c->vision_mlp, act_name(c->vision_act));
    printf("text:       context %d, vocab %d, width %d, %d layers, %d heads, MLP %d, %s\n",
           c->context_length, c->vocab_size, c->text_width, c->text_layers, c->text_heads,
           c->text_mlp, act_name(c->text_act));
    printf("embedding:  %d\n", c->embed_dim);
    printf("EOT:        %s\n", c->eot_rule == CT_EOT_ARGMAX ? "argmax of the ids"
                                                           : "first end-of-text id");
    if (c->eot_rule == CT_EOT_FIRST_ID) printf("EOT id:     %lld\n", (long long)c->eot_id);
    long long n = (long long)ct_clip_num_params(m);
    printf("parameters: %lld (%.1f M; %.1f MB as float32)\n", n, n / 1e6, n * 4 / 1e6);
    ct_clip_free(m);
    return 0;
}
