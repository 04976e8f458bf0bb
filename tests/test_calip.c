/* CALIP (src/methods/calip.c):
 *
 *   - parity with tools/ref/gen_calip_ref.py (an independent PyTorch
 *     re-implementation of the official run_imagenet.py math): the tiny
 *     fixture model's dense features of formula images, then CALIP's three
 *     logit terms and their beta-weighted sum, for the official settings and
 *     for other temperatures with the class token among the spatial tokens;
 *   - the val search picks the reference's (beta2, beta3) and val hits (a
 *     20 x 20 grid on which float32 rounding cannot move the winner), and the
 *     official 200 x 200 grid, which contains that one, does at least as well;
 *     the search's sweep equals a brute-force loop over the method's terms;
 *   - the searched betas survive ct_run_save_learned / ct_run_load_learned:
 *     identical predictions after a reload;
 *   - bad options and features without dense tokens fail naming the cause;
 *   - Fashion-MNIST through the tiny random CLIP and ct_run: CALIP with
 *     searched betas no worse than zero-shot (or than an informative
 *     classifier alone) on held-out test images; a random model's patches
 *     carry no class, so nothing better is claimed (docs/methods/calip.md).
 * The parity tasks inject the classifier with zs_weights= (the text tower is
 * covered by the zero-shot tests; the Fashion-MNIST runs use it). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cliptune.h"
#include "fixtures/methods/calip_ref.h"
#include "harness.h"
#include "method_fixture.h"
#include "train/features.h"
#include "api/run.h"

#define ATOL 1e-4
#define RTOL 1e-4
#define NTOT (CALREF_N + CALREF_NV)

/* ---- the fixture's images through the tiny model ---- */

static float g_x[NTOT * CALREF_E];                  /* pooled embeddings   */
static float g_dense[NTOT * CALREF_T * CALREF_E];   /* every token's        */
static int g_labels[NTOT];
static char g_zs[4200];
static char *g_names[CALREF_K];
static double g_max; /* largest |C - reference| of the logits */

/* gen_calip_ref.py's pixels: image b, flat index i over (3, S, S) */
static void formula_pixels(float *px, int b0, int n, int S) {
    int64_t m = 3 * (int64_t)S * S;
    for (int b = 0; b < n; b++)
        for (int64_t i = 0; i < m; i++) {
            double v = (double)i, bb = b0 + b;
            px[b * m + i] = (float)(sin(0.1 * v + 0.7 * bb) * cos(0.013 * v * (bb + 1)));
        }
}

static bool setup(void) {
    if (g_clip) return true;
    g_clip = ct_clip_load(TINY_DIR, NULL);
    CHECK_MSG(g_clip != NULL, "tiny model: %s", ct_last_error());
    if (!g_clip) return false;
    const ct_clip_config *c = ct_clip_get_config(g_clip);
    CHECK(c->embed_dim == CALREF_E);
    int S = c->image_size;
    float *px = malloc((size_t)NTOT * 3 * S * S * sizeof *px);
    formula_pixels(px, 0, NTOT, S);
    ct_graph *g = ct_graph_create(0);
    ct_graph_set_grad(g, false);
    int64_t shape[4] = {NTOT, 3, S, S};
    ct_clip_image_out io = {0};
    ct_tensor *emb = ct_clip_encode_image(g, g_clip, ct_graph_wrap(g, px, 4, shape), NULL, true,
                                          &io);
    CHECK_MSG(emb && io.dense, "encode: %s", ct_last_error());
    bool ok = emb && io.dense && io.dense->shape[1] == CALREF_T;
    if (ok) {
        memcpy(g_x, emb->data, sizeof g_x);
        memcpy(g_dense, io.dense->data, sizeof g_dense);
    }
    ct_graph_free(g);
    free(px);
    for (int i = 0; i < CALREF_NV; i++) g_labels[CALREF_N + i] = calref_yv[i];
    snprintf(g_zs, sizeof g_zs, "%s/zs.npy", ct_test_tmpdir());
    int64_t ws[2] = {CALREF_K, CALREF_E};
    CHECK_OK(ct_npy_write(g_zs, CT_F32, 2, ws, calref_W));
    static char names[CALREF_K][16];
    for (int k = 0; k < CALREF_K; k++) {
        snprintf(names[k], sizeof names[k], "class_%d", k);
        g_names[k] = names[k];
    }
    return ok;
}

/* images [i0, i0 + n) as features carrying their dense tokens */
static ct_features feats(int i0, int n) {
    return (ct_features){.n = n, .dim = CALREF_E, .x = g_x + (int64_t)i0 * CALREF_E,
                         .labels = g_labels + i0, .n_tokens = CALREF_T,
                         .dense = g_dense + (int64_t)i0 * CALREF_T * CALREF_E};
}

static ct_features g_val;

static ct_task task(void) {
    g_val = feats(CALREF_N, CALREF_NV);
    return (ct_task){.clip = g_clip, .dataset_name = "synthetic", .n_classes = CALREF_K,
                     .classnames = g_names, .val_feats = &g_val, .seed = 1};
}

static void *make(const ct_task *t, const char *extra, ct_status *st) {
    const ct_method *m = ct_method_find("calip");
    ct_kv hp = {0};
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    CHECK_OK(ct_kv_set(&hp, "zs_weights", g_zs));
    /* the fixture computes the official's constant 100 (test_clip_scale
     * checks the default, the model's exp(logit_scale)) */
    CHECK_OK(ct_kv_set(&hp, "clip_scale", "100"));
    CHECK_OK(ct_kv_parse(&hp, extra));
    void *s = NULL;
    *st = m->create(t, &hp, &s);
    if (*st == CT_OK) *st = ct_kv_check_used(&hp, "calip");
    ct_kv_free(&hp);
    return s;
}

static float *betas_of(void *s) {
    ct_tensor *p[2];
    int np = ct_method_find("calip")->params(s, p, 2);
    CHECK(np == 1 && p[0]->numel == 3);
    return p[0]->data;
}

static void close_to(const char *name, const float *got, const double *want, size_t n) {
    double *g = malloc(n * sizeof *g);
    for (size_t i = 0; i < n; i++) {
        g[i] = got[i];
        double d = fabs(g[i] - want[i]);
        g_max = d > g_max ? d : g_max;
    }
    CHECK_CLOSE_D(name, g, want, n, ATOL, RTOL);
    free(g);
}

static int val_hits(void *s) {
    float sc[CALREF_NV * CALREF_K];
    CHECK_OK(ct_predict(ct_method_find("calip"), s, &g_val, sc));
    int hits = 0;
    for (int i = 0; i < CALREF_NV; i++) {
        int best = 0;
        for (int k = 1; k < CALREF_K; k++)
            if (sc[i * CALREF_K + k] > sc[i * CALREF_K + best]) best = k;
        hits += best == calref_yv[i];
    }
    return hits;
}

/* ---- parity ---- */

static void test_dense_parity(void) {
    if (!setup()) return;
    close_to("dense features", g_dense, calref_dense, (size_t)CALREF_N * CALREF_T * CALREF_E);
    /* the global feature CALIP takes from the pooled embedding is token 0 */
    for (int i = 0; i < CALREF_N; i++)
        CHECK_CLOSE_F("pooled = dense token 0", g_x + i * CALREF_E,
                      g_dense + (int64_t)i * CALREF_T * CALREF_E, CALREF_E, 1e-6, 1e-6);
    printf("    dense features: max |delta| %.3g\n", g_max);
}

static void test_logits_parity(void) {
    if (!setup()) return;
    static const struct {
        const char *name, *hp;
        const float *betas;
        const double *terms[4];
    } cases[] = {
        {"default", calref_default_hp, calref_default_betas,
         {calref_default_zs, calref_default_l1, calref_default_l2, calref_default_logits}},
        {"temps_all", calref_temps_all_hp, calref_temps_all_betas,
         {calref_temps_all_zs, calref_temps_all_l1, calref_temps_all_l2,
          calref_temps_all_logits}},
    };
    const ct_method *m = ct_method_find("calip");
    ct_features f = feats(0, CALREF_N);
    ct_task t = task();
    g_max = 0;
    for (int c = 0; c < 2; c++) {
        ct_status st;
        void *s = make(&t, cases[c].hp, &st);
        CHECK_OK(st);
        if (!s) continue;
        float *b = betas_of(s), sc[CALREF_N * CALREF_K];
        static const char *const what[4] = {"zs", "l1 (text updated by the image)",
                                             "l2 (pooled image updated by the text)", "logits"};
        for (int j = 0; j < 4; j++) {
            for (int q = 0; q < 3; q++) b[q] = j == 3 ? cases[c].betas[q] : (float)(q == j);
            CHECK_OK(ct_predict(m, s, &f, sc));
            char name[128];
            snprintf(name, sizeof name, "%s: %s", cases[c].name, what[j]);
            close_to(name, sc, cases[c].terms[j], CALREF_N * CALREF_K);
        }
        m->destroy(s);
    }
    /* the search fixture's winner is robust to prediction margins < 1e-3 */
    CHECK_MSG(g_max < 2.5e-4, "logits max |delta| %.3g: the search parity assumes < 2.5e-4",
              g_max);
    printf("    logits (zs, l1, l2, sum; 2 settings): max |delta| %.3g\n", g_max);
}

static void test_search_parity(void) {
    if (!setup()) return;
    ct_task t = task();
    const ct_method *m = ct_method_find("calip");
    char set[64];
    snprintf(set, sizeof set, "steps=%d", CALREF_STEPS);
    ct_status st;
    void *s = make(&t, set, &st);
    CHECK_OK(st);
    if (!s) return;
    CHECK_OK(m->fit(s, &t));
    float *b = betas_of(s);
    CHECK_MSG(b[0] == 1 && fabs(b[1] - calref_beta2) <= 1e-6 && fabs(b[2] - calref_beta3) <= 1e-6,
              "searched betas (%g, %g, %g), expected (1, %.9g, %.9g)", b[0], b[1], b[2],
              calref_beta2, calref_beta3);
    int hits = val_hits(s);
    CHECK_MSG(hits == calref_hits, "val hits %d, expected %d", hits, calref_hits);
    m->destroy(s);
    /* the official 200 x 200 grid holds the 20 x 20 one (every 10th point) */
    s = make(&t, "", &st);
    CHECK_OK(st);
    if (!s) return;
    CHECK_OK(m->fit(s, &t));
    int hits200 = val_hits(s);
    b = betas_of(s);
    CHECK_MSG(hits200 >= calref_hits, "200 x 200 grid: %d val hits < %d", hits200, calref_hits);
    CHECK(b[1] >= 0.001f && b[1] <= 2 && b[2] >= 0.001f && b[2] <= 0.1f);
    printf("    search: %dx%d grid beta2 %.4g beta3 %.4g, %d/%d val (first point %d); 200x200: "
           "beta2 %.4g beta3 %.4g, %d/%d\n", CALREF_STEPS, CALREF_STEPS, calref_beta2,
           calref_beta3, calref_hits, CALREF_NV, calref_hits_first, b[1], b[2], hits200,
           CALREF_NV);
    m->destroy(s);
}

/* The official loop, brute force over every grid point, on the three terms
 * the method computes (ct_predict with unit betas): what the method's
 * search, which sweeps the beta3 grid by the argmax's changes, must match
 * exactly. */
static void brute_search(void *s, const ct_features *v, int K, int steps, double b2max,
                         double b3max, float *b2_out, float *b3_out, int *hits_out,
                         int *hits_zs) {
    const ct_method *m = ct_method_find("calip");
    float *b = betas_of(s), keep[3] = {b[0], b[1], b[2]};
    float *t = malloc(3 * (size_t)v->n * K * sizeof *t);
    for (int j = 0; j < 3; j++) {
        for (int q = 0; q < 3; q++) b[q] = (float)(q == j);
        CHECK_OK(ct_predict(m, s, v, t + j * v->n * K));
    }
    memcpy(b, keep, sizeof keep);
    int best = 0;
    *b2_out = *b3_out = 0;
    *hits_zs = 0;
    for (int64_t r = 0; r < v->n; r++) {
        const float *z = t + r * K;
        int arg = 0;
        for (int k = 1; k < K; k++) arg = z[k] > z[arg] ? k : arg;
        *hits_zs += arg == v->labels[r];
    }
    for (int i = 0; i < steps; i++)
        for (int j = 0; j < steps; j++) {
            double b2 = i * (b2max - 0.001) / steps + 0.001;
            double b3 = j * (b3max - 0.001) / steps + 0.001;
            int hits = 0;
            for (int64_t r = 0; r < v->n; r++) {
                const float *z = t + r * K, *a = z + v->n * K, *c = a + v->n * K;
                double bv = 0;
                int arg = 0;
                for (int k = 0; k < K; k++) {
                    double vk = (keep[0] * (double)z[k] + b2 * a[k]) + b3 * c[k];
                    if (k == 0 || vk > bv) bv = vk, arg = k;
                }
                hits += arg == v->labels[r];
            }
            if (hits > best) best = hits, *b2_out = (float)b2, *b3_out = (float)b3;
        }
    *hits_out = best;
    free(t);
}

static void test_search_sweep(void) {
    if (!setup()) return;
    /* random features, 40 classes and wide ranges: many argmax changes */
    enum { NV = 150, K = 40, T = CALREF_T, E = CALREF_E };
    static float x[NV * E], dense[NV * T * E], w[K * E];
    static int y[NV];
    ct_rng r;
    ct_rng_init(&r, 5);
    ct_rng_fill_normal(&r, dense, NV * T * E, 0, 1);
    ct_rng_fill_normal(&r, w, K * E, 0, 1);
    for (int i = 0; i < NV; i++) {
        y[i] = (int)ct_rng_below(&r, K);
        /* the class token leans a little to its class, the patches more */
        for (int tk = 0; tk < T; tk++)
            for (int d = 0; d < E; d++)
                dense[(i * T + tk) * E + d] += (tk ? 0.6f : 0.3f) * w[y[i] * E + d];
        memcpy(x + i * E, dense + i * T * E, E * sizeof *x);
    }
    char npy[4200];
    snprintf(npy, sizeof npy, "%s/zs_sweep.npy", ct_test_tmpdir());
    int64_t shape[2] = {K, E};
    CHECK_OK(ct_npy_write(npy, CT_F32, 2, shape, w));
    static char *names[K];
    for (int k = 0; k < K; k++) names[k] = "c";
    ct_features v = {.n = NV, .dim = E, .x = x, .labels = y, .n_tokens = T, .dense = dense};
    ct_task t = {.clip = g_clip, .n_classes = K, .classnames = names, .val_feats = &v};
    static const char *const sets[2] = {"beta2_max=3 beta3_max=2", "beta2_max=0.5 beta3_max=4 "
                                        "steps=97 alpha_t=0.2"};
    for (int q = 0; q < 2; q++) {
        char set[256];
        snprintf(set, sizeof set, "zs_weights=%s %s", npy, sets[q]);
        ct_status st;
        void *s = make(&t, set, &st);
        CHECK_OK(st);
        if (!s) continue;
        float b2, b3;
        int hits, hits_zs, steps = q ? 97 : 200;
        brute_search(s, &v, K, steps, q ? 0.5 : 3, q ? 4 : 2, &b2, &b3, &hits, &hits_zs);
        CHECK_OK(ct_method_find("calip")->fit(s, &t));
        float *b = betas_of(s);
        CHECK_MSG(b[1] == b2 && b[2] == b3, "%s: sweep (%.9g, %.9g), brute force (%.9g, %.9g)",
                  sets[q], b[1], b[2], b2, b3);
        printf("    sweep = brute force (%s): beta2 %.4g beta3 %.4g, %d/%d val (zs term "
               "alone %d)\n", sets[q], b2, b3, hits, NV, hits_zs);
        ct_method_find("calip")->destroy(s);
    }
}

/* ---- the searched betas round-trip ---- */

static void test_checkpoint_round_trip(void) {
    if (!setup()) return;
    ct_task t = task();
    const ct_method *m = ct_method_find("calip");
    ct_status st;
    void *s = make(&t, "", &st);
    CHECK_OK(st);
    if (!s) return;
    CHECK_OK(m->fit(s, &t));
    ct_features f = feats(0, NTOT);
    float fitted[NTOT * CALREF_K], fresh[NTOT * CALREF_K], loaded[NTOT * CALREF_K];
    CHECK_OK(ct_predict(m, s, &f, fitted));
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/rt", ct_test_tmpdir());
    mkdir(dir, 0777);
    CHECK_OK(ct_run_save_learned(m, s, dir));
    m->destroy(s);
    /* as eval reloads a run: created from the options, no val, no fit */
    ct_task t2 = task();
    t2.val_feats = NULL;
    s = make(&t2, "", &st);
    CHECK_OK(st);
    if (!s) return;
    CHECK_OK(ct_predict(m, s, &f, fresh));
    CHECK_MSG(memcmp(fresh, fitted, sizeof fresh) != 0,
              "unsearched predictions equal the searched ones: the test proves nothing");
    CHECK_OK(ct_run_load_learned(m, s, dir));
    CHECK_OK(ct_predict(m, s, &f, loaded));
    CHECK_MSG(!memcmp(loaded, fitted, sizeof loaded), "predictions differ after the round trip");
    m->destroy(s);
}

/* ---- errors ---- */

static void error_has(ct_status s, ct_status want, const char *needle) {
    CHECK_MSG(s == want && strstr(ct_last_error(), needle), "status %s, message \"%s\"; wanted "
              "%s and \"%s\"", ct_status_str(s), ct_last_error(), ct_status_str(want), needle);
}

static void test_errors(void) {
    if (!setup()) return;
    ct_task t = task();
    const ct_method *m = ct_method_find("calip");
    CHECK(m->dense_features && m->fit && !m->loss);
    static const struct {
        const char *set, *needle;
    } bad[] = {
        {"alpha_t=0", "alpha_t=0"}, {"alpha_s=-1", "alpha_s=-1"}, {"spatial=cls", "spatial=cls"},
        {"steps=0", "steps=0"},     {"search=2", "search=2"},     {"beta2=nan", "beta2=nan"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ct_status st;
        void *s = make(&t, bad[i].set, &st);
        error_has(st, CT_ERR_ARG, bad[i].needle);
        if (s) m->destroy(s);
    }
    ct_status st;
    void *s = make(&t, "", &st);
    CHECK_OK(st);
    if (!s) return;
    /* features computed without dense tokens (a method that did not ask) */
    ct_features f = feats(0, CALREF_N);
    f.dense = NULL, f.n_tokens = 0;
    float sc[CALREF_N * CALREF_K];
    error_has(ct_predict(m, s, &f, sc), CT_ERR_ARG, "no dense");
    ct_features v = g_val;
    v.dense = NULL, v.n_tokens = 0;
    t.val_feats = &v;
    error_has(m->fit(s, &t), CT_ERR_ARG, "no dense");
    /* only the class token: no patches */
    f = feats(0, CALREF_N);
    f.n_tokens = 1;
    error_has(ct_predict(m, s, &f, sc), CT_ERR_ARG, "no spatial tokens");
    m->destroy(s);
}

/* ---- Fashion-MNIST through ct_run ---- */

/* The normalised class means of the 16-shot training features (seed 1, as
 * fashion_mnist_runs draws them), as a zs_weights .npy: a classifier in the
 * image space that, unlike the random text tower's, carries information. */
static bool class_means_npy(const char *path) {
    const char *bpe = ct_test_clip_bpe();
    char vocab[4096], cache[4200];
    snprintf(vocab, sizeof vocab, "%s/vocab.json", bpe);
    snprintf(cache, sizeof cache, "%s/fm_cache", ct_test_tmpdir());
    ct_bundle bundle = {0};
    ct_splits sp = {0};
    CHECK_OK(ct_bundle_load(TINY_DIR, vocab, NULL, true, &bundle));
    CHECK_OK(ct_data_open("fashion-mnist", &sp));
    ct_dataset *tr = sp.train ? ct_dataset_fewshot(sp.train, 16, 1) : NULL;
    ct_features f = {0};
    bool ok = bundle.clip && tr;
    if (ok) {
        ct_feature_req r = {.clip = bundle.clip, .pre = &bundle.pre, .data = tr,
                            .cache_dir = cache, .batch = 64};
        ct_status st = ct_features_get(&r, &f);
        CHECK_OK(st);
        ok = st == CT_OK;
    }
    if (ok) {
        int K = tr->n_classes, E = f.dim;
        float *w = calloc((size_t)K * E, sizeof *w);
        for (int64_t i = 0; i < f.n; i++) {
            double ss = 0;
            for (int d = 0; d < E; d++) ss += (double)f.x[i * E + d] * f.x[i * E + d];
            for (int d = 0; d < E; d++) w[f.labels[i] * E + d] += f.x[i * E + d] / sqrt(ss);
        }
        int64_t shape[2] = {K, E};
        CHECK_OK(ct_npy_write(path, CT_F32, 2, shape, w)); /* rows normalised on load */
        free(w);
    }
    ct_features_free(&f);
    ct_dataset_free(tr);
    ct_splits_free(&sp);
    ct_bundle_free(&bundle);
    return ok;
}

static void test_fashion_mnist(void) {
    /* CALIP trains nothing. With the tiny random CLIP the text features match
     * nothing, so beside zero-shot the runs also give CALIP an informative
     * classifier (the class means of the training features, zs_weights=) and
     * compare it with that classifier alone (beta2 = beta3 = 0, no search).
     * The search runs on the run's val split (4 per class at 16 shots). */
    const char *methods[3] = {"zeroshot", "calip", "calip"};
    const char *sets[3] = {"", "", "search=0 beta2=0 beta3=0"};
    ct_run_result res[3] = {{0}};
    if (!fashion_mnist_runs(methods, sets, 3, 2000, "fmcalip", res, NULL)) return;
    printf("    Fashion-MNIST 16-shot seed 1, first 2000 test images, tiny random CLIP:\n"
           "      text classifier: zero-shot %.2f%%, CALIP betas 0 %.2f%%, CALIP searched "
           "%.2f%% (val %.2f%%)\n", 100 * res[0].top1, 100 * res[2].top1, 100 * res[1].top1,
           100 * res[1].val_top1);
    CHECK_MSG(res[2].top1 == res[0].top1, "CALIP with beta2 = beta3 = 0 is zero-shot: %.4f vs "
              "%.4f", res[2].top1, res[0].top1);
    CHECK_MSG(res[1].top1 >= res[0].top1, "CALIP %.4f vs zero-shot %.4f", res[1].top1,
              res[0].top1);
    char npy[4200], set_s[4400], set_0[4400];
    snprintf(npy, sizeof npy, "%s/fm_means.npy", ct_test_tmpdir());
    if (!class_means_npy(npy)) return;
    snprintf(set_s, sizeof set_s, "zs_weights=%s", npy);
    snprintf(set_0, sizeof set_0, "zs_weights=%s search=0 beta2=0 beta3=0", npy);
    const char *m2[2] = {"calip", "calip"};
    const char *s2[2] = {set_0, set_s};
    ct_run_result r2[2] = {{0}};
    if (!fashion_mnist_runs(m2, s2, 2, 2000, "fmcalipm", r2, NULL)) return;
    printf("      class-mean classifier: alone %.2f%%, CALIP searched %.2f%% (val %.2f%% vs "
           "%.2f%%)\n", 100 * r2[0].top1, 100 * r2[1].top1, 100 * r2[1].val_top1,
           100 * r2[0].val_top1);
    CHECK_MSG(r2[0].top1 > res[0].top1 + 0.2, "class means %.4f vs zero-shot %.4f: not the "
              "informative classifier this part needs", r2[0].top1, res[0].top1);
    CHECK_MSG(r2[1].top1 >= r2[0].top1, "CALIP %.4f vs its classifier alone %.4f", r2[1].top1,
              r2[0].top1);
}

/* clip_scale's default is the model's exp(logit_scale): the same scores as
 * that number given, other than 100's. */
static void test_clip_scale(void) {
    if (!setup()) return;
    const ct_method *m = ct_method_find("calip");
    ct_features f = feats(0, CALREF_N);
    ct_task t = task();
    char set[64];
    float e = expf(ct_clip_find_tensor(g_clip, "logit_scale")->data[0]);
    snprintf(set, sizeof set, "search=0 clip_scale=%.9g", (double)e);
    const char *sets[3] = {"search=0 clip_scale=model", set, "search=0"};
    float sc[3][CALREF_N * CALREF_K];
    for (int k = 0; k < 3; k++) {
        ct_status st;
        void *s = make(&t, sets[k], &st);
        CHECK_OK(st);
        if (!s) return;
        CHECK_OK(ct_predict(m, s, &f, sc[k]));
        m->destroy(s);
    }
    double d01 = 0, d02 = 0;
    for (int i = 0; i < CALREF_N * CALREF_K; i++) {
        d01 = fmax(d01, fabs((double)sc[0][i] - sc[1][i]));
        d02 = fmax(d02, fabs((double)sc[0][i] - sc[2][i]));
    }
    CHECK_MSG(fabsf(e - 100) > 1, "the test model's exp(logit_scale) is %g: pick another", e);
    CHECK_MSG(d01 < 1e-4, "clip_scale=model vs %g: max |delta| %g", e, d01);
    CHECK_MSG(d02 > 1e-2, "clip_scale=model vs 100: max |delta| only %g", d02);
    CHECK(strstr(m->defaults, "clip_scale=model") != NULL);
}

int main(void) {
    RUN(test_dense_parity);
    RUN(test_clip_scale);
    RUN(test_logits_parity);
    RUN(test_search_parity);
    RUN(test_search_sweep);
    RUN(test_checkpoint_round_trip);
    RUN(test_errors);
    RUN(test_fashion_mnist);
    ct_clip_free(g_clip);
    ct_tokenizer_free(g_tok);
    return ct_test_summary();
}
