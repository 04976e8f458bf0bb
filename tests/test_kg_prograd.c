/* KgCoOp (src/methods/kgcoop.c) and ProGrad (src/methods/prograd.c): parity
 * of the loss and the final context gradient (for ProGrad after its gradient
 * projection, in a case where it projects and one where it does not) and of
 * three SGD steps with an independent float64 PyTorch re-implementation
 * (tools/ref/gen_kg_prograd_ref.py -> fixtures/methods/kg_prograd_ref.h) on
 * the tiny fixture; the learned-tensor round trip; learning on Fashion-MNIST
 * against zero-shot. The tokenizer is tests/fixtures/bpe/clip_subset. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cliptune.h"
#include "fixtures/methods/coop_ref.h"
#include "fixtures/methods/kg_prograd_ref.h"
#include "harness.h"
#include "method_fixture.h"
#include "model/bundle.h"
#include "api/run.h"



static ct_task make_task(void) {
    ct_task t = {0};
    t.clip = g_clip, t.tok = g_tok, t.n_classes = CREF_K;
    t.classnames = (char *const *)cref_classnames;
    t.dataset_name = "test", t.seed = 1;
    return t;
}

/* create a method with its default method keys overridden by hp_text */
static ct_status create(const char *method, const ct_task *task, const char *hp_text,
                        void **state) {
    const ct_method *m = ct_method_find(method);
    ct_kv hp = {0};
    ct_status s = ct_kv_parse(&hp, m->defaults);
    if (s == CT_OK) s = ct_kv_parse(&hp, hp_text);
    if (s == CT_OK) s = m->create(task, &hp, state);
    ct_kv_free(&hp);
    return s;
}

static ct_tensor *ctx_of(const char *method, void *state) {
    ct_tensor *p[4];
    int n = ct_method_find(method)->params(state, p, 4);
    CHECK(n == 1);
    return n == 1 ? p[0] : NULL;
}

static void set_ctx(ct_tensor *ctx, const double *v) {
    for (int64_t i = 0; i < ctx->numel; i++) ctx->data[i] = (float)v[i];
}

static const ct_batch ref_batch = {KREF_B, kref_img, kref_labels, NULL, 0, 0, NULL, NULL, 0};

/* loss and final gradient of one step (backward, then before_step) */
static ct_tensor *step_grad(const ct_method *m, void *st, ct_graph *g, ct_tensor *ctx) {
    ct_graph_reset(g);
    ct_tensor_zero_grad(ctx);
    ct_tensor *loss = m->loss(st, g, &ref_batch);
    CHECK_MSG(loss, "%s: %s", m->name, ct_last_error());
    if (!loss) return NULL;
    CHECK_OK(ct_backward(g, loss));
    if (m->before_step) CHECK_OK(m->before_step(st, g, &ref_batch));
    return loss;
}

/* three SGD steps (momentum 0.9, weight decay 5e-4, lr 0.002) from ctx0 */
static void sgd3(const char *what, const ct_method *m, void *st, ct_tensor *ctx,
                 const double *ctx0, const double *losses, const double *want) {
    set_ctx(ctx, ctx0);
    ct_optim_config oc = ct_optim_default(CT_OPTIM_SGD, 0.002f);
    oc.momentum = 0.9f, oc.weight_decay = 5e-4f;
    ct_optim *opt = ct_optim_create(&oc, &ctx, 1);
    ct_graph *g = ct_graph_create(0);
    double mx = 0;
    for (int s = 0; s < 3 && opt; s++) {
        ct_tensor *loss = step_grad(m, st, g, ctx);
        if (!loss) break;
        char w[96];
        snprintf(w, sizeof w, "%s loss before step %d", what, s + 1);
        double d = compare(w, loss->data, &losses[s], 1, 1e-3, 1e-3);
        mx = d > mx ? d : mx;
        CHECK_OK(ct_optim_step(opt, 0.002f));
    }
    char w[96];
    snprintf(w, sizeof w, "%s ctx after 3 steps", what);
    double dc = compare(w, ctx->data, want, (size_t)ctx->numel, 1e-3, 1e-3);
    printf("    %s 3 SGD steps: max |d| losses %.2g ctx %.2g\n", what, mx, dc);
    ct_graph_free(g);
    ct_optim_free(opt);
}

static void test_kgcoop_parity(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("kgcoop");
    CHECK(m != NULL);
    if (!m) return;
    ct_task task = make_task();
    ct_graph *g = ct_graph_create(0);
    const char *kinds[2] = {"cos", "l2"};
    const double *losses[2] = {&kref_kg_cos_loss, &kref_kg_l2_loss};
    const double *grads[2] = {kref_kg_cos_grad, kref_kg_l2_grad};
    const double *sl[2] = {kref_kg_cos_sgd_losses, kref_kg_l2_sgd_losses};
    const double *sc[2] = {kref_kg_cos_sgd_ctx, kref_kg_l2_sgd_ctx};
    for (int k = 0; k < 2; k++) {
        char hp[64], what[96];
        snprintf(hp, sizeof hp, "kg_loss=%s", kinds[k]);
        void *st = NULL;
        CHECK_OK(create("kgcoop", &task, hp, &st));
        ct_tensor *ctx = st ? ctx_of("kgcoop", st) : NULL;
        if (!ctx) continue;
        CHECK(ctx->numel == (int64_t)(sizeof kref_kg_ctx / sizeof(double)));
        if (k == 0) compare("kgcoop initial ctx (a photo of a)", ctx->data, kref_kg_init,
                            (size_t)ctx->numel, 0, 0);
        set_ctx(ctx, kref_kg_ctx);
        ct_tensor *loss = step_grad(m, st, g, ctx);
        if (loss) {
            snprintf(what, sizeof what, "kgcoop %s loss", kinds[k]);
            double dl = compare(what, loss->data, losses[k], 1, 1e-4, 1e-4);
            snprintf(what, sizeof what, "kgcoop %s d loss / d ctx", kinds[k]);
            double dg = compare(what, ctx->grad, grads[k], (size_t)ctx->numel, 1e-4, 1e-4);
            printf("    kgcoop kg_loss=%s: loss %.6f (|d| %.2g), max |d grad| %.2g\n", kinds[k],
                   loss->data[0], dl, dg);
        }
        snprintf(what, sizeof what, "kgcoop %s", kinds[k]);
        sgd3(what, m, st, ctx, kref_kg_ctx, sl[k], sc[k]);
        m->destroy(st);
    }
    ct_graph_free(g);
}

static void test_prograd_parity(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("prograd");
    CHECK(m != NULL);
    if (!m) return;
    ct_task task = make_task();
    void *st = NULL;
    CHECK_OK(create("prograd", &task, "", &st));
    ct_tensor *ctx = st ? ctx_of("prograd", st) : NULL;
    if (!ctx) return;
    CHECK(ctx->numel == (int64_t)(sizeof kref_pg_init / sizeof(double)));
    compare("prograd initial ctx (zeros, then a photo of a)", ctx->data, kref_pg_init,
            (size_t)ctx->numel, 0, 0);
    ct_graph *g = ct_graph_create(0);
    struct {
        const char *name;
        const double *ctx, *ce, *grad;
        int projected;
    } cases[2] = {{"projected", kref_pg_proj_ctx, &kref_pg_proj_ce, kref_pg_proj_grad,
                   kref_pg_proj_projected},
                  {"kept", kref_pg_keep_ctx, &kref_pg_keep_ce, kref_pg_keep_grad,
                   kref_pg_keep_projected}};
    CHECK(cases[0].projected == 1 && cases[1].projected == 0);
    for (int c = 0; c < 2; c++) {
        set_ctx(ctx, cases[c].ctx);
        ct_tensor *loss = step_grad(m, st, g, ctx);
        if (!loss) continue;
        char what[96];
        snprintf(what, sizeof what, "prograd %s CE", cases[c].name);
        double dl = compare(what, loss->data, cases[c].ce, 1, 1e-4, 1e-4);
        snprintf(what, sizeof what, "prograd %s final grad", cases[c].name);
        double dg = compare(what, ctx->grad, cases[c].grad, (size_t)ctx->numel, 1e-4, 1e-4);
        printf("    prograd %s: CE %.6f (|d| %.2g), max |d grad| %.2g\n", cases[c].name,
               loss->data[0], dl, dg);
    }
    sgd3("prograd", m, st, ctx, kref_pg_proj_ctx, kref_pg_sgd_losses, kref_pg_sgd_ctx);
    ct_graph_free(g);
    m->destroy(st);
}

static void test_hyper_parameters(void) {
    if (!load_fixture()) return;
    ct_task task = make_task();
    void *st = NULL;
    CHECK(create("kgcoop", &task, "kg_loss=l1", &st) == CT_ERR_ARG);
    CHECK(create("kgcoop", &task, "w=-1", &st) == CT_ERR_ARG);
    CHECK(create("prograd", &task, "T=0", &st) == CT_ERR_ARG);
    CHECK(create("prograd", &task, "n_ctx=3", &st) == CT_ERR_ARG); /* < 4 template words */
    /* no template: a plain random 16-vector context */
    CHECK_OK(create("prograd", &task, "ctx_init=", &st));
    if (st) {
        ct_tensor *ctx = ctx_of("prograd", st);
        CHECK(ctx && ctx->numel == 16 * CREF_W);
        ct_method_find("prograd")->destroy(st);
    }
}

static void test_checkpoint_round_trip(void) {
    if (!load_fixture()) return;
    ct_task task = make_task();
    enum { N = 40 };
    static float x[N * CREF_E];
    static int y[N];
    for (int i = 0; i < N; i++) {
        for (int e = 0; e < CREF_E; e++)
            x[i * CREF_E + e] = kref_img[(i % KREF_B) * CREF_E + e] + 0.1f * (float)(i / KREF_B);
        y[i] = kref_labels[i % KREF_B];
    }
    ct_features f = {.n = N, .dim = CREF_E, .x = x, .labels = y};
    task.train_feats = &f;
    const char *names[2] = {"kgcoop", "prograd"};
    for (int h = 0; h < 2; h++) {
        const ct_method *m = ct_method_find(names[h]);
        void *a = NULL, *b = NULL;
        CHECK_OK(create(names[h], &task, "", &a));
        CHECK_OK(create(names[h], &task, "", &b));
        if (!a || !b) return;
        ct_kv tk = {0};
        CHECK_OK(ct_kv_parse(&tk, "epochs=3 batch_size=8 warmup_epochs=0 lr=0.05"));
        ct_train_cfg tc;
        CHECK_OK(ct_train_cfg_from_kv(&tk, &tc));
        tc.seed = 3;
        CHECK_OK(ct_train(m, a, &task, &tc, &tk));
        ct_kv_free(&tk);
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/kgrt%d", ct_test_tmpdir(), h);
        mkdir(dir, 0777);
        CHECK_OK(ct_run_save_learned(m, a, dir));
        float *sa = malloc(sizeof(float) * N * CREF_K), *sb = malloc(sizeof(float) * N * CREF_K);
        CHECK_OK(ct_predict(m, a, &f, sa));
        CHECK_OK(ct_predict(m, b, &f, sb));
        CHECK_MSG(memcmp(sa, sb, sizeof(float) * N * CREF_K), "%s: training changed nothing",
                  names[h]);
        CHECK_OK(ct_run_load_learned(m, b, dir));
        CHECK_OK(ct_predict(m, b, &f, sb));
        CHECK_MSG(!memcmp(sa, sb, sizeof(float) * N * CREF_K),
                  "%s: logits after load differ from the trained state's", names[h]);
        free(sa), free(sb);
        m->destroy(a), m->destroy(b);
    }
}

/* As test_coop.c: the tiny model is random, so the prompt is learned from
 * scratch: class-specific random contexts, no warmup, clean features. */
#define LEARN_SET "epochs=40 csc=1 ctx_init= n_ctx=16 aug_views=0 warmup_epochs=0 batch_size=32"

static void test_learns_fashion_mnist(void) {
    const char *methods[3] = {"zeroshot", "kgcoop", "prograd"};
    const char *sets[3] = {"", LEARN_SET " w=0.1", LEARN_SET};
    ct_run_result res[3] = {{0}};
    if (!fashion_mnist_runs(methods, sets, 3, 1000, "fmkg", res, NULL)) return;
    printf("    Fashion-MNIST, first 1000 test images, tiny random CLIP: zero-shot %.2f%%, "
           "KgCoOp %.2f%%, ProGrad %.2f%% (" LEARN_SET ")\n", 100 * res[0].top1,
           100 * res[1].top1, 100 * res[2].top1);
    CHECK_MSG(res[1].top1 > res[0].top1 + 0.05, "KgCoOp %.4f vs zero-shot %.4f", res[1].top1,
              res[0].top1);
    CHECK_MSG(res[2].top1 > res[0].top1 + 0.05, "ProGrad %.4f vs zero-shot %.4f", res[2].top1,
              res[0].top1);
}

int main(void) {
    RUN(test_hyper_parameters);
    RUN(test_kgcoop_parity);
    RUN(test_prograd_parity);
    RUN(test_checkpoint_round_trip);
    RUN(test_learns_fashion_mnist);
    ct_clip_free(g_clip);
    ct_tokenizer_free(g_tok);
    return ct_test_summary();
}
