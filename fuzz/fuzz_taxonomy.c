/* libFuzzer target for ct_taxonomy_load (class taxonomy files, one
 * "parent<TAB>child" edge a line) over Fashion-MNIST's class names and a
 * small set. A taxonomy that loads must be a tree whose leaves are exactly
 * the classes; its cuts and metrics must run; a refusal must say why. */
#include "fuzz_util.h"

static const char *const FM[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                   "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
static const char *const C3[3] = {"cat", "dog", "oak"};

static void check(const ct_taxonomy *t, int K) {
    int N = t->n_nodes;
    if (N < K || t->n_classes != K || t->n_internal < 1 || t->internal[0] != -1) abort();
    int leaves = 0;
    for (int i = 0; i < N; i++) {
        int p = t->parent[i];
        if (p >= i || p < -1 || !t->names[i] || !*t->names[i]) abort(); /* preorder */
        if (t->depth[i] != (p < 0 ? 1 : t->depth[p] + 1)) abort();
        if (t->leaf_class[i] >= 0) {
            leaves++;
            if (t->class_node[t->leaf_class[i]] != i) abort();
        }
    }
    if (leaves != K) abort();
    /* cuts and metrics on scores that favour every label's path */
    int64_t n = K;
    float *sc = malloc((size_t)n * N * sizeof *sc);
    int *lab = malloc((size_t)n * sizeof *lab);
    if (!sc || !lab) abort();
    for (int64_t r = 0; r < n; r++) {
        lab[r] = (int)r;
        for (int i = 0; i < N; i++) sc[r * N + i] = (float)ct_taxonomy_is_ancestor(t, i, t->class_node[r]);
    }
    ct_hier_metrics hm;
    if (ct_hier_metrics_compute(t, sc, lab, n, 25, 1, &hm, NULL) != CT_OK) abort();
    if (hm.leaf_acc != 1 || hm.hca != 1 || hm.n_cuts < 1 || hm.n_cuts > 25) abort();
    free(sc), free(lab);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write("tax.txt", data, size);
    for (int set = 0; set < 2; set++) {
        const char *const *cls = set ? C3 : FM;
        int K = set ? 3 : 10;
        ct_taxonomy *t = (ct_taxonomy *)1;
        if (ct_taxonomy_load(path, cls, K, &t) != CT_OK) {
            fz_failed_with_message();
            if (t) abort();
            continue;
        }
        check(t, K);
        ct_taxonomy_free(t);
    }
    return 0;
}
