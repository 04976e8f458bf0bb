/* DualCoOp (src/methods/dualcoop.c): parity with an independent float64
 * PyTorch re-implementation of the official models/dualcoop.py and
 * utils/asymmetric_loss.py math (tools/ref/gen_dualcoop_ref.py ->
 * fixtures/methods/dualcoop_ref.h): class scores (logit+ - logit-), the
 * asymmetric loss and the gradients of both contexts for three settings
 * (multi-label targets with unknowns; the class token among the regions with
 * other gammas and clip on one-hot labels; no focusing or clip with loss_w
 * and other scales), and three SGD steps of each; unknown targets add
 * nothing and the loss is a sum over images; the defaults and the refused
 * options; the learned-tensor round trip (prompt_learner.ctx_pos / _neg)
 * through the trainer's dense, multi-label batches. The tiny model is
 * tests/fixtures/methods/tiny. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cliptune.h"
#include "fixtures/methods/coop_ref.h"
#include "fixtures/methods/dualcoop_ref.h"
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

/* create dualcoop with hp text (method keys only), every key read */
static ct_status create(const ct_task *task, const char *hp_text, void **state) {
    const ct_method *m = ct_method_find("dualcoop");
    ct_kv hp = {0};
    ct_status s = m ? ct_kv_parse(&hp, hp_text) : CT_ERR_ARG;
    if (s == CT_OK) s = m->create(task, &hp, state);
    if (s == CT_OK && (s = ct_kv_check_used(&hp, "dualcoop")) != CT_OK) {
        m->destroy(*state);
        *state = NULL;
    }
    ct_kv_free(&hp);
    return s;
}

/* the two contexts: p[0] positive, p[1] negative */
static bool ctx_of(void *state, ct_tensor **p) {
    ct_tensor *q[4];
    int n = ct_method_find("dualcoop")->params(state, q, 4);
    CHECK(n == 2);
    if (n != 2) return false;
    p[0] = q[0], p[1] = q[1];
    return true;
}

/* the reference batch: per-token features, pooled = token 0 */
static float g_pooled[DREF_B * CREF_E];

static ct_batch ref_batch(bool multi) {
    for (int i = 0; i < DREF_B; i++)
        memcpy(g_pooled + i * CREF_E, dref_dense + (size_t)i * DREF_T * CREF_E,
               CREF_E * sizeof(float));
    return (ct_batch){.n = DREF_B, .x = g_pooled, .labels = dref_labels,
                      .targets = multi ? dref_targets : NULL, .dense = dref_dense,
                      .n_tokens = DREF_T};
}

typedef struct {
    const char *name, *hp;
    int multi;
    const double *ctx_pos, *ctx_neg, *scores, *grad_pos, *grad_neg, *loss, *sgd_losses,
        *sgd_ctx_pos, *sgd_ctx_neg, *sgd_scores;
    size_t n_pos, n_neg;
} ref_case;

#define CASE(n)                                                                               \
    {#n, dref_##n##_hp, dref_##n##_multi, dref_##n##_ctx_pos, dref_##n##_ctx_neg,              \
     dref_##n##_scores, dref_##n##_grad_pos, dref_##n##_grad_neg, &dref_##n##_loss,            \
     dref_##n##_sgd_losses, dref_##n##_sgd_ctx_pos, dref_##n##_sgd_ctx_neg,                    \
     dref_##n##_sgd_scores, sizeof dref_##n##_ctx_pos / sizeof(double),                        \
     sizeof dref_##n##_ctx_neg / sizeof(double)}
static const ref_case CASES[] = {CASE(ml), CASE(single_cls), CASE(plain_lossw)};

static void set_ctx(ct_tensor *ctx, const double *v) {
    for (int64_t i = 0; i < ctx->numel; i++) ctx->data[i] = (float)v[i];
}

/* a state of case rc with the reference's initial contexts; NULL (reported)
 * when creation fails or the shapes differ */
static void *case_state(const ct_task *task, const ref_case *rc, ct_tensor **p) {
    void *st = NULL;
    CHECK_OK(create(task, rc->hp, &st));
    if (!st) return NULL;
    if (!ctx_of(st, p)) {
        ct_method_find("dualcoop")->destroy(st);
        return NULL;
    }
    bool ok = (size_t)p[0]->numel == rc->n_pos && (size_t)p[1]->numel == rc->n_neg;
    CHECK_MSG(ok, "%s: contexts of %lld and %lld values, reference %zu and %zu", rc->name,
              (long long)p[0]->numel, (long long)p[1]->numel, rc->n_pos, rc->n_neg);
    if (!ok) {
        ct_method_find("dualcoop")->destroy(st);
        return NULL;
    }
    set_ctx(p[0], rc->ctx_pos);
    set_ctx(p[1], rc->ctx_neg);
    return st;
}

static void test_parity(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("dualcoop");
    ct_task task = make_task((char *const *)cref_classnames, CREF_K);
    ct_graph *g = ct_graph_create(0);
    for (size_t c = 0; c < sizeof CASES / sizeof *CASES; c++) {
        const ref_case *rc = &CASES[c];
        ct_batch b = ref_batch(rc->multi);
        ct_tensor *p[2];
        void *st = case_state(&task, rc, p);
        if (!st) continue;
        ct_tensor_zero_grad(p[0]);
        ct_tensor_zero_grad(p[1]);
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
        double d_loss = compare(what, loss->data, rc->loss, 1, 1e-4, 1e-5);
        snprintf(what, sizeof what, "%s d loss / d ctx_pos", rc->name);
        double d_gp = compare(what, p[0]->grad, rc->grad_pos, rc->n_pos, 1e-3, 1e-4);
        snprintf(what, sizeof what, "%s d loss / d ctx_neg", rc->name);
        double d_gn = compare(what, p[1]->grad, rc->grad_neg, rc->n_neg, 1e-3, 1e-4);
        /* scores: with grad and without */
        ct_graph_reset(g);
        ct_tensor *sc = m->logits(st, g, &b);
        snprintf(what, sizeof what, "%s scores", rc->name);
        double d_sc = sc ? compare(what, sc->data, rc->scores, DREF_B * CREF_K, 1e-4, 1e-5) : 1;
        CHECK_MSG(sc && sc->numel == DREF_B * CREF_K, "%s: scores %s", rc->name,
                  sc ? "of the wrong size" : ct_last_error());
        float with_grad[DREF_B * CREF_K];
        if (sc) memcpy(with_grad, sc->data, sizeof with_grad);
        ct_graph_reset(g);
        ct_graph_set_grad(g, false);
        ct_tensor *s2 = m->logits(st, g, &b);
        CHECK_MSG(sc && s2 && !memcmp(s2->data, with_grad, sizeof with_grad),
                  "%s: scores without gradients differ", rc->name);
        ct_graph_set_grad(g, true);
        double gmax = 0;
        for (size_t i = 0; i < rc->n_pos; i++) gmax = fmax(gmax, fabs(rc->grad_pos[i]));
        for (size_t i = 0; i < rc->n_neg; i++) gmax = fmax(gmax, fabs(rc->grad_neg[i]));
        printf("    %-12s max |d| loss %.2g  grad pos %.2g neg %.2g (|grad| up to %.3g)  "
               "scores %.2g\n", rc->name, d_loss, d_gp, d_gn, gmax, d_sc);
        m->destroy(st);
    }
    ct_graph_free(g);
}

/* Three SGD steps (momentum 0.9, weight decay 5e-4: Dassl's SGD over both
 * contexts) on the reference batch: losses, the contexts and the scores
 * after them. */
static void test_sgd_steps(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("dualcoop");
    ct_task task = make_task((char *const *)cref_classnames, CREF_K);
    ct_graph *g = ct_graph_create(0);
    for (size_t c = 0; c < sizeof CASES / sizeof *CASES; c++) {
        const ref_case *rc = &CASES[c];
        ct_batch b = ref_batch(rc->multi);
        ct_tensor *p[2];
        void *st = case_state(&task, rc, p);
        if (!st) continue;
        ct_optim_config oc = ct_optim_default(CT_OPTIM_SGD, DREF_SGD_LR);
        oc.momentum = 0.9f, oc.weight_decay = 5e-4f;
        ct_optim *opt = ct_optim_create(&oc, p, 2);
        CHECK(opt != NULL);
        double mx = 0;
        char what[96];
        for (int s = 0; s < 3 && opt; s++) {
            ct_graph_reset(g);
            ct_optim_zero_grad(opt);
            ct_tensor *loss = m->loss(st, g, &b);
            CHECK_MSG(loss, "%s: %s", rc->name, ct_last_error());
            if (!loss) break;
            CHECK_OK(ct_backward(g, loss));
            snprintf(what, sizeof what, "%s loss before step %d", rc->name, s + 1);
            double d = compare(what, loss->data, &rc->sgd_losses[s], 1, 1e-3, 1e-4);
            mx = d > mx ? d : mx;
            CHECK_OK(ct_optim_step(opt, DREF_SGD_LR));
        }
        snprintf(what, sizeof what, "%s ctx_pos after 3 steps", rc->name);
        double dp = compare(what, p[0]->data, rc->sgd_ctx_pos, rc->n_pos, 1e-4, 1e-4);
        snprintf(what, sizeof what, "%s ctx_neg after 3 steps", rc->name);
        double dn = compare(what, p[1]->data, rc->sgd_ctx_neg, rc->n_neg, 1e-4, 1e-4);
        double moved = 0;
        for (size_t i = 0; i < rc->n_pos; i++) {
            double d = fabs(rc->sgd_ctx_pos[i] - rc->ctx_pos[i]);
            moved = d > moved ? d : moved;
        }
        for (size_t i = 0; i < rc->n_neg; i++) {
            double d = fabs(rc->sgd_ctx_neg[i] - rc->ctx_neg[i]);
            moved = d > moved ? d : moved;
        }
        CHECK_MSG(moved > 0.05, "%s: the steps moved the contexts by %g only", rc->name, moved);
        ct_graph_reset(g);
        ct_graph_set_grad(g, false);
        ct_tensor *sc = m->logits(st, g, &b);
        snprintf(what, sizeof what, "%s scores after 3 steps", rc->name);
        double ds = sc ? compare(what, sc->data, rc->sgd_scores, DREF_B * CREF_K, 1e-3, 1e-4)
                       : 1;
        ct_graph_set_grad(g, true);
        printf("    %-12s max |d| losses %.2g  ctx pos %.2g neg %.2g (largest move %.3f)  "
               "scores %.2g\n", rc->name, mx, dp, dn, moved, ds);
        ct_optim_free(opt);
        m->destroy(st);
    }
    ct_graph_free(g);
}

/* loss and both gradients of st on b (returns false when the loss fails) */
static bool loss_grads(void *st, ct_tensor **p, const ct_batch *b, double *loss, float *gp,
                       float *gn) {
    const ct_method *m = ct_method_find("dualcoop");
    ct_graph *g = ct_graph_create(0);
    ct_tensor_zero_grad(p[0]);
    ct_tensor_zero_grad(p[1]);
    ct_tensor *l = m->loss(st, g, b);
    CHECK_MSG(l, "%s", ct_last_error());
    bool ok = l && ct_backward(g, l) == CT_OK;
    if (ok) {
        *loss = l->data[0];
        memcpy(gp, p[0]->grad, (size_t)p[0]->numel * sizeof(float));
        memcpy(gn, p[1]->grad, (size_t)p[1]->numel * sizeof(float));
    }
    ct_graph_free(g);
    return ok;
}

/* Unknown (-1) targets add nothing: all unknown gives a zero loss and zero
 * gradients; the loss is a sum over images (DualCoOp's -loss.sum()), so the
 * batch's loss is the sum of the losses of its rows' targets with the other
 * rows unknown, and the same for the gradients. */
static void test_unknown_targets(void) {
    if (!load_fixture()) return;
    ct_task task = make_task((char *const *)cref_classnames, CREF_K);
    const ref_case *rc = &CASES[0];
    ct_tensor *p[2];
    void *st = case_state(&task, rc, p);
    if (!st) return;
    enum { NP = 64 * 32 };
    CHECK(rc->n_pos <= NP && rc->n_neg <= NP);
    static float gp[3][NP], gn[3][NP];
    double l[3] = {0};
    static int8_t t[3][DREF_B * CREF_K];
    memset(t[0], -1, sizeof t[0]);
    /* t[1]: the first half of the rows known, t[2]: the second half */
    for (int i = 0; i < DREF_B * CREF_K; i++) {
        bool first = i / CREF_K < DREF_B / 2;
        t[1][i] = first ? dref_targets[i] : -1;
        t[2][i] = first ? -1 : dref_targets[i];
    }
    ct_batch b = ref_batch(true);
    b.targets = t[0];
    if (loss_grads(st, p, &b, &l[0], gp[0], gn[0])) {
        CHECK_MSG(l[0] == 0, "all targets unknown: loss %g", l[0]);
        bool zero = true;
        for (size_t i = 0; i < rc->n_pos; i++) zero = zero && gp[0][i] == 0;
        for (size_t i = 0; i < rc->n_neg; i++) zero = zero && gn[0][i] == 0;
        CHECK_MSG(zero, "all targets unknown: non-zero gradients");
    }
    b.targets = t[1];
    bool ok = loss_grads(st, p, &b, &l[1], gp[1], gn[1]);
    b.targets = t[2];
    ok = ok && loss_grads(st, p, &b, &l[2], gp[2], gn[2]);
    b.targets = dref_targets;
    double full;
    ok = ok && loss_grads(st, p, &b, &full, gp[0], gn[0]);
    if (ok) {
        CHECK_NEAR("loss = sum of the halves' losses", full, l[1] + l[2], 1e-4, 1e-5);
        CHECK_NEAR("the reference loss", full, rc->loss[0], 1e-4, 1e-5);
        double mx = 0;
        for (size_t i = 0; i < rc->n_pos; i++) {
            double s = (double)gp[1][i] + gp[2][i];
            CHECK_NEAR("d ctx_pos = sum of the halves'", gp[0][i], s, 1e-3, 1e-4);
            mx = fmax(mx, fabs(gp[0][i] - s));
        }
        for (size_t i = 0; i < rc->n_neg; i++) {
            double s = (double)gn[1][i] + gn[2][i];
            CHECK_NEAR("d ctx_neg = sum of the halves'", gn[0][i], s, 1e-3, 1e-4);
            mx = fmax(mx, fabs(gn[0][i] - s));
        }
        printf("    halves: losses %.6f + %.6f = %.6f (batch %.6f), max |d| grads %.2g\n", l[1],
               l[2], l[1] + l[2], full, mx);
    }
    ct_method_find("dualcoop")->destroy(st);
}

static void test_hyper_parameters(void) {
    const ct_method *m = ct_method_find("dualcoop");
    CHECK(m && m->loss && m->logits && m->params && m->param_names && m->dense_features);
    if (!m) return;
    /* the defaults are build_cfg.py's, opts.py's and rn101_ep50.yaml's */
    ct_kv hp = {0};
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    ct_train_cfg tc;
    CHECK_OK(ct_train_cfg_from_kv(&hp, &tc));
    CHECK(tc.epochs == 50 && tc.batch_size == 32 && tc.optim.kind == CT_OPTIM_SGD);
    CHECK(fabsf(tc.optim.lr - 0.002f) < 1e-9f && fabsf(tc.optim.momentum - 0.9f) < 1e-9f &&
          fabsf(tc.optim.weight_decay - 5e-4f) < 1e-12f);
    CHECK(tc.sched.kind == CT_SCHED_COSINE && tc.sched.warmup == CT_WARMUP_CONSTANT &&
          tc.sched.warmup_len == 1 && fabsf(tc.sched.warmup_lr - 1e-5f) < 1e-12f);
    int np = 0, nn = 0, cls = -1;
    double gneg = 0, gpos = 0, clip = 0, eps = 0, lw = 0, agg = 0, outs = 0;
    CHECK_OK(ct_kv_int(&hp, "n_ctx_pos", 0, &np));
    CHECK_OK(ct_kv_int(&hp, "n_ctx_neg", 0, &nn));
    CHECK_OK(ct_kv_int(&hp, "cls_token", -1, &cls));
    CHECK_OK(ct_kv_double(&hp, "gamma_neg", 0, &gneg));
    CHECK_OK(ct_kv_double(&hp, "gamma_pos", 0, &gpos));
    CHECK_OK(ct_kv_double(&hp, "asl_clip", 0, &clip));
    CHECK_OK(ct_kv_double(&hp, "asl_eps", 0, &eps));
    CHECK_OK(ct_kv_double(&hp, "loss_w", 0, &lw));
    CHECK_OK(ct_kv_double(&hp, "agg_scale", 0, &agg));
    CHECK_OK(ct_kv_double(&hp, "out_scale", 0, &outs));
    CHECK(np == 16 && nn == 16 && cls == 0 && gneg == 2 && gpos == 1 && clip == 0.05 &&
          eps == 1e-6 && lw == 1 && agg == 20 && outs == 5);
    ct_kv_free(&hp);
    if (!load_fixture()) return;
    char *names[2] = {"cat", "dog"};
    ct_task task = make_task(names, 2);
    void *st = NULL, *st2 = NULL;
    /* the whole defaults string is accepted (trainer keys aside) */
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    CHECK_OK(m->create(&task, &hp, &st));
    CHECK_OK(m->create(&task, &hp, &st2));
    ct_kv_free(&hp);
    ct_tensor *p[2] = {NULL, NULL}, *q[2] = {NULL, NULL};
    bool have = st && st2 && ctx_of(st, p) && ctx_of(st2, q);
    for (int k = 0; have && k < 2; k++) {
        ct_tensor *c = p[k];
        CHECK(c->ndim == 2 && c->shape[0] == 16 && c->shape[1] == CREF_W && c->requires_grad);
        /* N(0, 0.02), deterministic in the task's seed */
        double ss = 0;
        for (int64_t i = 0; i < c->numel; i++) ss += (double)c->data[i] * c->data[i];
        CHECK_NEAR(k ? "ctx_neg init std" : "ctx_pos init std", sqrt(ss / (double)c->numel),
                   0.02, 0.002, 0);
        CHECK(!memcmp(c->data, q[k]->data, (size_t)c->numel * sizeof(float)));
    }
    /* two independent draws */
    CHECK(have && memcmp(p[0]->data, p[1]->data, (size_t)p[0]->numel * sizeof(float)));
    const char *nm[2] = {NULL, NULL};
    CHECK(st && m->param_names(st, nm, 2) == 2 && nm[0] && nm[1] &&
          !strcmp(nm[0], "prompt_learner.ctx_pos") && !strcmp(nm[1], "prompt_learner.ctx_neg"));
    /* a batch without per-token features is a clear error, not a crash */
    if (st) {
        float x[2 * CREF_E] = {0};
        int y[2] = {0, 1};
        ct_batch b = {.n = 2, .x = x, .labels = y};
        ct_graph *g = ct_graph_create(0);
        CHECK_MSG(!m->loss(st, g, &b) && strstr(ct_last_error(), "dense"), "%s",
                  ct_last_error());
        ct_graph_reset(g);
        CHECK_MSG(!m->logits(st, g, &b) && strstr(ct_last_error(), "dense"), "%s",
                  ct_last_error());
        ct_graph_free(g);
    }
    m->destroy(st), m->destroy(st2);
    /* errors name the key and value */
    struct {
        const char *hp, *needle;
    } bad[] = {
        {"gamma_neg=-1", "gamma_neg=-1"},
        {"gamma_pos=-0.5", "gamma_pos=-0.5"},
        {"gamma_neg=x", "gamma_neg"},
        {"asl_clip=1", "asl_clip=1"},
        {"asl_clip=-0.1", "asl_clip=-0.1"},
        {"asl_eps=0", "asl_eps=0"},
        {"loss_w=0", "loss_w=0"},
        {"agg_scale=-20", "agg_scale=-20"},
        {"out_scale=0", "out_scale=0"},
        {"cls_token=2", "cls_token=2"},
        {"csc=2", "csc=2"},
        {"n_ctx_pos=0", "n_ctx_pos=0"},
        {"n_ctx_neg=-3", "n_ctx_neg=-3"},
        {"pos_init=a_photo_of_a", "pos_init"},
        {"neg_init=not_a_photo_of_a", "neg_init"},
        {"csc=1 pos_init=a_photo_of_a neg_init=not_a", "csc=1"},
        {"prec=bf16", "prec=bf16"},
        {"n_ctx=4", "n_ctx"},
        {"bogus=1", "bogus"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        st = NULL;
        CHECK_MSG(create(&task, bad[i].hp, &st) == CT_ERR_ARG && !st &&
                      strstr(ct_last_error(), bad[i].needle),
                  "%s: %s", bad[i].hp, ct_last_error());
    }
    /* word initialisation: both, each its own length (the official's
     * n_ctx = the number of words) */
    st = NULL;
    CHECK_OK(create(&task, "pos_init=a_photo_of_a neg_init=not_a", &st));
    if (st && ctx_of(st, p))
        CHECK(p[0]->shape[0] == 4 && p[1]->shape[0] == 2);
    m->destroy(st);
}

/* Train through ct_train on features with per-token rows and multi-label
 * targets (the trainer hands each batch its rows of both), save the learned
 * contexts under the official keys, recreate from the same hp and task,
 * load: the same scores from ct_predict, bit for bit. */
static void test_round_trip(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("dualcoop");
    ct_task task = make_task((char *const *)cref_classnames, CREF_K);
    enum { N = 30 };
    static float x[N * CREF_E], dense[N * DREF_T * CREF_E];
    static int y[N];
    static int8_t tg[N * CREF_K];
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < DREF_T * CREF_E; j++)
            dense[(size_t)i * DREF_T * CREF_E + j] =
                dref_dense[(size_t)(i % DREF_B) * DREF_T * CREF_E + j] +
                0.05f * (float)(i / DREF_B) * (float)((j % 7) - 3);
        memcpy(x + i * CREF_E, dense + (size_t)i * DREF_T * CREF_E, CREF_E * sizeof(float));
        y[i] = dref_labels[i % DREF_B];
        memcpy(tg + i * CREF_K, dref_targets + (i % DREF_B) * CREF_K, CREF_K);
    }
    ct_features f = {.n = N, .dim = CREF_E, .x = x, .labels = y, .n_tokens = DREF_T,
                     .dense = dense, .targets = tg};
    task.train_feats = &f;
    const char *hp = "n_ctx_pos=4 n_ctx_neg=3";
    void *a = NULL, *b = NULL;
    CHECK_OK(create(&task, hp, &a));
    CHECK_OK(create(&task, hp, &b));
    if (!a || !b) {
        m->destroy(a), m->destroy(b);
        return;
    }
    ct_kv tk = {0};
    CHECK_OK(ct_kv_parse(&tk, "epochs=3 batch_size=8 warmup_epochs=0 lr=0.0005"));
    ct_train_cfg tc;
    CHECK_OK(ct_train_cfg_from_kv(&tk, &tc));
    tc.seed = 3;
    CHECK_OK(ct_train(m, a, &task, &tc, &tk));
    ct_kv_free(&tk);
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/dualcoop_rt", ct_test_tmpdir());
    mkdir(dir, 0777);
    CHECK_OK(ct_run_save_learned(m, a, dir));
    /* the file's keys are the official state dict's */
    ct_tensor *p[2];
    snprintf(path, sizeof path, "%s/learned.safetensors", dir);
    ct_safetensors *sf = ct_safetensors_open(path);
    CHECK_MSG(sf != NULL, "%s", ct_last_error());
    if (sf && ctx_of(a, p)) {
        CHECK(ct_safetensors_count(sf) == 2);
        const char *keys[2] = {"prompt_learner.ctx_pos", "prompt_learner.ctx_neg"};
        for (int k = 0; k < 2; k++) {
            const ct_st_tensor *t = ct_safetensors_find(sf, keys[k]);
            CHECK_MSG(t && t->dtype == CT_F32 && t->ndim == 2 && t->shape[0] == p[k]->shape[0] &&
                          t->shape[1] == CREF_W &&
                          !memcmp(t->data, p[k]->data, (size_t)p[k]->numel * sizeof(float)),
                      "\"%s\" is missing or not the trained context", keys[k]);
        }
    }
    ct_safetensors_close(sf);
    float *sa = malloc(sizeof(float) * N * CREF_K), *sb = malloc(sizeof(float) * N * CREF_K);
    CHECK_OK(ct_predict(m, a, &f, sa));
    CHECK_OK(ct_predict(m, b, &f, sb));
    CHECK_MSG(memcmp(sa, sb, sizeof(float) * N * CREF_K), "training changed nothing");
    CHECK_OK(ct_run_load_learned(m, b, dir));
    CHECK_OK(ct_predict(m, b, &f, sb));
    CHECK_MSG(!memcmp(sa, sb, sizeof(float) * N * CREF_K),
              "scores after load differ from the trained state's");
    /* another context length is refused (a different ctx_neg shape) */
    void *c = NULL;
    CHECK_OK(create(&task, "n_ctx_pos=4 n_ctx_neg=2", &c));
    if (c) {
        CHECK(ct_run_load_learned(m, c, dir) == CT_ERR_FORMAT);
        m->destroy(c);
    }
    /* features without per-token rows cannot be scored */
    ct_features pooled = {.n = N, .dim = CREF_E, .x = x, .labels = y, .targets = tg};
    CHECK(ct_predict(m, b, &pooled, sb) != CT_OK && strstr(ct_last_error(), "dense"));
    free(sa), free(sb);
    m->destroy(a), m->destroy(b);
}

int main(void) {
    RUN(test_hyper_parameters);
    RUN(test_parity);
    RUN(test_sgd_steps);
    RUN(test_unknown_targets);
    RUN(test_round_trip);
    ct_clip_free(g_clip);
    ct_tokenizer_free(g_tok);
    return ct_test_summary();
}
