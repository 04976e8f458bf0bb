/* ProDA (src/methods/proda.c): parity with an independent float64 PyTorch
 * re-implementation of the paper's math as 0-ml/flip ProDA.py computes it
 * (tools/ref/gen_proda_ref.py -> fixtures/methods/proda_ref.h): test logits,
 * the bound loss with the diversity term and the gradient of the P
 * contexts for mixed class-token positions (P = 6, 5), end positions
 * (P = 3) and P = 1, and three SGD steps of each; the defaults and the
 * refused options; the learned-tensor round trip through the trainer; and
 * it learns: on Fashion-MNIST with the shipped model, 16 shots, ProDA beats
 * zero-shot. The tiny model is tests/fixtures/methods/tiny. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cliptune.h"
#include "fixtures/methods/coop_ref.h"
#include "fixtures/methods/proda_ref.h"
#include "harness.h"
#include "method_fixture.h"
#include "model/bundle.h"
#include "api/run.h"

static ct_task make_task(char *const *classnames, int K) {
    ct_task t = {0};
    t.clip = g_clip, t.tok = g_tok, t.n_classes = K, t.classnames = classnames;
    t.dataset_name = "test", t.seed = 1;
    return t;
}

/* create proda with hp text (method keys only), every key read */
static ct_status create(const ct_task *task, const char *hp_text, void **state) {
    const ct_method *m = ct_method_find("proda");
    ct_kv hp = {0};
    ct_status s = m ? ct_kv_parse(&hp, hp_text) : CT_ERR_ARG;
    if (s == CT_OK) s = m->create(task, &hp, state);
    if (s == CT_OK && (s = ct_kv_check_used(&hp, "proda")) != CT_OK) {
        m->destroy(*state);
        *state = NULL;
    }
    ct_kv_free(&hp);
    return s;
}

static ct_tensor *ctx_of(void *state) {
    ct_tensor *p[4];
    int n = ct_method_find("proda")->params(state, p, 4);
    CHECK(n == 1);
    return n == 1 ? p[0] : NULL;
}

static ct_batch ref_batch(void) {
    return (ct_batch){.n = DREF_B, .x = dref_img, .labels = dref_labels};
}

typedef struct {
    const char *name, *hp;
    const double *ctx, *logits, *grad, *loss, *sgd_losses, *sgd_ctx, *sgd_logits;
    size_t n_ctx;
} ref_case;

#define CASE(n)                                                                              \
    {#n, dref_##n##_hp, dref_##n##_ctx, dref_##n##_logits, dref_##n##_grad, &dref_##n##_loss, \
     dref_##n##_sgd_losses, dref_##n##_sgd_ctx, dref_##n##_sgd_logits,                        \
     sizeof dref_##n##_ctx / sizeof(double)}
static const ref_case CASES[] = {CASE(p6_mixed), CASE(p5_mixed), CASE(p3_end), CASE(p1)};

static void set_ctx(ct_tensor *ctx, const double *v) {
    for (int64_t i = 0; i < ctx->numel; i++) ctx->data[i] = (float)v[i];
}

static void test_parity(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("proda");
    ct_task task = make_task((char *const *)cref_classnames, CREF_K);
    ct_batch b = ref_batch();
    ct_graph *g = ct_graph_create(0);
    for (size_t c = 0; c < sizeof CASES / sizeof *CASES; c++) {
        const ref_case *rc = &CASES[c];
        void *st = NULL;
        CHECK_OK(create(&task, rc->hp, &st));
        ct_tensor *ctx = st ? ctx_of(st) : NULL;
        if (!ctx) continue;
        CHECK_MSG((size_t)ctx->numel == rc->n_ctx, "%s: ctx has %lld values, reference %zu",
                  rc->name, (long long)ctx->numel, rc->n_ctx);
        if ((size_t)ctx->numel != rc->n_ctx) {
            m->destroy(st);
            continue;
        }
        set_ctx(ctx, rc->ctx);
        ct_tensor_zero_grad(ctx);
        ct_graph_reset(g);
        ct_tensor *loss = m->loss(st, g, &b);
        CHECK_MSG(loss, "%s: %s", rc->name, ct_last_error());
        if (!loss) {
            m->destroy(st);
            continue;
        }
        CHECK_OK(ct_backward(g, loss));
        char what[128];
        snprintf(what, sizeof what, "%s loss", rc->name);
        double d_loss = compare(what, loss->data, rc->loss, 1, 1e-5, 1e-5);
        snprintf(what, sizeof what, "%s d loss / d ctx", rc->name);
        double d_grad = compare(what, ctx->grad, rc->grad, rc->n_ctx, 1e-4, 1e-4);
        /* logits: with grad (recomputed) and without (the evaluation cache, twice) */
        ct_graph_reset(g);
        ct_tensor *lg = m->logits(st, g, &b);
        snprintf(what, sizeof what, "%s logits", rc->name);
        double d_lg = lg ? compare(what, lg->data, rc->logits, DREF_B * CREF_K, 1e-4, 1e-5) : 1;
        float with_grad[DREF_B * CREF_K];
        if (lg) memcpy(with_grad, lg->data, sizeof with_grad);
        for (int r = 0; r < 2 && lg; r++) {
            ct_graph_reset(g);
            ct_graph_set_grad(g, false);
            ct_tensor *l2 = m->logits(st, g, &b);
            CHECK_MSG(l2 && !memcmp(l2->data, with_grad, sizeof with_grad),
                      "%s: cached logits differ from recomputed ones", rc->name);
        }
        ct_graph_set_grad(g, true);
        printf("    %-10s max |d| loss %.2g  grad %.2g  logits %.2g\n", rc->name, d_loss, d_grad,
               d_lg);
        m->destroy(st);
    }
    ct_graph_free(g);
}

/* Three SGD steps (momentum 0.9, weight decay 5e-4: Dassl's SGD) on the
 * reference batch: losses, the contexts and the logits after them. */
static void test_sgd_steps(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("proda");
    ct_task task = make_task((char *const *)cref_classnames, CREF_K);
    ct_batch b = ref_batch();
    ct_graph *g = ct_graph_create(0);
    for (size_t c = 0; c < sizeof CASES / sizeof *CASES; c++) {
        const ref_case *rc = &CASES[c];
        void *st = NULL;
        CHECK_OK(create(&task, rc->hp, &st));
        ct_tensor *ctx = st ? ctx_of(st) : NULL;
        if (!ctx || (size_t)ctx->numel != rc->n_ctx) {
            if (st) m->destroy(st);
            continue;
        }
        set_ctx(ctx, rc->ctx);
        ct_optim_config oc = ct_optim_default(CT_OPTIM_SGD, DREF_SGD_LR);
        oc.momentum = 0.9f, oc.weight_decay = 5e-4f;
        ct_optim *opt = ct_optim_create(&oc, &ctx, 1);
        double mx = 0;
        char what[96];
        for (int s = 0; s < 3 && opt; s++) {
            ct_graph_reset(g);
            ct_optim_zero_grad(opt);
            ct_tensor *loss = m->loss(st, g, &b);
            if (!loss) break;
            CHECK_OK(ct_backward(g, loss));
            snprintf(what, sizeof what, "%s loss before step %d", rc->name, s + 1);
            double d = compare(what, loss->data, &rc->sgd_losses[s], 1, 1e-4, 1e-4);
            mx = d > mx ? d : mx;
            CHECK_OK(ct_optim_step(opt, DREF_SGD_LR));
        }
        snprintf(what, sizeof what, "%s ctx after 3 steps", rc->name);
        double dc = compare(what, ctx->data, rc->sgd_ctx, rc->n_ctx, 1e-4, 1e-4);
        double moved = 0;
        for (size_t i = 0; i < rc->n_ctx; i++) {
            double d = fabs(rc->sgd_ctx[i] - rc->ctx[i]);
            moved = d > moved ? d : moved;
        }
        CHECK_MSG(moved > 0.05, "%s: the steps moved the context by %g only", rc->name, moved);
        ct_graph_reset(g);
        ct_graph_set_grad(g, false);
        ct_tensor *lg = m->logits(st, g, &b);
        snprintf(what, sizeof what, "%s logits after 3 steps", rc->name);
        double dl = lg ? compare(what, lg->data, rc->sgd_logits, DREF_B * CREF_K, 1e-3, 1e-4) : 1;
        ct_graph_set_grad(g, true);
        printf("    %-10s max |d| losses %.2g  ctx %.2g (largest move %.3f)  logits %.2g\n",
               rc->name, mx, dc, moved, dl);
        ct_optim_free(opt);
        m->destroy(st);
    }
    ct_graph_free(g);
}

static void test_hyper_parameters(void) {
    const ct_method *m = ct_method_find("proda");
    CHECK(m && m->loss && m->logits && m->params && m->param_names);
    if (!m) return;
    ct_kv hp = {0};
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    ct_train_cfg tc;
    CHECK_OK(ct_train_cfg_from_kv(&hp, &tc));
    CHECK(tc.epochs == 50 && tc.batch_size == 32 && tc.optim.kind == CT_OPTIM_SGD);
    CHECK(fabsf(tc.optim.lr - 0.002f) < 1e-9f && fabsf(tc.optim.momentum - 0.9f) < 1e-9f &&
          fabsf(tc.optim.weight_decay - 5e-4f) < 1e-12f);
    int n = 0, n_ctx = 0;
    double w = 0;
    CHECK_OK(ct_kv_int(&hp, "n_prompts", 0, &n));
    CHECK_OK(ct_kv_int(&hp, "n_ctx", 0, &n_ctx));
    CHECK_OK(ct_kv_double(&hp, "div_w", 0, &w));
    CHECK(n == 32 && n_ctx == 16 && w == 1.0);
    ct_kv_free(&hp);
    if (!load_fixture()) return;
    char *names[2] = {"cat", "dog"};
    ct_task task = make_task(names, 2);
    void *st = NULL, *st2 = NULL;
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    CHECK_OK(m->create(&task, &hp, &st));
    CHECK_OK(m->create(&task, &hp, &st2));
    ct_kv_free(&hp);
    ct_tensor *ctx = st ? ctx_of(st) : NULL, *ctx2 = st2 ? ctx_of(st2) : NULL;
    CHECK(ctx && ctx->ndim == 3 && ctx->shape[0] == 32 && ctx->shape[1] == 16 &&
          ctx->shape[2] == CREF_W && ctx->requires_grad);
    double ss = 0;
    for (int64_t i = 0; ctx && i < ctx->numel; i++) ss += (double)ctx->data[i] * ctx->data[i];
    if (ctx) CHECK_NEAR("ctx init std", sqrt(ss / (double)ctx->numel), 0.02, 0.002, 0);
    CHECK(ctx && ctx2 && !memcmp(ctx->data, ctx2->data, (size_t)ctx->numel * sizeof(float)));
    const char *nm[2] = {NULL, NULL};
    CHECK(st && m->param_names(st, nm, 2) == 1 && nm[0] && !strcmp(nm[0], "ctx"));
    m->destroy(st), m->destroy(st2);
    struct {
        const char *hp, *needle;
    } bad[] = {
        {"n_prompts=0", "n_prompts=0"},
        {"n_prompts=257", "n_prompts=257"},
        {"div_w=-1", "div_w=-1"},
        {"positions=front", "positions=front"},
        {"ctx_init=a_photo_of_a", "ctx_init=a_photo_of_a"},
        {"csc=1", "csc=1"},
        {"n_ctx=0", "n_ctx=0"},
        {"prec=bf16", "prec=bf16"},
        {"class_token_position=end", "class_token_position"},
        {"bogus=1", "bogus"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        st = NULL;
        CHECK_MSG(create(&task, bad[i].hp, &st) == CT_ERR_ARG && !st &&
                      strstr(ct_last_error(), bad[i].needle),
                  "%s: %s", bad[i].hp, ct_last_error());
    }
}

/* Train through ct_train, save the learned contexts, recreate from the same
 * hp and task, load: the same scores from ct_predict, bit for bit. */
static void test_round_trip(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("proda");
    ct_task task = make_task((char *const *)cref_classnames, CREF_K);
    enum { N = 30 };
    static float x[N * CREF_E];
    static int y[N];
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < CREF_E; j++)
            x[i * CREF_E + j] = dref_img[(i % DREF_B) * CREF_E + j] +
                                0.05f * (float)(i / DREF_B) * (float)((j % 7) - 3);
        y[i] = dref_labels[i % DREF_B];
    }
    ct_features f = {.n = N, .dim = CREF_E, .x = x, .labels = y};
    task.train_feats = &f;
    const char *hp = "n_prompts=4 n_ctx=2";
    void *a = NULL, *b = NULL;
    CHECK_OK(create(&task, hp, &a));
    CHECK_OK(create(&task, hp, &b));
    if (!a || !b) {
        m->destroy(a), m->destroy(b);
        return;
    }
    ct_kv tk = {0};
    CHECK_OK(ct_kv_parse(&tk, "epochs=3 batch_size=8 warmup_epochs=0 lr=0.05"));
    ct_train_cfg tc;
    CHECK_OK(ct_train_cfg_from_kv(&tk, &tc));
    tc.seed = 3;
    CHECK_OK(ct_train(m, a, &task, &tc, &tk));
    ct_kv_free(&tk);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/proda_rt", ct_test_tmpdir());
    mkdir(dir, 0777);
    CHECK_OK(ct_run_save_learned(m, a, dir));
    float *sa = malloc(sizeof(float) * N * CREF_K), *sb = malloc(sizeof(float) * N * CREF_K);
    CHECK_OK(ct_predict(m, a, &f, sa));
    CHECK_OK(ct_predict(m, b, &f, sb));
    CHECK_MSG(memcmp(sa, sb, sizeof(float) * N * CREF_K), "training changed nothing");
    CHECK_OK(ct_run_load_learned(m, b, dir));
    CHECK_OK(ct_predict(m, b, &f, sb));
    CHECK_MSG(!memcmp(sa, sb, sizeof(float) * N * CREF_K),
              "scores after load differ from the trained state's");
    /* another number of prompts is refused (a different ctx shape) */
    void *c = NULL;
    CHECK_OK(create(&task, "n_prompts=2 n_ctx=2", &c));
    if (c) {
        CHECK(ct_run_load_learned(m, c, dir) == CT_ERR_FORMAT);
        m->destroy(c);
    }
    free(sa), free(sb);
    m->destroy(a), m->destroy(b);
}

/* ---- learning on Fashion-MNIST with the shipped model ----
 * 16 shots (160 images), the first 500 test images, clean (view-0)
 * features; a short schedule (see LEARN_SET and docs/methods/proda.md). */
#define LEARN_SET "epochs=6 lr=0.02 n_prompts=4 n_ctx=4 aug_views=0 warmup_epochs=0"

static void test_learns_fashion_mnist(void) {
    const char *methods[2] = {"zeroshot", "proda"}, *sets[2] = {"", LEARN_SET};
    ct_run_result res[2] = {{0}};
    if (!fashion_mnist_runs_on(SHIPPED_DIR, NULL, methods, sets, 2, 500, "fmproda", res, NULL))
        return;
    printf("    Fashion-MNIST 16-shot seed 1, first 500 test images, shipped model: zero-shot "
           "%.2f%%, ProDA (" LEARN_SET ") %.2f%% (val %.2f%%)\n", 100 * res[0].top1,
           100 * res[1].top1, 100 * res[1].val_top1);
    CHECK_MSG(res[1].top1 > res[0].top1 + 0.05, "ProDA %.4f vs zero-shot %.4f", res[1].top1,
              res[0].top1);
}

int main(void) {
    RUN(test_hyper_parameters);
    RUN(test_parity);
    RUN(test_sgd_steps);
    RUN(test_round_trip);
    RUN(test_learns_fashion_mnist);
    ct_clip_free(g_clip);
    ct_tokenizer_free(g_tok);
    return ct_test_summary();
}
