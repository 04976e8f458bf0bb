/* Finite-difference gradient checks, run against the double-precision build
 * of the engine (test_grad_* link cliptune_f64, where ct_real is double).
 *
 * For an op f with inputs x_1..x_n and a fixed random cotangent R of f's
 * output shape, the analytic gradient of L = <f(x), R> from ct_backward_from
 * must match the central difference (L(x + h e_j) - L(x - h e_j)) / 2h for
 * every element j (sampled for large inputs). The check is repeated with
 * each input alone requiring grad, so the "NULL gradient = frozen, skip" path
 * of every backward kernel is exercised and must still give the same
 * gradient for the input that is trained. */
#ifndef CT_TEST_GRADCHECK_H
#define CT_TEST_GRADCHECK_H

#include <stdlib.h>
#include <string.h>

#include "cliptune.h"
#include "harness.h"

#ifndef CT_REAL_DOUBLE
#error "gradient checks must link the double-precision engine (cliptune_f64)"
#endif

#define GC_MAX_IN 64

typedef ct_tensor *(*gc_fn)(ct_graph *g, ct_tensor *const *in, void *ctx);

static double gc_dot(const ct_tensor *t, const double *r) {
    double s = 0;
    for (int64_t i = 0; i < t->numel; i++) s += t->data[i] * r[i];
    return s;
}

/* Fill a test input with N(0, std) values from a fixed seed. */
static inline ct_tensor *gc_input(uint64_t seed, int ndim, const int64_t *shape, double std) {
    ct_tensor *t = ct_tensor_new(ndim, shape, true);
    ct_rng r;
    ct_rng_init(&r, seed);
    ct_rng_fill_normal(&r, t->data, (size_t)t->numel, 0.0f, (float)std);
    return t;
}

/* One pass with the given requires_grad mask. */
static bool gc_pass(const char *name, gc_fn f, ct_tensor *const *in, int n, void *ctx,
                    const bool *mask, double h, double atol, double rtol) {
    ct_graph *g = ct_graph_create(0);
    bool saved[GC_MAX_IN] = {0};
    for (int k = 0; k < n; k++) {
        if (!in[k]) continue;
        saved[k] = in[k]->requires_grad;
        in[k]->requires_grad = mask[k];
        ct_tensor_zero_grad(in[k]);
    }
    bool ok = true;
    ct_tensor *out = f(g, in, ctx);
    if (!out) {
        ct_test_fail(__FILE__, __LINE__, "%s: forward failed: %s", name, ct_last_error());
        ok = false;
        goto done;
    }
    int64_t no = out->numel;
    double *R = malloc((size_t)no * sizeof *R);
    ct_real *Rr = malloc((size_t)no * sizeof *Rr);
    ct_rng rng;
    ct_rng_init(&rng, 12345);
    for (int64_t i = 0; i < no; i++) Rr[i] = R[i] = ct_rng_normal(&rng);
    ct_status st = ct_backward_from(g, out, Rr);
    if (st != CT_OK) {
        ct_test_fail(__FILE__, __LINE__, "%s: backward failed: %s", name, ct_last_error());
        ok = false;
    }
    for (int k = 0; ok && k < n; k++) {
        if (!in[k]) continue;
        if (!mask[k]) {
            /* A frozen input must not get a gradient. */
            for (int64_t j = 0; in[k]->grad && j < in[k]->numel; j++)
                if (in[k]->grad[j] != 0) {
                    ct_test_fail(__FILE__, __LINE__, "%s: frozen input %d received a gradient",
                                 name, k);
                    ok = false;
                    break;
                }
            continue;
        }
        int64_t m = in[k]->numel;
        int64_t step = m > 600 ? m / 600 + 1 : 1; /* sample big inputs */
        int64_t cnt = (m + step - 1) / step;
        double *num = malloc((size_t)cnt * sizeof *num), *ana = malloc((size_t)cnt * sizeof *ana);
        int64_t c = 0;
        for (int64_t j = 0; j < m; j += step, c++) {
            ana[c] = in[k]->grad[j];
            ct_real x0 = in[k]->data[j];
            in[k]->data[j] = x0 + h;
            ct_graph_reset(g);
            double lp = gc_dot(f(g, in, ctx), R);
            in[k]->data[j] = x0 - h;
            ct_graph_reset(g);
            double lm = gc_dot(f(g, in, ctx), R);
            in[k]->data[j] = x0;
            num[c] = (lp - lm) / (2 * h);
        }
        char label[160];
        snprintf(label, sizeof label, "%s: d/d(input %d)%s", name, k,
                 mask[k] && n > 1 ? "" : "");
        ok &= ct_check_close_d(__FILE__, __LINE__, label, ana, num, (size_t)cnt, atol, rtol);
        free(num);
        free(ana);
    }
    free(R);
    free(Rr);
done:
    for (int k = 0; k < n; k++)
        if (in[k]) in[k]->requires_grad = saved[k];
    ct_graph_free(g);
    return ok;
}

/* All inputs that require grad together, then each one alone. */
static inline bool gradcheck_tol(const char *name, gc_fn f, ct_tensor *const *in, int n,
                                 void *ctx, double atol, double rtol) {
    bool mask[GC_MAX_IN] = {0}, ok;
    const double h = 1e-6;
    if (n > GC_MAX_IN) {
        ct_test_fail(__FILE__, __LINE__, "%s: more than %d inputs", name, GC_MAX_IN);
        return false;
    }
    for (int k = 0; k < n; k++) mask[k] = in[k] && in[k]->requires_grad;
    ok = gc_pass(name, f, in, n, ctx, mask, h, atol, rtol);
    int trainable = 0;
    for (int k = 0; k < n; k++) trainable += mask[k];
    if (trainable > 1)
        for (int k = 0; k < n; k++) {
            if (!mask[k]) continue;
            bool one[GC_MAX_IN] = {0};
            one[k] = true;
            char label[256];
            snprintf(label, sizeof label, "%.200s [only input %d trained]", name, k);
            ok &= gc_pass(label, f, in, n, ctx, one, h, atol, rtol);
        }
    return ok;
}

/* Default tolerances for smooth ops in double precision. */
static inline bool gradcheck(const char *name, gc_fn f, ct_tensor *const *in, int n, void *ctx) {
    return gradcheck_tol(name, f, in, n, ctx, 1e-7, 1e-6);
}

#endif
