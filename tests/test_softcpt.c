/* SoftCPT (src/methods/softcpt.c) and multi-task runs (src/api/mtrun.c):
 * parity with an independent float64 PyTorch computation of mtcoop.py's
 * math (tools/ref/gen_softcpt_ref.py -> fixtures/methods/softcpt_ref.h) for
 * a shared and a task-specific task context, three SGD steps, the
 * learned-tensor round trip, the hyper-parameter errors, and a multi-task
 * run of the shipped model on Fashion-MNIST + digits that beats zero-shot
 * and that ct_mt_evaluate reproduces from the run directory. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cliptune.h"
#include "fixtures/methods/softcpt_ref.h"
#include "harness.h"
#include "method_fixture.h"

static ct_task make_task(void) {
    ct_task t = {0};
    t.clip = g_clip, t.tok = g_tok, t.n_classes = SREF_K;
    t.classnames = (char *const *)sref_classnames;
    t.dataset_name = "test", t.seed = 1;
    t.n_tasks = SREF_T, t.task_names = (char *const *)sref_tasks, t.task_offsets = sref_offsets;
    return t;
}

static ct_status create(const ct_task *task, const char *hp_text, void **state) {
    const ct_method *m = ct_method_find("softcpt");
    ct_kv hp = {0};
    ct_status s = m ? ct_kv_parse(&hp, hp_text) : CT_ERR_ARG;
    if (s == CT_OK) s = m->create(task, &hp, state);
    if (s == CT_OK && (s = ct_kv_check_used(&hp, "softcpt")) != CT_OK) {
        m->destroy(*state);
        *state = NULL;
    }
    ct_kv_free(&hp);
    return s;
}

static void set_values(ct_tensor *t, const double *v) {
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = (float)v[i];
}

static const ct_batch ref_batch = {.n = SREF_B, .x = sref_img, .labels = sref_labels};

typedef struct {
    const char *name, *hp;
    const double *tctx, *proj, *logits, *loss, *g_tctx, *g_proj;
    size_t n_tctx, n_proj;
} ref_case;

#define CASE(n)                                                                               \
    {#n, sref_##n##_hp, sref_##n##_tctx, sref_##n##_proj, sref_##n##_logits, &sref_##n##_loss, \
     sref_##n##_grad_tctx, sref_##n##_grad_proj, sizeof sref_##n##_tctx / sizeof(double),      \
     sizeof sref_##n##_proj / sizeof(double)}
static const ref_case CASES[] = {CASE(shared), CASE(task_csc)};

/* params() of a state: the task context and proj, with the reference's sizes */
static bool params_of(void *st, const ref_case *rc, ct_tensor **p) {
    int n = ct_method_find("softcpt")->params(st, p, 4);
    CHECK(n == 2);
    if (n != 2) return false;
    CHECK_MSG((size_t)p[0]->numel == rc->n_tctx && (size_t)p[1]->numel == rc->n_proj,
              "%s: %lld / %lld values, reference %zu / %zu", rc->name, (long long)p[0]->numel,
              (long long)p[1]->numel, rc->n_tctx, rc->n_proj);
    return (size_t)p[0]->numel == rc->n_tctx && (size_t)p[1]->numel == rc->n_proj;
}

static void test_parity(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("softcpt");
    ct_task task = make_task();
    ct_graph *g = ct_graph_create(0);
    /* the trainer's per-item tasks, as ct_train sets them */
    int tasks[SREF_B];
    for (int i = 0; i < SREF_B; i++) tasks[i] = sref_labels[i] >= sref_offsets[1];
    for (size_t c = 0; c < sizeof CASES / sizeof *CASES; c++) {
        const ref_case *rc = &CASES[c];
        void *st = NULL;
        CHECK_OK(create(&task, rc->hp, &st));
        ct_tensor *p[4];
        if (!st || !params_of(st, rc, p)) {
            if (st) m->destroy(st);
            continue;
        }
        set_values(p[0], rc->tctx), set_values(p[1], rc->proj);
        for (int with_tasks = 0; with_tasks < 2; with_tasks++) {
            ct_batch b = ref_batch;
            b.tasks = with_tasks ? tasks : NULL;
            ct_tensor_zero_grad(p[0]), ct_tensor_zero_grad(p[1]);
            ct_graph_reset(g);
            ct_tensor *loss = m->loss(st, g, &b);
            CHECK_MSG(loss, "%s: %s", rc->name, ct_last_error());
            if (!loss) break;
            CHECK_OK(ct_backward(g, loss));
            char what[128];
            snprintf(what, sizeof what, "%s loss", rc->name);
            double dl = compare(what, loss->data, rc->loss, 1, 1e-4, 1e-4);
            snprintf(what, sizeof what, "%s d loss / d task ctx", rc->name);
            double dt = compare(what, p[0]->grad, rc->g_tctx, rc->n_tctx, 1e-4, 1e-3);
            snprintf(what, sizeof what, "%s d loss / d proj", rc->name);
            double dp = compare(what, p[1]->grad, rc->g_proj, rc->n_proj, 1e-4, 1e-3);
            if (with_tasks) continue;
            ct_graph_reset(g);
            ct_tensor *lg = m->logits(st, g, &ref_batch);
            snprintf(what, sizeof what, "%s logits", rc->name);
            double dg = lg ? compare(what, lg->data, rc->logits, SREF_B * SREF_K, 1e-4, 1e-4) : 1;
            /* the evaluation cache gives the same logits */
            float first[SREF_B * SREF_K];
            if (lg) memcpy(first, lg->data, sizeof first);
            ct_graph_reset(g);
            ct_graph_set_grad(g, false);
            ct_tensor *l2 = m->logits(st, g, &ref_batch);
            CHECK_MSG(lg && l2 && !memcmp(l2->data, first, sizeof first),
                      "%s: cached logits differ", rc->name);
            ct_graph_set_grad(g, true);
            printf("    %-9s max |d| loss %.2g  grad ctx %.2g  proj %.2g  logits %.2g\n",
                   rc->name, dl, dt, dp, dg);
        }
        m->destroy(st);
    }
    ct_graph_free(g);
}

static void test_sgd_steps(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("softcpt");
    ct_task task = make_task();
    void *st = NULL;
    CHECK_OK(create(&task, sref_shared_hp, &st));
    ct_tensor *p[4];
    if (!st || !params_of(st, &CASES[0], p)) {
        if (st) m->destroy(st);
        return;
    }
    set_values(p[0], sref_shared_tctx), set_values(p[1], sref_shared_proj);
    /* MTCoOp/vit_b16_ep50.yaml through Dassl's build_optimizer */
    ct_optim_config oc = ct_optim_default(CT_OPTIM_SGD, 0.002f);
    oc.momentum = 0.9f, oc.weight_decay = 5e-4f;
    ct_optim *opt = ct_optim_create(&oc, p, 2);
    ct_graph *g = ct_graph_create(0);
    double mx = 0;
    for (int s = 0; s < 3 && opt; s++) {
        ct_graph_reset(g);
        ct_optim_zero_grad(opt);
        ct_tensor *loss = m->loss(st, g, &ref_batch);
        if (!loss) break;
        CHECK_OK(ct_backward(g, loss));
        char what[64];
        snprintf(what, sizeof what, "loss before step %d", s + 1);
        double d = compare(what, loss->data, &sref_shared_sgd_losses[s], 1, 1e-4, 1e-4);
        mx = d > mx ? d : mx;
        CHECK_OK(ct_optim_step(opt, 0.002f));
    }
    double dt = compare("task ctx after 3 steps", p[0]->data, sref_shared_sgd_tctx,
                        (size_t)p[0]->numel, 1e-5, 1e-4);
    double dp = compare("proj after 3 steps", p[1]->data, sref_shared_sgd_proj,
                        (size_t)p[1]->numel, 1e-5, 1e-4);
    double moved = 0;
    for (int64_t i = 0; i < p[1]->numel; i++) {
        double d = fabs(sref_shared_sgd_proj[i] - sref_shared_proj[i]);
        moved = d > moved ? d : moved;
    }
    CHECK_MSG(moved > 1e-4, "proj moved only %g", moved);
    printf("    max |d| losses %.2g  task ctx %.2g  proj %.2g (largest move %.3g)\n", mx, dt, dp,
           moved);
    ct_graph_free(g);
    ct_optim_free(opt);
    m->destroy(st);
}

/* Learned tensors saved and loaded into a fresh state give the same scores. */
static void test_round_trip(void) {
    if (!load_fixture()) return;
    const ct_method *m = ct_method_find("softcpt");
    ct_task task = make_task();
    void *a = NULL, *b = NULL;
    CHECK_OK(create(&task, sref_shared_hp, &a));
    CHECK_OK(create(&task, sref_shared_hp, &b));
    if (!a || !b) goto out;
    ct_tensor *p[4];
    if (!params_of(a, &CASES[0], p)) goto out;
    set_values(p[0], sref_shared_tctx), set_values(p[1], sref_shared_proj);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/softcpt_round_trip", ct_test_tmpdir());
    mkdir(dir, 0777);
    CHECK_OK(ct_run_save_learned(m, a, dir));
    CHECK_OK(ct_run_load_learned(m, b, dir));
    ct_graph *g = ct_graph_create(0);
    ct_graph_set_grad(g, false);
    ct_tensor *la = m->logits(a, g, &ref_batch);
    float fa[SREF_B * SREF_K];
    if (la) memcpy(fa, la->data, sizeof fa);
    ct_tensor *lb = m->logits(b, g, &ref_batch);
    CHECK_MSG(la && lb && !memcmp(fa, lb->data, sizeof fa), "reloaded scores differ");
    ct_graph_free(g);
out:
    if (a) m->destroy(a);
    if (b) m->destroy(b);
}

static void test_hyper_parameters(void) {
    if (!load_fixture()) return;
    ct_task task = make_task();
    void *st = NULL;
    const char *bad[] = {"csc=1", "pg_type=linmean", "cls_sample_rate=0.1", "task_csc=2",
                         "bogus=1", "n_ctx=0"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ct_status s = create(&task, bad[i], &st);
        CHECK_MSG(s != CT_OK, "%s accepted", bad[i]);
        if (s == CT_OK) ct_method_find("softcpt")->destroy(st), st = NULL;
    }
    /* one task (ct_run's single-task path): all classes, named after the dataset */
    ct_task one = task;
    one.n_tasks = 0, one.task_names = NULL, one.task_offsets = NULL;
    CHECK_OK(create(&one, "", &st));
    if (st) ct_method_find("softcpt")->destroy(st);
}

/* The shipped model on Fashion-MNIST + digits, 4 shots per class: SoftCPT
 * beats zero-shot on the mean over the two tasks; the saved run evaluates
 * to the same numbers. */
static void test_learns_multitask(void) {
    if (!file_exists("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")) {
        ct_test_skip("Fashion-MNIST not installed");
        return;
    }
    ct_splits fm = {0}, dg = {0};
    if (ct_data_open("digits", &dg) != CT_OK) {
        ct_test_skip(ct_last_error());
        return;
    }
    CHECK_OK(ct_data_open("fashion-mnist", &fm));
    ct_model *model = ct_model_load(SHIPPED_DIR, NULL, false);
    CHECK_MSG(model, "%s", ct_last_error());
    if (!model || !fm.test) goto out;
    const ct_splits *data[2] = {&fm, &dg};
    const char *specs[2] = {"fashion-mnist", "digits"};
    char cache[4200], dirs[2][4200];
    snprintf(cache, sizeof cache, "%s/mt_cache", ct_test_tmpdir());
    const char *methods[2] = {"zeroshot", "softcpt"};
    const char *sets[2] = {"", "epochs=20 aug_views=0 lr=0.01"};
    ct_mt_run_result res[2] = {{0}};
    for (int r = 0; r < 2; r++) {
        snprintf(dirs[r], sizeof dirs[r], "%s/mt_%s", ct_test_tmpdir(), methods[r]);
        ct_mt_run_cfg c = ct_mt_run_cfg_default();
        c.model = model, c.n_tasks = 2, c.data = data, c.data_specs = specs;
        c.method = ct_method_find(methods[r]), c.set = sets[r], c.shots = 4, c.seed = 1;
        c.run_dir = dirs[r], c.cache_dir = cache, c.max_test = 500;
        CHECK_OK(ct_mt_run(&c, &res[r]));
    }
    printf("    shipped model, 4 shots, first 500 test images per task: zero-shot "
           "fashion-mnist %.2f%% digits %.2f%% mean %.2f%%; SoftCPT %.2f%% %.2f%% mean %.2f%%\n",
           100 * res[0].top1[0], 100 * res[0].top1[1], 100 * res[0].mean_top1,
           100 * res[1].top1[0], 100 * res[1].top1[1], 100 * res[1].mean_top1);
    CHECK_MSG(res[1].mean_top1 > res[0].mean_top1 + 0.02, "SoftCPT mean %.4f vs zero-shot %.4f",
              res[1].mean_top1, res[0].mean_top1);
    CHECK(ct_run_is_multitask(dirs[1]));
    ct_mt_run_result ev = {0};
    char out[4300];
    snprintf(out, sizeof out, "%s/eval", dirs[1]);
    CHECK_OK(ct_mt_evaluate(dirs[1], model, cache, out, &ev));
    CHECK_MSG(ev.n_tasks == 2 && ev.top1[0] == res[1].top1[0] && ev.top1[1] == res[1].top1[1],
              "evaluated again: %.4f %.4f vs %.4f %.4f", ev.top1[0], ev.top1[1], res[1].top1[0],
              res[1].top1[1]);
    /* resuming the finished run trains nothing more and gives the same numbers */
    ct_mt_run_result again = {0};
    ct_mt_run_cfg rc = ct_mt_run_cfg_default();
    rc.model = model, rc.n_tasks = 2, rc.data = data, rc.data_specs = specs;
    rc.method = ct_method_find("softcpt"), rc.set = sets[1], rc.shots = 4, rc.seed = 1;
    rc.run_dir = dirs[1], rc.cache_dir = cache, rc.max_test = 500, rc.resume = true;
    CHECK_OK(ct_mt_run(&rc, &again));
    CHECK_MSG(again.mean_top1 == res[1].mean_top1, "resumed: %.4f vs %.4f", again.mean_top1,
              res[1].mean_top1);
    /* malformed records are errors naming config.json */
    const char *bad[] = {"{\"multi_task\": true, \"method\": \"softcpt\"}",
                         "{\"multi_task\": true, \"method\": \"nope\", \"model\": \"m\", "
                         "\"shots\": 1, \"seed\": 1, \"max_test\": 0, \"tasks\": [{}], "
                         "\"hyper_parameters\": {}}",
                         "{\"multi_task\": true, \"method\": \"softcpt\", \"model\": \"m\", "
                         "\"shots\": 1, \"seed\": 1, \"max_test\": 0, \"tasks\": [{\"data\": "
                         "\"digits\", \"classnames\": [\"a\"]}], \"hyper_parameters\": {}}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char bd[4300], path[4400];
        snprintf(bd, sizeof bd, "%s/mt_bad%zu", ct_test_tmpdir(), i);
        mkdir(bd, 0777);
        snprintf(path, sizeof path, "%s/config.json", bd);
        FILE *f = fopen(path, "w");
        if (f) fputs(bad[i], f), fclose(f);
        ct_status s = ct_mt_evaluate(bd, model, NULL, NULL, &ev);
        CHECK_MSG(s != CT_OK && strstr(ct_last_error(), "config.json"), "bad config %zu: %s", i,
                  ct_last_error());
    }
    /* a single-task method that trains is refused */
    ct_mt_run_cfg c = ct_mt_run_cfg_default();
    c.model = model, c.n_tasks = 2, c.data = data, c.method = ct_method_find("coop");
    CHECK(ct_mt_run(&c, &res[0]) == CT_ERR_UNSUPPORTED);
out:
    ct_model_free(model);
    ct_splits_free(&fm), ct_splits_free(&dg);
}

int main(void) {
    RUN(test_hyper_parameters);
    RUN(test_parity);
    RUN(test_sgd_steps);
    RUN(test_round_trip);
    RUN(test_learns_multitask);
    ct_clip_free(g_clip);
    ct_tokenizer_free(g_tok);
    return ct_test_summary();
}
