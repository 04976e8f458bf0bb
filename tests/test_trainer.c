/* The generic trainer with a test-only method (a softmax-regression head on
 * features): training reduces the loss; a run trained in chunks with resume
 * equals an uninterrupted run bit for bit (parameters and optimiser state);
 * resume refuses other hyper-parameters; best-val selection; and the
 * key=value hyper-parameter parser. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cliptune.h"
#include "harness.h"

enum { D = 8, K = 3, N = 96, NV = 30 };

typedef struct {
    ct_tensor *W, *b;
} head;

static ct_status h_create(const ct_task *task, const ct_kv *hp, void **out) {
    head *h = calloc(1, sizeof *h);
    h->W = ct_tensor_new2(K, D, true);
    int64_t k = K;
    h->b = ct_tensor_new(1, &k, true);
    h->W->name = "head.W", h->b->name = "head.b";
    ct_rng r;
    ct_rng_init(&r, 9);
    ct_rng_fill_normal(&r, h->W->data, K * D, 0, 0.01f);
    *out = h;
    return CT_OK;
}
static void h_destroy(void *s) {
    head *h = s;
    ct_tensor_free(h->W), ct_tensor_free(h->b), free(h);
}
static int h_params(void *s, ct_tensor **out, int cap) {
    head *h = s;
    out[0] = h->W, out[1] = h->b;
    return 2;
}
static ct_tensor *h_logits(void *s, ct_graph *g, const ct_batch *b) {
    head *h = s;
    int64_t shape[2] = {b->n, D};
    return ct_linear(g, ct_graph_wrap(g, (ct_real *)b->x, 2, shape), h->W, h->b);
}
static ct_tensor *h_loss(void *s, ct_graph *g, const ct_batch *b) {
    int64_t *lab = ct_graph_alloc(g, (size_t)b->n * sizeof *lab);
    for (int64_t i = 0; i < b->n; i++) lab[i] = b->labels[i];
    return ct_cross_entropy(g, h_logits(s, g, b), lab, 0);
}
static const ct_method HEAD = {.name = "test-head", .category = "test", .setup = "test",
                               .paper = "-", .defaults = "", .create = h_create,
                               .destroy = h_destroy, .params = h_params, .loss = h_loss,
                               .logits = h_logits};

/* Three Gaussian blobs in D dims. */
static void make_feats(ct_features *f, int64_t n, uint64_t seed) {
    *f = (ct_features){.n = n, .dim = D};
    f->x = malloc((size_t)n * D * sizeof(float));
    f->labels = malloc((size_t)n * sizeof(int));
    ct_rng r;
    ct_rng_init(&r, seed);
    for (int64_t i = 0; i < n; i++) {
        f->labels[i] = (int)(i % K);
        for (int d = 0; d < D; d++)
            f->x[i * D + d] = ct_rng_normal(&r) + (d == f->labels[i] ? 2.0f : 0.0f);
    }
}

static char *names[K] = {"a", "b", "c"};

static bool mkdir_p_ok(const char *d) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", d);
    return system(cmd) == 0;
}

/* A run of HEAD on blobs drawn from data_seed, trained with seed. */
static double run_ex(const char *hp_text, const char *dir, bool resume, int stop_after,
                     float *W_out, ct_status *st, uint64_t seed, uint64_t data_seed) {
    ct_features tr = {0}, va = {0};
    make_feats(&tr, N, data_seed);
    make_feats(&va, NV, 2);
    ct_task task = {.n_classes = K, .classnames = names, .train_feats = &tr, .val_feats = &va,
                    .seed = seed};
    ct_kv hp = {0};
    CHECK_OK(ct_kv_parse(&hp, hp_text));
    ct_train_cfg cfg;
    CHECK_OK(ct_train_cfg_from_kv(&hp, &cfg));
    cfg.seed = seed, cfg.run_dir = dir, cfg.resume = resume, cfg.stop_after = stop_after;
    void *state;
    HEAD.create(&task, &hp, &state);
    *st = ct_train(&HEAD, state, &task, &cfg, &hp);
    head *h = state;
    memcpy(W_out, h->W->data, K * D * sizeof(float));
    /* val accuracy of the final parameters */
    float sc[NV * K];
    CHECK_OK(ct_predict(&HEAD, state, &va, sc));
    int ok = 0;
    for (int i = 0; i < NV; i++) {
        int best = 0;
        for (int k = 1; k < K; k++)
            if (sc[i * K + k] > sc[i * K + best]) best = k;
        ok += best == va.labels[i];
    }
    HEAD.destroy(state);
    ct_kv_free(&hp);
    free(tr.x), free(tr.labels), free(va.x), free(va.labels);
    return (double)ok / NV;
}

static double run(const char *hp_text, const char *dir, bool resume, int stop_after,
                  float *W_out, ct_status *st) {
    return run_ex(hp_text, dir, resume, stop_after, W_out, st, 3, 1);
}

static const char *HP = "epochs=6 batch_size=16 lr=0.05 momentum=0.9 weight_decay=5e-4 "
                        "sched=cosine warmup_epochs=1 warmup_lr=1e-3";

static void test_learns(void) {
    float W[K * D];
    ct_status st;
    double acc = run(HP, NULL, false, 0, W, &st);
    CHECK_OK(st);
    CHECK_MSG(acc > 0.8, "val accuracy %.2f after training", acc);
}

static void test_resume_equals_uninterrupted(void) {
    char d1[4096], d2[4096];
    snprintf(d1, sizeof d1, "%s/full", ct_test_tmpdir());
    snprintf(d2, sizeof d2, "%s/chunks", ct_test_tmpdir());
    CHECK(mkdir_p_ok(d1) && mkdir_p_ok(d2));
    float Wa[K * D], Wb[K * D];
    ct_status st;
    run(HP, d1, false, 0, Wa, &st);
    CHECK_OK(st);
    run(HP, d2, false, 2, Wb, &st); /* epochs 1-2, then "interrupted" */
    CHECK_OK(st);
    CHECK(memcmp(Wa, Wb, sizeof Wa) != 0);
    run(HP, d2, true, 4, Wb, &st); /* epochs 3-4 */
    CHECK_OK(st);
    run(HP, d2, true, 0, Wb, &st); /* 5-6 */
    CHECK_OK(st);
    CHECK_MSG(memcmp(Wa, Wb, sizeof Wa) == 0, "resumed run differs from the uninterrupted one");
    /* resuming with other hyper-parameters is refused */
    char other[512];
    snprintf(other, sizeof other, "%s lr=0.1", HP);
    run(other, d2, true, 0, Wb, &st);
    CHECK(st == CT_ERR_STATE && strstr(ct_last_error(), "hyper-parameters"));
    /* the checkpoint files are there, and no temp files */
    char p[4200];
    snprintf(p, sizeof p, "%s/checkpoint.safetensors", d1);
    ct_safetensors *sf = ct_safetensors_open(p);
    CHECK(sf && ct_safetensors_find(sf, "param.0") && ct_safetensors_find(sf, "optim.buf1"));
    ct_safetensors_close(sf);
}

/* Resume continues only the same run: another seed, other data or other
 * hyper-parameters are refused naming the difference, and nothing is
 * trained or written then. */
static void test_resume_verifies_the_run(void) {
    char d[4096], path[4200];
    snprintf(d, sizeof d, "%s/verify", ct_test_tmpdir());
    CHECK(mkdir_p_ok(d));
    float W[K * D];
    ct_status st;
    run(HP, d, false, 2, W, &st);
    CHECK_OK(st);
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", d);
    char *before = NULL, *after = NULL;
    size_t nb = 0, na = 0;
    CHECK_OK(ct_read_file(path, &before, &nb));
    run_ex(HP, d, true, 0, W, &st, 4, 1); /* another seed */
    CHECK_MSG(st == CT_ERR_STATE && strstr(ct_last_error(), "seed 3") &&
                  strstr(ct_last_error(), "seed 4"), "%s", ct_last_error());
    run_ex(HP, d, true, 0, W, &st, 3, 7); /* other training data */
    CHECK_MSG(st == CT_ERR_STATE && strstr(ct_last_error(), "other data"), "%s",
              ct_last_error());
    char other[512];
    snprintf(other, sizeof other, "%s max_grad_norm=1", HP); /* a key more */
    run(other, d, true, 0, W, &st);
    CHECK_MSG(st == CT_ERR_STATE && strstr(ct_last_error(), "max_grad_norm=1"), "%s",
              ct_last_error());
    run("epochs=8 batch_size=16 lr=0.05 momentum=0.9 weight_decay=5e-4 sched=cosine "
        "warmup_epochs=1 warmup_lr=1e-3", d, true, 0, W, &st); /* a value changed */
    CHECK_MSG(st == CT_ERR_STATE && strstr(ct_last_error(), "epochs=6") &&
                  strstr(ct_last_error(), "epochs=8"), "%s", ct_last_error());
    CHECK_OK(ct_read_file(path, &after, &na));
    CHECK_MSG(nb == na && before && after && !memcmp(before, after, nb),
              "a refused resume changed the checkpoint");
    free(before), free(after);
    run(HP, d, true, 0, W, &st); /* the same run goes on */
    CHECK_OK(st);
}

/* The checkpoint is one file (tensors, optimiser state and the record of
 * the epoch together), so an older checkpoint put back in place resumes
 * consistently from its own epoch and ends as the uninterrupted run. With
 * the weights and the epoch in two files this mixed epochs silently. */
static void test_checkpoint_is_one_unit(void) {
    char d1[4096], d2[4096], p[4200], old[4200], cmd[9000];
    snprintf(d1, sizeof d1, "%s/unit_full", ct_test_tmpdir());
    snprintf(d2, sizeof d2, "%s/unit_chunks", ct_test_tmpdir());
    CHECK(mkdir_p_ok(d1) && mkdir_p_ok(d2));
    float Wa[K * D], Wb[K * D];
    ct_status st;
    run(HP, d1, false, 0, Wa, &st);
    CHECK_OK(st);
    run(HP, d2, false, 2, Wb, &st);
    CHECK_OK(st);
    snprintf(p, sizeof p, "%s/checkpoint.safetensors", d2);
    snprintf(old, sizeof old, "%s/epoch2.safetensors", ct_test_tmpdir());
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", p, old);
    CHECK(system(cmd) == 0);
    run(HP, d2, true, 4, Wb, &st); /* on to epoch 4 ... */
    CHECK_OK(st);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", old, p); /* ... then epoch 2's file is back */
    CHECK(system(cmd) == 0);
    run(HP, d2, true, 0, Wb, &st);
    CHECK_OK(st);
    CHECK_MSG(!memcmp(Wa, Wb, sizeof Wa), "resuming from a restored checkpoint differs from the "
              "uninterrupted run");
    snprintf(p, sizeof p, "%s/checkpoint.json", d2);
    CHECK_MSG(access(p, F_OK) != 0, "a second checkpoint file was written");
    /* a safetensors file without the run's record is not a checkpoint */
    ct_tensor *t = ct_tensor_new2(K, D, false);
    ct_st_entry e = {"param.0", CT_F32, 2, t->shape, t->data};
    snprintf(p, sizeof p, "%s/checkpoint.safetensors", d2);
    CHECK_OK(ct_safetensors_write(p, &e, 1, NULL, 0));
    ct_tensor_free(t);
    run(HP, d2, true, 0, Wb, &st);
    CHECK_MSG(st == CT_ERR_FORMAT && strstr(ct_last_error(), "cliptune.checkpoint"), "%s",
              ct_last_error());
}

static void test_best_val(void) {
    float W[K * D];
    ct_status st;
    char hp[512];
    snprintf(hp, sizeof hp, "%s select=best_val", HP);
    double acc = run(hp, NULL, false, 0, W, &st);
    CHECK_OK(st);
    CHECK(acc > 0.8);
}

/* iters: with 96 items in batches of 16 an epoch is 6 steps, so iters=6 must
 * equal epochs=1 exactly, and iters=9 (one and a half epochs) must go on. */
static void test_iters(void) {
    float W1[K * D], W2[K * D], W3[K * D];
    ct_status st;
    run("epochs=1 batch_size=16 lr=0.05 sched=constant", NULL, false, 0, W1, &st);
    CHECK_OK(st);
    run("iters=6 batch_size=16 lr=0.05 sched=constant", NULL, false, 0, W2, &st);
    CHECK_OK(st);
    CHECK_MSG(!memcmp(W1, W2, sizeof W1), "iters=6 differs from one epoch of 6 steps");
    run("iters=9 batch_size=16 lr=0.05 sched=constant", NULL, false, 0, W3, &st);
    CHECK_OK(st);
    CHECK(memcmp(W2, W3, sizeof W2) != 0);
}

/* Parameter groups: "<prefix>.lr" and its warmup keys give the tensors of
 * that name their own schedule; a prefix that names no tensor is refused. */
static void test_param_groups(void) {
    float W0[K * D], W1[K * D], W2[K * D];
    ct_status st;
    run("epochs=1 batch_size=16 lr=0", NULL, false, 0, W0, &st); /* the initial W */
    CHECK_OK(st);
    run("epochs=2 batch_size=16 lr=0.05 head.W.lr=0", NULL, false, 0, W1, &st);
    CHECK_OK(st);
    CHECK_MSG(!memcmp(W0, W1, sizeof W0), "head.W.lr=0 still moved W");
    /* W warms up at lr 0 for its first epoch: one epoch leaves it where it was */
    run("epochs=3 batch_size=16 lr=0.05 head.W.warmup_epochs=1 head.W.warmup_lr=0", NULL, false,
        1, W2, &st);
    CHECK_OK(st);
    CHECK_MSG(!memcmp(W0, W2, sizeof W0), "W moved during its own warmup epoch");
    run("epochs=1 batch_size=16 lr=0.05 head.lr=0.01", NULL, false, 0, W2, &st);
    CHECK_OK(st);
    CHECK(memcmp(W0, W2, sizeof W0) != 0);
    ct_kv hp = {0};
    ct_train_cfg cfg;
    CHECK_OK(ct_kv_parse(&hp, "lr=0.01 warmup_epochs=10 coop.lr=0.002 coop.warmup_epochs=1"));
    CHECK_OK(ct_train_cfg_from_kv(&hp, &cfg));
    CHECK_OK(ct_kv_check_used(&hp, "groups"));
    CHECK(cfg.n_groups == 1 && !strcmp(cfg.groups[0].prefix, "coop") &&
          cfg.groups[0].sched.base_lr == 0.002f && cfg.groups[0].sched.warmup_len == 1 &&
          cfg.groups[0].sched.warmup == CT_WARMUP_CONSTANT && cfg.sched.warmup_len == 10);
    ct_kv_free(&hp);
    run("epochs=1 batch_size=16 lr=0.05 nope.lr=0.1", NULL, false, 0, W2, &st);
    CHECK_MSG(st == CT_ERR_ARG && strstr(ct_last_error(), "nope"), "%s", ct_last_error());
}

static void test_kv(void) {
    ct_kv kv = {0};
    CHECK_OK(ct_kv_parse(&kv, "a=1 b=x,c=2.5"));
    CHECK_OK(ct_kv_parse(&kv, "a=3"));
    int a;
    double c;
    const char *b;
    CHECK_OK(ct_kv_int(&kv, "a", 0, &a));
    CHECK(a == 3);
    CHECK_OK(ct_kv_double(&kv, "c", 0, &c));
    CHECK(c == 2.5);
    CHECK(ct_kv_check_used(&kv, "t") == CT_ERR_ARG && strstr(ct_last_error(), "\"b\""));
    CHECK_OK(ct_kv_str(&kv, "b", NULL, &b));
    CHECK(!strcmp(b, "x"));
    CHECK_OK(ct_kv_check_used(&kv, "t"));
    CHECK(ct_kv_int(&kv, "b", 0, &a) == CT_ERR_ARG && strstr(ct_last_error(), "b=x"));
    CHECK(ct_kv_parse(&kv, "novalue") == CT_ERR_ARG);
    ct_kv_free(&kv);
    ct_kv_free(NULL);
    ct_kv bad = {0};
    ct_train_cfg cfg;
    CHECK_OK(ct_kv_parse(&bad, "optim=lbfgs"));
    CHECK(ct_train_cfg_from_kv(&bad, &cfg) == CT_ERR_ARG && strstr(ct_last_error(), "lbfgs"));
    ct_kv_free(&bad);
}

/* Values with spaces, commas and quotes (literal templates) survive the
 * joined --set text: ct_kv_append quotes, ct_kv_parse and ct_kv_item read. */
static void test_kv_quoted(void) {
    static const char *const vals[] = {"a photo of the number: \"{}\".", "x,y z", "back\\slash",
                                       "\"", "plain", ""};
    char *text = NULL;
    char pair[128];
    for (int i = 0; i < 6; i++) {
        snprintf(pair, sizeof pair, "k%d=%s", i, vals[i]);
        CHECK_OK(ct_kv_append(&text, pair));
    }
    CHECK(text && strstr(text, " k4=plain") && strstr(text, "k1=\"x,y z\""));
    ct_kv kv = {0};
    CHECK_OK(ct_kv_parse(&kv, text));
    CHECK(kv.n == 6);
    for (int i = 0; i < 6 && i < kv.n; i++) {
        snprintf(pair, sizeof pair, "k%d", i);
        const char *v = NULL;
        CHECK_OK(ct_kv_str(&kv, pair, NULL, &v));
        CHECK(v && !strcmp(v, vals[i]));
    }
    int items = 0;
    const char *end;
    for (const char *p = ct_kv_item(text, &end); p; p = ct_kv_item(end, &end)) items++;
    CHECK(items == 6);
    ct_kv_free(&kv);
    free(text);
    text = NULL;
    CHECK(ct_kv_parse(&kv, "t=\"never closed") == CT_ERR_ARG &&
          strstr(ct_last_error(), "closing quote"));
    CHECK(ct_kv_parse(&kv, "t=\"a\"b") == CT_ERR_ARG);
    CHECK(ct_kv_append(&text, "novalue") == CT_ERR_ARG);
    ct_kv_free(&kv);
    free(text);
}

int main(void) {
    RUN(test_learns);
    RUN(test_resume_equals_uninterrupted);
    RUN(test_resume_verifies_the_run);
    RUN(test_checkpoint_is_one_unit);
    RUN(test_best_val);
    RUN(test_iters);
    RUN(test_param_groups);
    RUN(test_kv);
    RUN(test_kv_quoted);
    return ct_test_summary();
}
