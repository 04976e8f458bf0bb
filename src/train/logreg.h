/* Linear probe: L2-regularised multinomial logistic regression on frozen
 * features, as scikit-learn 1.2 fits it with
 *     LogisticRegression(C, penalty="l2", solver="lbfgs", multi_class="multinomial",
 *                        fit_intercept=True)
 * (for K > 2 also sklearn's default multi_class="auto"), i.e. it minimises
 *
 *     f(W, b) = sum_i CE(softmax(W x_i + b), y_i) + ||W||_F^2 / (2 C)
 *
 * with W (K, d), b (K) unpenalised, from W = 0, b = 0, by L-BFGS with
 * sklearn's stopping rules. The scaling matters for those rules: sklearn 1.2
 * hands scipy exactly this f (a sum over samples, not a mean: it rescales
 * sample weights to sum 1 only for newton-cholesky) and tol as pgtol on its
 * gradient. 0.5 ||W||^2 + C sum CE is C f: same minimiser, other stopping
 * point. Later sklearn releases (PR #26721, merged 2023) minimise f / n
 * with the same tol, a looser stop: pass gtol = 1e-4 * n to
 * ct_logreg_fit_ex to mimic them. The fixtures record the version used.
 *
 * For K = 2 this is still the multinomial model (two weight rows, w1 = -w0
 * at the optimum); sklearn's "auto" would fit one binary row, and its fit at
 * C predicts like this model at C / 2.
 *
 * Everything runs in double; the objective is parallel over samples (logits)
 * and over classes (gradient), each value summed in a fixed order, so a fit
 * is bit-identical for any thread count. */
#ifndef CT_TRAIN_LOGREG_H
#define CT_TRAIN_LOGREG_H

#include <stdint.h>

#include "cliptune.h"
#include "train/lbfgs.h"

typedef struct ct_logreg {
    int d, K;
    double *W;   /* (K, d) */
    double *b;   /* (K)    */
    int n_iter;  /* L-BFGS iterations of the fit                  */
    double loss; /* f(W, b) above at the returned solution        */
} ct_logreg;

/* sklearn's LogisticRegression defaults (tol 1e-4 as pgtol, scipy's ftol,
 * 10 history pairs) with the given max_iter. */
ct_lbfgs_params ct_logreg_default_params(int max_iter);

/* Fit on X (n, d), labels y in [0, K). C > 0. max_iter as sklearn's (CLIP
 * and CoOp use 1000); reaching it is not an error. out is overwritten (free
 * a previous fit first); on failure it is left empty ({0}). Errors: ARG for
 * bad shapes, labels or non-finite features; NOMEM. */
ct_status ct_logreg_fit(const float *X, const int *y, int64_t n, int d, int K, double C,
                        int max_iter, ct_logreg *out);
/* The same with explicit L-BFGS settings (p NULL: the defaults, 1000 iters). */
ct_status ct_logreg_fit_ex(const float *X, const int *y, int64_t n, int d, int K, double C,
                           const ct_lbfgs_params *p, ct_logreg *out);

/* scores (n, K) = X W^T + b, the logits (sklearn's decision_function).
 * argmax with ties to the lower index is sklearn's predict. */
void ct_logreg_scores(const ct_logreg *m, const float *X, int64_t n, float *scores);

/* f(W, b) above and, if gW/gb are not NULL, its gradient (K, d) and (K).
 * For tests and diagnostics. */
ct_status ct_logreg_objective(const float *X, const int *y, int64_t n, int d, int K, double C,
                              const double *W, const double *b, double *f, double *gW,
                              double *gb);

/* Free W and b and reset to {0}; NULL is a no-op. */
void ct_logreg_free(ct_logreg *m);

/* The linear-probe C search of CoOp's lpclip/linear_probe.py (a cheaper
 * stand-in for the CLIP paper's sweep of 96 log-spaced values in
 * [1e-6, 1e6]): fit with C in {1e6, 1e4, 1e2, 1, 1e-2, 1e-4, 1e-6} (sklearn
 * defaults, max_iter 1000), take the first best on the validation set, then
 * 8 steps of a binary search in log10(C) between best/10 and best*10.
 * Returns the last step's choice (as linear_probe.py does: not necessarily
 * the best seen), its C and its validation accuracy in [0, 1]. Only train
 * and val data are used; test data never enter. best is overwritten as by
 * ct_logreg_fit; best_C and best_val_acc may be NULL. Every fit starts from
 * zero as sklearn's does; a C met again (an interval end, up to 4 ulp) reuses
 * its accuracy instead of refitting. */
ct_status ct_logreg_search(const float *Xtr, const int *ytr, int64_t ntr, const float *Xval,
                           const int *yval, int64_t nval, int d, int K, ct_logreg *best,
                           double *best_C, double *best_val_acc);

#endif
