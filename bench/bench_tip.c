/* Tip-Adapter's training-free fit at ImageNet-like few-shot scale on
 * synthetic features: 16 shots x 100 classes, 512-d, 10 augmented views
 * (16,000 view rows -> a 1,600-key cache), val 4 shots x 100 (Dassl's
 * min(k, 4)). Times the cache build (fit with search=0) and the (alpha, beta)
 * search on the official 200 x 20 grid (fit with search=1, minus the build),
 * and prediction on 10,000 test rows. Medians of 5.
 *
 *     build/bench_tip [threads]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_common.h"
#include "cliptune.h"

enum { SHOTS = 16, C = 100, E = 512, VIEWS = 10, VAL_SHOTS = 4, NTEST = 10000, REPS = 5 };

static void fill(ct_rng *r, const float *centers, int64_t n, float noise, float *x, int *y) {
    for (int64_t i = 0; i < n; i++) {
        y[i] = (int)(i % C);
        for (int d = 0; d < E; d++) x[i * E + d] = centers[y[i] * E + d] + noise * ct_rng_normal(r);
    }
}

int main(int argc, char **argv) {
    if (argc > 1) ct_set_num_threads(atoi(argv[1]));
    char dir[] = "/tmp/bench_tip_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char zs[64];
    snprintf(zs, sizeof zs, "%s/zs.npy", dir);
    ct_rng r;
    ct_rng_init(&r, 1);
    float *centers = malloc(sizeof(float) * C * E);
    for (int i = 0; i < C * E; i++) centers[i] = ct_rng_normal(&r);
    int64_t shape[2] = {C, E};
    float *w = malloc(sizeof(float) * C * E);
    for (int i = 0; i < C * E; i++) w[i] = 0.3f * centers[i] + ct_rng_normal(&r);
    if (ct_npy_write(zs, CT_F32, 2, shape, w) != CT_OK) return 1;
    /* train rows are image i of class i % C; view v of image i is row v N + i */
    int64_t N = SHOTS * C, NA = VIEWS * N, NV = VAL_SHOTS * C;
    ct_features tr = {.n = N, .dim = E, .x = malloc(sizeof(float) * N * E), .labels = malloc(sizeof(int) * N)};
    ct_features aug = {.n = NA, .dim = E, .x = malloc(sizeof(float) * NA * E), .labels = malloc(sizeof(int) * NA)};
    ct_features val = {.n = NV, .dim = E, .x = malloc(sizeof(float) * NV * E), .labels = malloc(sizeof(int) * NV)};
    ct_features te = {.n = NTEST, .dim = E, .x = malloc(sizeof(float) * NTEST * E), .labels = malloc(sizeof(int) * NTEST)};
    fill(&r, centers, N, 1.5f, tr.x, tr.labels);
    for (int64_t v = 0; v < VIEWS; v++)
        for (int64_t i = 0; i < N; i++) {
            aug.labels[v * N + i] = tr.labels[i];
            for (int d = 0; d < E; d++)
                aug.x[(v * N + i) * E + d] = tr.x[i * E + d] + 0.5f * ct_rng_normal(&r);
        }
    fill(&r, centers, NV, 1.5f, val.x, val.labels);
    fill(&r, centers, NTEST, 1.5f, te.x, te.labels);
    ct_clip_config cc = {0};
    cc.format = CT_CLIP_HF;
    cc.image_size = 16, cc.patch_size = 8, cc.vision_width = 16, cc.vision_layers = 1;
    cc.vision_heads = 2, cc.vision_mlp = 32, cc.context_length = 8, cc.vocab_size = 64;
    cc.text_width = 16, cc.text_layers = 1, cc.text_heads = 2, cc.text_mlp = 32;
    cc.embed_dim = E, cc.vision_act = cc.text_act = CT_QUICK_GELU;
    cc.vision_ln_eps = cc.text_ln_eps = 1e-5f, cc.eot_rule = CT_EOT_ARGMAX;
    ct_clip *clip = ct_clip_create(&cc, 1);
    char *names[C];
    for (int k = 0; k < C; k++) names[k] = "class";
    ct_task task = {.clip = clip, .dataset_name = "bench", .n_classes = C, .classnames = names,
                    .train_feats = &tr, .val_feats = &val, .aug_feats = &aug, .seed = 1};
    const ct_method *m = ct_method_find("tip-adapter");
    double t_build[REPS], t_fit[REPS], t_pred[REPS];
    float *scores = malloc(sizeof(float) * NTEST * C);
    double acc = 0;
    float alpha = 0, beta = 0;
    for (int rep = 0; rep < REPS; rep++) {
        for (int search = 0; search < 2; search++) {
            ct_kv hp = {0};
            ct_kv_parse(&hp, m->defaults);
            ct_kv_set(&hp, "zs_weights", zs);
            ct_kv_set(&hp, "search", search ? "1" : "0");
            void *st = NULL;
            if (m->create(&task, &hp, &st) != CT_OK) {
                fprintf(stderr, "bench_tip: %s\n", ct_last_error());
                return 1;
            }
            double t0 = bench_now();
            if (m->fit(st, &task) != CT_OK) {
                fprintf(stderr, "bench_tip: %s\n", ct_last_error());
                return 1;
            }
            (search ? t_fit : t_build)[rep] = bench_now() - t0;
            if (search) {
                t0 = bench_now();
                ct_predict(m, st, &te, scores);
                t_pred[rep] = bench_now() - t0;
                int64_t ok = 0;
                for (int64_t i = 0; i < NTEST; i++) {
                    int b = 0;
                    for (int k = 1; k < C; k++)
                        if (scores[i * C + k] > scores[i * C + b]) b = k;
                    ok += b == te.labels[i];
                }
                acc = (double)ok / NTEST;
                ct_tensor *p[4];
                m->params(st, p, 4);
                alpha = p[2]->data[0], beta = p[3]->data[0];
            }
            m->destroy(st);
            ct_kv_free(&hp);
        }
    }
    double build = bench_median(t_build, REPS), fit = bench_median(t_fit, REPS);
    printf("tip-adapter, %d-shot x %d classes, %d-d, %d views (%lld keys), val %lld, %d "
           "threads\n", SHOTS, C, E, VIEWS, (long long)N, (long long)NV, ct_get_num_threads());
    printf("  cache build          %8.2f ms\n", 1e3 * build);
    printf("  alpha/beta search    %8.2f ms  (200 x 20 grid; searched alpha %.3g, beta %.3g)\n",
           1e3 * (fit - build), (double)alpha, (double)beta);
    printf("  predict %d rows  %8.2f ms  (%.0f rows/s; synthetic test top-1 %.1f%%)\n", NTEST,
           1e3 * bench_median(t_pred, REPS), NTEST / bench_median(t_pred, REPS), 100 * acc);
    unlink(zs);
    rmdir(dir);
    ct_clip_free(clip);
    free(centers), free(w), free(scores);
    free(tr.x), free(tr.labels), free(aug.x), free(aug.labels);
    free(val.x), free(val.labels), free(te.x), free(te.labels);
    return 0;
}
