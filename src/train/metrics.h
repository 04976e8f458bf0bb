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
 * writers write atomically. */
#ifndef CT_TRAIN_METRICS_H
#define CT_TRAIN_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "cliptune.h"

/* Guo et al.'s bin count, used when ece_bins <= 0. */
#define CT_ECE_BINS_DEFAULT 15

typedef struct ct_metrics {
    int n_classes;
    int64_t n;
    double top1, top5; /* top5 is top-min(5, K) */
    double macro_f1;
    double ece;
    int ece_bins;      /* the bin count the ECE was computed with */
    double nll;        /* +inf if a given probability of a label is 0 */
    double *per_class_acc; /* K; NaN for a class with no samples */
    /* K; NaN for a class with neither samples nor predictions (excluded from
     * macro_f1, as in sklearn); 0 for a class never predicted. */
    double *per_class_f1;
    int64_t *confusion; /* K*K, row-major [true][pred] */
} ct_metrics;

/* Metrics of scores (n, K), row-major: logits (softmax is taken in double) or
 * probabilities (used as given; each row must lie in [0, 1] and sum to 1
 * within 1e-3, which catches logits passed as probabilities). Scores must be
 * finite; labels in [0, K). n >= 1, K >= 1. On failure *out is left zeroed
 * (ct_metrics_free-safe). */
ct_status ct_metrics_compute(const float *scores, bool are_probs, const int *labels, int64_t n,
                             int K, int ece_bins, ct_metrics *out);
/* Free the arrays and zero *m (NULL ok). */
void ct_metrics_free(ct_metrics *m);

/* CoOp's base-to-novel harmonic mean 2bn / (b + n); 0 when both are 0. */
double ct_harmonic_mean(double base, double novel);

/* Mean and population standard deviation (ddof = 0, numpy's np.std default,
 * as CoOp's parse_test_res.py reports over seeds). NaN entries are missing
 * runs and are skipped; with no values both results are NaN. */
void ct_mean_std(const double *v, int n, double *mean, double *std);

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

#endif
