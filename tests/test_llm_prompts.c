/* Language-model prompt methods: CuPL (src/methods/cupl.c) and VCD
 * (src/methods/vcd.c).
 *
 *   - parity with tools/ref/gen_llm_prompts_ref.py (an independent float64
 *     PyTorch re-implementation of the official code's math) on fixed
 *     sentence embeddings injected through ct_cupl_class_weight /
 *     ct_cupl_state_new and ct_vcd_state_new: CuPL's class weights and
 *     logits with and without templates, VCD's logits and explanations, and
 *     VCD's prompt strings;
 *   - the sentence file: class matching (exact, case, '_'), and clear errors
 *     for a missing class, a non-object, a non-list value, a non-string
 *     element, an empty list, ambiguous keys, bad JSON;
 *   - end to end on the tiny model (tests/fixtures/methods/tiny) with the
 *     example files in data/descriptors: create succeeds, logits are (n, K),
 *     a too-long VCD prompt is rejected; through ct_run and `cliptune
 *     predict --explain` on Fashion-MNIST's first test images;
 *   - CuPL with exactly the zero-shot template sentence per class gives
 *     zero-shot's logits (training-free: there is no "it learns" check).
 * The BPE vocabulary is tests/fixtures/bpe/clip_subset. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cliptune.h"
#include "fixtures/llm_prompts_ref.h"
#include "harness.h"
#include "methods/cupl.h"
#include "methods/method_templates.h"
#include "methods/vcd.h"
#include "model/bundle.h"
#include "api/run.h"

#define TINY_DIR CT_SOURCE_DIR "/tests/fixtures/methods/tiny"
#define DESC_DIR CT_SOURCE_DIR "/data/descriptors"
#define RTOL 1e-5

static char *FM[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                       "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

static double g_max_rel; /* largest |got - want| / max(|want|, 1) in the parity tests */

static void close_to(const char *name, const float *got, const double *want, size_t n,
                     double atol) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        double rel = d / (fabs(want[i]) > 1 ? fabs(want[i]) : 1);
        if (rel > g_max_rel) g_max_rel = rel;
        if (!(d <= atol + RTOL * fabs(want[i])) && bad++ < 3)
            ct_test_fail(__FILE__, __LINE__, "%s[%zu] = %.9g, expected %.9g (tol %g + %g|ref|)",
                         name, i, (double)got[i], want[i], atol, RTOL);
    }
}

static bool has(const char *msg, const char *part) { return strstr(msg, part) != NULL; }

/* s failed with code want and a message containing part */
static void error_has(ct_status s, ct_status want, const char *part, int line) {
    if (s != want || !has(ct_last_error(), part))
        ct_test_fail(__FILE__, line, "got %s \"%s\", expected %s containing \"%s\"",
                     ct_status_str(s), ct_last_error(), ct_status_str(want), part);
}
#define ERROR_HAS(s, want, part) error_has(s, want, part, __LINE__)

/* ---- parity on injected embeddings ---- */

static void cupl_weights(bool with_templates, float *W) {
    const float *e = lref_cupl_emb;
    float buf[(LREF_NTMPL + 8) * LREF_E];
    for (int k = 0; k < LREF_K; k++) {
        int n = 0, c = lref_cupl_counts[k];
        /* create()'s order: templates first, then the sentences */
        if (with_templates) {
            memcpy(buf, lref_tmpl_emb + (size_t)k * LREF_NTMPL * LREF_E,
                   sizeof(float) * LREF_NTMPL * LREF_E);
            n = LREF_NTMPL;
        }
        CHECK(c <= 8);
        memcpy(buf + (size_t)n * LREF_E, e, sizeof(float) * (size_t)c * LREF_E);
        n += c, e += (size_t)c * LREF_E;
        CHECK_OK(ct_cupl_class_weight(buf, n, LREF_E, W + (size_t)k * LREF_E));
    }
}

static void predict(const ct_method *m, void *st, const float *x, int64_t n, float *out) {
    int labels[64] = {0};
    CHECK(n <= 64);
    ct_features f = {.n = n, .dim = LREF_E, .x = (float *)x, .labels = labels};
    CHECK_OK(ct_predict(m, st, &f, out));
}

static void test_cupl_parity(void) {
    const ct_method *m = ct_method_find("cupl");
    CHECK(m != NULL);
    if (!m) return;
    for (int both = 0; both < 2; both++) {
        float W[LREF_K * LREF_E], logits[LREF_N * LREF_K];
        cupl_weights(both, W);
        close_to(both ? "cupl+templates W" : "cupl W", W, both ? lref_cuplb_w : lref_cupl_w,
                 LREF_K * LREF_E, 1e-6);
        void *st = NULL;
        CHECK_OK(ct_cupl_state_new(W, LREF_K, LREF_E, lref_scale, &st));
        if (!st) continue;
        predict(m, st, lref_x, LREF_N, logits);
        close_to(both ? "cupl+templates logits" : "cupl logits", logits,
                 both ? lref_cuplb_logits : lref_cupl_logits, LREF_N * LREF_K, 1e-5);
        m->destroy(st);
    }
    printf("    CuPL vs reference: max relative error %.3g\n", g_max_rel);
}

static void *vcd_fixture_state(void) {
    int off[LREF_K + 1] = {0};
    for (int k = 0; k < LREF_K; k++) off[k + 1] = off[k] + lref_vcd_counts[k];
    static char nbuf[64][32];
    const char *names[64];
    CHECK(off[LREF_K] <= 64);
    for (int k = 0; k < LREF_K; k++)
        for (int i = off[k]; i < off[k + 1]; i++) {
            snprintf(nbuf[i], sizeof nbuf[i], "class %d descriptor %d", k, i - off[k]);
            names[i] = nbuf[i];
        }
    void *st = NULL;
    CHECK_OK(ct_vcd_state_new(LREF_K, LREF_E, lref_vcd_emb, off, names, lref_scale, &st));
    return st;
}

static void test_vcd_parity(void) {
    const ct_method *m = ct_method_find("vcd");
    CHECK(m != NULL);
    void *st = m ? vcd_fixture_state() : NULL;
    if (!st) return;
    double before = g_max_rel;
    g_max_rel = 0;
    float logits[LREF_N * LREF_K];
    predict(m, st, lref_x, LREF_N, logits);
    close_to("vcd logits", logits, lref_vcd_logits, LREF_N * LREF_K, 1e-5);
    for (int i = 0; i < LREF_N; i++) {
        int best = 0;
        for (int k = 1; k < LREF_K; k++)
            if (logits[i * LREF_K + k] > logits[i * LREF_K + best]) best = k;
        CHECK_MSG(best == lref_vcd_pred[i], "image %d: predicted %d, reference %d", i, best,
                  lref_vcd_pred[i]);
        /* all of the predicted class's descriptors, best first */
        int idx[LREF_VCD_MAXD];
        float sc[LREF_VCD_MAXD];
        CHECK_OK(ct_vcd_explain(st, lref_x + i * LREF_E, lref_vcd_pred[i], LREF_VCD_MAXD, idx,
                                sc));
        for (int r = 0; r < LREF_VCD_MAXD; r++) {
            int want = lref_vcd_order[i * LREF_VCD_MAXD + r];
            CHECK_MSG(idx[r] == want, "image %d rank %d: descriptor %d, reference %d", i, r,
                      idx[r], want);
            if (want < 0)
                CHECK_MSG(isnan(sc[r]), "image %d rank %d: score %g past the class's count", i,
                          r, (double)sc[r]);
            else
                close_to("vcd explain score", &sc[r], &lref_vcd_order_scores[i * LREF_VCD_MAXD + r],
                         1, 1e-5);
        }
        /* a fixed class's top few */
        CHECK_OK(ct_vcd_explain(st, lref_x + i * LREF_E, LREF_EXPLAIN_CLASS, LREF_EXPLAIN_TOP,
                                idx, sc));
        for (int r = 0; r < LREF_EXPLAIN_TOP; r++) {
            CHECK_MSG(idx[r] == lref_fix_order[i * LREF_EXPLAIN_TOP + r],
                      "image %d class %d rank %d: descriptor %d, reference %d", i,
                      LREF_EXPLAIN_CLASS, r, idx[r], lref_fix_order[i * LREF_EXPLAIN_TOP + r]);
            close_to("vcd fixed-class score", &sc[r], &lref_fix_scores[i * LREF_EXPLAIN_TOP + r],
                     1, 1e-5);
        }
    }
    printf("    VCD vs reference: max relative error %.3g\n", g_max_rel);
    if (before > g_max_rel) g_max_rel = before;
    /* descriptors by index, counts, argument errors */
    CHECK(ct_vcd_num_descriptors(st, 1) == lref_vcd_counts[1]);
    CHECK(ct_vcd_num_descriptors(st, LREF_K) == 0);
    const char *d = ct_vcd_descriptor(st, 3, 2);
    CHECK_MSG(d && !strcmp(d, "class 3 descriptor 2"), "got %s", d ? d : "(null)");
    CHECK(ct_vcd_descriptor(st, 2, 1) == NULL);
    CHECK(ct_vcd_descriptor(st, -1, 0) == NULL);
    int idx[2];
    float sc[2];
    ERROR_HAS(ct_vcd_explain(st, lref_x, LREF_K, 2, idx, sc), CT_ERR_ARG, "class 4");
    ERROR_HAS(ct_vcd_explain(st, lref_x, 0, 0, idx, sc), CT_ERR_ARG, "top 0");
    m->destroy(st);
    int bad_off[3] = {0, 2, 2};
    void *st2 = NULL;
    ERROR_HAS(ct_vcd_state_new(2, LREF_E, lref_vcd_emb, bad_off, NULL, 1, &st2), CT_ERR_ARG,
              "class 1 has no descriptors");
}

static void test_vcd_prompts(void) {
    int n = (int)(sizeof lref_prompts / sizeof *lref_prompts);
    for (int i = 0; i < n; i++) {
        char *p = ct_vcd_prompt(lref_prompts[i].cls, lref_prompts[i].desc,
                                (ct_vcd_naming)lref_prompts[i].naming, lref_prompts[i].modify,
                                lref_prompts[i].suffix);
        CHECK_MSG(p && !strcmp(p, lref_prompts[i].want), "case %d: \"%s\", expected \"%s\"", i,
                  p ? p : "(null)", lref_prompts[i].want);
        free(p);
    }
}

/* ---- the sentence file ---- */

static const char *write_tmp(const char *name, const char *text) {
    static char path[8][4200];
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, sizeof path[0], "%s/%s", ct_test_tmpdir(), name);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return p;
}

static void test_class_texts(void) {
    char *names[3] = {"golden_retriever", "Tabby cat", "ox"};
    ct_class_texts t;
    const char *ok = write_tmp("ok.json", "{\"Golden Retriever\": [\"a dog\", \"golden fur\"],"
                               " \"tabby cat\": [\"stripes\"], \"ox\": [\"horns\"],"
                               " \"unused\": [\"x\"]}");
    CHECK_OK(ct_class_texts_load(ok, "t", 3, names, &t));
    if (t.off) {
        CHECK(t.n_classes == 3 && t.off[0] == 0 && t.off[1] == 2 && t.off[2] == 3 &&
              t.off[3] == 4);
        CHECK(!strcmp(t.texts[0], "a dog") && !strcmp(t.texts[1], "golden fur") &&
              !strcmp(t.texts[2], "stripes") && !strcmp(t.texts[3], "horns"));
    }
    ct_class_texts_free(&t);
    /* an exact match wins over a case-insensitive one */
    char *one[1] = {"Ox"};
    const char *exact = write_tmp("exact.json", "{\"ox\": [\"a\"], \"Ox\": [\"b\"]}");
    CHECK_OK(ct_class_texts_load(exact, "t", 1, one, &t));
    CHECK(t.off && !strcmp(t.texts[0], "b"));
    ct_class_texts_free(&t);

    static const struct {
        const char *json, *part;
    } bad[] = {
        {"{\"Golden Retriever\": [\"a\"], \"Tabby cat\": [\"b\"]}", "no entry for class \"ox\""},
        {"[\"a\", \"b\"]", "expected a JSON object"},
        {"{\"ox\": \"horns\"}", "\"ox\" must be a list of strings, found a string"},
        {"{\"ox\": [\"horns\", 3]}", "\"ox\"[1] must be a string, found a number"},
        {"{\"ox\": []}", "\"ox\" is an empty list"},
        {"{\"unused\": [[\"x\"]], \"ox\": [\"a\"]}",
         "\"unused\"[0] must be a string, found an array"},
        {"{\"golden retriever\": [\"a\"], \"Golden Retriever\": [\"b\"], \"tabby cat\": [\"c\"], "
         "\"ox\": [\"d\"]}",
         "matches both"},
        {"{\"ox\": [\"a\"],}", "JSON parse error"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "bad%zu.json", i);
        const char *p = write_tmp(nm, bad[i].json);
        ct_status s = ct_class_texts_load(p, "cupl: descriptions=x", 3, names, &t);
        CHECK_MSG(s == CT_ERR_FORMAT && has(ct_last_error(), bad[i].part) &&
                      has(ct_last_error(), "cupl: descriptions=x"),
                  "case %zu: %s \"%s\", expected \"%s\"", i, ct_status_str(s), ct_last_error(),
                  bad[i].part);
        CHECK(t.off == NULL && t.texts == NULL);
    }
    ERROR_HAS(ct_class_texts_load("/nonexistent/d.json", "vcd: descriptors=d", 3, names, &t),
              CT_ERR_FORMAT, "/nonexistent/d.json");
}

/* ---- the methods on the tiny model ---- */

static ct_clip *g_clip;
static ct_tokenizer *g_tok;

static bool load_fixture(bool need_tok) {
    if (!g_clip) g_clip = ct_clip_load(TINY_DIR, NULL);
    CHECK_MSG(g_clip != NULL, "tiny model: %s", ct_last_error());
    if (!need_tok || g_tok) return g_clip != NULL;
    const char *bpe = ct_test_clip_bpe();
    char v[4096], m[4096];
    snprintf(v, sizeof v, "%s/vocab.json", bpe);
    snprintf(m, sizeof m, "%s/merges.txt", bpe);
    g_tok = ct_tokenizer_load_hf(v, m);
    CHECK_MSG(g_tok != NULL, "tokenizer: %s", ct_last_error());
    return g_clip && g_tok;
}

static ct_task fm_task(void) {
    ct_task t = {0};
    t.clip = g_clip, t.tok = g_tok, t.n_classes = 10, t.classnames = FM;
    t.dataset_name = "fashion-mnist", t.seed = 1;
    return t;
}

/* method->create with hp = defaults + text, every key read */
static ct_status create(const char *method, const ct_task *task, const char *text, void **st) {
    const ct_method *m = ct_method_find(method);
    CHECK(m != NULL);
    if (!m) return CT_ERR_ARG;
    ct_kv hp = {0};
    ct_status s = ct_kv_parse(&hp, m->defaults);
    if (s == CT_OK) s = ct_kv_parse(&hp, text);
    *st = NULL;
    if (s == CT_OK) s = m->create(task, &hp, st);
    if (s == CT_OK) s = ct_kv_check_used(&hp, method);
    ct_kv_free(&hp);
    return s;
}

static void test_create_errors(void) {
    if (!load_fixture(false)) return;
    ct_task t = fm_task();
    t.tok = NULL; /* the file is read before anything is encoded */
    void *st;
    ERROR_HAS(create("cupl", &t, "", &st), CT_ERR_ARG, "no descriptions= given");
    ERROR_HAS(create("vcd", &t, "", &st), CT_ERR_ARG, "no descriptors= given");
    const char *missing = write_tmp("missing.json", "{\"T-shirt/top\": [\"a\"], \"Trouser\": "
                                    "[\"b\"], \"Pullover\": [\"c\"]}");
    char hp[4300];
    snprintf(hp, sizeof hp, "descriptions=%s", missing);
    ERROR_HAS(create("cupl", &t, hp, &st), CT_ERR_FORMAT, "no entry for class \"Dress\"");
    snprintf(hp, sizeof hp, "descriptors=%s", missing);
    ERROR_HAS(create("vcd", &t, hp, &st), CT_ERR_FORMAT, "no entry for class \"Dress\"");
    snprintf(hp, sizeof hp, "descriptors=%s/fashion-mnist.json name=middle", DESC_DIR);
    ERROR_HAS(create("vcd", &t, hp, &st), CT_ERR_ARG, "name=middle");
    snprintf(hp, sizeof hp, "descriptors=%s/fashion-mnist.json modify=2", DESC_DIR);
    ERROR_HAS(create("vcd", &t, hp, &st), CT_ERR_ARG, "modify=2");
    snprintf(hp, sizeof hp, "descriptions=%s/fashion-mnist-cupl.json", DESC_DIR);
    ERROR_HAS(create("cupl", &t, hp, &st), CT_ERR_ARG, "no tokenizer");
    snprintf(hp, sizeof hp, "descriptions=%s/fashion-mnist-cupl.json templates=nope{", DESC_DIR);
    CHECK(create("cupl", &t, hp, &st) != CT_OK);
}

/* n random image features (n, E) from the tiny model's image tower */
static float *image_features(int n) {
    const ct_clip_config *c = ct_clip_get_config(g_clip);
    int S = c->image_size, E = c->embed_dim;
    ct_graph *g = ct_graph_create(0);
    ct_graph_set_grad(g, false);
    int64_t shape[4] = {n, 3, S, S};
    ct_tensor *px = ct_graph_tensor(g, 4, shape);
    ct_rng r;
    ct_rng_init(&r, 3);
    if (px) ct_rng_fill_normal(&r, px->data, (size_t)px->numel, 0, 1);
    ct_tensor *f = ct_clip_encode_image(g, g_clip, px, NULL, false, NULL);
    float *out = malloc((size_t)n * (size_t)E * sizeof *out);
    CHECK(f && out);
    if (f && out) memcpy(out, f->data, (size_t)n * (size_t)E * sizeof *out);
    ct_graph_free(g);
    return out;
}

static void test_end_to_end_tiny(void) {
    if (!load_fixture(true)) return;
    ct_task t = fm_task();
    int n = 5;
    float *x = image_features(n);
    if (!x) return;
    static const struct {
        const char *method, *hp;
    } cases[] = {
        {"cupl", "descriptions=" DESC_DIR "/fashion-mnist-cupl.json"},
        {"cupl", "descriptions=" DESC_DIR "/fashion-mnist-cupl.json templates=dataset"},
        {"cupl", "descriptions=" DESC_DIR "/fashion-mnist.json templates=imagenet-select"},
        {"vcd", "descriptors=" DESC_DIR "/fashion-mnist.json"},
        {"vcd", "descriptors=" DESC_DIR "/fashion-mnist.json name=append modify=0 suffix=."},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        void *st = NULL;
        ct_status s = create(cases[c].method, &t, cases[c].hp, &st);
        CHECK_MSG(s == CT_OK, "%s %s: %s", cases[c].method, cases[c].hp, ct_last_error());
        if (s != CT_OK) continue;
        const ct_method *m = ct_method_find(cases[c].method);
        ct_graph *g = ct_graph_create(0);
        ct_graph_set_grad(g, false);
        int labels[8] = {0};
        ct_batch b = {n, x, labels, NULL, 0, 0, NULL, NULL, 0};
        ct_tensor *l = m->logits(st, g, &b);
        CHECK_MSG(l && l->ndim == 2 && l->shape[0] == n && l->shape[1] == 10,
                  "%s: logits shape", cases[c].method);
        for (int64_t i = 0; l && i < l->numel; i++)
            CHECK_MSG(isfinite(l->data[i]), "%s: logit %lld = %g", cases[c].method, (long long)i,
                      (double)l->data[i]);
        if (l && !strcmp(cases[c].method, "vcd")) {
            /* the logit is the mean of all the class's descriptor scores */
            int idx[5];
            float sc[5];
            CHECK_OK(ct_vcd_explain(st, x, 7, 5, idx, sc));
            double mean = 0;
            for (int r = 0; r < 5; r++) mean += sc[r] / 5.0;
            CHECK_MSG(fabs(mean - l->data[7]) <= 1e-5 + 1e-5 * fabs(mean), "mean %g logit %g",
                      mean, (double)l->data[7]);
            CHECK(ct_vcd_num_descriptors(st, 7) == 5 && idx[4] >= 0 && sc[0] >= sc[4]);
            const char *d = ct_vcd_descriptor(st, 7, 0);
            CHECK_MSG(d && !strcmp(d, "laces across the top"), "got %s", d ? d : "(null)");
        }
        ct_graph_free(g);
        m->destroy(st);
    }
    /* a prompt longer than the context: CuPL truncates, VCD refuses */
    char longs[2400], json[2600];
    strcpy(longs, "a");
    for (int i = 0; i < 100; i++) strcat(longs, " very");
    strcat(longs, " long sleeve");
    json[0] = 0;
    strcat(json, "{");
    for (int k = 0; k < 10; k++) {
        char e[2500];
        snprintf(e, sizeof e, "%s\"%s\": [\"%s\"]", k ? ", " : "", FM[k], k == 4 ? longs : "x");
        strcat(json, e);
    }
    strcat(json, "}");
    const char *lp = write_tmp("long.json", json);
    char hp[4300];
    void *st = NULL;
    snprintf(hp, sizeof hp, "descriptions=%s", lp);
    CHECK_OK(create("cupl", &t, hp, &st));
    if (st) ct_method_find("cupl")->destroy(st);
    snprintf(hp, sizeof hp, "descriptors=%s", lp);
    ERROR_HAS(create("vcd", &t, hp, &st), CT_ERR_ARG, "vcd: class \"Coat\"");
    CHECK(has(ct_last_error(), "more than context length 77"));
    free(x);
}

/* CuPL with, per class, exactly the sentence zero-shot's template makes is
 * zero-shot */
static void test_cupl_equals_zeroshot(void) {
    if (!load_fixture(true)) return;
    ct_task t = fm_task();
    char *tmpl = NULL;
    CHECK_OK(ct_template_for_dataset(NULL, "fashion-mnist", &tmpl, NULL));
    if (!tmpl) return;
    char json[4096] = "{";
    for (int k = 0; k < 10; k++) {
        char *s = ct_template_fill(tmpl, FM[k]);
        char e[512];
        snprintf(e, sizeof e, "%s\"%s\": [\"%s\"]", k ? ", " : "", FM[k], s ? s : "");
        strcat(json, e);
        free(s);
    }
    strcat(json, "}");
    free(tmpl);
    char hp[4300];
    snprintf(hp, sizeof hp, "descriptions=%s", write_tmp("zs.json", json));
    void *zs = NULL, *cu = NULL;
    CHECK_OK(create("zeroshot", &t, "templates=dataset", &zs));
    CHECK_OK(create("cupl", &t, hp, &cu));
    int n = 7;
    float *x = image_features(n);
    if (zs && cu && x) {
        float a[7 * 10], b[7 * 10];
        int labels[7] = {0};
        ct_features f = {.n = n, .dim = ct_clip_get_config(g_clip)->embed_dim, .x = x,
                         .labels = labels};
        CHECK_OK(ct_predict(ct_method_find("zeroshot"), zs, &f, a));
        CHECK_OK(ct_predict(ct_method_find("cupl"), cu, &f, b));
        double mx = 0;
        for (int i = 0; i < n * 10; i++) mx = fmax(mx, fabs((double)a[i] - b[i]));
        printf("    CuPL with zero-shot's sentences vs zero-shot: max |diff| %.3g\n", mx);
        CHECK_MSG(mx == 0, "CuPL differs from zero-shot by up to %g", mx);
    }
    free(x);
    if (zs) ct_method_find("zeroshot")->destroy(zs);
    if (cu) ct_method_find("cupl")->destroy(cu);
}

/* ---- through ct_run and the CLI, on Fashion-MNIST ---- */

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static char out_buf[1 << 16];

static int run_cmd(const char *cmdline) {
    char full[16384];
    snprintf(full, sizeof full, "%s 2>&1", cmdline);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = fread(out_buf, 1, sizeof out_buf - 1, p);
    out_buf[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_run_and_explain(void) {
    if (!file_exists("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")) {
        ct_test_skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return;
    }
    if (!load_fixture(true)) return;
    ct_bundle bundle = {0};
    bundle.clip = g_clip, bundle.tok = g_tok;
    /* the folder's own preprocessing: the CLI reloads the run from the folder,
     * and a run refuses a model whose preprocessing is not the one it had */
    CHECK_OK(ct_preprocess_cfg_from_hf(TINY_DIR "/preprocessor_config.json", &bundle.pre));
    ct_splits sp = {0};
    CHECK_OK(ct_data_open("fashion-mnist", &sp));
    if (!sp.test) return;
    static const struct {
        const char *method, *set;
    } runs[] = {
        {"cupl", "descriptions=" DESC_DIR "/fashion-mnist-cupl.json"},
        {"vcd", "descriptors=" DESC_DIR "/fashion-mnist.json"},
    };
    char vcd_dir[4300] = "";
    for (size_t r = 0; r < sizeof runs / sizeof *runs; r++) {
        char dir[4300];
        snprintf(dir, sizeof dir, "%s/run_%s", ct_test_tmpdir(), runs[r].method);
        ct_run_cfg rc = {0};
        rc.model = ct_model_borrow(&bundle, TINY_DIR), rc.data = &sp;
        rc.data_spec = "fashion-mnist", rc.method = ct_method_find(runs[r].method);
        rc.set = runs[r].set, rc.shots = 0, rc.seed = 1, rc.run_dir = dir, rc.max_test = 20;
        ct_run_result res = {0};
        CHECK_OK(ct_run(&rc, &res));
        ct_model_free(rc.model);
        CHECK(res.top1 >= 0 && res.top1 <= 1);
        printf("    %s through ct_run, first 20 test images, tiny random model: top-1 %.0f%%\n",
               runs[r].method, 100 * res.top1);
        if (r == 1) snprintf(vcd_dir, sizeof vcd_dir, "%s", dir);
    }
    ct_splits_free(&sp);
    /* `cliptune predict --explain` (the CLI sits beside this test binary) */
    char exe[4096], cli[4200];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    snprintf(cli, sizeof cli, "%s/cliptune", exe);
    if (!file_exists(cli) || !vcd_dir[0]) {
        printf("    (no %s: predict --explain not checked)\n", cli);
        return;
    }
    char img[4300];
    snprintf(img, sizeof img, "%s/img.ppm", ct_test_tmpdir());
    FILE *f = fopen(img, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fprintf(f, "P6\n32 32\n255\n");
    for (int i = 0; i < 32 * 32 * 3; i++) fputc((i * 37) & 255, f);
    fclose(f);
    const char *bpe = ct_test_clip_bpe();
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "%s predict --run %s --bpe %s/vocab.json "
             "--explain 3 %s", cli, vcd_dir, bpe, img);
    int rc = run_cmd(cmd);
    CHECK_MSG(rc == 0, "predict --explain: exit %d: %s", rc, out_buf);
    int lines = 0;
    for (char *p = out_buf; (p = strstr(p, "\n  because\t")); p++) lines++;
    CHECK_MSG(lines == 3, "expected 3 explanation lines, got %d:\n%s", lines, out_buf);
    printf("    predict --explain 3:\n%s", out_buf);
    snprintf(cmd, sizeof cmd, "%s predict --run %s/run_cupl --bpe %s/vocab.json "
             "--explain 3 %s", cli, ct_test_tmpdir(), bpe, img);
    CHECK(run_cmd(cmd) == 2 && has(out_buf, "--explain needs a vcd run"));
}

int main(void) {
    RUN(test_cupl_parity);
    RUN(test_vcd_parity);
    RUN(test_vcd_prompts);
    RUN(test_class_texts);
    RUN(test_create_errors);
    RUN(test_end_to_end_tiny);
    RUN(test_cupl_equals_zeroshot);
    RUN(test_run_and_explain);
    ct_clip_free(g_clip);
    ct_tokenizer_free(g_tok);
    return ct_test_summary();
}
