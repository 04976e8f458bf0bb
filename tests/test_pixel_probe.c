/* pixel-probe: the linear probe on the evaluation transform's pixels (the
 * model-free floor of the demo). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cliptune.h"
#include "harness.h"
#include "method_fixture.h"
#include "train/features.h"
#include "api/run.h"

/* The features are exactly ct_preprocess's output, flattened. */
static void test_raw_pixel_features(void) {
    ct_clip *m = ct_clip_load(TINY_DIR, NULL);
    CHECK(m != NULL);
    if (!m) return;
    char body[2048] = "";
    for (int k = 0; k < 64; k++) strcat(body, k % 3 ? "3," : "16,");
    char path[1024], spec[1100];
    snprintf(path, sizeof path, "%s/d.csv", ct_test_tmpdir());
    FILE *f = fopen(path, "w");
    for (int r = 0; r < 40; r++) fprintf(f, "%s%d\n", body, r % 10);
    fclose(f);
    snprintf(spec, sizeof spec, "digits:%s", path);
    ct_splits sp;
    CHECK_OK(ct_data_open(spec, &sp));
    if (!sp.test) {
        ct_clip_free(m);
        return;
    }
    ct_preprocess_cfg pre;
    int S = ct_clip_get_config(m)->image_size;
    ct_preprocess_cfg_openai(&pre, S);
    ct_feature_req r = {.clip = m, .pre = &pre, .data = sp.test, .raw_pixels = true};
    ct_features out;
    CHECK_OK(ct_features_get(&r, &out));
    CHECK(out.dim == 3 * S * S && out.n == sp.test->n_items);
    ct_image img;
    CHECK_OK(ct_dataset_image(sp.test, 0, &img));
    float *want = malloc((size_t)3 * S * S * sizeof *want);
    CHECK_OK(ct_preprocess(&img, &pre, want));
    if (out.x) CHECK(!memcmp(out.x, want, (size_t)3 * S * S * sizeof *want));
    free(want);
    ct_image_free(&img);
    ct_features_free(&out);
    r.dense = true;
    CHECK(ct_features_get(&r, &out) == CT_ERR_ARG);
    ct_splits_free(&sp);
    ct_clip_free(m);
}

/* On Fashion-MNIST (16 shots) the pixel probe is a real classifier. */
static void test_pixel_probe_learns(void) {
    const char *methods[] = {"pixel-probe"}, *sets[] = {"C=0.1"};
    ct_run_result res[1];
    if (!fashion_mnist_runs(methods, sets, 1, 1000, "pp", res, NULL)) return;
    printf("    pixel-probe 16-shot Fashion-MNIST top-1 %.1f%%\n", 100 * res[0].top1);
    CHECK(res[0].top1 > 0.5);
}

int main(void) {
    RUN(test_raw_pixel_features);
    RUN(test_pixel_probe_learns);
    return ct_test_summary();
}
