/* MUST (src/methods/must.c) and the encoder's mask-token hook:
 *   - parity with an independent float64 PyTorch computation
 *     (tools/ref/gen_must_ref.py -> fixtures/methods/must_ref.h and
 *     .safetensors): the teacher's logits, the student's logits on the
 *     masked strong view, the four loss terms, the gradient of every vision
 *     weight, the classifier, mask token, ln_patch and decoder, then three
 *     AdamW steps each followed by the EMA update (student, teacher weights
 *     and both models' logits);
 *   - the mask generator (block-aligned, ceil(ratio n) blocks) and the
 *     encoder hook (an all-zero mask is the plain pass);
 *   - the learned-tensor round trip: identical scores, student and EMA;
 *   - on the shipped model, without labels: a short run completes and does
 *     not collapse (it does NOT beat zero-shot there: test_runs_shipped). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cliptune.h"
#include "fixtures/methods/coop_ref.h"
#include "fixtures/methods/must_ref.h"
#include "harness.h"
#include "method_fixture.h"
#include "methods/must.h"
#include "model/clip.h"
#include "api/run.h"

#define REF_ST TINY_DIR "/../must_ref.safetensors"
#define S 32
#define NPX (3 * S * S)
#define G 16

static ct_task make_task(char *const *classnames, int K) {
    ct_task t = {0};
    t.clip = g_clip, t.tok = g_tok, t.n_classes = K, t.classnames = classnames;
    t.dataset_name = "test", t.seed = 1;
    return t;
}

static ct_status create(const ct_task *task, const char *hp_text, void **state) {
    static char tmpl[4200];
    if (!tmpl[0]) {
        snprintf(tmpl, sizeof tmpl, "%s/must_templates.txt", ct_test_tmpdir());
        char text[256];
        snprintf(text, sizeof text, "%s\n%s\n", mref_templates[0], mref_templates[1]);
        CHECK_OK(ct_write_file_atomic(tmpl, text, strlen(text)));
    }
    const ct_method *m = ct_method_find("must");
    ct_kv hp = {0};
    ct_status s = ct_kv_parse(&hp, hp_text);
    if (s == CT_OK) s = ct_kv_set(&hp, "templates", tmpl);
    if (s == CT_OK) s = m->create(task, &hp, state);
    if (s == CT_OK) s = ct_kv_check_used(&hp, "must");
    ct_kv_free(&hp);
    return s;
}

static ct_tensor *param(void *state, int i) {
    ct_tensor *p[10];
    int n = ct_method_find("must")->params(state, p, 10);
    CHECK(n == 10);
    return n == 10 ? p[i] : NULL;
}

static void ref_pixels(float *weak, float *strong) {
    for (int b = 0; b < MREF_B; b++)
        for (int i = 0; i < NPX; i++) {
            volatile double u = 0.1 * i, v = 0.7 * b, u2 = 0.13 * i, v2 = 0.5 * b;
            weak[b * NPX + i] = (float)(1.5 * sin(u + v));
            strong[b * NPX + i] = (float)(1.2 * cos(u2 + v2));
        }
}

/* the extra tensors, in params() order 1..6, as named in the reference */
static const char *const XNAMES[6] = {"classifier",      "mask_token",     "ln_patch.weight",
                                      "ln_patch.bias",   "decoder.weight", "decoder.bias"};

static const ct_st_tensor *ref_get(const ct_safetensors *ref, const char *name) {
    for (int i = 0; i < ct_safetensors_count(ref); i++)
        if (!strcmp(ct_safetensors_at(ref, i)->name, name)) return ct_safetensors_at(ref, i);
    return NULL;
}

static double cmp_ref(const ct_safetensors *ref, const char *name, const float *got, int64_t n,
                      double atol, double rtol) {
    const ct_st_tensor *t = ref_get(ref, name);
    CHECK_MSG(t && (int64_t)(t->nbytes / 4) == n, "%s: missing or not %lld values", name,
              (long long)n);
    if (!t || (int64_t)(t->nbytes / 4) != n) return INFINITY;
    float *want = malloc((size_t)n * sizeof *want);
    double *wd = malloc((size_t)n * sizeof *wd);
    CHECK_OK(ct_st_to_real(t, want, (size_t)n));
    for (int64_t k = 0; k < n; k++) wd[k] = want[k];
    double d = compare(name, got, wd, (size_t)n, atol, rtol);
    free(want), free(wd);
    return d;
}

/* every vision weight of the student (or teacher) against prefix/<name> */
static double cmp_tower(void *st, const ct_safetensors *ref, const char *prefix, bool ema,
                        bool grad, double atol, double rtol) {
    double mx = 0;
    int n = 0;
    size_t pl = strlen(prefix);
    for (int i = 0; i < ct_safetensors_count(ref); i++) {
        const ct_st_tensor *t = ct_safetensors_at(ref, i);
        if (strncmp(t->name, prefix, pl) || strncmp(t->name + pl, "visual.", 7)) continue;
        ct_tensor *w = ct_must_weight(st, ema, t->name + pl);
        CHECK_MSG(w, "%s: no such weight", t->name);
        if (!w) continue;
        /* Adam normalises the key bias's float noise (its true gradient is 0) */
        bool kb = !grad && strstr(t->name, "attn.k_proj.bias");
        double d = cmp_ref(ref, t->name, grad ? w->grad : w->data, w->numel,
                           kb ? 3.5 * MREF_LR : atol, rtol);
        if (!kb) mx = d > mx ? d : mx;
        n++;
    }
    CHECK_MSG(n > 0, "%s: nothing compared", prefix);
    return mx;
}

static void zero_grads(void *st) {
    for (int i = 0; i < 7; i++) ct_tensor_zero_grad(param(st, i));
}

static void load_init(void *st, const ct_safetensors *ref) {
    const char *names[3] = {"init/mask_token", "init/decoder.weight", "init/decoder.bias"};
    int idx[3] = {2, 5, 6};
    for (int i = 0; i < 3; i++) {
        const ct_st_tensor *t = ref_get(ref, names[i]);
        ct_tensor *p = param(st, idx[i]);
        CHECK(t && p && (int64_t)(t->nbytes / 4) == p->numel);
        if (t && p && (int64_t)(t->nbytes / 4) == p->numel)
            CHECK_OK(ct_st_to_real(t, p->data, (size_t)p->numel));
    }
}

static void score(void *st, const float *px, float *out) {
    ct_graph *g = ct_graph_create(0);
    ct_batch b = {0};
    b.n = MREF_B, b.pixels = px, b.epoch = -1;
    ct_tensor *lg = ct_method_find("must")->logits(st, g, &b);
    CHECK_MSG(lg && lg->numel == MREF_B * CREF_K, "scoring: %s", ct_last_error());
    if (lg) memcpy(out, lg->data, (size_t)lg->numel * sizeof *out);
    ct_graph_free(g);
}

static void test_parity(void) {
    if (!load_fixture()) return;
    ct_safetensors *ref = ct_safetensors_open(REF_ST);
    CHECK_MSG(ref, "%s", ct_last_error());
    if (!ref) return;
    ct_task task = make_task((char *const *)cref_classnames, CREF_K);
    static float weak[MREF_B * NPX], strong[MREF_B * NPX], mask[MREF_B * G];
    ref_pixels(weak, strong);
    for (int i = 0; i < MREF_B * G; i++) mask[i] = (float)mref_mask[i];
    char hp[256];
    snprintf(hp, sizeof hp, "conf_threshold=%.17g w_fair=%g w_align=%g ema_decay=%g "
             "ema_decay_init=%g ema_warm_it=%d mask_patch=2", mref_tau, MREF_W_FAIR,
             MREF_W_ALIGN, MREF_D1, MREF_D0, MREF_WARM);
    void *st = NULL;
    CHECK_OK(create(&task, hp, &st));
    if (!st) {
        ct_safetensors_close(ref);
        return;
    }
    load_init(st, ref);
    float sc[MREF_B * CREF_K];
    score(st, weak, sc);
    double dt = compare("teacher logits (= the initial student's, weak view)", sc,
                        mref_teacher_logits0, MREF_B * CREF_K, 1e-3, 1e-4);
    ct_graph *g = ct_graph_create(0);
    ct_graph_set_grad(g, true);
    zero_grads(st);
    double parts[5];
    ct_tensor *lg = NULL;
    ct_tensor *loss = ct_must_loss_masked(st, g, weak, strong, MREF_B, mask, parts, &lg);
    CHECK_MSG(loss && lg, "loss: %s", ct_last_error());
    if (loss && lg) {
        CHECK_OK(ct_backward(g, loss));
        double dl = compare("student logits (masked strong view)", lg->data, mref_logits0,
                            MREF_B * CREF_K, 1e-3, 1e-4);
        const char *pn[5] = {"L_st", "L_fair", "L_mim", "L_align", "confident"};
        for (int i = 0; i < 5; i++) CHECK_NEAR(pn[i], parts[i], mref_parts0[i], 1e-5, 1e-5);
        CHECK_NEAR("loss", loss->data[0], mref_loss0, 1e-5, 1e-5);
        double dg = cmp_tower(st, ref, "grad/", false, true, 1e-5, 1e-4);
        double dx = 0;
        char name[64];
        for (int i = 0; i < 6; i++) {
            snprintf(name, sizeof name, "grad/%s", XNAMES[i]);
            /* the classifier's gradient carries the fixed scale 100 over float32
             * cosines: ~2e-4 relative */
            double d = cmp_ref(ref, name, param(st, 1 + i)->grad, param(st, 1 + i)->numel,
                               i == 0 ? 1e-4 : 1e-5, i == 0 ? 5e-4 : 1e-4);
            dx = d > dx ? d : dx;
        }
        printf("    max |d| teacher logits %.2g  student logits %.2g  tower grads %.2g  other "
               "grads %.2g\n", dt, dl, dg, dx);
    }
    ct_method_find("must")->destroy(st);
    st = NULL;

    /* three AdamW steps, each followed by the EMA update; scored by the
     * student and (eval=ema) by the teacher */
    for (int ev = 0; ev < 2; ev++) {
        char hp2[300];
        snprintf(hp2, sizeof hp2, "%s eval=%s", hp, ev ? "ema" : "student");
        CHECK_OK(create(&task, hp2, &st));
        if (!st) break;
        load_init(st, ref);
        ct_tensor *tp[7];
        for (int i = 0; i < 7; i++) tp[i] = param(st, i);
        ct_optim_config oc = ct_optim_default(CT_OPTIM_ADAMW, (float)MREF_LR);
        oc.weight_decay = (float)MREF_WD;
        ct_optim *opt = ct_optim_create(&oc, tp, 7);
        double ml = 0;
        for (int s = 0; s < 3 && opt; s++) {
            ct_graph_reset(g);
            zero_grads(st);
            loss = ct_must_loss_masked(st, g, weak, strong, MREF_B, mask, parts, NULL);
            CHECK_MSG(loss, "%s", ct_last_error());
            if (!loss) break;
            CHECK_OK(ct_backward(g, loss));
            CHECK_NEAR("loss before a step", loss->data[0], mref_losses[s], 1e-4, 1e-4);
            CHECK_MSG((int)parts[4] == mref_nconf[s], "step %d: %d confident, want %d", s,
                      (int)parts[4], mref_nconf[s]);
            double d = fabs(loss->data[0] - mref_losses[s]);
            ml = d > ml ? d : ml;
            CHECK_OK(ct_optim_step(opt, (float)MREF_LR));
            CHECK_OK(ct_method_find("must")->after_step(st, NULL));
        }
        score(st, weak, sc);
        double d3 = compare(ev ? "teacher logits after 3 steps" : "student logits after 3 steps",
                            sc, ev ? mref_logits3_ema : mref_logits3, MREF_B * CREF_K, 1e-2,
                            1e-3);
        if (!ev) {
            double ds = cmp_tower(st, ref, "step3/", false, false, 1e-4, 1e-3);
            double de = cmp_tower(st, ref, "ema3/", true, false, 1e-4, 1e-3);
            char name[64];
            for (int i = 0; i < 6; i++) {
                snprintf(name, sizeof name, "step3/%s", XNAMES[i]);
                cmp_ref(ref, name, param(st, 1 + i)->data, param(st, 1 + i)->numel, 1e-4, 1e-3);
            }
            cmp_ref(ref, "ema3/classifier", param(st, 8)->data, param(st, 8)->numel, 1e-4, 1e-3);
            CHECK(param(st, 9)->data[0] == 3.0f);
            printf("    3 AdamW + EMA steps: max |d| losses %.2g  student tower %.2g (key biases "
                   "aside)  teacher %.2g  logits %.2g\n", ml, ds, de, d3);
        } else {
            printf("    teacher logits after 3 steps: max |d| %.2g\n", d3);
        }
        ct_optim_free(opt);
        ct_method_find("must")->destroy(st);
        st = NULL;
    }
    ct_graph_free(g);
    ct_safetensors_close(ref);
}

/* Block-aligned masks of ceil(ratio n) blocks; an all-zero patch mask is
 * the encoder's plain pass, a nonzero one changes it. */
static void test_mask(void) {
    if (!load_fixture()) return;
    char *names[2] = {"cat", "dog"};
    ct_task task = make_task(names, 2);
    void *st = NULL;
    CHECK_OK(create(&task, "mask_ratio=0.3", &st)); /* auto: 2 x 2 blocks on the 4 x 4 grid */
    if (!st) return;
    float m[G];
    for (int i = 0; i < 6; i++) {
        ct_must_draw_mask(st, 42, i, m);
        int n = 0;
        for (int t = 0; t < G; t++) n += m[t] == 1;
        CHECK_MSG(n == 8, "image %d: %d masked patches, want ceil(0.3 x 4) = 2 blocks of 4", i, n);
        for (int by = 0; by < 4; by += 2)
            for (int bx = 0; bx < 4; bx += 2) {
                float v = m[by * 4 + bx];
                CHECK(m[by * 4 + bx + 1] == v && m[(by + 1) * 4 + bx] == v &&
                      m[(by + 1) * 4 + bx + 1] == v);
            }
    }
    ct_method_find("must")->destroy(st);
    static float weak[MREF_B * NPX], strong[MREF_B * NPX];
    ref_pixels(weak, strong);
    float zero[MREF_B * G] = {0}, one[MREF_B * G] = {0};
    one[3] = 1;
    int64_t shape[4] = {MREF_B, 3, S, S};
    ct_tensor *tok = ct_tensor_new2(1, 32, false);
    ct_graph *g = ct_graph_create(0);
    ct_tensor *px = ct_graph_wrap(g, weak, 4, shape);
    ct_tensor *a = ct_clip_encode_image(g, g_clip, px, NULL, false, NULL);
    ct_clip_hooks h = {0};
    h.mask_token = tok, h.patch_mask = zero;
    ct_tensor *b = ct_clip_encode_image(g, g_clip, px, &h, false, NULL);
    h.patch_mask = one;
    ct_tensor *c = ct_clip_encode_image(g, g_clip, px, &h, false, NULL);
    CHECK(a && b && c);
    if (a && b && c) {
        CHECK_MSG(!memcmp(a->data, b->data, (size_t)a->numel * sizeof(float)),
                  "an all-zero mask changed the embedding");
        CHECK_MSG(memcmp(a->data, c->data, 16 * sizeof(float)),
                  "masking a patch of image 0 changed nothing");
        CHECK_MSG(!memcmp(a->data + 16, c->data + 16, (size_t)(a->numel - 16) * sizeof(float)),
                  "masking image 0's patch changed other images");
    }
    h.patch_mask = NULL;
    CHECK(!ct_clip_encode_image(g, g_clip, px, &h, false, NULL));
    ct_graph_free(g);
    ct_tensor_free(tok);
}

/* optim_factory.py's layer scales, applied to a step's displacement: with
 * layer_decay 0.5 on the one-block tiny tower, embeddings / conv1 / ln_pre
 * and the mask token move 0.25 of the step, block 0 0.5, the rest 1. */
static void test_layer_decay(void) {
    if (!load_fixture()) return;
    ct_task task = make_task((char *const *)cref_classnames, CREF_K);
    void *st = NULL;
    CHECK_OK(create(&task, "layer_decay=0.5 ema_decay=1 ema_decay_init=1", &st));
    if (!st) return;
    const ct_method *m = ct_method_find("must");
    const char *names[6] = {"visual.conv1.weight", "visual.positional_embedding",
                            "visual.ln_pre.weight",
                            "visual.transformer.resblocks.0.mlp.c_fc.weight",
                            "visual.ln_post.bias", "visual.proj"};
    const float want[6] = {0.25f, 0.25f, 0.25f, 0.5f, 1.0f, 1.0f};
    float before[6];
    for (int i = 0; i < 6; i++) before[i] = ct_must_weight(st, false, names[i])->data[0];
    float tok0 = param(st, 2)->data[0], cls0 = param(st, 1)->data[0];
    CHECK_OK(m->before_step(st, NULL, NULL));
    ct_tensor *flat = param(st, 0);
    for (int64_t k = 0; k < flat->numel; k++) flat->data[k] += 1.0f;
    param(st, 2)->data[0] += 1.0f, param(st, 1)->data[0] += 1.0f;
    CHECK_OK(m->after_step(st, NULL));
    for (int i = 0; i < 6; i++)
        CHECK_NEAR(names[i], ct_must_weight(st, false, names[i])->data[0] - before[i], want[i],
                   1e-5, 0);
    CHECK_NEAR("mask token", param(st, 2)->data[0] - tok0, 0.25, 1e-5, 0);
    CHECK_NEAR("classifier", param(st, 1)->data[0] - cls0, 1.0, 1e-5, 0);
    /* decay 1: the teacher did not move */
    CHECK(ct_must_weight(st, true, names[0])->data[0] == before[0]);
    m->destroy(st);
}

static void test_round_trip(void) {
    if (!load_fixture()) return;
    ct_task task = make_task((char *const *)cref_classnames, CREF_K);
    const ct_method *m = ct_method_find("must");
    static float weak[MREF_B * NPX], strong[MREF_B * NPX];
    ref_pixels(weak, strong);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/must_rt", ct_test_tmpdir());
    mkdir(dir, 0777);
    for (int ev = 0; ev < 2; ev++) {
        void *a = NULL, *b = NULL;
        const char *hp = ev ? "conf_threshold=0.5 ema_decay_init=0.5 eval=ema"
                            : "conf_threshold=0.5 ema_decay_init=0.5";
        CHECK_OK(create(&task, hp, &a));
        CHECK_OK(create(&task, hp, &b));
        if (!a || !b) {
            if (a) m->destroy(a);
            if (b) m->destroy(b);
            return;
        }
        ct_tensor *tp[7];
        for (int i = 0; i < 7; i++) tp[i] = param(a, i);
        ct_optim_config oc = ct_optim_default(CT_OPTIM_ADAMW, 1e-3f);
        ct_optim *opt = ct_optim_create(&oc, tp, 7);
        ct_graph *g = ct_graph_create(0);
        ct_graph_set_grad(g, true);
        for (int s = 0; s < 2; s++) {
            ct_batch bt = {0};
            bt.n = MREF_B, bt.pixels = strong, bt.pixels_plain = weak, bt.seed = 7 + (uint64_t)s;
            bt.epoch = 0;
            ct_graph_reset(g);
            zero_grads(a);
            ct_tensor *l = m->loss(a, g, &bt);
            CHECK_MSG(l, "%s", ct_last_error());
            if (!l) break;
            CHECK_OK(ct_backward(g, l));
            CHECK_OK(ct_optim_step(opt, 1e-3f));
            CHECK_OK(m->after_step(a, &bt));
        }
        ct_graph_free(g);
        ct_optim_free(opt);
        CHECK_OK(ct_run_save_learned(m, a, dir));
        float sa[MREF_B * CREF_K], sb[MREF_B * CREF_K];
        score(a, weak, sa);
        score(b, weak, sb);
        CHECK_MSG(memcmp(sa, sb, sizeof sa), "training changed nothing (eval %d)", ev);
        CHECK_OK(ct_run_load_learned(m, b, dir));
        score(b, weak, sb);
        CHECK_MSG(!memcmp(sa, sb, sizeof sa), "eval %d: scores after loading differ", ev);
        CHECK(param(b, 9)->data[0] == 2.0f);
        m->destroy(a), m->destroy(b);
    }
}

static void test_hyper_parameters(void) {
    const ct_method *m = ct_method_find("must");
    CHECK(m && m->pixels && m->plain_view && m->wants_unlabelled && m->loss && m->after_step &&
          m->params && m->logits);
    if (!m || !load_fixture()) return;
    char *names[2] = {"cat", "dog"};
    ct_task task = make_task(names, 2);
    void *st = NULL;
    ct_kv hp = {0};
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    ct_kv_set(&hp, "templates", "a photo of a {}.");
    CHECK_OK(m->create(&task, &hp, &st));
    ct_train_cfg tc;
    CHECK_OK(ct_train_cfg_from_kv(&hp, &tc));
    CHECK_OK(ct_kv_check_used(&hp, "must"));
    CHECK(tc.step_sched && tc.optim.kind == CT_OPTIM_ADAMW && tc.batch_size == 64 &&
          tc.epochs == 30 && fabs(tc.optim.weight_decay - 0.05f) < 1e-9 &&
          !strcmp(tc.train_aug, "rrc_flip") && tc.aug_scale_min == 0.3);
    ct_kv_free(&hp);
    if (st) {
        CHECK(param(st, 0)->requires_grad && !param(st, 7)->requires_grad &&
              !param(st, 8)->requires_grad && !param(st, 9)->requires_grad);
        CHECK(param(st, 0)->numel == param(st, 7)->numel);
        m->destroy(st);
    }
    const char *bad[] = {"mask_patch=3", "mask_patch=x", "eval=teacher", "conf_threshold=2",
                         "mask_ratio=-0.1", "ema_warm_it=0"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        st = NULL;
        CHECK_MSG(create(&task, bad[i], &st) == CT_ERR_ARG && !st,
                  "%s: %s", bad[i], ct_last_error());
    }
}

/* On the shipped model, without labels: a short MUST run on an unlabelled
 * pool of Fashion-MNIST's training images against zero-shot on the first
 * MUST_TEST test images. Measured NON-result, said in docs/methods/must.md:
 * no setting tried (lr 1e-7 .. 1e-4, layer decay, logit scale 100 or the
 * model's, thresholds 0.7 / 0.9, a faster classifier group, with and
 * without augmentation; one epoch over 1,000 images) beat zero-shot here —
 * the shipped model's zero-shot pseudo-labels are 35% right and heavily
 * biased to one class, and self-training amplifies that. Checked: the run
 * completes without labels and does not collapse (well above chance). */
#define MUST_SET "unlabelled=320 epochs=1 batch_size=32 lr=1e-5 logit_scale=model " \
                 "conf_threshold=0.9"
#define MUST_TEST 500

static void test_runs_shipped(void) {
    if (!file_exists(SHIPPED_DIR "/model.safetensors")) {
        ct_test_skip("models/cliptune-small not found");
        return;
    }
    const char *methods[2] = {"zeroshot", "must"};
    const char *sets[2] = {"", MUST_SET};
    ct_run_result res[2] = {{0}};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!fashion_mnist_runs_on(SHIPPED_DIR, NULL, methods, sets, 2, MUST_TEST, "must", res,
                               NULL))
        return;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("    Fashion-MNIST, shipped model, no labels, first %d test images: zero-shot "
           "%.2f%%, MUST (" MUST_SET ") %.2f%%; %.1f s for both runs\n", MUST_TEST,
           100 * res[0].top1, 100 * res[1].top1,
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    CHECK_MSG(res[1].top1 > 0.2, "MUST collapsed: %.4f (zero-shot %.4f)", res[1].top1,
              res[0].top1);
}

int main(void) {
    RUN(test_hyper_parameters);
    RUN(test_mask);
    RUN(test_parity);
    RUN(test_layer_decay);
    RUN(test_round_trip);
    RUN(test_runs_shipped);
    ct_clip_free(g_clip);
    ct_tokenizer_free(g_tok);
    return ct_test_summary();
}
