/* CoCoOp (src/methods/cocoop.c): parity with an independent float64 PyTorch
 * re-implementation (tools/ref/gen_cocoop_ref.py -> fixtures/methods/
 * cocoop_ref.h): logits, loss and the gradients of the context and the
 * Meta-Net for 2 images, and 2 SGD steps; the learned-tensor round trip;
 * the defaults and hyper-parameter errors; training on Fashion-MNIST. The
 * tiny model is tests/fixtures/methods/tiny; the tokenizer comes from
 * tests/fixtures/bpe/clip_subset (OpenAI's ids for the tests' words). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cliptune.h"
#include "fixtures/methods/coop_ref.h"
#include "fixtures/methods/cocoop_ref.h"
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

static ct_status create(const ct_task *task, const char *hp_text, void **state) {
    const ct_method *m = ct_method_find("cocoop");
    ct_kv hp = {0};
    ct_status s = ct_kv_parse(&hp, hp_text);
    if (s == CT_OK) s = m->create(task, &hp, state);
    if (s == CT_OK) s = ct_kv_check_used(&hp, "cocoop");
    ct_kv_free(&hp);
    return s;
}

static const ct_batch ref_batch = {CCREF_B, ccref_img, ccref_labels, NULL, 0, 0, NULL, NULL, 0};

typedef struct {
    const char *name, *hp;
    int H;
    const double *p[5], *grad[5], *sgd[5], *logits, *loss, *sgd_losses, *sgd_logits;
} ref_case;

#define CASE(n, hp, H) {#n, hp, H, \
    {ccref_##n##_ctx, ccref_##n##_w1, ccref_##n##_b1, ccref_##n##_w2, ccref_##n##_b2}, \
    {ccref_##n##_grad_ctx, ccref_##n##_grad_w1, ccref_##n##_grad_b1, ccref_##n##_grad_w2, \
     ccref_##n##_grad_b2}, \
    {ccref_##n##_sgd_ctx, ccref_##n##_sgd_w1, ccref_##n##_sgd_b1, ccref_##n##_sgd_w2, \
     ccref_##n##_sgd_b2}, \
    ccref_##n##_logits, &ccref_##n##_loss, ccref_##n##_sgd_losses, ccref_##n##_sgd_logits}
static const ref_case CASES[] = {CASE(div16, "", CCREF_DIV16_H),
                                 CASE(div4, "meta_div=4", CCREF_DIV4_H)};
static const char *const PNAMES[5] = {"ctx", "w1", "b1", "w2", "b2"};

static void set_params(ct_tensor **p, const ref_case *rc) {
    for (int j = 0; j < 5; j++)
        for (int64_t i = 0; i < p[j]->numel; i++) p[j]->data[i] = (float)rc->p[j][i];
}

static void test_parity(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("cocoop");
    ct_task task = make_task((char *const *)cref_classnames, CREF_K);
    ct_graph *g = ct_graph_create(0);
    /* each case through the shared-prefix encoder (default) and the plain one */
    for (size_t cv = 0; cv < 2 * sizeof CASES / sizeof *CASES; cv++) {
        const ref_case *rc = &CASES[cv / 2];
        void *st = NULL;
        char hp[128];
        snprintf(hp, sizeof hp, "%s shared_prefix=%d", rc->hp, 1 - (int)(cv % 2));
        printf("    %s\n", hp);
        CHECK_OK(create(&task, hp, &st));
        if (!st) continue;
        ct_tensor *p[5];
        CHECK(m->params(st, p, 5) == 5);
        CHECK(p[0]->shape[0] == 4 && p[0]->shape[1] == CREF_W && p[1]->shape[0] == rc->H &&
              p[1]->shape[1] == CREF_E && p[3]->shape[0] == CREF_W && p[3]->shape[1] == rc->H);
        /* ctx_init "a photo of a": the F16 token embeddings, exact */
        compare("initial ctx", p[0]->data, ccref_init_ctx, (size_t)p[0]->numel, 0, 0);
        set_params(p, rc);
        for (int j = 0; j < 5; j++) ct_tensor_zero_grad(p[j]);
        ct_graph_reset(g);
        ct_tensor *loss = m->loss(st, g, &ref_batch);
        CHECK_MSG(loss, "%s: %s", rc->name, ct_last_error());
        if (!loss) {
            m->destroy(st);
            continue;
        }
        CHECK_OK(ct_backward(g, loss));
        char what[128];
        snprintf(what, sizeof what, "%s loss", rc->name);
        double dl = compare(what, loss->data, rc->loss, 1, 1e-4, 1e-4), dg = 0;
        for (int j = 0; j < 5; j++) {
            snprintf(what, sizeof what, "%s d loss / d %s", rc->name, PNAMES[j]);
            double d = compare(what, p[j]->grad, rc->grad[j], (size_t)p[j]->numel, 1e-4, 1e-4);
            dg = d > dg ? d : dg;
        }
        ct_graph_reset(g);
        ct_tensor *lg = m->logits(st, g, &ref_batch);
        snprintf(what, sizeof what, "%s logits", rc->name);
        double dlg = lg ? compare(what, lg->data, rc->logits, CCREF_B * CREF_K, 1e-4, 1e-4) : 1;
        float with_grad[CCREF_B * CREF_K];
        if (lg) memcpy(with_grad, lg->data, sizeof with_grad);
        /* without grad (chunked, private graph): the same numbers */
        ct_graph_reset(g);
        ct_graph_set_grad(g, false);
        ct_tensor *l2 = m->logits(st, g, &ref_batch);
        ct_graph_set_grad(g, true);
        CHECK_MSG(l2 && lg && !memcmp(l2->data, with_grad, sizeof with_grad),
                  "%s: no-grad logits differ", rc->name);
        printf("    %-6s max |d| loss %.2g  grads %.2g  logits %.2g\n", rc->name, dl, dg, dlg);

        /* two SGD steps (momentum 0.9, weight decay 5e-4) from the same start */
        set_params(p, rc);
        ct_optim_config oc = ct_optim_default(CT_OPTIM_SGD, 0.002f);
        oc.momentum = 0.9f, oc.weight_decay = 5e-4f;
        ct_optim *opt = ct_optim_create(&oc, p, 5);
        double ml = 0, mp = 0;
        for (int s = 0; s < 2 && opt; s++) {
            ct_graph_reset(g);
            ct_optim_zero_grad(opt);
            ct_tensor *l = m->loss(st, g, &ref_batch);
            if (!l) break;
            CHECK_OK(ct_backward(g, l));
            snprintf(what, sizeof what, "%s loss before step %d", rc->name, s + 1);
            double d = compare(what, l->data, &rc->sgd_losses[s], 1, 1e-4, 1e-4);
            ml = d > ml ? d : ml;
            CHECK_OK(ct_optim_step(opt, 0.002f));
        }
        for (int j = 0; j < 5; j++) {
            snprintf(what, sizeof what, "%s %s after 2 steps", rc->name, PNAMES[j]);
            double d = compare(what, p[j]->data, rc->sgd[j], (size_t)p[j]->numel, 1e-5, 1e-4);
            mp = d > mp ? d : mp;
        }
        ct_graph_reset(g);
        lg = m->logits(st, g, &ref_batch);
        snprintf(what, sizeof what, "%s logits after 2 steps", rc->name);
        double dsl = lg ? compare(what, lg->data, rc->sgd_logits, CCREF_B * CREF_K, 1e-4, 1e-4)
                        : 1;
        printf("    %-6s 2 SGD steps: max |d| losses %.2g  params %.2g  logits %.2g\n", rc->name,
               ml, mp, dsl);
        ct_optim_free(opt);
        m->destroy(st);
    }
    ct_graph_free(g);
}

static void test_hyper_parameters(void) {
    const ct_method *m = ct_method_find("cocoop");
    CHECK(m && m->loss && m->logits && m->params);
    if (!m) return;
    ct_kv hp = {0};
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    ct_train_cfg tc;
    CHECK_OK(ct_train_cfg_from_kv(&hp, &tc));
    /* vit_b16_c4_ep10_batch1_ctxv1.yaml */
    CHECK(tc.epochs == 10 && tc.batch_size == 1 && tc.optim.kind == CT_OPTIM_SGD);
    CHECK(fabsf(tc.optim.lr - 0.002f) < 1e-9f && fabsf(tc.optim.momentum - 0.9f) < 1e-9f &&
          fabsf(tc.optim.weight_decay - 5e-4f) < 1e-12f);
    CHECK(tc.sched.kind == CT_SCHED_COSINE && tc.sched.warmup == CT_WARMUP_CONSTANT &&
          tc.sched.warmup_len == 1 && fabsf(tc.sched.warmup_lr - 1e-5f) < 1e-12f);
    ct_kv_free(&hp);
    if (!load_fixture()) return;
    char *names[2] = {"cat", "dog"};
    ct_task task = make_task(names, 2);
    void *st = NULL;
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    CHECK_OK(m->create(&task, &hp, &st));
    ct_kv_free(&hp);
    ct_tensor *p[5];
    if (st) {
        CHECK(m->params(st, p, 5) == 5);
        /* nn.Linear's default init: |w1| <= 1/sqrt(16), |w2| <= 1/sqrt(1) */
        double mx = 0;
        for (int64_t i = 0; i < p[1]->numel; i++) mx = fmax(mx, fabs(p[1]->data[i]));
        CHECK(mx > 0 && mx <= 0.25);
        CHECK(p[0]->shape[0] == 4 && p[1]->shape[0] == 1 && p[2]->requires_grad);
        m->destroy(st);
    }
    CHECK_OK(create(&task, "ctx_init= n_ctx=8", &st));
    if (st) {
        CHECK(m->params(st, p, 5) == 5 && p[0]->shape[0] == 8);
        double ss = 0;
        for (int64_t i = 0; i < p[0]->numel; i++) ss += (double)p[0]->data[i] * p[0]->data[i];
        CHECK_NEAR("ctx init std", sqrt(ss / (double)p[0]->numel), 0.02, 0.004, 0);
        m->destroy(st);
    }
    struct {
        const char *hp, *needle;
    } bad[] = {
        {"ctx_init= n_ctx=0", "n_ctx=0"},
        {"meta_div=0", "meta_div=0"},
        {"meta_div=32", "meta_div=32"},
        {"prec=bf16", "prec=bf16"},
        {"shared_prefix=2", "shared_prefix=2"},
        {"n_ctx=abc", "n_ctx=abc"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        st = NULL;
        CHECK_MSG(create(&task, bad[i].hp, &st) == CT_ERR_ARG && !st &&
                      strstr(ct_last_error(), bad[i].needle),
                  "%s: %s", bad[i].hp, ct_last_error());
    }
    ct_task t3 = make_task(names, 2);
    t3.tok = NULL;
    CHECK(create(&t3, "", &st) == CT_ERR_ARG && strstr(ct_last_error(), "tokenizer"));
}

/* Train, save the learned tensors, recreate, load: the same logits, bit for bit. */
static void test_checkpoint_round_trip(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("cocoop");
    ct_task task = make_task((char *const *)cref_classnames, CREF_K);
    enum { N = 20 };
    static float x[N * CREF_E];
    static int y[N];
    for (int i = 0; i < N; i++) {
        for (int e = 0; e < CREF_E; e++)
            x[i * CREF_E + e] = cref_img[(i % CREF_B) * CREF_E + e] + 0.1f * (float)(i / CREF_B);
        y[i] = cref_labels[i % CREF_B];
    }
    ct_features f = {.n = N, .dim = CREF_E, .x = x, .labels = y};
    task.train_feats = &f;
    void *a = NULL, *b = NULL;
    CHECK_OK(create(&task, "meta_div=4", &a));
    CHECK_OK(create(&task, "meta_div=4", &b));
    if (!a || !b) return;
    ct_kv tk = {0};
    CHECK_OK(ct_kv_parse(&tk, "epochs=2 batch_size=2 warmup_epochs=0 lr=0.01"));
    ct_train_cfg tc;
    CHECK_OK(ct_train_cfg_from_kv(&tk, &tc));
    tc.seed = 3;
    CHECK_OK(ct_train(m, a, &task, &tc, &tk));
    ct_kv_free(&tk);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/cc_rt", ct_test_tmpdir());
    mkdir(dir, 0777);
    CHECK_OK(ct_run_save_learned(m, a, dir));
    float *sa = malloc(sizeof(float) * N * CREF_K), *sb = malloc(sizeof(float) * N * CREF_K);
    CHECK_OK(ct_predict(m, a, &f, sa));
    CHECK_OK(ct_predict(m, b, &f, sb));
    CHECK_MSG(memcmp(sa, sb, sizeof(float) * N * CREF_K), "training changed nothing");
    CHECK_OK(ct_run_load_learned(m, b, dir));
    CHECK_OK(ct_predict(m, b, &f, sb));
    CHECK_MSG(!memcmp(sa, sb, sizeof(float) * N * CREF_K), "logits after load differ");
    void *c = NULL;
    CHECK_OK(create(&task, "meta_div=8", &c)); /* another Meta-Net size is refused */
    if (c) {
        CHECK(ct_run_load_learned(m, c, dir) == CT_ERR_FORMAT);
        m->destroy(c);
    }
    free(sa), free(sb);
    m->destroy(a), m->destroy(b);
}

#define LEARN_SET "epochs=2 aug_views=0 warmup_epochs=0"

/* Fashion-MNIST, 16 shots (160 steps per epoch at batch 1), first 500 test
 * images. See the printed numbers and docs/methods/cocoop.md. */
static void test_learns_fashion_mnist(void) {
    const char *methods[2] = {"zeroshot", "cocoop"}, *sets[2] = {"", LEARN_SET};
    ct_run_result res[2] = {{0}};
    if (!fashion_mnist_runs(methods, sets, 2, 500, "fm", res, NULL)) return;
    printf("    Fashion-MNIST, first 500 test images, tiny random CLIP: zero-shot %.2f%%, "
           "CoCoOp (" LEARN_SET ") %.2f%%\n", 100 * res[0].top1, 100 * res[1].top1);
    CHECK_MSG(res[1].top1 > res[0].top1, "CoCoOp %.4f vs zero-shot %.4f", res[1].top1,
              res[0].top1);
}

int main(void) {
    RUN(test_hyper_parameters);
    RUN(test_parity);
    RUN(test_checkpoint_round_trip);
    RUN(test_learns_fashion_mnist);
    ct_clip_free(g_clip);
    ct_tokenizer_free(g_tok);
    return ct_test_summary();
}
