/* LP++ (src/methods/lp_plusplus.c):
 *
 *   - parity with tools/ref/gen_lpp_ref.py (an independent PyTorch
 *     re-implementation of linear_probe_p2.py's math): the init (class sums,
 *     alpha), logits of a batch, the full-set loss and the gradients of W, b
 *     and alpha; then the generic trainer (before_step, end_epoch) for 3
 *     and 20 full-batch epochs against torch SGD at the data-driven lr_w and
 *     the accumulated alpha steps every 10 epochs;
 *   - hyper-parameters out of range fail naming them;
 *   - on the shipped model, 16-shot Fashion-MNIST beats zero-shot.
 * The save/load round trip of its learned tensors is test_learned_names'
 * registry loop. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cliptune.h"
#include "fixtures/lpp_ref.h"
#include "harness.h"
#include "method_fixture.h"

#define ATOL 1e-4
#define STEP_TOL 2e-4

static ct_clip *g_syn_clip;
static char g_zs[4096];
static char *g_cls[LREF_K];
static float g_tr[LREF_N * LREF_E];
static int g_ytr[LREF_N];
static ct_features g_train;

static ct_task syn_task(void) {
    if (!g_syn_clip) {
        ct_clip_config c = {0};
        c.format = CT_CLIP_HF;
        c.image_size = 16, c.patch_size = 8, c.vision_width = 16, c.vision_layers = 1;
        c.vision_heads = 2, c.vision_mlp = 32, c.context_length = 16, c.vocab_size = 64;
        c.text_width = 16, c.text_layers = 1, c.text_heads = 2, c.text_mlp = 32;
        c.embed_dim = LREF_E;
        c.vision_act = c.text_act = CT_QUICK_GELU, c.vision_ln_eps = c.text_ln_eps = 1e-5f;
        c.eot_rule = CT_EOT_ARGMAX;
        g_syn_clip = ct_clip_create(&c, 3);
        CHECK(g_syn_clip != NULL);
        snprintf(g_zs, sizeof g_zs, "%s/lpp_zs.npy", ct_test_tmpdir());
        int64_t shape[2] = {LREF_K, LREF_E};
        CHECK_OK(ct_npy_write(g_zs, CT_F32, 2, shape, lref_t));
        static char names[LREF_K][16];
        for (int k = 0; k < LREF_K; k++) {
            snprintf(names[k], sizeof names[k], "class_%d", k);
            g_cls[k] = names[k];
        }
        memcpy(g_tr, lref_train, sizeof g_tr);
        memcpy(g_ytr, lref_y, sizeof g_ytr);
        g_train = (ct_features){.n = LREF_N, .dim = LREF_E, .x = g_tr, .labels = g_ytr};
    }
    return (ct_task){.clip = g_syn_clip, .dataset_name = "synthetic", .n_classes = LREF_K,
                     .classnames = g_cls, .train_feats = &g_train, .seed = 1};
}

static void make_hp(ct_kv *hp, const ct_method *m, const char *extra) {
    memset(hp, 0, sizeof *hp);
    CHECK_OK(ct_kv_parse(hp, m->defaults));
    CHECK_OK(ct_kv_set(hp, "zs_weights", g_zs));
    if (extra) CHECK_OK(ct_kv_parse(hp, extra));
}

static void check(const char *name, const float *got, const double *want, size_t n, double tol,
                  double *mx) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (d > *mx) *mx = d;
        if (!(d <= tol + tol * fabs(want[i])) && bad++ < 3)
            ct_test_fail(__FILE__, __LINE__, "%s[%zu] = %.9g, expected %.9g (tol %g + %g|ref|)",
                         name, i, (double)got[i], want[i], tol, tol);
    }
}

/* A fitted state with the reference's bias init. */
static void *fitted(const ct_method *m, ct_task *task, ct_tensor **p) {
    ct_kv hp;
    make_hp(&hp, m, NULL);
    void *st = NULL;
    CHECK_OK(m->create(task, &hp, &st));
    ct_kv_free(&hp);
    if (!st) return NULL;
    CHECK_OK(m->fit(st, task));
    CHECK(m->params(st, p, 4) == 4);
    memcpy(p[1]->data, lref_b0, sizeof lref_b0);
    return st;
}

static void test_parity(void) {
    const ct_method *m = ct_method_find("lp++");
    CHECK(m != NULL);
    if (!m) return;
    ct_task task = syn_task();
    ct_tensor *p[4];
    void *st = fitted(m, &task, p);
    if (!st) return;
    double mx1 = 0, mx3 = 0;
    check("W init (class sums)", p[0]->data, lref_W0, LREF_K * LREF_E, ATOL, &mx1);
    for (int k = 0; k < LREF_K; k++) {
        double a = lref_alpha0;
        check("alpha init", p[2]->data + k, &a, 1, ATOL, &mx1);
    }
    ct_graph *g = ct_graph_create(0);
    static float xb[LREF_NB * LREF_E];
    memcpy(xb, lref_xb, sizeof xb);
    ct_batch bb = {.n = LREF_NB, .x = xb, .labels = lref_yb};
    ct_tensor *lg = m->logits(st, g, &bb);
    CHECK(lg && lg->numel == LREF_NB * LREF_K);
    if (lg) check("logits", lg->data, lref_logits_b, LREF_NB * LREF_K, ATOL, &mx1);
    ct_graph_reset(g);
    ct_batch bt = {.n = LREF_N, .x = g_tr, .labels = g_ytr};
    for (int i = 0; i < 3; i++) memset(p[i]->grad, 0, (size_t)p[i]->numel * sizeof(float));
    ct_tensor *loss = m->loss(st, g, &bt);
    CHECK(loss != NULL);
    if (loss) {
        check("loss", loss->data, &lref_loss, 1, ATOL, &mx1);
        CHECK_OK(ct_backward(g, loss));
        check("dW", p[0]->grad, lref_dW, LREF_K * LREF_E, ATOL, &mx1);
        check("db", p[1]->grad, lref_db, LREF_K, ATOL, &mx1);
        check("dalpha", p[2]->grad, lref_dalpha, LREF_K, ATOL, &mx1);
    }
    ct_graph_free(g);
    m->destroy(st);

    /* the trainer, from the same init: 3 epochs, then 20 (two alpha steps) */
    ct_method mm = *m;
    mm.fit = NULL; /* fitted above, with the reference's bias */
    for (int run = 0; run < 2; run++) {
        int epochs = run ? 20 : 3;
        st = fitted(m, &task, p);
        if (!st) return;
        ct_kv hp;
        char set[64];
        snprintf(set, sizeof set, "epochs=%d select=last", epochs);
        make_hp(&hp, m, set);
        ct_train_cfg cfg;
        CHECK_OK(ct_train_cfg_from_kv(&hp, &cfg));
        cfg.seed = 1;
        CHECK_OK(ct_train(&mm, st, &task, &cfg, &hp));
        ct_kv_free(&hp);
        check(run ? "W after 20" : "W after 3", p[0]->data, run ? lref_W20 : lref_W3,
              LREF_K * LREF_E, STEP_TOL, &mx3);
        check(run ? "b after 20" : "b after 3", p[1]->data, run ? lref_b20 : lref_b3, LREF_K,
              STEP_TOL, &mx3);
        check(run ? "alpha after 20" : "alpha after 3", p[2]->data,
              run ? lref_alpha20 : lref_alpha3, LREF_K, STEP_TOL, &mx3);
        check(run ? "alpha grad sum after 20" : "alpha grad sum after 3", p[3]->data,
              run ? lref_agrad20 : lref_agrad3, LREF_K, STEP_TOL, &mx3);
        m->destroy(st);
    }
    printf("    lp++: lr_w %.4g, lr_alpha %.4g, alpha0 %.4g; max |delta| %.3g (init, logits, "
           "loss, grads), %.3g (3 and 20 epochs)\n", lref_lr_w, lref_lr_alpha, lref_alpha0, mx1,
           mx3);
}

static void test_hyper_parameters(void) {
    const ct_method *m = ct_method_find("lp++");
    if (!m) return;
    ct_task task = syn_task();
    const char *bad[] = {"alpha_every=0", "alpha_grad_reset=2", "lr_alpha=-1",
                         "alpha_init_scale=inf"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ct_kv hp;
        make_hp(&hp, m, bad[i]);
        void *st = NULL;
        ct_status s = m->create(&task, &hp, &st);
        CHECK_MSG(s == CT_ERR_ARG && !st, "%s accepted", bad[i]);
        char key[32];
        snprintf(key, sizeof key, "%.*s", (int)(strchr(bad[i], '=') - bad[i]), bad[i]);
        CHECK_MSG(strstr(ct_last_error(), key), "%s: message \"%s\"", bad[i], ct_last_error());
        ct_kv_free(&hp);
    }
    /* without features fit fails cleanly */
    ct_kv hp;
    make_hp(&hp, m, NULL);
    void *st = NULL;
    task.train_feats = NULL;
    CHECK_OK(m->create(&task, &hp, &st));
    ct_kv_free(&hp);
    if (st) {
        CHECK(m->fit(st, &task) == CT_ERR_ARG);
        m->destroy(st);
    }
}

/* 16 shots, first 1000 test images, the shipped model; the defaults' 300
 * full-batch epochs take well under a second on 160 features. */
static void test_learns_fashion_mnist(void) {
    const char *methods[2] = {"zeroshot", "lp++"}, *sets[2] = {"", ""};
    ct_run_result res[2] = {{0}};
    if (!fashion_mnist_runs_on(SHIPPED_DIR, NULL, methods, sets, 2, 1000, "fmlpp", res, NULL))
        return;
    printf("    Fashion-MNIST 16-shot seed 1, first 1000 test images, shipped model: zero-shot "
           "%.2f%%, LP++ (defaults) %.2f%% (val %.2f%%)\n", 100 * res[0].top1,
           100 * res[1].top1, 100 * res[1].val_top1);
    CHECK_MSG(res[1].top1 > res[0].top1 + 0.05, "LP++ %.4f vs zero-shot %.4f", res[1].top1,
              res[0].top1);
}

int main(void) {
    RUN(test_parity);
    RUN(test_hyper_parameters);
    RUN(test_learns_fashion_mnist);
    ct_clip_free(g_syn_clip);
    return ct_test_summary();
}
