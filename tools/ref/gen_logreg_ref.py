#!/usr/bin/python3
"""Write tests/fixtures/logreg_ref.h: scikit-learn's LogisticRegression fits and
the lpclip C search, for tests/test_logreg.c.

    apt-get install -y python3-sklearn       # Debian bookworm: 1.2.1
    /usr/bin/python3 tools/ref/gen_logreg_ref.py [tests/fixtures/logreg_ref.h]

What is recorded, per fixed random problem (float32 features, as the C API
takes them; sklearn's lbfgs path converts them to float64, as we do):
  - LogisticRegression(C, max_iter=1000, tol=1e-10) (multi_class "auto" =
    "multinomial" for K > 2, solver lbfgs): coef_, intercept_, predict() on
    held-out points, and the objective at that solution;
  - the objective there computed two ways, which must agree: by the formula
    the C code implements, sum_i CE_i + ||W||^2 / (2 C), and by sklearn's own
    LinearModelLoss(HalfMultinomialLoss).loss_gradient called exactly as
    sklearn 1.2's _logistic_regression_path calls it for lbfgs (sample weights
    all 1, not rescaled; l2_reg_strength = 1 / C). That pins the scaling;
  - the optimum refined beyond sklearn's stopping point (Newton's method from
    sklearn's solution, to a gradient of ~1e-12), since scipy's default ftol
    (which sklearn does not override) stops sklearn at ~1e-5 relative
    accuracy in W whatever tol is;
  - predict() of a default fit (tol=1e-4, max_iter=1000), the setting CLIP's
    README and CoOp use;
  - CoOp's lpclip/linear_probe.py C search, re-run here with sklearn fits
    exactly as that script does them, on a fixed train/val split; the
    generator checks that every fit in the search predicts the validation set
    the same at tol=1e-4 and tol=1e-10, so the recorded choice does not hinge
    on where an optimiser stopped.
"""
import sys
import warnings

import numpy as np
import scipy
import scipy.optimize
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn._loss.loss import HalfMultinomialLoss
from sklearn.linear_model._linear_loss import LinearModelLoss

warnings.simplefilter("error", ConvergenceWarning)  # every reference fit must converge


def make_problem(seed, n, d, K, sep):
    """Gaussian classes with overlapping clouds (not separable)."""
    rng = np.random.RandomState(seed)
    means = rng.randn(K, d) * sep
    y = np.arange(n) % K
    rng.shuffle(y)
    X = (means[y] + rng.randn(n, d)).astype(np.float32)
    return X, y.astype(np.int64)


def our_objective(X, y, W, b, C):
    X = X.astype(np.float64)
    Z = X @ W.T + b
    m = Z.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(Z - m).sum(axis=1, keepdims=True)))[:, 0]
    return float(np.sum(lse - Z[np.arange(len(y)), y]) + 0.5 / C * np.sum(W * W))


def sk_loss(K):
    return LinearModelLoss(base_loss=HalfMultinomialLoss(n_classes=K), fit_intercept=True)


def sk_objective(X, y, W, b, C):
    """f and gradient as sklearn 1.2's lbfgs path evaluates them."""
    K, d = W.shape
    coef = np.hstack([W, b[:, None]]).ravel(order="F")  # (K, d+1) F-ravelled, as w0
    X64 = X.astype(np.float64)
    f, g = sk_loss(K).loss_gradient(coef, X64, y.astype(np.float64), np.ones(len(y)),
                                    1.0 / C, 1)
    return float(f), g


def refine(X, y, W, b, C):
    """Newton's method on our formula from sklearn's solution: quadratic
    convergence to the rounding level. The Hessian is singular along b + t*1
    (softmax ignores a common shift; b is not penalised), so steps are
    least-squares solutions, which never move along that direction."""
    K, d = W.shape
    X64 = X.astype(np.float64)
    Xa = np.hstack([X64, np.ones((len(y), 1))])  # (n, d+1)
    Y = np.eye(K)[y]
    theta = np.hstack([W, b[:, None]])  # (K, d+1)
    reg = np.ones((K, d + 1)) / C
    reg[:, d] = 0

    def grad_hess(th):
        Z = Xa @ th.T
        Z -= Z.max(axis=1, keepdims=True)
        P = np.exp(Z)
        P /= P.sum(axis=1, keepdims=True)
        g = (P - Y).T @ Xa + reg * th
        H = np.zeros((K, d + 1, K, d + 1))
        for i in range(len(y)):
            A = np.diag(P[i]) - np.outer(P[i], P[i])
            H += np.einsum("kl,a,b->kalb", A, Xa[i], Xa[i])
        H = H.reshape(K * (d + 1), K * (d + 1)) + np.diag(reg.ravel())
        return g, H

    for _ in range(30):
        g, H = grad_hess(theta)
        if np.abs(g).max() < 1e-12:
            break
        step = np.linalg.lstsq(H, g.ravel(), rcond=None)[0]
        theta = theta - step.reshape(K, d + 1)
    g, _ = grad_hess(theta)
    Wo, bo = theta[:, :d].copy(), theta[:, d].copy()
    return Wo, bo, our_objective(X, y, Wo, bo, C), float(np.abs(g).max())


def fit(X, y, C, tol):
    return LogisticRegression(C=C, max_iter=1000, tol=tol, solver="lbfgs", penalty="l2").fit(X, y)


def lpclip_search(Xtr, ytr, Xval, yval):
    """CoOp lpclip/linear_probe.py's search, step for step (num_step = 8)."""
    log = []

    def acc_of(c, tol=1e-4):
        clf = fit(Xtr, ytr, c, tol)
        pred = clf.predict(Xval)
        tight = fit(Xtr, ytr, c, 1e-10).predict(Xval)
        assert np.array_equal(pred, tight), f"C={c}: val predictions depend on tol"
        acc = sum(pred == yval) / len(yval)
        log.append((c, int(sum(pred == yval))))
        return acc

    search_list = [1e6, 1e4, 1e2, 1, 1e-2, 1e-4, 1e-6]
    acc_list = [acc_of(c) for c in search_list]
    peak_idx = np.argmax(acc_list)
    c_peak = search_list[peak_idx]
    c_left, c_right = 1e-1 * c_peak, 1e1 * c_peak
    for step in range(8):
        acc_left = acc_of(c_left)
        acc_right = acc_of(c_right)
        if acc_left < acc_right:
            c_final, acc_final = c_right, acc_right
            c_left = 0.5 * (np.log10(c_right) + np.log10(c_left))
            c_right = np.log10(c_right)
        else:
            c_final, acc_final = c_left, acc_left
            c_right = 0.5 * (np.log10(c_right) + np.log10(c_left))
            c_left = np.log10(c_left)
        c_left, c_right = np.power(10, c_left), np.power(10, c_right)
    return float(c_final), int(round(acc_final * len(yval))), log


def arr(name, ctype, values, fmt):
    vals = [fmt % v for v in np.asarray(values).ravel()]
    lines, line = [], "   "
    for v in vals:
        if len(line) + len(v) + 2 > 96:
            lines.append(line)
            line = "   "
        line += " " + v + ","
    lines.append(line)
    return f"static const {ctype} {name}[] = {{\n" + "\n".join(lines) + "\n};\n"


def f32(v):
    return "%.9gf" % v


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/logreg_ref.h"
    cases = [  # name, seed, n, n_test, d, K, sep, C
        ("k4", 1, 150, 60, 10, 4, 0.6, 1.0),
        ("k4s", 1, 150, 60, 10, 4, 0.6, 0.01),
        ("k10", 2, 150, 60, 10, 10, 0.8, 0.5),
    ]
    body = []
    for name, seed, n, nt, d, K, sep, C in cases:
        X, y = make_problem(seed, n + nt, d, K, sep)
        Xtr, ytr, Xte = X[:n], y[:n], X[n:]
        assert len(np.unique(ytr)) == K
        clf = fit(Xtr, ytr, C, 1e-10)
        W, b = clf.coef_, clf.intercept_
        f_ours = our_objective(Xtr, ytr, W, b, C)
        f_sk, _ = sk_objective(Xtr, ytr, W, b, C)
        assert abs(f_ours - f_sk) <= 1e-12 * abs(f_sk), (f_ours, f_sk)
        Wo, bo, fo, go = refine(Xtr, ytr, W, b, C)
        assert fo <= f_sk and go < 1e-9, (fo, f_sk, go)
        pred = clf.predict(Xte)
        pred_default = fit(Xtr, ytr, C, 1e-4).predict(Xte)
        relW = np.abs(W - Wo).max() / np.abs(Wo).max()
        # How far sklearn stopped from the optimum, over all parameters
        # relative to the largest: the tolerance for comparing with sklearn.
        scale = max(np.abs(Wo).max(), np.abs(bo).max())
        dist = max(np.abs(W - Wo).max(), np.abs(b - bo).max()) / scale
        print(f"{name}: f_sklearn={f_sk:.12g} f_opt={fo:.12g} |g_opt|={go:.1e} "
              f"sklearn dist {dist:.2e} n_iter={clf.n_iter_[0]}", file=sys.stderr)
        p = f"LR_{name.upper()}"
        body.append(f"/* {name}: n={n}, d={d}, K={K}, C={C!r}, seed {seed}; sklearn n_iter "
                    f"{clf.n_iter_[0]}, max|W_sklearn - W_opt| / max|W_opt| = {relW:.1e} */\n")
        body.append(f"#define {p}_N {n}\n#define {p}_NTEST {nt}\n#define {p}_D {d}\n"
                    f"#define {p}_K {K}\n#define {p}_C {C!r}\n")
        body.append(f"#define {p}_F_SKLEARN {f_sk!r}\n#define {p}_F_OPT {fo!r}\n")
        body.append("/* max(|W - W_opt|, |b - b_opt|) / max(|W_opt|, |b_opt|) of sklearn's "
                    f"fit */\n#define {p}_SK_DIST {dist:.3e}\n")
        body.append(arr(f"{p.lower()}_x", "float", Xtr, "%.9g"))
        body.append(arr(f"{p.lower()}_y", "int", ytr, "%d"))
        body.append(arr(f"{p.lower()}_xtest", "float", Xte, "%.9g"))
        body.append(arr(f"{p.lower()}_w", "double", W, "%.17g"))
        body.append(arr(f"{p.lower()}_b", "double", b, "%.17g"))
        body.append(arr(f"{p.lower()}_w_opt", "double", Wo, "%.17g"))
        body.append(arr(f"{p.lower()}_b_opt", "double", bo, "%.17g"))
        body.append(arr(f"{p.lower()}_pred", "int", pred, "%d"))
        body.append(arr(f"{p.lower()}_pred_default", "int", pred_default, "%d"))
        body.append("\n")

    # The search: 10 classes, 30 train / 10 val shots, 5 dims (not separable).
    K, d, ntr_shot, nval_shot = 10, 5, 30, 10
    X, y = make_problem(7, K * (ntr_shot + nval_shot), d, K, 0.9)
    ntr = K * ntr_shot
    Xtr, ytr, Xval, yval = X[:ntr], y[:ntr], X[ntr:], y[ntr:]
    c_final, correct, log = lpclip_search(Xtr, ytr, Xval, yval)
    print(f"search: C={c_final!r} val correct {correct}/{len(yval)}; fits: {log}",
          file=sys.stderr)
    body.append(f"/* lpclip search: K={K}, d={d}, {ntr_shot} train / {nval_shot} val shots.\n"
                " * (C, val correct) of each fit, in order: "
                + ", ".join(f"({c:.6g}, {a})" for c, a in log) + " */\n")
    body.append(f"#define LR_SEARCH_NTR {ntr}\n#define LR_SEARCH_NVAL {len(yval)}\n"
                f"#define LR_SEARCH_D {d}\n#define LR_SEARCH_K {K}\n"
                f"#define LR_SEARCH_C {c_final!r}\n#define LR_SEARCH_CORRECT {correct}\n")
    body.append(arr("lr_search_xtr", "float", Xtr, "%.9g"))
    body.append(arr("lr_search_ytr", "int", ytr, "%d"))
    body.append(arr("lr_search_xval", "float", Xval, "%.9g"))
    body.append(arr("lr_search_yval", "int", yval, "%d"))

    head = (f"/* Generated by tools/ref/gen_logreg_ref.py -- do not edit.\n"
            f" * scikit-learn {sklearn.__version__}, numpy {np.__version__}, "
            f"scipy {scipy.__version__}, Python {sys.version.split()[0]}.\n"
            " * Objective (checked against sklearn's LinearModelLoss):\n"
            " *   f(W, b) = sum_i CE(softmax(W x_i + b), y_i) + ||W||^2 / (2 C). */\n"
            "#ifndef CT_TEST_LOGREG_REF_H\n#define CT_TEST_LOGREG_REF_H\n\n")
    with open(out_path, "w") as fh:
        fh.write(head + "".join(body) + "\n#endif\n")


if __name__ == "__main__":
    main()
