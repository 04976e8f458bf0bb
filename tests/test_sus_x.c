/* SuS-X (src/methods/sus_x.c).
 *
 *   - parity with tools/ref/gen_sus_x_ref.py (an independent PyTorch
 *     computation of vishaal27/SuS-X's math): the support set retrieved
 *     from an unlabelled pool (rows, keys, classes), scale_'s ranges on val,
 *     the (alpha, beta, gamma) search on val and the val logits there (the
 *     official's exactly), the logits of a test batch at given values; the
 *     ranges of the support against itself without val;
 *   - no label of the pool is read (its features carry none);
 *   - bad hyper-parameters and a missing or small pool fail naming them;
 *   - the learned tensors survive ct_run_save_learned / ct_run_load_learned
 *     into a state that has no pool (as `cliptune eval` builds it): the same
 *     scores;
 *   - on the shipped model (models/cliptune-small), name-only on
 *     Fashion-MNIST: SuS-X beats zero-shot without a training label, and a
 *     rerun reproduces it; pool=SPEC takes the pool from another data spec
 *     (a run key; refused by methods that read no unlabelled images).
 * The synthetic task injects the zero-shot classifier with zs_weights=. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cliptune.h"
#include "fixtures/sus_x_ref.h"
#include "harness.h"
#include "model/bundle.h"
#include "api/run.h"

#define ATOL 1e-4

static double g_max;

static void close_to(const char *name, const float *got, const double *want, size_t n) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (d > g_max) g_max = d;
        if (!(d <= ATOL + ATOL * fabs(want[i])) && bad++ < 3)
            ct_test_fail(__FILE__, __LINE__, "%s[%zu] = %.9g, expected %.9g (tol %g + %g|ref|)",
                         name, i, (double)got[i], want[i], ATOL, ATOL);
    }
}

/* ---- a synthetic task over the fixture's features ---- */

static struct {
    ct_clip *clip;
    char zs_path[4096];
    char *classnames[SREF_K];
    float pool_x[SREF_NP * SREF_E], val_x[SREF_NV * SREF_E];
    int val_y[SREF_NV];
    ct_features pool, val;
    ct_task task;
} g;

static void synth_init(void) {
    ct_clip_config c = {0};
    c.format = CT_CLIP_HF;
    c.image_size = 16, c.patch_size = 8, c.vision_width = 16, c.vision_layers = 1;
    c.vision_heads = 2, c.vision_mlp = 32, c.context_length = 16, c.vocab_size = 64;
    c.text_width = 16, c.text_layers = 1, c.text_heads = 2, c.text_mlp = 32;
    c.embed_dim = SREF_E;
    c.vision_act = c.text_act = CT_QUICK_GELU, c.vision_ln_eps = c.text_ln_eps = 1e-5f;
    c.eot_rule = CT_EOT_ARGMAX;
    g.clip = ct_clip_create(&c, 3);
    CHECK(g.clip != NULL);
    if (!g.clip) return;
    snprintf(g.zs_path, sizeof g.zs_path, "%s/zs.npy", ct_test_tmpdir());
    int64_t shape[2] = {SREF_K, SREF_E};
    CHECK_OK(ct_npy_write(g.zs_path, CT_F32, 2, shape, sref_tzs));
    static char names[SREF_K][16];
    for (int k = 0; k < SREF_K; k++) {
        snprintf(names[k], sizeof names[k], "class_%d", k);
        g.classnames[k] = names[k];
    }
    memcpy(g.pool_x, sref_pool, sizeof g.pool_x);
    memcpy(g.val_x, sref_val, sizeof g.val_x);
    memcpy(g.val_y, sref_yv, sizeof g.val_y);
    /* the pool has no labels: a read of them would crash */
    g.pool = (ct_features){.n = SREF_NP, .dim = SREF_E, .x = g.pool_x};
    g.val = (ct_features){.n = SREF_NV, .dim = SREF_E, .x = g.val_x, .labels = g.val_y};
    g.task = (ct_task){.clip = g.clip, .dataset_name = "synthetic", .n_classes = SREF_K,
                       .classnames = g.classnames, .val_feats = &g.val,
                       .unlabelled_feats = &g.pool, .seed = 1};
}

static const ct_method *method(void) {
    const ct_method *m = ct_method_find("sus-x");
    CHECK(m != NULL);
    return m;
}

/* defaults + the injected classifier + support=M + extra; status of create */
static ct_status create(const ct_task *task, const char *extra, void **st) {
    const ct_method *m = method();
    ct_kv hp = {0};
    char sup[32];
    snprintf(sup, sizeof sup, "support=%d", SREF_M);
    *st = NULL;
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    CHECK_OK(ct_kv_set(&hp, "zs_weights", g.zs_path));
    CHECK_OK(ct_kv_parse(&hp, sup));
    if (extra) CHECK_OK(ct_kv_parse(&hp, extra));
    ct_status s = m->create(task, &hp, st);
    if (s == CT_OK) s = ct_kv_check_used(&hp, m->name);
    if (s != CT_OK && *st) m->destroy(*st), *st = NULL;
    ct_kv_free(&hp);
    return s;
}

static bool scores(void *st, const float *x, int n, float *out) {
    ct_graph *gr = ct_graph_create(0);
    ct_graph_set_grad(gr, false);
    ct_batch b = {.n = n, .x = x};
    ct_tensor *lg = method()->logits(st, gr, &b);
    bool ok = lg && lg->numel == (int64_t)n * SREF_K;
    CHECK_MSG(ok, "logits: %s", ct_last_error());
    if (ok) memcpy(out, lg->data, sizeof(float) * (size_t)n * SREF_K);
    ct_graph_free(gr);
    return ok;
}

static void test_parity(void) {
    g_max = 0;
    const ct_method *m = method();
    void *st = NULL;
    /* the fixture computes the official's constant 100 */
    CHECK_OK(create(&g.task, "clip_scale=100", &st));
    if (!st) return;
    CHECK(m->wants_unlabelled && !m->loss && m->fit);
    CHECK_OK(m->fit(st, &g.task));
    ct_tensor *p[8];
    CHECK(m->params(st, p, 8) == 7);
    for (int i = 0; i < 7; i++) CHECK(!p[i]->requires_grad);
    enum { N = SREF_K * SREF_M };
    CHECK(p[0]->shape[0] == N && p[0]->shape[1] == SREF_E);
    close_to("support keys", p[0]->data, sref_keys, (size_t)N * SREF_E);
    for (int j = 0; j < N; j++)
        CHECK_MSG(p[1]->data[j] == sref_labels[j], "support label %d = %g, expected %d", j,
                  (double)p[1]->data[j], sref_labels[j]);
    close_to("kl_range", p[5]->data, sref_kl_range, 2);
    close_to("affinity_range", p[6]->data, sref_aff_range, 2);
    double got[3] = {p[2]->data[0], p[3]->data[0], p[4]->data[0]};
    double want[3] = {sref_alpha, sref_beta, sref_gamma};
    for (int k = 0; k < 3; k++)
        CHECK_MSG(fabs(got[k] - want[k]) <= 1e-5 * fabs(want[k]), "searched %s %.9g, expected "
                  "%.9g", k == 0 ? "alpha" : k == 1 ? "beta" : "gamma", got[k], want[k]);
    static float lv[SREF_NV * SREF_K], lt[SREF_NT * SREF_K];
    if (scores(st, sref_val, SREF_NV, lv)) {
        close_to("val logits (the official's)", lv, sref_val_logits, SREF_NV * SREF_K);
        int hits = 0;
        for (int i = 0; i < SREF_NV; i++) {
            int best = 0;
            for (int k = 1; k < SREF_K; k++)
                if (lv[i * SREF_K + k] > lv[i * SREF_K + best]) best = k;
            hits += best == sref_yv[i];
        }
        CHECK_MSG(hits == sref_hits, "val hits %d, expected %d", hits, sref_hits);
    }
    p[2]->data[0] = sref_given[0], p[3]->data[0] = sref_given[1], p[4]->data[0] = sref_given[2];
    if (scores(st, sref_x, SREF_NT, lt))
        close_to("test logits", lt, sref_test_logits, SREF_NT * SREF_K);
    m->destroy(st);
    /* without val: the support's own ranges, the init values */
    ct_task nv = g.task;
    nv.val_feats = NULL;
    CHECK_OK(create(&nv, "clip_scale=100 init_alpha=2 init_beta=3 init_gamma=4", &st));
    if (!st) return;
    CHECK_OK(m->fit(st, &nv));
    m->params(st, p, 8);
    close_to("kl_range (support)", p[5]->data, sref_kl_range_s, 2);
    close_to("affinity_range (support)", p[6]->data, sref_aff_range_s, 2);
    CHECK(p[2]->data[0] == 2 && p[3]->data[0] == 3 && p[4]->data[0] == 4);
    m->destroy(st);
    printf("    sus-x: max |delta| %.3g (support, ranges, logits); search alpha %.4g beta %.4g "
           "gamma %.4g, %d/%d val\n", g_max, sref_alpha, sref_beta, sref_gamma, sref_hits,
           SREF_NV);
}

static void test_errors(void) {
    const ct_method *m = method();
    void *st = NULL;
    static const char *bad[][2] = {
        {"support=0", "support=0"},          {"temperature=0", "temperature=0"},
        {"search=2", "search=2"},            {"beta_steps=0", "beta_steps=0"},
        {"gamma_scale=nan", "gamma_scale"},  {"clip_scale=hot", "clip_scale=hot"},
        {"alpha_steps=1000 beta_steps=1000 gamma_steps=100", "too large"},
        {"bogus=1", "bogus"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ct_status s = create(&g.task, bad[i][0], &st);
        CHECK_MSG(s != CT_OK && strstr(ct_last_error(), bad[i][1]), "%s: status %d, %s",
                  bad[i][0], (int)s, s == CT_OK ? "(accepted)" : ct_last_error());
        if (st) m->destroy(st), st = NULL;
    }
    /* fit needs a pool of the model's dimension, at least `support` images */
    ct_task t = g.task;
    t.unlabelled_feats = NULL;
    CHECK_OK(create(&t, NULL, &st));
    if (!st) return;
    CHECK(m->fit(st, &t) == CT_ERR_ARG && strstr(ct_last_error(), "unlabelled"));
    ct_features small = g.pool;
    small.n = SREF_M - 1;
    t.unlabelled_feats = &small;
    CHECK(m->fit(st, &t) == CT_ERR_ARG && strstr(ct_last_error(), "pool of only"));
    ct_features wrong = g.pool;
    wrong.dim = SREF_E / 2, wrong.n = 2;
    t.unlabelled_feats = &wrong;
    CHECK(m->fit(st, &t) == CT_ERR_ARG && strstr(ct_last_error(), "dim"));
    /* a loaded label outside the classes is an error, not an index */
    t.unlabelled_feats = &g.pool;
    CHECK_OK(m->fit(st, &t));
    ct_tensor *p[8];
    m->params(st, p, 8);
    p[1]->data[0] = SREF_K;
    ct_graph *gr = ct_graph_create(0);
    ct_batch b = {.n = 1, .x = sref_x};
    CHECK(m->logits(st, gr, &b) == NULL && strstr(ct_last_error(), "not a class"));
    ct_graph_free(gr);
    m->destroy(st);
}

static void test_round_trip(void) {
    const ct_method *m = method();
    void *a = NULL, *b = NULL;
    CHECK_OK(create(&g.task, NULL, &a));
    if (!a) return;
    CHECK_OK(m->fit(a, &g.task));
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/susx_run", ct_test_tmpdir());
    mkdir(dir, 0777);
    CHECK_OK(ct_run_save_learned(m, a, dir));
    /* as `cliptune eval` rebuilds it: no pool, no val */
    ct_task bare = g.task;
    bare.unlabelled_feats = NULL, bare.val_feats = NULL;
    CHECK_OK(create(&bare, NULL, &b));
    if (b) {
        CHECK_OK(ct_run_load_learned(m, b, dir));
        static float sa[SREF_NT * SREF_K], sb[SREF_NT * SREF_K];
        if (scores(a, sref_x, SREF_NT, sa) && scores(b, sref_x, SREF_NT, sb))
            CHECK_MSG(!memcmp(sa, sb, sizeof sa), "scores differ after save / load");
        m->destroy(b);
    }
    m->destroy(a);
}

/* ---- name-only on Fashion-MNIST with the shipped model ---- */

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

#define SMALL_DIR CT_SOURCE_DIR "/models/cliptune-small"

static void test_learns_fashion_mnist(void) {
    if (!file_exists("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")) {
        ct_test_skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return;
    }
    ct_bundle bundle = {0};
    CHECK_OK(ct_bundle_load(SMALL_DIR, NULL, NULL, true, &bundle));
    ct_splits sp = {0};
    CHECK_OK(ct_data_open("fashion-mnist", &sp));
    if (!bundle.clip || !sp.test) {
        ct_bundle_free(&bundle), ct_splits_free(&sp);
        return;
    }
    char cache[4200];
    snprintf(cache, sizeof cache, "%s/fm_cache", ct_test_tmpdir());
    mkdir(cache, 0777);
    /* a pool of 2000 unlabelled training images (a seeded part of the split),
     * 16-shot val (4 per class) for the search, the first 1000 test images */
    static const struct {
        const char *method, *set;
    } runs[3] = {{"zeroshot", ""}, {"sus-x", "unlabelled=2000"}, {"sus-x", "unlabelled=2000"}};
    ct_run_result res[3];
    for (int r = 0; r < 3; r++) {
        char dir[4300];
        snprintf(dir, sizeof dir, "%s/fm_%s_%d", ct_test_tmpdir(), runs[r].method, r);
        ct_run_cfg rc = ct_run_cfg_default();
        rc.model = ct_model_borrow(&bundle, SMALL_DIR), rc.data = &sp;
        rc.data_spec = "fashion-mnist", rc.method = ct_method_find(runs[r].method);
        rc.set = runs[r].set, rc.shots = 16, rc.seed = 1;
        rc.run_dir = dir, rc.cache_dir = cache, rc.max_test = 1000;
        memset(&res[r], 0, sizeof res[r]);
        CHECK_OK(ct_run(&rc, &res[r]));
        ct_model_free(rc.model);
    }
    printf("    Fashion-MNIST, shipped model, first 1000 test images: zero-shot %.2f%%, sus-x "
           "(name-only, pool of 2000 unlabelled) %.2f%% (rerun %.2f%%)\n", 100 * res[0].top1,
           100 * res[1].top1, 100 * res[2].top1);
    CHECK_MSG(res[1].top1 > res[0].top1 + 0.01, "sus-x %.4f vs zero-shot %.4f", res[1].top1,
              res[0].top1);
    CHECK_MSG(res[1].top1 == res[2].top1, "rerun %.4f, not %.4f", res[2].top1, res[1].top1);
    /* pool=SPEC: another dataset's training split as the pool (here the
     * same files opened again: a seeded 300 of them); methods that read no
     * unlabelled images refuse it */
    for (int r = 0; r < 2; r++) {
        char dir[4300];
        snprintf(dir, sizeof dir, "%s/fm_pool_%d", ct_test_tmpdir(), r);
        ct_run_cfg rc = ct_run_cfg_default();
        rc.model = ct_model_borrow(&bundle, SMALL_DIR), rc.data = &sp;
        rc.data_spec = "fashion-mnist", rc.method = ct_method_find(r ? "tip-adapter" : "sus-x");
        rc.set = r ? "pool=fashion-mnist" : "pool=fashion-mnist unlabelled=300";
        rc.shots = 16, rc.seed = 1;
        rc.run_dir = dir, rc.cache_dir = cache, rc.max_test = 100;
        ct_run_result rr = {0};
        ct_status s = ct_run(&rc, &rr);
        ct_model_free(rc.model);
        if (r) {
            CHECK_MSG(s == CT_ERR_ARG && strstr(ct_last_error(), "pool=fashion-mnist"), "%s",
                      ct_last_error());
            continue;
        }
        CHECK_OK(s);
        char path[4400], *log = NULL;
        size_t nlog = 0;
        snprintf(path, sizeof path, "%s/log.txt", dir);
        CHECK_OK(ct_read_file(path, &log, &nlog));
        CHECK_MSG(log && strstr(log, "features: unlabelled (part of the train split of pool "
                                     "fashion-mnist), 300 images"), "%s", log ? log : "");
        CHECK(log && strstr(log, "from a pool of 300 unlabelled images"));
        free(log);
    }
    ct_bundle_free(&bundle);
    ct_splits_free(&sp);
}

int main(void) {
    synth_init();
    RUN(test_parity);
    RUN(test_errors);
    RUN(test_round_trip);
    RUN(test_learns_fashion_mnist);
    ct_clip_free(g.clip);
    return ct_test_summary();
}
