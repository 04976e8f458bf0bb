/* SubPT (src/methods/subpt.c): parity with an independent float64 PyTorch
 * re-implementation (tools/ref/gen_subpt_ref.py -> fixtures/methods/subpt_ref.h)
 * on the tiny fixture:
 *   - the basis: sklearn's PCA of a trajectory (basis=pca, the official
 *     compute_eigenvector.py) and the uncentred eigenvectors (basis=gradient),
 *     compared as projections U^T U; rank-deficient sets keep zero rows;
 *   - CoOp's loss alone and with the NFL term (cosine and l2), the context
 *     gradient, its projection U^T U g (before_step), and three SGD steps
 *     with the projection (CoOp's optimiser);
 *   - bad options fail naming the key;
 *   - on the shipped model, 16-shot Fashion-MNIST beats zero-shot (fit's
 *     early phase, the basis and the projected run through ct_run).
 * The save/load round trip of "ctx" and "U" is test_learned_names'
 * registry loop. The tokenizer is tests/fixtures/bpe/clip_subset. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cliptune.h"
#include "fixtures/methods/coop_ref.h"
#include "fixtures/methods/subpt_ref.h"
#include "harness.h"
#include "method_fixture.h"
#include "methods/subpt.h"

static ct_task make_task(void) {
    ct_task t = {0};
    t.clip = g_clip, t.tok = g_tok, t.n_classes = CREF_K;
    t.classnames = (char *const *)cref_classnames;
    t.dataset_name = "test", t.seed = 1;
    return t;
}

static ct_status create(const ct_task *task, const char *hp_text, void **state) {
    const ct_method *m = ct_method_find("subpt");
    ct_kv hp = {0};
    ct_status s = ct_kv_parse(&hp, m->defaults);
    if (s == CT_OK) s = ct_kv_parse(&hp, hp_text);
    if (s == CT_OK) s = m->create(task, &hp, state);
    ct_kv_free(&hp);
    return s;
}

/* U^T U (D, D) of U (r, D) */
static void projection(const float *U, int r, int D, float *P) {
    for (int a = 0; a < D; a++)
        for (int b = 0; b < D; b++) {
            double acc = 0;
            for (int k = 0; k < r; k++) acc += (double)U[k * D + a] * U[k * D + b];
            P[a * D + b] = (float)acc;
        }
}

static void test_basis(void) {
    float U[SREF_TR * SREF_TD], P[SREF_TD * SREF_TD];
    const char *what[2] = {"pca (centred, sklearn)", "gradient (uncentred)"};
    const double *want[2] = {sref_proj_pca, sref_proj_grad};
    for (int v = 0; v < 2; v++) {
        int rank = -1;
        CHECK_OK(ct_subpt_basis(sref_traj, SREF_TB, SREF_TD, v == 0, SREF_TR, U, &rank));
        CHECK_MSG(rank == SREF_TR, "%s: rank %d", what[v], rank);
        projection(U, SREF_TR, SREF_TD, P);
        double d = compare(what[v], P, want[v], SREF_TD * SREF_TD, 1e-5, 1e-5);
        printf("    basis %s: max |d U^T U| %.2g\n", what[v], d);
    }
    /* 3 centred rows span at most 2 directions: the rest stay zero */
    float U5[5 * SREF_TD];
    int rank = -1;
    CHECK_OK(ct_subpt_basis(sref_traj, 3, SREF_TD, true, 5, U5, &rank));
    CHECK_MSG(rank == 2, "3 centred rows: rank %d", rank);
    bool zero = true;
    for (int i = 2 * SREF_TD; i < 5 * SREF_TD; i++) zero = zero && U5[i] == 0;
    CHECK_MSG(zero, "rows beyond the rank are not zero");
}

static const ct_batch ref_batch = {.n = SREF_B, .x = sref_img, .labels = sref_labels};

static void set_ctx(ct_tensor *ctx, const float *v) {
    for (int64_t i = 0; i < ctx->numel; i++) ctx->data[i] = v[i];
}

static void test_parity(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("subpt");
    CHECK(m != NULL);
    if (!m) return;
    char npy[4200];
    snprintf(npy, sizeof npy, "%s/subpt_t0.npy", ct_test_tmpdir());
    int64_t shape[2] = {SREF_M, SREF_E};
    CHECK_OK(ct_npy_write(npy, CT_F32, 2, shape, sref_t0));
    ct_task task = make_task();
    const char *kinds[3] = {"none", "cosine", "l2"};
    const double *losses[3] = {&sref_none_loss, &sref_cosine_loss, &sref_l2_loss};
    const double *grads[3] = {sref_none_grad, sref_cosine_grad, sref_l2_grad};
    const double *gproj[3] = {sref_none_gproj, sref_cosine_gproj, sref_l2_gproj};
    const double *sl[3] = {sref_none_sgd_losses, sref_cosine_sgd_losses, sref_l2_sgd_losses};
    const double *sc[3] = {sref_none_sgd_ctx, sref_cosine_sgd_ctx, sref_l2_sgd_ctx};
    ct_graph *g = ct_graph_create(0);
    for (int k = 0; k < 3; k++) {
        char hp[4600];
        if (k == 0) snprintf(hp, sizeof hp, "n_ctx=4 dim=%d", SREF_R);
        else
            snprintf(hp, sizeof hp, "n_ctx=4 dim=%d nfl_classes=\"cat, sea lion\" "
                     "nfl_features=%s nfl_loss=%s", SREF_R, npy, kinds[k]);
        void *st = NULL;
        CHECK_OK(create(&task, hp, &st));
        if (!st) continue;
        ct_tensor *p[2];
        CHECK(m->params(st, p, 2) == 2);
        ct_tensor *ctx = p[0], *U = p[1];
        CHECK(ctx->numel == SREF_D && U->numel == SREF_R * SREF_D);
        for (int64_t i = 0; i < U->numel; i++) U->data[i] = sref_U[i];
        set_ctx(ctx, sref_ctx0);
        ct_graph_reset(g);
        ct_tensor_zero_grad(ctx);
        ct_tensor *loss = m->loss(st, g, &ref_batch);
        CHECK_MSG(loss, "%s", ct_last_error());
        if (loss) {
            char w[96];
            snprintf(w, sizeof w, "nfl=%s loss", kinds[k]);
            double dl = compare(w, loss->data, losses[k], 1, 1e-4, 1e-4);
            CHECK_OK(ct_backward(g, loss));
            snprintf(w, sizeof w, "nfl=%s d loss / d ctx", kinds[k]);
            double dg = compare(w, ctx->grad, grads[k], SREF_D, 1e-4, 1e-4);
            CHECK_OK(m->before_step(st, g, &ref_batch));
            snprintf(w, sizeof w, "nfl=%s projected gradient", kinds[k]);
            double dp = compare(w, ctx->grad, gproj[k], SREF_D, 1e-4, 1e-4);
            printf("    nfl=%s: loss %.6f (|d| %.2g), max |d grad| %.2g, projected %.2g\n",
                   kinds[k], loss->data[0], dl, dg, dp);
        }
        /* three SGD steps (CoOp's optimiser) with the projection */
        set_ctx(ctx, sref_ctx0);
        ct_optim_config oc = ct_optim_default(CT_OPTIM_SGD, 0.002f);
        oc.momentum = 0.9f, oc.weight_decay = 5e-4f;
        ct_optim *opt = ct_optim_create(&oc, &ctx, 1);
        double mx = 0;
        for (int s = 0; s < 3 && opt; s++) {
            ct_graph_reset(g);
            ct_tensor_zero_grad(ctx);
            ct_tensor *l = m->loss(st, g, &ref_batch);
            if (!l) break;
            double d = fabs(l->data[0] - sl[k][s]);
            mx = d > mx ? d : mx;
            CHECK_MSG(d <= 1e-3 + 1e-3 * fabs(sl[k][s]), "nfl=%s loss before step %d: %.9g vs %.9g",
                      kinds[k], s + 1, (double)l->data[0], sl[k][s]);
            CHECK_OK(ct_backward(g, l));
            CHECK_OK(m->before_step(st, g, &ref_batch));
            CHECK_OK(ct_optim_step(opt, 0.002f));
        }
        char w[96];
        snprintf(w, sizeof w, "nfl=%s ctx after 3 projected SGD steps", kinds[k]);
        double dc = compare(w, ctx->data, sc[k], SREF_D, 1e-4, 1e-3);
        printf("    nfl=%s 3 projected SGD steps: max |d| losses %.2g ctx %.2g\n", kinds[k], mx, dc);
        ct_optim_free(opt);
        m->destroy(st);
    }
    ct_graph_free(g);
}

/* fit on the tiny fixture for both readings: U has orthonormal rows, the
 * context is back at its initial value, and the projection is idempotent. */
static void test_fit(void) {
    if (!load_fixture()) return;
    enum { N = 10 };
    static float x[N * SREF_E];
    static int y[N];
    for (int i = 0; i < N; i++) {
        y[i] = i % CREF_K;
        for (int j = 0; j < SREF_E; j++) x[i * SREF_E + j] = sref_img[(i % SREF_B) * SREF_E + j] +
                                                             0.1f * (float)((i * 7 + j) % 5);
    }
    ct_features f = {.n = N, .dim = SREF_E, .x = x, .labels = y};
    ct_task task = make_task();
    task.train_feats = &f;
    const ct_method *m = ct_method_find("subpt");
    for (int v = 0; v < 2; v++) {
        void *st = NULL;
        CHECK_OK(create(&task, v ? "n_ctx=4 dim=3 epochs=3 early_epochs=2 batch_size=4 basis=gradient"
                                 : "n_ctx=4 dim=3 epochs=3 early_epochs=3 batch_size=4",
                        &st));
        if (!st) continue;
        ct_tensor *p[2];
        m->params(st, p, 2);
        float *c0 = malloc((size_t)p[0]->numel * sizeof *c0);
        memcpy(c0, p[0]->data, (size_t)p[0]->numel * sizeof *c0);
        CHECK_OK(m->fit(st, &task));
        CHECK_MSG(!memcmp(c0, p[0]->data, (size_t)p[0]->numel * sizeof *c0),
                  "basis %d: the context is not back at its initial value", v);
        int64_t D = p[0]->numel;
        int rows = 0;
        for (int a = 0; a < 3; a++) {
            double na = 0;
            for (int64_t j = 0; j < D; j++) na += (double)p[1]->data[a * D + j] * p[1]->data[a * D + j];
            if (na == 0) continue;
            rows++;
            CHECK_MSG(fabs(na - 1) < 1e-4, "basis %d: row %d has norm^2 %g", v, a, na);
            for (int b = 0; b < a; b++) {
                double d = 0;
                for (int64_t j = 0; j < D; j++) d += (double)p[1]->data[a * D + j] * p[1]->data[b * D + j];
                CHECK_MSG(fabs(d) < 1e-4, "basis %d: rows %d, %d not orthogonal (%g)", v, a, b, d);
            }
        }
        /* pca: 3 centred snapshots span 2; gradient: 2 epochs x 2 steps, 3 kept */
        CHECK_MSG(rows == (v ? 3 : 2), "basis %d: %d directions", v, rows);
        for (int64_t j = 0; j < D; j++) p[0]->grad[j] = (float)((j * 13) % 7) - 3;
        CHECK_OK(m->before_step(st, NULL, NULL));
        float *g1 = malloc((size_t)D * sizeof *g1);
        memcpy(g1, p[0]->grad, (size_t)D * sizeof *g1);
        CHECK_OK(m->before_step(st, NULL, NULL));
        double mx = 0;
        for (int64_t j = 0; j < D; j++) mx = fmax(mx, fabs((double)g1[j] - p[0]->grad[j]));
        CHECK_MSG(mx < 1e-5, "basis %d: projecting twice moves the gradient by %g", v, mx);
        free(c0), free(g1);
        m->destroy(st);
    }
}

static void test_hyper_parameters(void) {
    if (!load_fixture()) return;
    ct_task task = make_task();
    const char *bad[] = {"basis=svd", "dim=0", "early_epochs=-1", "nfl_loss=kl",
                         "nfl_lambda=nan", "nfl_classes=cat csc=1"};
    const char *key[] = {"basis", "dim", "early_epochs", "nfl_loss", "nfl_lambda", "csc"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        void *st = NULL;
        ct_status s = create(&task, bad[i], &st);
        CHECK_MSG(s != CT_OK && !st, "%s accepted", bad[i]);
        CHECK_MSG(strstr(ct_last_error(), key[i]), "%s: \"%s\"", bad[i], ct_last_error());
    }
}

/* The shipped model, 16 shots, the first 1000 test images; a short schedule
 * on clean features: 5 early epochs recorded, then 10 projected ones onto
 * the 4 directions they span (20 + 10 epochs, 10 directions: 55.5%). */
#define LEARN_SET "epochs=10 early_epochs=5 dim=10 aug_views=0 warmup_epochs=0 lr=0.01"

static void test_learns_fashion_mnist(void) {
    const char *methods[2] = {"zeroshot", "subpt"}, *sets[2] = {"", LEARN_SET};
    ct_run_result res[2] = {{0}};
    if (!fashion_mnist_runs_on(SHIPPED_DIR, NULL, methods, sets, 2, 1000, "fmsubpt", res, NULL))
        return;
    printf("    Fashion-MNIST 16-shot seed 1, first 1000 test images, shipped model: zero-shot "
           "%.2f%%, SubPT (" LEARN_SET ") %.2f%%\n", 100 * res[0].top1, 100 * res[1].top1);
    CHECK_MSG(res[1].top1 > res[0].top1 + 0.05, "SubPT %.4f vs zero-shot %.4f", res[1].top1,
              res[0].top1);
}

int main(void) {
    RUN(test_basis);
    RUN(test_parity);
    RUN(test_fit);
    RUN(test_hyper_parameters);
    RUN(test_learns_fashion_mnist);
    ct_clip_free(g_clip);
    ct_tokenizer_free(g_tok);
    return ct_test_summary();
}
