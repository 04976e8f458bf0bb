/* CPL (src/methods/cpl.c), counterfactual prompt learning on CoCoOp:
 *
 *   - parity with tools/ref/gen_cpl_ref.py (an independent float64 PyTorch
 *     re-implementation of cocoopcf.py / solver.py / xloss_compute's math
 *     on the tiny model): CoCoOp's logits, the loss (CE + contrastive term
 *     on the counterfactual features + the u norm), the gradients of the
 *     context, the Meta-Net and u — u's gradient is non-zero exactly on the
 *     solver's edited dimensions where clamp passes, so the greedy masks are
 *     checked too — and three SGD steps, for cf_mix=dims and row0;
 *   - defaults, names, refused values, clear errors;
 *   - save / load round trip after ct_train;
 *   - it learns: Fashion-MNIST, 16 shots, the shipped model, beats
 *     zero-shot. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cliptune.h"
#include "fixtures/methods/coop_ref.h"
#include "fixtures/methods/cpl_ref.h"
#include "harness.h"
#include "method_fixture.h"
#include "model/bundle.h"
#include "api/run.h"

enum { NP = 6 };
static int g_train_y[CREF_K];
static ct_features g_train;

static ct_task make_task(void) {
    ct_task t = {0};
    t.clip = g_clip, t.tok = g_tok, t.n_classes = CREF_K;
    t.classnames = (char *const *)cref_classnames, t.dataset_name = "test", t.seed = 1;
    for (int k = 0; k < CREF_K; k++) g_train_y[k] = k;
    g_train = (ct_features){.n = CREF_K, .dim = CREF_E, .x = (float *)cplref_train,
                            .labels = g_train_y};
    t.train_feats = &g_train;
    return t;
}

/* defaults + extra; every key read */
static void *make_state(const ct_task *task, const char *extra, ct_train_cfg *tc) {
    const ct_method *m = ct_method_find("cpl");
    ct_kv hp = {0};
    void *st = NULL;
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    CHECK_OK(ct_kv_parse(&hp, extra));
    ct_status s = m->create(task, &hp, &st);
    CHECK_MSG(s == CT_OK, "create %s: %s", extra, ct_last_error());
    ct_train_cfg cfg;
    if (s == CT_OK) {
        int views; /* ct_run's key */
        CHECK_OK(ct_kv_int(&hp, "aug_views", 0, &views));
        CHECK_OK(ct_train_cfg_from_kv(&hp, tc ? tc : &cfg));
        CHECK_OK(ct_kv_check_used(&hp, "cpl"));
    }
    ct_kv_free(&hp);
    return st;
}

static const float *const P0[NP] = {cplref_ctx, cplref_w1, cplref_b1, cplref_w2, cplref_b2,
                                    cplref_u};
static const size_t PN[NP] = {sizeof cplref_ctx / 4, sizeof cplref_w1 / 4, sizeof cplref_b1 / 4,
                              sizeof cplref_w2 / 4, sizeof cplref_b2 / 4, sizeof cplref_u / 4};
static const char *const PNAME[NP] = {"ctx", "meta_net.linear1.weight", "meta_net.linear1.bias",
                                      "meta_net.linear2.weight", "meta_net.linear2.bias", "u"};

static bool set_params(void *st, ct_tensor **p) {
    int np = ct_method_find("cpl")->params(st, p, 8);
    CHECK(np == NP);
    if (np != NP) return false;
    for (int i = 0; i < NP; i++) {
        CHECK_MSG((size_t)p[i]->numel == PN[i], "%s: %lld values, reference %zu", PNAME[i],
                  (long long)p[i]->numel, PN[i]);
        if ((size_t)p[i]->numel != PN[i]) return false;
        memcpy(p[i]->data, P0[i], PN[i] * sizeof(float));
        ct_tensor_zero_grad(p[i]);
    }
    return true;
}

typedef struct {
    const char *name, *hp;
    const double *logits, *loss, *grad[NP], *sgd_losses, *sgd[NP], *sgd_logits;
} ref_case;

#define CASE(n)                                                                             \
    {#n, "meta_div=4 cf_mix=" #n, cplref_##n##_logits, &cplref_##n##_loss,                  \
     {cplref_##n##_grad_ctx, cplref_##n##_grad_w1, cplref_##n##_grad_b1,                    \
      cplref_##n##_grad_w2, cplref_##n##_grad_b2, cplref_##n##_grad_u},                     \
     cplref_##n##_sgd_losses,                                                               \
     {cplref_##n##_sgd_ctx, cplref_##n##_sgd_w1, cplref_##n##_sgd_b1, cplref_##n##_sgd_w2,  \
      cplref_##n##_sgd_b2, cplref_##n##_sgd_u},                                             \
     cplref_##n##_sgd_logits}
static const ref_case CASES[] = {CASE(dims), CASE(row0)};

static void test_parity(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("cpl");
    ct_task task = make_task();
    ct_batch b = {.n = CPLREF_B, .x = cplref_img, .labels = cplref_labels};
    ct_graph *g = ct_graph_create(0);
    for (size_t c = 0; c < sizeof CASES / sizeof *CASES; c++) {
        const ref_case *rc = &CASES[c];
        ct_tensor *p[8];
        void *st = make_state(&task, rc->hp, NULL);
        if (!st || !set_params(st, p)) {
            m->destroy(st);
            continue;
        }
        char what[128];
        ct_graph_reset(g);
        ct_tensor *loss = m->loss(st, g, &b);
        CHECK_MSG(loss, "%s: %s", rc->name, ct_last_error());
        if (!loss) {
            m->destroy(st);
            continue;
        }
        CHECK_OK(ct_backward(g, loss));
        snprintf(what, sizeof what, "%s loss", rc->name);
        double dl = compare(what, loss->data, rc->loss, 1, 1e-5, 1e-5), dg = 0, du = 0;
        for (int i = 0; i < NP; i++) {
            snprintf(what, sizeof what, "%s d loss / d %s", rc->name, PNAME[i]);
            /* u's gradient is 0.001 x the rest's scale */
            double d = i == NP - 1 ? compare(what, p[i]->grad, rc->grad[i], PN[i], 1e-9, 1e-3)
                                   : compare(what, p[i]->grad, rc->grad[i], PN[i], 1e-4, 1e-4);
            if (i == NP - 1) du = d;
            else dg = d > dg ? d : dg;
        }
        /* u's gradient lands exactly on the solver's masks (clamp passing) */
        int bad = 0, nz = 0;
        for (int e = 0; e < CREF_E; e++)
            for (int k = 0; k < CREF_K; k++) {
                size_t j = (size_t)e * CREF_K + k;
                bool want = rc->grad[NP - 1][j] != 0, got = p[NP - 1]->grad[j] != 0;
                bad += want != got, nz += got;
                if (got) CHECK(cplref_ust[k * CREF_E + e] > 0 && cplref_u[j] < 1);
            }
        CHECK_MSG(bad == 0 && nz > 0, "%s: u's gradient pattern: %d mismatches, %d non-zero",
                  rc->name, bad, nz);
        ct_graph_reset(g);
        ct_graph_set_grad(g, false);
        ct_tensor *lg = m->logits(st, g, &b);
        ct_graph_set_grad(g, true);
        snprintf(what, sizeof what, "%s logits", rc->name);
        double dlg = lg ? compare(what, lg->data, rc->logits, CPLREF_B * CREF_K, 1e-4, 1e-5) : 1;
        m->destroy(st);
        /* three SGD steps (Dassl's momentum 0.9, weight decay 5e-4) */
        ct_train_cfg tc;
        char hp[160];
        snprintf(hp, sizeof hp, "%s lr=%.9g", rc->hp, (double)cplref_lr);
        st = make_state(&task, hp, &tc);
        if (!st || !set_params(st, p)) {
            m->destroy(st);
            continue;
        }
        CHECK(tc.optim.kind == CT_OPTIM_SGD);
        ct_optim *o = ct_optim_create(&tc.optim, p, NP);
        double ds = 0;
        for (int s = 0; o && s < 3; s++) {
            ct_graph_reset(g);
            ct_optim_zero_grad(o);
            ct_tensor *l = m->loss(st, g, &b);
            if (!l) break;
            CHECK_OK(ct_backward(g, l));
            snprintf(what, sizeof what, "%s loss before step %d", rc->name, s + 1);
            double d = compare(what, l->data, &rc->sgd_losses[s], 1, 1e-4, 1e-4);
            ds = d > ds ? d : ds;
            CHECK_OK(ct_optim_step(o, cplref_lr));
        }
        for (int i = 0; i < NP; i++) {
            snprintf(what, sizeof what, "%s %s after 3 SGD steps", rc->name, PNAME[i]);
            double d = compare(what, p[i]->data, rc->sgd[i], PN[i], 1e-4, 1e-4);
            ds = d > ds ? d : ds;
        }
        ct_graph_reset(g);
        ct_graph_set_grad(g, false);
        lg = m->logits(st, g, &b);
        ct_graph_set_grad(g, true);
        snprintf(what, sizeof what, "%s logits after 3 steps", rc->name);
        double dla =
            lg ? compare(what, lg->data, rc->sgd_logits, CPLREF_B * CREF_K, 1e-3, 1e-4) : 1;
        printf("    %s: max |d| loss %.2g grads %.2g (u %.2g, %d non-zero) logits %.2g; "
               "3 SGD steps %.2g, logits %.2g\n", rc->name, dl, dg, du, nz, dlg, ds, dla);
        ct_optim_free(o);
        m->destroy(st);
    }
    ct_graph_free(g);
}

static void test_hyper_parameters(void) {
    const ct_method *m = ct_method_find("cpl");
    CHECK(m && m->loss && m->logits && m->params && m->param_names);
    if (!m || !load_fixture()) return;
    ct_task task = make_task();
    ct_train_cfg tc;
    void *st = make_state(&task, "", &tc);
    /* CoCoOp's vit_b16_c4_ep10_batch1_ctxv1 */
    CHECK(tc.batch_size == 1 && tc.epochs == 10 && tc.optim.kind == CT_OPTIM_SGD &&
          fabsf(tc.optim.lr - 0.002f) < 1e-9f);
    ct_tensor *p[8];
    const char *nm[8];
    if (st) {
        CHECK(m->params(st, p, 8) == NP && m->param_names(st, nm, 8) == NP);
        CHECK(!strcmp(nm[0], "ctx") && !strcmp(nm[1], "meta_net.linear1.weight") &&
              !strcmp(nm[5], "u"));
        /* u: torch.ones(vis_dim, n_cls) */
        CHECK(p[5]->ndim == 2 && p[5]->shape[0] == CREF_E && p[5]->shape[1] == CREF_K);
        for (int64_t i = 0; i < p[5]->numel; i++) CHECK(p[5]->data[i] == 1.0f);
    }
    m->destroy(st);
    /* without training features: scores work, training is a clear error */
    ct_task bare = task;
    bare.train_feats = NULL;
    st = make_state(&bare, "", NULL);
    if (st) {
        int y[1] = {0};
        ct_batch b = {.n = 1, .x = cplref_img, .labels = y};
        ct_graph *g = ct_graph_create(0);
        CHECK_MSG(!m->loss(st, g, &b) && strstr(ct_last_error(), "training features"), "%s",
                  ct_last_error());
        ct_graph_set_grad(g, false);
        CHECK(m->logits(st, g, &b) != NULL);
        ct_graph_free(g);
        m->destroy(st);
    }
    struct {
        const char *hp, *needle;
    } bad[] = {{"lam=-1", "lam=-1"}, {"control_scale=nan", "control_scale=nan"},
               {"u_momentum=2", "u_momentum=2"}, {"cf_mix=rows", "cf_mix=rows"},
               {"meta_div=0", "meta_div=0"}, {"bogus=1", "bogus"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ct_kv hp = {0};
        CHECK_OK(ct_kv_parse(&hp, bad[i].hp));
        void *s = NULL;
        ct_status r = m->create(&task, &hp, &s);
        if (r == CT_OK) r = ct_kv_check_used(&hp, "cpl");
        CHECK_MSG(r != CT_OK && strstr(ct_last_error(), bad[i].needle), "%s: %s", bad[i].hp,
                  ct_last_error());
        m->destroy(s);
        ct_kv_free(&hp);
    }
    /* one class: no counterfactual class */
    ct_task one = task;
    one.n_classes = 1;
    void *s1 = NULL;
    ct_kv hp = {0};
    CHECK(m->create(&one, &hp, &s1) == CT_ERR_ARG && strstr(ct_last_error(), "2 classes"));
    m->destroy(s1);
}

/* ct_train, save, load into a fresh state: the same scores bit for bit. */
static void test_round_trip(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("cpl");
    ct_task task = make_task();
    enum { N = 10 };
    static float x[N * CREF_E];
    static int y[N];
    for (int i = 0; i < N; i++) {
        for (int e = 0; e < CREF_E; e++)
            x[i * CREF_E + e] = cplref_train[(i % CREF_K) * CREF_E + e] +
                                0.1f * (float)((i * 7 + e) % 5 - 2);
        y[i] = i % CREF_K;
    }
    ct_features f = {.n = N, .dim = CREF_E, .x = x, .labels = y};
    ct_train_cfg tc;
    void *a = make_state(&task, "meta_div=4 epochs=2 batch_size=2 lr=0.05 warmup_epochs=0", &tc);
    void *b = make_state(&task, "meta_div=4", NULL);
    if (!a || !b) {
        m->destroy(a), m->destroy(b);
        return;
    }
    task.train_feats = &f;
    tc.seed = 3;
    ct_kv none = {0};
    CHECK_OK(ct_train(m, a, &task, &tc, &none));
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/cpl_rt", ct_test_tmpdir());
    mkdir(dir, 0777);
    CHECK_OK(ct_run_save_learned(m, a, dir));
    float sa[N * CREF_K], sb[N * CREF_K];
    CHECK_OK(ct_predict(m, a, &f, sa));
    CHECK_OK(ct_predict(m, b, &f, sb));
    CHECK_MSG(memcmp(sa, sb, sizeof sa), "training changed nothing");
    CHECK_OK(ct_run_load_learned(m, b, dir));
    CHECK_OK(ct_predict(m, b, &f, sb));
    CHECK_MSG(!memcmp(sa, sb, sizeof sa), "scores after load differ from the trained state's");
    m->destroy(a), m->destroy(b);
}

/* Fashion-MNIST, 16 shots (160 steps per epoch at batch 1), the first 300
 * test images, the shipped model: one epoch on the clean features (CoCoOp's
 * steps are n images x K prompts through the text tower each). */
#define LEARN_SET "epochs=1 aug_views=0 warmup_epochs=0"
#define LEARN_TEST 300

static void test_learns_fashion_mnist(void) {
    const char *methods[2] = {"zeroshot", "cpl"}, *sets[2] = {"", LEARN_SET};
    ct_run_result res[2] = {{0}};
    if (!fashion_mnist_runs_on(SHIPPED_DIR, NULL, methods, sets, 2, LEARN_TEST, "fmcpl", res, NULL))
        return;
    printf("    Fashion-MNIST 16-shot seed 1, first %d test images, shipped model: zero-shot "
           "%.2f%%, CPL (" LEARN_SET ") %.2f%% (val %.2f%%)\n", LEARN_TEST, 100 * res[0].top1,
           100 * res[1].top1, 100 * res[1].val_top1);
    CHECK_MSG(res[1].top1 > res[0].top1 + 0.05, "CPL %.4f vs zero-shot %.4f", res[1].top1,
              res[0].top1);
}

int main(void) {
    RUN(test_hyper_parameters);
    RUN(test_parity);
    RUN(test_round_trip);
    RUN(test_learns_fashion_mnist);
    ct_clip_free(g_clip);
    ct_tokenizer_free(g_tok);
    return ct_test_summary();
}
