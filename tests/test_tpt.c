/* TPT (src/methods/tpt.c) and its AugMix views (src/data/augmix.c):
 *   - the AugMix ops against Pillow 9.4, byte for byte, and the draws'
 *     ranges (tools/ref/gen_tpt_ref.py -> fixtures/methods/tpt_ref.h);
 *   - one image's test-time step on those fixed 16 views against an
 *     independent float64 PyTorch computation: per-view entropies, the kept
 *     views, the average-entropy loss, d loss / d ctx, the context after one
 *     and after two AdamW steps and the tuned prediction; the reset between
 *     images;
 *   - per-image determinism (a prediction does not depend on the other
 *     images), the learned-tensor round trip and init_from a CoOp run;
 *   - Fashion-MNIST through the tiny model: TPT against its own untuned
 *     prompt (steps=0) and zero-shot, reported as measured.
 * The tiny model is tests/fixtures/methods/tiny; the tokenizer comes from
 * tests/fixtures/bpe/clip_subset. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cliptune.h"
#include "data/augmix.h"
#include "fixtures/methods/coop_ref.h"
#include "fixtures/methods/tpt_ref.h"
#include "harness.h"
#include "method_fixture.h"
#include "methods/tpt.h"
#include "api/run.h"

#define NCTX_VALUES (TREF_NCTX * CREF_W)

static ct_task make_task(char *const *classnames, int K) {
    ct_task t = {0};
    t.clip = g_clip, t.tok = g_tok, t.n_classes = K, t.classnames = classnames;
    t.dataset_name = "test", t.seed = 1;
    return t;
}

static ct_status create(const ct_task *task, const char *hp_text, void **state) {
    const ct_method *m = ct_method_find("tpt");
    ct_kv hp = {0};
    ct_status s = ct_kv_parse(&hp, hp_text);
    if (s == CT_OK) s = m->create(task, &hp, state);
    if (s == CT_OK) s = ct_kv_check_used(&hp, "tpt");
    ct_kv_free(&hp);
    return s;
}

static ct_tensor *init_of(void *state) {
    ct_tensor *p[2];
    int n = ct_method_find("tpt")->params(state, p, 2);
    return n == 1 ? p[0] : NULL;
}

static int hexval(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

/* The fixture's base image and its 15 Pillow-made views, by our ops. */
static bool make_views_u8(ct_image views[TREF_V]) {
    bool ok = ct_image_from_pixels(tref_base, TREF_S, TREF_S, 3, &views[0]) == CT_OK;
    for (int v = 1; ok && v < TREF_V; v++) {
        ct_image cur;
        ok = ct_image_from_pixels(tref_base, TREF_S, TREF_S, 3, &cur) == CT_OK;
        for (int j = 0; ok && j < tref_ops[v - 1].n; j++) {
            ct_image next;
            ok = ct_augmix_apply(&cur, (ct_augmix_op)tref_ops[v - 1].op[j], tref_ops[v - 1].v[j],
                                 &next) == CT_OK;
            ct_image_free(&cur);
            cur = next;
        }
        views[v] = cur;
    }
    CHECK_MSG(ok, "views: %s", ct_last_error());
    return ok;
}

static void test_augmix_ops_match_pillow(void) {
    ct_image views[TREF_V] = {{0}};
    if (!make_views_u8(views)) return;
    int n = TREF_S * TREF_S * 3;
    for (int v = 1; v < TREF_V; v++) {
        const char *hex = tref_views_hex[v - 1];
        int bad = 0, first = -1, maxd = 0;
        for (int i = 0; i < n; i++) {
            int want = hexval(hex[2 * i]) * 16 + hexval(hex[2 * i + 1]);
            int d = abs((int)views[v].rgb[i] - want);
            if (d) bad++, first = first < 0 ? i : first;
            maxd = d > maxd ? d : maxd;
        }
        CHECK_MSG(!bad, "view %d (op %d, v %g, %d ops): %d of %d bytes differ from Pillow's "
                  "(first at %d, largest by %d)", v, tref_ops[v - 1].op[0], tref_ops[v - 1].v[0],
                  tref_ops[v - 1].n, bad, n, first, maxd);
    }
    for (int v = 0; v < TREF_V; v++) ct_image_free(&views[v]);
    /* errors: a bad op, bad posterize bits, an empty image */
    ct_image base, out;
    CHECK_OK(ct_image_from_pixels(tref_base, TREF_S, TREF_S, 3, &base));
    CHECK(ct_augmix_apply(&base, CT_AUGMIX_N_OPS, 0, &out) == CT_ERR_ARG && !out.rgb);
    CHECK(ct_augmix_apply(&base, CT_AUGMIX_POSTERIZE, 0, &out) == CT_ERR_ARG && !out.rgb);
    ct_image empty = {0};
    CHECK(ct_augmix_apply(&empty, CT_AUGMIX_EQUALIZE, 0, &out) == CT_ERR_ARG);
    ct_image_free(&base);
}

/* augmix_ops.py's magnitudes at severity 1 for a 32-pixel image, and the
 * whole view's determinism in the generator. */
static void test_augmix_draws_and_views(void) {
    ct_rng r;
    ct_rng_init(&r, 42);
    bool seen_neg_rot = false, seen_pos_rot = false;
    for (int i = 0; i < 2000; i++) {
        double p = ct_augmix_draw(CT_AUGMIX_POSTERIZE, 1, 32, &r);
        double rot = ct_augmix_draw(CT_AUGMIX_ROTATE, 1, 32, &r);
        double sol = ct_augmix_draw(CT_AUGMIX_SOLARIZE, 1, 32, &r);
        double sh = ct_augmix_draw(CT_AUGMIX_SHEAR_X, 1, 32, &r);
        double tr = ct_augmix_draw(CT_AUGMIX_TRANSLATE_Y, 1, 32, &r);
        double tr224 = ct_augmix_draw(CT_AUGMIX_TRANSLATE_X, 1, 224, &r);
        CHECK(p == 4);                                   /* 4 - int(l * 0.4), l < 1 */
        CHECK(rot == (int)rot && fabs(rot) <= 2);        /* int(3 l)                */
        CHECK(sol >= 231 && sol <= 254);                 /* 256 - int(25.6 l)       */
        CHECK(fabs(sh) >= 0.003 - 1e-12 && fabs(sh) < 0.03);
        CHECK(tr == (int)tr && fabs(tr) <= 1);           /* int(l * 32/3 / 10)      */
        CHECK(tr224 == (int)tr224 && fabs(tr224) <= 7);  /* int(l * 224/3 / 10)     */
        seen_neg_rot |= rot < 0, seen_pos_rot |= rot > 0;
        if (ct_test_failures) break;
    }
    CHECK(seen_neg_rot && seen_pos_rot);
    ct_image base;
    CHECK_OK(ct_image_from_pixels(tref_base, TREF_S, TREF_S, 3, &base));
    ct_preprocess_cfg pre;
    ct_preprocess_cfg_openai(&pre, 32);
    enum { N = 3 * 32 * 32 };
    static float a[N], b[N], c[N], d[N];
    ct_rng r1, r2, r3, r4;
    ct_rng_init(&r1, 7), ct_rng_init(&r2, 7), ct_rng_init(&r3, 8), ct_rng_init(&r4, 7);
    CHECK_OK(ct_augmix_view(&base, &pre, 32, 1, true, &r1, a));
    CHECK_OK(ct_augmix_view(&base, &pre, 32, 1, true, &r2, b));
    CHECK_OK(ct_augmix_view(&base, &pre, 32, 1, true, &r3, c));
    CHECK_OK(ct_augmix_view(&base, &pre, 32, 1, false, &r4, d));
    CHECK(!memcmp(a, b, sizeof a));
    CHECK(memcmp(a, c, sizeof a));
    /* the mix is m * crop + (1 - m) * chains: it differs from the crop alone */
    CHECK(memcmp(a, d, sizeof a));
    bool finite = true;
    for (int i = 0; i < N; i++) finite &= isfinite(a[i]);
    CHECK(finite);
    CHECK(ct_augmix_view(&base, &pre, 32, 0, true, &r1, a) == CT_ERR_ARG);
    ct_image_free(&base);
}

/* The fixture views normalised with the tiny model's preprocessing (resize
 * and crop off: they are 32 x 32 already). */
static bool fixture_views(float *px) {
    ct_image views[TREF_V] = {{0}};
    if (!make_views_u8(views)) return false;
    ct_preprocess_cfg pre;
    bool ok = ct_preprocess_cfg_from_hf(TINY_DIR "/preprocessor_config.json", &pre) == CT_OK;
    pre.resize_short = pre.resize_h = pre.resize_w = pre.crop_h = pre.crop_w = 0;
    for (int v = 0; ok && v < TREF_V; v++)
        ok = ct_preprocess(&views[v], &pre, px + (size_t)v * 3 * TREF_S * TREF_S) == CT_OK;
    for (int v = 0; v < TREF_V; v++) ct_image_free(&views[v]);
    CHECK_MSG(ok, "%s", ct_last_error());
    return ok;
}

static void test_parity(void) {
    if (!load_fixture()) return;
    static float px[TREF_V * 3 * TREF_S * TREF_S];
    if (!fixture_views(px)) return;
    ct_task task = make_task((char *const *)cref_classnames, CREF_K);
    const ct_method *m = ct_method_find("tpt");
    void *st = NULL;
    CHECK_OK(create(&task, "n_views=16 selection_p=0.25 steps=1", &st));
    ct_tensor *init = st ? init_of(st) : NULL;
    if (!init) return;
    CHECK(init->numel == NCTX_VALUES);
    /* "a photo of a": the F16 token embeddings, exact */
    compare("initial ctx", init->data, tref_ctx0, NCTX_VALUES, 0, 0);
    float ent[TREF_V], grad[NCTX_VALUES], ctx[NCTX_VALUES], sc[CREF_K], sc2[CREF_K];
    int sel[TREF_V];
    ct_tpt_trace tr = {.entropy = ent, .selected = sel, .grad = grad, .ctx = ctx};
    CHECK_OK(ct_tpt_adapt(st, px, TREF_V, sc, &tr));
    double de = compare("view entropies", ent, tref_entropy, TREF_V, 1e-4, 1e-4);
    CHECK_MSG(tr.n_selected == TREF_NSEL, "kept %d views, want %d", tr.n_selected, TREF_NSEL);
    for (int i = 0; i < TREF_NSEL; i++)
        CHECK_MSG(sel[i] == tref_selected[i], "kept view %d is %d, reference %d", i, sel[i],
                  tref_selected[i]);
    float loss = (float)tr.loss;
    double dl = compare("avg-entropy loss", &loss, tref_s1_losses, 1, 1e-4, 1e-4);
    double dg = compare("d loss / d ctx", grad, tref_s1_grad, NCTX_VALUES, 1e-4, 1e-4);
    double dc = compare("ctx after 1 AdamW step", ctx, tref_s1_ctx, NCTX_VALUES, 1e-4, 1e-4);
    double ds = compare("view-0 scores after 1 step", sc, tref_s1_scores, CREF_K, 1e-4, 1e-4);
    printf("    max |d| entropy %.2g  loss %.2g  grad %.2g  ctx %.2g  scores %.2g\n", de, dl, dg,
           dc, ds);
    /* reset between images: the same views again give the same scores and
     * context (the context was restored and AdamW's moments cleared) */
    float ctx2[NCTX_VALUES];
    ct_tpt_trace tr2 = {.ctx = ctx2};
    CHECK_OK(ct_tpt_adapt(st, px, TREF_V, sc2, &tr2));
    CHECK_MSG(!memcmp(sc, sc2, sizeof sc) && !memcmp(ctx, ctx2, sizeof ctx),
              "a second image's tuning did not start from the initial state");
    compare("initial ctx after tuning", init->data, tref_ctx0, NCTX_VALUES, 0, 0);
    m->destroy(st);

    /* two steps: the selection of the first step kept, the moments carried */
    CHECK_OK(create(&task, "n_views=16 selection_p=0.25 steps=2", &st));
    if (!st) return;
    CHECK_OK(ct_tpt_adapt(st, px, TREF_V, sc, &tr));
    dc = compare("ctx after 2 AdamW steps", ctx, tref_s2_ctx, NCTX_VALUES, 1e-3, 1e-3);
    ds = compare("view-0 scores after 2 steps", sc, tref_s2_scores, CREF_K, 1e-3, 1e-3);
    printf("    2 steps: max |d| ctx %.2g  scores %.2g\n", dc, ds);
    m->destroy(st);

    /* no step: the untuned prompt's (zero-shot) prediction */
    CHECK_OK(create(&task, "n_views=16 selection_p=0.25 steps=0", &st));
    if (!st) return;
    CHECK_OK(ct_tpt_adapt(st, px, TREF_V, sc, NULL));
    compare("view-0 scores without a step", sc, tref_scores_zs, CREF_K, 1e-4, 1e-4);
    m->destroy(st);
}

/* A CoOp run's learned context as init_from, the learned-tensor round
 * trip, and per-image determinism on Fashion-MNIST items. */
static void test_init_from_and_round_trip(void) {
    if (!load_fixture()) return;
    if (!file_exists("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")) {
        ct_test_skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return;
    }
    ct_splits sp = {0};
    CHECK_OK(ct_data_open("fashion-mnist", &sp));
    ct_dataset *d6 = sp.test ? ct_dataset_head(sp.test, 6) : NULL;
    ct_dataset *d3 = sp.test ? ct_dataset_head(sp.test, 3) : NULL;
    if (!d6 || !d3) {
        ct_splits_free(&sp);
        return;
    }
    ct_task task = make_task(sp.test->classnames, sp.test->n_classes);
    ct_preprocess_cfg pre;
    CHECK_OK(ct_preprocess_cfg_from_hf(TINY_DIR "/preprocessor_config.json", &pre));
    task.pre = &pre;
    const ct_method *m = ct_method_find("tpt"), *coop = ct_method_find("coop");
    int K = sp.test->n_classes;
    /* a "CoOp run": 4 random context vectors (coop's N(0, 0.02)) */
    char coop_dir[4200], tpt_dir[4200];
    snprintf(coop_dir, sizeof coop_dir, "%s/coop_run", ct_test_tmpdir());
    snprintf(tpt_dir, sizeof tpt_dir, "%s/tpt_run", ct_test_tmpdir());
    mkdir(coop_dir, 0777), mkdir(tpt_dir, 0777);
    void *cs = NULL, *a = NULL, *b = NULL;
    ct_kv ck = {0};
    CHECK_OK(ct_kv_parse(&ck, "n_ctx=4"));
    CHECK_OK(coop->create(&task, &ck, &cs));
    ct_kv_free(&ck);
    if (!cs) goto out;
    CHECK_OK(ct_run_save_learned(coop, cs, coop_dir));
    ct_tensor *cp[1];
    coop->params(cs, cp, 1);
    char hp[4400];
    snprintf(hp, sizeof hp, "n_views=8 selection_p=0.25 init_from=%s", coop_dir);
    CHECK_OK(create(&task, hp, &a));
    ct_tensor *ia = a ? init_of(a) : NULL;
    CHECK_MSG(ia && ia->numel == cp[0]->numel &&
                  !memcmp(ia->data, cp[0]->data, (size_t)ia->numel * sizeof(float)),
              "init_from: the context is not the CoOp run's");
    /* a run that is not CoOp's is refused, naming the method */
    CHECK_OK(ct_run_save_learned(m, a, tpt_dir));
    snprintf(hp, sizeof hp, "init_from=%s", tpt_dir);
    void *bad = NULL;
    CHECK_MSG(create(&task, hp, &bad) == CT_ERR_FORMAT && !bad &&
                  strstr(ct_last_error(), "saved by tpt"), "%s", ct_last_error());
    /* round trip: a fresh state (starting from "a photo of a") loads the
     * saved initial context and predicts the same, bit for bit */
    CHECK_OK(create(&task, "n_views=8 selection_p=0.25", &b));
    if (!a || !b) goto out;
    float *sa = calloc((size_t)6 * K, sizeof *sa), *sb = calloc((size_t)6 * K, sizeof *sb);
    float *s3 = calloc((size_t)3 * K, sizeof *s3);
    CHECK_OK(m->predict_images(a, &task, d6, sa));
    CHECK_OK(m->predict_images(b, &task, d6, sb));
    CHECK_MSG(memcmp(sa, sb, (size_t)6 * K * sizeof *sa), "the CoOp context changed nothing");
    CHECK_OK(ct_run_load_learned(m, b, tpt_dir));
    CHECK_OK(m->predict_images(b, &task, d6, sb));
    CHECK_MSG(!memcmp(sa, sb, (size_t)6 * K * sizeof *sa),
              "scores after loading the run differ from the saved state's");
    /* an image's prediction depends on that image only (and the seed) */
    CHECK_OK(m->predict_images(a, &task, d3, s3));
    CHECK_MSG(!memcmp(sa, s3, (size_t)3 * K * sizeof *sa),
              "scores depend on which other images are scored");
    task.seed = 2;
    CHECK_OK(m->predict_images(a, &task, d3, s3));
    CHECK_MSG(memcmp(sa, s3, (size_t)3 * K * sizeof *sa), "the seed does not reach the views");
    free(sa), free(sb), free(s3);
out:
    if (cs) coop->destroy(cs);
    if (a) m->destroy(a);
    if (b) m->destroy(b);
    ct_dataset_free(d6), ct_dataset_free(d3);
    ct_splits_free(&sp);
}

static void test_hyper_parameters(void) {
    const ct_method *m = ct_method_find("tpt");
    CHECK(m && m->predict_images && m->logits && m->params && !m->loss && !m->fit);
    if (!m) return;
    if (!load_fixture()) return;
    char *names[2] = {"cat", "dog"};
    ct_task task = make_task(names, 2);
    void *st = NULL;
    /* the defaults are the official ones and every key is read */
    ct_kv hp = {0};
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    CHECK_OK(m->create(&task, &hp, &st));
    CHECK_OK(ct_kv_check_used(&hp, "tpt"));
    ct_kv_free(&hp);
    ct_tensor *init = st ? init_of(st) : NULL;
    CHECK(init && init->ndim == 2 && init->shape[0] == 4 && init->shape[1] == 32 &&
          !init->requires_grad);
    if (st) m->destroy(st);
    struct {
        const char *hp, *needle;
    } bad[] = {
        {"n_views=0", "n_views=0"},
        {"selection_p=0", "selection_p=0"},
        {"selection_p=1.5", "selection_p=1.5"},
        {"steps=-1", "steps=-1"},
        {"augmix=2", "augmix=2"},
        {"severity=11", "severity=11"},
        {"lr=-1", "lr=-1"},
        {"init_from=/nonexistent", "/nonexistent"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        st = NULL;
        ct_status s = create(&task, bad[i].hp, &st);
        CHECK_MSG(s != CT_OK && !st && strstr(ct_last_error(), bad[i].needle), "%s: %s",
                  bad[i].hp, ct_last_error());
    }
}

/* The tiny random model on Fashion-MNIST: see the report printed. */
#define TPT_N 300
static void test_fashion_mnist(void) {
    /* zero-shot with TPT's starting prompt, "a photo of a {}." */
    char tmpl[4200], zs[4300];
    snprintf(tmpl, sizeof tmpl, "%s/a_photo_of_a.txt", ct_test_tmpdir());
    CHECK_OK(ct_write_file_atomic(tmpl, "a photo of a {}.\n", 17));
    snprintf(zs, sizeof zs, "templates=%s", tmpl);
    const char *methods[4] = {"zeroshot", "tpt", "tpt", "tpt"};
    const char *sets[4] = {zs, "n_views=16 steps=0", "n_views=16", "n_views=16"};
    ct_run_result res[4] = {{0}};
    char dirs[4][4200];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!fashion_mnist_runs(methods, sets, 4, TPT_N, "fm", res, dirs)) return;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double el = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("    Fashion-MNIST, first %d test images, tiny random CLIP: zero-shot \"a photo of a "
           "{}.\" %.2f%%, TPT prompt untuned (steps=0) %.2f%%, TPT (16 views, 1 step) %.2f%% "
           "(again: %.2f%%); %.1f ms per image for the four runs\n", TPT_N, 100 * res[0].top1,
           100 * res[1].top1, 100 * res[2].top1, 100 * res[3].top1, 1e3 * el / (4 * TPT_N));
    /* the untuned prompt is the template's zero-shot classifier */
    CHECK_NEAR("steps=0 vs zero-shot top-1", res[1].top1, res[0].top1, 1e-9, 0);
    /* tuning changes predictions, identically on a rerun */
    char a[4400], b[4400], c[4400];
    snprintf(a, sizeof a, "%s/predictions.csv", dirs[1]);
    snprintf(b, sizeof b, "%s/predictions.csv", dirs[2]);
    snprintf(c, sizeof c, "%s/predictions.csv", dirs[3]);
    char *x = NULL, *y = NULL, *z = NULL;
    size_t nx = 0, ny = 0, nz = 0;
    CHECK_OK(ct_read_file(a, &x, &nx));
    CHECK_OK(ct_read_file(b, &y, &ny));
    CHECK_OK(ct_read_file(c, &z, &nz));
    CHECK_MSG(x && y && (nx != ny || memcmp(x, y, nx)), "TPT's step changed no prediction");
    CHECK_MSG(y && z && ny == nz && !memcmp(y, z, ny), "two identical TPT runs differ");
    free(x), free(y), free(z);
}

int main(void) {
    RUN(test_augmix_ops_match_pillow);
    RUN(test_augmix_draws_and_views);
    RUN(test_parity);
    RUN(test_hyper_parameters);
    RUN(test_init_from_and_round_trip);
    RUN(test_fashion_mnist);
    ct_clip_free(g_clip);
    ct_tokenizer_free(g_tok);
    return ct_test_summary();
}
