/* UPL (src/methods/upl.c): the pseudo-label selection, the ensemble's loss,
 * gradients and logits and three full-batch SGD steps through ct_train
 * against an independent float64 PyTorch re-implementation
 * (tools/ref/gen_upl_ref.py -> fixtures/methods/upl_ref.h) on the tiny
 * fixture; the learned-tensor round trip and checkpoint resume; learning
 * from pseudo-labels on held-out data (synthetic features where zero-shot
 * is informative, and Fashion-MNIST through ct_run, where with the random
 * tiny model it is not). The tokenizer is tests/fixtures/bpe/clip_subset. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cliptune.h"
#include "fixtures/methods/coop_ref.h"
#include "fixtures/methods/upl_ref.h"
#include "harness.h"
#include "method_fixture.h"
#include "methods/method_prompt.h"
#include "model/bundle.h"
#include "train/features.h"
#include "api/run.h"

/* the unlabelled features of the reference, without labels */
static const ct_features ref_unlabelled = {.n = UREF_N, .dim = UREF_E, .x = (float *)uref_x};

static ct_task make_task(void) {
    ct_task t = {0};
    t.clip = g_clip, t.tok = g_tok, t.n_classes = CREF_K;
    t.classnames = (char *const *)cref_classnames;
    t.dataset_name = "test", t.seed = 1;
    t.unlabelled_feats = &ref_unlabelled;
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

/* Train with trainer keys tk (on top of the method's defaults), seed 1. */
static ct_status train(const ct_method *m, void *st, const ct_task *task, const char *tk,
                       ct_train_cfg *out) {
    ct_kv hp = {0};
    ct_status s = ct_kv_parse(&hp, m->defaults);
    if (s == CT_OK) s = ct_kv_parse(&hp, tk);
    ct_train_cfg tc;
    if (s == CT_OK) s = ct_train_cfg_from_kv(&hp, &tc);
    if (s == CT_OK) {
        if (out) { /* the caller's run directory, resume and progress settings */
            tc.run_dir = out->run_dir, tc.resume = out->resume, tc.stop_after = out->stop_after;
            tc.progress = out->progress, tc.progress_ctx = out->progress_ctx;
        }
        tc.seed = 1;
        s = ct_train(m, st, task, &tc, &hp);
    }
    ct_kv_free(&hp);
    return s;
}

/* Row of x among the n rows of pool (exact bytes), or -1. */
static int64_t find_row(const float *x, const float *pool, int64_t n, int E) {
    for (int64_t i = 0; i < n; i++)
        if (!memcmp(x, pool + i * E, (size_t)E * sizeof *x)) return i;
    return -1;
}

static int argmax(const float *s, int K) {
    int b = 0;
    for (int k = 1; k < K; k++)
        if (s[k] > s[b]) b = k;
    return b;
}

static void test_hyper_parameters(void) {
    const ct_method *m = ct_method_find("upl");
    CHECK(m && m->loss && m->logits && m->params && m->fit && m->train_set &&
          m->wants_unlabelled);
    if (!m) return;
    /* the defaults are upl_train.py's and rn50_ep50.yaml's */
    ct_kv hp = {0};
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    ct_train_cfg tc;
    CHECK_OK(ct_train_cfg_from_kv(&hp, &tc));
    CHECK(tc.epochs == 50 && tc.batch_size == 32 && tc.optim.kind == CT_OPTIM_SGD);
    CHECK(fabsf(tc.optim.lr - 0.002f) < 1e-9f && fabsf(tc.optim.momentum - 0.9f) < 1e-9f &&
          fabsf(tc.optim.weight_decay - 5e-4f) < 1e-12f && !tc.optim.nesterov);
    CHECK(tc.sched.kind == CT_SCHED_COSINE && tc.sched.warmup == CT_WARMUP_CONSTANT &&
          tc.sched.warmup_len == 1 && fabsf(tc.sched.warmup_lr - 1e-5f) < 1e-12f &&
          !tc.select_best_val);
    int topk = 0, ens = 0, n_ctx = 0, views = -1;
    CHECK_OK(ct_kv_int(&hp, "topk", 0, &topk));
    CHECK_OK(ct_kv_int(&hp, "ensemble", 0, &ens));
    CHECK_OK(ct_kv_int(&hp, "n_ctx", 0, &n_ctx));
    CHECK_OK(ct_kv_int(&hp, "aug_views", 0, &views));
    CHECK(topk == 16 && ens == 1 && n_ctx == 16 && views == 0);
    ct_kv_free(&hp);
    if (!load_fixture()) return;
    ct_task task = make_task();
    void *st = NULL;
    CHECK_OK(create("upl", &task, "ensemble=3 n_ctx=4", &st));
    ct_tensor *p[8];
    CHECK(st && m->params(st, p, 8) == 3 && p[2]->shape[0] == 4 && p[2]->requires_grad);
    if (st) m->destroy(st);
    struct {
        const char *hp, *needle;
    } bad[] = {
        {"topk=0", "topk=0"},     {"topk=-2", "topk=-2"},       {"ensemble=0", "ensemble=0"},
        {"aug_views=10", "aug_views=10"}, {"csc=2", "csc=2"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        st = NULL;
        CHECK_MSG(create("upl", &task, bad[i].hp, &st) == CT_ERR_ARG && !st &&
                      strstr(ct_last_error(), bad[i].needle),
                  "%s: %s", bad[i].hp, ct_last_error());
    }
    /* fit needs the unlabelled features, of the model's dimension */
    task.unlabelled_feats = NULL;
    CHECK_OK(create("upl", &task, "", &st));
    if (!st) return;
    CHECK(m->fit(st, &task) == CT_ERR_ARG && strstr(ct_last_error(), "unlabelled"));
    ct_features wrong = {.n = 1, .dim = 3, .x = (float[3]){1, 2, 3}};
    task.unlabelled_feats = &wrong;
    CHECK(m->fit(st, &task) == CT_ERR_ARG && strstr(ct_last_error(), "dimension"));
    m->destroy(st);
}

/* fit's pseudo-labelled set: the reference's rows, in order, with its labels
 * (the unlabelled features carry no labels at all) */
static void test_selection_parity(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("upl");
    ct_task task = make_task();
    void *st = NULL;
    char hp[64];
    snprintf(hp, sizeof hp, "topk=%d", UREF_TOPK);
    CHECK_OK(create("upl", &task, hp, &st));
    if (!st) return;
    CHECK_OK(m->fit(st, &task));
    const ct_features *set = m->train_set(st);
    CHECK_MSG(set->n == UREF_NSEL && set->dim == UREF_E, "%lld pseudo-labelled rows, reference %d",
              (long long)set->n, UREF_NSEL);
    int bad = 0;
    for (int64_t j = 0; j < set->n && j < UREF_NSEL; j++) {
        int64_t r = find_row(set->x + j * UREF_E, uref_x, UREF_N, UREF_E);
        if (r != uref_sel_rows[j] || set->labels[j] != uref_sel_labels[j]) {
            if (bad++ < 5)
                CHECK_MSG(false, "pseudo-labelled row %lld: unlabelled row %lld label %d, "
                          "reference row %d label %d", (long long)j, (long long)r,
                          set->labels[j], uref_sel_rows[j], uref_sel_labels[j]);
        }
    }
    int count[CREF_K] = {0};
    for (int j = 0; j < UREF_NSEL; j++) count[uref_sel_labels[j]]++;
    printf("    %d of %d unlabelled rows kept (per class %d %d %d %d %d, at most %d)\n", UREF_NSEL,
           UREF_N, count[0], count[1], count[2], count[3], count[4], UREF_TOPK);
    /* fit again (as on resume): the same set */
    CHECK_OK(m->fit(st, &task));
    set = m->train_set(st);
    CHECK(set->n == UREF_NSEL);
    m->destroy(st);
    /* topk=-1 keeps every row, in order, labelled with the argmax */
    CHECK_OK(create("upl", &task, "topk=-1", &st));
    if (!st) return;
    CHECK_OK(m->fit(st, &task));
    set = m->train_set(st);
    CHECK(set->n == UREF_N && !memcmp(set->x, uref_x, sizeof uref_x));
    for (int j = 0; j < UREF_NSEL && set->n == UREF_N; j++)
        CHECK(set->labels[uref_sel_rows[j]] == uref_sel_labels[j]);
    m->destroy(st);
    /* ten copies of one image: one class, and of equal confidences the
     * earlier rows are kept */
    float same[10 * UREF_E];
    for (int i = 0; i < 10; i++) memcpy(same + i * UREF_E, uref_x, sizeof(float) * UREF_E);
    ct_features f10 = {.n = 10, .dim = UREF_E, .x = same};
    task.unlabelled_feats = &f10;
    CHECK_OK(create("upl", &task, "topk=3", &st));
    if (!st) return;
    CHECK_OK(m->fit(st, &task));
    set = m->train_set(st);
    CHECK(set->n == 3);
    int lab0 = -1;
    for (int j = 0; j < UREF_NSEL; j++)
        if (uref_sel_rows[j] == 0) lab0 = uref_sel_labels[j];
    for (int64_t j = 0; j < set->n; j++) CHECK(set->labels[j] == lab0 || lab0 < 0);
    m->destroy(st);
}

static void set_ctx(ct_tensor *ctx, const double *v) {
    for (int64_t i = 0; i < ctx->numel; i++) ctx->data[i] = (float)v[i];
}

typedef struct {
    int n;
    double loss[8];
} step_log;

static void on_step(void *ctx, const char *stage, int64_t done, int64_t total, double loss,
                    double lr) {
    step_log *l = ctx;
    if (l->n < 8) l->loss[l->n++] = loss;
}

/* The ensemble (M = 2, n_ctx 4) on the whole pseudo-labelled set: summed CE,
 * each member's gradient, mean logits; then three full-batch steps through
 * ct_train (one batch per epoch: the row order does not matter). */
static void test_ensemble_parity(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("upl");
    ct_task task = make_task();
    void *st = NULL;
    char hp[128];
    snprintf(hp, sizeof hp, "topk=%d ensemble=%d n_ctx=%d", UREF_TOPK, UREF_M, UREF_NCTX);
    CHECK_OK(create("upl", &task, hp, &st));
    if (!st) return;
    CHECK_OK(m->fit(st, &task));
    ct_tensor *p[UREF_M];
    CHECK(m->params(st, p, UREF_M) == UREF_M);
    size_t per = (size_t)p[0]->numel;
    CHECK(per * UREF_M == sizeof uref_ctx / sizeof *uref_ctx);
    for (int i = 0; i < UREF_M; i++) set_ctx(p[i], uref_ctx + i * per), ct_tensor_zero_grad(p[i]);
    const ct_features *set = m->train_set(st);
    ct_batch b = {.n = set->n, .x = set->x, .labels = set->labels};
    ct_graph *g = ct_graph_create(0);
    ct_tensor *loss = m->loss(st, g, &b);
    CHECK_MSG(loss, "%s", ct_last_error());
    if (!loss) goto out;
    CHECK_OK(ct_backward(g, loss));
    double dl = compare("ensemble loss", loss->data, &uref_loss, 1, 1e-4, 1e-4);
    float grad[UREF_M * UREF_NCTX * UREF_W];
    for (int i = 0; i < UREF_M; i++) memcpy(grad + i * per, p[i]->grad, per * sizeof(float));
    double dg = compare("d loss / d ctx (both members)", grad, uref_grad, UREF_M * per, 1e-4,
                        1e-4);
    ct_graph_reset(g);
    ct_tensor *lg = m->logits(st, g, &b);
    double dz = lg ? compare("ensemble logits", lg->data, uref_logits, UREF_NSEL * UREF_K, 1e-4,
                             1e-4)
                   : 1;
    ct_graph_reset(g);
    ct_graph_set_grad(g, false);
    ct_tensor *lc = m->logits(st, g, &b);
    CHECK(lg && lc);
    if (lc) compare("ensemble logits (cached text)", lc->data, uref_logits, UREF_NSEL * UREF_K,
                    1e-4, 1e-4);
    printf("    max |d| loss %.2g  grad %.2g  logits %.2g\n", dl, dg, dz);
    /* 3 epochs of one full batch = 3 SGD steps on the reference's set */
    step_log sl = {0};
    ct_train_cfg o = {.progress = on_step, .progress_ctx = &sl};
    CHECK_OK(train(m, st, &task, "epochs=3 batch_size=64 sched=constant warmup_epochs=0", &o));
    CHECK(sl.n == 3);
    double dsl = compare("losses of 3 SGD steps", (float[3]){(float)sl.loss[0], (float)sl.loss[1],
                                                             (float)sl.loss[2]},
                         uref_sgd_losses, 3, 1e-3, 1e-3);
    float ctx[UREF_M * UREF_NCTX * UREF_W];
    for (int i = 0; i < UREF_M; i++) memcpy(ctx + i * per, p[i]->data, per * sizeof(float));
    double dc = compare("ctx after 3 steps", ctx, uref_sgd_ctx, UREF_M * per, 1e-3, 1e-3);
    double moved = 0;
    for (size_t i = 0; i < UREF_M * per; i++) {
        double d = fabs(uref_sgd_ctx[i] - uref_ctx[i]);
        moved = d > moved ? d : moved;
    }
    CHECK(moved > 0.005);
    set = m->train_set(st); /* ct_train ran fit again: a new set */
    b = (ct_batch){.n = set->n, .x = set->x, .labels = set->labels};
    ct_graph_reset(g);
    lg = m->logits(st, g, &b);
    double dz3 = lg ? compare("logits after 3 steps", lg->data, uref_sgd_logits,
                              UREF_NSEL * UREF_K, 1e-3, 1e-3)
                    : 1;
    printf("    3 steps: max |d| losses %.2g  ctx %.2g (largest move %.3f)  logits %.2g\n", dsl,
           dc, moved, dz3);
out:
    ct_graph_free(g);
    m->destroy(st);
}

/* ensemble=1 is CoOp's prompt learner on the pseudo-labels: the same
 * initial context and logits as coop's, bit for bit; a second member
 * starts elsewhere */
static void test_single_member_is_coop(void) {
    if (!load_fixture()) return;
    ct_task task = make_task();
    void *u = NULL, *u2 = NULL, *c = NULL;
    CHECK_OK(create("upl", &task, "n_ctx=4", &u));
    CHECK_OK(create("upl", &task, "n_ctx=4 ensemble=2", &u2));
    CHECK_OK(create("coop", &task, "n_ctx=4", &c));
    if (!u || !u2 || !c) return;
    const ct_method *m = ct_method_find("upl"), *mc = ct_method_find("coop");
    ct_tensor *pu[2], *pc[1];
    m->params(u2, pu, 2), mc->params(c, pc, 1);
    size_t nb = (size_t)pc[0]->numel * sizeof(float);
    CHECK(!memcmp(pu[0]->data, pc[0]->data, nb) && memcmp(pu[1]->data, pc[0]->data, nb));
    float su[UREF_N * CREF_K], sc[UREF_N * CREF_K];
    CHECK_OK(ct_predict(m, u, &ref_unlabelled, su));
    CHECK_OK(ct_predict(mc, c, &ref_unlabelled, sc));
    CHECK(!memcmp(su, sc, sizeof su));
    m->destroy(u), m->destroy(u2), mc->destroy(c);
}

/* Save / load of the learned contexts gives the same logits bit for bit;
 * a run stopped after one epoch and resumed (fit re-runs and rebuilds the
 * pseudo-labelled set) ends where the uninterrupted run does. */
static void test_checkpoint_round_trip(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("upl");
    ct_task task = make_task();
    const char *hp = "topk=8 ensemble=2 n_ctx=4";
    const char *tk = "epochs=3 batch_size=8";
    void *a = NULL, *b = NULL, *c = NULL;
    CHECK_OK(create("upl", &task, hp, &a));
    CHECK_OK(create("upl", &task, hp, &b));
    CHECK_OK(create("upl", &task, hp, &c));
    if (!a || !b || !c) return;
    CHECK_OK(train(m, a, &task, tk, NULL));
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/rt", ct_test_tmpdir());
    mkdir(dir, 0777);
    CHECK_OK(ct_run_save_learned(m, a, dir));
    float sa[UREF_N * CREF_K], sb[UREF_N * CREF_K];
    CHECK_OK(ct_predict(m, a, &ref_unlabelled, sa));
    CHECK_OK(ct_predict(m, b, &ref_unlabelled, sb));
    CHECK_MSG(memcmp(sa, sb, sizeof sa), "training changed nothing");
    /* b is a state as `cliptune eval` makes it: no unlabelled data */
    ct_task bare = make_task();
    bare.unlabelled_feats = NULL;
    void *e = NULL;
    CHECK_OK(create("upl", &bare, hp, &e));
    if (e) {
        CHECK_OK(ct_run_load_learned(m, e, dir));
        CHECK_OK(ct_predict(m, e, &ref_unlabelled, sb));
        CHECK_MSG(!memcmp(sa, sb, sizeof sa), "logits after load differ from the trained state's");
        m->destroy(e);
    }
    /* another ensemble size is refused */
    void *d = NULL;
    CHECK_OK(create("upl", &task, "topk=8 ensemble=3 n_ctx=4", &d));
    if (d) {
        CHECK(ct_run_load_learned(m, d, dir) == CT_ERR_FORMAT);
        m->destroy(d);
    }
    /* resume */
    snprintf(dir, sizeof dir, "%s/resume", ct_test_tmpdir());
    mkdir(dir, 0777);
    ct_train_cfg o = {.run_dir = dir, .stop_after = 1};
    CHECK_OK(train(m, b, &task, tk, &o));
    o.stop_after = 0, o.resume = true;
    CHECK_OK(train(m, c, &task, tk, &o));
    CHECK_OK(ct_predict(m, c, &ref_unlabelled, sb));
    CHECK_MSG(!memcmp(sa, sb, sizeof sa), "a resumed run differs from an uninterrupted one");
    m->destroy(a), m->destroy(b), m->destroy(c);
}

/* ---- learning from pseudo-labels ---- */

static double accuracy(const ct_method *m, void *st, const ct_features *f, int K) {
    float *s = malloc((size_t)f->n * K * sizeof *s);
    int64_t ok = 0;
    CHECK_OK(ct_predict(m, st, f, s));
    for (int64_t i = 0; i < f->n; i++) ok += argmax(s + i * K, K) == f->labels[i];
    free(s);
    return (double)ok / (double)f->n;
}

/* Synthetic features where zero-shot is informative but not right: class k's
 * image features are centred on its text feature t_k (of "a photo of a
 * {name}.") moved by a fixed random offset of norm 0.4 of its own (image and
 * text embeddings of CLIP do not coincide), plus N(0, 0.1^2) per
 * dimension; 500 unlabelled, 1000 held-out. Zero-shot gets 71% of the
 * held-out samples; its 16 most confident per class are 94% right, and UPL
 * with its defaults (random generic context, 50 epochs) learns from them to
 * 86%. */
static void test_beats_zeroshot_synthetic(void) {
    if (!load_fixture()) return;
    enum { K = CREF_K, E = CREF_E, NPOOL = 500, NTEST = 1000 };
    ct_task task = make_task();
    float zs[K * E], shift[K * E];
    CHECK_OK(ct_prompt_zeroshot_text(&task, "a photo of a {}.", zs));
    ct_rng r;
    ct_rng_init(&r, 5);
    for (int k = 0; k < K; k++) {
        double nn = 0;
        for (int e = 0; e < E; e++) shift[k * E + e] = ct_rng_normal(&r);
        for (int e = 0; e < E; e++) nn += (double)shift[k * E + e] * shift[k * E + e];
        for (int e = 0; e < E; e++) shift[k * E + e] *= (float)(0.4 / sqrt(nn));
    }
    static float xp[NPOOL * E], xt[NTEST * E];
    static int yp[NPOOL], yt[NTEST];
    for (int i = 0; i < NPOOL + NTEST; i++) {
        float *x = i < NPOOL ? xp + i * E : xt + (i - NPOOL) * E;
        int y = i % K;
        *(i < NPOOL ? &yp[i] : &yt[i - NPOOL]) = y;
        for (int e = 0; e < E; e++)
            x[e] = zs[y * E + e] + shift[y * E + e] + 0.1f * ct_rng_normal(&r);
    }
    ct_features pool = {.n = NPOOL, .dim = E, .x = xp}, test = {.n = NTEST, .dim = E, .x = xt,
                                                                .labels = yt};
    task.unlabelled_feats = &pool;
    const ct_method *z = ct_method_find("zeroshot"), *m = ct_method_find("upl");
    void *zst = NULL, *st = NULL;
    CHECK_OK(create("zeroshot", &task, "", &zst));
    CHECK_OK(create("upl", &task, "", &st));
    if (!zst || !st) return;
    double azs = accuracy(z, zst, &test, K);
    CHECK_OK(train(m, st, &task, "", NULL));
    const ct_features *set = m->train_set(st);
    int64_t right = 0;
    for (int64_t j = 0; j < set->n; j++) {
        int64_t row = find_row(set->x + j * E, xp, NPOOL, E);
        right += row >= 0 && yp[row] == set->labels[j];
    }
    double apl = set->n ? (double)right / (double)set->n : 0;
    double aupl = accuracy(m, st, &test, K);
    printf("    synthetic, %d held-out: zero-shot %.1f%%; %lld pseudo-labels %.1f%% right; "
           "UPL %.1f%%\n", NTEST, 100 * azs, (long long)set->n, 100 * apl, 100 * aupl);
    CHECK(set->n == 16 * K);
    CHECK_MSG(apl > azs + 0.1, "pseudo-labels %.3f vs zero-shot %.3f", apl, azs);
    CHECK_MSG(aupl > azs + 0.08, "UPL %.3f vs zero-shot %.3f", aupl, azs);
    z->destroy(zst), m->destroy(st);
}

/* ---- Fashion-MNIST through ct_run ---- */

/* the pred column of a run's predictions.csv */
static int read_preds(const char *dir, int *pred, int n) {
    char path[4400];
    snprintf(path, sizeof path, "%s/predictions.csv", dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[1024];
    int i = 0;
    if (!fgets(line, sizeof line, f)) i = -1;
    while (i >= 0 && i < n && fgets(line, sizeof line, f)) {
        char *c = strchr(line, ','), *c2 = c ? strchr(c + 1, ',') : NULL;
        if (!c2) break;
        pred[i++] = atoi(c2 + 1);
    }
    fclose(f);
    return i;
}

/* The tiny model is random: zero-shot on Fashion-MNIST is at chance and
 * predicts almost only two classes, so its pseudo-labels are at chance too
 * and no amount of training on them can beat it (UPL learns what its
 * pseudo-labeller knows, nothing more). What this shows, through ct_run
 * (the path of `cliptune train --method upl`) on an unlabelled pool of the
 * first 3000 training images: the run sees the unlabelled split, keeps at
 * most 16 per class, and the learned prompt reproduces its pseudo-labeller
 * on held-out test images (agreement with zero-shot far above the untrained
 * prompt's) at zero-shot's accuracy. The synthetic test above is where
 * pseudo-labels carry information and UPL beats zero-shot. */
static void test_fashion_mnist(void) {
    if (!file_exists("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")) {
        ct_test_skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return;
    }
    const char *bpe = ct_test_clip_bpe();
    enum { POOL = 3000, NTEST = 2000 };
    char vocab[4096], cache[4200], dirs[3][4200];
    snprintf(vocab, sizeof vocab, "%s/vocab.json", bpe);
    snprintf(cache, sizeof cache, "%s/fm_cache", ct_test_tmpdir());
    mkdir(cache, 0777);
    ct_bundle bundle = {0};
    CHECK_OK(ct_bundle_load(TINY_DIR, vocab, NULL, true, &bundle));
    ct_splits full = {0};
    CHECK_OK(ct_data_open("fashion-mnist", &full));
    ct_dataset *pool = full.train ? ct_dataset_head(full.train, POOL) : NULL;
    if (!bundle.clip || !pool) {
        CHECK(false);
        ct_bundle_free(&bundle), ct_splits_free(&full), ct_dataset_free(pool);
        return;
    }
    ct_splits sp = {pool, full.val, full.test};
    const char *methods[3] = {"zeroshot", "upl", "upl"}, *sets[3] = {"", "epochs=0", ""};
    ct_run_result res[3] = {{0}};
    static int pred[3][NTEST];
    bool ok = true;
    for (int r = 0; r < 3 && ok; r++) {
        snprintf(dirs[r], sizeof dirs[r], "%s/fm_%s%d", ct_test_tmpdir(), methods[r], r);
        ct_run_cfg rc = {0};
        rc.model = ct_model_borrow(&bundle, TINY_DIR), rc.data = &sp;
        rc.data_spec = "fashion-mnist", rc.method = ct_method_find(methods[r]);
        rc.set = sets[r], rc.shots = 16, rc.seed = 1;
        rc.run_dir = dirs[r], rc.cache_dir = cache, rc.max_test = NTEST;
        ct_status s = ct_run(&rc, &res[r]);
        ct_model_free(rc.model);
        CHECK_OK(s);
        ok = s == CT_OK && read_preds(dirs[r], pred[r], NTEST) == NTEST;
        CHECK(ok);
    }
    if (!ok) {
        ct_dataset_free(pool), ct_bundle_free(&bundle), ct_splits_free(&full);
        return;
    }
    /* the unlabelled split was used */
    char path[4400], *log = NULL;
    size_t nlog = 0;
    snprintf(path, sizeof path, "%s/log.txt", dirs[2]);
    CHECK_OK(ct_read_file(path, &log, &nlog));
    CHECK(log && strstr(log, "features: unlabelled (train split), 3000 images"));
    free(log);
    /* unlabelled=N: a seeded random part of the pool; other methods refuse it */
    for (int r = 0; r < 2; r++) {
        char d2[4200];
        snprintf(d2, sizeof d2, "%s/fm_part%d", ct_test_tmpdir(), r);
        ct_run_cfg rc = {0};
        rc.model = ct_model_borrow(&bundle, TINY_DIR), rc.data = &sp;
        rc.data_spec = "fashion-mnist", rc.method = ct_method_find(r ? "zeroshot" : "upl");
        rc.set = "unlabelled=1000", rc.shots = 16, rc.seed = 1;
        rc.run_dir = d2, rc.cache_dir = cache, rc.max_test = 100;
        ct_run_result rr = {0};
        ct_status s = ct_run(&rc, &rr);
        ct_model_free(rc.model);
        if (r) {
            CHECK_MSG(s == CT_ERR_ARG && strstr(ct_last_error(), "unlabelled=1000"), "%s",
                      ct_last_error());
            continue;
        }
        CHECK_OK(s);
        snprintf(path, sizeof path, "%s/log.txt", d2);
        log = NULL;
        CHECK_OK(ct_read_file(path, &log, &nlog));
        CHECK_MSG(log && strstr(log, "features: unlabelled (part of the train split), 1000 "
                                     "images"), "%s", log ? log : "");
        free(log);
    }
    int agree[3] = {0};
    for (int r = 1; r < 3; r++)
        for (int i = 0; i < NTEST; i++) agree[r] += pred[r][i] == pred[0][i];
    /* the pseudo-labels of the run, again from the cached pool features */
    ct_features fp = {0};
    ct_feature_req req = {.clip = bundle.clip, .pre = &bundle.pre, .data = pool, .seed = 1,
                          .cache_dir = cache, .batch = 32};
    CHECK_OK(ct_features_get(&req, &fp));
    ct_features unl = fp;
    unl.labels = NULL;
    ct_task task = {.clip = bundle.clip, .tok = bundle.tok, .pre = &bundle.pre,
                    .dataset_name = pool->name, .n_classes = pool->n_classes,
                    .classnames = pool->classnames, .unlabelled = pool,
                    .unlabelled_feats = &unl, .seed = 1};
    const ct_method *m = ct_method_find("upl");
    void *st = NULL;
    CHECK_OK(create("upl", &task, "", &st));
    int64_t n_set = 0, right = 0, per[10] = {0};
    if (st && m->fit(st, &task) == CT_OK) {
        const ct_features *set = m->train_set(st);
        n_set = set->n;
        for (int64_t j = 0; j < set->n; j++) {
            int64_t row = find_row(set->x + j * fp.dim, fp.x, fp.n, fp.dim);
            right += row >= 0 && fp.labels[row] == set->labels[j];
            per[set->labels[j]]++;
        }
        for (int k = 0; k < 10; k++) CHECK(per[k] <= 16);
    }
    if (st) m->destroy(st);
    printf("    Fashion-MNIST, pool of %d unlabelled, first %d test images, tiny random CLIP: "
           "zero-shot %.2f%%; %lld pseudo-labels (per class %lld %lld %lld %lld %lld %lld %lld "
           "%lld %lld %lld), %.1f%% right; UPL untrained %.2f%% (agrees with zero-shot on %.1f%%), "
           "trained %.2f%% (agrees on %.1f%%)\n", POOL, NTEST, 100 * res[0].top1,
           (long long)n_set, (long long)per[0], (long long)per[1], (long long)per[2],
           (long long)per[3], (long long)per[4], (long long)per[5], (long long)per[6],
           (long long)per[7], (long long)per[8], (long long)per[9],
           n_set ? 100.0 * (double)right / (double)n_set : 0, 100 * res[1].top1,
           100.0 * agree[1] / NTEST, 100 * res[2].top1, 100.0 * agree[2] / NTEST);
    CHECK(n_set > 0);
    CHECK_MSG(agree[2] > agree[1] + NTEST / 4 && agree[2] > NTEST / 2,
              "agreement with zero-shot: trained %d, untrained %d of %d", agree[2], agree[1],
              NTEST);
    CHECK_MSG(fabs(res[2].top1 - res[0].top1) < 0.05, "UPL %.4f vs zero-shot %.4f", res[2].top1,
              res[0].top1);
    /* the run directory reloads as `cliptune eval` does: the same predictions */
    ct_features ft = {0};
    ct_dataset *th = ct_dataset_head(full.test, NTEST);
    ct_feature_req treq = req;
    treq.data = th;
    CHECK_OK(ct_features_get(&treq, &ft));
    task.unlabelled = NULL, task.unlabelled_feats = NULL;
    CHECK_OK(create("upl", &task, "", &st));
    if (st && ft.n == NTEST) {
        CHECK_OK(ct_run_load_learned(m, st, dirs[2]));
        float *s = malloc(sizeof(float) * NTEST * 10);
        CHECK_OK(ct_predict(m, st, &ft, s));
        int same = 0;
        for (int i = 0; i < NTEST; i++) same += argmax(s + i * 10, 10) == pred[2][i];
        CHECK_MSG(same == NTEST, "%d of %d reloaded predictions agree with the run's", same,
                  NTEST);
        free(s);
        m->destroy(st);
    }
    ct_features_free(&ft), ct_features_free(&fp);
    ct_dataset_free(th), ct_dataset_free(pool);
    ct_bundle_free(&bundle);
    ct_splits_free(&full);
}

int main(void) {
    RUN(test_hyper_parameters);
    RUN(test_selection_parity);
    RUN(test_ensemble_parity);
    RUN(test_single_member_is_coop);
    RUN(test_checkpoint_round_trip);
    RUN(test_beats_zeroshot_synthetic);
    RUN(test_fashion_mnist);
    ct_clip_free(g_clip);
    ct_tokenizer_free(g_tok);
    return ct_test_summary();
}
