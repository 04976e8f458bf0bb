/* Taxonomies (the file format and its errors), ProTeCt's tree cuts and the
 * hierarchy metrics against tools/ref/gen_hier_ref.py's port of the
 * official code. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cliptune.h"
#include "fixtures/hier_ref.h"
#include "harness.h"

static const char *const FM[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                   "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

static int node_index(const ct_taxonomy *t, const char *name) {
    for (int i = 0; i < t->n_nodes; i++)
        if (!strcmp(t->names[i], name)) return i;
    return -1;
}

static void test_shipped_fashion_mnist(void) {
    ct_taxonomy *t = NULL;
    CHECK_OK(ct_taxonomy_load(CT_SOURCE_DIR "/data/taxonomies/fashion-mnist.txt", FM, 10, &t));
    if (!t) return;
    CHECK(t->n_nodes == 15 && t->n_classes == 10 && !strcmp(t->root, "root"));
    /* preorder: clothing tops T-shirt/top Pullover Coat Shirt bottoms Trouser Dress footwear ... */
    static const char *pre[15] = {"clothing", "tops",     "T-shirt/top", "Pullover", "Coat",
                                  "Shirt",    "bottoms",  "Trouser",     "Dress",    "footwear",
                                  "Sandal",   "Sneaker",  "Ankle boot",  "bags",     "Bag"};
    for (int i = 0; i < 15; i++) CHECK_MSG(!strcmp(t->names[i], pre[i]), "node %d: %s", i, t->names[i]);
    CHECK(t->n_internal == 6 && t->internal[0] == -1 && t->internal[1] == 0);
    for (int k = 0; k < 10; k++) CHECK(!strcmp(t->names[t->class_node[k]], FM[k]));
    CHECK(t->leaf_class[node_index(t, "Ankle boot")] == 9 && t->leaf_class[0] == -1);
    CHECK(t->depth[node_index(t, "Coat")] == 3 && t->depth[node_index(t, "Dress")] == 2);
    CHECK(t->parent[0] == -1 && t->parent[node_index(t, "Trouser")] == node_index(t, "bottoms"));
    CHECK(ct_taxonomy_count_cuts(t) == 20);
    ct_taxonomy_free(t);
    ct_taxonomy_free(NULL);
}

/* text must fail with a message holding each of want[] */
static void expect_error(const char *text, const char *const *cls, int K, const char *w1,
                         const char *w2) {
    ct_taxonomy *t = (ct_taxonomy *)1;
    ct_status s = ct_taxonomy_parse(text, strlen(text), "tax.txt", cls, K, &t);
    CHECK_MSG(s != CT_OK && t == NULL, "accepted: %s", text);
    if (s == CT_OK) ct_taxonomy_free(t);
    const char *e = ct_last_error();
    CHECK_MSG(strstr(e, w1) && (!w2 || strstr(e, w2)), "'%s' lacks '%s' / '%s'", e, w1,
              w2 ? w2 : "");
}

static void test_format_errors(void) {
    static const char *const C3[3] = {"cat", "dog", "oak"};
    const char *ok = "# a comment\r\n\nroot\tanimal\n  animal \t cat\nanimal\tdog\r\nroot\toak\n";
    ct_taxonomy *t = NULL;
    CHECK_OK(ct_taxonomy_parse(ok, strlen(ok), "ok.txt", C3, 3, &t));
    CHECK(t && t->n_nodes == 4 && !strcmp(t->root, "root") && !strcmp(t->names[1], "cat"));
    ct_taxonomy_free(t);
    /* implied root over two top nodes */
    const char *two = "animal\tcat\nanimal\tdog\nplant\toak\n";
    t = NULL;
    CHECK_OK(ct_taxonomy_parse(two, strlen(two), "two.txt", C3, 3, &t));
    CHECK(t && t->n_nodes == 5 && !strcmp(t->root, "root") && t->parent[3] == -1);
    ct_taxonomy_free(t);
    expect_error("root\tanimal\nanimal\tcat\nanimal\tdog\nroot\toak\nroot\tfish\n", C3, 3,
                 "tax.txt:5", "unknown leaf 'fish'");
    expect_error("root\tanimal\nanimal\tcat\nanimal\tdog\n", C3, 3, "class 'oak' is missing",
                 NULL);
    expect_error("root\tanimal\nanimal\tcat\nanimal\tdog\nroot\toak\nanimal\tcat\n", C3, 3,
                 "tax.txt:5", "duplicate edge");
    expect_error("root\tanimal\nanimal\tcat\nanimal\tdog\nroot\toak\nroot\tcat\n", C3, 3,
                 "tax.txt:5", "two parents");
    expect_error("root\tcat\nroot\tdog\nroot\toak\na\tb\nb\ta\n", C3, 3, "cycle", "tax.txt:");
    expect_error("a\tb\nb\ta\n", C3, 3, "cycle", NULL);
    expect_error("root\troot\n", C3, 3, "tax.txt:1", "cycle");
    expect_error("root\tcat\ncat\tdog\nroot\toak\n", C3, 3, "tax.txt:", "internal node");
    expect_error("root cat\n", C3, 3, "tax.txt:1", "parent<TAB>child");
    expect_error("root\tcat\tdog\n", C3, 3, "tax.txt:1", "more than one TAB");
    expect_error("\t cat\n", C3, 3, "tax.txt:1", "empty parent");
    expect_error("# nothing\n\n", C3, 3, "no edges", NULL);
    expect_error("animal\tcat\nanimal\tdog\nroot\toak\n", C3, 3, "'root'", NULL);
    ct_taxonomy *none = (ct_taxonomy *)1;
    CHECK(ct_taxonomy_load("/nonexistent/tax.txt", C3, 3, &none) != CT_OK && !none);
    CHECK(strstr(ct_last_error(), "/nonexistent/tax.txt"));
}

/* The metrics of a fixture case; the fixture's scores are in its node
 * order, mapped here by name. */
static void check_case(const hier_ref_case *c) {
    ct_taxonomy *t = NULL;
    CHECK_OK(ct_taxonomy_parse(c->text, strlen(c->text), c->name, c->classes, c->K, &t));
    if (!t) return;
    CHECK(t->n_nodes == c->N);
    int *map = malloc((size_t)c->N * sizeof *map); /* ref node -> ours */
    for (int j = 0; j < c->N; j++) {
        map[j] = node_index(t, c->nodes[j]);
        CHECK_MSG(map[j] >= 0, "%s: node %s missing", c->name, c->nodes[j]);
        if (map[j] < 0) map[j] = 0;
    }
    float *sc = malloc((size_t)c->n * c->N * sizeof *sc);
    for (int r = 0; r < c->n; r++)
        for (int j = 0; j < c->N; j++) sc[(size_t)r * c->N + map[j]] = c->scores[(size_t)r * c->N + j];
    ct_hier_metrics hm;
    CHECK_OK(ct_hier_metrics_compute(t, sc, c->labels, c->n, 25, 100, &hm, NULL));
    CHECK_NEAR("leaf_acc", hm.leaf_acc, c->leaf_acc, 1e-12, 0);
    CHECK_NEAR("hca", hm.hca, c->hca, 1e-12, 0);
    /* our cuts: each one of the reference's; the MTA the mean of theirs */
    uint8_t cuts[25 * 64];
    int nc = 0;
    CHECK(c->N <= 64);
    CHECK_OK(ct_taxonomy_eval_cuts(t, 25, 100, cuts, &nc));
    CHECK(nc == (c->n_cuts <= 25 ? c->n_cuts : 25) && nc == hm.n_cuts);
    double want = 0;
    for (int q = 0; q < nc; q++) {
        int found = -1;
        for (int r = 0; r < c->n_cuts && found < 0; r++) {
            bool same = true;
            for (int j = 0; j < c->N && same; j++) same = c->cuts[(size_t)r * c->N + j] == cuts[q * c->N + map[j]];
            if (same) found = r;
        }
        CHECK_MSG(found >= 0, "%s: cut %d is not a tree cut of the reference", c->name, q);
        for (int p = 0; p < q; p++) CHECK(memcmp(cuts + p * c->N, cuts + q * c->N, (size_t)c->N));
        if (found >= 0) want += c->cut_acc[found] / nc;
    }
    CHECK_NEAR("mta", hm.mta, want, 1e-12, 0);
    if (c->n_cuts <= 25) CHECK_NEAR("mta (every cut)", hm.mta, c->mta_all, 1e-12, 0);
    /* deterministic in the seed */
    uint8_t again[25 * 64];
    int n2 = 0;
    CHECK_OK(ct_taxonomy_eval_cuts(t, 25, 100, again, &n2));
    CHECK(n2 == nc && !memcmp(again, cuts, (size_t)nc * c->N));
    free(map), free(sc);
    ct_taxonomy_free(t);
}

static void test_metrics_vs_reference(void) {
    check_case(&hier_fmnist);
    check_case(&hier_deep);
    CHECK(hier_deep.n_cuts > 25 && hier_fmnist.n_cuts == 20);
}

static void test_metrics_hand_made(void) {
    ct_taxonomy *t = NULL;
    CHECK_OK(ct_taxonomy_load(CT_SOURCE_DIR "/data/taxonomies/fashion-mnist.txt", FM, 10, &t));
    if (!t) return;
    int N = t->n_nodes, labels[10];
    float sc[10 * 15], leaf[10 * 10];
    /* perfect: each item's path scores 1, everything else 0 */
    for (int r = 0; r < 10; r++) {
        labels[r] = r;
        for (int i = 0; i < N; i++) sc[r * N + i] = ct_taxonomy_is_ancestor(t, i, t->class_node[r]);
    }
    ct_hier_metrics hm;
    double nacc[6];
    CHECK_OK(ct_hier_metrics_compute(t, sc, labels, 10, 25, 1, &hm, nacc));
    CHECK_MSG(hm.leaf_acc == 1 && hm.hca == 1 && hm.mta == 1 && hm.n_cuts == 20 && hm.n == 10,
              "%g %g %g %d", hm.leaf_acc, hm.hca, hm.mta, hm.n_cuts);
    for (int j = 0; j < 6; j++) CHECK(nacc[j] == 1);
    /* leaves right, one internal node wrong for item 0 (tops loses to
     * bottoms at "clothing"): leaf 1, HCA 0.9, the cuts holding tops and
     * bottoms as nodes miss item 0 */
    sc[0 * N + node_index(t, "bottoms")] = 2;
    CHECK_OK(ct_hier_metrics_compute(t, sc, labels, 10, 25, 1, &hm, nacc));
    CHECK(hm.leaf_acc == 1 && fabs(hm.hca - 0.9) < 1e-12 && hm.mta < 1 && hm.mta > 0.9);
    /* node scores from class scores: sums of softmax probabilities */
    for (int r = 0; r < 10; r++)
        for (int k = 0; k < 10; k++) leaf[r * 10 + k] = (float)(k == r ? 3 : 0);
    CHECK_OK(ct_taxonomy_node_scores_from_leaves(t, leaf, 10, sc));
    float p_hit = expf(3) / (expf(3) + 9), p_miss = 1 / (expf(3) + 9);
    CHECK_NEAR("footwear of a sandal", sc[5 * N + node_index(t, "footwear")], p_hit + 2 * p_miss, 1e-6, 0);
    CHECK_NEAR("clothing of a bag", sc[8 * N + node_index(t, "clothing")], 6 * p_miss, 1e-6, 0);
    CHECK_NEAR("Bag of a bag", sc[8 * N + node_index(t, "Bag")], p_hit, 1e-6, 0);
    CHECK_OK(ct_hier_metrics_compute(t, sc, labels, 10, 25, 1, &hm, NULL));
    CHECK(hm.leaf_acc == 1 && hm.hca == 1 && hm.mta == 1);
    /* bad input */
    labels[3] = 10;
    CHECK(ct_hier_metrics_compute(t, sc, labels, 10, 25, 1, &hm, NULL) != CT_OK);
    CHECK(strstr(ct_last_error(), "label 10"));
    labels[3] = 3;
    sc[7] = NAN;
    CHECK(ct_hier_metrics_compute(t, sc, labels, 10, 25, 1, &hm, NULL) != CT_OK);
    ct_taxonomy_free(t);
}

static void test_sampled_cuts(void) {
    /* the sampler gives tree cuts: every leaf covered by exactly one node */
    ct_taxonomy *t = NULL;
    CHECK_OK(ct_taxonomy_parse(hier_deep.text, strlen(hier_deep.text), "deep", hier_deep.classes,
                               hier_deep.K, &t));
    if (!t) return;
    CHECK(ct_taxonomy_count_cuts(t) == 350);
    ct_rng rng;
    ct_rng_init(&rng, 7);
    uint8_t cut[64];
    int n_leafy = 0;
    for (int it = 0; it < 200; it++) {
        float rate = (float)(it % 10) / 10.0f;
        ct_taxonomy_sample_cut(t, rate, &rng, cut);
        for (int k = 0; k < t->n_classes; k++) {
            int cover = 0;
            for (int i = 0; i < t->n_nodes; i++)
                cover += cut[i] && ct_taxonomy_is_ancestor(t, i, t->class_node[k]);
            CHECK_MSG(cover == 1, "cut %d covers class %d %d times", it, k, cover);
        }
        /* rate 0: nothing dropped, the cut is the leaves */
        if (rate == 0) {
            bool leaves = true;
            for (int i = 0; i < t->n_nodes; i++) leaves = leaves && cut[i] == (t->leaf_class[i] >= 0);
            n_leafy += leaves;
        }
    }
    CHECK(n_leafy == 20);
    ct_taxonomy_free(t);
}

int main(void) {
    RUN(test_shipped_fashion_mnist);
    RUN(test_format_errors);
    RUN(test_metrics_vs_reference);
    RUN(test_metrics_hand_made);
    RUN(test_sampled_cuts);
    return ct_test_summary();
}
