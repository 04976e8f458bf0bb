/* The float32 build of the dense ops against PyTorch: forward outputs and
 * input gradients (reverse mode, seeded with a fixed cotangent) must match
 * the values torch computed in float32 (tests/fixtures/ops_ref.h, generated
 * by tools/ref/gen_ops_ref.py). Also hand-computed forward values that need
 * no torch, and the error paths of the ops (shape mismatches, out-of-range
 * labels and ids, NULL inputs, sticky graph status).
 *
 * Tolerance, for every output and gradient value of every case:
 *     |ours - torch| <= 1e-5 + 1e-4 * |torch|
 * Both sides compute in float32 with different summation orders and libm
 * implementations, so differences are a few float32 ulps of the largest
 * intermediate; no op needs a looser bound (log is only evaluated on inputs
 * in [0.05, 4], where 1/x and log x are well conditioned). */
#include <string.h>

#include "cliptune.h"
#include "fixtures/ops_ref.h"
#include "harness.h"

#ifdef CT_REAL_DOUBLE
#error "test_ops_ref checks the float32 engine (its name must not start with test_grad)"
#endif

#define ATOL 1e-5
#define RTOL 1e-4

#define SHAPE(...) (int64_t[]){__VA_ARGS__}

/* ------------------------------------------------------------------------ */
/* Rebuilding each torch case                                                 */
/* ------------------------------------------------------------------------ */

typedef ct_tensor *(*build_fn)(ct_graph *g, const oref_case *c, ct_tensor **in);

static ct_tensor *opt(const oref_case *c, ct_tensor **in, int i) { return c->n_in > i ? in[i] : NULL; }

static ct_tensor *b_linear(ct_graph *g, const oref_case *c, ct_tensor **in) {
    return ct_linear(g, in[0], in[1], opt(c, in, 2));
}
static ct_tensor *b_matmul(ct_graph *g, const oref_case *c, ct_tensor **in) {
    return ct_matmul(g, in[0], in[1], c->ip[0] != 0, c->ip[1] != 0);
}
static ct_tensor *b_add(ct_graph *g, const oref_case *c, ct_tensor **in) { return ct_add(g, in[0], in[1]); }
static ct_tensor *b_sub(ct_graph *g, const oref_case *c, ct_tensor **in) { return ct_sub(g, in[0], in[1]); }
static ct_tensor *b_mul(ct_graph *g, const oref_case *c, ct_tensor **in) { return ct_mul(g, in[0], in[1]); }
static ct_tensor *b_scale(ct_graph *g, const oref_case *c, ct_tensor **in) {
    return ct_scale(g, in[0], c->fp[0]);
}
static ct_tensor *b_transpose(ct_graph *g, const oref_case *c, ct_tensor **in) {
    return ct_transpose(g, in[0], c->ip[0], c->ip[1]);
}
static ct_tensor *b_concat(ct_graph *g, const oref_case *c, ct_tensor **in) {
    return ct_concat(g, in, c->n_in, c->ip[0]);
}
static ct_tensor *b_slice(ct_graph *g, const oref_case *c, ct_tensor **in) {
    return ct_slice(g, in[0], c->ip[0], c->ip[1], c->ip[2]);
}
static ct_tensor *b_gather_rows(ct_graph *g, const oref_case *c, ct_tensor **in) {
    /* ip = (ids_ndim, ids_shape...) */
    int64_t shape[3] = {c->ip[1], c->ip[2], c->ip[3]}, n = 1;
    for (int d = 0; d < c->ip[0]; d++) n *= shape[d];
    CHECK(n == c->n_ids);
    return ct_gather_rows(g, in[0], c->ids, c->ip[0], shape);
}
static ct_tensor *b_sum(ct_graph *g, const oref_case *c, ct_tensor **in) { return ct_sum(g, in[0], c->ip[0]); }
static ct_tensor *b_mean(ct_graph *g, const oref_case *c, ct_tensor **in) { return ct_mean(g, in[0], c->ip[0]); }
static ct_tensor *b_layernorm(ct_graph *g, const oref_case *c, ct_tensor **in) {
    return ct_layernorm(g, in[0], opt(c, in, 1), opt(c, in, 2), c->fp[0]);
}
static ct_tensor *b_l2_normalize(ct_graph *g, const oref_case *c, ct_tensor **in) {
    return ct_l2_normalize(g, in[0], c->fp[0]);
}
static ct_tensor *b_softmax(ct_graph *g, const oref_case *c, ct_tensor **in) { return ct_softmax(g, in[0]); }
static ct_tensor *b_log_softmax(ct_graph *g, const oref_case *c, ct_tensor **in) {
    return ct_log_softmax(g, in[0]);
}
static ct_tensor *b_cross_entropy(ct_graph *g, const oref_case *c, ct_tensor **in) {
    CHECK(c->n_ids == in[0]->shape[0]);
    return ct_cross_entropy(g, in[0], c->ids, c->fp[0]);
}
static ct_tensor *b_bce_with_logits(ct_graph *g, const oref_case *c, ct_tensor **in) {
    return ct_bce_with_logits(g, in[0], c->aux);
}
static ct_tensor *b_kl_div(ct_graph *g, const oref_case *c, ct_tensor **in) { return ct_kl_div(g, in[0], in[1]); }
static ct_tensor *b_entropy(ct_graph *g, const oref_case *c, ct_tensor **in) { return ct_entropy(g, in[0]); }
static ct_tensor *b_gelu(ct_graph *g, const oref_case *c, ct_tensor **in) { return ct_gelu(g, in[0]); }
static ct_tensor *b_quick_gelu(ct_graph *g, const oref_case *c, ct_tensor **in) { return ct_quick_gelu(g, in[0]); }
static ct_tensor *b_relu(ct_graph *g, const oref_case *c, ct_tensor **in) { return ct_relu(g, in[0]); }
static ct_tensor *b_sigmoid(ct_graph *g, const oref_case *c, ct_tensor **in) { return ct_sigmoid(g, in[0]); }
static ct_tensor *b_tanh(ct_graph *g, const oref_case *c, ct_tensor **in) { return ct_tanh(g, in[0]); }
static ct_tensor *b_exp(ct_graph *g, const oref_case *c, ct_tensor **in) { return ct_exp(g, in[0]); }
static ct_tensor *b_log(ct_graph *g, const oref_case *c, ct_tensor **in) { return ct_log(g, in[0]); }
static ct_tensor *b_attention(ct_graph *g, const oref_case *c, ct_tensor **in) {
    /* ip = (n_head, causal); in = q, k, v [, ek, ev] */
    return ct_attention(g, in[0], in[1], in[2], opt(c, in, 3), opt(c, in, 4), c->ip[0], c->ip[1] != 0);
}

/* Every op of the brief must have at least one torch case. */
static struct op_entry {
    const char *op;
    build_fn fn;
    int n_cases;
    double max_diff;  /* max |ours - torch| over outputs and gradients */
    double max_ratio; /* max |ours - torch| / tolerance                  */
} g_ops[] = {
    {"linear", b_linear, 0, 0, 0},
    {"matmul", b_matmul, 0, 0, 0},
    {"add", b_add, 0, 0, 0},
    {"sub", b_sub, 0, 0, 0},
    {"mul", b_mul, 0, 0, 0},
    {"scale", b_scale, 0, 0, 0},
    {"transpose", b_transpose, 0, 0, 0},
    {"concat", b_concat, 0, 0, 0},
    {"slice", b_slice, 0, 0, 0},
    {"gather_rows", b_gather_rows, 0, 0, 0},
    {"sum", b_sum, 0, 0, 0},
    {"mean", b_mean, 0, 0, 0},
    {"layernorm", b_layernorm, 0, 0, 0},
    {"l2_normalize", b_l2_normalize, 0, 0, 0},
    {"softmax", b_softmax, 0, 0, 0},
    {"log_softmax", b_log_softmax, 0, 0, 0},
    {"cross_entropy", b_cross_entropy, 0, 0, 0},
    {"bce_with_logits", b_bce_with_logits, 0, 0, 0},
    {"kl_div", b_kl_div, 0, 0, 0},
    {"entropy", b_entropy, 0, 0, 0},
    {"gelu", b_gelu, 0, 0, 0},
    {"quick_gelu", b_quick_gelu, 0, 0, 0},
    {"relu", b_relu, 0, 0, 0},
    {"sigmoid", b_sigmoid, 0, 0, 0},
    {"tanh", b_tanh, 0, 0, 0},
    {"exp", b_exp, 0, 0, 0},
    {"log", b_log, 0, 0, 0},
    {"attention", b_attention, 0, 0, 0},
};
#define N_OPS ((int)(sizeof g_ops / sizeof g_ops[0]))

static struct op_entry *find_op(const char *op) {
    for (int i = 0; i < N_OPS; i++)
        if (strcmp(g_ops[i].op, op) == 0) return &g_ops[i];
    return NULL;
}

static int64_t arr_numel(const oref_arr *a) {
    int64_t n = 1;
    for (int d = 0; d < a->ndim; d++) n *= a->shape[d];
    return n;
}

/* CHECK_CLOSE_F plus the per-op statistics for the report. */
static void compare(struct op_entry *e, const char *what, const float *got, const float *want,
                    int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double tol = ATOL + RTOL * fabs((double)want[i]);
        if (d > e->max_diff || isnan(d)) e->max_diff = d;
        if (d / tol > e->max_ratio || isnan(d)) e->max_ratio = d / tol;
    }
    CHECK_CLOSE_F(what, got, want, (size_t)n, ATOL, RTOL);
}

static void run_case(const oref_case *c) {
    struct op_entry *e = find_op(c->op);
    if (!e) {
        ct_test_fail(__FILE__, __LINE__, "%s: no C builder for op \"%s\"", c->name, c->op);
        return;
    }
    e->n_cases++;
    ct_tensor *in[OREF_MAX_IN] = {0};
    for (int i = 0; i < c->n_in; i++) {
        in[i] = ct_tensor_new(c->in[i].ndim, c->in[i].shape, c->grad[i] != NULL);
        if (!in[i]) {
            ct_test_fail(__FILE__, __LINE__, "%s: ct_tensor_new: %s", c->name, ct_last_error());
            goto done;
        }
        memcpy(in[i]->data, c->in[i].data, (size_t)in[i]->numel * sizeof(float));
    }
    ct_graph *g = ct_graph_create(0);
    ct_tensor *out = e->fn(g, c, in);
    char what[160];
    if (!out) {
        ct_test_fail(__FILE__, __LINE__, "%s: forward failed: %s", c->name, ct_last_error());
        goto free_graph;
    }
    /* shape, then values */
    bool shape_ok = out->ndim == c->out.ndim;
    for (int d = 0; shape_ok && d < out->ndim; d++) shape_ok = out->shape[d] == c->out.shape[d];
    char sbuf[64];
    CHECK_MSG(shape_ok, "%s: output shape %s, torch has %d-D", c->name,
              ct_shape_str(out, sbuf, sizeof sbuf), c->out.ndim);
    if (!shape_ok || out->numel != arr_numel(&c->out)) goto free_graph;
    snprintf(what, sizeof what, "%s: output", c->name);
    compare(e, what, out->data, c->out.data, out->numel);

    ct_status st = ct_backward_from(g, out, c->dout);
    CHECK_MSG(st == CT_OK, "%s: backward: %s", c->name, ct_last_error());
    if (st != CT_OK) goto free_graph;
    for (int i = 0; i < c->n_in; i++) {
        if (c->grad[i]) {
            CHECK_MSG(in[i]->grad != NULL, "%s: input %d has no gradient", c->name, i);
            if (!in[i]->grad) continue;
            snprintf(what, sizeof what, "%s: grad of input %d", c->name, i);
            compare(e, what, in[i]->grad, c->grad[i], in[i]->numel);
        } else {
            /* frozen input: nothing may be written to it */
            for (int64_t j = 0; in[i]->grad && j < in[i]->numel; j++)
                if (in[i]->grad[j] != 0) {
                    ct_test_fail(__FILE__, __LINE__, "%s: frozen input %d got a gradient",
                                 c->name, i);
                    break;
                }
        }
    }
free_graph:
    ct_graph_free(g);
done:
    for (int i = 0; i < c->n_in; i++) ct_tensor_free(in[i]);
}

/* All torch cases whose op is one of ops (NULL-terminated). */
static void run_ops(const char *const *ops) {
    int n = 0;
    for (int k = 0; k < OREF_NCASES; k++)
        for (const char *const *o = ops; *o; o++)
            if (strcmp(oref_cases[k].op, *o) == 0) {
                run_case(&oref_cases[k]);
                n++;
            }
    CHECK(n > 0);
}

#define OPS_TEST(fn, ...) \
    static void fn(void) { run_ops((const char *const[]){__VA_ARGS__, NULL}); }

OPS_TEST(test_torch_linear_matmul, "linear", "matmul")
OPS_TEST(test_torch_binary, "add", "sub", "mul", "scale")
OPS_TEST(test_torch_layout, "transpose", "concat", "slice", "gather_rows")
OPS_TEST(test_torch_reductions, "sum", "mean")
OPS_TEST(test_torch_norms, "layernorm", "l2_normalize")
OPS_TEST(test_torch_softmax, "softmax", "log_softmax")
OPS_TEST(test_torch_losses, "cross_entropy", "bce_with_logits", "kl_div", "entropy")
OPS_TEST(test_torch_activations, "gelu", "quick_gelu", "relu", "sigmoid", "tanh", "exp", "log")
OPS_TEST(test_torch_attention, "attention")

/* Runs last: every case has a builder (checked in run_case) and every op of
 * the list has at least one case; prints the per-op maximum differences. */
static void test_torch_coverage(void) {
    for (int k = 0; k < OREF_NCASES; k++)
        CHECK_MSG(find_op(oref_cases[k].op) != NULL, "case %s: op %s has no builder",
                  oref_cases[k].name, oref_cases[k].op);
    for (int i = 0; i < N_OPS; i++) {
        CHECK_MSG(g_ops[i].n_cases > 0, "op %s: no torch reference case ran", g_ops[i].op);
        printf("    %-16s %2d case(s)  max |diff| %.3g  (%.3f of tolerance)\n", g_ops[i].op,
               g_ops[i].n_cases, g_ops[i].max_diff, g_ops[i].max_ratio);
    }
}

/* ------------------------------------------------------------------------ */
/* Hand-computed forward (and a few backward) values                          */
/* ------------------------------------------------------------------------ */

/* A leaf from literal values. */
static ct_tensor *leaf(int ndim, const int64_t *shape, const float *vals, bool rg) {
    ct_tensor *t = ct_tensor_new(ndim, shape, rg);
    memcpy(t->data, vals, (size_t)t->numel * sizeof(float));
    return t;
}

/* Hand values are exact up to float rounding of the computation. */
#define HATOL 1e-6
#define HRTOL 1e-6

static void test_hand_softmax(void) {
    ct_graph *g = ct_graph_create(0);
    ct_tensor *x = leaf(1, SHAPE(3), (float[]){0, (float)log(2.0), (float)log(3.0)}, false);
    ct_tensor *y = ct_softmax(g, x), *ly = ct_log_softmax(g, x);
    CHECK(y && ly);
    if (y && ly) {
        CHECK_CLOSE_F("softmax [0, ln2, ln3]", y->data, ((float[]){1 / 6.f, 2 / 6.f, 3 / 6.f}), 3,
                      HATOL, HRTOL);
        float want[3] = {(float)log(1 / 6.0), (float)log(2 / 6.0), (float)log(3 / 6.0)};
        CHECK_CLOSE_F("log_softmax [0, ln2, ln3]", ly->data, want, 3, HATOL, HRTOL);
    }
    /* Shift invariance with large logits: no overflow. */
    ct_tensor *big = leaf(1, SHAPE(3), (float[]){1000, 1000 + (float)log(2.0), 1000 + (float)log(3.0)},
                          false);
    ct_tensor *yb = ct_softmax(g, big);
    CHECK(yb);
    if (yb)
        CHECK_CLOSE_F("softmax [1000 + ...]", yb->data, ((float[]){1 / 6.f, 2 / 6.f, 3 / 6.f}), 3,
                      1e-4, 1e-3); /* 1000 + ln2 carries only ~6e-5 of precision in float */
    ct_tensor_free(x);
    ct_tensor_free(big);
    ct_graph_free(g);
}

static void test_hand_losses(void) {
    /* Uniform logits: CE = ln K for any labels and any smoothing; gradient
     * (softmax - target) / N = (1/K - target) / N. Entropy = ln K, gradient 0. */
    enum { N = 3, K = 7 };
    float vals[N * K];
    for (int i = 0; i < N * K; i++) vals[i] = 0.3f;
    const int64_t labels[N] = {0, 6, 3};
    for (int s = 0; s < 2; s++) {
        float ls = s ? 0.1f : 0.f;
        ct_graph *g = ct_graph_create(0);
        ct_tensor *x = leaf(2, SHAPE(N, K), vals, true);
        ct_tensor *ce = ct_cross_entropy(g, x, labels, ls);
        CHECK(ce);
        if (ce) {
            CHECK_NEAR(s ? "CE(uniform, ls 0.1) = ln K" : "CE(uniform) = ln K", ce->data[0],
                       log((double)K), HATOL, HRTOL);
            CHECK_OK(ct_backward(g, ce));
            float want[N * K];
            for (int n = 0; n < N; n++)
                for (int k = 0; k < K; k++) {
                    double t = ls / (double)K + (k == labels[n] ? 1 - ls : 0);
                    want[n * K + k] = (float)((1.0 / K - t) / N);
                }
            CHECK_CLOSE_F("d CE(uniform) / d logits", x->grad, want, N * K, HATOL, HRTOL);
        }
        ct_tensor_free(x);
        ct_graph_free(g);
    }
    ct_graph *g = ct_graph_create(0);
    ct_tensor *x = leaf(2, SHAPE(N, K), vals, true);
    ct_tensor *h = ct_entropy(g, x);
    CHECK(h);
    if (h) {
        CHECK_NEAR("entropy(uniform) = ln K", h->data[0], log((double)K), HATOL, HRTOL);
        CHECK_OK(ct_backward(g, h));
        float zero[N * K] = {0};
        CHECK_CLOSE_F("d entropy(uniform) / d logits", x->grad, zero, N * K, HATOL, 0);
    }
    /* BCE with logit 0 = ln 2 whatever the target. */
    ct_tensor *z = leaf(1, SHAPE(4), (float[]){0, 0, 0, 0}, false);
    ct_tensor *bce = ct_bce_with_logits(g, z, (float[]){0, 1, 0.5f, 0.25f});
    CHECK(bce);
    if (bce) CHECK_NEAR("bce(0, t) = ln 2", bce->data[0], log(2.0), HATOL, HRTOL);
    /* KL(p || p) = 0; KL([1, 0] || [0.5, 0.5]) = ln 2 / 1 row (0 log 0 = 0). */
    ct_tensor *p = leaf(2, SHAPE(2, 2), (float[]){0.25f, 0.75f, 1, 0}, false);
    ct_tensor *lq = leaf(2, SHAPE(2, 2),
                         (float[]){(float)log(0.25), (float)log(0.75), (float)log(0.5), (float)log(0.5)},
                         false);
    ct_tensor *kl = ct_kl_div(g, lq, p);
    CHECK(kl);
    if (kl) CHECK_NEAR("kl([.25 .75; 1 0] || [.25 .75; .5 .5])", kl->data[0], log(2.0) / 2, HATOL, HRTOL);
    ct_tensor_free(x);
    ct_tensor_free(z);
    ct_tensor_free(p);
    ct_tensor_free(lq);
    ct_graph_free(g);
}

static void test_hand_activations(void) {
    ct_graph *g = ct_graph_create(0);
    ct_tensor *x = leaf(1, SHAPE(4), (float[]){0, 1, -1, 2}, false);
    ct_tensor *ys[7] = {ct_gelu(g, x),    ct_quick_gelu(g, x), ct_relu(g, x), ct_sigmoid(g, x),
                        ct_tanh(g, x),    ct_exp(g, x),        NULL};
    ct_tensor *pos = leaf(1, SHAPE(3), (float[]){1, (float)M_E, 0.5f}, false);
    ys[6] = ct_log(g, pos);
    /* gelu(1) = 0.5 (1 + erf(1/sqrt 2)) = 0.841344746068543 */
    const double want[7][4] = {
        {0, 0.841344746068543, -0.158655253931457, 1.954499736103642},
        {0, 1 / (1 + exp(-1.702)), -1 / (1 + exp(1.702)), 2 / (1 + exp(-3.404))},
        {0, 1, 0, 2},
        {0.5, 1 / (1 + exp(-1.0)), 1 / (1 + exp(1.0)), 1 / (1 + exp(-2.0))},
        {0, tanh(1.0), -tanh(1.0), tanh(2.0)},
        {1, M_E, 1 / M_E, M_E * M_E},
        {0, 1, -M_LN2, 0},
    };
    const char *names[7] = {"gelu", "quick_gelu", "relu", "sigmoid", "tanh", "exp", "log"};
    for (int a = 0; a < 7; a++) {
        CHECK_MSG(ys[a] != NULL, "%s: %s", names[a], ct_last_error());
        if (!ys[a]) continue;
        int n = a == 6 ? 3 : 4;
        for (int i = 0; i < n; i++) {
            char nm[48];
            snprintf(nm, sizeof nm, "%s[%d]", names[a], i);
            CHECK_NEAR(nm, ys[a]->data[i], want[a][i], HATOL, HRTOL);
        }
    }
    ct_tensor_free(x);
    ct_tensor_free(pos);
    ct_graph_free(g);
}

static void test_hand_dense(void) {
    ct_graph *g = ct_graph_create(0);
    /* linear: [1, 2] W^T + b with W = [[1, 0], [0, 1], [1, 1]], b = [0.5, 0, -1] */
    ct_tensor *x = leaf(2, SHAPE(1, 2), (float[]){1, 2}, false);
    ct_tensor *w = leaf(2, SHAPE(3, 2), (float[]){1, 0, 0, 1, 1, 1}, false);
    ct_tensor *b = leaf(1, SHAPE(3), (float[]){0.5f, 0, -1}, false);
    ct_tensor *y = ct_linear(g, x, w, b);
    CHECK(y);
    if (y) CHECK_CLOSE_F("linear", y->data, ((float[]){1.5f, 2, 2}), 3, 0, 0);
    /* matmul: [[1, 2], [3, 4]] @ [[5], [6]] = [[17], [39]] */
    ct_tensor *a = leaf(2, SHAPE(2, 2), (float[]){1, 2, 3, 4}, false);
    ct_tensor *c = leaf(2, SHAPE(2, 1), (float[]){5, 6}, false);
    ct_tensor *m = ct_matmul(g, a, c, false, false);
    CHECK(m);
    if (m) CHECK_CLOSE_F("matmul", m->data, ((float[]){17, 39}), 2, 0, 0);
    /* sum / mean of [[1, 2], [3, 4]] */
    ct_tensor *s0 = ct_sum(g, a, 0), *m1 = ct_mean(g, a, -1);
    CHECK(s0 && m1);
    if (s0) CHECK_CLOSE_F("sum dim 0", s0->data, ((float[]){4, 6}), 2, 0, 0);
    if (m1) CHECK_CLOSE_F("mean dim -1", m1->data, ((float[]){1.5f, 3.5f}), 2, 0, 0);
    /* l2 normalize [3, 4] = [0.6, 0.8]; layernorm [1, 2, 3] = (x - 2) / sqrt(2/3 + eps) */
    ct_tensor *v = leaf(1, SHAPE(2), (float[]){3, 4}, false);
    ct_tensor *n = ct_l2_normalize(g, v, 1e-12f);
    CHECK(n);
    if (n) CHECK_CLOSE_F("l2_normalize [3, 4]", n->data, ((float[]){0.6f, 0.8f}), 2, HATOL, HRTOL);
    ct_tensor *u = leaf(1, SHAPE(3), (float[]){1, 2, 3}, false);
    ct_tensor *ln = ct_layernorm(g, u, NULL, NULL, 1e-5f);
    CHECK(ln);
    double r = 1 / sqrt(2.0 / 3.0 + 1e-5);
    if (ln) CHECK_CLOSE_F("layernorm [1, 2, 3]", ln->data, ((float[]){(float)-r, 0, (float)r}), 3, HATOL, HRTOL);
    ct_tensor *all[7] = {x, w, b, a, c, v, u};
    for (int i = 0; i < 7; i++) ct_tensor_free(all[i]);
    ct_graph_free(g);
}

/* Identical keys give uniform attention: each output row is the mean of the
 * values it may see (all of them; causal: the extras and v[0..i]). */
static void test_hand_attention(void) {
    enum { B = 1, T = 4, C = 4, P = 2 };
    float q[T * C], k[T * C], v[T * C], ek[P * C], ev[P * C];
    for (int i = 0; i < T * C; i++) {
        q[i] = (float)((i * 7) % 5) - 2;
        k[i] = (float)(i % C) * 0.5f;       /* every key row the same */
        v[i] = (float)(i / C * 10 + i % C); /* row t: 10 t + c */
    }
    for (int i = 0; i < P * C; i++) {
        ek[i] = (float)(i % C) * 0.5f;       /* same as the keys */
        ev[i] = (float)(100 + 10 * (i / C) + i % C);
    }
    for (int causal = 0; causal < 2; causal++)
        for (int extra = 0; extra < 2; extra++) {
            ct_graph *g = ct_graph_create(0);
            ct_tensor *tq = leaf(3, SHAPE(B, T, C), q, false), *tk = leaf(3, SHAPE(B, T, C), k, false),
                      *tv = leaf(3, SHAPE(B, T, C), v, false);
            ct_tensor *tek = extra ? leaf(2, SHAPE(P, C), ek, false) : NULL;
            ct_tensor *tev = extra ? leaf(2, SHAPE(P, C), ev, false) : NULL;
            ct_tensor *y = ct_attention(g, tq, tk, tv, tek, tev, 2, causal);
            CHECK_MSG(y != NULL, "attention: %s", ct_last_error());
            if (y) {
                float want[T * C];
                for (int i = 0; i < T; i++)
                    for (int c = 0; c < C; c++) {
                        double s = 0;
                        int cnt = 0;
                        for (int p = 0; extra && p < P; p++, cnt++) s += ev[p * C + c];
                        for (int j = 0; j < T && (!causal || j <= i); j++, cnt++) s += v[j * C + c];
                        want[i * C + c] = (float)(s / cnt);
                    }
                char nm[64];
                snprintf(nm, sizeof nm, "attention uniform causal=%d extra=%d", causal, extra);
                CHECK_CLOSE_F(nm, y->data, want, T * C, 1e-5, 1e-6);
            }
            ct_tensor *all[5] = {tq, tk, tv, tek, tev};
            for (int i = 0; i < 5; i++) ct_tensor_free(all[i]);
            ct_graph_free(g);
        }
}

/* ------------------------------------------------------------------------ */
/* Error paths                                                                */
/* ------------------------------------------------------------------------ */

/* op returned NULL, the graph's status is an error and the message names
 * word. */
#define CHECK_FAILS(g, expr, word)                                                            \
    do {                                                                                      \
        ct_clear_error();                                                                     \
        ct_tensor *r_ = (expr);                                                               \
        CHECK_MSG(r_ == NULL, "%s should fail", #expr);                                       \
        CHECK_MSG(ct_graph_status(g) != CT_OK, "%s: graph status is still ok", #expr);        \
        CHECK_MSG(strstr(ct_last_error(), word) != NULL, "%s: message \"%s\" lacks \"%s\"", \
                  #expr, ct_last_error(), word);                                              \
    } while (0)

static void test_errors_shapes(void) {
    ct_tensor *x = ct_tensor_new(3, SHAPE(2, 3, 4), true);
    ct_tensor *w_bad = ct_tensor_new2(5, 3, true), *b_bad = ct_tensor_new(1, SHAPE(4), true);
    ct_tensor *w = ct_tensor_new2(5, 4, true);
    ct_tensor *mb = ct_tensor_new2(5, 6, false), *bad_row = ct_tensor_new(1, SHAPE(3), false);
    ct_graph *g = ct_graph_create(0);

    CHECK_FAILS(g, ct_linear(g, x, w_bad, NULL), "linear");
    ct_graph_reset(g);
    CHECK(ct_graph_status(g) == CT_OK);
    CHECK_FAILS(g, ct_linear(g, x, w, b_bad), "linear");
    ct_graph_reset(g);
    CHECK_FAILS(g, ct_matmul(g, x, mb, false, false), "matmul");
    ct_graph_reset(g);
    CHECK_FAILS(g, ct_matmul(g, x, mb, false, true), "matmul");
    ct_graph_reset(g);
    CHECK_FAILS(g, ct_add(g, x, bad_row), "broadcast");
    ct_graph_reset(g);
    CHECK_FAILS(g, ct_mul(g, x, mb), "broadcast");
    ct_graph_reset(g);
    CHECK_FAILS(g, ct_sub(g, x, bad_row), "sub");
    ct_graph_reset(g);

    /* The status is sticky: after one failure, valid ops return NULL too,
     * and the message of the first failure is kept. */
    CHECK(ct_linear(g, x, w_bad, NULL) == NULL);
    ct_status st = ct_graph_status(g);
    CHECK(st == CT_ERR_ARG);
    CHECK(ct_relu(g, x) == NULL);
    CHECK(ct_graph_status(g) == st);
    CHECK(strstr(ct_last_error(), "linear") != NULL);
    ct_graph_reset(g);
    ct_tensor *ok = ct_relu(g, x);
    CHECK_MSG(ok != NULL, "relu after reset: %s", ct_last_error());

    ct_tensor *all[6] = {x, w_bad, b_bad, w, mb, bad_row};
    for (int i = 0; i < 6; i++) ct_tensor_free(all[i]);
    ct_graph_free(g);
}

static void test_errors_null_chain(void) {
    ct_tensor *x = ct_tensor_new(2, SHAPE(2, 4), true), *w = ct_tensor_new2(3, 5, true);
    ct_graph *g = ct_graph_create(0);
    ct_tensor *bad = ct_linear(g, x, w, NULL);
    CHECK(bad == NULL);
    /* Every later op on the NULL result returns NULL without crashing. */
    CHECK(ct_relu(g, bad) == NULL);
    CHECK(ct_add(g, bad, x) == NULL);
    CHECK(ct_add(g, x, bad) == NULL);
    CHECK(ct_matmul(g, bad, x, false, true) == NULL);
    CHECK(ct_softmax(g, bad) == NULL);
    CHECK(ct_layernorm(g, bad, NULL, NULL, 1e-5f) == NULL);
    CHECK(ct_cross_entropy(g, bad, (int64_t[]){0, 1}, 0) == NULL);
    CHECK(ct_sum(g, bad, 0) == NULL);
    CHECK(ct_attention(g, bad, bad, bad, NULL, NULL, 1, false) == NULL);
    ct_tensor *pair[2] = {x, bad};
    CHECK(ct_concat(g, pair, 2, 0) == NULL);
    CHECK(ct_slice(g, bad, 0, 0, 1) == NULL);
    CHECK(ct_gather_rows(g, bad, (int64_t[]){0}, 1, SHAPE(1)) == NULL);
    CHECK(strstr(ct_last_error(), "linear") != NULL); /* the first failure is what is reported */
    float one = 1;
    CHECK(ct_backward_from(g, bad, &one) != CT_OK);
    CHECK(ct_backward(g, bad) != CT_OK);

    /* NULL input on a healthy graph: NULL result, no crash. */
    ct_graph *g2 = ct_graph_create(0);
    CHECK(ct_gelu(g2, NULL) == NULL);
    CHECK(ct_linear(g2, NULL, w, NULL) == NULL);
    CHECK(ct_kl_div(g2, NULL, x) == NULL);
    CHECK(ct_entropy(g2, NULL) == NULL);
    ct_graph_free(g2);

    ct_tensor_free(x);
    ct_tensor_free(w);
    ct_graph_free(g);
}

static void test_errors_labels_ids(void) {
    ct_tensor *logits = ct_tensor_new2(3, 5, true), *table = ct_tensor_new2(6, 4, true);
    ct_graph *g = ct_graph_create(0);
    CHECK_FAILS(g, ct_cross_entropy(g, logits, (int64_t[]){0, 7, 1}, 0), "label 7");
    ct_graph_reset(g);
    CHECK_FAILS(g, ct_cross_entropy(g, logits, (int64_t[]){0, 4, 5}, 0.1f), "label 5");
    ct_graph_reset(g);
    CHECK_FAILS(g, ct_cross_entropy(g, logits, (int64_t[]){-1, 0, 0}, 0), "label -1");
    ct_graph_reset(g);
    CHECK_FAILS(g, ct_gather_rows(g, table, (int64_t[]){0, 6}, 1, SHAPE(2)), "id 6");
    ct_graph_reset(g);
    CHECK_FAILS(g, ct_gather_rows(g, table, (int64_t[]){-2, 1}, 2, SHAPE(1, 2)), "gather_rows");
    ct_graph_reset(g);
    /* the boundary values are fine */
    CHECK(ct_cross_entropy(g, logits, (int64_t[]){0, 4, 2}, 0) != NULL);
    CHECK(ct_gather_rows(g, table, (int64_t[]){0, 5}, 1, SHAPE(2)) != NULL);
    CHECK(ct_graph_status(g) == CT_OK);
    ct_tensor_free(logits);
    ct_tensor_free(table);
    ct_graph_free(g);
}

int main(void) {
    ct_set_num_threads(2);
    RUN(test_torch_linear_matmul);
    RUN(test_torch_binary);
    RUN(test_torch_layout);
    RUN(test_torch_reductions);
    RUN(test_torch_norms);
    RUN(test_torch_softmax);
    RUN(test_torch_losses);
    RUN(test_torch_activations);
    RUN(test_torch_attention);
    RUN(test_torch_coverage);
    RUN(test_hand_softmax);
    RUN(test_hand_losses);
    RUN(test_hand_activations);
    RUN(test_hand_dense);
    RUN(test_hand_attention);
    RUN(test_errors_shapes);
    RUN(test_errors_null_chain);
    RUN(test_errors_labels_ids);
    return ct_test_summary();
}
