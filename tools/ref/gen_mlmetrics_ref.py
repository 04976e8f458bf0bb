#!/usr/bin/python3
"""Write tests/fixtures/mlmetrics_ref.h: multi-label metrics of a few fixed
cases computed by the references ct_ml_metrics_compute follows.

Run with the system interpreter (numpy; sklearn from python3-sklearn if it is
installed, as a cross-check of the port below):
    /usr/bin/python3 tools/ref/gen_mlmetrics_ref.py [out.h]

    ap, map      sklearn average_precision_score on the known (image, class)
                 pairs of each class: a line-for-line numpy port of sklearn
                 1.2's _binary_clf_curve / precision_recall_curve (mergesort,
                 one point per distinct score), checked against sklearn when
                 it imports; map the mean over classes with a known positive;
    map_voc07    py-faster-rcnn voc_ap(use_07_metric=True) (the VOC devkit's
                 VOCevalcls 11-point rule, thresholds np.arange(0., 1.1, 0.1))
                 on that precision/recall curve;
    cp ... of1   ML-GCN util.py evaluation() on the known pairs, a class
                 predicted when sigmoid(logit) >= thresh (probabilities:
                 p >= thresh); OP over the true predicted count (ML-GCN
                 divides by sum max(Np, 1)); class means over the classes
                 with a known positive;
    cp3 ... of13 the same counts with each image's top-min(3, K) classes
                 (argsort(-s, kind='stable'): torch.topk's lower-index ties)
                 as its predictions: DualCoOp utils/helper.py calc_F1(k=3).

The first case (no unknowns, no tied scores, every class with positives and
predictions) is also run through verbatim copies of DualCoOp's mAP and
calc_F1, ML-GCN's average_precision and evaluation, and a port of
VOCevalcls, and the script asserts they agree, so the fixture pins the
numbers those repositories report. The other cases add tied scores (in a
column and in a row), scores on the threshold, unknown targets, classes with
no positive, and K < 3.
"""
import sys

import numpy as np

try:
    import sklearn
    from sklearn.metrics import average_precision_score
except ImportError:  # the port below is then the reference
    sklearn = None


# ---- the references cliptune follows ----------------------------------------

def binary_clf_curve(y_true, y_score):
    """sklearn.metrics._ranking._binary_clf_curve (1.2), no sample weights."""
    desc = np.argsort(y_score, kind="mergesort")[::-1]
    y_score = y_score[desc]
    y_true = y_true[desc]
    distinct = np.where(np.diff(y_score))[0]
    threshold_idxs = np.r_[distinct, y_true.size - 1]
    tps = np.cumsum(y_true, dtype=np.float64)[threshold_idxs]
    fps = 1 + threshold_idxs - tps
    return fps, tps, y_score[threshold_idxs]


def precision_recall_curve(y_true, y_score):
    """sklearn.metrics.precision_recall_curve (1.2)."""
    fps, tps, thresholds = binary_clf_curve(y_true, y_score)
    ps = tps + fps
    precision = np.zeros_like(tps)
    np.divide(tps, ps, out=precision, where=(ps != 0))
    recall = np.ones_like(tps) if tps[-1] == 0 else tps / tps[-1]
    sl = slice(None, None, -1)
    return np.hstack((precision[sl], 1)), np.hstack((recall[sl], 0)), thresholds[sl]


def average_precision(y_true, y_score):
    """sklearn.metrics.average_precision_score's _binary_uninterpolated_average_precision."""
    precision, recall, _ = precision_recall_curve(y_true, y_score)
    ap = -np.sum(np.diff(recall) * np.array(precision)[:-1])
    if sklearn is not None:
        ref = average_precision_score(y_true, y_score)
        assert abs(ap - ref) <= 1e-15, (ap, ref)
    return ap


def voc_ap_07(rec, prec):
    """py-faster-rcnn lib/datasets/voc_eval.py voc_ap(use_07_metric=True)."""
    ap = 0.
    for t in np.arange(0., 1.1, 0.1):
        if np.sum(rec >= t) == 0:
            p = 0
        else:
            p = np.max(prec[rec >= t])
        ap = ap + p / 11.
    return ap


def voc07_distinct(y_true, y_score):
    """The 11-point AP on sklearn's curve (one point per distinct score),
    without precision_recall_curve's appended (recall 0, precision 1)."""
    fps, tps, _ = binary_clf_curve(y_true, y_score)
    return voc_ap_07(tps / tps[-1], tps / (tps + fps))


def f1(p, r):
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def rates(pred, y, known, pos_classes):
    """ML-GCN evaluation() counts on the known pairs; pred (n, K) bool."""
    ng = np.sum((y == 1) & known, axis=0)
    npred = np.sum(pred & known, axis=0)
    nc = np.sum(pred & (y == 1) & known, axis=0)
    prec_c = np.where(npred > 0, nc / np.maximum(npred, 1), 0.0)
    cp = np.mean(prec_c[pos_classes])
    cr = np.mean(nc[pos_classes] / ng[pos_classes])
    op = nc.sum() / npred.sum() if npred.sum() > 0 else 0.0
    or_ = nc.sum() / ng.sum()
    return [cp, cr, f1(cp, cr), op, or_, f1(op, or_)]


def metrics(scores, are_probs, y, thresh):
    n, K = scores.shape
    s64 = scores.astype(np.float64)
    known = y >= 0
    pos_classes = [k for k in range(K) if np.any(y[:, k] == 1)]
    ap = np.full(K, np.nan)
    ap07 = np.full(K, np.nan)
    for k in pos_classes:
        m = known[:, k]
        yk = (y[m, k] == 1).astype(np.int64)
        ap[k] = average_precision(yk, s64[m, k])
        ap07[k] = voc07_distinct(yk, s64[m, k])
    prob = s64 if are_probs else 1.0 / (1.0 + np.exp(-s64))
    if not are_probs:
        # libm's exp may differ from numpy's by an ulp: keep clear of the
        # threshold, except where the sigmoid is exact (logit 0, thresh 0.5)
        near = np.abs(prob - thresh) < 1e-9
        assert np.all(~near | ((s64 == 0) & (thresh == 0.5))), "a score sits on the threshold"
    top_k = min(3, K)
    order = np.argsort(-s64, axis=1, kind="stable")[:, :top_k]
    in_top = np.zeros((n, K), dtype=bool)
    np.put_along_axis(in_top, order, True, axis=1)
    return {
        "n_pos_classes": len(pos_classes),
        "top_k": top_k,
        "map": np.mean(ap[pos_classes]),
        "map_voc07": np.mean(ap07[pos_classes]),
        "t": rates(prob >= thresh, y, known, pos_classes),
        "k": rates(in_top, y, known, pos_classes),
        "ap": ap,
    }


# ---- the repositories' own code, verbatim, for the plain case ---------------

def dualcoop_average_precision(output, target):
    """DualCoOp utils/helper.py (from ASL's helper_functions.py)."""
    epsilon = 1e-8
    indices = output.argsort()[::-1]
    total_count_ = np.cumsum(np.ones((len(output), 1)))
    target_ = target[indices]
    ind = target_ == 1
    pos_count_ = np.cumsum(ind)
    total = pos_count_[-1]
    pos_count_[np.logical_not(ind)] = 0
    pp = pos_count_ / total_count_
    precision_at_i_ = np.sum(pp)
    precision_at_i = precision_at_i_ / (total + epsilon)
    return precision_at_i


def dualcoop_mAP(targs, preds):
    ap = np.zeros((preds.shape[1]))
    for k in range(preds.shape[1]):
        ap[k] = dualcoop_average_precision(preds[:, k], targs[:, k])
    return 100 * ap.mean()


def dualcoop_calc_F1(gt_labels, idxs, k, num_classes=None):
    """DualCoOp utils/helper.py calc_F1 (overall P, R, F1 at top-k, percent)."""
    TP = np.zeros(num_classes)
    FP = np.zeros(num_classes)
    class_samples = np.zeros(num_classes)
    gt_labels = [list(np.where(s)[0]) for s in gt_labels]
    for i in range(len(gt_labels)):
        gt_label = gt_labels[i]
        tps = [elem in idxs[i][:k] for elem in gt_label]
        for j in range(len(gt_label)):
            TP[gt_label[j]] += tps[j]
            class_samples[gt_label[j]] += 1
        fps = [elem not in gt_label for elem in idxs[i][:k]]
        for j in range(k):
            if j < FP.shape[0]:
                FP[idxs[i][j]] += fps[j]
    TP_s = np.nansum(TP)
    FP_s = np.nansum(FP)
    precision_o = TP_s / (TP_s + FP_s)
    recall_o = TP_s / np.nansum(class_samples)
    if precision_o == 0 or recall_o == 0:
        F1_o = 0
    else:
        F1_o = 2 * precision_o * recall_o / (precision_o + recall_o)
    return 100 * precision_o, 100 * recall_o, 100 * F1_o


def mlgcn_average_precision(output, target, difficult_examples=True):
    """ML-GCN util.py AveragePrecisionMeter.average_precision (numpy)."""
    indices = np.argsort(-output, kind="stable")
    pos_count = 0.
    total_count = 0.
    precision_at_i = 0.
    for i in indices:
        label = target[i]
        if difficult_examples and label == 0:
            continue
        if label == 1:
            pos_count += 1
        total_count += 1
        if label == 1:
            precision_at_i += pos_count / total_count
    precision_at_i /= pos_count
    return precision_at_i


def mlgcn_evaluation(scores_, targets_):
    """ML-GCN util.py AveragePrecisionMeter.evaluation (logits, >= 0)."""
    n, n_class = scores_.shape
    Nc, Np, Ng = np.zeros(n_class), np.zeros(n_class), np.zeros(n_class)
    for k in range(n_class):
        scores = scores_[:, k]
        targets = targets_[:, k].copy()
        targets[targets == -1] = 0
        Ng[k] = np.sum(targets == 1)
        Np[k] = np.sum(scores >= 0)
        Nc[k] = np.sum(targets * (scores >= 0))
    Np[Np == 0] = 1
    OP = np.sum(Nc) / np.sum(Np)
    OR = np.sum(Nc) / np.sum(Ng)
    OF1 = (2 * OP * OR) / (OP + OR)
    CP = np.sum(Nc / Np) / n_class
    CR = np.sum(Nc / Ng) / n_class
    CF1 = (2 * CP * CR) / (CP + CR)
    return OP, OR, OF1, CP, CR, CF1


def vocevalcls_ap(out, gt):
    """VOCdevkit VOCevalcls.m: [so,si]=sort(-out) (stable), 11 points."""
    si = np.argsort(-out, kind="stable")
    tp = np.cumsum(gt[si] > 0)
    fp = np.cumsum(gt[si] < 0)
    rec = tp / np.sum(gt > 0)
    prec = tp / (fp + tp)
    ap = 0
    for t in np.arange(0, 1.1, 0.1):
        p = np.max(prec[rec >= t]) if np.any(rec >= t) else 0
        ap = ap + p / 11
    return ap


def check_against_repos(logits, y, m):
    n, K = logits.shape
    s64 = logits.astype(np.float64)
    assert np.all(y >= 0)
    for k in range(K):
        assert len(np.unique(s64[:, k])) == n, "the plain case must have no tied scores"
    probs = 1.0 / (1.0 + np.exp(-s64))
    rel = 1e-8 / np.sum(y == 1, axis=0).min()  # DualCoOp's epsilon
    assert abs(dualcoop_mAP(y, probs) / 100 - m["map"]) <= rel * 1.01, "DualCoOp mAP"
    for k in range(K):  # ML-GCN's VOC targets: 1, -1 absent, 0 difficult
        got = mlgcn_average_precision(s64[:, k], 2 * y[:, k].astype(np.int64) - 1)
        assert abs(got - m["ap"][k]) < 1e-14, ("ML-GCN AP", k, got, m["ap"][k])
    voc = np.mean([vocevalcls_ap(s64[:, k], 2 * y[:, k] - 1) for k in range(K)])
    assert abs(voc - m["map_voc07"]) < 1e-14, "VOCevalcls"
    OP, OR, OF1, CP, CR, CF1 = mlgcn_evaluation(s64, y)
    assert np.all(np.sum(s64 >= 0, axis=0) > 0), "ML-GCN's Np[Np == 0] = 1 would differ"
    ours = m["t"]
    for a, b in zip((CP, CR, CF1, OP, OR, OF1), ours):
        assert abs(a - b) < 1e-14, ("ML-GCN", a, b)
    idxs = np.argsort(-s64, axis=1, kind="stable")
    p3, r3, f13 = dualcoop_calc_F1(y, idxs, 3, num_classes=K)
    for a, b in zip((p3, r3, f13), m["k"][3:]):
        assert abs(a / 100 - b) < 1e-14, ("calc_F1", a, b)


# ---- the cases ---------------------------------------------------------------

def case_plain(rng):
    """n = 60, K = 6 logits: every class has positives and predictions."""
    n, K = 60, 6
    y = (rng.rand(n, K) < np.linspace(0.15, 0.5, K)).astype(np.int8)
    y[np.arange(K), np.arange(K)] = 1
    logits = rng.normal(-1.0, 1.3, size=(n, K)) + 1.8 * y
    return logits.astype(np.float32), False, y, 0.5


def case_ties_unknown(rng):
    """n = 40, K = 5 probabilities on a 1/8 grid (tied scores in every column
    and row, many exactly on the threshold 0.5), 15% unknown, class 3 with no
    positive (its predictions are false positives), class 4 all unknown."""
    n, K = 40, 5
    y = (rng.rand(n, K) < 0.35).astype(np.int8)
    probs = np.clip(rng.randint(0, 9, size=(n, K)) + 2 * y, 0, 8) / 8.0
    y[rng.rand(n, K) < 0.15] = -1
    y[:, 3] = np.where(y[:, 3] == 1, 0, y[:, 3])
    y[:, 4] = -1
    return probs.astype(np.float32), True, y, 0.5


def case_k2(rng):
    """n = 25, K = 2 logits, threshold 0.3, unknowns; top-3 is top-2."""
    n, K = 25, 2
    y = (rng.rand(n, K) < 0.4).astype(np.int8)
    logits = rng.normal(-0.5, 1.5, size=(n, K)) + 1.2 * y
    y[rng.rand(n, K) < 0.2] = -1
    return logits.astype(np.float32), False, y, 0.3


def case_k3_ties(rng):
    """n = 30, K = 3 logits on a 0.5 grid (0 included: sigmoid exactly 0.5,
    predicted at 0.5), unknowns, class 1 with no known positive."""
    n, K = 30, 3
    y = (rng.rand(n, K) < 0.4).astype(np.int8)
    logits = (rng.randint(-4, 5, size=(n, K)) + 2 * y) * 0.5
    y[rng.rand(n, K) < 0.1] = -1
    y[:, 1] = np.where(y[:, 1] == 1, -1, y[:, 1])
    return logits.astype(np.float32), False, y, 0.5


def case_k1(rng):
    """n = 9, K = 1 probabilities at threshold 0.7."""
    y = np.array([[1], [0], [1], [-1], [0], [1], [0], [0], [1]], dtype=np.int8)
    probs = np.array([[.9], [.8], [.7], [.95], [.1], [.3], [.7], [.2], [.65]])
    return probs.astype(np.float32), True, y, 0.7


CASES = [("plain", case_plain), ("ties_unknown", case_ties_unknown), ("k2", case_k2),
         ("k3_ties", case_k3_ties), ("k1", case_k1)]


def fmt_f(v):
    t = "%.9g" % v  # round-trips a float32
    return (t if ("." in t or "e" in t) else t + ".0") + "f"


def fmt_d(v):
    return "NAN" if np.isnan(v) else "%.17g" % v


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/mlmetrics_ref.h"
    rng = np.random.RandomState(20240611)
    out = [
        "/* Generated by tools/ref/gen_mlmetrics_ref.py (numpy %s, %s) -- do not edit. */"
        % (np.__version__, "sklearn %s" % sklearn.__version__ if sklearn else
           "the script's port of sklearn 1.2's average_precision_score"),
        "#ifndef CT_TEST_MLMETRICS_REF_H",
        "#define CT_TEST_MLMETRICS_REF_H",
        "",
        "#include <math.h>",
        "#include <stdbool.h>",
        "#include <stdint.h>",
        "",
        "typedef struct mlref_case {",
        "    const char *name;",
        "    int64_t n;",
        "    int K;",
        "    bool are_probs;",
        "    double thresh;",
        "    const float *scores;   /* (n, K) float32, exact */",
        "    const int8_t *targets; /* (n, K) in {-1, 0, 1} */",
        "    int n_pos_classes, top_k;",
        "    double map, map_voc07;",
        "    double cp, cr, cf1, op, or_, of1;",
        "    double cp3, cr3, cf13, op3, or3, of13;",
        "    const double *ap;      /* K, NAN: no known positive */",
        "} mlref_case;",
        "",
    ]
    table = []
    for name, make in CASES:
        scores, are_probs, y, thresh = make(rng)
        n, K = scores.shape
        m = metrics(scores, are_probs, y, thresh)
        if name == "plain":
            check_against_repos(scores, y, m)
        out.append("static const float mlref_%s_scores[%d] = {" % (name, n * K))
        for row in scores:
            out.append("    " + ", ".join(fmt_f(v) for v in row) + ",")
        out.append("};")
        out.append("static const int8_t mlref_%s_targets[%d] = {" % (name, n * K))
        for row in y:
            out.append("    " + ", ".join("%d" % v for v in row) + ",")
        out.append("};")
        out.append("static const double mlref_%s_ap[%d] = {%s};"
                   % (name, K, ", ".join(fmt_d(v) for v in m["ap"])))
        out.append("")
        vals = [m["map"], m["map_voc07"]] + m["t"] + m["k"]
        table.append("    {\"%s\", %d, %d, %s, %s, mlref_%s_scores, mlref_%s_targets, %d, %d,\n"
                     "     %s,\n     mlref_%s_ap},"
                     % (name, n, K, "true" if are_probs else "false", fmt_d(thresh), name, name,
                        m["n_pos_classes"], m["top_k"], ",\n     ".join(fmt_d(v) for v in vals),
                        name))
    out.append("static const mlref_case mlref_cases[] = {")
    out.extend(table)
    out.append("};")
    out.append("#define MLREF_NCASES ((int)(sizeof mlref_cases / sizeof *mlref_cases))")
    out.append("")
    out.append("#endif")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
