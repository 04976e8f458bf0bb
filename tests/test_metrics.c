/* Metrics (hand-computed cases and a sklearn/Guo reference in
 * tests/fixtures/metrics_ref.h from tools/ref/gen_metrics_ref.py), their
 * JSON/CSV writers, the SVG charts and the markdown reports. */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/json.h"
#include "cliptune.h"
#include "fixtures/metrics_ref.h"
#include "harness.h"
#include "report/report.h"
#include "report/svg.h"
#include "train/metrics.h"

static void path_in(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", ct_test_tmpdir(), name);
}

/* Whole file as a string (NULL on failure, reported). */
static char *slurp(const char *path) {
    char *s = NULL;
    size_t n;
    CHECK_OK(ct_read_file(path, &s, &n));
    return s;
}

/* ------------------------------------------------------------------------ */
/* The hand-worked example                                                   */
/* ------------------------------------------------------------------------ */

/* Three classes, six samples, dyadic probabilities (exact in float):
 *
 *   i  p0      p1     p2      label pred ok  conf   p(label)
 *   0  .75     .125   .125    0     0    1   .75    .75
 *   1  .625    .25    .125    1     0    0   .625   .25
 *   2  .0625   .875   .0625   1     1    1   .875   .875
 *   3  .25     .5     .25     2     1    0   .5     .25
 *   4  .4375   .375   .1875   2     0    0   .4375  .1875
 *   5  .5      .25    .25     0     0    1   .5     .5
 *
 * confusion [true][pred]: [[2,0,0], [1,1,0], [1,1,0]];  top-1 = 3/6.
 * top-5 with K = 3 is top-3: always 1.
 * per-class accuracy (recall): 2/2, 1/2, 0/2.
 * F1 = 2tp / (support + predicted):
 *   class 0: tp 2, support 2, predicted 4 -> 4/6 = 2/3
 *   class 1: tp 1, support 2, predicted 2 -> 2/4 = 1/2
 *   class 2: never predicted              -> 0 (zero_division = 0)
 *   macro = (2/3 + 1/2 + 0) / 3 = 7/18.
 * ECE with B = 4 bins (0,.25], (.25,.5], (.5,.75], (.75,1]:
 *   (.25,.5]:  i3 (.5, wrong), i4 (.4375, wrong), i5 (.5, right):
 *              |1 - 1.4375| / 6 = .4375/6   (i3 and i5 sit on the upper edge)
 *   (.5,.75]:  i0 (.75, right), i1 (.625, wrong): |1 - 1.375| / 6 = .375/6
 *   (.75,1]:   i2 (.875, right): |1 - .875| / 6 = .125/6
 *   ECE = (.4375 + .375 + .125) / 6 = .9375/6 = 0.15625.
 *   (With [lo, hi) bins, as newer torchmetrics, it would be 1.4375/6.)
 * NLL = -ln(.75 * .25 * .875 * .25 * .1875 * .5) / 6 = ln(16384/63) / 6. */
static const float hand_probs[6 * 3] = {
    0.75f,   0.125f, 0.125f,  0.625f, 0.25f,  0.125f, 0.0625f, 0.875f, 0.0625f,
    0.25f,   0.5f,   0.25f,   0.4375f, 0.375f, 0.1875f, 0.5f,   0.25f,  0.25f,
};
static const int hand_labels[6] = {0, 1, 1, 2, 2, 0};

static void test_hand_example(void) {
    ct_metrics m;
    CHECK_OK(ct_metrics_compute(hand_probs, true, hand_labels, 6, 3, 4, &m));
    CHECK(m.n == 6 && m.n_classes == 3 && m.ece_bins == 4);
    CHECK_NEAR("top1", m.top1, 0.5, 1e-15, 0);
    CHECK_NEAR("top5", m.top5, 1.0, 1e-15, 0);
    const double acc[3] = {1.0, 0.5, 0.0}, f1[3] = {2.0 / 3.0, 0.5, 0.0};
    CHECK_CLOSE_D("per_class_acc", m.per_class_acc, acc, 3, 1e-15, 0);
    CHECK_CLOSE_D("per_class_f1", m.per_class_f1, f1, 3, 1e-15, 0);
    CHECK_NEAR("macro_f1", m.macro_f1, 7.0 / 18.0, 1e-15, 0);
    CHECK_NEAR("ece", m.ece, 0.15625, 1e-15, 0);
    CHECK_NEAR("nll", m.nll, log(16384.0 / 63.0) / 6.0, 1e-15, 0);
    const int64_t conf[9] = {2, 0, 0, 1, 1, 0, 1, 1, 0};
    CHECK(memcmp(m.confusion, conf, sizeof conf) == 0);
    ct_metrics_free(&m);
    CHECK(m.confusion == NULL && m.per_class_acc == NULL);
    ct_metrics_free(&m); /* twice is fine */
    ct_metrics_free(NULL);

    /* The same scores as logits ln p: softmax(ln p) = p, so everything but
     * the edge-sensitive ECE agrees to float rounding. */
    float logits[18];
    for (int i = 0; i < 18; i++) logits[i] = logf(hand_probs[i]);
    CHECK_OK(ct_metrics_compute(logits, false, hand_labels, 6, 3, 4, &m));
    CHECK_NEAR("top1 (logits)", m.top1, 0.5, 1e-15, 0);
    CHECK_NEAR("macro_f1 (logits)", m.macro_f1, 7.0 / 18.0, 1e-15, 0);
    CHECK_NEAR("nll (logits)", m.nll, log(16384.0 / 63.0) / 6.0, 1e-6, 0);
    CHECK(memcmp(m.confusion, conf, sizeof conf) == 0);
    ct_metrics_free(&m);
}

/* Random logits and their float softmax give the same metrics. */
static void test_logits_probs_agree(void) {
    enum { N = 300, K = 9 };
    float *logits = malloc(sizeof(float) * N * K), *probs = malloc(sizeof(float) * N * K);
    int labels[N];
    ct_rng r;
    ct_rng_init(&r, 7);
    for (int i = 0; i < N; i++) {
        labels[i] = (int)ct_rng_below(&r, K);
        double mx = -INFINITY, z = 0;
        for (int j = 0; j < K; j++) {
            logits[i * K + j] = 2.0f * ct_rng_normal(&r) + (j == labels[i] ? 1.5f : 0.0f);
            mx = fmax(mx, logits[i * K + j]);
        }
        for (int j = 0; j < K; j++) z += exp(logits[i * K + j] - mx);
        for (int j = 0; j < K; j++) probs[i * K + j] = (float)(exp(logits[i * K + j] - mx) / z);
    }
    ct_metrics a, b;
    CHECK_OK(ct_metrics_compute(logits, false, labels, N, K, 15, &a));
    CHECK_OK(ct_metrics_compute(probs, true, labels, N, K, 15, &b));
    CHECK_NEAR("top1", a.top1, b.top1, 0, 0);
    CHECK_NEAR("top5", a.top5, b.top5, 0, 0);
    CHECK_NEAR("macro_f1", a.macro_f1, b.macro_f1, 0, 0);
    CHECK_NEAR("ece", a.ece, b.ece, 1e-6, 0);
    CHECK_NEAR("nll", a.nll, b.nll, 1e-6, 0);
    CHECK(a.top5 > a.top1 && a.top1 > 0.2 && a.top1 < 0.9);
    CHECK(memcmp(a.confusion, b.confusion, sizeof(int64_t) * K * K) == 0);
    ct_metrics_free(&a);
    ct_metrics_free(&b);
    free(logits);
    free(probs);
}

/* Ties go to the lower index, as torch.argmax and torch.topk. */
static void test_ties(void) {
    float flat[7] = {1, 1, 1, 1, 1, 1, 1};
    int label = 4;
    ct_metrics m;
    CHECK_OK(ct_metrics_compute(flat, false, &label, 1, 7, 0, &m));
    CHECK(m.confusion[4 * 7 + 0] == 1); /* predicted class 0 */
    CHECK(m.top1 == 0.0 && m.top5 == 1.0); /* rank 4 < 5 */
    CHECK(m.ece_bins == CT_ECE_BINS_DEFAULT);
    CHECK_NEAR("flat nll", m.nll, log(7.0), 1e-12, 0);
    ct_metrics_free(&m);
    label = 5; /* rank 5: outside the top 5 */
    CHECK_OK(ct_metrics_compute(flat, false, &label, 1, 7, 0, &m));
    CHECK(m.top5 == 0.0);
    ct_metrics_free(&m);

    /* a tie for first between classes 1 and 2: 1 wins; class 2 is ranked
     * second, ahead of the lower scores */
    float two[6] = {0, 3, 3, 0, 0, 0};
    label = 2;
    CHECK_OK(ct_metrics_compute(two, false, &label, 1, 6, 0, &m));
    CHECK(m.top1 == 0.0 && m.top5 == 1.0 && m.confusion[2 * 6 + 1] == 1);
    ct_metrics_free(&m);
    /* tie among five: label 5 (scores equal to classes 0,1,3,4 ahead) */
    float many[7] = {2, 2, 9, 2, 2, 2, 1};
    label = 5; /* ahead: 2 (higher), 0, 1, 3, 4 (equal, lower index) -> rank 5 */
    CHECK_OK(ct_metrics_compute(many, false, &label, 1, 7, 0, &m));
    CHECK(m.top5 == 0.0);
    ct_metrics_free(&m);
    label = 4; /* rank 4 */
    CHECK_OK(ct_metrics_compute(many, false, &label, 1, 7, 0, &m));
    CHECK(m.top5 == 1.0);
    ct_metrics_free(&m);
}

/* sklearn's average='macro' covers the classes in the labels or the
 * predictions: a class in neither is left out (NaN), one only predicted
 * counts as 0. */
static void test_macro_f1_presence(void) {
    /* K = 4. labels 0,0,1,1; preds 0,2,1,1 (class 2 predicted, no samples;
     * class 3 absent). F1: 0: 2*1/(2+1) = 2/3; 1: 2*2/(2+2) = 1; 2: 0.
     * macro = (2/3 + 1 + 0) / 3 = 5/9. */
    const float s[16] = {5, 0, 0, 0, 0, 0, 5, 0, 0, 5, 0, 0, 0, 5, 0, 0};
    const int y[4] = {0, 0, 1, 1};
    ct_metrics m;
    CHECK_OK(ct_metrics_compute(s, false, y, 4, 4, 0, &m));
    CHECK_NEAR("macro_f1", m.macro_f1, 5.0 / 9.0, 1e-15, 0);
    CHECK(isnan(m.per_class_f1[3]) && m.per_class_f1[2] == 0.0);
    CHECK(isnan(m.per_class_acc[2]) && isnan(m.per_class_acc[3]));
    CHECK_NEAR("acc0", m.per_class_acc[0], 0.5, 0, 0);
    ct_metrics_free(&m);
}

static void test_bad_input(void) {
    ct_metrics m;
    int y[2] = {0, 3};
    float s[6] = {1, 2, 3, 4, 5, 6};
    CHECK(ct_metrics_compute(s, false, y, 2, 3, 0, &m) == CT_ERR_ARG);
    CHECK(strstr(ct_last_error(), "labels[1] = 3") != NULL);
    CHECK(m.confusion == NULL && m.n == 0);
    ct_metrics_free(&m);
    y[1] = 1;
    s[4] = NAN;
    CHECK(ct_metrics_compute(s, false, y, 2, 3, 0, &m) == CT_ERR_ARG);
    CHECK(strstr(ct_last_error(), "test image 1 for class 1") && strstr(ct_last_error(), "nan"));
    s[4] = 5;
    /* logits passed as probabilities */
    CHECK(ct_metrics_compute(s, true, y, 2, 3, 0, &m) == CT_ERR_ARG);
    float p[6] = {0.2f, 0.3f, 0.4f, 0.1f, 0.1f, 0.1f}; /* row sums .9 and .3 */
    CHECK(ct_metrics_compute(p, true, y, 2, 3, 0, &m) == CT_ERR_ARG);
    CHECK(strstr(ct_last_error(), "sum") != NULL);
    CHECK(ct_metrics_compute(s, false, y, 0, 3, 0, &m) == CT_ERR_ARG);
    CHECK_MSG(strstr(ct_last_error(), "the test split is empty"), "%s", ct_last_error());
    CHECK(ct_metrics_compute(s, false, y, 2, 0, 0, &m) == CT_ERR_ARG);
    CHECK(ct_metrics_compute(NULL, false, y, 2, 3, 0, &m) == CT_ERR_ARG);
    CHECK(ct_metrics_compute(s, false, y, 2, 3, 0, NULL) == CT_ERR_ARG);
    /* a zero probability of the label: NLL is +inf, honestly */
    float z[3] = {1.0f, 0.0f, 0.0f};
    int lab = 1;
    CHECK_OK(ct_metrics_compute(z, true, &lab, 1, 3, 0, &m));
    CHECK(isinf(m.nll) && m.nll > 0);
    ct_metrics_free(&m);
}

static void test_harmonic_mean_and_mean_std(void) {
    CHECK_NEAR("hm", ct_harmonic_mean(0.8, 0.6), 2 * 0.8 * 0.6 / 1.4, 1e-15, 0);
    CHECK(ct_harmonic_mean(0.0, 0.0) == 0.0);
    CHECK(ct_harmonic_mean(0.7, 0.0) == 0.0);
    CHECK_NEAR("hm equal", ct_harmonic_mean(72.5, 72.5), 72.5, 1e-12, 0);

    /* np.mean / np.std (ddof = 0) of [1, 2, 3, 4]: 2.5, sqrt(1.25) */
    double v[5] = {1, 2, NAN, 3, 4}, mean, sd;
    ct_mean_std(v, 5, &mean, &sd);
    CHECK_NEAR("mean", mean, 2.5, 1e-15, 0);
    CHECK_NEAR("std", sd, sqrt(1.25), 1e-15, 0);
    ct_mean_std(v, 1, &mean, &sd);
    CHECK(mean == 1.0 && sd == 0.0);
    ct_mean_std(v + 2, 1, &mean, &sd);
    CHECK(isnan(mean) && isnan(sd));
    ct_mean_std(NULL, 0, &mean, &sd);
    CHECK(isnan(mean) && isnan(sd));
    /* three seeds as in CoOp's tables: 70.1, 71.3, 69.8 */
    double seeds[3] = {70.1, 71.3, 69.8};
    ct_mean_std(seeds, 3, &mean, &sd);
    CHECK_NEAR("coop mean", mean, 70.4, 1e-12, 0);
    CHECK_NEAR("coop std", sd, sqrt((0.09 + 0.81 + 0.36) / 3.0), 1e-12, 0);
}

/* ------------------------------------------------------------------------ */
/* Against the Python references                                             */
/* ------------------------------------------------------------------------ */

static void check_ref(const char *what, const ct_metrics *m, const mref_expect *e) {
    char name[64];
    snprintf(name, sizeof name, "%s top1", what);
    CHECK_NEAR(name, m->top1, e->top1, 1e-12, 0);
    snprintf(name, sizeof name, "%s top5", what);
    CHECK_NEAR(name, m->top5, e->top5, 1e-12, 0);
    snprintf(name, sizeof name, "%s macro_f1", what);
    CHECK_NEAR(name, m->macro_f1, e->macro_f1, 1e-9, 0);
    snprintf(name, sizeof name, "%s ece", what);
    CHECK_NEAR(name, m->ece, e->ece, 1e-9, 0);
    snprintf(name, sizeof name, "%s nll", what);
    CHECK_NEAR(name, m->nll, e->nll, 1e-9, 0);
    snprintf(name, sizeof name, "%s per_class_f1", what);
    CHECK_CLOSE_D(name, m->per_class_f1, e->per_class_f1, MREF_K, 1e-9, 0);
    snprintf(name, sizeof name, "%s per_class_acc", what);
    CHECK_CLOSE_D(name, m->per_class_acc, e->per_class_acc, MREF_K, 1e-12, 0);
    CHECK_MSG(memcmp(m->confusion, e->confusion, sizeof e->confusion) == 0,
              "%s: confusion differs from sklearn's", what);
}

static void test_python_reference(void) {
    ct_metrics m;
    CHECK_OK(ct_metrics_compute(mref_logits, false, mref_labels, MREF_N, MREF_K, 0, &m));
    CHECK(m.ece_bins == MREF_BINS);
    check_ref("logits", &m, &mref_from_logits);
    ct_metrics_free(&m);
    CHECK_OK(ct_metrics_compute(mref_probs, true, mref_labels, MREF_N, MREF_K, MREF_BINS, &m));
    check_ref("probs", &m, &mref_from_probs);
    ct_metrics_free(&m);
}

/* ------------------------------------------------------------------------ */
/* Writers                                                                   */
/* ------------------------------------------------------------------------ */

/* No writer may leave its temp file behind. */
static void check_no_temp_files(void) {
    DIR *d = opendir(ct_test_tmpdir());
    CHECK(d != NULL);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        CHECK_MSG(strstr(e->d_name, ".tmp.") == NULL, "temp file left behind: %s", e->d_name);
    closedir(d);
}

static void test_metrics_json(void) {
    ct_metrics m;
    CHECK_OK(ct_metrics_compute(hand_probs, true, hand_labels, 6, 3, 4, &m));
    const char *names[3] = {"cat", "dog \"big\"", "bird"};
    char path[4096];
    path_in(path, sizeof path, "metrics.json");
    CHECK_OK(ct_metrics_save_json(&m, names, path));
    cJSON *root = ct_json_load(path);
    CHECK(root != NULL);
    if (root) {
        double v;
        int64_t k;
        CHECK_OK(ct_json_get_double(root, "top1", &v, "metrics"));
        CHECK(v == 0.5);
        CHECK_OK(ct_json_get_double(root, "macro_f1", &v, "metrics"));
        CHECK_NEAR("json macro_f1", v, 7.0 / 18.0, 1e-15, 0);
        CHECK_OK(ct_json_get_double(root, "ece", &v, "metrics"));
        CHECK(v == 0.15625);
        CHECK_OK(ct_json_get_int(root, "n", &k, "metrics"));
        CHECK(k == 6);
        CHECK_OK(ct_json_get_int(root, "ece_bins", &k, "metrics"));
        CHECK(k == 4);
        const cJSON *per = cJSON_GetObjectItemCaseSensitive(root, "per_class");
        CHECK(cJSON_GetArraySize(per) == 3);
        const cJSON *dog = cJSON_GetArrayItem(per, 1);
        const char *nm = NULL;
        CHECK_OK(ct_json_get_string(dog, "name", &nm, "per_class[1]"));
        CHECK(nm && strcmp(nm, "dog \"big\"") == 0);
        CHECK_OK(ct_json_get_double(dog, "accuracy", &v, "per_class[1]"));
        CHECK(v == 0.5);
        CHECK_OK(ct_json_get_int(dog, "support", &k, "per_class[1]"));
        CHECK(k == 2);
        const cJSON *bird = cJSON_GetArrayItem(per, 2);
        CHECK_OK(ct_json_get_int(bird, "predicted", &k, "per_class[2]"));
        CHECK(k == 0);
        const cJSON *conf = cJSON_GetObjectItemCaseSensitive(root, "confusion");
        CHECK(cJSON_GetArraySize(conf) == 3);
        const cJSON *row1 = cJSON_GetArrayItem(conf, 1);
        CHECK(cJSON_GetArraySize(row1) == 3 && cJSON_GetArrayItem(row1, 0)->valuedouble == 1 &&
              cJSON_GetArrayItem(row1, 1)->valuedouble == 1 &&
              cJSON_GetArrayItem(row1, 2)->valuedouble == 0);
        cJSON_Delete(root);
    }
    ct_metrics_free(&m);

    /* NaN (a class with no samples) is written as null; names default to
     * indices */
    const float s[8] = {1, 0, 0, 1, 1, 0, 0, 1};
    const int y[4] = {0, 0, 0, 0};
    CHECK_OK(ct_metrics_compute(s, false, y, 4, 2, 0, &m));
    CHECK_OK(ct_metrics_save_json(&m, NULL, path));
    root = ct_json_load(path);
    CHECK(root != NULL);
    if (root) {
        const cJSON *c1 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "per_class"),
                                             1);
        CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(c1, "accuracy")));
        const char *nm = NULL;
        CHECK_OK(ct_json_get_string(c1, "name", &nm, "per_class[1]"));
        CHECK(nm && strcmp(nm, "1") == 0);
        cJSON_Delete(root);
    }
    ct_metrics_free(&m);
    ct_metrics empty = {0};
    CHECK(ct_metrics_save_json(&empty, NULL, path) == CT_ERR_ARG);
    check_no_temp_files();
}

/* A minimal RFC 4180 reader: up to 8 rows x 6 fields of up to 127 bytes. */
typedef struct csv_table {
    int rows;
    int cols[8];
    char f[8][6][128];
} csv_table;

static bool csv_read(const char *s, csv_table *t) {
    memset(t, 0, sizeof *t);
    while (*s) {
        if (t->rows == 8) return false;
        int r = t->rows++;
        for (;;) {
            if (t->cols[r] == 6) return false;
            char *out = t->f[r][t->cols[r]++];
            size_t n = 0;
            if (*s == '"') {
                for (s++;; s++) {
                    if (!*s) return false;
                    if (*s == '"') {
                        if (s[1] != '"') break;
                        s++;
                    }
                    if (n < 127) out[n++] = *s;
                }
                s++;
            } else {
                while (*s && *s != ',' && *s != '\n') {
                    if (*s == '"' && n < 127) return false; /* bare quote */
                    out[n++] = *s++;
                }
            }
            out[n] = 0;
            if (*s == ',') {
                s++;
                continue;
            }
            if (*s == '\n') s++;
            else if (*s) return false;
            break;
        }
    }
    return true;
}

static void test_predictions_csv(void) {
    const float probs[3 * 3] = {0.2f, 0.5f, 0.3f, 0.6f, 0.2f, 0.2f, 0.4f, 0.4f, 0.2f};
    const int labels[3] = {1, 2, -1}; /* the last is unlabelled */
    const char *keys[3] = {"img/a,1.jpg", "b.jpg", NULL};
    const char *names[3] = {"plain", "say \"hi\", ok", "two\nlines"};
    char path[4096];
    path_in(path, sizeof path, "preds.csv");
    CHECK_OK(ct_predictions_save_csv(path, keys, labels, probs, 3, 3, names));
    char *text = slurp(path);
    if (!text) return;
    CHECK(strncmp(text, "item,label,pred,confidence,label_name,pred_name\n", 48) == 0);
    CHECK(strstr(text, "\"img/a,1.jpg\",1,1,0.5,\"say \"\"hi\"\", ok\",\"say \"\"hi\"\", ok\"\n") !=
          NULL);
    csv_table t;
    CHECK(csv_read(text, &t));
    CHECK(t.rows == 4);
    for (int r = 0; r < t.rows; r++)
        CHECK_MSG(t.cols[r] == 6, "row %d has %d fields", r, t.cols[r]);
    CHECK(strcmp(t.f[1][0], "img/a,1.jpg") == 0 && strcmp(t.f[1][4], names[1]) == 0);
    /* row 2: label 2 ("two\nlines"), pred 0 */
    CHECK(strcmp(t.f[2][1], "2") == 0 && strcmp(t.f[2][2], "0") == 0);
    CHECK((float)strtod(t.f[2][3], NULL) == 0.6f); /* %.9g: the float round-trips */
    CHECK(strcmp(t.f[2][4], "two\nlines") == 0 && strcmp(t.f[2][5], "plain") == 0);
    /* row 3: no key (row index), unlabelled, tie 0.4/0.4 -> class 0 */
    CHECK(strcmp(t.f[3][0], "2") == 0 && t.f[3][1][0] == 0 && t.f[3][4][0] == 0);
    CHECK(strcmp(t.f[3][2], "0") == 0);
    free(text);

    /* without names, labels or keys: indices */
    CHECK_OK(ct_predictions_save_csv(path, NULL, NULL, probs, 3, 3, NULL));
    text = slurp(path);
    if (text) {
        CHECK(csv_read(text, &t) && t.rows == 4);
        CHECK(strcmp(t.f[1][5], "1") == 0 && t.f[1][4][0] == 0 && strcmp(t.f[1][0], "0") == 0);
        free(text);
    }
    const int bad[3] = {0, 3, 0};
    CHECK(ct_predictions_save_csv(path, NULL, bad, probs, 3, 3, NULL) == CT_ERR_ARG);
    check_no_temp_files();
}

/* ------------------------------------------------------------------------ */
/* SVG                                                                       */
/* ------------------------------------------------------------------------ */

static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == ':' || c == '.';
}

/* An entity reference at s ("&...;") that XML knows without a DTD. */
static bool valid_entity(const char *s) {
    static const char *const ents[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
    for (int i = 0; i < 5; i++)
        if (strncmp(s, ents[i], strlen(ents[i])) == 0) return true;
    if (s[1] == '#') {
        const char *p = s + 2;
        bool hex = *p == 'x';
        if (hex) p++;
        const char *q = p;
        while ((hex ? strchr("0123456789abcdefABCDEF", *p) : strchr("0123456789", *p)) && *p)
            p++;
        return p > q && *p == ';';
    }
    return false;
}

/* Enough of an XML parser to prove well-formedness of what the writers emit:
 * one root element, balanced and properly nested tags, quoted attributes,
 * no raw '<' or bad '&' in text or attribute values, comments and the XML
 * declaration skipped. why receives the reason on failure. */
static bool xml_well_formed(const char *s, char *why, size_t nwhy) {
    char stack[64][64];
    int depth = 0, roots = 0;
    const char *p = s;
    if (strncmp(p, "<?xml", 5) == 0) {
        p = strstr(p, "?>");
        if (!p) return snprintf(why, nwhy, "unterminated declaration"), false;
        p += 2;
    }
    while (*p) {
        if (*p != '<') {
            if (*p == '&' && !valid_entity(p))
                return snprintf(why, nwhy, "bad entity at byte %td", p - s), false;
            if (depth == 0 && !strchr(" \t\r\n", *p))
                return snprintf(why, nwhy, "text outside the root at byte %td", p - s), false;
            p++;
            continue;
        }
        if (strncmp(p, "<!--", 4) == 0) {
            p = strstr(p, "-->");
            if (!p) return snprintf(why, nwhy, "unterminated comment"), false;
            p += 3;
            continue;
        }
        bool closing = p[1] == '/';
        p += closing ? 2 : 1;
        const char *name = p;
        while (name_char(*p)) p++;
        size_t len = (size_t)(p - name);
        if (len == 0 || len >= 64) return snprintf(why, nwhy, "bad tag name at %td", p - s), false;
        if (closing) {
            if (depth == 0 || strlen(stack[depth - 1]) != len ||
                strncmp(stack[depth - 1], name, len) != 0)
                return snprintf(why, nwhy, "mismatched </%.*s> at byte %td", (int)len, name,
                                name - s), false;
            depth--;
            while (*p == ' ') p++;
            if (*p++ != '>') return snprintf(why, nwhy, "bad closing tag"), false;
            continue;
        }
        if (depth == 0 && ++roots > 1) return snprintf(why, nwhy, "two roots"), false;
        bool self_closing = false;
        for (;;) {
            while (strchr(" \t\r\n", *p) && *p) p++;
            if (p[0] == '/' && p[1] == '>') {
                self_closing = true;
                p += 2;
                break;
            }
            if (*p == '>') {
                p++;
                break;
            }
            const char *an = p;
            while (name_char(*p)) p++;
            if (p == an || *p != '=' || (p[1] != '"' && p[1] != '\''))
                return snprintf(why, nwhy, "bad attribute at byte %td", p - s), false;
            char q = p[1];
            for (p += 2; *p != q; p++) {
                if (!*p || *p == '<') return snprintf(why, nwhy, "bad attribute value"), false;
                if (*p == '&' && !valid_entity(p))
                    return snprintf(why, nwhy, "bad entity in attribute at %td", p - s), false;
            }
            p++;
        }
        if (!self_closing) {
            if (depth == 64) return snprintf(why, nwhy, "too deep"), false;
            memcpy(stack[depth], name, len);
            stack[depth][len] = 0;
            depth++;
        }
    }
    if (depth != 0) return snprintf(why, nwhy, "%d unclosed elements", depth), false;
    if (roots != 1) return snprintf(why, nwhy, "no root element"), false;
    return true;
}

static void check_xml(const char *path) {
    char *text = slurp(path);
    if (!text) return;
    char why[256] = "";
    CHECK_MSG(xml_well_formed(text, why, sizeof why), "%s: not well-formed: %s", path, why);
    free(text);
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static void test_checker_rejects(void) {
    char why[256];
    CHECK(xml_well_formed("<a><b/></a>", why, sizeof why));
    CHECK(!xml_well_formed("<a><b></a></b>", why, sizeof why));
    CHECK(!xml_well_formed("<a>x & y</a>", why, sizeof why));
    CHECK(!xml_well_formed("<a t=\"<\"/>", why, sizeof why));
    CHECK(!xml_well_formed("<a>", why, sizeof why));
    CHECK(!xml_well_formed("<a/><b/>", why, sizeof why));
}

static void test_svg_line_plot(void) {
    const double x[5] = {1, 2, 4, 8, 16};
    const double y[3 * 5] = {60.1, 63.2, 66.0, 69.4, 72.5,      /* */
                             58.0, NAN,  64.0, 68.0, 71.0,      /* a missing point */
                             NAN,  NAN,  NAN,  NAN,  NAN};      /* nothing at all */
    const double e[3 * 5] = {1.2, 0.8, 0.5, 0.4, 0.3, 2.0, NAN, 0, 0.2, 0.1, 0, 0, 0, 0, 0};
    const char *names[3] = {"CoOp", "Tip-Adapter <F> & \"co\"", "linear 'probe'"};
    char path[4096];
    path_in(path, sizeof path, "shots.svg");
    CHECK_OK(ct_svg_line_plot(path, "Accuracy vs shots: A&B", "shots", "accuracy (%)", x, 5,
                              names, y, e, 3, true));
    check_xml(path);
    char *text = slurp(path);
    if (text) {
        CHECK(strstr(text, "CoOp") != NULL);
        CHECK(strstr(text, "Tip-Adapter &lt;F&gt; &amp; &quot;co&quot;") != NULL);
        CHECK(strstr(text, "linear &apos;probe&apos;") != NULL);
        CHECK(strstr(text, "Accuracy vs shots: A&amp;B") != NULL);
        CHECK(strstr(text, "<F>") == NULL);
        /* the log2 axis is labelled with the shots themselves */
        CHECK(strstr(text, ">16</text>") != NULL && strstr(text, ">1</text>") != NULL);
        /* series 0: one line; series 1: broken at the gap into two (the
         * first a single point); series 2: none */
        CHECK(count(text, "<polyline") == 3);
        CHECK(count(text, "<circle") == 4 + 5 + 3); /* markers + legend */
        free(text);
    }
    /* linear axis, no error bars, default names, negative values */
    const double xl[3] = {-1, 0, 2.5}, yl[3] = {-0.5, 0.25, 1.0};
    CHECK_OK(ct_svg_line_plot(path, NULL, NULL, NULL, xl, 3, NULL, yl, NULL, 1, false));
    check_xml(path);
    text = slurp(path);
    if (text) {
        CHECK(strstr(text, "series 0") != NULL);
        /* y ticks -0.6 .. 1.0 by 0.2, x ticks -1.0 .. 2.5 by 0.5; zero is
         * never printed as "-0.0" */
        CHECK(strstr(text, ">-0.6</text>") != NULL && strstr(text, ">1.0</text>") != NULL);
        CHECK(strstr(text, ">-1.0</text>") != NULL && strstr(text, ">2.5</text>") != NULL);
        CHECK(strstr(text, ">0.0</text>") != NULL && strstr(text, ">-0.0<") == NULL);
        free(text);
    }
    const double bad_x[2] = {0, 1};
    CHECK(ct_svg_line_plot(path, NULL, NULL, NULL, bad_x, 2, NULL, yl, NULL, 1, true) ==
          CT_ERR_ARG);
    check_no_temp_files();
}

static void test_svg_confusion(void) {
    const int64_t c[9] = {8, 2, 0, 1, 3, 0, 0, 0, 0}; /* class 2: no samples */
    /* invalid UTF-8, a control character, markup and a long name */
    const char *names[3] = {"ca\xff" "t\x01", "<dog>&", "a very long class name that will be cut"};
    char path[4096];
    path_in(path, sizeof path, "confusion.svg");
    CHECK_OK(ct_svg_confusion(path, "Confusion", c, 3, names));
    check_xml(path);
    char *text = slurp(path);
    if (text) {
        CHECK(strstr(text, "ca\xEF\xBF\xBDt\xEF\xBF\xBD") != NULL);
        CHECK(strstr(text, "&lt;dog&gt;&amp;") != NULL);
        CHECK(strstr(text, "a very long class name t\xE2\x80\xA6") != NULL);
        CHECK(strstr(text, ">80</text>") != NULL && strstr(text, ">75</text>") != NULL);
        free(text);
    }
    /* K = 40: no per-cell numbers, still labelled and well-formed */
    enum { K = 40 };
    int64_t *big = calloc(K * K, sizeof *big);
    if (!big) return;
    for (int i = 0; i < K; i++) {
        big[i * K + i] = 10;
        big[i * K + (i + 1) % K] = 3;
    }
    CHECK_OK(ct_svg_confusion(path, NULL, big, K, NULL));
    check_xml(path);
    text = slurp(path);
    if (text) {
        CHECK(strstr(text, ">77</text>") == NULL);
        CHECK(strstr(text, ">39</text>") != NULL); /* the last class label */
        free(text);
    }
    big[5] = -1;
    CHECK(ct_svg_confusion(path, NULL, big, K, NULL) == CT_ERR_ARG);
    free(big);
    check_no_temp_files();
}

/* ------------------------------------------------------------------------ */
/* Reports                                                                   */
/* ------------------------------------------------------------------------ */

static void test_report_run(void) {
    char dir[4096];
    path_in(dir, sizeof dir, "run1");
    CHECK(mkdir(dir, 0777) == 0);
    ct_metrics m;
    CHECK_OK(ct_metrics_compute(hand_probs, true, hand_labels, 6, 3, 4, &m));
    const char *names[3] = {"cat", "dog|wolf", "bird"};
    const char *kv[4] = {"method", "coop", "ctx_init", "a photo of a"};
    CHECK_OK(ct_report_run(dir, "CoOp on pets", kv, 2, &m, names, "epoch 1\n```\nepoch 2"));
    char path[4200];
    snprintf(path, sizeof path, "%s/report.md", dir);
    char *md = slurp(path);
    if (md) {
        CHECK(strncmp(md, "# CoOp on pets\n", 15) == 0);
        CHECK(strstr(md, "| method | coop |\n") != NULL);
        CHECK(strstr(md, "| ctx\\_init | a photo of a |\n") != NULL);
        CHECK(strstr(md, "| top-1 accuracy | 50.00% |\n") != NULL);
        CHECK(strstr(md, "| top-3 accuracy | 100.00% |\n") != NULL);
        CHECK(strstr(md, "| macro-F1 | 38.89% |\n") != NULL);
        CHECK(strstr(md, "| ECE (4 bins) | 15.63% |\n") != NULL ||
              strstr(md, "| ECE (4 bins) | 15.62% |\n") != NULL);
        CHECK(strstr(md, "| samples | 6 |\n") != NULL);
        CHECK(strstr(md, "| cat | 100.00% | 66.67% | 2 |\n") != NULL);
        CHECK(strstr(md, "| dog\\|wolf | 50.00% | 50.00% | 2 |\n") != NULL);
        CHECK(strstr(md, "| bird | 0.00% | 0.00% | 2 |\n") != NULL);
        CHECK(strstr(md, "![confusion matrix](confusion.svg)") != NULL);
        /* the log's own ``` cannot close the fence */
        CHECK(strstr(md, "````text\nepoch 1\n```\nepoch 2\n````\n") != NULL);
        free(md);
    }
    snprintf(path, sizeof path, "%s/confusion.svg", dir);
    check_xml(path);
    ct_metrics_free(&m);
    CHECK(ct_report_run(dir, NULL, NULL, 0, &m, NULL, NULL) == CT_ERR_ARG); /* freed metrics */
}

static void test_report_protocol(void) {
    const char *methods[2] = {"CoOp", "Tip-Adapter-F"};
    const int shots[5] = {1, 2, 4, 8, 16};
    const double mean[10] = {0.5712, 0.5781, NAN, 0.6550, 0.6967,
                             0.6012, 0.6187, 0.6402, 0.6671, 0.7026};
    const double std[10] = {0.0123, 0.0084, NAN, 0.0031, 0.0040,
                            0.0050, 0.0042, 0.0033, 0.0021, 0.0011};
    char md_path[4096], svg_path[4096];
    path_in(md_path, sizeof md_path, "protocol.md");
    path_in(svg_path, sizeof svg_path, "protocol.svg");
    CHECK_OK(ct_report_protocol(md_path, svg_path, "ImageNet few-shot", methods, 2, shots, 5,
                                mean, std, 3));
    char *md = slurp(md_path);
    if (md) {
        CHECK(strstr(md, "| method | 1 shot | 2 shots | 4 shots | 8 shots | 16 shots |\n") !=
              NULL);
        CHECK(strstr(md, "| CoOp | 57.1 \xC2\xB1 1.2 | 57.8 \xC2\xB1 0.8 | \xE2\x80\x93 | "
                         "65.5 \xC2\xB1 0.3 | 69.7 \xC2\xB1 0.4 |\n") != NULL);
        CHECK(strstr(md, "| Tip-Adapter-F | 60.1 \xC2\xB1 0.5 |") != NULL);
        CHECK(strstr(md, "over 3 seeds") != NULL);
        CHECK(strstr(md, "![accuracy vs shots](protocol.svg)") != NULL);
        free(md);
    }
    check_xml(svg_path);
    char *svg = slurp(svg_path);
    if (svg) {
        CHECK(strstr(svg, ">CoOp<") != NULL && strstr(svg, ">Tip-Adapter-F<") != NULL);
        free(svg);
    }
    /* one seed: the means alone, no plot */
    CHECK_OK(ct_report_protocol(md_path, NULL, NULL, methods, 2, shots, 5, mean, std, 1));
    md = slurp(md_path);
    if (md) {
        CHECK(strstr(md, "| CoOp | 57.1 | 57.8 |") != NULL);
        CHECK(strstr(md, "![") == NULL);
        free(md);
    }
    check_no_temp_files();
}

int main(void) {
    RUN(test_hand_example);
    RUN(test_logits_probs_agree);
    RUN(test_ties);
    RUN(test_macro_f1_presence);
    RUN(test_bad_input);
    RUN(test_harmonic_mean_and_mean_std);
    RUN(test_python_reference);
    RUN(test_metrics_json);
    RUN(test_predictions_csv);
    RUN(test_checker_rejects);
    RUN(test_svg_line_plot);
    RUN(test_svg_confusion);
    RUN(test_report_run);
    RUN(test_report_protocol);
    return ct_test_summary();
}
