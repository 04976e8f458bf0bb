/* MVLPT (src/methods/mvlpt.c) and the merged pixel datasets multi-task runs
 * of pixel methods train on (ct_dataset_merge): a merged dataset's items
 * decode to their parts' very images under shifted labels, and views of it
 * stay merged; MVLPT's logits over two tasks (all classes, and the code's
 * MULTITASK_LABEL_PERTASK product with a 0/1 mask), loss, gradients and
 * three SGD steps against tools/ref/gen_mvlpt_ref.py (float64 PyTorch);
 * on Fashion-MNIST + digits with the shipped model a short multi-task run
 * beats zero-shot on the mean, ct_mt_evaluate reproduces it, and its
 * prompts initialise a single-task target run (init_from). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "api/run.h"
#include "cliptune.h"
#include "data/dataset.h"
#include "data/png_write.h"
#include "harness.h"
#include "model/bundle.h"

#define MODEL CT_SOURCE_DIR "/models/cliptune-small"
#define REF CT_SOURCE_DIR "/tests/fixtures/methods/mvlpt_ref.safetensors"
#define NB 3

static ct_bundle g_b;
static ct_safetensors *g_ref;

static bool have_fmnist(void) {
    struct stat sb;
    if (stat("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", &sb) != 0) {
        ct_test_skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return false;
    }
    return true;
}

static bool setup(void) {
    if (g_b.clip) return true;
    CHECK_OK(ct_bundle_load(MODEL, NULL, NULL, true, &g_b));
    g_ref = ct_safetensors_open(REF);
    CHECK_MSG(g_ref, "%s", ct_last_error());
    return g_b.clip && g_ref;
}

/* ---- merged datasets ---- */

static bool same_image(const ct_dataset *a, int64_t i, const ct_dataset *b, int64_t j) {
    ct_image x = {0}, y = {0};
    bool same = ct_dataset_image(a, i, &x) == CT_OK && ct_dataset_image(b, j, &y) == CT_OK &&
                x.w == y.w && x.h == y.h && !memcmp(x.rgb, y.rgb, (size_t)x.w * x.h * 3);
    ct_image_free(&x), ct_image_free(&y);
    return same;
}

static void test_merged_dataset(void) {
    if (!have_fmnist() || !setup()) return;
    ct_splits fm = {0}, dg = {0};
    if (ct_data_open("digits", &dg) != CT_OK) {
        ct_test_skip(ct_last_error());
        return;
    }
    CHECK_OK(ct_data_open("fashion-mnist", &fm));
    ct_dataset *a = ct_dataset_head(fm.test, 7), *b = ct_dataset_fewshot(dg.train, 2, 5);
    const ct_dataset *parts[2] = {a, b};
    ct_dataset *m = ct_dataset_merge(parts, 2, NULL);
    CHECK_MSG(m, "%s", ct_last_error());
    if (!m) goto out;
    int K0 = a->n_classes;
    CHECK(m->n_classes == K0 + b->n_classes && m->n_items == a->n_items + b->n_items);
    CHECK(!strcmp(m->name, "fashion-mnist+digits"));
    CHECK(!strcmp(m->classnames[0], a->classnames[0]) &&
          !strcmp(m->classnames[K0], b->classnames[0]));
    /* labels shifted, pixels (of two stores of different sizes) the parts',
     * keys the parts' (feature caches are shared) */
    int S = ct_clip_get_config(g_b.clip)->image_size;
    size_t per = (size_t)3 * S * S;
    float *p1 = malloc(per * sizeof *p1), *p2 = malloc(per * sizeof *p2);
    for (int64_t i = 0; i < m->n_items; i++) {
        const ct_dataset *src = i < a->n_items ? a : b;
        int64_t j = i < a->n_items ? i : i - a->n_items;
        int off = i < a->n_items ? 0 : K0;
        CHECK(m->items[i].label == src->items[j].label + off);
        CHECK_MSG(same_image(m, i, src, j), "merged item %lld decodes to another image",
                  (long long)i);
        char k1[256], k2[256];
        CHECK(ct_dataset_item_key(m, i, k1, sizeof k1) && ct_dataset_item_key(src, j, k2, sizeof k2)
              && !strcmp(k1, k2));
        CHECK_OK(ct_dataset_pixels(m, &g_b.pre, S, i, 1, p1));
        CHECK_OK(ct_dataset_pixels(src, &g_b.pre, S, j, 1, p2));
        CHECK(!memcmp(p1, p2, per * sizeof *p1));
    }
    free(p1), free(p2);
    /* a few-shot view stays merged, and outlives the merged dataset */
    ct_dataset *v = ct_dataset_fewshot(m, 1, 3);
    CHECK(v && v->sources && v->n_items > b->n_classes && v->n_items <= m->n_classes);
    ct_dataset_free(m);
    m = NULL;
    for (int64_t i = 0; v && i < v->n_items; i++) {
        int y = v->items[i].label;
        const ct_dataset *src = y < K0 ? a : b;
        ct_image img = {0};
        CHECK_OK(ct_dataset_image(v, i, &img));
        ct_image_free(&img);
        CHECK(src == (v->item_source[i] ? b : a));
        CHECK(same_image(v, i, src, v->items[i].index));
    }
    ct_dataset_free(v);
    /* a file-backed part (a folder of PNGs, relative paths under its root)
     * mixes with in-memory ones */
    char root[4200], dir[4300], file[4400];
    snprintf(root, sizeof root, "%s/mvlpt_folder", ct_test_tmpdir());
    mkdir(root, 0777);
    uint8_t rgb[12 * 10 * 3];
    for (int c = 0; c < 2; c++) {
        snprintf(dir, sizeof dir, "%s/%s", root, c ? "tulip" : "rose");
        mkdir(dir, 0777);
        for (int k = 0; k < 2; k++) {
            for (size_t j = 0; j < sizeof rgb; j++) rgb[j] = (uint8_t)(j * 7 + 50 * c + 13 * k);
            snprintf(file, sizeof file, "%s/%d.png", dir, k);
            CHECK_OK(ct_png_write_rgb(file, rgb, 12, 10));
        }
    }
    char spec[4300];
    snprintf(spec, sizeof spec, "folder:%s", root);
    ct_splits fo = {0};
    CHECK_OK(ct_data_open(spec, &fo));
    CHECK(fo.train && fo.train->n_items >= 2);
    if (fo.train && fo.train->n_items) {
        const ct_dataset *mix[2] = {b, fo.train};
        ct_dataset *mf = ct_dataset_merge(mix, 2, "mixed");
        CHECK_MSG(mf, "%s", ct_last_error());
        for (int64_t i = 0; mf && i < fo.train->n_items; i++) {
            int64_t j = b->n_items + i;
            CHECK(mf->items[j].label == fo.train->items[i].label + b->n_classes);
            CHECK_MSG(same_image(mf, j, fo.train, i), "merged file item %lld differs",
                      (long long)i);
        }
        CHECK(mf && !strcmp(mf->name, "mixed"));
        ct_dataset_free(mf);
    }
    ct_splits_free(&fo);
    /* multi-label parts are refused */
    ct_dataset *ml = ct_dataset_head(a, 0);
    ml->targets = calloc((size_t)ml->n_items * (size_t)ml->n_classes, 1);
    const ct_dataset *bad[2] = {a, ml};
    CHECK(ct_dataset_merge(bad, 2, NULL) == NULL && strstr(ct_last_error(), "single-label"));
    ct_dataset_free(ml);
out:
    ct_dataset_free(m), ct_dataset_free(a), ct_dataset_free(b);
    ct_splits_free(&fm), ct_splits_free(&dg);
}

/* ---- parity ---- */

static float *ref(const char *name, size_t n) {
    const ct_st_tensor *t = ct_safetensors_find(g_ref, name);
    CHECK_MSG(t, "reference %s missing", name);
    if (!t) return NULL;
    float *v = malloc(n * sizeof *v);
    CHECK_OK(ct_st_to_real(t, v, n));
    return v;
}

static void compare(const char *what, const float *got, size_t n, const char *refname) {
    char sname[160];
    snprintf(sname, sizeof sname, "%s.stride", refname);
    size_t stride = 1;
    const ct_st_tensor *st = ct_safetensors_find(g_ref, sname);
    if (st) {
        float v;
        CHECK_OK(ct_st_to_real(st, &v, 1));
        stride = (size_t)v;
    }
    size_t m = (n + stride - 1) / stride;
    float *want = ref(refname, m), *sub = malloc(m * sizeof *sub);
    if (want && sub) {
        for (size_t i = 0; i < m; i++) sub[i] = got[i * stride];
        CHECK_CLOSE_F(what, sub, want, m, 1e-4, 1e-4);
    }
    free(want), free(sub);
}

static char *NAMES[5] = {"shirt", "ankle_boot", "bag", "zero", "one"};
static char *TASK_NAMES[2] = {"clothes", "digits"};
static int OFFSETS[3] = {0, 3, 5};
static const int LABELS[NB] = {2, 3, 1}, TASKS[NB] = {0, 1, 0};

static void parity(const char *set, const char *tag) {
    if (!setup()) return;
    const ct_method *m = ct_method_find("mvlpt");
    CHECK_MSG(m && m->pixels && m->multi_task, "mvlpt is not a multi-task pixel method");
    if (!m) return;
    ct_kv hp = {0};
    CHECK_OK(ct_kv_parse(&hp, m->defaults));
    CHECK_OK(ct_kv_parse(&hp, set));
    ct_task task = {.clip = g_b.clip, .tok = g_b.tok, .pre = &g_b.pre, .dataset_name = "parity",
                    .n_classes = 5, .classnames = NAMES, .seed = 1, .n_tasks = 2,
                    .task_names = TASK_NAMES, .task_offsets = OFFSETS};
    void *st = NULL;
    CHECK_OK(m->create(&task, &hp, &st));
    ct_train_cfg tc;
    CHECK_OK(ct_train_cfg_from_kv(&hp, &tc));
    CHECK_OK(ct_kv_check_used(&hp, "mvlpt"));
    if (!st) return;
    ct_tensor *p[64];
    int np = m->params(st, p, 64);
    CHECK(np == 26);
    for (int k = 0; k < np; k++)
        for (int64_t j = 0; j < p[k]->numel; j++)
            p[k]->data[j] = (float)(0.05 * sin(0.37 * (double)j + 1.3 * k));
    int S = ct_clip_get_config(g_b.clip)->image_size;
    size_t n = (size_t)3 * S * S;
    float *px = malloc(NB * n * sizeof *px);
    for (int b = 0; b < NB; b++)
        for (size_t i = 0; i < n; i++) px[b * n + i] = (float)(1.5 * sin(0.1 * (double)i + 0.7 * b));
    ct_batch b = {.n = NB, .labels = LABELS, .pixels = px, .tasks = TASKS};
    char name[96], what[128];
    ct_graph *g = ct_graph_create(0);
    ct_tensor *loss = m->loss(st, g, &b);
    CHECK_MSG(loss, "loss: %s", ct_last_error());
    if (loss) {
        CHECK_OK(ct_backward(g, loss));
        snprintf(name, sizeof name, "%s.loss", tag);
        compare(name, loss->data, 1, name);
        ct_graph *g2 = ct_graph_create(0);
        ct_graph_set_grad(g2, false);
        ct_tensor *lg = m->logits(st, g2, &b);
        snprintf(name, sizeof name, "%s.logits", tag);
        CHECK(lg && lg->numel == NB * 5);
        if (lg) compare(name, lg->data, (size_t)lg->numel, name);
        ct_graph_free(g2);
        for (int k = 0; k < np; k++) {
            snprintf(name, sizeof name, "%s.grad.%d", tag, k);
            snprintf(what, sizeof what, "%s d/d %s (%d)", tag, p[k]->name ? p[k]->name : "?", k);
            CHECK_MSG(p[k]->grad, "%s has no gradient", what);
            if (p[k]->grad) compare(what, p[k]->grad, (size_t)p[k]->numel, name);
        }
    }
    ct_optim_config oc = ct_optim_default(CT_OPTIM_SGD, 0.01f);
    oc.momentum = 0.9f, oc.weight_decay = 5e-4f;
    ct_optim *o = ct_optim_create(&oc, p, np);
    for (int step = 0; o && step < 3; step++) {
        ct_graph_reset(g);
        ct_optim_zero_grad(o);
        ct_tensor *l = m->loss(st, g, &b);
        if (!l || ct_backward(g, l) != CT_OK) break;
        CHECK_OK(ct_optim_step(o, 0.01f));
    }
    for (int k = 0; k < np; k++) {
        snprintf(name, sizeof name, "%s.after.%d", tag, k);
        snprintf(what, sizeof what, "%s after 3 steps: %s (%d)", tag,
                 p[k]->name ? p[k]->name : "?", k);
        compare(what, p[k]->data, (size_t)p[k]->numel, name);
    }
    /* an item's task outside the run's is an error, not a read past the offsets */
    int badt[NB] = {0, 2, 0};
    ct_batch bb = b;
    bb.tasks = badt;
    ct_graph_reset(g);
    if (strstr(set, "label_pertask=1")) CHECK(m->logits(st, g, &bb) == NULL);
    ct_optim_free(o);
    ct_graph_free(g);
    free(px);
    m->destroy(st);
    ct_kv_free(&hp);
}

static void test_parity_all_classes(void) { parity("n_ctx=2", "mvlpt"); }
static void test_parity_label_pertask(void) { parity("n_ctx=2 label_pertask=1", "mvlpt_pt"); }

static void test_hyper_parameters(void) {
    if (!setup()) return;
    const ct_method *m = ct_method_find("mvlpt");
    ct_task task = {.clip = g_b.clip, .tok = g_b.tok, .pre = &g_b.pre, .dataset_name = "hp",
                    .n_classes = 5, .classnames = NAMES, .seed = 1};
    const char *bad[] = {"label_pertask=2", "init_from=/nonexistent/run"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ct_kv hp = {0};
        CHECK_OK(ct_kv_parse(&hp, m->defaults));
        CHECK_OK(ct_kv_parse(&hp, bad[i]));
        void *st = NULL;
        CHECK_MSG(m->create(&task, &hp, &st) != CT_OK, "%s accepted", bad[i]);
        if (st) m->destroy(st);
        ct_kv_free(&hp);
    }
}

/* ---- the shipped model ---- */

static double seconds(const struct timespec *a) {
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a->tv_sec) + 1e-9 * (double)(b.tv_nsec - a->tv_nsec);
}

#define SHOTS 4
#define MAX_TEST 200
/* a short schedule; no augmentation (digits are 8x8: Dassl's random
 * resized crop down to 8% of that leaves nothing to learn from in a few
 * epochs) */
#define MT_SET "epochs=10 lr=0.01 train_aug=none"
#define TARGET_SET "epochs=3 warmup_epochs=0 lr=0.005 train_aug=none"

static void test_learns_multitask(void) {
    if (!have_fmnist() || !setup()) return;
    ct_splits fm = {0}, dg = {0};
    if (ct_data_open("digits", &dg) != CT_OK) {
        ct_test_skip(ct_last_error());
        return;
    }
    CHECK_OK(ct_data_open("fashion-mnist", &fm));
    ct_model *model = ct_model_borrow(&g_b, MODEL);
    const ct_splits *data[2] = {&fm, &dg};
    const char *specs[2] = {"fashion-mnist", "digits"};
    char cache[4200], dirs[2][4200];
    snprintf(cache, sizeof cache, "%s/mvlpt_cache", ct_test_tmpdir());
    const char *methods[2] = {"zeroshot", "mvlpt"};
    const char *sets[2] = {"", MT_SET};
    ct_mt_run_result res[2] = {{0}};
    for (int r = 0; r < 2; r++) {
        snprintf(dirs[r], sizeof dirs[r], "%s/mvlpt_mt_%s", ct_test_tmpdir(), methods[r]);
        ct_mt_run_cfg c = ct_mt_run_cfg_default();
        c.model = model, c.n_tasks = 2, c.data = data, c.data_specs = specs;
        c.method = ct_method_find(methods[r]), c.set = sets[r], c.shots = SHOTS, c.seed = 1;
        c.run_dir = dirs[r], c.cache_dir = cache, c.max_test = MAX_TEST;
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        CHECK_OK(ct_mt_run(&c, &res[r]));
        printf("    %s: fashion-mnist %.2f%% digits %.2f%% mean %.2f%% (%.1f s)\n", methods[r],
               100 * res[r].top1[0], 100 * res[r].top1[1], 100 * res[r].mean_top1, seconds(&t0));
    }
    CHECK_MSG(res[1].mean_top1 > res[0].mean_top1 + 0.02, "MVLPT mean %.4f vs zero-shot %.4f",
              res[1].mean_top1, res[0].mean_top1);
    /* the saved run evaluates to the same numbers */
    ct_mt_run_result ev = {0};
    char out[4300];
    snprintf(out, sizeof out, "%s/eval", dirs[1]);
    CHECK(ct_run_is_multitask(dirs[1]));
    CHECK_OK(ct_mt_evaluate(dirs[1], model, cache, out, &ev));
    CHECK_MSG(ev.n_tasks == 2 && ev.top1[0] == res[1].top1[0] && ev.top1[1] == res[1].top1[1],
              "evaluated again: %.4f %.4f vs %.4f %.4f", ev.top1[0], ev.top1[1], res[1].top1[0],
              res[1].top1[1]);

    /* target stage: a state created with init_from holds the source run's
     * prompts, whatever the target's classes */
    const ct_method *m = ct_method_find("mvlpt");
    char set[4400];
    snprintf(set, sizeof set, "init_from=%s", dirs[1]);
    ct_task task = {.clip = g_b.clip, .tok = g_b.tok, .pre = &g_b.pre, .dataset_name = "digits",
                    .n_classes = dg.train->n_classes, .classnames = dg.train->classnames,
                    .seed = 7};
    ct_kv h1 = {0}, h2 = {0};
    CHECK_OK(ct_kv_parse(&h1, m->defaults));
    CHECK_OK(ct_kv_parse(&h1, set));
    CHECK_OK(ct_kv_parse(&h2, m->defaults));
    void *s1 = NULL, *s2 = NULL;
    CHECK_OK(m->create(&task, &h1, &s1));
    CHECK_OK(m->create(&task, &h2, &s2));
    if (s1 && s2) {
        ct_tensor *p1[64], *p2[64];
        int n1 = m->params(s1, p1, 64), n2 = m->params(s2, p2, 64);
        bool differ = false;
        for (int k = 0; k < n2; k++)
            differ = differ || memcmp(p1[k]->data, p2[k]->data, p2[k]->numel * sizeof(float));
        CHECK_MSG(differ, "init_from changed nothing");
        CHECK_OK(ct_run_load_learned(m, s2, dirs[1]));
        CHECK(n1 == n2);
        for (int k = 0; k < n1 && k < n2; k++)
            CHECK_MSG(!memcmp(p1[k]->data, p2[k]->data, p1[k]->numel * sizeof(float)),
                      "init_from: tensor %d is not the source run's", k);
    }
    if (s1) m->destroy(s1);
    if (s2) m->destroy(s2);
    ct_kv_free(&h1), ct_kv_free(&h2);

    /* a short target run on digits from the source prompts, and one from
     * scratch (reported: digits is one of the source tasks here, so this
     * shows the initialisation at work, not the paper's transfer result) */
    double t1[2] = {0};
    for (int r = 0; r < 2; r++) {
        char dir[4300], tset[4600];
        snprintf(dir, sizeof dir, "%s/mvlpt_target_%d", ct_test_tmpdir(), r);
        snprintf(tset, sizeof tset, "%s %s", TARGET_SET, r ? "" : set);
        ct_run_cfg rc = {0};
        rc.model = model, rc.data = &dg, rc.data_spec = "digits", rc.method = m;
        rc.set = tset, rc.shots = SHOTS, rc.seed = 1;
        rc.run_dir = dir, rc.max_test = MAX_TEST, rc.cache_dir = cache;
        ct_run_result rr = {0};
        CHECK_OK(ct_run(&rc, &rr));
        t1[r] = rr.top1;
    }
    printf("    target digits, %d shots, %s: from the MVLPT source run %.2f%%, from scratch "
           "%.2f%% (zero-shot %.2f%%)\n", SHOTS, TARGET_SET, 100 * t1[0], 100 * t1[1],
           100 * res[0].top1[1]);
    ct_model_free(model);
    ct_splits_free(&fm), ct_splits_free(&dg);
}

/* test_mvlpt: the quick checks; test_mvlpt learns: the training runs (a
 * ctest entry of their own, test_mvlpt_learns) */
int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "learns")) {
        RUN(test_learns_multitask);
    } else {
        RUN(test_merged_dataset);
        RUN(test_hyper_parameters);
        RUN(test_parity_all_classes);
        RUN(test_parity_label_pertask);
    }
    ct_bundle_free(&g_b);
    if (g_ref) ct_safetensors_close(g_ref);
    return ct_test_summary();
}
