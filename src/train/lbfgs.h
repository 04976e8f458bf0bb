/* Limited-memory BFGS for smooth unconstrained minimisation in double
 * precision (Nocedal & Wright, Numerical Optimization, 2nd ed.: Alg. 7.4
 * two-loop recursion, Alg. 3.5/3.6 strong-Wolfe line search).
 *
 * Stopping rules follow scipy's L-BFGS-B (what scikit-learn's lbfgs solver
 * calls) for an unbounded problem, checked after every iteration:
 *   - max |g_i| <= gtol                          (scipy's pgtol / "gtol")
 *   - (f_old - f) / max(|f_old|, |f|, 1) <= ftol  (scipy's factr * eps / "ftol")
 *   - max_iter iterations (an iteration is one accepted line-search step).
 * All three are normal ends (CT_OK); *iters says which budget was used. A line
 * search that can no longer decrease f (rounding level) also ends the run with
 * CT_OK after one retry along -g, since the point is then as good as double
 * precision can tell. */
#ifndef CT_TRAIN_LBFGS_H
#define CT_TRAIN_LBFGS_H

#include "cliptune.h"

/* f(x) and its gradient (written to grad, n values). A non-finite value means
 * "outside the domain": the line search backs off from it. */
typedef double (*ct_lbfgs_fn)(const double *x, double *grad, int n, void *ctx);

typedef struct ct_lbfgs_params {
    int m;         /* history pairs kept (scipy maxcor), >= 1                */
    int max_iter;  /* iterations, >= 0                                       */
    double gtol;   /* inf-norm gradient tolerance (scipy pgtol), >= 0        */
    double ftol;   /* relative decrease tolerance (scipy ftol), >= 0         */
} ct_lbfgs_params;

/* scipy.optimize.minimize(method="L-BFGS-B") defaults: m 10, max_iter 15000,
 * gtol 1e-5, ftol 2.220446049250313e-09 (factr 1e7 * machine epsilon). */
ct_lbfgs_params ct_lbfgs_default_params(void);

/* Minimise f from x (n values, updated in place to the final iterate).
 * p NULL means the defaults. iters and fx (may be NULL) receive the number of
 * iterations and f at the returned x. Errors: CT_ERR_ARG for bad arguments
 * or a non-finite f or gradient at the starting point, CT_ERR_NOMEM. The
 * history (2*m*n doubles) is allocated once per call. */
ct_status ct_lbfgs_minimize(ct_lbfgs_fn f, double *x, int n, const ct_lbfgs_params *p, void *ctx,
                            int *iters, double *fx);

#endif
