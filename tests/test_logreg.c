/* L-BFGS on classic problems; the linear probe (multinomial logistic
 * regression and lpclip's C search) against scikit-learn 1.2
 * (tests/fixtures/logreg_ref.h from tools/ref/gen_logreg_ref.py); prompt
 * templates (built-in lists against data/templates, the file reader, filling). */
#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cliptune.h"
#include "fixtures/logreg_ref.h"
#include "harness.h"
#include "methods/method_templates.h"
#include "train/lbfgs.h"
#include "train/logreg.h"

/* ---- L-BFGS ------------------------------------------------------------- */

static int g_evals;

/* Chained Rosenbrock: sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2. */
static double rosenbrock(const double *x, double *g, int n, void *ctx) {
    (void)ctx;
    g_evals++;
    double f = 0;
    for (int i = 0; i < n; i++) g[i] = 0;
    for (int i = 0; i + 1 < n; i++) {
        double a = x[i + 1] - x[i] * x[i], c = 1 - x[i];
        f += 100 * a * a + c * c;
        g[i] += -400 * a * x[i] - 2 * c;
        g[i + 1] += 200 * a;
    }
    return f;
}

static ct_lbfgs_params tight(int max_iter) {
    ct_lbfgs_params p = ct_lbfgs_default_params();
    p.gtol = 1e-10;
    p.ftol = 0;
    p.max_iter = max_iter;
    return p;
}

static void lbfgs_rosenbrock_2(void) {
    double x[2] = {-1.2, 1};
    ct_lbfgs_params p = tight(1000);
    int it = -1;
    double fx = -1;
    g_evals = 0;
    CHECK_OK(ct_lbfgs_minimize(rosenbrock, x, 2, &p, NULL, &it, &fx));
    double one[2] = {1, 1};
    CHECK_CLOSE_D("x", x, one, 2, 1e-6, 0);
    CHECK_MSG(fx < 1e-14, "f = %g", fx);
    CHECK_MSG(it > 0 && it < 200, "iterations %d", it);
    printf("    rosenbrock n=2: %d iterations, %d evaluations\n", it, g_evals);
}

static void lbfgs_rosenbrock_100(void) {
    enum { N = 100 };
    double x[N], one[N];
    for (int i = 0; i < N; i++) {
        x[i] = i % 2 ? 1.0 : -1.2;
        one[i] = 1;
    }
    ct_lbfgs_params p = tight(5000);
    int it = -1;
    g_evals = 0;
    CHECK_OK(ct_lbfgs_minimize(rosenbrock, x, N, &p, NULL, &it, NULL));
    CHECK_CLOSE_D("x", x, one, N, 1e-6, 0);
    printf("    rosenbrock n=100: %d iterations, %d evaluations\n", it, g_evals);
}

/* f = 0.5 (x - x*)' A (x - x*), A = Q diag(lambda) Q' with Q a Householder
 * reflection. Written around x* so that f -> 0 and rounding does not limit
 * how close the line search can get. */
typedef struct quad {
    int n;
    double A[20 * 20], xs[20];
} quad;

static double quad_fn(const double *x, double *g, int n, void *ctx) {
    const quad *q = ctx;
    g_evals++;
    double f = 0;
    for (int i = 0; i < n; i++) {
        double ar = 0;
        for (int j = 0; j < n; j++) ar += q->A[i * n + j] * (x[j] - q->xs[j]);
        g[i] = ar;
        f += 0.5 * (x[i] - q->xs[i]) * ar;
    }
    return f;
}

static void lbfgs_quadratic(void) {
    enum { N = 20 };
    static quad q;
    q.n = N;
    double v[N], vv = 0, lam[N];
    for (int i = 0; i < N; i++) {
        v[i] = sin(1.0 + i);
        vv += v[i] * v[i];
        lam[i] = 1.0 + 9.0 * i / (N - 1); /* condition number 10 */
        q.xs[i] = cos(0.5 * i);
    }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < N; k++) {
                double qik = (i == k) - 2 * v[i] * v[k] / vv, qjk = (j == k) - 2 * v[j] * v[k] / vv;
                s += qik * lam[k] * qjk;
            }
            q.A[i * N + j] = s;
        }
    double x[N] = {0};
    ct_lbfgs_params p = tight(1000);
    int it = -1;
    g_evals = 0;
    CHECK_OK(ct_lbfgs_minimize(quad_fn, x, N, &p, &q, &it, NULL));
    CHECK_CLOSE_D("x", x, q.xs, N, 1e-10, 0);
    /* Conjugate gradients need ~35 iterations here (error factor
     * (sqrt(10) - 1) / (sqrt(10) + 1) = 0.52 per step, down to 1e-10);
     * L-BFGS should do no worse. */
    CHECK_MSG(it <= 36, "a condition-10 quadratic took %d iterations", it);
    printf("    quadratic n=20, cond 10: %d iterations, %d evaluations\n", it, g_evals);

    /* Two distinct eigenvalues: exact line searches would end in 2 steps;
     * with inexact (Wolfe) steps the secant pairs still capture the
     * spectrum within a few. */
    for (int i = 0; i < N; i++) lam[i] = i % 2 ? 4.0 : 1.0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < N; k++) {
                double qik = (i == k) - 2 * v[i] * v[k] / vv, qjk = (j == k) - 2 * v[j] * v[k] / vv;
                s += qik * lam[k] * qjk;
            }
            q.A[i * N + j] = s;
        }
    for (int i = 0; i < N; i++) x[i] = 0;
    CHECK_OK(ct_lbfgs_minimize(quad_fn, x, N, &p, &q, &it, NULL));
    CHECK_CLOSE_D("x (2 eigenvalues)", x, q.xs, N, 1e-10, 0);
    CHECK_MSG(it <= 10, "a two-eigenvalue quadratic took %d iterations", it);
    printf("    quadratic n=20, eigenvalues {1, 4}: %d iterations\n", it);
}

/* 100 x^2 - log x: infinite for x <= 0, where the first trial step lands. */
static double barrier(const double *x, double *g, int n, void *ctx) {
    (void)n;
    (void)ctx;
    if (!(x[0] > 0)) {
        g[0] = NAN;
        return INFINITY;
    }
    g[0] = 200 * x[0] - 1 / x[0];
    return 100 * x[0] * x[0] - log(x[0]);
}

static void lbfgs_edges(void) {
    /* Backing off a step that leaves the domain. */
    double x = 1;
    ct_lbfgs_params p = tight(100);
    CHECK_OK(ct_lbfgs_minimize(barrier, &x, 1, &p, NULL, NULL, NULL));
    CHECK_NEAR("barrier minimum", x, 1 / sqrt(200.0), 1e-9, 0);

    /* max_iter is a normal end that reports the iterations. */
    double r[2] = {-1.2, 1};
    int it = -1;
    p = tight(3);
    CHECK_OK(ct_lbfgs_minimize(rosenbrock, r, 2, &p, NULL, &it, NULL));
    CHECK(it == 3);
    /* Already converged: zero iterations, x untouched. */
    double at[2] = {1, 1};
    CHECK_OK(ct_lbfgs_minimize(rosenbrock, at, 2, NULL, NULL, &it, NULL));
    CHECK(it == 0 && at[0] == 1 && at[1] == 1);
    /* ftol: a loose relative tolerance stops well before gtol would. */
    double r2[2] = {-1.2, 1};
    int it_loose;
    p = tight(1000);
    p.ftol = 1e-2;
    CHECK_OK(ct_lbfgs_minimize(rosenbrock, r2, 2, &p, NULL, &it_loose, NULL));
    CHECK_MSG(it_loose < 30, "ftol 1e-2 ran %d iterations", it_loose);

    /* Errors. */
    CHECK(ct_lbfgs_minimize(NULL, r, 2, NULL, NULL, NULL, NULL) == CT_ERR_ARG);
    CHECK(ct_lbfgs_minimize(rosenbrock, r, 0, NULL, NULL, NULL, NULL) == CT_ERR_ARG);
    p = tight(10);
    p.m = 0;
    CHECK(ct_lbfgs_minimize(rosenbrock, r, 2, &p, NULL, NULL, NULL) == CT_ERR_ARG);
    double bad = -1;
    CHECK(ct_lbfgs_minimize(barrier, &bad, 1, NULL, NULL, NULL, NULL) == CT_ERR_ARG);
    CHECK(strstr(ct_last_error(), "starting point") != NULL);
}

/* ---- logistic regression against scikit-learn ---------------------------- */

typedef struct lr_case {
    const char *name;
    int n, ntest, d, K;
    double C, f_sklearn, f_opt, sk_dist;
    const float *x, *xtest;
    const int *y, *pred, *pred_default;
    const double *w, *b, *w_opt, *b_opt;
} lr_case;

#define LR_CASE(P, p)                                                                       \
    {#p,     P##_N,    P##_NTEST, P##_D,           P##_K,  P##_C,   P##_F_SKLEARN,             \
     P##_F_OPT, P##_SK_DIST, p##_x, p##_xtest, p##_y, p##_pred, p##_pred_default, p##_w, p##_b,   \
     p##_w_opt, p##_b_opt}

static const lr_case k_cases[] = {
    LR_CASE(LR_K4, lr_k4),
    LR_CASE(LR_K4S, lr_k4s),
    LR_CASE(LR_K10, lr_k10),
};
#define N_CASES ((int)(sizeof k_cases / sizeof k_cases[0]))

static double max_abs(const double *a, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

/* argmax of float scores, ties to the lower index (sklearn's predict). */
static void predict(const ct_logreg *m, const float *X, int n, int *pred) {
    float *s = malloc((size_t)n * m->K * sizeof *s);
    if (!s) {
        CHECK_MSG(false, "out of memory");
        return;
    }
    ct_logreg_scores(m, X, n, s);
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int k = 1; k < m->K; k++)
            if (s[i * m->K + k] > s[i * m->K + best]) best = k;
        pred[i] = best;
    }
    free(s);
}

static void check_pred(const lr_case *c, const ct_logreg *m, const int *want, const char *what) {
    int pred[256];
    CHECK(c->ntest <= 256);
    predict(m, c->xtest, c->ntest, pred);
    int diff = 0;
    for (int i = 0; i < c->ntest; i++) diff += pred[i] != want[i];
    CHECK_MSG(diff == 0, "%s %s: %d of %d predictions differ from sklearn", c->name, what, diff,
              c->ntest);
}

/* Our objective at sklearn's own solution is sklearn's reported value: the
 * scaling (sum, not mean; 1/(2C) on ||W||^2; b unpenalised) is the same. */
static void logreg_objective_matches_sklearn(void) {
    for (int ci = 0; ci < N_CASES; ci++) {
        const lr_case *c = &k_cases[ci];
        double f;
        CHECK_OK(ct_logreg_objective(c->x, c->y, c->n, c->d, c->K, c->C, c->w, c->b, &f, NULL,
                                     NULL));
        CHECK_NEAR(c->name, f, c->f_sklearn, 0, 1e-12);
    }
}

static void logreg_gradient_fd(void) {
    const lr_case *c = &k_cases[2];
    int d = c->d, K = c->K, nw = K * d;
    double W[LR_K10_K * LR_K10_D], b[LR_K10_K], gW[LR_K10_K * LR_K10_D], gb[LR_K10_K];
    ct_rng rng;
    ct_rng_init(&rng, 5);
    for (int i = 0; i < nw; i++) W[i] = 0.3 * ct_rng_normal(&rng);
    for (int k = 0; k < K; k++) b[k] = 0.3 * ct_rng_normal(&rng);
    double f0;
    CHECK_OK(ct_logreg_objective(c->x, c->y, c->n, d, K, c->C, W, b, &f0, gW, gb));
    double worst = 0;
    for (int e = 0; e < nw + K; e++) {
        double *p = e < nw ? &W[e] : &b[e - nw];
        double g = e < nw ? gW[e] : gb[e - nw], save = *p, h = 1e-5, fp, fm;
        *p = save + h;
        CHECK_OK(ct_logreg_objective(c->x, c->y, c->n, d, K, c->C, W, b, &fp, NULL, NULL));
        *p = save - h;
        CHECK_OK(ct_logreg_objective(c->x, c->y, c->n, d, K, c->C, W, b, &fm, NULL, NULL));
        *p = save;
        double fd = (fp - fm) / (2 * h), err = fabs(fd - g) / (1e-3 + fabs(g));
        if (err > worst) worst = err;
        CHECK_MSG(err < 1e-6, "d f / d %s[%d]: analytic %.10g, finite difference %.10g",
                  e < nw ? "W" : "b", e < nw ? e : e - nw, g, fd);
    }
    printf("    worst relative gradient error %.2e\n", worst);
}

/* Largest |W| or |b|: the scale for absolute tolerances. */
static double param_scale(const lr_case *c) {
    return fmax(max_abs(c->w_opt, c->K * c->d), max_abs(c->b_opt, c->K));
}

static void logreg_vs_sklearn(void) {
    for (int ci = 0; ci < N_CASES; ci++) {
        const lr_case *c = &k_cases[ci];
        int nw = c->K * c->d;
        double scale = param_scale(c);
        /* Tight: ours goes to the optimum, which sklearn only approaches
         * (scipy's default ftol, which sklearn cannot change, stops it
         * sk_dist * scale away: 4e-5 to 2e-4 here). */
        ct_lbfgs_params p = ct_logreg_default_params(10000);
        p.gtol = 1e-10;
        p.ftol = 0;
        ct_logreg m;
        CHECK_OK(ct_logreg_fit_ex(c->x, c->y, c->n, c->d, c->K, c->C, &p, &m));
        if (!m.W) continue;
        CHECK_CLOSE_D("W vs optimum", m.W, c->w_opt, nw, 1e-6 * scale, 0);
        CHECK_CLOSE_D("b vs optimum", m.b, c->b_opt, c->K, 1e-6 * scale, 0);
        double tol_sk = (1.05 * c->sk_dist + 1e-6) * scale;
        CHECK_CLOSE_D("W vs sklearn", m.W, c->w, nw, tol_sk, 0);
        CHECK_CLOSE_D("b vs sklearn", m.b, c->b, c->K, tol_sk, 0);
        double f;
        CHECK_OK(ct_logreg_objective(c->x, c->y, c->n, c->d, c->K, c->C, m.W, m.b, &f, NULL,
                                     NULL));
        CHECK_NEAR("reported loss", m.loss, f, 0, 1e-13);
        CHECK_MSG(f <= c->f_sklearn + 1e-8 * fabs(c->f_sklearn),
                  "%s: f(ours) = %.15g > f(sklearn) = %.15g", c->name, f, c->f_sklearn);
        CHECK_NEAR("f vs optimum", f, c->f_opt, 0, 1e-13);
        check_pred(c, &m, c->pred, "tight fit");
        double dw = 0, dopt = 0;
        for (int i = 0; i < nw; i++) {
            dw = fmax(dw, fabs(m.W[i] - c->w[i]));
            dopt = fmax(dopt, fabs(m.W[i] - c->w_opt[i]));
        }
        for (int k = 0; k < c->K; k++) {
            dw = fmax(dw, fabs(m.b[k] - c->b[k]));
            dopt = fmax(dopt, fabs(m.b[k] - c->b_opt[k]));
        }
        printf("    %s tight: %d iters, f - f_sklearn = %.2e, |theta - sklearn| = %.1e, "
               "|theta - opt| = %.1e (x scale)\n",
               c->name, m.n_iter, f - c->f_sklearn, dw / scale, dopt / scale);
        ct_logreg_free(&m);

        /* sklearn's defaults (tol 1e-4, max_iter 1000): the CLIP README and
         * CoOp setting. Both stop early, each its own way. */
        CHECK_OK(ct_logreg_fit(c->x, c->y, c->n, c->d, c->K, c->C, 1000, &m));
        if (!m.W) continue;
        CHECK_CLOSE_D("W default fit", m.W, c->w_opt, nw, 1e-3 * scale, 0);
        check_pred(c, &m, c->pred_default, "default fit");
        CHECK_OK(ct_logreg_objective(c->x, c->y, c->n, c->d, c->K, c->C, m.W, m.b, &f, NULL,
                                     NULL));
        printf("    %s default: %d iters, f - f_opt = %.2e\n", c->name, m.n_iter, f - c->f_opt);
        ct_logreg_free(&m);
    }
}

static void logreg_search_vs_lpclip(void) {
    ct_logreg m;
    double C = -1, acc = -1;
    CHECK_OK(ct_logreg_search(lr_search_xtr, lr_search_ytr, LR_SEARCH_NTR, lr_search_xval,
                              lr_search_yval, LR_SEARCH_NVAL, LR_SEARCH_D, LR_SEARCH_K, &m, &C,
                              &acc));
    CHECK_NEAR("best C", C, LR_SEARCH_C, 0, 1e-12);
    CHECK_NEAR("val acc", acc, (double)LR_SEARCH_CORRECT / LR_SEARCH_NVAL, 0, 1e-15);
    CHECK(m.W && m.K == LR_SEARCH_K && m.d == LR_SEARCH_D);
    /* The returned model is the one scored: recount its validation hits. */
    if (m.W) {
        int pred[LR_SEARCH_NVAL], correct = 0;
        predict(&m, lr_search_xval, LR_SEARCH_NVAL, pred);
        for (int i = 0; i < LR_SEARCH_NVAL; i++) correct += pred[i] == lr_search_yval[i];
        CHECK(correct == LR_SEARCH_CORRECT);
    }
    ct_logreg_free(&m);
}

/* Random "CLIP-like" features: vectors of norm `norm` around per-class
 * directions. */
static float *clip_like(ct_rng *r, int n, int d, int K, int *y, float noise, float norm) {
    float *X = malloc((size_t)n * d * sizeof *X), *mu = malloc((size_t)K * d * sizeof *mu);
    if (!X || !mu) {
        free(X);
        free(mu);
        return NULL;
    }
    for (int i = 0; i < K * d; i++) mu[i] = ct_rng_normal(r);
    for (int i = 0; i < n; i++) {
        y[i] = i % K;
        double ss = 0;
        for (int j = 0; j < d; j++) {
            float v = mu[y[i] * d + j] + noise * ct_rng_normal(r);
            X[(size_t)i * d + j] = v;
            ss += (double)v * v;
        }
        for (int j = 0; j < d; j++) X[(size_t)i * d + j] *= norm / (float)sqrt(ss);
    }
    free(mu);
    return X;
}

/* Bit-identical fits for 1 and 3 threads (the objective's parallel split
 * never changes a summation order). */
static void logreg_thread_independent(void) {
    enum { N = 1200, D = 70, K = 23 };
    ct_rng r;
    ct_rng_init(&r, 11);
    int *y = malloc(N * sizeof *y);
    float *X = y ? clip_like(&r, N, D, K, y, 3.0f, 1.0f) : NULL;
    if (!X) {
        free(y);
        CHECK_MSG(false, "out of memory");
        return;
    }
    ct_logreg a, b;
    ct_set_num_threads(1);
    CHECK_OK(ct_logreg_fit(X, y, N, D, K, 0.5, 200, &a));
    ct_set_num_threads(3);
    CHECK_OK(ct_logreg_fit(X, y, N, D, K, 0.5, 200, &b));
    ct_set_num_threads(0);
    if (a.W && b.W) {
        CHECK(a.n_iter == b.n_iter);
        CHECK(memcmp(a.W, b.W, (size_t)K * D * sizeof *a.W) == 0);
        CHECK(memcmp(a.b, b.b, (size_t)K * sizeof *a.b) == 0);
    }
    ct_logreg_free(&a);
    ct_logreg_free(&b);
    free(X);
    free(y);
}

/* 16 shots x 100 classes x 512 dims at the CLIP README's C = 0.316, with
 * features of norm 10 (unit-norm ones make this C so strong a penalty that
 * the fit ends in ~5 iterations). */
static void logreg_speed(void) {
    enum { SHOTS = 16, K = 100, D = 512, N = SHOTS * K };
    ct_rng r;
    ct_rng_init(&r, 3);
    int *y = malloc(N * sizeof *y);
    float *X = y ? clip_like(&r, N, D, K, y, 2.0f, 10.0f) : NULL;
    if (!X) {
        free(y);
        CHECK_MSG(false, "out of memory");
        return;
    }
    ct_logreg m;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_OK(ct_logreg_fit(X, y, N, D, K, 0.316, 1000, &m));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("    16-shot x 100 classes x 512 dims, C=0.316: %.2f s, %d iterations, %d threads\n",
           s, m.n_iter, ct_get_num_threads());
    CHECK_MSG(s < 60, "fit took %.1f s", s);
    ct_logreg_free(&m);
    free(X);
    free(y);
}

static void logreg_errors(void) {
    const lr_case *c = &k_cases[0];
    ct_logreg m = {.K = 99};
    int y[3] = {0, 5, 1};
    float X[3 * 2] = {0, 1, 2, 3, 4, 5};
    CHECK(ct_logreg_fit(X, y, 3, 2, 4, 1.0, 100, &m) == CT_ERR_ARG);
    CHECK(strstr(ct_last_error(), "y[1] = 5") != NULL);
    CHECK(m.W == NULL && m.K == 0); /* left empty on failure */
    y[1] = 2;
    X[3] = NAN;
    CHECK(ct_logreg_fit(X, y, 3, 2, 4, 1.0, 100, &m) == CT_ERR_ARG);
    CHECK(strstr(ct_last_error(), "X[1, 1]") != NULL);
    CHECK(ct_logreg_fit(c->x, c->y, c->n, c->d, 1, 1.0, 100, &m) == CT_ERR_ARG);
    CHECK_MSG(strstr(ct_last_error(), "1 class: a classifier needs at least two"), "%s",
              ct_last_error());
    CHECK(ct_logreg_fit(c->x, c->y, c->n, c->d, c->K, 0.0, 100, &m) == CT_ERR_ARG);
    CHECK(ct_logreg_fit(c->x, c->y, c->n, c->d, c->K, INFINITY, 100, &m) == CT_ERR_ARG);
    CHECK(ct_logreg_fit(c->x, c->y, 0, c->d, c->K, 1.0, 100, &m) == CT_ERR_ARG);
    CHECK(ct_logreg_fit(c->x, c->y, c->n, c->d, c->K, 1.0, 100, NULL) == CT_ERR_ARG);
    ct_logreg_free(NULL);
    ct_logreg_free(&m);
    ct_logreg_free(&m);
}

/* ---- templates ------------------------------------------------------------ */

static void templates_builtin_match_files(void) {
    char **t = NULL;
    int n = 0, nb = 0;
    CHECK_OK(ct_templates_load(CT_SOURCE_DIR "/data/templates/imagenet80.txt", &t, &n));
    const char *const *b = ct_templates_builtin("imagenet80", &nb);
    CHECK(n == 80 && nb == 80 && b);
    for (int i = 0; t && b && i < n && i < nb; i++)
        CHECK_MSG(strcmp(t[i], b[i]) == 0, "template %d: file \"%s\", built-in \"%s\"", i, t[i],
                  b[i]);
    CHECK(t && t[n] == NULL);
    CHECK(t && strcmp(t[0], "a bad photo of a {}.") == 0 &&
          strcmp(t[79], "a tattoo of the {}.") == 0);
    /* CoOp's 7 selected templates are among the 80. */
    int ns = 0;
    const char *const *sel = ct_templates_builtin("imagenet-select", &ns);
    CHECK(sel && ns == 7);
    for (int i = 0; sel && i < ns; i++) {
        bool in = false;
        for (int j = 0; j < nb; j++) in = in || strcmp(sel[i], b[j]) == 0;
        CHECK_MSG(in, "\"%s\" is not one of the 80", sel[i]);
    }
    CHECK(ct_templates_builtin("nope", &ns) == NULL && ns == 0);
    ct_templates_free(t);

    /* data/templates/coop.json and the built-in table agree entry by entry. */
    const char *path = CT_SOURCE_DIR "/data/templates/coop.json";
    char *text;
    CHECK_OK(ct_read_file(path, &text, NULL));
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    CHECK(cJSON_IsObject(root));
    int entries = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        entries++;
        char *from_file = NULL, *built_in = NULL;
        bool f1 = false, f2 = false;
        CHECK_OK(ct_template_for_dataset(path, it->string, &from_file, &f1));
        CHECK_OK(ct_template_for_dataset(NULL, it->string, &built_in, &f2));
        CHECK_MSG(f1 && f2 && from_file && built_in && strcmp(from_file, it->valuestring) == 0 &&
                      strcmp(built_in, it->valuestring) == 0,
                  "%s: json \"%s\", file lookup \"%s\", built-in \"%s\"", it->string,
                  it->valuestring, from_file ? from_file : "(null)",
                  built_in ? built_in : "(null)");
        free(from_file);
        free(built_in);
    }
    CHECK(entries == 17);
    cJSON_Delete(root);

    char *s = NULL;
    bool found = true;
    CHECK_OK(ct_template_for_dataset(NULL, "OxfordPets", &s, &found));
    CHECK(found && s && strcmp(s, "a photo of a {}, a type of pet.") == 0);
    free(s);
    CHECK_OK(ct_template_for_dataset(path, "eurosat", &s, &found)); /* case-insensitive */
    CHECK(found && s && strcmp(s, "a centered satellite photo of {}.") == 0);
    free(s);
    CHECK_OK(ct_template_for_dataset(path, "NoSuchSet", &s, &found));
    CHECK(!found && s && strcmp(s, CT_TEMPLATE_DEFAULT) == 0);
    free(s);
}

static const char *write_tmp(const char *name, const char *text) {
    static char path[8][1024];
    static int slot;
    char *p = path[slot++ % 8];
    snprintf(p, 1024, "%s/%s", ct_test_tmpdir(), name);
    CHECK_OK(ct_write_file_atomic(p, text, strlen(text)));
    return p;
}

static void templates_load_rules(void) {
    char **t = NULL;
    int n = -1;
    const char *ok = write_tmp("ok.txt", "  a photo of a {}.\r\n\n\t\n{} texture.  \nlast {}");
    CHECK_OK(ct_templates_load(ok, &t, &n));
    CHECK(n == 3 && t && strcmp(t[0], "a photo of a {}.") == 0 &&
          strcmp(t[1], "{} texture.") == 0 && strcmp(t[2], "last {}") == 0 && t[3] == NULL);
    ct_templates_free(t);
    ct_templates_free(NULL);

    const char *missing = write_tmp("missing.txt", "a {}\n\nno hole here\n");
    CHECK(ct_templates_load(missing, &t, &n) == CT_ERR_FORMAT && t == NULL && n == 0);
    CHECK_MSG(strstr(ct_last_error(), "missing.txt: line 3") != NULL, "%s", ct_last_error());
    const char *twice = write_tmp("twice.txt", "{} and {}\n");
    CHECK(ct_templates_load(twice, &t, &n) == CT_ERR_FORMAT);
    CHECK_MSG(strstr(ct_last_error(), "twice.txt: line 1") != NULL, "%s", ct_last_error());
    const char *stray = write_tmp("stray.txt", "a {}\na {0} photo {}\n");
    CHECK(ct_templates_load(stray, &t, &n) == CT_ERR_FORMAT);
    CHECK_MSG(strstr(ct_last_error(), "stray.txt: line 2") != NULL, "%s", ct_last_error());
    const char *empty = write_tmp("empty.txt", " \n\n");
    CHECK(ct_templates_load(empty, &t, &n) == CT_ERR_FORMAT);
    char nope[1100];
    snprintf(nope, sizeof nope, "%s/does-not-exist.txt", ct_test_tmpdir());
    CHECK(ct_templates_load(nope, &t, &n) == CT_ERR_IO);

    const char *badjson = write_tmp("bad.json", "{\"A\": \"no hole\", \"B\": 3}");
    char *s = NULL;
    CHECK(ct_template_for_dataset(badjson, "A", &s, NULL) == CT_ERR_FORMAT && s == NULL);
    CHECK_MSG(strstr(ct_last_error(), "bad.json: \"A\"") != NULL, "%s", ct_last_error());
    CHECK(ct_template_for_dataset(badjson, "B", &s, NULL) == CT_ERR_FORMAT);
    const char *notjson = write_tmp("not.json", "{\"A\": ");
    CHECK(ct_template_for_dataset(notjson, "A", &s, NULL) == CT_ERR_FORMAT);
    CHECK(ct_template_for_dataset(nope, "A", &s, NULL) == CT_ERR_IO);
}

static void templates_fill(void) {
    char *s = ct_template_fill("a photo of a {}, a type of pet.", "american_pit_bull_terrier");
    CHECK(s && strcmp(s, "a photo of a american pit bull terrier, a type of pet.") == 0);
    free(s);
    s = ct_template_fill("{} texture.", "banded");
    CHECK(s && strcmp(s, "banded texture.") == 0);
    free(s);
    s = ct_template_fill("a photo of the number: \"{}\".", "7");
    CHECK(s && strcmp(s, "a photo of the number: \"7\".") == 0);
    free(s);
    CHECK(ct_template_fill("no hole", "x") == NULL);
    CHECK(ct_template_fill("{}{}", "x") == NULL);
    CHECK(ct_template_fill("a {}", NULL) == NULL);
    CHECK(ct_template_check("a {}", "ctx") == CT_OK);
    CHECK(ct_template_check("a {", "ctx") == CT_ERR_FORMAT);
}

int main(void) {
    RUN(lbfgs_rosenbrock_2);
    RUN(lbfgs_rosenbrock_100);
    RUN(lbfgs_quadratic);
    RUN(lbfgs_edges);
    RUN(logreg_objective_matches_sklearn);
    RUN(logreg_gradient_fd);
    RUN(logreg_vs_sklearn);
    RUN(logreg_search_vs_lpclip);
    RUN(logreg_thread_independent);
    RUN(logreg_speed);
    RUN(logreg_errors);
    RUN(templates_builtin_match_files);
    RUN(templates_load_rules);
    RUN(templates_fill);
    return ct_test_summary();
}
