#include "methods/method_image.h"

#include <math.h>
#include <string.h>

#include "base/error.h"
#include "base/hash.h"

ct_tensor *ct_param_normal(int64_t rows, int64_t cols, float std, uint64_t seed, const char *tag,
                           int index, const char *name) {
    ct_tensor *t = ct_tensor_new2(rows, cols, true);
    if (!t) {
        ct_set_error(CT_ERR_NOMEM, "%s: out of memory", tag);
        return NULL;
    }
    ct_rng r;
    ct_rng_init(&r, ct_hash_u64(ct_hash_str(ct_hash_u64(CT_HASH_INIT, seed), tag),
                                (uint64_t)index));
    ct_rng_fill_normal(&r, t->data, (size_t)t->numel, 0.0f, std);
    t->name = name;
    return t;
}

ct_status ct_param_linear_init(ct_tensor *w, ct_tensor *b, uint64_t seed, const char *tag) {
    float bound = 1.0f / sqrtf((float)w->shape[1]);
    ct_rng r;
    ct_rng_init(&r, ct_hash_str(ct_hash_u64(CT_HASH_INIT, seed), tag));
    ct_rng_fill_uniform(&r, w->data, (size_t)w->numel, -bound, bound);
    if (b) ct_rng_fill_uniform(&r, b->data, (size_t)b->numel, -bound, bound);
    return CT_OK;
}

ct_tensor *ct_batch_pixels(ct_graph *g, int64_t S, const ct_batch *b,
                           const char *method) {
    if (!b->pixels) {
        ct_set_error(CT_ERR_ARG, "%s: the batch has no pixels (a pixel method is scored on "
                     "images, not cached features)", method);
        return NULL;
    }
    int64_t shape[4] = {b->n, 3, S, S};
    return ct_graph_wrap(g, (ct_real *)b->pixels, 4, shape);
}

int ct_prompt_depth(int depth, int n_layers) { return depth > n_layers ? n_layers : depth; }

/* Labels of a batch as int64 in the graph's arena. */
static int64_t *batch_labels(ct_graph *g, const ct_batch *b) {
    int64_t *y = ct_graph_alloc(g, (size_t)(b->n ? b->n : 1) * sizeof *y);
    for (int64_t i = 0; y && b->labels && i < b->n; i++) y[i] = b->labels[i];
    return y;
}

ct_tensor *ct_image_text_scores(ct_graph *g, const ct_clip *clip, ct_tensor *img,
                                ct_tensor *txt) {
    ct_tensor *scale = ct_clip_find_tensor(clip, "logit_scale");
    return ct_mul(g, ct_matmul(g, ct_l2_normalize(g, img, 1e-12f), txt, false, true),
                  ct_exp(g, scale));
}

ct_tensor *ct_batch_ce(ct_graph *g, ct_tensor *logits, const ct_batch *b) {
    int64_t *y = logits ? batch_labels(g, b) : NULL;
    return y ? ct_cross_entropy(g, logits, y, 0.0f) : NULL;
}
