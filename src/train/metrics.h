/* Evaluation metrics for single-label classification, with the semantics of
 * the references the papers report against, so that numbers are comparable:
 *
 *   top-1, top-k   torch.argmax / torch.topk: ties go to the lower class index;
 *   per-class acc  recall of each class (NaN for a class with no samples);
 *   macro-F1       sklearn f1_score(average='macro', zero_division=0): the mean
 *                  over the classes present in the labels or the predictions;
 *   ECE            Guo et al. 2017 (and torchmetrics < 0.10): B equal-width
 *                  bins (0,1/B], (1/B,2/B], ... over the max softmax
 *                  probability, sum_b |acc_b - conf_b| * n_b / n;
 *   NLL            mean -log p(label);
 *   mean/std       CoOp's parse_test_res.py: np.mean and np.std (ddof=0).
 *
 * Rates are fractions in [0, 1] (the report layer prints percent). The
 * writers write atomically. The multi-label metrics (ct_ml_metrics: mAP,
 * VOC07 11-point mAP, CP/CR/CF1/OP/OR/OF1 at a threshold and at top-3) and
 * the reference each follows are documented in cliptune.h. */
#ifndef CT_TRAIN_METRICS_H
#define CT_TRAIN_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "cliptune.h"

/* ct_metrics, ct_metrics_compute, ct_ml_metrics, ct_ml_metrics_compute,
 * ct_seg_metrics, ct_seg_confusion_add, ct_seg_metrics_compute,
 * ct_harmonic_mean, ct_mean_std: cliptune.h */

/* Write m as JSON: headline metrics, "per_class" (one object per class with
 * its name, accuracy, f1, support and predicted count; NaN as null) and
 * "confusion" (K rows). classnames may be NULL (names become indices). */
ct_status ct_metrics_save_json(const ct_metrics *m, const char *const *classnames,
                               const char *path);

/* Write one CSV row per sample: item,label,pred,confidence,label_name,
 * pred_name. pred is the argmax of probs (lower index on ties), confidence
 * its probability. item_keys NULL: the row index; labels NULL or a label < 0:
 * unlabelled (empty label fields); classnames NULL: names are indices.
 * Fields holding a comma, quote, CR or LF are quoted (RFC 4180). */
ct_status ct_predictions_save_csv(const char *path, const char *const *item_keys,
                                  const int *labels, const float *probs, int64_t n, int K,
                                  const char *const *classnames);

/* Multi-label outputs of a run: metrics.json ("task": "multi-label", the
 * headline metrics and per-class AP) and predictions.csv (item, labels,
 * unknown, predicted (probability >= thresh), then one probability column
 * per class; class lists ';'-joined; targets NULL: empty label fields). */
ct_status ct_ml_metrics_save_json(const ct_ml_metrics *m, const char *const *classnames,
                                  const char *path);
ct_status ct_ml_predictions_save_csv(const char *path, const char *const *item_keys,
                                     const int8_t *targets, const float *probs, int64_t n, int K,
                                     double thresh, const char *const *classnames);

/* Segmentation outputs: metrics.json ("task": "segmentation", miou, macc,
 * aacc (fractions), n_pixels, then "per_class": index, name, iou, acc
 * (NaN as null), pixels (ground truth) and predicted). classnames NULL:
 * names are indices. Written atomically. */
ct_status ct_seg_metrics_save_json(const ct_seg_metrics *m, const char *const *classnames,
                                   const char *path);

#endif
