/* Multi-label metrics: a hand-worked case, the references of
 * tests/fixtures/mlmetrics_ref.h (tools/ref/gen_mlmetrics_ref.py: sklearn's
 * average_precision_score, VOC 11-point AP, ML-GCN's CP/CR/CF1/OP/OR/OF1,
 * DualCoOp's top-3 calc_F1), invariance to the order of the images, ties
 * and the error contract. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cliptune.h"
#include "fixtures/mlmetrics_ref.h"
#include "harness.h"

/* Every field of a against b (ap included), |a - b| <= tol + tol * |b|. */
static void check_same(const char *what, const ct_ml_metrics *a, const ct_ml_metrics *b,
                       double tol) {
    CHECK_MSG(a->n == b->n && a->n_classes == b->n_classes &&
                  a->n_pos_classes == b->n_pos_classes && a->top_k == b->top_k,
              "%s: n %lld/%lld, K %d/%d, positive classes %d/%d, top_k %d/%d", what,
              (long long)a->n, (long long)b->n, a->n_classes, b->n_classes, a->n_pos_classes,
              b->n_pos_classes, a->top_k, b->top_k);
    const double ga[14] = {a->map, a->map_voc07, a->cp,  a->cr,  a->cf1,  a->op,  a->or_,
                           a->of1, a->cp3,       a->cr3, a->cf13, a->op3, a->or3, a->of13};
    const double gb[14] = {b->map, b->map_voc07, b->cp,  b->cr,  b->cf1,  b->op,  b->or_,
                           b->of1, b->cp3,       b->cr3, b->cf13, b->op3, b->or3, b->of13};
    char name[128];
    snprintf(name, sizeof name, "%s: map, map_voc07, cp, cr, cf1, op, or, of1, cp3, cr3, cf13, "
             "op3, or3, of13", what);
    CHECK_CLOSE_D(name, ga, gb, 14, tol, tol);
    if (a->ap && b->ap && a->n_classes == b->n_classes) {
        snprintf(name, sizeof name, "%s: ap", what);
        CHECK_CLOSE_D(name, a->ap, b->ap, (size_t)a->n_classes, tol, tol);
    }
}

/* Four images, three classes, probabilities, threshold 0.5:
 *
 *   i  s0  s1  s2    y0 y1 y2
 *   0  .9  .2  .6    1  0  1
 *   1  .4  .8  .6    0  1  -1   (class 2 unknown: out of everything)
 *   2  .7  .3  .1    0  0  1
 *   3  .2  .5  .5    1  0  0
 *
 * AP, ranking the known pairs by score:
 *   class 0: 1 0 0 1 -> (1/1 + 2/4) / 2 = 3/4
 *   class 1: 1 0 0 0 -> 1
 *   class 2: 1 0 1   -> (1/1 + 2/3) / 2 = 5/6;      mAP = 31/36.
 * VOC07, the highest precision at recall >= t for t = 0, .1, ..., 1:
 *   class 0: curve (R, P) (.5, 1) (.5, .5) (.5, 1/3) (1, .5):
 *            6 points at 1 (t <= .5), 5 at .5 -> 8.5/11
 *   class 1: 1;  class 2: (.5, 1) (.5, .5) (1, 2/3) -> (6 + 5 * 2/3) / 11 = 28/33
 *   map_voc07 = (25.5 + 33 + 28) / 99 = 173/198.
 * At 0.5 (.5 predicted): Nc = 1 1 1, Np = 2 2 2 (the unknown .6 not counted),
 *   Ng = 2 1 2: CP = 1/2, CR = (1/2 + 1 + 1/2) / 3 = 2/3, CF1 = 4/7;
 *   OP = 3/6, OR = 3/5, OF1 = 6/11.
 * Top-3 with K = 3: every known pair predicted: Np = 4 4 3, Nc = Ng:
 *   CP3 = (2/4 + 1/4 + 2/3) / 3 = 17/36, CR3 = 1, OP3 = 5/11, OR3 = 1. */
static const float hand_scores[12] = {.9f, .2f, .6f, .4f, .8f, .6f, .7f, .3f, .1f, .2f, .5f, .5f};
static const int8_t hand_targets[12] = {1, 0, 1, 0, 1, -1, 0, 0, 1, 1, 0, 0};

static void test_hand_example(void) {
    ct_ml_metrics m;
    CHECK_OK(ct_ml_metrics_compute(hand_scores, true, hand_targets, 4, 3, 0.5, &m));
    CHECK(m.n == 4 && m.n_classes == 3 && m.n_pos_classes == 3 && m.top_k == 3);
    CHECK(m.thresh == 0.5);
    const double ap[3] = {0.75, 1.0, 5.0 / 6.0};
    CHECK_CLOSE_D("ap", m.ap, ap, 3, 1e-15, 0);
    CHECK_NEAR("map", m.map, 31.0 / 36.0, 1e-15, 0);
    CHECK_NEAR("map_voc07", m.map_voc07, 173.0 / 198.0, 1e-15, 0);
    CHECK_NEAR("cp", m.cp, 0.5, 1e-15, 0);
    CHECK_NEAR("cr", m.cr, 2.0 / 3.0, 1e-15, 0);
    CHECK_NEAR("cf1", m.cf1, 4.0 / 7.0, 1e-15, 0);
    CHECK_NEAR("op", m.op, 0.5, 1e-15, 0);
    CHECK_NEAR("or", m.or_, 0.6, 1e-15, 0);
    CHECK_NEAR("of1", m.of1, 6.0 / 11.0, 1e-15, 0);
    CHECK_NEAR("cp3", m.cp3, 17.0 / 36.0, 1e-15, 0);
    CHECK_NEAR("cr3", m.cr3, 1.0, 1e-15, 0);
    CHECK_NEAR("op3", m.op3, 5.0 / 11.0, 1e-15, 0);
    CHECK_NEAR("or3", m.or3, 1.0, 1e-15, 0);
    CHECK_NEAR("of13", m.of13, 2.0 * 5.0 / 11.0 / (5.0 / 11.0 + 1.0), 1e-15, 0);
    ct_ml_metrics_free(&m);
    CHECK(m.ap == NULL && m.n == 0);
    ct_ml_metrics_free(&m); /* twice is fine */
    ct_ml_metrics_free(NULL);

    /* The same as logits: sigmoid keeps the order, so AP and top-3 agree;
     * at thresh 0.5 the logit of .5 is 0, predicted again. */
    float logits[12];
    for (int i = 0; i < 12; i++) logits[i] = logf(hand_scores[i] / (1.0f - hand_scores[i]));
    logits[10] = logits[11] = 0.0f;
    CHECK_OK(ct_ml_metrics_compute(logits, false, hand_targets, 4, 3, 0.5, &m));
    CHECK_NEAR("map (logits)", m.map, 31.0 / 36.0, 1e-15, 0);
    CHECK_NEAR("cf1 (logits)", m.cf1, 4.0 / 7.0, 1e-15, 0);
    CHECK_NEAR("of1 (logits)", m.of1, 6.0 / 11.0, 1e-15, 0);
    CHECK_NEAR("op3 (logits)", m.op3, 5.0 / 11.0, 1e-15, 0);
    ct_ml_metrics_free(&m);
}

static void test_python_reference(void) {
    for (int c = 0; c < MLREF_NCASES; c++) {
        const mlref_case *r = &mlref_cases[c];
        ct_ml_metrics m;
        CHECK_OK(ct_ml_metrics_compute(r->scores, r->are_probs, r->targets, r->n, r->K,
                                       r->thresh, &m));
        if (!m.ap) continue;
        ct_ml_metrics want = {
            .n_classes = r->K, .n = r->n, .n_pos_classes = r->n_pos_classes,
            .map = r->map, .map_voc07 = r->map_voc07,
            .cp = r->cp, .cr = r->cr, .cf1 = r->cf1, .op = r->op, .or_ = r->or_, .of1 = r->of1,
            .cp3 = r->cp3, .cr3 = r->cr3, .cf13 = r->cf13,
            .op3 = r->op3, .or3 = r->or3, .of13 = r->of13,
            .top_k = r->top_k, .ap = (double *)r->ap,
        };
        check_same(r->name, &m, &want, 1e-12);
        CHECK(m.thresh == r->thresh);
        ct_ml_metrics_free(&m);
    }
}

/* Reordering the images changes nothing, tied scores included. */
static void test_image_order(void) {
    ct_rng rng;
    ct_rng_init(&rng, 11);
    for (int c = 0; c < MLREF_NCASES; c++) {
        const mlref_case *r = &mlref_cases[c];
        int64_t n = r->n;
        int K = r->K;
        float *s = malloc(sizeof *s * (size_t)(n * K));
        int8_t *y = malloc((size_t)(n * K));
        int64_t *perm = malloc(sizeof *perm * (size_t)n);
        if (!s || !y || !perm) {
            CHECK(!"out of memory");
            free(s), free(y), free(perm);
            return;
        }
        for (int64_t i = 0; i < n; i++) perm[i] = i;
        for (int pass = 0; pass < 3; pass++) {
            if (pass == 0) { /* reversed */
                for (int64_t i = 0; i < n; i++) perm[i] = n - 1 - i;
            } else { /* Fisher-Yates */
                for (int64_t i = n - 1; i > 0; i--) {
                    int64_t j = (int64_t)ct_rng_below(&rng, (uint64_t)i + 1), t = perm[i];
                    perm[i] = perm[j];
                    perm[j] = t;
                }
            }
            for (int64_t i = 0; i < n; i++) {
                memcpy(s + i * K, r->scores + perm[i] * K, sizeof *s * (size_t)K);
                memcpy(y + i * K, r->targets + perm[i] * K, (size_t)K);
            }
            ct_ml_metrics a, b;
            CHECK_OK(ct_ml_metrics_compute(r->scores, r->are_probs, r->targets, n, K, r->thresh,
                                           &a));
            CHECK_OK(ct_ml_metrics_compute(s, r->are_probs, y, n, K, r->thresh, &b));
            char what[64];
            snprintf(what, sizeof what, "%s permuted (pass %d)", r->name, pass);
            if (a.ap && b.ap) check_same(what, &b, &a, 1e-15);
            ct_ml_metrics_free(&a);
            ct_ml_metrics_free(&b);
        }
        free(s);
        free(y);
        free(perm);
    }
}

/* Top-3 ties go to the lower class index, as torch.topk; K < 3 is top-K. */
static void test_topk_ties(void) {
    /* image 0 flat: top-3 is 0, 1, 2 (its positive, class 3, missed);
     * image 1 {1, 2, 2, 2, 2}: top-3 is 1, 2, 3 (class 3 hit).
     * Nc = 1 of Np = 6 predictions, Ng = 2: OP3 = 1/6, OR3 = 1/2;
     * the only positive class, 3: CP3 = 1/1, CR3 = 1/2. */
    const float s[10] = {1, 1, 1, 1, 1, 1, 2, 2, 2, 2};
    const int8_t y[10] = {0, 0, 0, 1, 0, 0, 0, 0, 1, 0};
    ct_ml_metrics m;
    CHECK_OK(ct_ml_metrics_compute(s, false, y, 2, 5, 0.5, &m));
    CHECK(m.top_k == 3 && m.n_pos_classes == 1);
    CHECK_NEAR("op3", m.op3, 1.0 / 6.0, 1e-15, 0);
    CHECK_NEAR("or3", m.or3, 0.5, 1e-15, 0);
    CHECK_NEAR("cp3", m.cp3, 1.0, 1e-15, 0);
    CHECK_NEAR("cr3", m.cr3, 0.5, 1e-15, 0);
    /* class 3's column {1, 2} ranks its positives first: AP 1; the other
     * classes have no positive: NaN, out of the mean */
    CHECK(m.ap[3] == 1.0 && isnan(m.ap[0]) && isnan(m.ap[4]) && m.map == 1.0);
    /* every sigmoid >= 0.5: all 10 predicted, OP = 2/10 */
    CHECK_NEAR("op", m.op, 0.2, 1e-15, 0);
    ct_ml_metrics_free(&m);

    /* K = 1: top-1, every known image predicted */
    const float p1[3] = {0.2f, 0.9f, 0.4f};
    const int8_t y1[3] = {1, 0, -1};
    CHECK_OK(ct_ml_metrics_compute(p1, true, y1, 3, 1, 0.5, &m));
    CHECK(m.top_k == 1 && m.op3 == 0.5 && m.or3 == 1.0);
    CHECK(m.op == 0.0 && m.or_ == 0.0 && m.of1 == 0.0); /* F1 of 0 and 0 is 0 */
    CHECK_NEAR("ap", m.ap[0], 0.5, 1e-15, 0);
    ct_ml_metrics_free(&m);
}

/* Filled with garbage, must come back zeroed. */
static bool zeroed(const ct_ml_metrics *m) {
    static const ct_ml_metrics zero;
    return memcmp(m, &zero, sizeof zero) == 0;
}

static void test_bad_input(void) {
    ct_ml_metrics m;
    float s[6] = {0.1f, 0.9f, 0.5f, 0.3f, 0.7f, 0.2f};
    int8_t y[6] = {0, 1, 0, 1, -1, 0};
#define BAD(expr, needle)                                                               \
    do {                                                                                \
        memset(&m, 0x5a, sizeof m);                                                     \
        CHECK(expr == CT_ERR_ARG);                                                      \
        CHECK_MSG(strstr(ct_last_error(), needle), "error \"%s\" lacks \"%s\"",          \
                  ct_last_error(), needle);                                             \
        CHECK(zeroed(&m));                                                              \
    } while (0)
    CHECK_OK(ct_ml_metrics_compute(s, true, y, 2, 3, 0.5, &m));
    ct_ml_metrics_free(&m);
    y[4] = 2;
    BAD(ct_ml_metrics_compute(s, true, y, 2, 3, 0.5, &m), "targets[1][1] = 2");
    y[4] = -2;
    BAD(ct_ml_metrics_compute(s, true, y, 2, 3, 0.5, &m), "targets[1][1] = -2");
    y[4] = -1;
    s[2] = NAN;
    BAD(ct_ml_metrics_compute(s, false, y, 2, 3, 0.5, &m), "test image 0 for class 2");
    s[2] = INFINITY;
    BAD(ct_ml_metrics_compute(s, false, y, 2, 3, 0.5, &m), "inf");
    s[2] = 1.5f; /* fine as a logit, not as a probability */
    CHECK_OK(ct_ml_metrics_compute(s, false, y, 2, 3, 0.5, &m));
    ct_ml_metrics_free(&m);
    BAD(ct_ml_metrics_compute(s, true, y, 2, 3, 0.5, &m), "outside [0, 1]");
    s[2] = 0.5f;
    BAD(ct_ml_metrics_compute(s, true, y, 0, 3, 0.5, &m), "empty");
    BAD(ct_ml_metrics_compute(s, true, y, 2, 0, 0.5, &m), "no class");
    BAD(ct_ml_metrics_compute(s, true, y, 2, 3, 0.0, &m), "threshold 0 ");
    BAD(ct_ml_metrics_compute(s, true, y, 2, 3, 1.0, &m), "threshold 1 ");
    BAD(ct_ml_metrics_compute(s, true, y, 2, 3, NAN, &m), "threshold nan");
    BAD(ct_ml_metrics_compute(s, true, y, 2, 3, -0.5, &m), "not in (0, 1)");
    BAD(ct_ml_metrics_compute(NULL, true, y, 2, 3, 0.5, &m), "NULL");
    BAD(ct_ml_metrics_compute(s, true, NULL, 2, 3, 0.5, &m), "NULL");
    CHECK(ct_ml_metrics_compute(s, true, y, 2, 3, 0.5, NULL) == CT_ERR_ARG);
    /* no known positive anywhere: nothing is defined */
    const int8_t none[6] = {0, -1, 0, 0, -1, 0};
    BAD(ct_ml_metrics_compute(s, true, none, 2, 3, 0.5, &m), "known positive");
#undef BAD
}

static void test_struct_size(void) {
    CHECK(ct_struct_size("ct_ml_metrics") == sizeof(ct_ml_metrics));
}

int main(void) {
    RUN(test_hand_example);
    RUN(test_python_reference);
    RUN(test_image_order);
    RUN(test_topk_ties);
    RUN(test_bad_input);
    RUN(test_struct_size);
    return ct_test_summary();
}
