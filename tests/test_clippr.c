/* CLIPPR (src/methods/clippr.c): the zero-shot pseudo-labels, the
 * classifier's logits, the loss with the label prior (custom and uniform),
 * its gradients and three full-batch Adam steps through ct_train against an
 * independent float64 PyTorch re-implementation (tools/ref/gen_clippr_ref.py
 * -> fixtures/methods/clippr_ref.h); the prior's three spellings; the
 * learned-tensor round trip and checkpoint resume; and, on the shipped
 * model, beating zero-shot on Fashion-MNIST without a label. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cliptune.h"
#include "fixtures/methods/clippr_ref.h"
#include "harness.h"
#include "method_fixture.h"
#include "api/run.h"

static const char *const classnames[CLREF_K] = {"a", "b", "c", "d", "e"};
static const ct_features ref_unlabelled = {.n = CLREF_N, .dim = CLREF_E, .x = (float *)clref_x};
static char zs_path[4200];

/* the task on the tiny fixture; the text features come from zs_path */
static ct_task make_task(void) {
    ct_task t = {0};
    t.clip = g_clip, t.tok = g_tok, t.n_classes = CLREF_K;
    t.classnames = (char *const *)classnames;
    t.dataset_name = "test", t.seed = 1;
    t.unlabelled_feats = &ref_unlabelled;
    return t;
}

static bool setup(void) {
    if (!load_fixture()) return false;
    if (!zs_path[0]) {
        snprintf(zs_path, sizeof zs_path, "%s/clippr_zs.npy", ct_test_tmpdir());
        int64_t shape[2] = {CLREF_K, CLREF_E};
        CHECK_OK(ct_npy_write(zs_path, CT_F32, 2, shape, clref_zs));
    }
    return true;
}

/* create with the defaults, zs_weights=zs_path and hp_text */
static ct_status create(const ct_task *task, const char *hp_text, void **state) {
    const ct_method *m = ct_method_find("clippr");
    ct_kv hp = {0};
    char zs[4300];
    snprintf(zs, sizeof zs, "zs_weights=%s", zs_path);
    ct_status s = ct_kv_parse(&hp, m->defaults);
    if (s == CT_OK) s = ct_kv_parse(&hp, zs);
    if (s == CT_OK) s = ct_kv_parse(&hp, hp_text);
    if (s == CT_OK) s = m->create(task, &hp, state);
    ct_kv_free(&hp);
    return s;
}

static ct_status train(void *st, const ct_task *task, const char *tk, ct_train_cfg *out) {
    const ct_method *m = ct_method_find("clippr");
    ct_kv hp = {0};
    ct_status s = ct_kv_parse(&hp, m->defaults);
    if (s == CT_OK) s = ct_kv_parse(&hp, tk);
    ct_train_cfg tc;
    if (s == CT_OK) s = ct_train_cfg_from_kv(&hp, &tc);
    if (s == CT_OK) {
        if (out) {
            tc.run_dir = out->run_dir, tc.resume = out->resume, tc.stop_after = out->stop_after;
            tc.progress = out->progress, tc.progress_ctx = out->progress_ctx;
        }
        tc.seed = 1;
        s = ct_train(m, st, task, &tc, &hp);
    }
    ct_kv_free(&hp);
    return s;
}

static void set_params(void *st) {
    ct_tensor *p[5];
    ct_method_find("clippr")->params(st, p, 5);
    const float *v[5] = {clref_w1, clref_b1, clref_w2, clref_b2, clref_w3};
    for (int i = 0; i < 5; i++) {
        memcpy(p[i]->data, v[i], (size_t)p[i]->numel * sizeof(float));
        ct_tensor_zero_grad(p[i]);
    }
}

static void test_hyper_parameters(void) {
    const ct_method *m = ct_method_find("clippr");
    CHECK(m && m->loss && m->logits && m->params && m->fit && m->train_set &&
          m->wants_unlabelled && !strcmp(m->setup, "unsupervised"));
    if (!m) return;
    ct_kv hp = {0};
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    ct_train_cfg tc;
    CHECK_OK(ct_train_cfg_from_kv(&hp, &tc));
    /* the cifar10 uniform-prior script: Adam lr 1e-3, wd 3e-4, 4 x 128 a step */
    CHECK(tc.epochs == 60 && tc.batch_size == 512 && tc.optim.kind == CT_OPTIM_ADAM);
    CHECK(fabsf(tc.optim.lr - 1e-3f) < 1e-9f && fabsf(tc.optim.weight_decay - 3e-4f) < 1e-10f &&
          fabsf(tc.optim.beta1 - 0.9f) < 1e-7f && fabsf(tc.optim.beta2 - 0.999f) < 1e-7f);
    CHECK(tc.sched.kind == CT_SCHED_CONSTANT && tc.sched.warmup == CT_WARMUP_NONE &&
          !tc.select_best_val);
    double alpha = 0;
    int hidden = 0;
    const char *prior = NULL;
    CHECK_OK(ct_kv_double(&hp, "alpha", 0, &alpha));
    CHECK_OK(ct_kv_int(&hp, "hidden", 0, &hidden));
    CHECK_OK(ct_kv_str(&hp, "prior", "", &prior));
    CHECK(alpha == 100 && hidden == 128 && prior && !strcmp(prior, "uniform"));
    ct_kv_free(&hp);
    if (!setup()) return;
    ct_task task = make_task();
    void *st = NULL;
    CHECK_OK(create(&task, "hidden=8", &st));
    ct_tensor *p[5];
    CHECK(st && m->params(st, p, 5) == 5 && p[0]->shape[0] == 8 &&
          p[0]->shape[1] == CLREF_E && p[4]->shape[0] == CLREF_K && p[4]->requires_grad);
    if (st) m->destroy(st);
    struct {
        const char *hp, *needle;
    } bad[] = {
        {"alpha=-1", "alpha=-1"},       {"hidden=0", "hidden=0"},
        {"prior=1:2", "prior=1:2"},     {"prior=1:2:3:4:5:6", "prior=1:2:3:4:5:6"},
        {"prior=1:2:x:4:5", "prior"},   {"prior=0:0:0:0:0", "sum"},
        {"prior=1:-2:3:4:5", "weight 1"}, {"prior=nan:1:1:1:1", "weight 0"},
        {"prior=gaussian", "prior=gaussian"}, {"aug_views=4", "aug_views=4"},
        {"prior=/nonexistent/p.npy", "p.npy"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        st = NULL;
        ct_status s = create(&task, bad[i].hp, &st);
        CHECK_MSG(s != CT_OK && !st && strstr(ct_last_error(), bad[i].needle), "%s: %s",
                  bad[i].hp, ct_last_error());
        if (st) m->destroy(st);
    }
    /* fit needs the unlabelled features, of the model's dimension */
    task.unlabelled_feats = NULL;
    CHECK_OK(create(&task, "", &st));
    if (!st) return;
    CHECK(m->fit(st, &task) == CT_ERR_ARG && strstr(ct_last_error(), "unlabelled"));
    ct_features wrong = {.n = 1, .dim = 3, .x = (float[3]){1, 2, 3}};
    task.unlabelled_feats = &wrong;
    CHECK(m->fit(st, &task) == CT_ERR_ARG && strstr(ct_last_error(), "dimension"));
    m->destroy(st);
}

static void copy_grads(void *st, float *out) {
    ct_tensor *p[5];
    ct_method_find("clippr")->params(st, p, 5);
    for (int i = 0; i < 5; i++, out += p[i - 1]->numel)
        memcpy(out, p[i]->grad, (size_t)p[i]->numel * sizeof(float));
}

typedef struct {
    int n;
    double loss[8];
} step_log;

static void on_step(void *ctx, const char *stage, int64_t done, int64_t total, double loss,
                    double lr) {
    (void)stage, (void)done, (void)total, (void)lr;
    step_log *l = ctx;
    if (l->n < 8) l->loss[l->n++] = loss;
}

#define NW (CLREF_H * CLREF_E + CLREF_H + CLREF_H * CLREF_H + CLREF_H + CLREF_K * CLREF_H)

static void cat_ref(double *out, const double *a, const double *b, const double *c,
                    const double *d, const double *e) {
    size_t n[5] = {CLREF_H * CLREF_E, CLREF_H, CLREF_H * CLREF_H, CLREF_H, CLREF_K * CLREF_H};
    const double *v[5] = {a, b, c, d, e};
    for (int i = 0; i < 5; i++) memcpy(out, v[i], n[i] * sizeof *out), out += n[i];
}

static void test_parity(void) {
    if (!setup()) return;
    const ct_method *m = ct_method_find("clippr");
    ct_task task = make_task();
    void *st = NULL;
    CHECK_OK(create(&task, "hidden=8 prior=" CLREF_PRIOR, &st));
    if (!st) return;
    CHECK_OK(m->fit(st, &task));
    const ct_features *set = m->train_set(st);
    CHECK(set->n == CLREF_N && !memcmp(set->x, clref_x, sizeof clref_x));
    int wrong = 0;
    for (int i = 0; i < CLREF_N && set->n == CLREF_N; i++) wrong += set->labels[i] != clref_y[i];
    CHECK_MSG(wrong == 0, "%d of %d pseudo-labels differ from the reference's", wrong, CLREF_N);
    set_params(st);
    ct_batch b = {.n = CLREF_N, .x = clref_x, .labels = clref_y};
    ct_graph *g = ct_graph_create(0);
    ct_tensor *loss = m->loss(st, g, &b);
    CHECK_MSG(loss, "%s", ct_last_error());
    if (!loss) goto out;
    CHECK_OK(ct_backward(g, loss));
    double dl = compare("loss (custom prior)", loss->data, &clref_loss, 1, 1e-4, 1e-4);
    static float grad[NW];
    static double want[NW];
    copy_grads(st, grad);
    cat_ref(want, clref_grad_w1, clref_grad_b1, clref_grad_w2, clref_grad_b2, clref_grad_w3);
    double dg = compare("d loss / d classifier", grad, want, NW, 1e-4, 1e-3);
    ct_graph_reset(g);
    ct_graph_set_grad(g, false);
    ct_tensor *lg = m->logits(st, g, &b);
    double dz = lg ? compare("logits", lg->data, clref_logits, CLREF_N * CLREF_K, 1e-5, 1e-4) : 1;
    printf("    max |d| loss %.2g  grad %.2g  logits %.2g\n", dl, dg, dz);
    m->destroy(st);
    /* the uniform prior, and alpha=0 (cross-entropy alone) */
    const char *hp2[2] = {"hidden=8", "hidden=8 alpha=0"};
    const double *want2[2] = {&clref_loss_uniform, &clref_loss_ce};
    for (int v = 0; v < 2; v++) {
        st = NULL;
        CHECK_OK(create(&task, hp2[v], &st));
        if (!st) continue;
        set_params(st);
        ct_graph_reset(g);
        ct_graph_set_grad(g, false);
        loss = m->loss(st, g, &b);
        if (loss) compare(v ? "loss (alpha=0)" : "loss (uniform prior)", loss->data, want2[v], 1,
                          1e-4, 1e-4);
        CHECK(loss != NULL);
        m->destroy(st);
    }
    /* three Adam steps through ct_train: one full batch per epoch */
    st = NULL;
    CHECK_OK(create(&task, "hidden=8 prior=" CLREF_PRIOR, &st));
    if (!st) goto out;
    set_params(st);
    step_log sl = {0};
    ct_train_cfg o = {.progress = on_step, .progress_ctx = &sl};
    CHECK_OK(train(st, &task, "epochs=3 batch_size=64", &o));
    CHECK(sl.n == 3);
    double dsl = compare("losses of 3 Adam steps", (float[3]){(float)sl.loss[0],
                         (float)sl.loss[1], (float)sl.loss[2]}, clref_adam_losses, 3, 1e-4, 1e-4);
    ct_tensor *p[5];
    m->params(st, p, 5);
    static float w[NW];
    float *q = w;
    for (int i = 0; i < 5; i++) memcpy(q, p[i]->data, (size_t)p[i]->numel * sizeof *q), q += p[i]->numel;
    cat_ref(want, clref_adam_w1, clref_adam_b1, clref_adam_w2, clref_adam_b2, clref_adam_w3);
    double dw = compare("classifier after 3 steps", w, want, NW, 1e-5, 1e-4);
    ct_graph_reset(g);
    ct_graph_set_grad(g, false);
    lg = m->logits(st, g, &b);
    double dz3 = lg ? compare("logits after 3 steps", lg->data, clref_adam_logits,
                              CLREF_N * CLREF_K, 1e-5, 1e-4)
                    : 1;
    printf("    3 Adam steps: max |d| losses %.2g  weights %.2g  logits %.2g\n", dsl, dw, dz3);
    m->destroy(st);
out:
    ct_graph_free(g);
}

/* prior= as weights separated by ':', as a .npy, scaled: one prior */
static void test_prior_forms(void) {
    if (!setup()) return;
    const ct_method *m = ct_method_find("clippr");
    ct_task task = make_task();
    char npy[4200], hp[3][4400];
    snprintf(npy, sizeof npy, "%s/clippr_prior.npy", ct_test_tmpdir());
    float w[CLREF_K] = {10, 20, 30, 20, 20};
    int64_t shape[1] = {CLREF_K};
    CHECK_OK(ct_npy_write(npy, CT_F32, 1, shape, w));
    snprintf(hp[0], sizeof hp[0], "hidden=8 prior=%s", CLREF_PRIOR);
    snprintf(hp[1], sizeof hp[1], "hidden=8 prior=%s", npy);
    snprintf(hp[2], sizeof hp[2], "hidden=8 prior=0.1:0.2:0.3:0.2:0.2");
    ct_batch b = {.n = CLREF_N, .x = clref_x, .labels = clref_y};
    ct_graph *g = ct_graph_create(0);
    for (int v = 0; v < 3; v++) {
        void *st = NULL;
        CHECK_OK(create(&task, hp[v], &st));
        if (!st) continue;
        set_params(st);
        ct_graph_reset(g);
        ct_graph_set_grad(g, false);
        ct_tensor *loss = m->loss(st, g, &b);
        CHECK(loss != NULL);
        if (loss) compare(hp[v], loss->data, &clref_loss, 1, 1e-4, 1e-4);
        m->destroy(st);
    }
    /* a .npy of the wrong length */
    int64_t s4[1] = {4};
    CHECK_OK(ct_npy_write(npy, CT_F32, 1, s4, w));
    void *st = NULL;
    CHECK(create(&task, hp[1], &st) == CT_ERR_FORMAT && !st &&
          strstr(ct_last_error(), "one per class"));
    ct_graph_free(g);
}

/* Save / load gives the same scores bit for bit; a run stopped after one
 * epoch and resumed ends where the uninterrupted run does. */
static void test_round_trip(void) {
    if (!setup()) return;
    const ct_method *m = ct_method_find("clippr");
    ct_task task = make_task();
    const char *tk = "epochs=3 batch_size=8";
    void *a = NULL, *b = NULL, *c = NULL, *e = NULL;
    CHECK_OK(create(&task, "hidden=8", &a));
    CHECK_OK(create(&task, "hidden=8", &b));
    CHECK_OK(create(&task, "hidden=8", &c));
    if (!a || !b || !c) return;
    CHECK_OK(train(a, &task, tk, NULL));
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/clippr_rt", ct_test_tmpdir());
    mkdir(dir, 0777);
    CHECK_OK(ct_run_save_learned(m, a, dir));
    float sa[CLREF_N * CLREF_K], sb[CLREF_N * CLREF_K];
    CHECK_OK(ct_predict(m, a, &ref_unlabelled, sa));
    CHECK_OK(ct_predict(m, b, &ref_unlabelled, sb));
    CHECK_MSG(memcmp(sa, sb, sizeof sa), "training changed nothing");
    ct_task bare = make_task();
    bare.unlabelled_feats = NULL;
    CHECK_OK(create(&bare, "hidden=8", &e));
    if (e) {
        CHECK_OK(ct_run_load_learned(m, e, dir));
        CHECK_OK(ct_predict(m, e, &ref_unlabelled, sb));
        CHECK_MSG(!memcmp(sa, sb, sizeof sa), "scores after load differ from the trained state's");
        m->destroy(e);
    }
    /* another hidden width is refused */
    void *d = NULL;
    CHECK_OK(create(&task, "hidden=4", &d));
    if (d) {
        CHECK(ct_run_load_learned(m, d, dir) == CT_ERR_FORMAT);
        m->destroy(d);
    }
    snprintf(dir, sizeof dir, "%s/clippr_resume", ct_test_tmpdir());
    mkdir(dir, 0777);
    ct_train_cfg o = {.run_dir = dir, .stop_after = 1};
    CHECK_OK(train(b, &task, tk, &o));
    o.stop_after = 0, o.resume = true;
    CHECK_OK(train(c, &task, tk, &o));
    CHECK_OK(ct_predict(m, c, &ref_unlabelled, sb));
    CHECK_MSG(!memcmp(sa, sb, sizeof sa), "a resumed run differs from an uninterrupted one");
    m->destroy(a), m->destroy(b), m->destroy(c);
}

/* The shipped model on Fashion-MNIST, a seeded 3000 of the training images
 * as the unlabelled pool, the first 2000 test images: CLIPPR beats
 * zero-shot without a label (zero-shot puts most images in few classes; the
 * prior spreads them). epochs=200 gives the pool of 3000 (6 steps of 512 an
 * epoch) the ~1200 steps the defaults give 10,000 images; with the default
 * 60 epochs a pool this small leaves the MLP short of zero-shot. */
static void test_fashion_mnist(void) {
    if (!file_exists(SHIPPED_DIR "/model.safetensors")) {
        ct_test_skip("the shipped model is missing");
        return;
    }
    const char *methods[2] = {"zeroshot", "clippr"};
    const char *sets[2] = {"", "unlabelled=3000 epochs=200 checkpoint_every=50"};
    ct_run_result res[2] = {{0}};
    if (!fashion_mnist_runs_on(SHIPPED_DIR, NULL, methods, sets, 2, 2000, "clippr", res, NULL))
        return;
    printf("    Fashion-MNIST, shipped model, first 2000 test images: zero-shot %.2f%%, CLIPPR "
           "(3000 unlabelled, no label) %.2f%%\n", 100 * res[0].top1, 100 * res[1].top1);
    CHECK_MSG(res[1].top1 > res[0].top1 + 0.01, "CLIPPR %.4f vs zero-shot %.4f", res[1].top1,
              res[0].top1);
}

int main(void) {
    RUN(test_hyper_parameters);
    RUN(test_parity);
    RUN(test_prior_forms);
    RUN(test_round_trip);
    RUN(test_fashion_mnist);
    ct_clip_free(g_clip);
    ct_tokenizer_free(g_tok);
    return ct_test_summary();
}
