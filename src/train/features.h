/* Image features of a dataset through the frozen image tower, cached on
 * disk. The cache key covers everything the features depend on: the model's
 * weights, the preprocessing, the view (0 = evaluation transform, k >= 1 =
 * the k-th augmented view with its seed) and every item's identity and
 * content (file bytes, or decoded pixels for in-memory datasets). A changed
 * image, model or setting gives a different key, so stale entries are never
 * read; cache files are written atomically. */
#ifndef CT_TRAIN_FEATURES_H
#define CT_TRAIN_FEATURES_H

#include "cliptune.h"

typedef struct ct_feature_req {
    ct_clip *clip;
    const ct_preprocess_cfg *pre;
    const ct_dataset *data;
    int view;               /* 0: evaluation transform; k >= 1: augmented view k */
    uint64_t seed;          /* augmentation seed (views >= 1)                   */
    const char *cache_dir;  /* NULL: no cache                                   */
    int batch;              /* images per forward pass (0: 32)                  */
    void (*progress)(void *ctx, int64_t done, int64_t total);
    void *progress_ctx;
    bool dense;             /* also the dense per-token features (out->dense)   */
    ct_dense_kind dense_kind; /* which ones (CT_DENSE_VALUE: MaskCLIP's value
                             * path, and the last block's keys in
                             * out->dense_keys); part of the cache key        */
    bool raw_pixels;        /* the transformed pixels themselves, flattened
                             * (dim 3*S*S), instead of the image tower's
                             * embedding: model-free baselines (pixel-probe)   */
} ct_feature_req;

ct_status ct_features_get(const ct_feature_req *req, ct_features *out);
void ct_features_free(ct_features *f);

#endif
