/* SVL-Adapter (src/methods/svl_adapter.c).
 *
 *   - parity with tools/ref/gen_svl_adapter_ref.py (an independent PyTorch
 *     computation of omipan/svl_adapter's math) on a tiny encoder: the
 *     NT-Xent loss, its gradients and three SGD steps (momentum, weight
 *     decay, the cosine schedule) of SimCLR; AdapterMLP's logits, CE loss,
 *     gradients and three Adam steps; the fusion with zero-shot; the
 *     tune_alpha grid pick and confidence_alpha;
 *   - save / load: the SSL encoder, the MLP and alpha come back (same
 *     scores) in a fresh state of the shipped model;
 *   - on the shipped model, 16-shot Fashion-MNIST: SVL-Adapter (SimCLR on
 *     2000 unlabelled training images, 60 steps) beats zero-shot. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cliptune.h"
#include "fixtures/svl_adapter_ref.h"
#include "harness.h"
#include "methods/svl_adapter.h"
#include "model/bundle.h"
#include "api/run.h"

#define ATOL 1e-5

static void close_to(const char *name, const float *got, const double *want, size_t n) {
    double *g = malloc(n * sizeof *g);
    for (size_t i = 0; i < n; i++) g[i] = got[i];
    CHECK_CLOSE_D(name, g, want, n, ATOL, ATOL);
    free(g);
}

static ct_tensor *leaf(const float *v, int64_t r, int64_t c, bool grad) {
    ct_tensor *t = c > 0 ? ct_tensor_new2(r, c, grad) : ct_tensor_new(1, &r, grad);
    if (t) memcpy(t->data, v, (size_t)t->numel * sizeof(float));
    return t;
}

static void test_simclr(void) {
    const float *init[8] = {vref_ssl0_0, vref_ssl0_1, vref_ssl0_2, vref_ssl0_3,
                            vref_ssl0_4, vref_ssl0_5, vref_ssl0_6, vref_ssl0_7};
    const double *g0[8] = {vref_grad0_0, vref_grad0_1, vref_grad0_2, vref_grad0_3,
                           vref_grad0_4, vref_grad0_5, vref_grad0_6, vref_grad0_7};
    const double *w3[8] = {vref_ssl3_0, vref_ssl3_1, vref_ssl3_2, vref_ssl3_3,
                           vref_ssl3_4, vref_ssl3_5, vref_ssl3_6, vref_ssl3_7};
    const int64_t sh[8][2] = {{VREF_H, VREF_IN}, {VREF_H, 0},   {VREF_FD, VREF_H},
                              {VREF_FD, 0},      {VREF_PH, VREF_FD}, {VREF_PH, 0},
                              {VREF_PD, VREF_PH}, {VREF_PD, 0}};
    ct_tensor *p[8];
    for (int i = 0; i < 8; i++) p[i] = leaf(init[i], sh[i][0], sh[i][1], true);
    ct_optim_config oc = ct_optim_default(CT_OPTIM_SGD, (float)VREF_LR);
    oc.momentum = (float)VREF_MOM, oc.weight_decay = (float)VREF_WD;
    ct_optim *o = ct_optim_create(&oc, p, 8);
    ct_graph *g = ct_graph_create(0);
    for (int t = 0; t < VREF_STEPS; t++) {
        /* the schedule the method steps with: CosineAnnealingLR */
        double lr = ct_sched_step_cosine(VREF_LR, 0, t, 0, VREF_STEPS);
        CHECK_MSG(fabs(lr - vref_lrs[t]) < 1e-7, "lr %d: %g vs %g", t, lr, vref_lrs[t]);
        float loss = NAN;
        if (t == 0) {
            /* gradients of the first step, from the same graph pieces the
             * step uses, before any optimiser step */
            ct_graph_reset(g);
            for (int i = 0; i < 8; i++) ct_tensor_zero_grad(p[i]);
            int64_t shp[2] = {2 * VREF_B, VREF_IN};
            ct_tensor *x = ct_graph_wrap(g, (ct_real *)vref_px, 2, shp);
            ct_tensor *l = ct_svl_nt_xent(
                g, ct_svl_mlp2(g, ct_svl_mlp2(g, x, p, true), p + 4, false), (float)VREF_TEMP);
            CHECK(l != NULL);
            if (l) {
                CHECK_OK(ct_backward(g, l));
                close_to("nt-xent", l->data, vref_losses, 1);
                for (int i = 0; i < 8; i++) close_to("grad step 0", p[i]->grad, g0[i],
                                                     (size_t)p[i]->numel);
            }
        }
        CHECK_OK(ct_svl_simclr_step(g, o, p, p + 4, vref_px, 2 * VREF_B, VREF_IN,
                                    (float)VREF_TEMP, (float)lr, &loss));
        close_to("simclr loss", &loss, &vref_losses[t], 1);
    }
    for (int i = 0; i < 8; i++) close_to("weights after 3 steps", p[i]->data, w3[i],
                                         (size_t)p[i]->numel);
    ct_graph_free(g);
    ct_optim_free(o);
    for (int i = 0; i < 8; i++) ct_tensor_free(p[i]);
}

static void test_adapter_and_fusion(void) {
    ct_tensor *enc[4] = {leaf(vref_ssl0_0, VREF_H, VREF_IN, false),
                         leaf(vref_ssl0_1, VREF_H, 0, false),
                         leaf(vref_ssl0_2, VREF_FD, VREF_H, false),
                         leaf(vref_ssl0_3, VREF_FD, 0, false)};
    ct_tensor *m[4] = {leaf(vref_mlp0_0, VREF_HID, VREF_FD, true),
                       leaf(vref_mlp0_1, VREF_HID, 0, true),
                       leaf(vref_mlp0_2, VREF_K, VREF_HID, true),
                       leaf(vref_mlp0_3, VREF_K, 0, true)};
    const double *g0[4] = {vref_agrad0_0, vref_agrad0_1, vref_agrad0_2, vref_agrad0_3};
    const double *w3[4] = {vref_mlp3_0, vref_mlp3_1, vref_mlp3_2, vref_mlp3_3};
    ct_optim_config oc = ct_optim_default(CT_OPTIM_ADAM, 1e-3f);
    ct_optim *o = ct_optim_create(&oc, m, 4);
    ct_graph *g = ct_graph_create(0);
    int64_t y[VREF_N];
    for (int i = 0; i < VREF_N; i++) y[i] = vref_yb[i];
    for (int t = 0; t < VREF_STEPS; t++) {
        ct_graph_reset(g);
        ct_optim_zero_grad(o);
        ct_tensor *lg = ct_svl_adapter_logits(g, enc, m, vref_xb, VREF_N, VREF_IN);
        ct_tensor *l = ct_cross_entropy(g, lg, y, 0);
        CHECK(l != NULL);
        if (!l) break;
        if (t == 0) close_to("adapter logits", lg->data, vref_logits0, VREF_N * VREF_K);
        close_to("adapter CE", l->data, &vref_alosses[t], 1);
        CHECK_OK(ct_backward(g, l));
        if (t == 0)
            for (int i = 0; i < 4; i++) close_to("adapter grad", m[i]->grad, g0[i],
                                                 (size_t)m[i]->numel);
        if (t == 0) {
            ct_tensor *fz = ct_svl_fuse(g, ct_detach(g, lg), vref_fb, VREF_N, VREF_E, vref_zs,
                                        VREF_K, (float)VREF_SCALE, (float)VREF_ALPHA);
            CHECK(fz != NULL);
            if (fz) close_to("fused logits", fz->data, vref_fused, VREF_N * VREF_K);
        }
        CHECK_OK(ct_optim_step(o, 1e-3f));
    }
    for (int i = 0; i < 4; i++) close_to("adapter after 3 Adam steps", m[i]->data, w3[i],
                                         (size_t)m[i]->numel);
    ct_graph_free(g);
    ct_optim_free(o);
    for (int i = 0; i < 4; i++) ct_tensor_free(enc[i]), ct_tensor_free(m[i]);
}

static void test_alpha(void) {
    double acc = -1;
    int a = ct_svl_pick_alpha(vref_A, vref_Z, vref_yv, VREF_NV, VREF_K, &acc);
    CHECK_MSG(a == VREF_BEST, "tune_alpha index %d, expected %d", a, VREF_BEST);
    CHECK_MSG(fabs(acc - VREF_BEST_ACC) < 1e-12, "val accuracy %g, expected %g", acc,
              VREF_BEST_ACC);
    double c = ct_svl_confidence_alpha(vref_xc, VREF_NC, VREF_E, vref_zs, VREF_K,
                                       (float)VREF_CSCALE);
    CHECK_MSG(fabs(c - VREF_CONF_ALPHA) < 1e-5, "confidence alpha %.9g, expected %.9g", c,
              VREF_CONF_ALPHA);
}

/* ---- the shipped model ---- */

#define SMALL_DIR CT_SOURCE_DIR "/models/cliptune-small"

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static ct_bundle g_bundle;

static ct_tensor *scores_of(const ct_method *m, void *st, const float *px, const float *fz,
                            int64_t n, ct_graph *g) {
    ct_graph_reset(g);
    ct_graph_set_grad(g, false);
    ct_batch b = {.n = n, .pixels = px, .frozen = fz, .epoch = -1};
    return m->logits(st, g, &b);
}

static void test_round_trip(void) {
    const ct_method *m = ct_method_find("svl-adapter");
    CHECK(m != NULL);
    if (!m || !g_bundle.clip) return;
    static char *names[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
    ct_task task = {.clip = g_bundle.clip, .tok = g_bundle.tok, .pre = &g_bundle.pre,
                    .dataset_name = "fashion-mnist", .n_classes = 10, .classnames = names,
                    .seed = 3};
    void *a = NULL, *b = NULL;
    ct_kv hp = {0};
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    CHECK_OK(m->create(&task, &hp, &a));
    ct_kv_free(&hp);
    if (!a) return;
    ct_tensor *p[16];
    int np = m->params(a, p, 16);
    CHECK(np == 9);
    for (int i = 0; i < np; i++)
        for (int64_t j = 0; j < p[i]->numel; j++)
            p[i]->data[j] = (float)((i * 131 + j * 17) % 97) / 970.0f - 0.04f;
    p[np - 1]->data[0] = 0.4f; /* alpha */
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/svl_run", ct_test_tmpdir());
    mkdir(dir, 0777);
    CHECK_OK(ct_run_save_learned(m, a, dir));
    task.seed = 9; /* another initialisation: the file must replace it */
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    CHECK_OK(m->create(&task, &hp, &b));
    ct_kv_free(&hp);
    if (b) {
        CHECK_OK(ct_run_load_learned(m, b, dir));
        int S = ct_clip_get_config(g_bundle.clip)->image_size;
        int E = ct_clip_get_config(g_bundle.clip)->embed_dim;
        enum { NB = 4 };
        float *px = malloc((size_t)NB * 3 * S * S * sizeof *px), *fz = malloc(NB * E * sizeof *fz);
        for (int i = 0; i < NB * 3 * S * S; i++) px[i] = (float)((i * 37) % 101) / 50.0f - 1;
        for (int i = 0; i < NB * E; i++) fz[i] = (float)((i * 11) % 23) / 11.0f - 1;
        ct_graph *ga = ct_graph_create(0), *gb = ct_graph_create(0);
        ct_tensor *sa = scores_of(m, a, px, fz, NB, ga), *sb = scores_of(m, b, px, fz, NB, gb);
        CHECK(sa && sb);
        if (sa && sb)
            CHECK_MSG(!memcmp(sa->data, sb->data, (size_t)sa->numel * sizeof(float)),
                      "scores differ after save / load");
        ct_graph_free(ga), ct_graph_free(gb);
        free(px), free(fz);
        m->destroy(b);
    }
    m->destroy(a);
}

static void test_learns_fashion_mnist(void) {
    if (!file_exists("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")) {
        ct_test_skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return;
    }
    if (!g_bundle.clip) return;
    ct_splits sp = {0};
    CHECK_OK(ct_data_open("fashion-mnist", &sp));
    if (!sp.test) {
        ct_splits_free(&sp);
        return;
    }
    char cache[4200];
    snprintf(cache, sizeof cache, "%s/fm_cache", ct_test_tmpdir());
    mkdir(cache, 0777);
    /* SimCLR on a seeded 2000 of the training split (the demo's 60 steps
     * of 64 pairs), 16 shots, 16-shot val (4 per class) for alpha, the
     * first 1000 test images */
    static const struct {
        const char *method, *set;
    } runs[2] = {{"zeroshot", ""}, {"svl-adapter", "unlabelled=2000 ssl_steps=60"}};
    ct_run_result res[2];
    for (int r = 0; r < 2; r++) {
        char dir[4300];
        snprintf(dir, sizeof dir, "%s/fm_%s", ct_test_tmpdir(), runs[r].method);
        ct_run_cfg rc = ct_run_cfg_default();
        rc.model = ct_model_borrow(&g_bundle, SMALL_DIR), rc.data = &sp;
        rc.data_spec = "fashion-mnist", rc.method = ct_method_find(runs[r].method);
        rc.set = runs[r].set, rc.shots = 16, rc.seed = 1;
        rc.run_dir = dir, rc.cache_dir = cache, rc.max_test = 1000;
        memset(&res[r], 0, sizeof res[r]);
        CHECK_OK(ct_run(&rc, &res[r]));
        ct_model_free(rc.model);
    }
    printf("    Fashion-MNIST 16-shot, shipped model, first 1000 test images: zero-shot %.2f%%, "
           "svl-adapter %.2f%%\n", 100 * res[0].top1, 100 * res[1].top1);
    CHECK_MSG(res[1].top1 > res[0].top1 + 0.05, "svl-adapter %.4f vs zero-shot %.4f",
              res[1].top1, res[0].top1);
    ct_splits_free(&sp);
}

int main(void) {
    RUN(test_simclr);
    RUN(test_adapter_and_fusion);
    RUN(test_alpha);
    if (file_exists(SMALL_DIR)) CHECK_OK(ct_bundle_load(SMALL_DIR, NULL, NULL, true, &g_bundle));
    RUN(test_round_trip);
    RUN(test_learns_fashion_mnist);
    ct_bundle_free(&g_bundle);
    return ct_test_summary();
}
