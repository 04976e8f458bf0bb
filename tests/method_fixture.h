/* Shared by the prompt-method tests (test_coop, test_cocoop,
 * test_kg_prograd): the tiny CLIP fixture with the real BPE vocabulary from
 * ../bpe, float-vs-reference comparison, and the Fashion-MNIST "it
 * learns" runs through ct_run. Header-only; one test binary includes it. */
#ifndef CT_TEST_METHOD_FIXTURE_H
#define CT_TEST_METHOD_FIXTURE_H

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cliptune.h"
#include "harness.h"
#include "model/bundle.h"
#include "api/run.h"

#define TINY_DIR CT_SOURCE_DIR "/tests/fixtures/methods/tiny"

static ct_clip *g_clip;
static ct_tokenizer *g_tok;

/* The fixture model and the tests' part of the real BPE vocabulary, loaded
 * once; false (reported) when either fails to load. */
static inline bool load_fixture(void) {
    if (g_clip && g_tok) return true;
    const char *bpe = ct_test_clip_bpe();
    char v[4096], m[4096];
    snprintf(v, sizeof v, "%s/vocab.json", bpe);
    snprintf(m, sizeof m, "%s/merges.txt", bpe);
    g_tok = ct_tokenizer_load_hf(v, m);
    g_clip = ct_clip_load(TINY_DIR, NULL);
    CHECK_MSG(g_tok && g_clip, "fixture: %s", ct_last_error());
    return g_tok && g_clip;
}

/* got (float) against want (double) within atol + rtol |want|; returns the
 * largest absolute difference (printed by the tests). */
static inline double compare(const char *name, const float *got, const double *want, size_t n,
                             double atol, double rtol) {
    double *g = malloc(n * sizeof *g), mx = 0;
    for (size_t i = 0; i < n; i++) {
        g[i] = got[i];
        double d = fabs(g[i] - want[i]);
        mx = d > mx ? d : mx;
    }
    CHECK_CLOSE_D(name, g, want, n, atol, rtol);
    free(g);
    return mx;
}

static inline bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* The shipped model (its own tokenizer files), for the "learns" checks that
 * need a trained CLIP. */
#define SHIPPED_DIR CT_SOURCE_DIR "/models/cliptune-small"

/* Run methods[i] with sets[i] on Fashion-MNIST (16 shots, seed 1, the first
 * max_test test images) with the model folder model_dir (vocab: its
 * vocab.json, or NULL for the folder's own tokenizer) into
 * <tmp>/<tag>_<method><i>, sharing one feature cache per model. false (test
 * skipped or failed) when the dataset is missing or a run fails; dirs (may
 * be NULL) receive the run directories. */
static inline bool fashion_mnist_runs_on(const char *model_dir, const char *vocab,
                                         const char *const *methods, const char *const *sets,
                                         int n, int64_t max_test, const char *tag,
                                         ct_run_result *res, char (*dirs)[4200]) {
    if (!file_exists("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")) {
        ct_test_skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        return false;
    }
    char cache[4200], dir[4200];
    snprintf(cache, sizeof cache, "%s/fm_cache%s", ct_test_tmpdir(),
             strcmp(model_dir, TINY_DIR) ? "_model" : "");
    mkdir(cache, 0777);
    ct_bundle bundle = {0};
    CHECK_OK(ct_bundle_load(model_dir, vocab, NULL, true, &bundle));
    ct_splits sp = {0};
    CHECK_OK(ct_data_open("fashion-mnist", &sp));
    bool ok = bundle.clip && sp.test;
    for (int r = 0; ok && r < n; r++) {
        snprintf(dir, sizeof dir, "%s/%s_%s%d", ct_test_tmpdir(), tag, methods[r], r);
        if (dirs) snprintf(dirs[r], sizeof dirs[r], "%s", dir);
        ct_run_cfg rc = {0};
        rc.model = ct_model_borrow(&bundle, model_dir), rc.data = &sp;
        rc.data_spec = "fashion-mnist", rc.method = ct_method_find(methods[r]);
        rc.set = sets[r], rc.shots = 16, rc.seed = 1;
        rc.run_dir = dir, rc.cache_dir = cache, rc.max_test = max_test;
        ct_status s = ct_run(&rc, &res[r]);
        ct_model_free(rc.model);
        CHECK_OK(s);
        ok = s == CT_OK;
    }
    ct_bundle_free(&bundle);
    ct_splits_free(&sp);
    return ok;
}

/* The same on the tiny fixture model with the tests' BPE vocabulary. */
static inline bool fashion_mnist_runs(const char *const *methods, const char *const *sets,
                                      int n, int64_t max_test, const char *tag,
                                      ct_run_result *res, char (*dirs)[4200]) {
    char vocab[4096];
    snprintf(vocab, sizeof vocab, "%s/vocab.json", ct_test_clip_bpe());
    return fashion_mnist_runs_on(TINY_DIR, vocab, methods, sets, n, max_test, tag, res, dirs);
}

#endif
