/* A model with what it needs to run on raw inputs: the CLIP weights, the
 * tokenizer that goes with them and their image preprocessing. */
#ifndef CT_MODEL_BUNDLE_H
#define CT_MODEL_BUNDLE_H

#include "cliptune.h"

typedef struct ct_bundle {
    ct_clip *clip;
    ct_tokenizer *tok; /* NULL when none was found and none was required */
    ct_preprocess_cfg pre;
} ct_bundle;

/* path: HF folder (its vocab.json + merges.txt and preprocessor_config.json
 * are used when present) or OpenAI-layout .safetensors (OpenAI's transform).
 * bpe (may be NULL) overrides the tokenizer: a .txt.gz (OpenAI) or a
 * vocab.json with merges.txt beside it. need_tok: fail when no tokenizer. */
ct_status ct_bundle_load(const char *path, const char *bpe, const ct_clip_load_opts *opts,
                         bool need_tok, ct_bundle *out);
void ct_bundle_free(ct_bundle *b);

/* Content hashes of the other two parts (the weights': ct_clip_hash): a
 * tokenizer's vocabulary and merges; the preprocessing's settings, folded
 * into h. Runs record them and refuse a model loaded otherwise. */
uint64_t ct_tokenizer_hash(const ct_tokenizer *t);
uint64_t ct_preprocess_hash(uint64_t h, const ct_preprocess_cfg *p);

#endif
