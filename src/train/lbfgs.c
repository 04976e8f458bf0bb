/* L-BFGS with a strong-Wolfe line search; see lbfgs.h for the contract.
 *
 * Vector loops run on one thread on purpose: they are O(m n) per iteration,
 * small next to an objective such as logistic regression (O(n_samples n)),
 * and a fixed summation order makes the whole run independent of the thread
 * count whenever the objective is. */
#include "train/lbfgs.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

/* Sufficient decrease and curvature constants (Nocedal & Wright's advice for
 * quasi-Newton methods), and scipy's cap on evaluations per line search. */
#define LS_C1 1e-4
#define LS_C2 0.9
#define LS_MAX_EVALS 20

ct_lbfgs_params ct_lbfgs_default_params(void) {
    return (ct_lbfgs_params){.m = 10, .max_iter = 15000, .gtol = 1e-5,
                             .ftol = 2.220446049250313e-09};
}

/* omp simd: a fixed number of partial sums (set at compile time), so the
 * result is still independent of the thread count. */
static double dot(const double *a, const double *b, int n) {
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static double inf_norm(const double *a, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) {
        double v = fabs(a[i]);
        if (!(v <= m)) m = v; /* NaN propagates: never looks converged */
    }
    return m;
}

static bool all_finite(const double *a, int n) {
    for (int i = 0; i < n; i++)
        if (!isfinite(a[i])) return false;
    return true;
}

/* Everything one run needs, allocated once. */
typedef struct lbfgs_ws {
    ct_lbfgs_fn f;
    void *ctx;
    int n, m;
    double *g;     /* n: gradient at x                        */
    double *d;     /* n: search direction                     */
    double *xt;    /* n: line-search trial point              */
    double *gt;    /* n: gradient at xt                       */
    double *s, *y; /* m x n: ring buffers of steps and grad changes */
    double *rho;   /* m: 1 / (s'y)                            */
    double *alpha; /* m: two-loop scratch                     */
    int head;      /* slot of the newest pair                 */
    int npairs;    /* pairs stored (<= m)                     */
    double gamma;  /* H0 = gamma I, s'y / y'y of the newest pair */
} lbfgs_ws;

/* d = -H g by the two-loop recursion (N&W Alg. 7.4). */
static void two_loop(lbfgs_ws *w) {
    int n = w->n, m = w->m;
    double *q = w->d;
    memcpy(q, w->g, (size_t)n * sizeof *q);
    for (int k = 0; k < w->npairs; k++) {
        int i = (w->head - k + m) % m;
        const double *si = w->s + (size_t)i * n, *yi = w->y + (size_t)i * n;
        double a = w->rho[i] * dot(si, q, n);
        w->alpha[i] = a;
        for (int j = 0; j < n; j++) q[j] -= a * yi[j];
    }
    double gamma = w->npairs > 0 ? w->gamma : 1.0;
    for (int j = 0; j < n; j++) q[j] *= gamma;
    for (int k = w->npairs - 1; k >= 0; k--) {
        int i = (w->head - k + m) % m;
        const double *si = w->s + (size_t)i * n, *yi = w->y + (size_t)i * n;
        double beta = w->rho[i] * dot(yi, q, n);
        double c = w->alpha[i] - beta;
        for (int j = 0; j < n; j++) q[j] += c * si[j];
    }
    for (int j = 0; j < n; j++) q[j] = -q[j];
}

/* phi(a) = f(x + a d) into xt/gt; returns phi and sets *dphi = gt'd. */
static double phi_eval(lbfgs_ws *w, const double *x, double a, double *dphi) {
    for (int j = 0; j < w->n; j++) w->xt[j] = x[j] + a * w->d[j];
    double v = w->f(w->xt, w->gt, w->n, w->ctx);
    *dphi = dot(w->gt, w->d, w->n);
    if (!isfinite(*dphi)) v = NAN; /* treat a broken gradient like a broken value */
    return v;
}

/* Minimiser of the cubic through (a, fa, da) and (b, fb, db) (N&W eq. 3.59);
 * NAN when the cubic has none. */
static double cubic_min(double a, double fa, double da, double b, double fb, double db) {
    double d1 = da + db - 3 * (fa - fb) / (a - b);
    double disc = d1 * d1 - da * db;
    if (!(disc >= 0)) return NAN;
    double d2 = copysign(sqrt(disc), b - a);
    double den = db - da + 2 * d2;
    if (den == 0) return NAN;
    return b - (b - a) * (db + d2 - d1) / den;
}

/* One end of the zoom bracket with what is known there. */
typedef struct ls_pt {
    double a, f, df;
    bool known; /* f and df are finite (false: a point where f blew up) */
} ls_pt;

enum { LS_WOLFE, LS_ARMIJO, LS_FAIL };

/* Strong-Wolfe line search (N&W Alg. 3.5 with zoom, Alg. 3.6) along w->d
 * from x (f0, slope df0 < 0). On LS_WOLFE xt/gt hold the accepted point; on
 * LS_ARMIJO only *a_out (a step with sufficient decrease, curvature not met
 * within the budget) is valid; LS_FAIL means no step with sufficient
 * decrease was found. */
static int line_search(lbfgs_ws *w, const double *x, double f0, double df0, double a_init,
                       double *a_out, double *f_out) {
    ls_pt prev = {0, f0, df0, true}, lo = prev, hi = prev;
    double a = a_init;
    int evals = 0;
    bool zoom = false;

    /* Bracketing phase: grow the step until the minimum is bracketed. */
    while (evals < LS_MAX_EVALS) {
        double df, fa = phi_eval(w, x, a, &df);
        evals++;
        ls_pt cur = {a, fa, df, isfinite(fa)};
        if (!cur.known || fa > f0 + LS_C1 * a * df0 || (evals > 1 && fa >= prev.f)) {
            lo = prev;
            hi = cur;
            zoom = true;
            break;
        }
        if (fabs(df) <= -LS_C2 * df0) {
            *a_out = a;
            *f_out = fa;
            return LS_WOLFE;
        }
        if (df >= 0) {
            lo = cur;
            hi = prev;
            zoom = true;
            break;
        }
        /* Still descending: extrapolate with the cubic through prev and cur,
         * kept within [1.1, 4] times the last increase (More & Thuente's
         * extrapolation bounds) so the step neither stalls nor explodes. */
        double lo_b = a + 1.1 * (a - prev.a), hi_b = a + 4.0 * (a - prev.a);
        double next = cubic_min(prev.a, prev.f, prev.df, a, fa, df);
        if (!(next >= lo_b && next <= hi_b)) next = hi_b;
        prev = cur;
        a = next;
    }
    if (!zoom) {
        /* Out of evaluations while still descending: prev satisfies the
         * sufficient-decrease condition (every bracketing point did). */
        if (prev.a > 0) {
            *a_out = prev.a;
            *f_out = prev.f;
            return LS_ARMIJO;
        }
        return LS_FAIL;
    }

    /* Zoom phase: lo is the best point with sufficient decrease, hi the other
     * end of an interval that contains a strong-Wolfe point. */
    while (evals < LS_MAX_EVALS) {
        double width = hi.a - lo.a;
        if (fabs(width) <= DBL_EPSILON * fmax(fabs(lo.a), fabs(hi.a))) break;
        double t = NAN;
        if (hi.known) t = cubic_min(lo.a, lo.f, lo.df, hi.a, hi.f, hi.df);
        /* Safeguard: stay 10% away from both ends, else bisect. */
        double left = fmin(lo.a, hi.a), right = fmax(lo.a, hi.a);
        double margin = 0.1 * (right - left);
        if (!(t >= left + margin && t <= right - margin)) t = lo.a + 0.5 * width;
        double df, ft = phi_eval(w, x, t, &df);
        evals++;
        ls_pt cur = {t, ft, df, isfinite(ft)};
        if (!cur.known || ft > f0 + LS_C1 * t * df0 || ft >= lo.f) {
            hi = cur;
        } else {
            if (fabs(df) <= -LS_C2 * df0) {
                *a_out = t;
                *f_out = ft;
                return LS_WOLFE;
            }
            if (df * (hi.a - lo.a) >= 0) hi = lo;
            lo = cur;
        }
    }
    if (lo.a > 0) {
        *a_out = lo.a;
        *f_out = lo.f;
        return LS_ARMIJO;
    }
    return LS_FAIL;
}

ct_status ct_lbfgs_minimize(ct_lbfgs_fn f, double *x, int n, const ct_lbfgs_params *p, void *ctx,
                            int *iters, double *fx) {
    ct_lbfgs_params prm = p ? *p : ct_lbfgs_default_params();
    if (!f || !x) return ct_set_error(CT_ERR_ARG, "lbfgs: f and x must not be NULL");
    if (n <= 0) return ct_set_error(CT_ERR_ARG, "lbfgs: n = %d, expected > 0", n);
    if (prm.m < 1 || prm.max_iter < 0 || !(prm.gtol >= 0) || !(prm.ftol >= 0))
        return ct_set_error(CT_ERR_ARG,
                            "lbfgs: bad parameters m=%d max_iter=%d gtol=%g ftol=%g (need m >= 1, "
                            "max_iter >= 0, tolerances >= 0)",
                            prm.m, prm.max_iter, prm.gtol, prm.ftol);

    /* One block: g, d, xt, gt (4n), s and y (2mn), rho and alpha (2m). */
    size_t nn = (size_t)n, vecs, total;
    if (!ct_mul_size((size_t)prm.m, 2 * nn, &vecs) || !ct_add_size(vecs, 4 * nn, &total) ||
        !ct_add_size(total, 2 * (size_t)prm.m, &total) ||
        !ct_mul_size(total, sizeof(double), &total))
        return ct_set_error(CT_ERR_NOMEM, "lbfgs: history for n=%d, m=%d overflows", n, prm.m);
    double *block = malloc(total);
    if (!block)
        return ct_set_error(CT_ERR_NOMEM, "lbfgs: cannot allocate %zu bytes of history", total);
    lbfgs_ws w = {.f = f, .ctx = ctx, .n = n, .m = prm.m};
    w.g = block;
    w.d = w.g + nn;
    w.xt = w.d + nn;
    w.gt = w.xt + nn;
    w.s = w.gt + nn;
    w.y = w.s + (size_t)prm.m * nn;
    w.rho = w.y + (size_t)prm.m * nn;
    w.alpha = w.rho + prm.m;

    double fval = f(x, w.g, n, ctx);
    if (!isfinite(fval) || !all_finite(w.g, n)) {
        free(block);
        return ct_set_error(CT_ERR_ARG, "lbfgs: objective or gradient is not finite at the "
                                        "starting point (f = %g)", fval);
    }

    int it = 0;
    while (inf_norm(w.g, n) > prm.gtol && it < prm.max_iter) {
        two_loop(&w);
        double gd = dot(w.g, w.d, n);
        if (!(gd < 0)) {
            /* The curvature pairs no longer give a descent direction (can
             * happen after rounding-level steps): restart from -g. */
            w.npairs = 0;
            two_loop(&w);
            gd = dot(w.g, w.d, n);
        }
        /* Without history the direction has no scale: scipy's L-BFGS-B takes
         * a first step of unit length; afterwards the quasi-Newton step 1. */
        double a0 = w.npairs == 0 ? 1.0 / sqrt(-gd) : 1.0;
        double a, fnew;
        int ls = line_search(&w, x, fval, gd, a0, &a, &fnew);
        if (ls == LS_ARMIJO) {
            double df;
            fnew = phi_eval(&w, x, a, &df); /* xt/gt now hold that point */
            if (!isfinite(fnew) || !(fnew < fval)) ls = LS_FAIL;
        }
        if (ls == LS_FAIL) {
            if (w.npairs > 0) {
                w.npairs = 0; /* retry once along steepest descent */
                continue;
            }
            break; /* no decrease along -g either: rounding level reached */
        }

        /* Accept: the new pair is (xt - x, gt - g), the step actually taken. */
        int slot = (w.head + 1) % w.m;
        double *s = w.s + (size_t)slot * nn, *y = w.y + (size_t)slot * nn;
        for (int j = 0; j < n; j++) {
            s[j] = w.xt[j] - x[j];
            y[j] = w.gt[j] - w.g[j];
        }
        memcpy(x, w.xt, nn * sizeof *x);
        memcpy(w.g, w.gt, nn * sizeof *w.g);
        double fold = fval;
        fval = fnew;
        it++;

        /* Keep the pair only with safely positive curvature (scipy's test
         * s'y > eps y'y), so the implicit Hessian stays positive definite. */
        double sy = dot(s, y, n), yy = dot(y, y, n);
        if (sy > DBL_EPSILON * yy && yy > 0) {
            w.head = slot;
            w.rho[slot] = 1.0 / sy;
            w.gamma = sy / yy;
            if (w.npairs < w.m) w.npairs++;
        }
        if (fold - fval <= prm.ftol * fmax(fmax(fabs(fold), fabs(fval)), 1.0)) break;
    }

    free(block);
    if (iters) *iters = it;
    if (fx) *fx = fval;
    return CT_OK;
}
