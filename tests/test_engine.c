/* Arena, tape, grad mode, gradient accumulation, error propagation, RNG and
 * thread control. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cliptune.h"
#include "harness.h"

/* A small MLP-like step: tanh(x W^T + b) -> CE, through the public API. */
static ct_tensor *step(ct_graph *g, ct_tensor *x, ct_tensor *w, ct_tensor *b) {
    static const int64_t labels[4] = {0, 1, 2, 1};
    ct_tensor *h = ct_tanh(g, ct_linear(g, x, w, b));
    return ct_cross_entropy(g, h, labels, 0.0f);
}

static void test_arena_steady_state(void) {
    ct_graph *g = ct_graph_create(1 << 16);
    ct_tensor *x = ct_tensor_new2(4, 64, false), *w = ct_tensor_new2(3, 64, true);
    ct_tensor *b = ct_tensor_new2(1, 3, true);
    ct_rng r;
    ct_rng_init(&r, 1);
    ct_rng_fill_normal(&r, x->data, 256, 0, 1);
    ct_rng_fill_normal(&r, w->data, 192, 0, 0.1f);
    uint64_t after_first = 0;
    size_t used_first = 0;
    for (int it = 0; it < 20; it++) {
        ct_graph_reset(g);
        CHECK(ct_graph_arena_used(g) == 0);
        CHECK(ct_graph_num_nodes(g) == 0);
        ct_tensor *loss = step(g, x, w, b);
        CHECK(loss != NULL);
        CHECK_OK(ct_backward(g, loss));
        if (it == 1) {
            after_first = ct_graph_malloc_count(g);
            used_first = ct_graph_arena_used(g);
        }
        if (it > 1) {
            /* steady state: the same step allocates nothing new */
            CHECK_MSG(ct_graph_malloc_count(g) == after_first,
                      "step %d allocated: %llu mallocs vs %llu", it,
                      (unsigned long long)ct_graph_malloc_count(g),
                      (unsigned long long)after_first);
            CHECK(ct_graph_arena_used(g) == used_first);
        }
    }
    CHECK(ct_graph_arena_reserved(g) >= used_first);
    ct_graph_free(g);
    ct_tensor_free(x);
    ct_tensor_free(w);
    ct_tensor_free(b);
}

static void test_arena_growth(void) {
    /* Allocations larger than a chunk, many small ones, then reuse. */
    ct_graph *g = ct_graph_create(1);
    for (int round = 0; round < 3; round++) {
        ct_graph_reset(g);
        for (int i = 0; i < 100; i++) {
            int64_t n = (i % 7) * 1000 + 1;
            ct_tensor *t = ct_graph_tensor(g, 1, &n);
            CHECK(t && t->numel == n && ((uintptr_t)t->data % 64) == 0);
            if (!t) break;
            for (int64_t j = 0; j < n; j++) CHECK_MSG(t->data[j] == 0, "not zeroed");
            for (int64_t j = 0; j < n; j++) t->data[j] = (ct_real)i;
        }
        /* 12 MB (f32): a chunk of its own, huge-page aligned and advised */
        int64_t big = 3 << 20;
        ct_tensor *b = ct_graph_tensor(g, 1, &big);
        CHECK(b && ((uintptr_t)b->data % 64) == 0);
        if (b) {
            CHECK(b->data[0] == 0 && b->data[big / 2] == 0 && b->data[big - 1] == 0);
            for (int64_t j = 0; j < big; j += 4096) b->data[j] = 1;
            b->data[big - 1] = 2;
        }
    }
    uint64_t m = ct_graph_malloc_count(g);
    ct_graph_reset(g);
    for (int i = 0; i < 100; i++) {
        int64_t n = (i % 7) * 1000 + 1;
        ct_graph_tensor(g, 1, &n);
    }
    CHECK(ct_graph_malloc_count(g) == m);
    ct_graph_free(g);
    ct_graph_free(NULL);
}

static void test_records_only_when_needed(void) {
    ct_graph *g = ct_graph_create(0);
    ct_tensor *a = ct_tensor_new2(2, 3, false), *b = ct_tensor_new2(2, 3, false);
    ct_tensor *c = ct_add(g, a, b);
    CHECK(c && !c->requires_grad && c->node == NULL);
    CHECK(ct_graph_num_nodes(g) == 0);
    /* backward from something that needs no grad is a clear error */
    CHECK(ct_backward(g, ct_sum_all(g, c)) == CT_ERR_STATE);
    CHECK(strstr(ct_last_error(), "requires grad") != NULL);
    a->requires_grad = true; /* a leaf switched on after creation */
    ct_tensor *d = ct_mul(g, a, b);
    CHECK(d && d->requires_grad && ct_graph_num_nodes(g) == 1);
    /* no-grad mode: nothing recorded even though a requires grad */
    bool old = ct_graph_set_grad(g, false);
    CHECK(old == true);
    ct_tensor *e = ct_mul(g, a, b);
    CHECK(e && !e->requires_grad && ct_graph_num_nodes(g) == 1);
    ct_graph_set_grad(g, true);
    for (int i = 0; i < 6; i++) b->data[i] = (ct_real)i;
    CHECK_OK(ct_backward(g, ct_sum_all(g, d)));
    CHECK(a->grad != NULL);
    for (int i = 0; a->grad && i < 6; i++) CHECK(a->grad[i] == (ct_real)i);
    ct_graph_free(g);
    ct_tensor_free(a); /* grad was calloc'ed, not arena memory: freed here */
    ct_tensor_free(b);
}

static void test_grad_accumulates(void) {
    ct_graph *g = ct_graph_create(0);
    ct_tensor *w = ct_tensor_new2(1, 4, true);
    for (int i = 0; i < 4; i++) w->data[i] = (ct_real)(i + 1);
    /* loss = sum(w * w): grad 2w; twice -> 4w (accumulation) */
    for (int k = 0; k < 2; k++) {
        ct_graph_reset(g);
        CHECK_OK(ct_backward(g, ct_sum_all(g, ct_mul(g, w, w))));
    }
    for (int i = 0; i < 4; i++) CHECK_NEAR("accumulated grad", w->grad[i], 4.0 * (i + 1), 0, 0);
    /* two backward passes over one graph (two losses sharing nodes) */
    ct_tensor_zero_grad(w);
    ct_graph_reset(g);
    ct_tensor *sq = ct_mul(g, w, w);
    ct_tensor *l1 = ct_sum_all(g, sq), *l2 = ct_sum_all(g, ct_scale(g, sq, 3.0f));
    CHECK_OK(ct_backward(g, l1));
    CHECK_OK(ct_backward(g, l2));
    for (int i = 0; i < 4; i++) CHECK_NEAR("two losses", w->grad[i], 8.0 * (i + 1), 0, 0);
    ct_tensor_zero_grad(w);
    for (int i = 0; i < 4; i++) CHECK(w->grad[i] == 0);
    ct_graph_free(g);
    ct_tensor_free(w);
}

static void test_error_propagation(void) {
    ct_graph *g = ct_graph_create(0);
    ct_tensor *x = ct_tensor_new2(2, 5, true), *w = ct_tensor_new2(3, 4, true);
    ct_tensor *y = ct_linear(g, x, w, NULL);
    CHECK(y == NULL);
    CHECK(ct_graph_status(g) == CT_ERR_ARG);
    CHECK(strstr(ct_last_error(), "linear") && strstr(ct_last_error(), "(2, 5)"));
    /* the chain continues to NULL without crashing, and the first error stays */
    ct_tensor *z = ct_relu(g, ct_softmax(g, y));
    CHECK(z == NULL);
    CHECK(strstr(ct_last_error(), "linear") != NULL);
    CHECK(ct_backward(g, z) != CT_OK);
    /* later valid ops also refuse until reset: the step is poisoned */
    CHECK(ct_relu(g, x) == NULL);
    ct_graph_reset(g);
    CHECK(ct_graph_status(g) == CT_OK);
    CHECK(ct_relu(g, x) != NULL);
    int64_t bad[2] = {-1, 3};
    CHECK(ct_tensor_new(2, bad, false) == NULL);
    int64_t five[5] = {1, 1, 1, 1, 1};
    CHECK(ct_tensor_new(5, five, false) == NULL);
    ct_tensor_free(NULL);
    ct_graph_free(g);
    ct_tensor_free(x);
    ct_tensor_free(w);
}

static void test_reshape_shares_data(void) {
    ct_graph *g = ct_graph_create(0);
    ct_tensor *x = ct_tensor_new2(2, 6, true);
    int64_t s[3] = {3, 2, 2};
    ct_tensor *r = ct_reshape(g, x, 3, s);
    CHECK(r && r->data == x->data && r->numel == 12);
    int64_t s2[2] = {5, 2};
    CHECK(ct_reshape(g, x, 2, s2) == NULL);
    ct_graph_free(g);
    ct_tensor_free(x);
}

static void test_rng(void) {
    ct_rng a, b;
    ct_rng_init(&a, 42);
    ct_rng_init(&b, 42);
    for (int i = 0; i < 100; i++) CHECK(ct_rng_u64(&a) == ct_rng_u64(&b));
    ct_rng_init(&b, 43);
    CHECK(ct_rng_u64(&a) != ct_rng_u64(&b));
    /* uniform range and moments */
    enum { N = 200000 };
    static ct_real buf[N], buf2[N];
    ct_rng_init(&a, 7);
    ct_rng_fill_uniform(&a, buf, N, -1, 3);
    double m = 0, lo = 1e9, hi = -1e9;
    for (int i = 0; i < N; i++) {
        m += buf[i];
        lo = buf[i] < lo ? buf[i] : lo;
        hi = buf[i] > hi ? buf[i] : hi;
    }
    m /= N;
    CHECK(lo >= -1 && hi < 3);
    CHECK_NEAR("uniform mean", m, 1.0, 0.02, 0);
    ct_rng_init(&a, 8);
    ct_rng_fill_normal(&a, buf, N, 2, 0.5f);
    double s = 0, s2 = 0;
    for (int i = 0; i < N; i++) s += buf[i], s2 += (double)buf[i] * buf[i];
    double mean = s / N, var = s2 / N - mean * mean;
    CHECK_NEAR("normal mean", mean, 2.0, 0.01, 0);
    CHECK_NEAR("normal std", sqrt(var), 0.5, 0.01, 0);
    /* streams do not depend on the thread count, and a fill equals draws */
    for (int nt = 1; nt <= 4; nt++) {
        ct_set_num_threads(nt);
        ct_rng_init(&a, 9);
        ct_rng_fill_normal(&a, buf2, N, 0, 1);
        ct_rng_init(&b, 9);
        bool same = true;
        for (int i = 0; i < N; i++)
            if (buf2[i] != (ct_real)ct_rng_normal(&b)) same = false;
        CHECK_MSG(same, "normal fill with %d threads differs from sequential draws", nt);
        if (nt == 1) memcpy(buf, buf2, sizeof buf);
        CHECK(memcmp(buf, buf2, sizeof buf) == 0);
    }
    ct_set_num_threads(0);
    /* split streams differ from each other and from the parent */
    ct_rng_init(&a, 5);
    ct_rng s1 = ct_rng_split(&a, 1), s2b = ct_rng_split(&a, 2), s1b = ct_rng_split(&a, 1);
    uint64_t v1 = ct_rng_u64(&s1);
    CHECK(v1 != ct_rng_u64(&s2b) && v1 == ct_rng_u64(&s1b));
    /* permutation: valid, seed-deterministic, and roughly uniform */
    int64_t perm[10], perm2[10];
    int counts[10] = {0};
    for (int t = 0; t < 20000; t++) {
        ct_rng_init(&a, (uint64_t)t);
        ct_rng_permutation(&a, perm, 10);
        int seen[10] = {0};
        for (int i = 0; i < 10; i++) seen[perm[i]]++;
        for (int i = 0; i < 10; i++) CHECK(seen[i] == 1);
        counts[perm[0]]++;
    }
    for (int i = 0; i < 10; i++) CHECK_NEAR("perm[0] frequency", counts[i], 2000, 200, 0);
    ct_rng_init(&a, 3);
    ct_rng_permutation(&a, perm, 10);
    ct_rng_init(&a, 3);
    ct_rng_permutation(&a, perm2, 10);
    CHECK(memcmp(perm, perm2, sizeof perm) == 0);
    ct_rng_init(&a, 11);
    for (int i = 0; i < 1000; i++) CHECK(ct_rng_below(&a, 7) < 7);
}

static void test_threads(void) {
    ct_set_num_threads(1);
    CHECK(ct_get_num_threads() == 1 && omp_get_max_threads() == 1);
    ct_set_num_threads(2);
    CHECK(ct_get_num_threads() == 2);
    setenv("CLIPTUNE_THREADS", "3", 1);
    ct_set_num_threads(0);
    CHECK(ct_get_num_threads() == 3);
    setenv("CLIPTUNE_THREADS", "junk", 1);
    ct_set_num_threads(0);
    CHECK(ct_get_num_threads() == omp_get_num_procs());
    unsetenv("CLIPTUNE_THREADS");
    ct_set_num_threads(0);
}

static void test_results_independent_of_threads(void) {
    /* The same forward/backward with 1 and 2 threads gives identical bits:
     * no reduction order depends on the thread count. */
    ct_real out[2][3];
    for (int nt = 1; nt <= 2; nt++) {
        ct_set_num_threads(nt);
        ct_graph *g = ct_graph_create(0);
        int64_t sq[3] = {4, 50, 64}, sk[2] = {3, 64};
        ct_tensor *q = ct_tensor_new(3, sq, true), *w = ct_tensor_new2(64, 64, true);
        ct_tensor *ek = ct_tensor_new(2, sk, true);
        ct_rng r;
        ct_rng_init(&r, 1);
        ct_rng_fill_normal(&r, q->data, (size_t)q->numel, 0, 1);
        ct_rng_fill_normal(&r, w->data, (size_t)w->numel, 0, 0.1f);
        ct_rng_fill_normal(&r, ek->data, (size_t)ek->numel, 0, 1);
        ct_tensor *h = ct_layernorm(g, ct_linear(g, q, w, NULL), NULL, NULL, 1e-5f);
        ct_tensor *a = ct_attention(g, h, h, h, ek, ek, 4, true);
        ct_tensor *loss = ct_sum_all(g, ct_mul(g, a, a));
        CHECK_OK(ct_backward(g, loss));
        double sw = 0, sq2 = 0;
        for (int64_t i = 0; i < w->numel; i++) sw += w->grad[i] * (1 + i % 7);
        for (int64_t i = 0; i < ek->numel; i++) sq2 += ek->grad[i] * (1 + i % 5);
        out[nt - 1][0] = loss->data[0], out[nt - 1][1] = (ct_real)sw, out[nt - 1][2] = (ct_real)sq2;
        ct_graph_free(g);
        ct_tensor_free(q);
        ct_tensor_free(w);
        ct_tensor_free(ek);
    }
    ct_set_num_threads(0);
    /* BLAS may split the K dimension differently by thread count, so allow
     * float rounding; anything larger is a race. */
    for (int i = 0; i < 3; i++)
        CHECK_NEAR("1 vs 2 threads", out[1][i], out[0][i], 1e-5, 1e-5);
}

int main(void) {
    RUN(test_arena_steady_state);
    RUN(test_arena_growth);
    RUN(test_records_only_when_needed);
    RUN(test_grad_accumulates);
    RUN(test_error_propagation);
    RUN(test_reshape_shares_data);
    RUN(test_rng);
    RUN(test_threads);
    RUN(test_results_independent_of_threads);
    return ct_test_summary();
}
