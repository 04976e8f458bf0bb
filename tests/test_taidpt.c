/* TaI-DPT (src/methods/taidpt.c) and its caption data:
 *   - parity with an independent float64 PyTorch re-implementation of the
 *     official trainers/Caption_distill_double.py, trainers/utils.py and
 *     datasets/coco2014_distill.py math (tools/ref/gen_taidpt_ref.py ->
 *     fixtures/methods/taidpt_ref.h): fit on a captions file and a synonyms
 *     file gives the reference's word-based labels (captions naming no class
 *     dropped) and its caption features (the text tower's projected
 *     features at every position, ct_clip_encode_text_tokens); the double
 *     ranking loss and the gradients of both contexts; the image scores
 *     (global, local and fused) for two settings; three SGD steps;
 *   - the COCO captions loader and the synonyms file: errors name the file
 *     and the entry; the scenes set's train captions name exactly the
 *     scene's classes under its synonyms.txt;
 *   - it learns: on the scenes set with the shipped model, trained on the
 *     scenes' captions only, its test mAP beats zero-shot's; the saved run
 *     evaluates to the same mAP.
 * The tiny model is tests/fixtures/methods/tiny. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cliptune.h"
#include "data/coco_captions.h"
#include "fixtures/methods/coop_ref.h"
#include "fixtures/methods/taidpt_ref.h"
#include "harness.h"
#include "method_fixture.h"

static const ct_method *taidpt(void) { return ct_method_find("taidpt"); }

static ct_task make_task(void) {
    ct_task t = {0};
    t.clip = g_clip, t.tok = g_tok, t.n_classes = CREF_K;
    t.classnames = (char *const *)cref_classnames;
    t.dataset_name = "test", t.seed = 1;
    return t;
}

static bool write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(text, 1, strlen(text), f) == strlen(text);
    return fclose(f) == 0 && ok;
}

static char g_caps[4096], g_syn[4096];

/* the reference's captions as a COCO captions file, and its synonyms */
static bool write_inputs(void) {
    if (g_caps[0]) return true;
    snprintf(g_caps, sizeof g_caps, "%s/captions_ref.json", ct_test_tmpdir());
    snprintf(g_syn, sizeof g_syn, "%s/synonyms_ref.txt", ct_test_tmpdir());
    char buf[8192];
    size_t n = (size_t)snprintf(buf, sizeof buf, "{\"images\": [{\"id\": 7}, {\"id\": 9}],\n"
                                "\"annotations\": [");
    for (int i = 0; i < TREF_N_CAPTIONS; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s{\"id\": %d, \"image_id\": %d, "
                              "\"caption\": \"%s\"}", i ? ",\n" : "", 100 + i, i % 2 ? 9 : 7,
                              tref_captions[i]);
    snprintf(buf + n, sizeof buf - n, "]}\n");
    bool ok = write_text(g_caps, buf) && write_text(g_syn, tref_synonyms);
    CHECK_MSG(ok, "cannot write %s", g_caps);
    return ok;
}

/* a state for hp (plus the reference's files, no templates), fitted */
static void *fitted(const ct_task *task, const char *hp_text, const char *extra) {
    char text[8192];
    snprintf(text, sizeof text, "%s captions=%s synonyms=%s templates=0 %s", hp_text, g_caps,
             g_syn, extra ? extra : "");
    ct_kv hp = {0};
    void *st = NULL;
    CHECK_OK(ct_kv_parse(&hp, text));
    CHECK_OK(taidpt()->create(task, &hp, &st));
    CHECK_OK(ct_kv_check_used(&hp, "taidpt"));
    ct_kv_free(&hp);
    if (st && taidpt()->fit(st, task) != CT_OK) {
        CHECK_MSG(false, "fit: %s", ct_last_error());
        taidpt()->destroy(st);
        st = NULL;
    }
    return st;
}

static void set_ctx(void *st, const double *c, const double *d, ct_tensor **p) {
    CHECK(taidpt()->params(st, p, 2) == 2);
    for (int64_t i = 0; i < p[0]->numel; i++) p[0]->data[i] = (float)c[i];
    for (int64_t i = 0; i < p[1]->numel; i++) p[1]->data[i] = (float)d[i];
}

static float g_cx[TREF_B * CREF_E], g_cd[TREF_B * TREF_T * CREF_E];

static ct_batch caption_batch(void) {
    for (size_t i = 0; i < sizeof g_cx / sizeof *g_cx; i++) g_cx[i] = (float)tref_cap_x[i];
    for (size_t i = 0; i < sizeof g_cd / sizeof *g_cd; i++) g_cd[i] = (float)tref_cap_dense[i];
    return (ct_batch){.n = TREF_B, .x = g_cx, .targets = tref_targets, .dense = g_cd,
                      .n_tokens = TREF_T, .epoch = 0};
}

static ct_batch image_batch(void) {
    return (ct_batch){.n = TREF_BI, .x = tref_img_x, .dense = tref_img_dense,
                      .n_tokens = TREF_TI, .epoch = -1};
}

typedef struct {
    const char *name, *hp;
    const double *ctx, *ctxd, *loss, *grad, *gradd, *glob, *local, *scores, *sgd_losses,
        *sgd_ctx, *sgd_ctxd, *sgd_scores;
    size_t n_ctx;
} ref_case;

#define CASE(n)                                                                              \
    {#n, tref_##n##_hp, tref_##n##_ctx, tref_##n##_ctx_double, &tref_##n##_loss,              \
     tref_##n##_grad, tref_##n##_grad_double, tref_##n##_global, tref_##n##_local,            \
     tref_##n##_scores, tref_##n##_sgd_losses, tref_##n##_sgd_ctx, tref_##n##_sgd_ctx_double, \
     tref_##n##_sgd_scores, sizeof tref_##n##_ctx / sizeof(double)}
static const ref_case CASES[] = {CASE(base), CASE(other)};

/* fit: the labels, the kept captions and their features */
static void test_caption_set(void) {
    if (!load_fixture() || !write_inputs()) return;
    ct_task task = make_task();
    void *st = fitted(&task, "n_ctx=4", NULL);
    if (!st) return;
    const ct_features *f = taidpt()->train_set(st);
    CHECK_MSG(f && f->n == TREF_B && f->n_tokens == TREF_T && f->dim == CREF_E,
              "caption set: %lld captions of %d tokens, reference %d of %d",
              f ? (long long)f->n : -1LL, f ? f->n_tokens : -1, TREF_B, TREF_T);
    if (f && f->n == TREF_B && f->n_tokens == TREF_T) {
        CHECK_MSG(!memcmp(f->targets, tref_targets, sizeof tref_targets),
                  "caption labels differ from the reference's");
        double dx = compare("caption global features", f->x, tref_cap_x, TREF_B * CREF_E,
                            1e-4, 1e-4);
        double dd = compare("caption per-position features", f->dense, tref_cap_dense,
                            TREF_B * TREF_T * CREF_E, 1e-4, 1e-4);
        for (int i = 0; i < TREF_B; i++) {
            int k = 0;
            while (k < CREF_K - 1 && tref_targets[i * CREF_K + k] != 1) k++;
            CHECK(f->labels[i] == k);
        }
        printf("    %d of %d captions kept, %d positions; max |d| global %.2g, positions %.2g\n",
               TREF_B, TREF_N_CAPTIONS, TREF_T, dx, dd);
    }
    taidpt()->destroy(st);
    /* the templates add 9 + 80 sentences per class, labelled with it alone */
    char text[8192];
    snprintf(text, sizeof text, "n_ctx=4 captions=%s synonyms=%s", g_caps, g_syn);
    ct_kv hp = {0};
    CHECK_OK(ct_kv_parse(&hp, text));
    CHECK_OK(taidpt()->create(&task, &hp, &st));
    ct_kv_free(&hp);
    if (!st) return;
    CHECK_OK(taidpt()->fit(st, &task));
    f = taidpt()->train_set(st);
    CHECK_MSG(f->n == TREF_B + CREF_K * 89, "%lld texts with the templates", (long long)f->n);
    if (f->n == TREF_B + CREF_K * 89) {
        const int8_t *last = f->targets + (f->n - 1) * CREF_K;
        for (int k = 0; k < CREF_K; k++) CHECK(last[k] == (k == CREF_K - 1));
        CHECK(f->labels[f->n - 1] == CREF_K - 1);
    }
    taidpt()->destroy(st);
}

static void test_parity(void) {
    if (!load_fixture() || !write_inputs()) return;
    ct_task task = make_task();
    ct_graph *g = ct_graph_create(0);
    for (size_t c = 0; c < sizeof CASES / sizeof *CASES; c++) {
        const ref_case *rc = &CASES[c];
        /* merge=1: the global scores, merge=0: the local ones */
        void *st = fitted(&task, rc->hp, NULL), *sg = fitted(&task, rc->hp, "merge=1");
        void *sl = fitted(&task, rc->hp, "merge=0");
        if (!st || !sg || !sl) goto next;
        ct_tensor *p[2], *q[2];
        set_ctx(st, rc->ctx, rc->ctxd, p);
        CHECK((size_t)p[0]->numel == rc->n_ctx && (size_t)p[1]->numel == rc->n_ctx);
        set_ctx(sg, rc->ctx, rc->ctxd, q);
        set_ctx(sl, rc->ctx, rc->ctxd, q);
        ct_tensor_zero_grad(p[0]);
        ct_tensor_zero_grad(p[1]);
        ct_batch cb = caption_batch(), ib = image_batch();
        ct_graph_reset(g);
        ct_tensor *loss = taidpt()->loss(st, g, &cb);
        CHECK_MSG(loss, "%s: %s", rc->name, ct_last_error());
        if (!loss) goto next;
        CHECK_OK(ct_backward(g, loss));
        char what[128];
        snprintf(what, sizeof what, "%s loss", rc->name);
        double dl = compare(what, loss->data, rc->loss, 1, 1e-4, 1e-5);
        snprintf(what, sizeof what, "%s d loss / d ctx", rc->name);
        double dg = compare(what, p[0]->grad, rc->grad, rc->n_ctx, 1e-4, 1e-3);
        snprintf(what, sizeof what, "%s d loss / d ctx_double", rc->name);
        double dgd = compare(what, p[1]->grad, rc->gradd, rc->n_ctx, 1e-4, 1e-3);
        double ds[3];
        void *states[3] = {st, sg, sl};
        const double *want[3] = {rc->scores, rc->glob, rc->local};
        const char *names[3] = {"scores", "global", "local"};
        for (int k = 0; k < 3; k++) {
            ct_graph_reset(g);
            ct_tensor *sc = taidpt()->logits(states[k], g, &ib);
            CHECK_MSG(sc && sc->numel == TREF_BI * CREF_K, "%s %s: %s", rc->name, names[k],
                      sc ? "wrong size" : ct_last_error());
            snprintf(what, sizeof what, "%s %s", rc->name, names[k]);
            ds[k] = sc ? compare(what, sc->data, want[k], TREF_BI * CREF_K, 1e-4, 1e-4) : 1;
        }
        printf("    %-6s max |d| loss %.2g  grad %.2g / %.2g  scores %.2g global %.2g local "
               "%.2g\n", rc->name, dl, dg, dgd, ds[0], ds[1], ds[2]);
        /* three SGD steps over both contexts (Dassl's SGD) */
        set_ctx(st, rc->ctx, rc->ctxd, p);
        ct_optim_config oc = ct_optim_default(CT_OPTIM_SGD, TREF_SGD_LR);
        oc.momentum = 0.9f, oc.weight_decay = 5e-4f;
        ct_optim *opt = ct_optim_create(&oc, p, 2);
        CHECK(opt != NULL);
        double mx = 0;
        for (int s = 0; s < 3 && opt; s++) {
            ct_graph_reset(g);
            ct_optim_zero_grad(opt);
            ct_tensor *l = taidpt()->loss(st, g, &cb);
            CHECK_MSG(l, "%s: %s", rc->name, ct_last_error());
            if (!l) break;
            CHECK_OK(ct_backward(g, l));
            snprintf(what, sizeof what, "%s loss before step %d", rc->name, s + 1);
            mx = fmax(mx, compare(what, l->data, &rc->sgd_losses[s], 1, 1e-4, 1e-4));
            CHECK_OK(ct_optim_step(opt, TREF_SGD_LR));
        }
        snprintf(what, sizeof what, "%s ctx after 3 steps", rc->name);
        double dc = compare(what, p[0]->data, rc->sgd_ctx, rc->n_ctx, 1e-5, 1e-4);
        snprintf(what, sizeof what, "%s ctx_double after 3 steps", rc->name);
        double dcd = compare(what, p[1]->data, rc->sgd_ctxd, rc->n_ctx, 1e-5, 1e-4);
        ct_graph_reset(g);
        ct_tensor *sc = taidpt()->logits(st, g, &ib);
        snprintf(what, sizeof what, "%s scores after 3 steps", rc->name);
        double dss = sc ? compare(what, sc->data, rc->sgd_scores, TREF_BI * CREF_K, 1e-4, 1e-4)
                        : 1;
        printf("    %-6s 3 SGD steps: max |d| losses %.2g  ctx %.2g / %.2g  scores %.2g\n",
               rc->name, mx, dc, dcd, dss);
        ct_optim_free(opt);
    next:
        if (st) taidpt()->destroy(st);
        if (sg) taidpt()->destroy(sg);
        if (sl) taidpt()->destroy(sl);
    }
    ct_graph_free(g);
}

/* ct_clip_encode_text_tokens: the pooled row is ct_clip_encode_text's and
 * row EOT of the per-position features */
static void test_encode_tokens(void) {
    if (!load_fixture()) return;
    int64_t ids[2 * 8] = {0};
    CHECK_OK(ct_tokenizer_tokenize(g_tok, "a photo of a cat.", 8, true, ids));
    CHECK_OK(ct_tokenizer_tokenize(g_tok, "two dogs", 8, true, ids + 8));
    ct_graph *g = ct_graph_create(0);
    ct_tensor *tok = NULL;
    ct_tensor *a = ct_clip_encode_text_tokens(g, g_clip, ids, 2, 8, NULL, &tok);
    ct_tensor *b = ct_clip_encode_text(g, g_clip, ids, 2, 8, NULL);
    CHECK(a && b && tok && tok->ndim == 3 && tok->shape[1] == 8 && tok->shape[2] == CREF_E);
    if (a && b && tok) {
        int64_t eot[2];
        CHECK_OK(ct_clip_eot_positions(g_clip, ids, 2, 8, eot));
        for (int r = 0; r < 2; r++)
            for (int e = 0; e < CREF_E; e++) {
                CHECK_NEAR("pooled", a->data[r * CREF_E + e], b->data[r * CREF_E + e], 1e-5,
                           1e-5);
                CHECK(a->data[r * CREF_E + e] == tok->data[(r * 8 + eot[r]) * CREF_E + e]);
            }
    }
    ct_graph_free(g);
}

/* the loader's and the synonyms' errors name the file and the entry */
static void test_bad_files(void) {
    const char *t = ct_test_tmpdir();
    char path[4200];
    static const struct {
        const char *text, *want;
    } BAD[] = {
        {"[1, 2]", "\"images\" and \"annotations\" arrays"},
        {"{\"images\": [], \"annotations\": [{\"id\": 1, \"image_id\": 3, \"caption\": \"x\"}]}",
         "annotations[0]: image_id 3 is not among"},
        {"{\"images\": [{\"id\": 3}], \"annotations\": [{\"id\": 1, \"image_id\": 3, "
         "\"caption\": \"\"}]}", "annotations[0] (id 1): \"caption\""},
        {"{\"images\": [{\"id\": 3}], \"annotations\": [{\"id\": 1, \"image_id\": 3, "
         "\"caption\": 5}]}", "\"caption\" must be"},
        {"{\"images\": [{\"id\": 3}, {\"id\": 3}], \"annotations\": []}", "image id 3 repeats"},
        {"{\"images\": [{\"id\": 1.5}], \"annotations\": []}", "images[0]: expected"},
        {"{\"images\": [{\"id\": 1}], \"annotations\": [{\"image_id\": 1, \"caption\": \"a\"}]}",
         "annotations[0]: expected an object with integer"},
        {"{\"images\": [", "captions_bad.json"},
    };
    snprintf(path, sizeof path, "%s/captions_bad.json", t);
    for (size_t i = 0; i < sizeof BAD / sizeof *BAD; i++) {
        CHECK(write_text(path, BAD[i].text));
        ct_coco_captions c;
        CHECK(ct_coco_captions_load(path, &c) == CT_ERR_FORMAT);
        CHECK_MSG(strstr(ct_last_error(), BAD[i].want) && strstr(ct_last_error(), path),
                  "case %zu: %s", i, ct_last_error());
        CHECK(c.n == 0 && c.captions == NULL);
    }
    snprintf(path, sizeof path, "%s/no_such_captions.json", t);
    ct_coco_captions c;
    CHECK(ct_coco_captions_load(path, &c) == CT_ERR_IO);
    /* a good file: every caption in order */
    snprintf(path, sizeof path, "%s/captions_good.json", t);
    CHECK(write_text(path, "{\"images\": [{\"id\": 4}, {\"id\": 2}], \"annotations\": [{\"id\": "
                           "10, \"image_id\": 2, \"caption\": \"A cat.\"}, {\"id\": 11, "
                           "\"image_id\": 4, \"caption\": \"Two dogs\"}]}"));
    CHECK_OK(ct_coco_captions_load(path, &c));
    CHECK(c.n == 2 && c.ids[1] == 11 && c.image_ids[0] == 2 && !strcmp(c.captions[1], "Two dogs"));
    ct_coco_captions_free(&c);
    /* synonyms: one line per class */
    char *names[2] = {"cat", "sea_lion"};
    ct_synonyms s;
    snprintf(path, sizeof path, "%s/syn_bad.txt", t);
    CHECK(write_text(path, "{'cat','kitten'}\n"));
    CHECK(ct_synonyms_load(path, 2, names, &s) == CT_ERR_FORMAT);
    CHECK_MSG(strstr(ct_last_error(), "1 lines of names for 2 classes"), "%s", ct_last_error());
    CHECK(write_text(path, "cat\n\n{'sea lion'}\ndog\n"));
    CHECK(ct_synonyms_load(path, 2, names, &s) == CT_ERR_FORMAT);
    CHECK_MSG(strstr(ct_last_error(), ":4: more lines"), "%s", ct_last_error());
    CHECK(write_text(path, "cat, kittens\n{'', ''}\n"));
    CHECK(ct_synonyms_load(path, 2, names, &s) == CT_ERR_FORMAT);
    CHECK_MSG(strstr(ct_last_error(), ":2: no name for class 1"), "%s", ct_last_error());
    /* no file: the class names, '_' a space; plurals match */
    CHECK_OK(ct_synonyms_load(NULL, 2, names, &s));
    int8_t row[2];
    CHECK(ct_caption_labels(&s, "Three sea lions and no cats!", row) && row[0] == 1 &&
          row[1] == 1);
    CHECK(!ct_caption_labels(&s, "A sealion-free beach.", row) && row[0] == 0 && row[1] == 0);
    ct_synonyms_free(&s);
    /* fit without captions says what it needs */
    if (!load_fixture()) return;
    ct_task task = make_task();
    ct_kv hp = {0};
    void *st = NULL;
    CHECK_OK(ct_kv_parse(&hp, taidpt()->defaults));
    CHECK_OK(taidpt()->create(&task, &hp, &st));
    ct_kv_free(&hp);
    if (!st) return;
    CHECK(taidpt()->fit(st, &task) == CT_ERR_ARG);
    CHECK_MSG(strstr(ct_last_error(), "captions=PATH"), "%s", ct_last_error());
    taidpt()->destroy(st);
}

/* ---- the scenes set ---- */

#define FM_DIR "/usr/share/datasets/fashion-mnist"
#define MODEL_DIR CT_SOURCE_DIR "/models/cliptune-small"

static bool have_fm(void) {
    struct stat st;
    return stat(FM_DIR "/train-images-idx3-ubyte.gz", &st) == 0 ||
           stat(FM_DIR "/train-images-idx3-ubyte", &st) == 0;
}

/* Every train caption of the scenes names exactly its scene's classes under
 * annotations/synonyms.txt; two per scene; the val and test splits have
 * none. */
static void test_scenes_captions(void) {
    if (!have_fm()) {
        ct_test_skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return;
    }
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/scenes_caps", ct_test_tmpdir());
    ct_scenes_cfg c = ct_scenes_cfg_default();
    c.n_train = 120, c.n_val = 10, c.n_test = 10, c.seed = 5;
    CHECK_OK(ct_data_make_scenes(&c, dir));
    char spec[4300];
    snprintf(spec, sizeof spec, "coco:%s", dir);
    ct_splits sp = {0};
    CHECK_OK(ct_data_open(spec, &sp));
    if (!sp.train) return;
    snprintf(path, sizeof path, "%s/annotations/synonyms.txt", dir);
    ct_synonyms syn;
    CHECK_OK(ct_synonyms_load(path, sp.train->n_classes, sp.train->classnames, &syn));
    snprintf(path, sizeof path, "%s/annotations/captions_train.json", dir);
    ct_coco_captions cc;
    CHECK_OK(ct_coco_captions_load(path, &cc));
    CHECK_MSG(cc.n == 2 * c.n_train, "%lld captions for %d scenes", (long long)cc.n, c.n_train);
    int K = sp.train->n_classes, bad = 0;
    int8_t row[64];
    for (int64_t i = 0; i < cc.n && K <= 64; i++) {
        /* image ids are the scene numbers 1.. of the train split, in order */
        int64_t img = cc.image_ids[i] - 1;
        CHECK(img == i / 2 && cc.ids[i] == i + 1);
        if (img < 0 || img >= sp.train->n_items) continue;
        ct_caption_labels(&syn, cc.captions[i], row);
        const int8_t *want = sp.train->targets + img * K;
        if (memcmp(row, want, (size_t)K) != 0 && bad++ < 3)
            CHECK_MSG(false, "caption %lld \"%s\" names other classes than scene %lld's",
                      (long long)i, cc.captions[i], (long long)img + 1);
    }
    printf("    %lld captions, e.g. \"%s\" / \"%s\"\n", (long long)cc.n, cc.captions[0],
           cc.captions[1]);
    ct_coco_captions_free(&cc);
    ct_synonyms_free(&syn);
    ct_splits_free(&sp);
}

/* the official defaults (docs/methods/taidpt.md): nothing tuned */
#define TAI_SET ""

static void test_learns(void) {
    if (!have_fm()) {
        ct_test_skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return;
    }
    char dir[4200], spec[4300], cache[4300], caps[4400], set[4600], d_zs[4300], d_t[4300];
    const char *t = ct_test_tmpdir();
    snprintf(dir, sizeof dir, "%s/scenes", t);
    ct_scenes_cfg c = ct_scenes_cfg_default();
    c.n_train = 500, c.n_val = 100, c.n_test = 500, c.seed = 0;
    CHECK_OK(ct_data_make_scenes(&c, dir));
    snprintf(spec, sizeof spec, "voc:%s", dir);
    snprintf(cache, sizeof cache, "%s/cache", t);
    snprintf(caps, sizeof caps, "%s/annotations/captions_train.json", dir);
    snprintf(set, sizeof set, "captions=%s " TAI_SET, caps);
    snprintf(d_zs, sizeof d_zs, "%s/zs", t);
    snprintf(d_t, sizeof d_t, "%s/taidpt", t);
    ct_splits sp = {0};
    CHECK_OK(ct_data_open(spec, &sp));
    ct_model_opts o = {.need_tokenizer = true};
    ct_model *model = ct_model_load_ex(MODEL_DIR, &o);
    CHECK_MSG(model != NULL, "model: %s", ct_last_error());
    if (!model || !sp.train) return;
    ct_run_result zs, tr;
    const char *methods[2] = {"zeroshot", "taidpt"}, *sets[2] = {"", set};
    const char *dirs[2] = {d_zs, d_t};
    ct_run_result *res[2] = {&zs, &tr};
    for (int k = 0; k < 2; k++) {
        ct_run_cfg cfg = ct_run_cfg_default();
        cfg.model = model, cfg.data = &sp, cfg.data_spec = spec;
        cfg.method = ct_method_find(methods[k]), cfg.set = sets[k], cfg.shots = 0;
        cfg.run_dir = dirs[k], cfg.cache_dir = cache;
        CHECK_OK(ct_run(&cfg, res[k]));
    }
    printf("  scenes mAP: zero-shot %.2f%%, taidpt trained on the captions only %.2f%% "
           "(val %.2f%%)\n", 100 * zs.map, 100 * tr.map, 100 * tr.val_map);
    CHECK(tr.multi_label && isnan(tr.top1));
    CHECK_MSG(tr.map > zs.map + 0.01, "taidpt mAP %.4f vs zero-shot %.4f", tr.map, zs.map);
    /* the saved run: the same mAP */
    ct_saved_run *r = ct_saved_run_open(d_t);
    CHECK_MSG(r != NULL, "%s", ct_last_error());
    if (r) {
        CHECK_OK(ct_saved_run_attach(r, model));
        ct_ml_metrics m = {0};
        char evdir[4400];
        snprintf(evdir, sizeof evdir, "%s/eval", d_t);
        CHECK_OK(ct_saved_run_evaluate_ml(r, sp.test, NULL, NULL, evdir, &m));
        CHECK_MSG(fabs(m.map - tr.map) < 1e-12, "saved run mAP %.17g vs the run's %.17g", m.map,
                  tr.map);
        ct_ml_metrics_free(&m);
        ct_saved_run_free(r);
    }
    ct_model_free(model);
    ct_splits_free(&sp);
}

int main(void) {
    RUN(test_encode_tokens);
    RUN(test_caption_set);
    RUN(test_parity);
    RUN(test_bad_files);
    RUN(test_scenes_captions);
    RUN(test_learns);
    return ct_test_summary();
}
