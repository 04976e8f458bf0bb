/* The model options every model command shares: MODEL (HF folder or OpenAI
 * .safetensors), --bpe FILE (tokenizer for OpenAI-layout files: the
 * bpe_simple_vocab_16e6.txt.gz, or an HF vocab.json with merges.txt beside
 * it), --act quick_gelu|gelu (OpenAI layout only); and, for the inference
 * commands that opt in (embed, classify), --precision f32|bf16. */
#ifndef CT_CLI_MODEL_ARGS_H
#define CT_CLI_MODEL_ARGS_H

#include "cli.h"

typedef struct {
    const char *model, *bpe, *act, *precision;
} model_args;

/* Consumes --model/--bpe/--act at argv[*i]; true if it was one of them. */
bool model_args_parse(int argc, char **argv, int *i, model_args *a, bool *bad);
/* The same, and --precision (inference-only commands). */
bool model_args_parse_inference(int argc, char **argv, int *i, model_args *a, bool *bad);
/* The --precision line of those commands' help. */
#define MODEL_ARGS_PRECISION_HELP                                                              \
    "  --precision f32|bf16  bf16: the transformers' GEMMs in bf16 weights (CPUs with\n"       \
    "                    AVX512_BF16; about twice as fast, embeddings within cosine\n"         \
    "                    0.9999 of f32); default f32\n"

/* Loads the model (requiring a tokenizer when asked); prints the error and
 * returns NULL on failure. */
ct_model *model_load(const model_args *a, bool need_tokenizer, const char *cmd);

#endif
