#include "model/bundle.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"

static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static ct_tokenizer *load_tok(const char *path, const char *bpe, bool hf) {
    char v[4096], mg[4096];
    if (bpe) {
        size_t n = strlen(bpe);
        if (n > 5 && !strcmp(bpe + n - 5, ".json")) {
            const char *slash = strrchr(bpe, '/');
            snprintf(mg, sizeof mg, "%.*smerges.txt", slash ? (int)(slash - bpe + 1) : 0, bpe);
            return ct_tokenizer_load_hf(bpe, mg);
        }
        return ct_tokenizer_load_openai(bpe);
    }
    if (!hf) return NULL;
    snprintf(v, sizeof v, "%s/vocab.json", path);
    snprintf(mg, sizeof mg, "%s/merges.txt", path);
    if (!exists(v)) return NULL;
    return ct_tokenizer_load_hf(v, mg);
}

ct_status ct_bundle_load(const char *path, const char *bpe, const ct_clip_load_opts *opts,
                         bool need_tok, ct_bundle *out) {
    memset(out, 0, sizeof *out);
    out->clip = ct_clip_load(path, opts);
    if (!out->clip) return CT_ERR_FORMAT;
    const ct_clip_config *c = ct_clip_get_config(out->clip);
    bool hf = c->format == CT_CLIP_HF;
    ct_clear_error();
    out->tok = load_tok(path, bpe, hf);
    ct_status s = CT_OK;
    if (!out->tok && (bpe || need_tok))
        s = ct_last_error()[0] ? CT_ERR_FORMAT
                               : ct_set_error(CT_ERR_ARG, "%s has no tokenizer files (vocab.json, "
                                              "merges.txt): give the BPE vocabulary (--bpe "
                                              "bpe_simple_vocab_16e6.txt.gz)", path);
    if (s == CT_OK && out->tok && ct_tokenizer_vocab_size(out->tok) > c->vocab_size)
        s = ct_set_error(CT_ERR_FORMAT, "%s: the tokenizer has %d tokens but the model's "
                         "embedding only %d", path, ct_tokenizer_vocab_size(out->tok),
                         c->vocab_size);
    char pp[4096];
    snprintf(pp, sizeof pp, "%s/preprocessor_config.json", path);
    if (s == CT_OK && hf && exists(pp))
        s = ct_preprocess_cfg_from_hf(pp, &out->pre);
    else if (s == CT_OK)
        ct_preprocess_cfg_openai(&out->pre, c->image_size);
    if (s != CT_OK) ct_bundle_free(out);
    return s;
}

void ct_bundle_free(ct_bundle *b) {
    if (!b) return;
    ct_clip_free(b->clip);
    ct_tokenizer_free(b->tok);
    memset(b, 0, sizeof *b);
}
