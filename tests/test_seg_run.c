/* Segmentation runs (src/api/segment.c, ct_run and saved runs on a
 * segmentation dataset, the maskclip method):
 *   - ct_seg_upsample / _argmax against torch's bilinear interpolate with
 *     align_corners=False (tests/fixtures/segupsample_ref.h,
 *     tools/ref/gen_segupsample_ref.py), and their argument checks;
 *   - the whole-image geometry (ct_seg_preprocess);
 *   - ct_run of maskclip on the scenes set (vocseg:) with the shipped model:
 *     the label maps it writes (predictions/), read back and scored here
 *     with ct_seg_confusion_add, give exactly the run's metrics; metrics.json,
 *     overlays.png and report.md are there; the refinements (PD, KS) run;
 *   - the saved run: eval gives the same metrics, files are labelled as in
 *     the run, the refusals (classification evaluate / predict, methods
 *     that label whole images on label maps and the reverse). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/json.h"
#include "cliptune.h"
#include "fixtures/segupsample_ref.h"
#include "harness.h"

#define FM_DIR "/usr/share/datasets/fashion-mnist"
#define MODEL_DIR CT_SOURCE_DIR "/models/cliptune-small"

#define CHECK_ERR_HAS(word)                                                                  \
    CHECK_MSG(strstr(ct_last_error(), (word)) != NULL, "error message \"%s\" lacks \"%s\"", \
              ct_last_error(), (word))

/* ---- upsampling ------------------------------------------------------------ */

static void test_upsample_ref(void) {
    for (int c = 0; c < SUREF_N; c++) {
        const int *d = suref_dims[c];
        int gh = d[0], gw = d[1], K = d[2], H = d[3], W = d[4];
        size_t n = (size_t)H * (size_t)W;
        float *out = malloc(n * (size_t)K * sizeof *out);
        uint8_t *am = malloc(n);
        CHECK_OK(ct_seg_upsample(suref_in[c], gh, gw, K, H, W, out));
        CHECK_OK(ct_seg_upsample_argmax(suref_in[c], gh, gw, K, H, W, am));
        char name[64];
        snprintf(name, sizeof name, "case %d (%dx%d -> %dx%d)", c, gh, gw, H, W);
        CHECK_CLOSE_F(name, out, suref_out[c], (int64_t)(n * (size_t)K), 2e-6, 1e-6);
        int64_t differ = 0;
        for (size_t i = 0; i < n; i++) {
            if (am[i] == suref_argmax[c][i]) continue;
            /* only a float-level tie may resolve otherwise */
            const float *r = suref_out[c] + i * (size_t)K;
            if (fabsf(r[am[i]] - r[suref_argmax[c][i]]) > 1e-5f) differ++;
        }
        CHECK_MSG(differ == 0, "%s: %lld arg-max pixels differ from torch", name,
                  (long long)differ);
        free(out), free(am);
    }
}

static void test_upsample_errors(void) {
    float s[12] = {0};
    uint8_t p[4];
    CHECK(ct_seg_upsample(NULL, 2, 2, 3, 2, 2, (float *)p) == CT_ERR_ARG);
    CHECK(ct_seg_upsample_argmax(s, 0, 2, 3, 2, 2, p) == CT_ERR_ARG);
    CHECK(ct_seg_upsample_argmax(s, 2, 2, 3, 0, 2, p) == CT_ERR_ARG);
    CHECK(ct_seg_upsample_argmax(s, 2, 2, 3, 2, 2, NULL) == CT_ERR_ARG);
    CHECK(ct_seg_upsample_argmax(s, 1, 1, 300, 2, 2, p) == CT_ERR_ARG);
    CHECK_ERR_HAS("256");
    /* ties: the first class */
    CHECK_OK(ct_seg_upsample_argmax(s, 2, 2, 3, 2, 2, p));
    CHECK(p[0] == 0 && p[3] == 0);
}

static void test_geometry(void) {
    ct_preprocess_cfg pre, seg;
    ct_preprocess_cfg_openai(&pre, 224);
    ct_seg_preprocess(&pre, 224, &seg);
    int h = 0, w = 0;
    CHECK_OK(ct_preprocess_out_size(&seg, 500, 375, &h, &w));
    CHECK_MSG(h == 224 && w == 224, "%dx%d", h, w);
    CHECK(seg.crop_h == 0 && seg.resample == pre.resample && seg.mean[1] == pre.mean[1]);
}

/* ---- runs on the scenes set ---------------------------------------------- */

static char g_root[2048], g_spec[2100], g_cache[2100];
static ct_model *g_model;
static ct_splits g_sp;

static bool setup(void) {
    if (g_model) return true;
    struct stat st;
    if (stat(FM_DIR "/t10k-labels-idx1-ubyte.gz", &st) != 0 ||
        stat(FM_DIR "/train-images-idx3-ubyte.gz", &st) != 0) {
        ct_test_skip("no Fashion-MNIST at " FM_DIR);
        return false;
    }
    snprintf(g_root, sizeof g_root, "%s/scenes", ct_test_tmpdir());
    snprintf(g_spec, sizeof g_spec, "vocseg:%s", g_root);
    snprintf(g_cache, sizeof g_cache, "%s/cache", ct_test_tmpdir());
    ct_scenes_cfg cfg = ct_scenes_cfg_default();
    cfg.n_train = 16, cfg.n_val = 4, cfg.n_test = 40, cfg.seed = 3;
    CHECK_OK(ct_data_make_scenes(&cfg, g_root));
    CHECK_OK(ct_data_open(g_spec, &g_sp));
    ct_model_opts o = {.need_tokenizer = true};
    g_model = ct_model_load_ex(MODEL_DIR, &o);
    CHECK_MSG(g_model != NULL, "model: %s", ct_last_error());
    return g_model && g_sp.test && g_sp.test->masks;
}

static ct_status run(const char *method, const ct_splits *sp, const char *spec, const char *set,
                     const char *dir, ct_run_result *res) {
    ct_run_cfg cfg = ct_run_cfg_default();
    cfg.model = g_model;
    cfg.data = sp;
    cfg.data_spec = spec;
    cfg.method = ct_method_find(method);
    cfg.set = set;
    cfg.run_dir = dir;
    cfg.cache_dir = g_cache;
    return ct_run(&cfg, res);
}

static bool exists(const char *dir, const char *name) {
    char p[4200];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

/* The label maps in dir/predictions scored against the test label maps
 * here: the metrics the run reported. */
static void check_written_maps(const char *dir, const ct_dataset *test, int K,
                               const ct_run_result *res) {
    int64_t *conf = calloc((size_t)(K + 1) * (size_t)K, sizeof *conf);
    for (int64_t i = 0; i < test->n_items; i++) {
        const char *img = strrchr(test->items[i].path, '/');
        img = img ? img + 1 : test->items[i].path;
        char p[4400], g[4400];
        snprintf(p, sizeof p, "%s/predictions/%.*s.png", dir,
                 (int)(strrchr(img, '.') - img), img);
        snprintf(g, sizeof g, "%s/%s", test->root, test->masks[i]);
        int pw = 0, ph = 0, gw = 0, gh = 0;
        uint8_t *pm = NULL, *gm = NULL;
        CHECK_OK(ct_label_map_load(p, &pw, &ph, &pm));
        CHECK_OK(ct_label_map_load(g, &gw, &gh, &gm));
        CHECK_MSG(pm && gm && pw == gw && ph == gh, "%s: %dx%d, label map %dx%d", p, pw, ph, gw,
                  gh);
        if (pm && gm && pw == gw && ph == gh)
            CHECK_OK(ct_seg_confusion_add(conf, K, pm, gm, (int64_t)pw * ph, 255));
        free(pm), free(gm);
    }
    ct_seg_metrics m = {0};
    CHECK_OK(ct_seg_metrics_compute(conf, K, &m));
    CHECK_NEAR("mIoU from the written maps", m.miou, res->miou, 1e-12, 0);
    CHECK_NEAR("aAcc from the written maps", m.aacc, res->aacc, 1e-12, 0);
    CHECK_NEAR("mAcc from the written maps", m.macc, res->macc, 1e-12, 0);
    ct_seg_metrics_free(&m);
    free(conf);
}

static void test_maskclip_run(void) {
    if (!setup()) return;
    char dir[2100];
    snprintf(dir, sizeof dir, "%s/run-maskclip", ct_test_tmpdir());
    ct_run_result res;
    CHECK_OK(run("maskclip", &g_sp, g_spec, NULL, dir, &res));
    int K = g_sp.train->n_classes;
    CHECK(res.segmentation && !res.multi_label && isnan(res.top1) && isnan(res.map));
    CHECK_MSG(res.miou > 0 && res.miou < 1 && res.aacc > 0 && res.macc > 0, "mIoU %g aAcc %g",
              res.miou, res.aacc);
    /* no quality bar: training-free dense labels from this 4-block 28-pixel
     * model are at chance (docs/methods/maskclip.md); the geometry is
     * checked by test_geometry_run, the patch scores by test_maskclip */
    printf("    maskclip on %lld scenes: mIoU %.2f%%  mAcc %.2f%%  aAcc %.2f%%\n",
           (long long)g_sp.test->n_items, 100 * res.miou, 100 * res.macc, 100 * res.aacc);
    static const char *const files[] = {"config.json", "metrics.json", "report.md",
                                        "overlays.png", "log.txt"};
    for (size_t f = 0; f < sizeof files / sizeof *files; f++)
        CHECK_MSG(exists(dir, files[f]), "%s/%s missing", dir, files[f]);
    CHECK(!exists(dir, "predictions.csv"));
    check_written_maps(dir, g_sp.test, K, &res);
    /* metrics.json */
    char p[4200];
    snprintf(p, sizeof p, "%s/metrics.json", dir);
    cJSON *j = ct_json_load(p);
    CHECK_MSG(j != NULL, "%s", ct_last_error());
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "task");
    const cJSON *mi = cJSON_GetObjectItemCaseSensitive(j, "miou");
    const cJSON *pc = cJSON_GetObjectItemCaseSensitive(j, "per_class");
    CHECK(cJSON_IsString(t) && !strcmp(t->valuestring, "segmentation"));
    CHECK(cJSON_IsNumber(mi) && fabs(mi->valuedouble - res.miou) < 1e-12);
    CHECK(cJSON_IsArray(pc) && cJSON_GetArraySize(pc) == K);
    cJSON_Delete(j);
    snprintf(p, sizeof p, "%s/config.json", dir);
    j = ct_json_load(p);
    CHECK_MSG(j != NULL, "%s", ct_last_error());
    t = cJSON_GetObjectItemCaseSensitive(j, "task");
    CHECK(cJSON_IsString(t) && !strcmp(t->valuestring, "segmentation"));
    cJSON_Delete(j);
    /* overlays.png: an RGB picture, one row per overlaid image */
    ct_image ov = {0};
    snprintf(p, sizeof p, "%s/overlays.png", dir);
    CHECK_OK(ct_image_load(p, &ov));
    CHECK_MSG(ov.h == 8 * 128 + 7 * 4 && ov.w == 3 * 128 + 2 * 4, "overlays %dx%d", ov.w, ov.h);
    ct_image_free(&ov);
    /* the report names the metrics and shows the overlays */
    char *md = NULL;
    size_t n = 0;
    snprintf(p, sizeof p, "%s/report.md", dir);
    CHECK_OK(ct_read_file(p, &md, &n));
    CHECK(md && strstr(md, "mIoU") && strstr(md, "overlays.png") && strstr(md, "Sneaker"));
    free(md);

    /* the refinements run and change the labels */
    ct_run_result r2;
    snprintf(dir, sizeof dir, "%s/run-maskclip-kspd", ct_test_tmpdir());
    CHECK_OK(run("maskclip", &g_sp, g_spec, "pd_thresh=0.5 ks_thresh=1", dir, &r2));
    CHECK_MSG(r2.segmentation && isfinite(r2.miou) && r2.miou != res.miou, "KS+PD mIoU %g",
              r2.miou);
    printf("    maskclip+KS+PD: mIoU %.2f%%  mAcc %.2f%%\n", 100 * r2.miou, 100 * r2.macc);
    /* bad values are refused before any image is read */
    CHECK(run("maskclip", &g_sp, g_spec, "pd_thresh=2", NULL, &r2) == CT_ERR_ARG);
    CHECK_ERR_HAS("pd_thresh");
    CHECK(run("maskclip", &g_sp, g_spec, "bogus=1", NULL, &r2) != CT_OK);
    CHECK_ERR_HAS("bogus");
}

/* A method whose patch scores say where the patch is: class 1 + (row in
 * the lower half) + 2 (column in the right half), so the label maps must
 * show the four quadrants of every image, whatever its size: the grid's
 * orientation and the upsampling through the whole-image geometry. */
static ct_status quad_create(const ct_task *task, const ct_kv *hp, void **st) {
    (void)task, (void)hp;
    *st = malloc(1);
    return *st ? CT_OK : CT_ERR_NOMEM;
}

static void quad_destroy(void *st) { free(st); }

static ct_status quad_patches(void *st, const ct_features *f, float *scores) {
    (void)st;
    int P = f->n_tokens - 1, g = (int)lround(sqrt(P)), K = 11;
    for (int64_t i = 0; i < f->n; i++)
        for (int p = 0; p < P; p++) {
            float *r = scores + ((size_t)i * P + p) * K;
            for (int k = 0; k < K; k++) r[k] = 0;
            int row = p / g, col = p % g;
            r[1 + (2 * row >= g) + 2 * (2 * col >= g)] = 1;
        }
    return CT_OK;
}

static void test_geometry_run(void) {
    if (!setup()) return;
    const ct_method quad = {.name = "quadrants", .category = "test", .setup = "zero-shot",
                            .paper = "-", .defaults = "", .create = quad_create,
                            .destroy = quad_destroy, .dense_features = true,
                            .predict_patches = quad_patches};
    ct_run_cfg cfg = ct_run_cfg_default();
    char dir[2100];
    snprintf(dir, sizeof dir, "%s/run-quadrants", ct_test_tmpdir());
    cfg.model = g_model, cfg.data = &g_sp, cfg.data_spec = g_spec, cfg.method = &quad;
    cfg.run_dir = dir, cfg.cache_dir = g_cache;
    ct_run_result res;
    CHECK_OK(ct_run(&cfg, &res));
    const ct_dataset *t = g_sp.test;
    for (int64_t i = 0; i < t->n_items && i < 5; i++) {
        const char *b = strrchr(t->items[i].path, '/') + 1;
        char p[4400];
        snprintf(p, sizeof p, "%s/predictions/%.*s.png", dir, (int)(strrchr(b, '.') - b), b);
        int w = 0, h = 0;
        uint8_t *m = NULL;
        CHECK_OK(ct_label_map_load(p, &w, &h, &m));
        if (!m) continue;
        /* away from the middle lines, where the bilinear blend changes sides */
        int bad = 0;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                if (abs(2 * y - h) < h / 4 || abs(2 * x - w) < w / 4) continue;
                int want = 1 + (2 * y >= h) + 2 * (2 * x >= w);
                bad += m[(size_t)y * w + x] != want;
            }
        CHECK_MSG(bad == 0, "%s: %d pixels outside their quadrant's class", p, bad);
        free(m);
    }
}

static void test_refusals(void) {
    if (!setup()) return;
    ct_run_result res;
    CHECK(run("zeroshot", &g_sp, g_spec, NULL, NULL, &res) == CT_ERR_UNSUPPORTED);
    CHECK_ERR_HAS("segmentation");
    CHECK(run("coop", &g_sp, g_spec, NULL, NULL, &res) == CT_ERR_UNSUPPORTED);
    /* maskclip on a classification dataset (the same scenes read by voc:) */
    char spec[2200];
    snprintf(spec, sizeof spec, "voc:%s", g_root);
    ct_splits voc = {0};
    CHECK_OK(ct_data_open(spec, &voc));
    if (voc.train) {
        CHECK(run("maskclip", &voc, spec, NULL, NULL, &res) == CT_ERR_UNSUPPORTED);
        CHECK_ERR_HAS("not a segmentation dataset");
    }
    ct_splits_free(&voc);
}

static void test_saved_run(void) {
    if (!setup()) return;
    char dir[2100], out[2200];
    snprintf(dir, sizeof dir, "%s/run-saved", ct_test_tmpdir());
    ct_run_result res;
    CHECK_OK(run("maskclip", &g_sp, g_spec, NULL, dir, &res));
    ct_saved_run *r = ct_saved_run_open(dir);
    CHECK_MSG(r != NULL, "%s", ct_last_error());
    if (!r) return;
    const ct_run_info *ri = ct_saved_run_info(r);
    CHECK(ri->segmentation && !ri->multi_label && !strcmp(ri->method, "maskclip"));
    CHECK_OK(ct_saved_run_attach(r, g_model));
    snprintf(out, sizeof out, "%s/eval", dir);
    ct_seg_metrics m = {0};
    CHECK_OK(ct_saved_run_evaluate_seg(r, g_sp.test, g_spec, g_cache, out, &m));
    CHECK_NEAR("saved-run mIoU", m.miou, res.miou, 1e-12, 0);
    CHECK_NEAR("saved-run aAcc", m.aacc, res.aacc, 1e-12, 0);
    CHECK(exists(out, "metrics.json") && exists(out, "report.md") && exists(out, "overlays.png"));
    check_written_maps(out, g_sp.test, g_sp.train->n_classes, &res);
    ct_seg_metrics_free(&m);
    /* files: the same label maps as the run's */
    char p0[4200], p1[4200], lab[2300];
    snprintf(p0, sizeof p0, "%s/%s", g_sp.test->root, g_sp.test->items[0].path);
    snprintf(p1, sizeof p1, "%s/%s", g_sp.test->root, g_sp.test->items[1].path);
    const char *paths[2] = {p0, p1};
    snprintf(lab, sizeof lab, "%s/labels", dir);
    int K = g_sp.train->n_classes;
    int64_t px[2 * 11];
    CHECK_OK(ct_saved_run_segment_files(r, paths, 2, lab, px));
    for (int i = 0; i < 2; i++) {
        const char *b = strrchr(paths[i], '/') + 1;
        char a[4400], w[4400];
        snprintf(a, sizeof a, "%s/%.*s.png", lab, (int)(strrchr(b, '.') - b), b);
        snprintf(w, sizeof w, "%s/predictions/%.*s.png", dir, (int)(strrchr(b, '.') - b), b);
        int aw, ah, ww, wh;
        uint8_t *am = NULL, *wm = NULL;
        CHECK_OK(ct_label_map_load(a, &aw, &ah, &am));
        CHECK_OK(ct_label_map_load(w, &ww, &wh, &wm));
        CHECK_MSG(am && wm && aw == ww && ah == wh && !memcmp(am, wm, (size_t)aw * ah),
                  "%s differs from %s", a, w);
        int64_t tot = 0;
        for (int k = 0; k < K; k++) tot += px[i * K + k];
        CHECK_MSG(tot == (int64_t)aw * ah, "class pixels %lld of %d", (long long)tot, aw * ah);
        free(am), free(wm);
    }
    const char *twice[2] = {p0, p0};
    CHECK(ct_saved_run_segment_files(r, twice, 2, lab, NULL) == CT_ERR_ARG);
    CHECK_ERR_HAS("separate");
    /* what a segmentation run does not do */
    ct_metrics cm = {0};
    CHECK(ct_saved_run_evaluate(r, g_sp.test, g_spec, g_cache, NULL, &cm) == CT_ERR_ARG);
    CHECK_ERR_HAS("ct_saved_run_evaluate_seg");
    float probs[2 * 11];
    CHECK(ct_saved_run_predict_files(r, paths, 2, probs) == CT_ERR_UNSUPPORTED);
    CHECK_ERR_HAS("labels pixels");
    ct_saved_run_free(r);
}

/* A protocol's table and plot name the metric its cells hold. */
static void test_protocol_report(void) {
    char md[2100], svg[2100];
    snprintf(md, sizeof md, "%s/proto.md", ct_test_tmpdir());
    snprintf(svg, sizeof svg, "%s/proto.svg", ct_test_tmpdir());
    const char *methods[1] = {"maskclip"};
    int shots[1] = {0};
    double mean[1] = {0.25};
    CHECK_OK(ct_report_protocol_metric(md, svg, "t", "mIoU", methods, 1, shots, 1, mean, NULL,
                                       1));
    char *text = NULL;
    size_t n = 0;
    CHECK_OK(ct_read_file(md, &text, &n));
    CHECK_MSG(text && strstr(text, "mIoU (%), one seed.") && strstr(text, "25.0"), "%s",
              text ? text : "");
    free(text);
    CHECK_OK(ct_read_file(svg, &text, &n));
    CHECK(text && strstr(text, "mIoU (%)"));
    free(text);
}

int main(void) {
    RUN(test_protocol_report);
    RUN(test_upsample_ref);
    RUN(test_upsample_errors);
    RUN(test_geometry);
    RUN(test_geometry_run);
    RUN(test_maskclip_run);
    RUN(test_refusals);
    RUN(test_saved_run);
    if (g_model) ct_model_free(g_model);
    ct_splits_free(&g_sp);
    return ct_test_summary();
}
