/* VT-CLIP (src/methods/vt_clip.c):
 *
 *   - parity with tools/ref/gen_vt_clip_ref.py (torch's own
 *     nn.MultiheadAttention in float64 with the state's weights, the
 *     residual and CLIP's logits): logits, loss, the gradients of the four
 *     attention tensors, and three AdamW steps (the default optimiser) for
 *     two settings of heads and ratio;
 *   - the defaults parse, the initialisation is nn.MultiheadAttention's,
 *     bad values are refused naming the key, a batch without dense features
 *     is a clear error;
 *   - trained through ct_train on dense features, saved and loaded into a
 *     fresh state: the same scores bit for bit;
 *   - it learns: Fashion-MNIST, 16 shots, the shipped model, beats
 *     zero-shot.
 * The synthetic task injects the zero-shot classifier with zs_weights=. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cliptune.h"
#include "fixtures/methods/vt_clip_ref.h"
#include "harness.h"
#include "method_fixture.h"
#include "model/bundle.h"
#include "api/run.h"

enum { NP = 4 };
static ct_clip *g_syn;
static char g_zs[4096];
static char *g_names[VREF_K] = {"a", "b", "c", "d"};

static bool syn_init(void) {
    if (g_syn) return true;
    ct_clip_config c = {0};
    c.format = CT_CLIP_HF;
    c.image_size = 16, c.patch_size = 8, c.vision_width = 16, c.vision_layers = 1;
    c.vision_heads = 2, c.vision_mlp = 32, c.context_length = 16, c.vocab_size = 64;
    c.text_width = 16, c.text_layers = 1, c.text_heads = 2, c.text_mlp = 32;
    c.embed_dim = VREF_E;
    c.vision_act = c.text_act = CT_QUICK_GELU, c.vision_ln_eps = c.text_ln_eps = 1e-5f;
    c.eot_rule = CT_EOT_ARGMAX;
    g_syn = ct_clip_create(&c, 3);
    CHECK(g_syn != NULL);
    if (!g_syn) return false;
    ct_clip_find_tensor(g_syn, "logit_scale")->data[0] = vref_logit_scale;
    snprintf(g_zs, sizeof g_zs, "%s/vt_zs.npy", ct_test_tmpdir());
    int64_t shape[2] = {VREF_K, VREF_E};
    CHECK_OK(ct_npy_write(g_zs, CT_F32, 2, shape, vref_tz));
    return true;
}

static ct_task syn_task(void) {
    ct_task t = {0};
    t.clip = g_syn, t.n_classes = VREF_K, t.classnames = g_names, t.dataset_name = "synthetic";
    t.seed = 1;
    return t;
}

/* defaults + the injected classifier + extra, every key read by create or
 * the trainer */
static void *make_state(const ct_task *task, const char *extra, ct_train_cfg *tc) {
    const ct_method *m = ct_method_find("vt-clip");
    ct_kv hp = {0};
    void *st = NULL;
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    CHECK_OK(ct_kv_set(&hp, "zs_weights", g_zs));
    CHECK_OK(ct_kv_parse(&hp, extra));
    ct_status s = m->create(task, &hp, &st);
    CHECK_MSG(s == CT_OK, "create %s: %s", extra, ct_last_error());
    ct_train_cfg cfg;
    CHECK_OK(ct_train_cfg_from_kv(&hp, tc ? tc : &cfg));
    CHECK_OK(ct_kv_check_used(&hp, "vt-clip"));
    ct_kv_free(&hp);
    return st;
}

static float g_pooled[VREF_B * VREF_E];

static ct_batch ref_batch(void) {
    for (int i = 0; i < VREF_B; i++)
        memcpy(g_pooled + i * VREF_E, vref_dense + (size_t)i * VREF_T * VREF_E,
               VREF_E * sizeof(float));
    return (ct_batch){.n = VREF_B, .x = g_pooled, .labels = vref_y, .dense = vref_dense,
                      .n_tokens = VREF_T};
}

typedef struct {
    const char *name, *hp;
    const double *logits, *loss, *grad[NP], *adam_losses, *adam_p[NP], *adam_logits;
} ref_case;

#define CASE(n)                                                                               \
    {#n, vref_##n##_hp, vref_##n##_logits, &vref_##n##_loss,                                  \
     {vref_##n##_grad0, vref_##n##_grad1, vref_##n##_grad2, vref_##n##_grad3},                \
     vref_##n##_adam_losses,                                                                  \
     {vref_##n##_adam_p0, vref_##n##_adam_p1, vref_##n##_adam_p2, vref_##n##_adam_p3},        \
     vref_##n##_adam_logits}
static const ref_case CASES[] = {CASE(h4), CASE(h2)};

static const float *const P0[NP] = {vref_in_w, vref_in_b, vref_out_w, vref_out_b};
static const char *const PNAME[NP] = {"in_proj_weight", "in_proj_bias", "out_proj.weight",
                                      "out_proj.bias"};

static int set_params(void *st, ct_tensor **p) {
    int np = ct_method_find("vt-clip")->params(st, p, 8);
    CHECK(np == NP);
    if (np != NP) return 0;
    static const int64_t numel[NP] = {3 * VREF_E * VREF_E, 3 * VREF_E, VREF_E * VREF_E, VREF_E};
    for (int i = 0; i < NP; i++) {
        CHECK_MSG(p[i]->numel == numel[i], "%s has %lld values", PNAME[i],
                  (long long)p[i]->numel);
        if (p[i]->numel != numel[i]) return 0;
        memcpy(p[i]->data, P0[i], (size_t)numel[i] * sizeof(float));
        ct_tensor_zero_grad(p[i]);
    }
    return np;
}

static void test_parity(void) {
    if (!syn_init()) return;
    const ct_method *m = ct_method_find("vt-clip");
    ct_task task = syn_task();
    ct_batch b = ref_batch();
    ct_graph *g = ct_graph_create(0);
    for (size_t c = 0; c < sizeof CASES / sizeof *CASES; c++) {
        const ref_case *rc = &CASES[c];
        void *st = make_state(&task, rc->hp, NULL);
        ct_tensor *p[8];
        if (!st || !set_params(st, p)) {
            m->destroy(st);
            continue;
        }
        char what[128];
        ct_graph_reset(g);
        ct_tensor *lg = m->logits(st, g, &b);
        snprintf(what, sizeof what, "%s logits", rc->name);
        double dl = lg ? compare(what, lg->data, rc->logits, VREF_B * VREF_K, 1e-4, 1e-5) : 1;
        ct_graph_reset(g);
        ct_tensor *loss = m->loss(st, g, &b);
        CHECK_MSG(loss, "%s: %s", rc->name, ct_last_error());
        if (!loss) {
            m->destroy(st);
            continue;
        }
        CHECK_OK(ct_backward(g, loss));
        snprintf(what, sizeof what, "%s loss", rc->name);
        double dls = compare(what, loss->data, rc->loss, 1, 1e-5, 1e-5), dg = 0;
        for (int i = 0; i < NP; i++) {
            snprintf(what, sizeof what, "%s d loss / d %s", rc->name, PNAME[i]);
            double d = compare(what, p[i]->grad, rc->grad[i], (size_t)p[i]->numel, 1e-5, 1e-4);
            dg = d > dg ? d : dg;
        }
        /* three AdamW steps as the defaults configure them (lr from the fixture) */
        ct_train_cfg tc;
        m->destroy(st);
        char hp[160];
        snprintf(hp, sizeof hp, "%s lr=%.9g", rc->hp, (double)vref_lr);
        st = make_state(&task, hp, &tc);
        if (!st || !set_params(st, p)) {
            m->destroy(st);
            continue;
        }
        CHECK(tc.optim.kind == CT_OPTIM_ADAMW);
        ct_optim *o = ct_optim_create(&tc.optim, p, NP);
        double ds = 0;
        for (int s = 0; o && s < 3; s++) {
            ct_graph_reset(g);
            ct_optim_zero_grad(o);
            ct_tensor *l = m->loss(st, g, &b);
            if (!l) break;
            CHECK_OK(ct_backward(g, l));
            snprintf(what, sizeof what, "%s loss before step %d", rc->name, s + 1);
            double d = compare(what, l->data, &rc->adam_losses[s], 1, 1e-4, 1e-4);
            ds = d > ds ? d : ds;
            CHECK_OK(ct_optim_step(o, vref_lr));
        }
        for (int i = 0; i < NP; i++) {
            snprintf(what, sizeof what, "%s %s after 3 AdamW steps", rc->name, PNAME[i]);
            double d = compare(what, p[i]->data, rc->adam_p[i], (size_t)p[i]->numel, 1e-4, 1e-4);
            ds = d > ds ? d : ds;
        }
        ct_graph_reset(g);
        ct_graph_set_grad(g, false);
        lg = m->logits(st, g, &b);
        snprintf(what, sizeof what, "%s logits after 3 steps", rc->name);
        double dla = lg ? compare(what, lg->data, rc->adam_logits, VREF_B * VREF_K, 1e-3, 1e-4)
                        : 1;
        ct_graph_set_grad(g, true);
        printf("    %s: max |d| logits %.2g loss %.2g grads %.2g; after 3 AdamW steps %.2g, "
               "logits %.2g\n", rc->name, dl, dls, dg, ds, dla);
        ct_optim_free(o);
        m->destroy(st);
    }
    ct_graph_free(g);
}

static void test_hyper_parameters(void) {
    const ct_method *m = ct_method_find("vt-clip");
    CHECK(m && m->loss && m->logits && m->params && m->param_names && m->dense_features);
    if (!m || !syn_init()) return;
    ct_task task = syn_task();
    ct_train_cfg tc;
    void *st = make_state(&task, "heads=2", &tc);
    CHECK(tc.optim.kind == CT_OPTIM_ADAMW && fabsf(tc.optim.lr - 1e-3f) < 1e-9f &&
          fabsf(tc.optim.eps - 1e-4f) < 1e-12f && tc.epochs == 20 &&
          tc.sched.kind == CT_SCHED_COSINE);
    ct_tensor *p[8];
    if (st && m->params(st, p, 8) == NP) {
        /* nn.MultiheadAttention's init: xavier-uniform in_proj, zero biases,
         * nn.Linear's U(-1/sqrt(E), 1/sqrt(E)) out_proj */
        double xa = sqrt(6.0 / (4.0 * VREF_E)), oa = 1 / sqrt((double)VREF_E), mx0 = 0, mx2 = 0;
        for (int64_t i = 0; i < p[0]->numel; i++) mx0 = fmax(mx0, fabs(p[0]->data[i]));
        for (int64_t i = 0; i < p[2]->numel; i++) mx2 = fmax(mx2, fabs(p[2]->data[i]));
        CHECK(mx0 <= xa && mx0 > 0.8 * xa && mx2 <= oa && mx2 > 0.8 * oa);
        for (int64_t i = 0; i < p[1]->numel; i++) CHECK(p[1]->data[i] == 0);
        for (int64_t i = 0; i < p[3]->numel; i++) CHECK(p[3]->data[i] == 0);
        CHECK(p[0]->requires_grad && p[3]->requires_grad);
        const char *nm[NP];
        CHECK(m->param_names(st, nm, NP) == NP && !strcmp(nm[0], "attn.in_proj_weight") &&
              !strcmp(nm[3], "attn.out_proj.bias"));
        /* a batch without per-token features is an error naming them */
        float x[VREF_E] = {1};
        int y[1] = {0};
        ct_batch b = {.n = 1, .x = x, .labels = y};
        ct_graph *g = ct_graph_create(0);
        CHECK_MSG(!m->loss(st, g, &b) && strstr(ct_last_error(), "dense"), "%s",
                  ct_last_error());
        ct_graph_free(g);
        /* ratio 0: exactly the zero-shot classifier's logits */
        void *z = make_state(&task, "heads=2 ratio=0", NULL);
        ct_batch rb = ref_batch();
        g = ct_graph_create(0);
        ct_graph_set_grad(g, false);
        ct_tensor *lg = z ? m->logits(z, g, &rb) : NULL;
        double mx = 0;
        for (int i = 0; lg && i < VREF_B; i++) {
            double nx = 0;
            for (int e = 0; e < VREF_E; e++) nx += (double)g_pooled[i * VREF_E + e] *
                                                  g_pooled[i * VREF_E + e];
            for (int k = 0; k < VREF_K; k++) {
                double d = 0;
                for (int e = 0; e < VREF_E; e++)
                    d += (double)g_pooled[i * VREF_E + e] * vref_tz[k * VREF_E + e];
                d = exp((double)vref_logit_scale) * d / sqrt(nx);
                mx = fmax(mx, fabs(d - lg->data[i * VREF_K + k]));
            }
        }
        CHECK_MSG(lg && mx < 1e-4, "ratio=0 vs zero-shot: max |d| %g", mx);
        ct_graph_free(g);
        m->destroy(z);
    }
    m->destroy(st);
    struct {
        const char *hp, *needle;
    } bad[] = {{"heads=3", "heads=3"}, {"heads=0", "heads=0"}, {"ratio=-1", "ratio=-1"},
               {"ratio=inf", "ratio=inf"}, {"bogus=1", "bogus"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ct_kv hp = {0};
        CHECK_OK(ct_kv_parse(&hp, "zs_weights="));
        CHECK_OK(ct_kv_set(&hp, "zs_weights", g_zs));
        CHECK_OK(ct_kv_parse(&hp, bad[i].hp));
        void *s = NULL;
        ct_status r = m->create(&task, &hp, &s);
        if (r == CT_OK) r = ct_kv_check_used(&hp, "vt-clip");
        CHECK_MSG(r != CT_OK && strstr(ct_last_error(), bad[i].needle), "%s: %s", bad[i].hp,
                  ct_last_error());
        m->destroy(s);
        ct_kv_free(&hp);
    }
}

/* ct_train on dense features, save, load into a fresh state: same scores. */
static void test_round_trip(void) {
    if (!syn_init()) return;
    const ct_method *m = ct_method_find("vt-clip");
    ct_task task = syn_task();
    enum { N = 20 };
    static float x[N * VREF_E], dense[N * VREF_T * VREF_E];
    static int y[N];
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < VREF_T * VREF_E; j++)
            dense[(size_t)i * VREF_T * VREF_E + j] =
                vref_dense[(size_t)(i % VREF_B) * VREF_T * VREF_E + j] +
                0.05f * (float)(i / VREF_B) * (float)((j % 7) - 3);
        memcpy(x + i * VREF_E, dense + (size_t)i * VREF_T * VREF_E, VREF_E * sizeof(float));
        y[i] = vref_y[i % VREF_B];
    }
    ct_features f = {.n = N, .dim = VREF_E, .x = x, .labels = y, .n_tokens = VREF_T,
                     .dense = dense};
    task.train_feats = &f;
    ct_train_cfg tc;
    void *a = make_state(&task, "heads=4 epochs=3 batch_size=8 lr=0.01", &tc);
    void *b = make_state(&task, "heads=4", NULL);
    if (!a || !b) {
        m->destroy(a), m->destroy(b);
        return;
    }
    tc.seed = 3;
    ct_kv none = {0};
    CHECK_OK(ct_train(m, a, &task, &tc, &none));
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/vt_rt", ct_test_tmpdir());
    mkdir(dir, 0777);
    CHECK_OK(ct_run_save_learned(m, a, dir));
    float *sa = malloc(sizeof(float) * N * VREF_K), *sb = malloc(sizeof(float) * N * VREF_K);
    CHECK_OK(ct_predict(m, a, &f, sa));
    CHECK_OK(ct_predict(m, b, &f, sb));
    CHECK_MSG(memcmp(sa, sb, sizeof(float) * N * VREF_K), "training changed nothing");
    CHECK_OK(ct_run_load_learned(m, b, dir));
    CHECK_OK(ct_predict(m, b, &f, sb));
    CHECK_MSG(!memcmp(sa, sb, sizeof(float) * N * VREF_K),
              "scores after load differ from the trained state's");
    ct_features pooled = {.n = N, .dim = VREF_E, .x = x, .labels = y};
    CHECK(ct_predict(m, b, &pooled, sb) != CT_OK && strstr(ct_last_error(), "dense"));
    free(sa), free(sb);
    m->destroy(a), m->destroy(b);
}

/* ---- learning on Fashion-MNIST with the shipped model: 16 shots, the
 * first 500 test images, the default schedule. */
#define LEARN_SET ""

static void test_learns_fashion_mnist(void) {
    const char *methods[2] = {"zeroshot", "vt-clip"}, *sets[2] = {"", LEARN_SET};
    ct_run_result res[2] = {{0}};
    if (!fashion_mnist_runs_on(SHIPPED_DIR, NULL, methods, sets, 2, 500, "fmvt", res, NULL))
        return;
    printf("    Fashion-MNIST 16-shot seed 1, first 500 test images, shipped model: zero-shot "
           "%.2f%%, VT-CLIP (defaults" LEARN_SET ") %.2f%% (val %.2f%%)\n", 100 * res[0].top1,
           100 * res[1].top1, 100 * res[1].val_top1);
    CHECK_MSG(res[1].top1 > res[0].top1 + 0.05, "VT-CLIP %.4f vs zero-shot %.4f", res[1].top1,
              res[0].top1);
}

int main(void) {
    RUN(test_hyper_parameters);
    RUN(test_parity);
    RUN(test_round_trip);
    RUN(test_learns_fashion_mnist);
    ct_clip_free(g_syn);
    return ct_test_summary();
}
