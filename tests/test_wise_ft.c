/* WiSE-FT (src/methods/wise_ft.c, src/model/vision_copy.c):
 *   - parity with an independent float64 PyTorch computation
 *     (tools/ref/gen_wise_ft_ref.py -> fixtures/methods/wise_ft_ref.h and
 *     .safetensors): the zero-shot head from a template ensemble, the
 *     label-smoothed loss, the gradient of every vision weight and of the
 *     head, two clipped AdamW steps of the whole tower + head, and the
 *     logits under the weight-space interpolation at alpha 0.3;
 *   - the private tower copy leaves the task's model untouched;
 *   - the learned-tensor round trip (tower, head, alpha): identical scores;
 *   - Fashion-MNIST through the tiny model: fine-tuning beats zero-shot on
 *     held-out test images, the alpha curve on val and test, as measured.
 * The tiny model is tests/fixtures/methods/tiny; the tokenizer comes from
 * tests/fixtures/bpe/clip_subset. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cliptune.h"
#include "fixtures/methods/coop_ref.h"
#include "fixtures/methods/wise_ft_ref.h"
#include "harness.h"
#include "method_fixture.h"
#include "methods/wise_ft.h"
#include "model/clip.h"
#include "model/vision_copy.h"
#include "train/features.h"
#include "api/run.h"

#define REF_ST TINY_DIR "/../wise_ft_ref.safetensors"
#define S 32
#define NPX (3 * S * S)

static ct_task make_task(char *const *classnames, int K) {
    ct_task t = {0};
    t.clip = g_clip, t.tok = g_tok, t.n_classes = K, t.classnames = classnames;
    t.dataset_name = "test", t.seed = 1;
    return t;
}

/* hp text plus templates = the reference's two, from a file */
static ct_status create(const ct_task *task, const char *hp_text, void **state) {
    static char tmpl[4200];
    if (!tmpl[0]) {
        snprintf(tmpl, sizeof tmpl, "%s/templates.txt", ct_test_tmpdir());
        char text[256];
        snprintf(text, sizeof text, "%s\n%s\n", wref_templates[0], wref_templates[1]);
        CHECK_OK(ct_write_file_atomic(tmpl, text, strlen(text)));
    }
    const ct_method *m = ct_method_find("wise-ft");
    ct_kv hp = {0};
    ct_status s = ct_kv_parse(&hp, hp_text);
    if (s == CT_OK) s = ct_kv_set(&hp, "templates", tmpl);
    if (s == CT_OK) s = m->create(task, &hp, state);
    if (s == CT_OK) s = ct_kv_check_used(&hp, "wise-ft");
    ct_kv_free(&hp);
    return s;
}

static ct_tensor *param(void *state, int i) {
    ct_tensor *p[4];
    int n = ct_method_find("wise-ft")->params(state, p, 4);
    CHECK(n == 4);
    return n == 4 ? p[i] : NULL;
}

/* The reference's pixels, 1.5 sin(0.1 i + 0.7 b) rounded to float. */
static void ref_pixels(float *px) {
    for (int b = 0; b < WREF_B; b++)
        for (int i = 0; i < NPX; i++) {
            volatile double u = 0.1 * i, v = 0.7 * b;
            px[b * NPX + i] = (float)(1.5 * sin(u + v));
        }
}

/* Every fine-tuned vision weight against prefix/<name> in the reference
 * file (rel. tolerance rtol, abs atol); the largest |d| (key biases after
 * steps aside). */
static double compare_tower(void *st, const ct_safetensors *ref, const char *prefix, bool grad,
                            double atol, double rtol) {
    double mx = 0;
    int n = 0;
    for (int i = 0; i < ct_safetensors_count(ref); i++) {
        const ct_st_tensor *t = ct_safetensors_at(ref, i);
        size_t pl = strlen(prefix);
        if (strncmp(t->name, prefix, pl)) continue;
        ct_tensor *w = ct_wise_ft_weight(st, t->name + pl);
        size_t numel = t->nbytes / 4;
        CHECK_MSG(w && (size_t)w->numel == numel, "%s: no such weight of that size", t->name);
        if (!w || (size_t)w->numel != numel) continue;
        float *want = malloc(numel * sizeof *want);
        double *wd = malloc(numel * sizeof *wd);
        CHECK_OK(ct_st_to_real(t, want, numel));
        for (size_t k = 0; k < numel; k++) wd[k] = want[k];
        /* the reference is stored in float32: 6e-8 relative on top */
        /* the key bias's true gradient is exactly 0 (it shifts every score of
         * a query alike, and softmax ignores that): Adam normalises float32
         * noise of ~1e-9 there into steps of up to lr each, in either
         * direction, on any float32 implementation; allow those */
        bool kb = !grad && strstr(t->name, "attn.k_proj.bias");
        double d = compare(t->name, grad ? w->grad : w->data, wd, numel,
                           kb ? 2.5 * WREF_LR : atol, rtol);
        if (!kb) mx = d > mx ? d : mx;
        free(want), free(wd);
        n++;
    }
    CHECK_MSG(n == 8 + 16 * ct_clip_get_config(g_clip)->vision_layers,
              "%s: compared %d weights", prefix, n);
    return mx;
}

static void test_parity(void) {
    if (!load_fixture()) return;
    ct_safetensors *ref = ct_safetensors_open(REF_ST);
    CHECK_MSG(ref, "%s", ct_last_error());
    if (!ref) return;
    ct_task task = make_task((char *const *)cref_classnames, CREF_K);
    const ct_method *m = ct_method_find("wise-ft");
    static float px[WREF_B * NPX];
    ref_pixels(px);
    char hp[128];
    snprintf(hp, sizeof hp, "ls=%g lr=%g weight_decay=%g max_grad_norm=1", WREF_LS, WREF_LR,
             WREF_WD);
    void *st = NULL;
    CHECK_OK(create(&task, hp, &st));
    if (!st) {
        ct_safetensors_close(ref);
        return;
    }
    ct_tensor *hw = param(st, 1), *hb = param(st, 2);
    double dh = compare("zero-shot head", hw->data, wref_head0, CREF_K * CREF_E, 1e-4, 1e-4);
    float sc[WREF_B * CREF_K];
    CHECK_OK(ct_wise_ft_scores(st, px, WREF_B, 0.0f, sc));
    double d0 = compare("zero-shot logits (alpha 0)", sc, wref_logits0, WREF_B * CREF_K, 1e-4,
                        1e-4);
    double loss;
    CHECK_OK(ct_wise_ft_loss(st, px, WREF_B, wref_labels, &loss));
    float lf = (float)loss;
    double dl = compare("label-smoothed loss", &lf, &wref_loss0, 1, 1e-4, 1e-4);
    double dg = compare_tower(st, ref, "grad/", true, 1e-4, 1e-4);
    double dgw = compare("d loss / d head W", hw->grad, wref_grad_w, CREF_K * CREF_E, 1e-4, 1e-4);
    compare("d loss / d head b", hb->grad, wref_grad_b, CREF_K, 1e-4, 1e-4);
    printf("    max |d| head %.2g  logits %.2g  loss %.2g  tower grads %.2g  head grad %.2g\n",
           dh, d0, dl, dg, dgw);
    m->destroy(st);

    /* two steps from theta_0: clipped to norm 1, AdamW with weight decay 0.1 */
    CHECK_OK(create(&task, hp, &st));
    if (!st) {
        ct_safetensors_close(ref);
        return;
    }
    ct_tensor *theta0 = ct_clip_find_tensor(g_clip, "visual.proj");
    float *keep = malloc((size_t)theta0->numel * sizeof *keep);
    memcpy(keep, theta0->data, (size_t)theta0->numel * sizeof *keep);
    double ml = 0;
    for (int s = 0; s < 2; s++) {
        CHECK_OK(ct_wise_ft_step(st, px, WREF_B, wref_labels, (float)WREF_LR, &loss));
        double d = fabs(loss - wref_losses[s]);
        ml = d > ml ? d : ml;
        CHECK_NEAR("loss before a step", loss, wref_losses[s], 1e-3, 1e-3);
    }
    double ds = compare_tower(st, ref, "step2/", false, 1e-3, 1e-3);
    hw = param(st, 1), hb = param(st, 2);
    compare("head W after 2 steps", hw->data, wref_step2_w, CREF_K * CREF_E, 1e-3, 1e-3);
    compare("head b after 2 steps", hb->data, wref_step2_b, CREF_K, 1e-3, 1e-3);
    CHECK_OK(ct_wise_ft_scores(st, px, WREF_B, 1.0f, sc));
    double d2 = compare("logits after 2 steps (alpha 1)", sc, wref_logits2, WREF_B * CREF_K,
                        1e-3, 1e-3);
    CHECK_OK(ct_wise_ft_scores(st, px, WREF_B, (float)WREF_ALPHA, sc));
    double da = compare("logits at alpha 0.3", sc, wref_logits_alpha, WREF_B * CREF_K, 1e-3,
                        1e-3);
    CHECK_OK(ct_wise_ft_scores(st, px, WREF_B, 0.0f, sc));
    compare("logits at alpha 0 after training", sc, wref_logits0, WREF_B * CREF_K, 1e-4, 1e-4);
    /* the task's model was not touched */
    CHECK_MSG(!memcmp(keep, theta0->data, (size_t)theta0->numel * sizeof *keep),
              "fine-tuning changed the shared model's weights");
    printf("    2 AdamW steps: max |d| losses %.2g  tower %.2g (key biases aside)  logits %.2g  "
           "alpha 0.3 %.2g\n",
           ml, ds, d2, da);
    free(keep);
    m->destroy(st);
    ct_safetensors_close(ref);
}

/* The copy helper on its own: views of one flat buffer, mixing end points
 * exact, the source's struct untouched. */
static void test_vision_copy(void) {
    if (!load_fixture()) return;
    ct_vision_copy a, b;
    CHECK_OK(ct_vision_copy_create(g_clip, true, &a));
    CHECK_OK(ct_vision_copy_create(g_clip, false, &b));
    if (!a.flat || !b.flat) return;
    CHECK(a.flat->requires_grad && a.flat->grad && !b.flat->grad);
    CHECK(ct_clip_num_tensors(a.clip) == 0 && a.n_weights == 8 + 16);
    int64_t total = 0;
    for (int i = 0; i < a.n_weights; i++) total += a.views[i].numel;
    CHECK(total == a.flat->numel);
    for (int64_t i = 0; i < a.flat->numel; i++) a.flat->data[i] += 1.0f;
    CHECK_OK(ct_vision_copy_mix(&b, g_clip, &a, 0.0f));
    const ct_tensor *cls = ct_clip_find_tensor(g_clip, "visual.class_embedding");
    bool same0 = true, same1 = true;
    for (int i = 0; i < a.n_weights; i++) {
        const ct_tensor *src = ct_clip_find_tensor(g_clip, b.views[i].name);
        same0 &= src && !memcmp(src->data, b.views[i].data, (size_t)src->numel * sizeof(float));
    }
    CHECK_OK(ct_vision_copy_mix(&b, g_clip, &a, 1.0f));
    same1 = !memcmp(a.flat->data, b.flat->data, (size_t)a.flat->numel * sizeof(float));
    CHECK_MSG(same0 && same1, "mixing end points are not exact (alpha 0: %d, 1: %d)", same0,
              same1);
    CHECK(cls && cls->data != a.clip->class_emb->data && a.clip->tok_emb == g_clip->tok_emb);
    ct_vision_copy_free(&a), ct_vision_copy_free(&b);
}

/* Fashion-MNIST items as the round trip's images */
static void test_round_trip(void) {
    if (!load_fixture()) return;
    if (!file_exists("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")) {
        ct_test_skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return;
    }
    ct_splits sp = {0};
    CHECK_OK(ct_data_open("fashion-mnist", &sp));
    ct_dataset *d = sp.test ? ct_dataset_head(sp.test, 8) : NULL;
    if (!d) {
        ct_splits_free(&sp);
        return;
    }
    int K = sp.test->n_classes;
    ct_task task = make_task(sp.test->classnames, K);
    ct_preprocess_cfg pre;
    CHECK_OK(ct_preprocess_cfg_from_hf(TINY_DIR "/preprocessor_config.json", &pre));
    task.pre = &pre;
    const ct_method *m = ct_method_find("wise-ft");
    void *a = NULL, *b = NULL;
    CHECK_OK(create(&task, "lr=1e-3", &a));
    CHECK_OK(create(&task, "lr=1e-3", &b));
    if (!a || !b) goto out;
    static float px[WREF_B * NPX];
    ref_pixels(px);
    int y[WREF_B] = {0, 3, 7, 9};
    for (int s = 0; s < 3; s++) CHECK_OK(ct_wise_ft_step(a, px, WREF_B, y, 1e-3f, NULL));
    param(a, 3)->data[0] = 0.4f;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/rt", ct_test_tmpdir());
    mkdir(dir, 0777);
    CHECK_OK(ct_run_save_learned(m, a, dir));
    float *sa = calloc((size_t)8 * K, sizeof *sa), *sb = calloc((size_t)8 * K, sizeof *sb);
    CHECK_OK(m->predict_images(a, &task, d, sa));
    CHECK_OK(m->predict_images(b, &task, d, sb));
    CHECK_MSG(memcmp(sa, sb, (size_t)8 * K * sizeof *sa), "training changed nothing");
    CHECK_OK(ct_run_load_learned(m, b, dir));
    CHECK(param(b, 3)->data[0] == 0.4f);
    CHECK_OK(m->predict_images(b, &task, d, sb));
    CHECK_MSG(!memcmp(sa, sb, (size_t)8 * K * sizeof *sa),
              "scores after loading the run differ from the saved state's");
    free(sa), free(sb);
out:
    if (a) m->destroy(a);
    if (b) m->destroy(b);
    ct_dataset_free(d);
    ct_splits_free(&sp);
}

static void test_hyper_parameters(void) {
    const ct_method *m = ct_method_find("wise-ft");
    CHECK(m && m->pixels && m->loss && m->finish && m->predict_images && m->params && m->logits);
    if (!m) return;
    if (!load_fixture()) return;
    char *names[2] = {"cat", "dog"};
    ct_task task = make_task(names, 2);
    void *st = NULL;
    ct_kv hp = {0};
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    CHECK_OK(m->create(&task, &hp, &st));
    ct_train_cfg tc;
    CHECK_OK(ct_train_cfg_from_kv(&hp, &tc)); /* the trainer reads its keys */
    CHECK_OK(ct_kv_check_used(&hp, "wise-ft"));
    CHECK(tc.step_sched && tc.warmup_fraction == 0.02 && tc.max_grad_norm == 1.0 &&
          tc.optim.kind == CT_OPTIM_ADAMW && !strcmp(tc.train_aug, "rrc") &&
          tc.aug_scale_min == 0.9);
    ct_kv_free(&hp);
    if (st) {
        /* the whole vision tower, trainable, in one tensor */
        int64_t nv = 0;
        for (int i = 0; i < ct_clip_num_tensors(g_clip); i++) {
            const char *name;
            ct_tensor *w = ct_clip_tensor_at(g_clip, i, &name);
            if (!strncmp(name, "visual.", 7)) nv += w->numel;
        }
        ct_tensor *t = param(st, 0);
        CHECK(t && t->requires_grad && t->numel == nv);
        CHECK(param(st, 3)->data[0] == 0.5f && !param(st, 3)->requires_grad);
        m->destroy(st);
    }
    struct {
        const char *hp, *needle;
    } bad[] = {
        {"alpha=1.5", "alpha=1.5"}, {"alpha=x", "alpha=x"},   {"epochs=-1", "epochs=-1"},
        {"ls=1", "ls=1"},           {"alphas=1", "alphas=1"}, {"batch_size=0", "batch_size=0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        st = NULL;
        CHECK_MSG(create(&task, bad[i].hp, &st) == CT_ERR_ARG && !st &&
                      strstr(ct_last_error(), bad[i].needle),
                  "%s: %s", bad[i].hp, ct_last_error());
    }
}

/* Fashion-MNIST through the tiny random CLIP (160 training images). Its
 * zero-shot head is at chance, so there is no zero-shot knowledge to keep
 * and the whole gain is the fine-tuning's. The default lr (1e-5, meant for
 * a trained CLIP) barely moves a random tower; 3e-3 for 20 epochs of 10
 * steps (batch 16) does. Measured: zero-shot 10.2%, WiSE-FT 42.2% at the
 * alpha chosen on val (0.6); test top-1 37.6% at alpha 0.5, 45.2% at 1. */
#define WFT_SET "lr=3e-3 epochs=20"
#define WFT_TEST 500

static double accuracy(const float *sc, const ct_dataset *d, int K) {
    int64_t ok = 0;
    for (int64_t i = 0; i < d->n_items; i++) {
        int best = 0;
        for (int k = 1; k < K; k++)
            if (sc[i * K + k] > sc[i * K + best]) best = k;
        ok += best == d->items[i].label;
    }
    return (double)ok / (double)d->n_items;
}

static void test_learns_fashion_mnist(void) {
    const char *methods[2] = {"zeroshot", "wise-ft"};
    const char *sets[2] = {"templates=imagenet80", WFT_SET};
    ct_run_result res[2] = {{0}};
    char dirs[2][4200];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!fashion_mnist_runs(methods, sets, 2, WFT_TEST, "fm", res, dirs)) return;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("    Fashion-MNIST, 16 shots, first %d test images, tiny random CLIP: zero-shot "
           "(imagenet80 head) %.2f%%, WiSE-FT (" WFT_SET ") %.2f%% (val %.2f%%); %.1f s for both "
           "runs\n", WFT_TEST, 100 * res[0].top1, 100 * res[1].top1, 100 * res[1].val_top1,
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    CHECK_MSG(res[1].top1 > res[0].top1 + 0.10, "WiSE-FT %.4f vs zero-shot %.4f", res[1].top1,
              res[0].top1);
    /* the val curve, one row per alpha */
    char path[4400], *csv = NULL;
    size_t n = 0;
    snprintf(path, sizeof path, "%s/wise_ft_curve.csv", dirs[1]);
    CHECK_OK(ct_read_file(path, &csv, &n));
    int rows = 0;
    for (size_t i = 0; csv && i < n; i++) rows += csv[i] == '\n';
    CHECK_MSG(rows == 12, "%s: %d lines, want a header and 11 alphas", path, rows);
    free(csv);
    /* the run reloaded from its directory: the same test accuracy at the
     * chosen alpha, and the test curve at alpha 0, 0.5, 1 */
    if (!load_fixture()) return;
    ct_splits sp = {0};
    CHECK_OK(ct_data_open("fashion-mnist", &sp));
    ct_dataset *d = sp.test ? ct_dataset_head(sp.test, WFT_TEST) : NULL;
    if (!d) {
        ct_splits_free(&sp);
        return;
    }
    int K = sp.test->n_classes;
    ct_task task = make_task(sp.test->classnames, K);
    task.dataset_name = sp.test->name;
    ct_preprocess_cfg pre;
    CHECK_OK(ct_preprocess_cfg_from_hf(TINY_DIR "/preprocessor_config.json", &pre));
    task.pre = &pre;
    const ct_method *m = ct_method_find("wise-ft");
    ct_kv hp = {0};
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    CHECK_OK(ct_kv_parse(&hp, WFT_SET));
    void *st = NULL;
    CHECK_OK(m->create(&task, &hp, &st));
    ct_kv_free(&hp);
    float *sc = malloc((size_t)d->n_items * K * sizeof *sc);
    if (st && sc && ct_run_load_learned(m, st, dirs[1]) == CT_OK) {
        float chosen = param(st, 3)->data[0];
        CHECK_OK(m->predict_images(st, &task, d, sc));
        CHECK_NEAR("reloaded run's test top-1", accuracy(sc, d, K), res[1].top1, 1e-12, 0);
        double curve[3];
        for (int a = 0; a < 3; a++) {
            param(st, 3)->data[0] = 0.5f * (float)a;
            CHECK_OK(m->predict_images(st, &task, d, sc));
            curve[a] = accuracy(sc, d, K);
        }
        printf("    test top-1 by alpha: 0: %.2f%%  0.5: %.2f%%  1: %.2f%% (chosen on val: %.2f)\n",
               100 * curve[0], 100 * curve[1], 100 * curve[2], (double)chosen);
        /* alpha 0 is the zero-shot model */
        CHECK_NEAR("alpha 0 vs zero-shot top-1", curve[0], res[0].top1, 1e-12, 0);
    } else {
        CHECK_MSG(false, "reloading the run: %s", ct_last_error());
    }
    free(sc);
    if (st) m->destroy(st);
    ct_dataset_free(d);
    ct_splits_free(&sp);
}

int main(void) {
    RUN(test_hyper_parameters);
    RUN(test_parity);
    RUN(test_vision_copy);
    RUN(test_round_trip);
    RUN(test_learns_fashion_mnist);
    ct_clip_free(g_clip);
    ct_tokenizer_free(g_tok);
    return ct_test_summary();
}
