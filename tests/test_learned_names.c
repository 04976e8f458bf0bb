/* The names of the learned tensors (ct_method.param_names): the keys of a
 * run's learned.safetensors, the official repositories' own state-dict keys
 * where they exist (each method file's top comment cites the source).
 *
 *   - every registered method with params() has param_names, giving as many
 *     names as params() has tensors, unique, non-empty, not "param.<i>",
 *     for its defaults and for the variants below, on the tiny fixture
 *     model (tests/fixtures/methods/tiny);
 *   - ct_run_save_learned writes those keys, with each tensor's shape and
 *     bytes, and ct_run_load_learned reads them back into a fresh state
 *     (another seed) bit for bit;
 *   - the keys that users of the official code know: coop and plot "ctx", cocoop
 *     "meta_net.linear1.weight", maple "prompt_learner.compound_prompts_text.0",
 *     clip-lora "visual.transformer.resblocks.0.attn.q_proj.w_lora_A", ...;
 *   - tpt's init_from still finds a CoOp run's context under its new key. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cliptune.h"
#include "harness.h"
#include "method_fixture.h"
#include "model/bundle.h"
#include "api/run.h"

enum { CAP = 256, N_TRAIN = 6, MAX_E = 1024 };

static char *g_names[2] = {"cat", "dog"};
static float g_x[N_TRAIN * MAX_E];
static int g_y[N_TRAIN];
static ct_features g_train;

/* The model the states are made on: the tiny fixture (1 vision layer, 2
 * text layers), or the shipped small model (4 + 4 layers) for the keys of
 * deeper layers. */
#define SMALL_DIR CT_SOURCE_DIR "/models/cliptune-small"
static ct_clip *g_model;
static ct_tokenizer *g_model_tok;
static ct_bundle g_small;

static bool use_tiny(void) {
    if (!load_fixture()) return false;
    g_model = g_clip, g_model_tok = g_tok;
    return true;
}

static bool use_small(void) {
    if (!g_small.clip) CHECK_OK(ct_bundle_load(SMALL_DIR, NULL, NULL, true, &g_small));
    if (!g_small.clip || !g_small.tok) return false;
    g_model = g_small.clip, g_model_tok = g_small.tok;
    return true;
}

static ct_task make_task(uint64_t seed) {
    ct_task t = {0};
    t.clip = g_model, t.tok = g_model_tok, t.n_classes = 2, t.classnames = g_names;
    t.dataset_name = "test", t.seed = seed;
    /* Tip-Adapter sizes its cache by the training features */
    int E = ct_clip_get_config(g_model)->embed_dim;
    CHECK(E <= MAX_E);
    if (E > MAX_E) E = MAX_E;
    for (int i = 0; i < N_TRAIN * E; i++) g_x[i] = (float)((i * 37) % 11) / 11.0f - 0.5f;
    for (int i = 0; i < N_TRAIN; i++) g_y[i] = i % 2;
    g_train = (ct_features){.n = N_TRAIN, .dim = E, .x = g_x, .labels = g_y};
    t.train_feats = &g_train;
    return t;
}

/* A state of m from its defaults plus extra (may be NULL). */
static void *make_state(const ct_method *m, uint64_t seed, const char *extra) {
    ct_kv hp = {0};
    void *st = NULL;
    ct_task task = make_task(seed);
    ct_status s = ct_kv_parse(&hp, m->defaults);
    if (s == CT_OK && extra) s = ct_kv_parse(&hp, extra);
    if (s == CT_OK) s = m->create(&task, &hp, &st);
    CHECK_MSG(s == CT_OK, "%s %s: create: %s", m->name, extra ? extra : "", ct_last_error());
    ct_kv_free(&hp);
    return s == CT_OK ? st : NULL;
}

/* Fill every learned tensor with values that depend on (salt, tensor,
 * element), so that a fresh state differs from the saved one everywhere. */
static void fill(ct_tensor **p, int np, unsigned salt) {
    for (int i = 0; i < np; i++)
        for (int64_t j = 0; j < p[i]->numel; j++)
            p[i]->data[j] = (float)((salt * 7919u + (unsigned)i * 104729u + (unsigned)j * 31u) %
                                    1000u) / 997.0f - 0.25f;
}

static bool same_shape(const ct_st_tensor *t, const ct_tensor *p) {
    if (t->ndim != p->ndim) return false;
    for (int d = 0; d < p->ndim; d++)
        if (t->shape[d] != p->shape[d]) return false;
    return true;
}

/* names of m's state: count, uniqueness, non-empty; returns the count (or -1). */
static int check_names(const ct_method *m, const char *extra, void *st, ct_tensor **p,
                       const char **names) {
    const char *tag = extra ? extra : "defaults";
    int np = m->params(st, p, CAP);
    CHECK_MSG(np > 0, "%s (%s): no learned tensors", m->name, tag);
    CHECK_MSG(m->param_names != NULL, "%s: no param_names", m->name);
    if (!m->param_names || np <= 0) return -1;
    for (int i = 0; i < CAP; i++) names[i] = NULL;
    int nn = m->param_names(st, names, CAP);
    CHECK_MSG(nn == np, "%s (%s): %d names for %d learned tensors", m->name, tag, nn, np);
    if (nn != np) return -1;
    bool ok = true;
    for (int i = 0; i < nn; i++) {
        bool good = names[i] && *names[i] && strncmp(names[i], "param.", 6) != 0 &&
                    strlen(names[i]) < 120;
        CHECK_MSG(good, "%s (%s): name %d is \"%s\"", m->name, tag, i,
                  names[i] ? names[i] : "(null)");
        ok = ok && good;
        for (int j = 0; good && j < i; j++)
            if (names[j] && !strcmp(names[i], names[j])) {
                ct_test_fail(__FILE__, __LINE__, "%s (%s): tensors %d and %d are both \"%s\"",
                             m->name, tag, j, i, names[i]);
                ok = false;
            }
    }
    /* the same names on a second call (the strings stay valid) */
    const char *again[CAP];
    int n2 = m->param_names(st, again, CAP);
    for (int i = 0; ok && n2 == nn && i < nn; i++) ok = !strcmp(again[i], names[i]);
    CHECK_MSG(ok && n2 == nn, "%s (%s): a second param_names call differs", m->name, tag);
    return ok ? np : -1;
}

/* save m's (filled) state under its names, read the file's keys, load into
 * a fresh state of another seed: the same bytes. */
static void round_trip(const ct_method *m, const char *extra, int idx) {
    const char *tag = extra ? extra : "defaults";
    void *a = make_state(m, 1, extra);
    if (!a) return;
    ct_tensor *p[CAP], *q[CAP];
    const char *names[CAP];
    int np = check_names(m, extra, a, p, names);
    if (np <= 0) {
        m->destroy(a);
        return;
    }
    fill(p, np, 1);
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/%s_%d", ct_test_tmpdir(), m->name, idx);
    mkdir(dir, 0777);
    CHECK_OK(ct_run_save_learned(m, a, dir));
    snprintf(path, sizeof path, "%s/learned.safetensors", dir);
    ct_safetensors *sf = ct_safetensors_open(path);
    CHECK_MSG(sf != NULL, "%s (%s): %s", m->name, tag, ct_last_error());
    if (sf) {
        CHECK(ct_safetensors_count(sf) == np);
        const char *meth = ct_safetensors_meta(sf, "method");
        CHECK(meth && !strcmp(meth, m->name));
        for (int i = 0; i < np; i++) {
            const ct_st_tensor *t = ct_safetensors_find(sf, names[i]);
            CHECK_MSG(t != NULL, "%s (%s): no key \"%s\" in the file", m->name, tag, names[i]);
            if (!t) continue;
            CHECK_MSG(t->dtype == CT_F32 && same_shape(t, p[i]) &&
                          t->nbytes == (size_t)p[i]->numel * sizeof(float) &&
                          !memcmp(t->data, p[i]->data, t->nbytes),
                      "%s (%s): \"%s\" is not tensor %d's shape and bytes", m->name, tag,
                      names[i], i);
        }
        ct_safetensors_close(sf);
    }
    void *b = make_state(m, 2, extra);
    if (b) {
        int nq = m->params(b, q, CAP);
        CHECK(nq == np);
        fill(q, nq, 2); /* differs from a's everywhere a tensor has elements */
        CHECK_OK(ct_run_load_learned(m, b, dir));
        nq = m->params(b, q, CAP); /* a cache sized from the file may be new tensors */
        for (int i = 0; i < np && i < nq; i++)
            CHECK_MSG(q[i]->numel == p[i]->numel &&
                          !memcmp(q[i]->data, p[i]->data, (size_t)p[i]->numel * sizeof(float)),
                      "%s (%s): \"%s\" differs after the round trip", m->name, tag, names[i]);
        m->destroy(b);
    }
    m->destroy(a);
}

/* Variants that name other tensors than the defaults' (class-specific
 * context, bias, ensembles, depths, towers, prompt shapes); small: on the
 * shipped model (deeper towers). */
static const struct {
    const char *method, *extra;
    bool small;
} VARIANTS[] = {
    {"coop", "n_ctx=3 csc=1", false},
    {"lasp", "bias=1", false},
    {"upl", "ensemble=3", false},
    {"ivlp", "text_depth=3 vision_depth=0", false},
    {"clip-lora", "encoder=vision params=qkvo position=top1", false},
    {"clip-lora", "encoder=text params=v", false},
    {"vp", "prompter=fixed_patch", false},
    {"dpt", "cavpt_layers=0", false},
    {"vpt-var", "type=image", false},
    {"ivlp", "text_depth=3 vision_depth=4", true},
    {"vpt-deep", NULL, true},
    {"maple", NULL, true},
    {"promptsrc", "text_depth=3 vision_depth=3", true},
    {"clip-lora", "params=qkvo", true},
    {"upt", NULL, true},
    {"dpt", "cavpt_layers=2", true},
};

static void test_every_method(void) {
    if (!use_tiny()) return;
    int covered = 0;
    for (int i = 0; i < ct_method_count(); i++) {
        const ct_method *m = ct_method_at(i);
        if (!m->params) {
            CHECK_MSG(!m->param_names, "%s: param_names without params", m->name);
            continue;
        }
        round_trip(m, NULL, 0);
        covered++;
    }
    int nv = 0;
    for (int small = 0; small < 2; small++) {
        if (small && !use_small()) break;
        for (size_t v = 0; v < sizeof VARIANTS / sizeof *VARIANTS; v++) {
            if (VARIANTS[v].small != (bool)small) continue;
            const ct_method *m = ct_method_find(VARIANTS[v].method);
            CHECK_MSG(m != NULL, "no method %s", VARIANTS[v].method);
            if (m) round_trip(m, VARIANTS[v].extra, (int)v + 1), nv++;
        }
    }
    printf("    %d methods with learned tensors (tiny fixture), %d variants\n", covered, nv);
}

/* names[] of m (extra) hold every one of want[] (NULL-terminated); first:
 * the first name, when given. */
static void expect(const char *method, const char *extra, const char *first,
                   const char *const *want) {
    const ct_method *m = ct_method_find(method);
    CHECK_MSG(m && m->param_names, "%s: no param_names", method);
    if (!m || !m->param_names) return;
    void *st = make_state(m, 1, extra);
    if (!st) return;
    const char *names[CAP];
    int n = m->param_names(st, names, CAP);
    if (first)
        CHECK_MSG(n > 0 && !strcmp(names[0], first), "%s (%s): first name \"%s\", expected "
                  "\"%s\"", method, extra ? extra : "defaults", n > 0 ? names[0] : "", first);
    for (int w = 0; want && want[w]; w++) {
        bool found = false;
        for (int i = 0; i < n && !found; i++) found = !strcmp(names[i], want[w]);
        CHECK_MSG(found, "%s (%s): no \"%s\"", method, extra ? extra : "defaults", want[w]);
    }
    m->destroy(st);
}

#define LIST(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_official_keys(void) {
    if (!use_small()) return;
    /* the shipped model's 4 layers per tower: depths 3 are 3 */
    const ct_clip_config *c = ct_clip_get_config(g_model);
    CHECK(c->text_layers == 4 && c->vision_layers == 4);
    expect("coop", NULL, "ctx", NULL);
    expect("kgcoop", NULL, "ctx", NULL);
    expect("prograd", NULL, "ctx", NULL);
    expect("tpt", NULL, "ctx", NULL);
    expect("upl", NULL, "ctx", NULL);
    expect("upl", "ensemble=2", "ensemble.0.ctx", LIST("ensemble.1.ctx"));
    expect("plot", NULL, "ctx", NULL);
    expect("cocoop", NULL, "ctx",
           LIST("meta_net.linear1.weight", "meta_net.linear1.bias", "meta_net.linear2.weight",
                "meta_net.linear2.bias"));
    expect("lasp", "bias=1", "prompt_learner.ctx", LIST("prompt_learner.w"));
    expect("clip-adapter", NULL, "fc.0.weight", LIST("fc.2.weight"));
    expect("clippr", NULL, "classifier.0.weight",
           LIST("classifier.0.bias", "classifier.3.weight", "classifier.3.bias",
                "classifier.6.weight"));
    expect("taskres", NULL, "text_feature_residuals", NULL);
    expect("tip-adapter", NULL, "cache_keys", LIST("cache_labels", "alpha", "beta"));
    expect("tip-adapter-f", NULL, "adapter.weight", LIST("cache_labels", "alpha", "beta"));
    expect("linear-probe", NULL, "coef_", LIST("intercept_"));
    expect("pixel-probe", NULL, "coef_", LIST("intercept_"));
    expect("calip", NULL, "betas", NULL);
    expect("wise-ft", NULL, "image_encoder.model.visual.flat",
           LIST("classification_head.weight", "classification_head.bias", "alpha"));
    expect("vp", NULL, "pad_up", LIST("pad_down", "pad_left", "pad_right"));
    expect("vp", "prompter=random_patch", "patch", NULL);
    expect("maple", "depth=3", "prompt_learner.ctx",
           LIST("prompt_learner.proj.weight", "prompt_learner.proj.bias",
                "prompt_learner.compound_prompts_text.0", "prompt_learner.compound_prompts_text.1",
                "prompt_learner.compound_prompt_projections.0.weight",
                "prompt_learner.compound_prompt_projections.1.bias"));
    expect("ivlp", "text_depth=3 vision_depth=3", "prompt_learner.ctx",
           LIST("text_encoder.transformer.resblocks.1.VPT_shallow",
                "text_encoder.transformer.resblocks.2.VPT_shallow", "image_encoder.VPT",
                "image_encoder.transformer.resblocks.1.VPT_shallow",
                "image_encoder.transformer.resblocks.2.VPT_shallow"));
    expect("vpt-deep", NULL, "image_encoder.VPT",
           LIST("image_encoder.transformer.resblocks.1.VPT_shallow",
                "image_encoder.transformer.resblocks.3.VPT_shallow"));
    expect("promptsrc", "text_depth=2 vision_depth=2", "prompt_learner.ctx",
           LIST("image_encoder.VPT", "previous_model_gpa.prompt_learner.ctx",
                "previous_model_gpa.image_encoder.VPT",
                "previous_model_gpa.image_encoder.transformer.resblocks.1.VPT_shallow"));
    expect("clip-lora", "params=qkvo", "transformer.resblocks.0.attn.q_proj.w_lora_A",
           LIST("transformer.resblocks.0.attn.q_proj.w_lora_B",
                "transformer.resblocks.0.attn.k_proj.w_lora_A",
                "transformer.resblocks.0.attn.v_proj.w_lora_B",
                "transformer.resblocks.0.attn.proj.w_lora_A",
                "visual.transformer.resblocks.0.attn.q_proj.w_lora_A",
                "visual.transformer.resblocks.3.attn.proj.w_lora_B"));
    expect("upt", NULL, "ctx",
           LIST("vpt_embeddings_and_deep", "mvlpt_proj_ctx_coop_pre.weight",
                "mvlpt_proj_ctx_coop_post.bias", "mvlpt_proj_ctx_vpt_pre.weight",
                "mvlpt_proj_ctx_vpt_post.bias", "mvlpt_proj.resblocks.0.ln_1.weight",
                "mvlpt_proj.resblocks.0.attn.q_proj_weight",
                "mvlpt_proj.resblocks.0.attn.out_proj.weight",
                "mvlpt_proj.resblocks.0.mlp.c_fc.weight",
                "mvlpt_proj.resblocks.0.mlp.c_proj.bias"));
    expect("dpt", "cavpt_layers=2", "prompt_learner.ctx",
           LIST("image_encoder.transformer.ctx_learner.ctx",
                "image_encoder.transformer.extractor.ctx",
                "image_encoder.transformer.extractor.meta_nets.0.weight",
                "image_encoder.transformer.extractor.attns.0.qmlp.weight",
                "image_encoder.transformer.extractor.lns.0.bias",
                "image_encoder.transformer.extractor.classfiers.0.weight",
                "image_encoder.transformer.extractor.lns2.0.weight",
                "image_encoder.transformer.extractor.lns2.1.bias"));
}

/* The names follow params()' order: a tensor's shape says which it is. */
static void test_order(void) {
    if (!use_small()) return;
    const ct_clip_config *c = ct_clip_get_config(g_model);
    const ct_method *m = ct_method_find("cocoop");
    void *st = m ? make_state(m, 1, NULL) : NULL;
    if (st) {
        ct_tensor *p[CAP];
        const char *n[CAP];
        int np = m->params(st, p, CAP);
        CHECK(m->param_names(st, n, CAP) == np && np == 5);
        /* linear1: (E / 16, E); linear2: (W_t, E / 16) (torch's (out, in)) */
        CHECK(np == 5 && !strcmp(n[1], "meta_net.linear1.weight") && p[1]->ndim == 2 &&
              p[1]->shape[1] == c->embed_dim && !strcmp(n[3], "meta_net.linear2.weight") &&
              p[3]->shape[0] == c->text_width && !strcmp(n[2], "meta_net.linear1.bias") &&
              p[2]->ndim == 1 && p[2]->shape[0] == p[1]->shape[0]);
        m->destroy(st);
    }
    m = ct_method_find("maple");
    st = m ? make_state(m, 1, "depth=3") : NULL;
    if (st) {
        ct_tensor *p[CAP];
        const char *n[CAP];
        int np = m->params(st, p, CAP);
        CHECK(m->param_names(st, n, CAP) == np);
        for (int i = 0; i < np; i++) {
            bool w = strstr(n[i], ".weight") != NULL, b = strstr(n[i], ".bias") != NULL;
            /* projections W_t -> W_v: weight (W_v, W_t), bias (W_v); prompts (n, W_t) */
            if (w) CHECK_MSG(p[i]->ndim == 2 && p[i]->shape[0] == c->vision_width &&
                                 p[i]->shape[1] == c->text_width, "maple %s", n[i]);
            else if (b) CHECK_MSG(p[i]->ndim == 1 && p[i]->shape[0] == c->vision_width,
                                  "maple %s", n[i]);
            else CHECK_MSG(p[i]->ndim == 2 && p[i]->shape[1] == c->text_width, "maple %s", n[i]);
        }
        m->destroy(st);
    }
    m = ct_method_find("clip-lora");
    st = m ? make_state(m, 1, "params=qkvo") : NULL;
    if (st) {
        ct_tensor *p[CAP];
        const char *n[CAP];
        int np = m->params(st, p, CAP);
        CHECK(m->param_names(st, n, CAP) == np);
        for (int i = 0; i < np; i++) {
            bool vis = !strncmp(n[i], "visual.", 7);
            int64_t W = vis ? c->vision_width : c->text_width;
            /* w_lora_A (r, in), w_lora_B (out, r) */
            bool a = strstr(n[i], "w_lora_A") != NULL;
            CHECK_MSG(p[i]->ndim == 2 && p[i]->shape[a ? 1 : 0] == W, "clip-lora %s", n[i]);
        }
        m->destroy(st);
    }
}

/* tpt's init_from reads the context a CoOp run saves, now under "ctx". */
static void test_tpt_init_from_coop(void) {
    if (!use_tiny()) return;
    const ct_method *coop = ct_method_find("coop"), *tpt = ct_method_find("tpt");
    void *cs = make_state(coop, 1, "n_ctx=4 ctx_init=");
    if (!cs) return;
    ct_tensor *p[CAP];
    int np = coop->params(cs, p, CAP);
    fill(p, np, 5);
    char dir[4200], extra[4400];
    snprintf(dir, sizeof dir, "%s/coop_for_tpt", ct_test_tmpdir());
    mkdir(dir, 0777);
    CHECK_OK(ct_run_save_learned(coop, cs, dir));
    snprintf(extra, sizeof extra, "init_from=%s", dir);
    void *ts = make_state(tpt, 1, extra);
    if (ts) {
        ct_tensor *q[CAP];
        int nq = tpt->params(ts, q, CAP);
        CHECK(nq == 1 && np == 1 && q[0]->numel == p[0]->numel &&
              !memcmp(q[0]->data, p[0]->data, (size_t)p[0]->numel * sizeof(float)));
        tpt->destroy(ts);
    }
    coop->destroy(cs);
}

int main(void) {
    RUN(test_every_method);
    RUN(test_official_keys);
    RUN(test_order);
    RUN(test_tpt_init_from_coop);
    ct_bundle_free(&g_small);
    ct_clip_free(g_clip);
    ct_tokenizer_free(g_tok);
    return ct_test_summary();
}
