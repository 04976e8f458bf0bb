/* Dense (per-token) features through the cache: shapes, token 0 equals the
 * pooled embedding (ln_post + projection of the class token), a cache entry
 * round-trips them, and a pooled-only entry is not mistaken for a dense one. */
#include <stdlib.h>
#include <string.h>

#include "cliptune.h"
#include "harness.h"
#include "base/file.h"
#include "model/bundle.h"
#include "train/features.h"

static void test_dense_features(void) {
    const char *tmp = ct_test_tmpdir();
    char x[4096], y[4096], spec[8300], cache[4096];
    snprintf(x, sizeof x, "%s/x.npy", tmp);
    snprintf(y, sizeof y, "%s/y.npy", tmp);
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    enum { N = 12, H = 20, W = 24 };
    static float px[N * H * W * 3];
    int64_t lab[N];
    ct_rng r;
    ct_rng_init(&r, 4);
    for (int i = 0; i < N * H * W * 3; i++) px[i] = (float)ct_rng_below(&r, 256);
    for (int i = 0; i < N; i++) lab[i] = i % 2;
    int64_t xs[4] = {N, H, W, 3}, ys[1] = {N};
    CHECK_OK(ct_npy_write(x, CT_F32, 4, xs, px));
    CHECK_OK(ct_npy_write(y, CT_I64, 1, ys, lab));
    snprintf(spec, sizeof spec, "npy:%s,%s", x, y);
    ct_splits sp;
    CHECK_OK(ct_data_open(spec, &sp));
    ct_bundle b;
    CHECK_OK(ct_bundle_load(CT_SOURCE_DIR "/tests/fixtures/clip/a_hf", NULL, NULL, false, &b));
    CHECK_OK(ct_mkdir_p(cache));
    ct_feature_req req = {.clip = b.clip, .pre = &b.pre, .data = sp.train, .cache_dir = cache,
                          .batch = 5};
    ct_features pooled, d1, d2;
    CHECK_OK(ct_features_get(&req, &pooled));
    CHECK(pooled.dense == NULL && pooled.n_tokens == 0);
    req.dense = true;
    CHECK_OK(ct_features_get(&req, &d1)); /* computed: the pooled entry has no dense part */
    CHECK_OK(ct_features_get(&req, &d2)); /* from the cache */
    int E = pooled.dim;
    CHECK(d1.n_tokens == 17 && d2.n_tokens == 17 && d1.dense && d2.dense);
    if (d1.dense && d2.dense) {
        CHECK(!memcmp(d1.dense, d2.dense, (size_t)d1.n * 17 * (size_t)E * sizeof(float)));
        CHECK(!memcmp(d1.x, pooled.x, (size_t)d1.n * (size_t)E * sizeof(float)));
        for (int64_t i = 0; i < d1.n; i++)
            CHECK_CLOSE_F("dense token 0 = pooled", d1.dense + i * 17 * E, d1.x + i * E,
                          (size_t)E, 1e-6, 1e-6);
    }
    ct_features_free(&pooled), ct_features_free(&d1), ct_features_free(&d2);
    ct_bundle_free(&b);
    ct_splits_free(&sp);
}

/* A bad image among good ones, decoded by parallel workers: the error that
 * reaches the caller is the first bad item's, on the calling thread, with
 * its path (it was the worker's thread-local message, lost half the time). */
static void test_worker_error_reaches_caller(void) {
    ct_bundle b;
    CHECK_OK(ct_bundle_load(CT_SOURCE_DIR "/tests/fixtures/clip/a_hf", NULL, NULL, false, &b));
    static const char *files[] = {"rgb.png", "grey.png", "palette.png", "bad/bad_crc.png",
                                  "rgb.bmp", "bad/empty.jpg", "grey.jpg", "photo_444.jpg"};
    enum { N = sizeof files / sizeof *files };
    ct_item items[N];
    char *names[1] = {"x"};
    for (int i = 0; i < N; i++) items[i] = (ct_item){(char *)files[i], 0, 0};
    ct_dataset d = {.name = "mixed", .root = CT_SOURCE_DIR "/tests/fixtures/images",
                    .n_classes = 1, .classnames = names, .n_items = N, .items = items};
    int S = ct_clip_get_config(b.clip)->image_size;
    float *px = malloc((size_t)N * 3 * S * S * sizeof *px);
    ct_set_num_threads(2);
    for (int rep = 0; rep < 10; rep++) {
        ct_clear_error();
        ct_status s = ct_dataset_pixels(&d, &b.pre, S, 0, N, px);
        CHECK(s != CT_OK);
        CHECK_MSG(strstr(ct_last_error(), "bad_crc.png"), "try %d: message \"%s\"", rep,
                  ct_last_error());
        ct_features f;
        ct_feature_req req = {.clip = b.clip, .pre = &b.pre, .data = &d, .batch = 8};
        ct_clear_error();
        CHECK(ct_features_get(&req, &f) != CT_OK);
        CHECK_MSG(strstr(ct_last_error(), "bad_crc.png"), "features, try %d: \"%s\"", rep,
                  ct_last_error());
    }
    ct_set_num_threads(0);
    free(px);
    ct_bundle_free(&b);
}

int main(void) {
    RUN(test_dense_features);
    RUN(test_worker_error_reaches_caller);
    return ct_test_summary();
}
