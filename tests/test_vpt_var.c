/* Variational prompt tuning, "vpt-var" (src/methods/vpt_var.c): parity with
 * an independent float64 PyTorch re-implementation of the math of
 * saic-fi/Bayesian-Prompt-Learning trainers/vpt.py
 * (tools/ref/gen_vpt_var_ref.py -> fixtures/methods/vpt_var_ref.h), the
 * Monte-Carlo draws fed through the test hook ct_vpt_var_set_noise: the
 * averaged scores, the loss (task + KL) and the gradients of every learned
 * tensor for the global residual (L = 3 from "a photo of a"; L = 1 from a
 * random context) and the image-conditioned one (L = 2, per-image draws),
 * and three SGD steps of each; the defaults, the refused options and the
 * seeded noise (deterministic scores, per-step training draws); the
 * learned-tensor round trip through the trainer; and it learns: on
 * Fashion-MNIST with the shipped model, 16 shots, it beats zero-shot. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cliptune.h"
#include "fixtures/methods/coop_ref.h"
#include "fixtures/methods/vpt_var_ref.h"
#include "harness.h"
#include "method_fixture.h"
#include "methods/vpt_var.h"
#include "model/bundle.h"
#include "api/run.h"

static ct_task make_task(char *const *classnames, int K) {
    ct_task t = {0};
    t.clip = g_clip, t.tok = g_tok, t.n_classes = K, t.classnames = classnames;
    t.dataset_name = "test", t.seed = 1;
    return t;
}

static ct_status create(const ct_task *task, const char *hp_text, void **state) {
    const ct_method *m = ct_method_find("vpt-var");
    ct_kv hp = {0};
    ct_status s = m ? ct_kv_parse(&hp, hp_text) : CT_ERR_ARG;
    if (s == CT_OK) s = m->create(task, &hp, state);
    if (s == CT_OK && (s = ct_kv_check_used(&hp, "vpt-var")) != CT_OK) {
        m->destroy(*state);
        *state = NULL;
    }
    ct_kv_free(&hp);
    return s;
}

static ct_batch ref_batch(void) {
    return (ct_batch){.n = VREF_B, .x = vref_img, .labels = vref_labels, .seed = 5};
}

typedef struct {
    const char *name, *hp;
    const double *params, *scores, *grad, *loss, *sgd_losses, *sgd_params, *sgd_scores;
    const float *eps;
    size_t n_params, n_eps;
} ref_case;

#define CASE(n)                                                                                  \
    {#n, vref_##n##_hp, vref_##n##_params, vref_##n##_scores, vref_##n##_grad, &vref_##n##_loss, \
     vref_##n##_sgd_losses, vref_##n##_sgd_params, vref_##n##_sgd_scores, vref_##n##_eps,         \
     sizeof vref_##n##_params / sizeof(double), sizeof vref_##n##_eps / sizeof(float)}
static const ref_case CASES[] = {CASE(global_init), CASE(global_l1), CASE(image)};

/* the learned tensors of st, in params() order; their total size */
static int params_of(void *st, ct_tensor **p, size_t *total) {
    int n = ct_method_find("vpt-var")->params(st, p, 16);
    *total = 0;
    for (int i = 0; i < n; i++) *total += (size_t)p[i]->numel;
    return n;
}

/* set (v != NULL) the tensors from v, or gather their values / grads into out */
static void set_params(ct_tensor **p, int n, const double *v) {
    size_t o = 0;
    for (int i = 0; i < n; i++)
        for (int64_t j = 0; j < p[i]->numel; j++) p[i]->data[j] = (float)v[o++];
}

static void gather(ct_tensor **p, int n, bool grad, float *out) {
    size_t o = 0;
    for (int i = 0; i < n; i++)
        for (int64_t j = 0; j < p[i]->numel; j++)
            out[o++] = grad ? (p[i]->grad ? p[i]->grad[j] : 0.0f) : p[i]->data[j];
}

/* a state of the case with the reference's starting values and draws */
static void *case_state(const ct_task *task, const ref_case *rc, ct_tensor **p, int *np) {
    void *st = NULL;
    CHECK_OK(create(task, rc->hp, &st));
    if (!st) return NULL;
    size_t total = 0;
    *np = params_of(st, p, &total);
    CHECK_MSG(total == rc->n_params, "%s: %zu learned values, reference %zu", rc->name, total,
              rc->n_params);
    if (total != rc->n_params) {
        ct_method_find("vpt-var")->destroy(st);
        return NULL;
    }
    set_params(p, *np, rc->params);
    CHECK_OK(ct_vpt_var_set_noise(st, rc->eps, (int64_t)rc->n_eps));
    return st;
}

static void test_parity(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("vpt-var");
    ct_task task = make_task((char *const *)cref_classnames, CREF_K);
    ct_batch b = ref_batch();
    ct_graph *g = ct_graph_create(0);
    for (size_t c = 0; c < sizeof CASES / sizeof *CASES; c++) {
        const ref_case *rc = &CASES[c];
        ct_tensor *p[16];
        int np = 0;
        void *st = case_state(&task, rc, p, &np);
        if (!st) continue;
        for (int i = 0; i < np; i++) ct_tensor_zero_grad(p[i]);
        ct_graph_reset(g);
        ct_tensor *loss = m->loss(st, g, &b);
        CHECK_MSG(loss, "%s: %s", rc->name, ct_last_error());
        if (!loss) {
            m->destroy(st);
            continue;
        }
        CHECK_OK(ct_backward(g, loss));
        float *grad = malloc(rc->n_params * sizeof *grad);
        gather(p, np, true, grad);
        char what[128];
        snprintf(what, sizeof what, "%s loss", rc->name);
        double d_loss = compare(what, loss->data, rc->loss, 1, 1e-5, 1e-5);
        snprintf(what, sizeof what, "%s d loss / d params", rc->name);
        double d_grad = compare(what, grad, rc->grad, rc->n_params, 1e-5, 1e-4);
        free(grad);
        /* scores: with grad (recomputed) and without (cache / evaluation graph, twice) */
        ct_graph_reset(g);
        ct_tensor *lg = m->logits(st, g, &b);
        snprintf(what, sizeof what, "%s scores", rc->name);
        double d_lg = lg ? compare(what, lg->data, rc->scores, VREF_B * CREF_K, 1e-5, 1e-5) : 1;
        for (int r = 0; r < 2 && lg; r++) {
            ct_graph_reset(g);
            ct_graph_set_grad(g, false);
            ct_tensor *l2 = m->logits(st, g, &b);
            snprintf(what, sizeof what, "%s scores without grad", rc->name);
            if (l2) compare(what, l2->data, rc->scores, VREF_B * CREF_K, 1e-5, 1e-5);
            else CHECK_MSG(false, "%s: %s", rc->name, ct_last_error());
        }
        ct_graph_set_grad(g, true);
        printf("    %-12s max |d| loss %.2g  grad %.2g  scores %.2g\n", rc->name, d_loss, d_grad,
               d_lg);
        m->destroy(st);
    }
    ct_graph_free(g);
}

static void test_sgd_steps(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("vpt-var");
    ct_task task = make_task((char *const *)cref_classnames, CREF_K);
    ct_batch b = ref_batch();
    ct_graph *g = ct_graph_create(0);
    for (size_t c = 0; c < sizeof CASES / sizeof *CASES; c++) {
        const ref_case *rc = &CASES[c];
        ct_tensor *p[16];
        int np = 0;
        void *st = case_state(&task, rc, p, &np);
        if (!st) continue;
        ct_optim_config oc = ct_optim_default(CT_OPTIM_SGD, VREF_SGD_LR);
        oc.momentum = 0.9f, oc.weight_decay = 5e-4f;
        ct_optim *opt = ct_optim_create(&oc, p, np);
        double mx = 0;
        char what[96];
        for (int s = 0; s < 3 && opt; s++) {
            ct_graph_reset(g);
            ct_optim_zero_grad(opt);
            ct_tensor *loss = m->loss(st, g, &b);
            if (!loss) break;
            CHECK_OK(ct_backward(g, loss));
            snprintf(what, sizeof what, "%s loss before step %d", rc->name, s + 1);
            double d = compare(what, loss->data, &rc->sgd_losses[s], 1, 1e-5, 1e-5);
            mx = d > mx ? d : mx;
            CHECK_OK(ct_optim_step(opt, VREF_SGD_LR));
        }
        float *now = malloc(rc->n_params * sizeof *now);
        gather(p, np, false, now);
        snprintf(what, sizeof what, "%s params after 3 steps", rc->name);
        double dc = compare(what, now, rc->sgd_params, rc->n_params, 1e-5, 1e-4);
        free(now);
        double moved = 0;
        for (size_t i = 0; i < rc->n_params; i++) {
            double d = fabs(rc->sgd_params[i] - rc->params[i]);
            moved = d > moved ? d : moved;
        }
        CHECK_MSG(moved > 0.1, "%s: the steps moved the parameters by %g only", rc->name, moved);
        ct_graph_reset(g);
        ct_graph_set_grad(g, false);
        ct_tensor *lg = m->logits(st, g, &b);
        snprintf(what, sizeof what, "%s scores after 3 steps", rc->name);
        double dl = lg ? compare(what, lg->data, rc->sgd_scores, VREF_B * CREF_K, 1e-4, 1e-4) : 1;
        ct_graph_set_grad(g, true);
        printf("    %-12s max |d| losses %.2g  params %.2g (largest move %.3f)  scores %.2g\n",
               rc->name, mx, dc, moved, dl);
        ct_optim_free(opt);
        m->destroy(st);
    }
    ct_graph_free(g);
}

/* Without the hook: training draws follow the batch's seed (same seed, same
 * loss; another seed, another loss), evaluation draws are fixed (the same
 * scores every call, whatever the batch's seed). */
static void test_seeded_noise(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("vpt-var");
    ct_task task = make_task((char *const *)cref_classnames, CREF_K);
    const char *types[2] = {"type=global mc_samples=3", "type=image mc_samples=2"};
    ct_graph *g = ct_graph_create(0);
    for (int t = 0; t < 2; t++) {
        void *st = NULL;
        CHECK_OK(create(&task, types[t], &st));
        if (!st) continue;
        ct_batch b = ref_batch();
        float l[3];
        uint64_t seeds[3] = {11, 11, 12};
        for (int r = 0; r < 3; r++) {
            b.seed = seeds[r];
            ct_graph_reset(g);
            ct_tensor *loss = m->loss(st, g, &b);
            l[r] = loss ? loss->data[0] : NAN;
        }
        CHECK_MSG(l[0] == l[1] && l[0] != l[2], "%s: losses %g %g %g", types[t], l[0], l[1], l[2]);
        float s1[VREF_B * CREF_K];
        ct_graph_set_grad(g, false);
        for (int r = 0; r < 2; r++) {
            b.seed = seeds[r + 1];
            ct_graph_reset(g);
            ct_tensor *lg = m->logits(st, g, &b);
            CHECK(lg != NULL);
            if (!lg) break;
            if (r == 0) memcpy(s1, lg->data, sizeof s1);
            else CHECK_MSG(!memcmp(s1, lg->data, sizeof s1), "%s: scores vary", types[t]);
        }
        /* an image scored alone gets the scores it has in the batch */
        ct_batch one = {.n = 1, .x = vref_img + CREF_E, .labels = vref_labels + 1};
        ct_graph_reset(g);
        ct_tensor *lg = m->logits(st, g, &one);
        CHECK_MSG(lg && !memcmp(lg->data, s1 + CREF_K, CREF_K * sizeof(float)),
                  "%s: scores depend on the batch", types[t]);
        ct_graph_set_grad(g, true);
        /* the hook checks its size against the batch */
        float eps[4] = {0};
        CHECK_OK(ct_vpt_var_set_noise(st, eps, 4));
        ct_graph_reset(g);
        CHECK(!m->loss(st, g, &b) && strstr(ct_last_error(), "noise"));
        CHECK_OK(ct_vpt_var_set_noise(st, NULL, 0));
        m->destroy(st);
    }
    ct_graph_free(g);
}

static void test_hyper_parameters(void) {
    const ct_method *m = ct_method_find("vpt-var");
    CHECK(m && m->loss && m->logits && m->params && m->param_names);
    if (!m) return;
    ct_kv hp = {0};
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    ct_train_cfg tc;
    CHECK_OK(ct_train_cfg_from_kv(&hp, &tc));
    CHECK(tc.epochs == 40 && tc.batch_size == 1 && tc.optim.kind == CT_OPTIM_SGD);
    CHECK(fabsf(tc.optim.lr - 0.002f) < 1e-9f && fabsf(tc.optim.momentum - 0.9f) < 1e-9f);
    int L = 0;
    double w = 0;
    const char *type = NULL;
    CHECK_OK(ct_kv_int(&hp, "mc_samples", 0, &L));
    CHECK_OK(ct_kv_double(&hp, "kl_w", 0, &w));
    CHECK_OK(ct_kv_str(&hp, "type", "", &type));
    CHECK(L == 10 && w == 0.001 && type && !strcmp(type, "global"));
    ct_kv_free(&hp);
    if (!load_fixture()) return;
    char *names[2] = {"cat", "dog"};
    ct_task task = make_task(names, 2);
    void *st = NULL;
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    CHECK_OK(m->create(&task, &hp, &st));
    ct_kv_free(&hp);
    ct_tensor *p[16];
    const char *nm[16] = {0};
    if (st) {
        CHECK(m->params(st, p, 16) == 3 && m->param_names(st, nm, 16) == 3);
        CHECK(!strcmp(nm[0], "ctx") && !strcmp(nm[1], "mean_posterior") &&
              !strcmp(nm[2], "std_posterior"));
        CHECK(p[0]->shape[0] == 4 && p[1]->numel == CREF_W && p[2]->numel == CREF_W);
        bool zero = true, unit = true;
        for (int i = 0; i < CREF_W; i++)
            zero &= p[1]->data[i] == 0, unit &= p[2]->data[i] >= 0 && p[2]->data[i] < 1;
        CHECK_MSG(zero && unit, "mean_posterior zeros, std_posterior U(0, 1)");
        m->destroy(st);
    }
    st = NULL;
    CHECK_OK(create(&task, "type=image", &st));
    if (st) {
        CHECK(m->params(st, p, 16) == 13 && m->param_names(st, nm, 16) == 13);
        CHECK(!strcmp(nm[1], "meta_net.weight_mean.module.0.weight") &&
              !strcmp(nm[12], "meta_net.weight_log_variance.module.4.bias"));
        CHECK(p[1]->shape[0] == CREF_E / 2 && p[1]->shape[1] == CREF_E && p[5]->shape[0] == CREF_W);
        m->destroy(st);
    }
    struct {
        const char *hp, *needle;
    } bad[] = {
        {"mc_samples=0", "mc_samples=0"},
        {"mc_samples=257", "mc_samples=257"},
        {"type=local", "type=local"},
        {"kl_w=-1", "kl_w=-1"},
        {"csc=1", "csc=1"},
        {"class_token_position=front", "class_token_position=front"},
        {"n_ctx=0 ctx_init=", "n_ctx=0"},
        {"bogus=1", "bogus"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        st = NULL;
        CHECK_MSG(create(&task, bad[i].hp, &st) == CT_ERR_ARG && !st &&
                      strstr(ct_last_error(), bad[i].needle),
                  "%s: %s", bad[i].hp, ct_last_error());
    }
}

static void test_round_trip(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("vpt-var");
    ct_task task = make_task((char *const *)cref_classnames, CREF_K);
    enum { N = 12 };
    static float x[N * CREF_E];
    static int y[N];
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < CREF_E; j++)
            x[i * CREF_E + j] = vref_img[(i % VREF_B) * CREF_E + j] +
                                0.05f * (float)(i / VREF_B) * (float)((j % 7) - 3);
        y[i] = vref_labels[i % VREF_B];
    }
    ct_features f = {.n = N, .dim = CREF_E, .x = x, .labels = y};
    task.train_feats = &f;
    const char *hps[2] = {"type=global mc_samples=2", "type=image mc_samples=2"};
    for (int t = 0; t < 2; t++) {
        void *a = NULL, *b = NULL;
        CHECK_OK(create(&task, hps[t], &a));
        CHECK_OK(create(&task, hps[t], &b));
        if (!a || !b) {
            m->destroy(a), m->destroy(b);
            continue;
        }
        ct_kv tk = {0};
        CHECK_OK(ct_kv_parse(&tk, "epochs=2 batch_size=4 warmup_epochs=0 lr=0.1"));
        ct_train_cfg tc;
        CHECK_OK(ct_train_cfg_from_kv(&tk, &tc));
        tc.seed = 3;
        CHECK_OK(ct_train(m, a, &task, &tc, &tk));
        ct_kv_free(&tk);
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/vpt_var_rt%d", ct_test_tmpdir(), t);
        mkdir(dir, 0777);
        CHECK_OK(ct_run_save_learned(m, a, dir));
        float sa[N * CREF_K], sb[N * CREF_K];
        CHECK_OK(ct_predict(m, a, &f, sa));
        CHECK_OK(ct_predict(m, b, &f, sb));
        CHECK_MSG(memcmp(sa, sb, sizeof sa), "%s: training changed nothing", hps[t]);
        CHECK_OK(ct_run_load_learned(m, b, dir));
        CHECK_OK(ct_predict(m, b, &f, sb));
        CHECK_MSG(!memcmp(sa, sb, sizeof sa), "%s: scores after load differ", hps[t]);
        m->destroy(a), m->destroy(b);
    }
}

/* ---- learning on Fashion-MNIST with the shipped model ----
 * 16 shots (160 images), the first 500 test images, clean (view-0)
 * features; a short schedule (see LEARN_SET and docs/methods/vpt-var.md). */
#define LEARN_SET                                                                           \
    "epochs=20 batch_size=16 lr=0.1 mc_samples=2 vpt-var.std_posterior.lr=10 aug_views=0 " \
    "warmup_epochs=0"

static void test_learns_fashion_mnist(void) {
    const char *methods[2] = {"zeroshot", "vpt-var"}, *sets[2] = {"", LEARN_SET};
    ct_run_result res[2] = {{0}};
    if (!fashion_mnist_runs_on(SHIPPED_DIR, NULL, methods, sets, 2, 500, "fmvptvar", res, NULL))
        return;
    printf("    Fashion-MNIST 16-shot seed 1, first 500 test images, shipped model: zero-shot "
           "%.2f%%, vpt-var (" LEARN_SET ") %.2f%% (val %.2f%%)\n", 100 * res[0].top1,
           100 * res[1].top1, 100 * res[1].val_top1);
    CHECK_MSG(res[1].top1 > res[0].top1 + 0.05, "vpt-var %.4f vs zero-shot %.4f", res[1].top1,
              res[0].top1);
}

int main(void) {
    RUN(test_hyper_parameters);
    RUN(test_parity);
    RUN(test_sgd_steps);
    RUN(test_seeded_noise);
    RUN(test_round_trip);
    RUN(test_learns_fashion_mnist);
    ct_clip_free(g_clip);
    ct_tokenizer_free(g_tok);
    return ct_test_summary();
}
