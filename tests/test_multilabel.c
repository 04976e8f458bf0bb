/* Multi-label runs end to end, on the scenes demonstration set (Fashion-MNIST
 * items composed on a canvas, written in PASCAL VOC's layout by
 * ct_data_make_scenes) and the shipped model (models/cliptune-small):
 *   - DualCoOp learns: its test mAP beats zero-shot's (CLIP's per-class
 *     cosine ranks the images per class just as well as any score) by a
 *     clear margin, with all labels and with half of them unknown;
 *   - a run's files: metrics.json says multi-label and holds the mAP the
 *     result reports, predictions.csv has a probability column per class;
 *   - the saved run evaluates to the same mAP (ct_saved_run_evaluate_ml),
 *     predicts per-class sigmoid probabilities, and refuses the
 *     single-label evaluation;
 *   - partial labels: deterministic, about the asked portion known, and
 *     an error on single-label data;
 *   - a single-label learner (CoOp) is refused on multi-label data.
 * Skipped (not failed) without Fashion-MNIST. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "cliptune.h"
#include "harness.h"

#define FM_DIR "/usr/share/datasets/fashion-mnist"
#define MODEL_DIR CT_SOURCE_DIR "/models/cliptune-small"

static char g_scenes[4096];
static ct_model *g_model;
static ct_splits g_sp;

static bool have_fm(void) {
    struct stat st;
    return stat(FM_DIR "/train-images-idx3-ubyte.gz", &st) == 0 ||
           stat(FM_DIR "/train-images-idx3-ubyte", &st) == 0;
}

/* the scenes set (1000 train, 200 val, 500 test: `cliptune make-scenes` defaults but the sizes) and the shipped model, once */
static bool setup(void) {
    if (g_model) return true;
    if (!have_fm()) {
        ct_test_skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return false;
    }
    snprintf(g_scenes, sizeof g_scenes, "%s/scenes", ct_test_tmpdir());
    ct_scenes_cfg c = ct_scenes_cfg_default();
    c.n_train = 1000, c.n_val = 200, c.n_test = 500, c.seed = 0;
    CHECK_OK(ct_data_make_scenes(&c, g_scenes));
    char spec[4200];
    snprintf(spec, sizeof spec, "voc:%s", g_scenes);
    CHECK_OK(ct_data_open(spec, &g_sp));
    ct_model_opts o = {.need_tokenizer = true};
    g_model = ct_model_load_ex(MODEL_DIR, &o);
    CHECK_MSG(g_model != NULL, "model: %s", ct_last_error());
    return g_model && g_sp.train && g_sp.train->targets && g_sp.test->targets;
}

static ct_status run(const char *method, const char *set, double partial, const char *dir,
                     ct_run_result *res) {
    char spec[4200], cache[4200];
    snprintf(spec, sizeof spec, "voc:%s", g_scenes);
    snprintf(cache, sizeof cache, "%s/cache", ct_test_tmpdir());
    ct_run_cfg cfg = ct_run_cfg_default();
    cfg.model = g_model;
    cfg.data = &g_sp;
    cfg.data_spec = spec;
    cfg.method = ct_method_find(method);
    cfg.set = set;
    cfg.shots = 0;
    cfg.run_dir = dir;
    cfg.cache_dir = cache;
    cfg.partial_labels = partial;
    return ct_run(&cfg, res);
}

/* DualCoOp's settings for this small model (docs/methods/dualcoop.md):
 * the official logit scales saturate the asymmetric loss here */
#define DC_SET "epochs=20 lr=0.01 out_scale=1 cls_token=1"

static double g_zs_map = NAN;

static void test_dualcoop_learns(void) {
    if (!setup()) return;
    ct_run_result zs, dc, half;
    char d_zs[4200], d_dc[4200];
    snprintf(d_zs, sizeof d_zs, "%s/zs", ct_test_tmpdir());
    snprintf(d_dc, sizeof d_dc, "%s/dc", ct_test_tmpdir());
    CHECK_OK(run("zeroshot", "", 0, d_zs, &zs));
    CHECK_OK(run("dualcoop", DC_SET, 0, d_dc, &dc));
    CHECK_OK(run("dualcoop", DC_SET, 0.5, NULL, &half));
    printf("  scenes mAP: zero-shot %.2f%%, dualcoop %.2f%% (val %.2f%%), half the labels "
           "%.2f%%\n", 100 * zs.map, 100 * dc.map, 100 * dc.val_map, 100 * half.map);
    CHECK(zs.multi_label && dc.multi_label && isnan(dc.top1));
    CHECK_MSG(dc.map > zs.map + 0.02, "dualcoop mAP %.4f vs zero-shot %.4f", dc.map, zs.map);
    CHECK_MSG(half.map > zs.map + 0.02, "dualcoop (partial labels 0.5) mAP %.4f vs zero-shot "
              "%.4f", half.map, zs.map);
    CHECK(dc.map_voc07 > 0 && dc.cf1 >= 0 && dc.of1_top3 > 0 && dc.val_map > 0);
    g_zs_map = zs.map;
    /* a method that learns from one label per image is refused, not fed the
     * lowest present class */
    ct_run_result bad;
    CHECK(run("coop", "epochs=1", 0, NULL, &bad) == CT_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(ct_last_error(), "multi-label") != NULL, "%s", ct_last_error());
    /* the same scenes as a segmentation set: no run path yet, said clearly */
    char seg[4200];
    snprintf(seg, sizeof seg, "vocseg:%s", g_scenes);
    ct_splits ss = {0};
    CHECK_OK(ct_data_open(seg, &ss));
    ct_run_cfg sc = ct_run_cfg_default();
    sc.model = g_model, sc.data = &ss, sc.method = ct_method_find("zeroshot"), sc.shots = 0;
    CHECK(ct_run(&sc, &bad) == CT_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(ct_last_error(), "segmentation") != NULL, "%s", ct_last_error());
    ct_splits_free(&ss);

    /* the run's files */
    char path[4300];
    snprintf(path, sizeof path, "%s/metrics.json", d_dc);
    char *text = NULL;
    size_t n = 0;
    CHECK_OK(ct_read_file(path, &text, &n));
    cJSON *mj = text ? cJSON_ParseWithLength(text, n) : NULL;
    const cJSON *task = cJSON_GetObjectItemCaseSensitive(mj, "task");
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(mj, "map");
    CHECK(cJSON_IsString(task) && !strcmp(task->valuestring, "multi-label"));
    CHECK_MSG(cJSON_IsNumber(map) && fabs(map->valuedouble - dc.map) < 1e-12,
              "metrics.json's map is not the run's %.6f", dc.map);
    cJSON_Delete(mj);
    free(text);
    snprintf(path, sizeof path, "%s/predictions.csv", d_dc);
    CHECK_OK(ct_read_file(path, &text, &n));
    CHECK(text && !strncmp(text, "item,labels,unknown,predicted,", 30));
    free(text);

    /* the saved run: the same mAP, sigmoid probabilities */
    ct_saved_run *r = ct_saved_run_open(d_dc);
    CHECK_MSG(r != NULL, "%s", ct_last_error());
    if (!r) return;
    CHECK(ct_saved_run_info(r)->multi_label);
    CHECK_OK(ct_saved_run_attach(r, g_model));
    ct_ml_metrics m = {0};
    char evdir[4300];
    snprintf(evdir, sizeof evdir, "%s/eval", d_dc);
    CHECK_OK(ct_saved_run_evaluate_ml(r, g_sp.test, NULL, NULL, evdir, &m));
    CHECK_MSG(fabs(m.map - dc.map) < 1e-12, "saved run mAP %.17g vs the run's %.17g", m.map,
              dc.map);
    ct_ml_metrics_free(&m);
    ct_metrics sm = {0};
    CHECK(ct_saved_run_evaluate(r, g_sp.test, NULL, NULL, NULL, &sm) == CT_ERR_ARG);
    CHECK(strstr(ct_last_error(), "multi-label") != NULL);
    ct_dataset *few = ct_dataset_head(g_sp.test, 8);
    float *p = malloc((size_t)8 * few->n_classes * sizeof *p);
    CHECK_OK(ct_saved_run_predict(r, few, NULL, p));
    bool probs = true, not_softmax = false;
    for (int i = 0; i < 8; i++) {
        double sum = 0;
        for (int k = 0; k < few->n_classes; k++) {
            float v = p[i * few->n_classes + k];
            probs = probs && v >= 0 && v <= 1;
            sum += v;
        }
        not_softmax = not_softmax || fabs(sum - 1) > 1e-3;
    }
    CHECK_MSG(probs && not_softmax, "multi-label predictions are per-class sigmoid "
              "probabilities");
    free(p);
    ct_dataset_free(few);
    ct_saved_run_free(r);
}

static void test_partial_labels(void) {
    if (!setup()) return;
    const ct_dataset *tr = g_sp.train;
    ct_dataset *a = ct_dataset_partial_labels(tr, 0.3, 7), *b = ct_dataset_partial_labels(tr, 0.3, 7);
    ct_dataset *c = ct_dataset_partial_labels(tr, 0.3, 8);
    CHECK(a && b && c);
    if (!a || !b || !c) return;
    int64_t m = tr->n_items * tr->n_classes, known = 0, same_c = 0;
    for (int64_t i = 0; i < m; i++) {
        CHECK(a->targets[i] == b->targets[i]);
        CHECK(a->targets[i] == -1 || a->targets[i] == tr->targets[i]);
        known += a->targets[i] >= 0;
        same_c += a->targets[i] == c->targets[i];
    }
    double frac = (double)known / (double)m, sd = sqrt(0.3 * 0.7 / (double)m);
    printf("  partial labels 0.3: %.4f of %lld labels known\n", frac, (long long)m);
    CHECK_MSG(fabs(frac - 0.3) < 5 * sd, "known fraction %.4f (want 0.3 +- %.4f)", frac, 5 * sd);
    CHECK(same_c < m); /* another seed, another mask */
    ct_dataset_free(a), ct_dataset_free(b), ct_dataset_free(c);
    /* single-label data has no labels to hide */
    ct_splits fm = {0};
    if (ct_data_open("fashion-mnist", &fm) == CT_OK) {
        CHECK(ct_dataset_partial_labels(fm.test, 0.5, 1) == NULL);
        ct_run_cfg cfg = ct_run_cfg_default();
        ct_dataset *head = ct_dataset_head(fm.test, 20);
        ct_splits small = {ct_dataset_fewshot(fm.train, 1, 1), NULL, head};
        cfg.model = g_model, cfg.data = &small, cfg.method = ct_method_find("zeroshot");
        cfg.shots = 0, cfg.partial_labels = 0.5;
        ct_run_result res;
        CHECK(ct_run(&cfg, &res) == CT_ERR_ARG);
        CHECK(strstr(ct_last_error(), "multi-label") != NULL);
        ct_splits_free(&small);
        ct_splits_free(&fm);
    }
}

int main(void) {
    RUN(test_dualcoop_learns);
    RUN(test_partial_labels);
    ct_model_free(g_model);
    ct_splits_free(&g_sp);
    return ct_test_summary();
}
