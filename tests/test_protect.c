/* ProTeCt (src/methods/protect.c): parity with an independent float64
 * PyTorch computation of engine.py's loss (tools/ref/gen_protect_ref.py ->
 * fixtures/methods/protect_ref.h) with a fed tree cut: loss, gradient, leaf
 * logits, three SGD steps; the sampled cuts; hyper-parameter errors; and a
 * hierarchy run on Fashion-MNIST with the shipped model and taxonomy. */
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "cliptune.h"
#include "fixtures/methods/protect_ref.h"
#include "harness.h"
#include "method_fixture.h"
#include "methods/protect.h"

static ct_taxonomy *g_tax;

static bool setup(void) {
    if (!load_fixture()) return false;
    if (!g_tax)
        CHECK_OK(ct_taxonomy_parse(pref_taxonomy, strlen(pref_taxonomy), "pref", pref_classes,
                                   PREF_K, &g_tax));
    if (!g_tax) return false;
    /* the reference's node order is ours (both preorder, children in edge order) */
    for (int i = 0; i < PREF_N; i++) CHECK(!strcmp(g_tax->names[i], pref_nodes[i]));
    return true;
}

static ct_task make_task(void) {
    ct_task t = {0};
    t.clip = g_clip, t.tok = g_tok, t.n_classes = PREF_K, t.classnames = (char *const *)pref_classes;
    t.dataset_name = "test", t.seed = 1, t.taxonomy = g_tax;
    return t;
}

static ct_status create(const ct_task *task, const char *extra, void **state) {
    const ct_method *m = ct_method_find("protect");
    ct_kv hp = {0};
    ct_status s = ct_kv_parse(&hp, m->defaults);
    if (s == CT_OK && extra) s = ct_kv_parse(&hp, extra);
    *state = NULL;
    if (s == CT_OK) s = m->create(task, &hp, state);
    /* the trainer and ct_run read the others */
    ct_train_cfg tc;
    int views;
    const char *vs;
    if (s == CT_OK) s = ct_train_cfg_from_kv(&hp, &tc);
    if (s == CT_OK) s = ct_kv_int(&hp, "aug_views", 0, &views);
    if (s == CT_OK) s = ct_kv_str(&hp, "views", "", &vs);
    if (s == CT_OK) s = ct_kv_check_used(&hp, "protect");
    ct_kv_free(&hp);
    if (s != CT_OK && *state) { /* created, then a key nobody read */
        m->destroy(*state);
        *state = NULL;
    }
    return s;
}

static ct_tensor *ctx_of(void *st) {
    ct_tensor *p[4];
    int n = ct_method_find("protect")->params(st, p, 4);
    CHECK(n == 1);
    return n == 1 ? p[0] : NULL;
}

static void set_ctx(ct_tensor *ctx, const double *v) {
    for (int64_t i = 0; i < ctx->numel; i++) ctx->data[i] = (float)v[i];
}

static const ct_batch ref_batch = {.n = PREF_B, .x = pref_img, .labels = pref_labels, .seed = 5};

static void test_parity(void) {
    if (!setup()) return;
    const ct_method *m = ct_method_find("protect");
    ct_task task = make_task();
    void *st = NULL;
    CHECK_OK(create(&task, NULL, &st));
    ct_tensor *ctx = st ? ctx_of(st) : NULL;
    if (!ctx) return;
    CHECK(ctx->numel == 16 * 32);
    ct_graph *g = ct_graph_create(0);
    const unsigned char *cuts[2] = {pref_cut_a, pref_cut_b};
    const double *losses[2] = {&pref_loss_a, &pref_loss_b}, *grads[2] = {pref_grad_a, pref_grad_b};
    for (int c = 0; c < 2; c++) {
        set_ctx(ctx, pref_ctx);
        ct_tensor_zero_grad(ctx);
        ct_protect_fix_cut(st, cuts[c]);
        ct_graph_reset(g);
        ct_tensor *loss = m->loss(st, g, &ref_batch);
        CHECK_MSG(loss, "%s", ct_last_error());
        if (!loss) break;
        CHECK_OK(ct_backward(g, loss));
        char what[64];
        snprintf(what, sizeof what, "cut %c loss", 'a' + c);
        double dl = compare(what, loss->data, losses[c], 1, 1e-4, 1e-4);
        snprintf(what, sizeof what, "cut %c d loss / d ctx", 'a' + c);
        double dg = compare(what, ctx->grad, grads[c], (size_t)ctx->numel, 1e-4, 1e-4);
        printf("    cut %c: max |d| loss %.2g  grad %.2g\n", 'a' + c, dl, dg);
    }
    /* leaf logits in class order, with grad and from the evaluation cache */
    set_ctx(ctx, pref_ctx);
    ct_graph_reset(g);
    ct_tensor *lg = m->logits(st, g, &ref_batch);
    double d = lg ? compare("leaf logits", lg->data, pref_leaf_logits, PREF_B * PREF_K, 1e-4, 1e-4) : 1;
    float with_grad[PREF_B * PREF_K];
    if (lg) memcpy(with_grad, lg->data, sizeof with_grad);
    ct_graph_reset(g);
    ct_graph_set_grad(g, false);
    for (int r = 0; r < 2 && lg; r++) {
        ct_graph_reset(g);
        ct_tensor *l2 = m->logits(st, g, &ref_batch);
        CHECK_MSG(l2 && !memcmp(l2->data, with_grad, sizeof with_grad), "cached logits differ");
    }
    ct_graph_set_grad(g, true);
    printf("    leaf logits max |d| %.2g\n", d);
    ct_graph_free(g);
    m->destroy(st);
}

static void test_sgd_steps(void) {
    if (!setup()) return;
    const ct_method *m = ct_method_find("protect");
    ct_task task = make_task();
    void *st = NULL;
    CHECK_OK(create(&task, NULL, &st));
    ct_tensor *ctx = st ? ctx_of(st) : NULL;
    if (!ctx) return;
    set_ctx(ctx, pref_ctx);
    ct_protect_fix_cut(st, pref_cut_a);
    ct_optim_config oc = ct_optim_default(CT_OPTIM_SGD, 0.02f);
    oc.momentum = 0, oc.weight_decay = 0;
    ct_optim *opt = ct_optim_create(&oc, &ctx, 1);
    ct_graph *g = ct_graph_create(0);
    for (int s = 0; s < 3 && opt; s++) {
        ct_graph_reset(g);
        ct_optim_zero_grad(opt);
        ct_tensor *loss = m->loss(st, g, &ref_batch);
        if (!loss) break;
        CHECK_OK(ct_backward(g, loss));
        char what[64];
        snprintf(what, sizeof what, "loss before step %d", s + 1);
        compare(what, loss->data, &pref_sgd_losses[s], 1, 1e-3, 1e-3);
        CHECK_OK(ct_optim_step(opt, 0.02f));
    }
    double dc = compare("ctx after 3 steps", ctx->data, pref_sgd_ctx, (size_t)ctx->numel, 1e-3, 1e-3);
    double moved = 0;
    for (int64_t i = 0; i < ctx->numel; i++) {
        double dd = fabs(pref_sgd_ctx[i] - pref_ctx[i]);
        moved = dd > moved ? dd : moved;
    }
    CHECK(moved > 0.01);
    ct_graph_reset(g);
    ct_graph_set_grad(g, false);
    ct_tensor *lg = m->logits(st, g, &ref_batch);
    double dl = lg ? compare("leaf logits after 3 steps", lg->data, pref_sgd_leaf_logits,
                             PREF_B * PREF_K, 1e-3, 1e-3) : 1;
    printf("    ctx max |d| %.2g (largest move %.3f), logits %.2g\n", dc, moved, dl);
    ct_graph_free(g);
    ct_optim_free(opt);
    m->destroy(st);
}

/* Without a fed cut the loss samples one from the batch seed: the same
 * seed, the same loss; over seeds, several distinct losses (cuts). */
static void test_sampled_cut(void) {
    if (!setup()) return;
    const ct_method *m = ct_method_find("protect");
    ct_task task = make_task();
    void *st = NULL;
    CHECK_OK(create(&task, "dropout_rate=0.5", &st));
    ct_tensor *ctx = st ? ctx_of(st) : NULL;
    if (!ctx) return;
    set_ctx(ctx, pref_ctx);
    ct_graph *g = ct_graph_create(0);
    ct_graph_set_grad(g, false);
    float seen[64];
    int n_seen = 0;
    for (uint64_t seed = 1; seed <= 40; seed++) {
        ct_batch b = ref_batch;
        b.seed = seed;
        float v[2];
        for (int r = 0; r < 2; r++) {
            ct_graph_reset(g);
            ct_tensor *l = m->loss(st, g, &b);
            v[r] = l ? l->data[0] : NAN;
        }
        CHECK(v[0] == v[1]);
        bool old = false;
        for (int i = 0; i < n_seen; i++) old = old || fabsf(seen[i] - v[0]) < 1e-6f;
        if (!old && n_seen < 64) seen[n_seen++] = v[0];
        /* every loss is one of the 3 x 2 = 6 cuts' (object, toy and
         * garment each expanded or not) */
    }
    CHECK_MSG(n_seen >= 4 && n_seen <= 6, "%d distinct losses", n_seen);
    /* dropout_rate 0: every cut is the leaves (cut b) */
    m->destroy(st);
    st = NULL;
    CHECK_OK(create(&task, "dropout_rate=0", &st));
    ctx = st ? ctx_of(st) : NULL;
    if (ctx) {
        set_ctx(ctx, pref_ctx);
        ct_graph_reset(g);
        ct_tensor *l = m->loss(st, g, &ref_batch);
        if (l) compare("dropout 0 = the leaves' cut", l->data, &pref_loss_b, 1, 1e-4, 1e-4);
        m->destroy(st);
    }
    ct_graph_free(g);
}

static void test_hyper_parameters(void) {
    if (!setup()) return;
    ct_task task = make_task();
    void *st = NULL;
    CHECK(create(&task, "lambda=-1", &st) != CT_OK && strstr(ct_last_error(), "lambda"));
    CHECK(create(&task, "dropout_rate=1", &st) != CT_OK && strstr(ct_last_error(), "dropout_rate"));
    CHECK(create(&task, "bogus=1", &st) != CT_OK && strstr(ct_last_error(), "bogus"));
    /* a taxonomy over other classes */
    static const char *const other[PREF_K] = {"cat", "T-shirt/top", "sea lion", "golden_retriever",
                                              "crane (bird)"};
    task.classnames = (char *const *)other;
    CHECK(create(&task, NULL, &st) != CT_OK && strstr(ct_last_error(), "other leaves"));
    /* no taxonomy: the classes as a flat tree (a scoring state) */
    task = make_task();
    task.taxonomy = NULL;
    CHECK_OK(create(&task, NULL, &st));
    if (st) ct_method_find("protect")->destroy(st);
    const ct_method *m = ct_method_find("protect");
    CHECK(m && m->taxonomy && !ct_method_find("coop")->taxonomy);
}

/* The hierarchy run: ProTeCt against zero-shot and CoOp on Fashion-MNIST
 * with the shipped model and data/taxonomies/fashion-mnist.txt. */
#define LEARN_SET "epochs=5 batch_size=32 aug_views=0 lr=0.02 n_ctx=4"
#define MAPLE_TEST 500
#define MAPLE_LEARN_SET "epochs=10 batch_size=8 lr=0.02"
/* One 16-shot hierarchy run on Fashion-MNIST's first max_test test images. */
static ct_status hier_run(ct_model *model, ct_splits *sp, const char *cache, const char *method,
                          const char *set, int64_t max_test, ct_run_result *res) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/hier_%s", ct_test_tmpdir(), method);
    ct_run_cfg rc = ct_run_cfg_default();
    rc.model = model, rc.data = sp, rc.data_spec = "fashion-mnist";
    rc.method = ct_method_find(method), rc.set = set, rc.shots = 16, rc.seed = 1;
    rc.run_dir = dir, rc.cache_dir = cache, rc.max_test = max_test;
    rc.taxonomy_path = CT_SOURCE_DIR "/data/taxonomies/fashion-mnist.txt";
    return ct_run(&rc, res);
}

static void test_learns_fashion_mnist(void) {
    if (!file_exists(SHIPPED_DIR "/model.safetensors")) {
        ct_test_skip("models/cliptune-small is not here");
        return;
    }
    if (!file_exists("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")) {
        ct_test_skip("Fashion-MNIST not installed");
        return;
    }
    char cache[4200];
    snprintf(cache, sizeof cache, "%s/fm_cache_model", ct_test_tmpdir());
    mkdir(cache, 0777);
    ct_model *model = ct_model_load(SHIPPED_DIR, NULL, false);
    CHECK_MSG(model, "%s", ct_last_error());
    ct_splits sp = {0};
    CHECK_OK(ct_data_open("fashion-mnist", &sp));
    if (!model || !sp.test) return;
    const char *methods[3] = {"zeroshot", "coop", "protect"};
    const char *sets[3] = {"", LEARN_SET, LEARN_SET};
    ct_run_result res[3];
    for (int r = 0; r < 3; r++) CHECK_OK(hier_run(model, &sp, cache, methods[r], sets[r], 2000, &res[r]));
    for (int r = 0; r < 3; r++)
        printf("    %-9s top-1 %.2f%%  leaf %.2f%%  HCA %.2f%%  MTA %.2f%% (%d cuts)\n", methods[r],
               100 * res[r].top1, 100 * res[r].leaf_acc, 100 * res[r].hca, 100 * res[r].mta,
               res[r].n_cuts);
    CHECK(res[0].hierarchy && res[2].n_cuts == 20);
    for (int r = 0; r < 3; r++)
        CHECK(res[r].node_scores_from && !strcmp(res[r].node_scores_from, "prompts") &&
              fabs(res[r].leaf_acc - res[r].top1) < 1e-3);
    CHECK_MSG(res[2].hca > res[0].hca + 0.05 && res[2].mta > res[0].mta + 0.05,
              "ProTeCt HCA %.4f MTA %.4f vs zero-shot %.4f %.4f", res[2].hca, res[2].mta,
              res[0].hca, res[0].mta);
    /* and over CoOp trained the same way (CoOp never trains the group prompts) */
    CHECK_MSG(res[2].hca > res[1].hca && res[2].mta > res[1].mta,
              "ProTeCt HCA %.4f MTA %.4f vs CoOp %.4f %.4f", res[2].hca, res[2].mta, res[1].hca,
              res[1].mta);
    /* the saved run keeps its taxonomy: eval gives the same hierarchy metrics */
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/hier_protect", ct_test_tmpdir());
    ct_saved_run *sr = ct_saved_run_open(dir);
    CHECK_MSG(sr, "%s", ct_last_error());
    ct_dataset *head = ct_dataset_head(sp.test, 2000);
    if (sr && head) {
        CHECK(ct_saved_run_info(sr)->taxonomy && strstr(ct_saved_run_info(sr)->taxonomy, "taxonomy.txt"));
        CHECK_OK(ct_saved_run_attach(sr, model));
        ct_metrics m = {0};
        char out[4300];
        snprintf(out, sizeof out, "%s/eval", dir);
        CHECK_OK(ct_saved_run_evaluate(sr, head, "fashion-mnist", cache, out, &m));
        CHECK_MSG(m.hierarchy && m.hca == res[2].hca && m.mta == res[2].mta &&
                  m.leaf_acc == res[2].leaf_acc && m.n_cuts == 20,
                  "eval: leaf %g HCA %g MTA %g vs the run's %g %g %g", m.leaf_acc, m.hca, m.mta,
                  res[2].leaf_acc, res[2].hca, res[2].mta);
        ct_metrics_free(&m);
        /* the files say so too */
        char path[4400];
        snprintf(path, sizeof path, "%s/metrics.json", dir);
        FILE *f = fopen(path, "r");
        char buf[1 << 16] = {0};
        size_t nr = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f) fclose(f);
        CHECK(nr > 0 && strstr(buf, "\"hierarchy\"") && strstr(buf, "\"mta\""));
        snprintf(path, sizeof path, "%s/report.md", dir);
        f = fopen(path, "r");
        nr = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        buf[nr] = 0;
        if (f) fclose(f);
        CHECK(strstr(buf, "## Hierarchy") && strstr(buf, "HCA"));
    }
    ct_dataset_free(head);
    ct_saved_run_free(sr);
    /* ProTeCt's own method without a taxonomy: refused */
    ct_run_cfg rc = ct_run_cfg_default();
    rc.model = model, rc.data = &sp, rc.method = ct_method_find("protect"), rc.set = LEARN_SET;
    rc.max_test = 10;
    ct_run_result rr;
    CHECK(ct_run(&rc, &rr) != CT_OK && strstr(ct_last_error(), "taxonomy"));
    ct_model_free(model);
    ct_splits_free(&sp);
}

/* ProTeCt on MaPLe against zero-shot and MaPLe trained the same way, on the
 * pixel path; node scores come from MaPLe's prompts for the node names
 * through the prompted image tower, in the run and in a saved run's eval. */
static void test_learns_maple(void) {
    if (!file_exists(SHIPPED_DIR "/model.safetensors") ||
        !file_exists("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")) {
        ct_test_skip("the shipped model or Fashion-MNIST is not here");
        return;
    }
    char cache[4200];
    snprintf(cache, sizeof cache, "%s/fm_cache_model", ct_test_tmpdir());
    mkdir(cache, 0777);
    ct_model *model = ct_model_load(SHIPPED_DIR, NULL, false);
    CHECK_MSG(model, "%s", ct_last_error());
    ct_splits sp = {0};
    CHECK_OK(ct_data_open("fashion-mnist", &sp));
    if (!model || !sp.test) return;
    const char *methods[3] = {"zeroshot", "maple", "protect-maple"};
    const char *sets[3] = {"", MAPLE_LEARN_SET, MAPLE_LEARN_SET};
    ct_run_result res[3];
    for (int r = 0; r < 3; r++)
        CHECK_OK(hier_run(model, &sp, cache, methods[r], sets[r], MAPLE_TEST, &res[r]));
    for (int r = 0; r < 3; r++)
        printf("    %-13s top-1 %.2f%%  HCA %.2f%%  MTA %.2f%% (node scores from %s)\n",
               methods[r], 100 * res[r].top1, 100 * res[r].hca, 100 * res[r].mta,
               res[r].node_scores_from ? res[r].node_scores_from : "?");
    for (int r = 0; r < 3; r++)
        CHECK(res[r].node_scores_from && !strcmp(res[r].node_scores_from, "prompts"));
    CHECK_MSG(res[2].hca > res[0].hca + 0.05 && res[2].mta > res[0].mta + 0.05,
              "ProTeCt-MaPLe HCA %.4f MTA %.4f vs zero-shot %.4f %.4f", res[2].hca, res[2].mta,
              res[0].hca, res[0].mta);
    CHECK_MSG(res[2].hca > res[1].hca && res[2].mta > res[1].mta,
              "ProTeCt-MaPLe HCA %.4f MTA %.4f vs MaPLe %.4f %.4f", res[2].hca, res[2].mta,
              res[1].hca, res[1].mta);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/hier_protect-maple", ct_test_tmpdir());
    ct_saved_run *sr = ct_saved_run_open(dir);
    CHECK_MSG(sr, "%s", ct_last_error());
    ct_dataset *head = ct_dataset_head(sp.test, MAPLE_TEST);
    if (sr && head) {
        CHECK_OK(ct_saved_run_attach(sr, model));
        ct_metrics m = {0};
        char out[4300];
        snprintf(out, sizeof out, "%s/eval", dir);
        CHECK_OK(ct_saved_run_evaluate(sr, head, "fashion-mnist", cache, out, &m));
        CHECK_MSG(m.hierarchy && fabs(m.hca - res[2].hca) < 1e-6 &&
                  fabs(m.mta - res[2].mta) < 1e-6 && m.node_scores_from &&
                  !strcmp(m.node_scores_from, "prompts"),
                  "eval: HCA %g MTA %g vs the run's %g %g", m.hca, m.mta, res[2].hca, res[2].mta);
        ct_metrics_free(&m);
    }
    ct_dataset_free(head);
    ct_saved_run_free(sr);
    ct_model_free(model);
    ct_splits_free(&sp);
}

/* Two ctest entries: the MaPLe runs ("learns-maple") apart from the rest. */
int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "learns-maple")) {
        RUN(test_learns_maple);
        return ct_test_summary();
    }
    RUN(test_hyper_parameters);
    RUN(test_parity);
    RUN(test_sgd_steps);
    RUN(test_sampled_cut);
    RUN(test_learns_fashion_mnist);
    ct_taxonomy_free(g_tax);
    return ct_test_summary();
}
