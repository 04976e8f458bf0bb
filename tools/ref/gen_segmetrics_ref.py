#!/usr/bin/python3
"""Write tests/fixtures/segmetrics_ref.h: semantic segmentation metrics of a
few fixed cases, computed as mmsegmentation computes them.

Run with the system interpreter (numpy only, no torch):
    /usr/bin/python3 tools/ref/gen_segmetrics_ref.py [out.h]

A numpy port of mmsegmentation 0.x mmseg/core/evaluation/metrics.py
(intersect_and_union, total_intersect_and_union, total_area_to_metrics with
metrics=['mIoU']) and of the summary of mmseg/datasets/custom.py evaluate()
(mIoU = np.nanmean(IoU), mAcc = np.nanmean(Acc)), without the rounding to
2 decimals of percent that evaluate() applies for printing:

    mask = label != ignore_index; pred, label = pred[mask], label[mask]
    intersect = pred[pred == label]
    area_x = torch.histc(x.float(), bins=K, min=0, max=K - 1)
    union = area_pred + area_label - area_intersect
    aAcc = sum(area_intersect) / sum(area_label)
    IoU = area_intersect / area_union, Acc = area_intersect / area_label

torch.histc over bins=K on [0, K - 1] puts integer v in bin v (bin width
(K - 1) / K < 1, the last bin closed) and leaves out values outside the
range, so on integer maps it is np.bincount restricted to 0..K-1 (K >= 2;
histc with min == max == 0, K = 1, would take the data's range instead).
The port is hist() below. A ground truth >= K that is not ignore_index
stays in the mask: its pixel is in no area_label and no intersect, but its
prediction counts in area_pred (cliptune keeps those pixels in the extra
confusion row). Counts are summed in float64, as mmseg's totals.

Cases: random maps of several sizes with ignore pixels (255), a class in
neither gt nor pred (NaN IoU, left out of mIoU), a class only predicted (IoU
0, Acc NaN), gt values >= K that are not ignored; an ignore_index of 0 (an
ADE20K-style map read without reduce_zero_label); K = 2."""
import sys

import numpy as np


def hist(x, K):
    # torch.histc(x.float(), bins=K, min=0, max=K - 1) on integers
    x = x[(x >= 0) & (x <= K - 1)]
    return np.bincount(x, minlength=K)[:K].astype(np.float64)


def intersect_and_union(pred, label, K, ignore_index):
    pred = pred.astype(np.int64)
    label = label.astype(np.int64)
    mask = label != ignore_index
    pred = pred[mask]
    label = label[mask]
    intersect = pred[pred == label]
    area_intersect = hist(intersect, K)
    area_pred = hist(pred, K)
    area_label = hist(label, K)
    area_union = area_pred + area_label - area_intersect
    return area_intersect, area_union, area_pred, area_label


def eval_miou(preds, labels, K, ignore_index):
    ti = np.zeros(K); tu = np.zeros(K); tp = np.zeros(K); tl = np.zeros(K)
    for p, l in zip(preds, labels):
        i, u, ap, al = intersect_and_union(p, l, K, ignore_index)
        ti += i; tu += u; tp += ap; tl += al
    with np.errstate(divide="ignore", invalid="ignore"):
        aacc = ti.sum() / tl.sum()
        iou = ti / tu
        acc = ti / tl
    return dict(aacc=aacc, iou=iou, acc=acc, miou=np.nanmean(iou), macc=np.nanmean(acc),
                area_label=tl, area_pred=tp, n_iou=int(np.sum(~np.isnan(iou))))


def make_case(rng, name, K, sizes, ignore_index, absent=(), only_pred=(), out_of_range=(),
              p_ignore=0.1, p_correct=0.5):
    preds, labels = [], []
    present = [c for c in range(K) if c not in absent and c not in only_pred]
    pred_ok = [c for c in range(K) if c not in absent]
    for (h, w) in sizes:
        gt = rng.choice(present, size=(h, w)).astype(np.uint8)
        # blobs: copy a shifted block so maps are not pure noise
        gt[: h // 2, : w // 2] = gt[0, 0]
        pred = np.where(rng.random((h, w)) < p_correct, gt,
                        rng.choice(pred_ok, size=(h, w))).astype(np.uint8)
        if ignore_index is not None and 0 <= ignore_index <= 255:
            gt[rng.random((h, w)) < p_ignore] = ignore_index
        for v in out_of_range:
            gt[rng.random((h, w)) < 0.03] = v
        preds.append(pred)
        labels.append(gt)
    return dict(name=name, K=K, ignore=ignore_index, preds=preds, labels=labels,
                ref=eval_miou(preds, labels, K, ignore_index))


def c_doubles(v):
    return ", ".join("NAN" if np.isnan(x) else repr(float(x)) for x in v)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/segmetrics_ref.h"
    rng = np.random.default_rng(20240607)
    cases = [
        make_case(rng, "voc_like", 6, [(7, 9), (12, 5), (16, 16)], 255, absent=(4,),
                  only_pred=(5,), out_of_range=(7, 200)),
        make_case(rng, "ignore_zero", 5, [(10, 11), (3, 4)], 0, out_of_range=(9,)),
        make_case(rng, "two_classes", 2, [(8, 8), (5, 13), (1, 1)], 255, p_correct=0.8),
        make_case(rng, "no_ignore", 4, [(6, 6)], -1, absent=(2,)),
    ]
    for c in cases:
        r = c["ref"]
        assert np.isfinite(r["miou"]) and np.isfinite(r["macc"]) and np.isfinite(r["aacc"])
    cv = cases[0]["ref"]
    assert np.isnan(cv["iou"][4]) and cv["iou"][5] == 0 and np.isnan(cv["acc"][5])
    L = []
    L.append("/* Generated by tools/ref/gen_segmetrics_ref.py (numpy %s, the script's port of "
             "mmsegmentation 0.x intersect_and_union / total_area_to_metrics) -- do not edit. */"
             % np.__version__)
    L.append("#ifndef CT_TEST_SEGMETRICS_REF_H\n#define CT_TEST_SEGMETRICS_REF_H\n")
    L.append("#include <math.h>\n#include <stdint.h>\n")
    L.append("typedef struct segref_case {\n    const char *name;\n    int K, ignore_index;\n"
             "    int n_images;\n    const int *h, *w;\n"
             "    const uint8_t *pred, *gt; /* the images' maps, concatenated */\n"
             "    double miou, macc, aacc;\n    int n_iou_classes;\n"
             "    const double *iou, *acc; /* K; NAN where mmseg gives nan */\n"
             "    const double *area_label, *area_pred; /* K */\n} segref_case;\n")
    for c in cases:
        n = c["name"]
        r = c["ref"]
        hs = [p.shape[0] for p in c["preds"]]
        ws = [p.shape[1] for p in c["preds"]]
        pred = np.concatenate([p.ravel() for p in c["preds"]])
        gt = np.concatenate([g.ravel() for g in c["labels"]])
        L.append("static const int segref_%s_h[] = {%s};" % (n, ", ".join(map(str, hs))))
        L.append("static const int segref_%s_w[] = {%s};" % (n, ", ".join(map(str, ws))))
        for nm, arr in (("pred", pred), ("gt", gt)):
            L.append("static const uint8_t segref_%s_%s[%d] = {" % (n, nm, arr.size))
            for i in range(0, arr.size, 24):
                L.append("    " + ", ".join(str(int(x)) for x in arr[i:i + 24]) + ",")
            L.append("};")
        for nm in ("iou", "acc", "area_label", "area_pred"):
            L.append("static const double segref_%s_%s[%d] = {%s};" % (n, nm, c["K"],
                                                                     c_doubles(r[nm])))
    L.append("\nstatic const segref_case SEGREF_CASES[] = {")
    for c in cases:
        n = c["name"]
        r = c["ref"]
        L.append("    {\"%s\", %d, %d, %d, segref_%s_h, segref_%s_w, segref_%s_pred, segref_%s_gt,"
                 % (n, c["K"], c["ignore"], len(c["preds"]), n, n, n, n))
        L.append("     %r, %r, %r, %d, segref_%s_iou, segref_%s_acc, segref_%s_area_label, "
                 "segref_%s_area_pred}," % (float(r["miou"]), float(r["macc"]), float(r["aacc"]),
                                            r["n_iou"], n, n, n, n))
    L.append("};\n#define SEGREF_N_CASES ((int)(sizeof SEGREF_CASES / sizeof *SEGREF_CASES))\n")
    L.append("#endif")
    with open(out, "w") as f:
        f.write("\n".join(L) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
