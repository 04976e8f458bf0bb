/* Classification metrics and their JSON/CSV writers (see metrics.h for the
 * reference semantics each metric follows). Everything is accumulated in
 * double from the float scores, so results do not depend on the order of a
 * float summation and match float64 references to ~1e-15. */
#include "train/metrics.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"

/* How far a probability row may sum from 1: loose enough for float softmax
 * over thousands of classes, tight enough to reject logits. */
#define PROB_SUM_TOL 1e-3

void ct_metrics_free(ct_metrics *m) {
    if (!m) return;
    free(m->per_class_acc);
    free(m->per_class_f1);
    free(m->confusion);
    memset(m, 0, sizeof *m);
}

/* Validate one row; on success return its argmax (lower index on ties, as
 * torch.argmax). -1 with the error set otherwise. */
static int check_row(const float *row, bool are_probs, int64_t i, int K) {
    int best = 0;
    double sum = 0.0;
    for (int j = 0; j < K; j++) {
        float v = row[j];
        if (!isfinite(v)) {
            ct_set_error(CT_ERR_ARG, "metrics: the score of test image %lld for class %d is "
                         "%g, not a number (diverged training or damaged learned tensors)",
                         (long long)i, j, (double)v);
            return -1;
        }
        if (are_probs && (v < 0.0f || v > 1.0f)) {
            ct_set_error(CT_ERR_ARG, "ct_metrics_compute: probability scores[%lld][%d] = %g "
                         "is outside [0, 1]", (long long)i, j, (double)v);
            return -1;
        }
        sum += v;
        if (v > row[best]) best = j;
    }
    if (are_probs && fabs(sum - 1.0) > PROB_SUM_TOL) {
        ct_set_error(CT_ERR_ARG, "ct_metrics_compute: probabilities of row %lld sum to %.6g, "
                     "not 1 (logits passed as probabilities?)", (long long)i, sum);
        return -1;
    }
    return best;
}

/* Rank of class c in row (0 = highest), ties broken by lower index: the
 * position torch.topk's stable order would give it. */
static int rank_of(const float *row, int K, int c) {
    int r = 0;
    for (int j = 0; j < K; j++)
        if (row[j] > row[c] || (row[j] == row[c] && j < c)) r++;
    return r;
}

/* Bin of a confidence in (0, 1] for Guo's bins (lo, hi]. The edges are
 * numpy/torch linspace(0, 1, B + 1) values, b * (1/B) with the last exactly
 * 1, so a confidence on an edge lands where the references put it. */
static int ece_bin(double conf, int B) {
    double step = 1.0 / B;
    int b = (int)ceil(conf * B) - 1;
    if (b < 0) b = 0;
    if (b > B - 1) b = B - 1;
    while (b > 0 && conf <= b * step) b--;
    while (b < B - 1 && conf > (b + 1) * step) b++;
    return b;
}

ct_status ct_metrics_compute(const float *scores, bool are_probs, const int *labels, int64_t n,
                             int K, int ece_bins, ct_metrics *out) {
    if (!out) return ct_set_error(CT_ERR_ARG, "ct_metrics_compute: NULL output");
    memset(out, 0, sizeof *out);
    if (!scores || !labels)
        return ct_set_error(CT_ERR_ARG, "ct_metrics_compute: NULL scores or labels");
    if (n < 1 || K < 1)
        return n < 1 ? ct_set_error(CT_ERR_ARG, "metrics: the test split is empty (no image to "
                                    "evaluate)")
                     : ct_set_error(CT_ERR_ARG, "metrics: %lld test images but no class",
                                    (long long)n);
    size_t nk, kk;
    if (!ct_mul_size((size_t)n, (size_t)K, &nk) || !ct_mul_size((size_t)K, (size_t)K, &kk) ||
        kk > SIZE_MAX / sizeof(int64_t))
        return ct_set_error(CT_ERR_ARG, "ct_metrics_compute: n = %lld, K = %d overflows",
                            (long long)n, K);
    int B = ece_bins > 0 ? ece_bins : CT_ECE_BINS_DEFAULT;
    int topk = K < 5 ? K : 5;

    double *acc = calloc((size_t)K, sizeof *acc);
    double *f1 = calloc((size_t)K, sizeof *f1);
    int64_t *conf_mat = calloc(kk, sizeof *conf_mat);
    /* Per bin: count, sum of correctness, sum of confidence. */
    double *bins = calloc((size_t)B * 3, sizeof *bins);
    if (!acc || !f1 || !conf_mat || !bins) {
        free(acc);
        free(f1);
        free(conf_mat);
        free(bins);
        return ct_set_error(CT_ERR_NOMEM, "ct_metrics_compute: cannot allocate for K = %d", K);
    }

    int64_t n_top1 = 0, n_topk = 0;
    double nll = 0.0;
    ct_status s = CT_OK;
    for (int64_t i = 0; i < n; i++) {
        const float *row = scores + (size_t)i * (size_t)K;
        int y = labels[i];
        if (y < 0 || y >= K) {
            s = ct_set_error(CT_ERR_ARG, "ct_metrics_compute: labels[%lld] = %d is outside "
                             "[0, %d)", (long long)i, y, K);
            break;
        }
        int pred = check_row(row, are_probs, i, K);
        if (pred < 0) {
            s = CT_ERR_ARG;
            break;
        }
        double conf, logp;
        if (are_probs) {
            conf = row[pred];
            logp = log((double)row[y]); /* -inf for a zero probability: NLL inf */
        } else {
            /* softmax in double, shifted by the max (row[pred]) */
            double mx = row[pred], z = 0.0;
            for (int j = 0; j < K; j++) z += exp((double)row[j] - mx);
            conf = 1.0 / z;
            logp = (double)row[y] - mx - log(z);
        }
        bool correct = pred == y;
        n_top1 += correct;
        n_topk += rank_of(row, K, y) < topk;
        nll -= logp;
        conf_mat[(size_t)y * (size_t)K + (size_t)pred]++;
        int b = ece_bin(conf, B);
        bins[3 * b] += 1.0;
        bins[3 * b + 1] += correct;
        bins[3 * b + 2] += conf;
    }
    if (s != CT_OK) {
        free(acc);
        free(f1);
        free(conf_mat);
        free(bins);
        return s;
    }

    double ece = 0.0;
    for (int b = 0; b < B; b++) {
        double cnt = bins[3 * b];
        if (cnt > 0)
            ece += cnt / (double)n * fabs(bins[3 * b + 1] / cnt - bins[3 * b + 2] / cnt);
    }
    free(bins);

    /* sklearn's F1 from counts: 2tp / (support + predicted), i.e.
     * 2tp / (2tp + fp + fn); 0 when the class is never predicted
     * (zero_division=0); classes with neither are left out of the mean. */
    double f1_sum = 0.0;
    int n_present = 0;
    for (int c = 0; c < K; c++) {
        int64_t tp = conf_mat[(size_t)c * (size_t)K + (size_t)c], support = 0, predicted = 0;
        for (int j = 0; j < K; j++) {
            support += conf_mat[(size_t)c * (size_t)K + (size_t)j];
            predicted += conf_mat[(size_t)j * (size_t)K + (size_t)c];
        }
        acc[c] = support > 0 ? (double)tp / (double)support : NAN;
        if (support + predicted > 0) {
            f1[c] = 2.0 * (double)tp / (double)(support + predicted);
            f1_sum += f1[c];
            n_present++;
        } else {
            f1[c] = NAN;
        }
    }

    out->n_classes = K;
    out->n = n;
    out->top1 = (double)n_top1 / (double)n;
    out->top5 = (double)n_topk / (double)n;
    out->macro_f1 = f1_sum / n_present; /* n_present >= 1 since n >= 1 */
    out->ece = ece;
    out->ece_bins = B;
    out->nll = nll / (double)n;
    out->per_class_acc = acc;
    out->per_class_f1 = f1;
    out->confusion = conf_mat;
    return CT_OK;
}

double ct_harmonic_mean(double base, double novel) {
    double d = base + novel;
    if (d == 0.0) return 0.0;
    return 2.0 * base * novel / d;
}

void ct_mean_std(const double *v, int n, double *mean, double *std) {
    double sum = 0.0;
    int cnt = 0;
    for (int i = 0; v && i < n; i++) {
        if (isnan(v[i])) continue;
        sum += v[i];
        cnt++;
    }
    double mu = cnt > 0 ? sum / cnt : NAN;
    /* Two passes, as numpy: no cancellation from sum-of-squares. */
    double ss = 0.0;
    for (int i = 0; v && i < n; i++) {
        if (isnan(v[i])) continue;
        ss += (v[i] - mu) * (v[i] - mu);
    }
    if (mean) *mean = mu;
    if (std) *std = cnt > 0 ? sqrt(ss / cnt) : NAN;
}

/* ---- multi-label ---- */

void ct_ml_metrics_free(ct_ml_metrics *m) {
    if (!m) return;
    free(m->ap);
    memset(m, 0, sizeof *m);
}

/* One known (image, class) pair of a class column, for its ranking. */
typedef struct ml_pair {
    double score;
    int8_t target; /* 0 or 1 */
} ml_pair;

/* Descending score; the order within a tie is irrelevant (ties are one
 * threshold of the curve). */
static int ml_pair_cmp(const void *a, const void *b) {
    double x = ((const ml_pair *)a)->score, y = ((const ml_pair *)b)->score;
    return (x < y) - (x > y);
}

/* AP (sklearn average_precision_score) and VOC07 11-point AP of one class
 * from its m known pairs with P >= 1 positives. The precision/recall curve
 * has one point per distinct score; prec, rec (m) hold it. */
static void ml_class_ap(ml_pair *pairs, int64_t m, int64_t P, double *prec, double *rec,
                        double *ap, double *ap07) {
    qsort(pairs, (size_t)m, sizeof *pairs, ml_pair_cmp);
    int64_t tp = 0, npts = 0;
    double sum = 0.0, prev_rec = 0.0;
    for (int64_t i = 0; i < m; i++) {
        tp += pairs[i].target;
        if (i + 1 < m && pairs[i + 1].score == pairs[i].score) continue;
        double p = (double)tp / (double)(i + 1), r = (double)tp / (double)P;
        sum += (r - prev_rec) * p;
        prev_rec = r;
        prec[npts] = p;
        rec[npts] = r;
        npts++;
    }
    *ap = sum;
    /* Interpolated precision: the highest precision at recall >= t. Recall
     * never decreases along the curve, so that is a suffix maximum. */
    for (int64_t j = npts - 2; j >= 0; j--)
        if (prec[j + 1] > prec[j]) prec[j] = prec[j + 1];
    double s07 = 0.0;
    int64_t j = 0;
    for (int k = 0; k <= 10; k++) {
        double t = k * 0.1; /* np.arange(0., 1.1, 0.1)[k] */
        while (j < npts && rec[j] < t) j++;
        s07 += (j < npts ? prec[j] : 0.0) / 11.0;
    }
    *ap07 = s07;
}

/* F1 of a precision and a recall; 0 when both are 0 (DualCoOp's calc_F1). */
static double ml_f1(double p, double r) {
    return p + r > 0.0 ? 2.0 * p * r / (p + r) : 0.0;
}

/* Per-class counts of one prediction rule: Nc true positives, Np predicted
 * (with a known target). Ng, the known positives, is shared. */
typedef struct ml_counts {
    int64_t *nc, *np;
} ml_counts;

/* CP, CR, CF1 over the classes with a positive; OP, OR, OF1 over all. */
static void ml_rates(const ml_counts *c, const int64_t *ng, int K, int n_pos, double out[6]) {
    double cp = 0.0, cr = 0.0;
    int64_t snc = 0, snp = 0, sng = 0;
    for (int k = 0; k < K; k++) {
        snc += c->nc[k];
        snp += c->np[k];
        sng += ng[k];
        if (ng[k] == 0) continue;
        cp += c->np[k] > 0 ? (double)c->nc[k] / (double)c->np[k] : 0.0;
        cr += (double)c->nc[k] / (double)ng[k];
    }
    cp /= n_pos;
    cr /= n_pos;
    double op = snp > 0 ? (double)snc / (double)snp : 0.0, or_ = (double)snc / (double)sng;
    out[0] = cp;
    out[1] = cr;
    out[2] = ml_f1(cp, cr);
    out[3] = op;
    out[4] = or_;
    out[5] = ml_f1(op, or_);
}

/* Validate scores and targets; the error names the first bad entry. */
static ct_status ml_check(const float *scores, bool are_probs, const int8_t *targets, int64_t n,
                          int K) {
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < K; k++) {
            size_t at = (size_t)i * (size_t)K + (size_t)k;
            float v = scores[at];
            if (!isfinite(v))
                return ct_set_error(CT_ERR_ARG, "multi-label metrics: the score of test image "
                                    "%lld for class %d is %g, not a number (diverged training "
                                    "or damaged learned tensors)", (long long)i, k, (double)v);
            if (are_probs && (v < 0.0f || v > 1.0f))
                return ct_set_error(CT_ERR_ARG, "ct_ml_metrics_compute: probability "
                                    "scores[%lld][%d] = %g is outside [0, 1] (logits passed "
                                    "as probabilities?)", (long long)i, k, (double)v);
            int t = targets[at];
            if (t < -1 || t > 1)
                return ct_set_error(CT_ERR_ARG, "ct_ml_metrics_compute: targets[%lld][%d] = %d "
                                    "is not 1 (present), 0 (absent) or -1 (unknown)",
                                    (long long)i, k, t);
        }
    return CT_OK;
}

ct_status ct_ml_metrics_compute(const float *scores, bool are_probs, const int8_t *targets,
                                int64_t n, int K, double thresh, ct_ml_metrics *out) {
    if (!out) return ct_set_error(CT_ERR_ARG, "ct_ml_metrics_compute: NULL output");
    memset(out, 0, sizeof *out);
    if (!scores || !targets)
        return ct_set_error(CT_ERR_ARG, "ct_ml_metrics_compute: NULL scores or targets");
    if (n < 1)
        return ct_set_error(CT_ERR_ARG, "multi-label metrics: the test split is empty (no "
                            "image to evaluate)");
    if (K < 1)
        return ct_set_error(CT_ERR_ARG, "multi-label metrics: %lld test images but no class",
                            (long long)n);
    if (!(thresh > 0.0 && thresh < 1.0))
        return ct_set_error(CT_ERR_ARG, "ct_ml_metrics_compute: threshold %g is not in (0, 1) "
                            "(it is a probability; %g is the usual one)", thresh,
                            CT_ML_THRESH_DEFAULT);
    size_t nk;
    if (!ct_mul_size((size_t)n, (size_t)K, &nk) || (uint64_t)n > SIZE_MAX / (2 * sizeof(double)))
        return ct_set_error(CT_ERR_ARG, "ct_ml_metrics_compute: n = %lld, K = %d overflows",
                            (long long)n, K);
    ct_status s = ml_check(scores, are_probs, targets, n, K);
    if (s != CT_OK) return s;

    int top_k = K < 3 ? K : 3;
    /* ng, then nc, np at thresh, then nc, np at top-k: K each */
    int64_t *cnt = calloc((size_t)K * 5, sizeof *cnt);
    double *ap = malloc((size_t)K * sizeof *ap);
    ml_pair *pairs = malloc((size_t)n * sizeof *pairs);
    double *curve = malloc((size_t)n * 2 * sizeof *curve);
    if (!cnt || !ap || !pairs || !curve) {
        free(cnt);
        free(ap);
        free(pairs);
        free(curve);
        return ct_set_error(CT_ERR_NOMEM, "ct_ml_metrics_compute: cannot allocate for n = %lld, "
                            "K = %d", (long long)n, K);
    }
    int64_t *ng = cnt;
    ml_counts at_t = {cnt + K, cnt + 2 * (size_t)K}, at_k = {cnt + 3 * (size_t)K,
                                                               cnt + 4 * (size_t)K};
    for (int64_t i = 0; i < n; i++) {
        const float *row = scores + (size_t)i * (size_t)K;
        const int8_t *y = targets + (size_t)i * (size_t)K;
        /* top-k in descending order; a later class displaces an earlier one
         * only with a strictly higher score (torch.topk's lower-index ties) */
        int best[3], nb = 0;
        for (int k = 0; k < K; k++) {
            int p = nb < top_k ? nb : top_k;
            while (p > 0 && row[k] > row[best[p - 1]]) p--;
            if (p >= top_k) continue;
            for (int q = (nb < top_k ? nb : top_k - 1); q > p; q--) best[q] = best[q - 1];
            best[p] = k;
            if (nb < top_k) nb++;
        }
        for (int k = 0; k < K; k++) {
            if (y[k] < 0) continue;
            double prob = are_probs ? (double)row[k] : 1.0 / (1.0 + exp(-(double)row[k]));
            bool pos = y[k] == 1;
            ng[k] += pos;
            if (prob >= thresh) {
                at_t.np[k]++;
                at_t.nc[k] += pos;
            }
        }
        for (int q = 0; q < top_k; q++) {
            int k = best[q];
            if (y[k] < 0) continue;
            at_k.np[k]++;
            at_k.nc[k] += y[k] == 1;
        }
    }

    int n_pos = 0;
    double map = 0.0, map07 = 0.0;
    for (int k = 0; k < K; k++) {
        if (ng[k] == 0) {
            ap[k] = NAN;
            continue;
        }
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++) {
            size_t at = (size_t)i * (size_t)K + (size_t)k;
            if (targets[at] < 0) continue;
            pairs[m].score = scores[at];
            pairs[m].target = targets[at];
            m++;
        }
        double a07;
        ml_class_ap(pairs, m, ng[k], curve, curve + n, &ap[k], &a07);
        map += ap[k];
        map07 += a07;
        n_pos++;
    }
    free(pairs);
    free(curve);
    if (n_pos == 0) {
        free(cnt);
        free(ap);
        return ct_set_error(CT_ERR_ARG, "multi-label metrics: none of the %lld test images has "
                            "a known positive label (every target is 0 or -1): no metric is "
                            "defined", (long long)n);
    }
    double r[6], r3[6];
    ml_rates(&at_t, ng, K, n_pos, r);
    ml_rates(&at_k, ng, K, n_pos, r3);
    free(cnt);

    out->n_classes = K;
    out->n = n;
    out->n_pos_classes = n_pos;
    out->map = map / n_pos;
    out->map_voc07 = map07 / n_pos;
    double *dst[12] = {&out->cp,  &out->cr,  &out->cf1,  &out->op,  &out->or_, &out->of1,
                       &out->cp3, &out->cr3, &out->cf13, &out->op3, &out->or3, &out->of13};
    for (int j = 0; j < 6; j++) {
        *dst[j] = r[j];
        *dst[6 + j] = r3[j];
    }
    out->top_k = top_k;
    out->thresh = thresh;
    out->ap = ap;
    return CT_OK;
}

/* ---- JSON ---- */

/* A number, or null for NaN/inf (JSON has neither). */
static cJSON *json_num(double v) {
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

/* Add item to obj (or arr when key is NULL); false if item is NULL. */
static bool add(cJSON *obj, const char *key, cJSON *item) {
    if (!item) return false;
    if (key) return cJSON_AddItemToObject(obj, key, item);
    return cJSON_AddItemToArray(obj, item);
}

ct_status ct_metrics_save_json(const ct_metrics *m, const char *const *classnames,
                               const char *path) {
    if (!m || !path) return ct_set_error(CT_ERR_ARG, "ct_metrics_save_json: NULL metrics or path");
    int K = m->n_classes;
    if (K < 1 || !m->per_class_acc || !m->per_class_f1 || !m->confusion)
        return ct_set_error(CT_ERR_ARG, "%s: metrics were not computed", path);
    cJSON *root = cJSON_CreateObject();
    bool ok = root != NULL;
    if (ok) {
        ok = add(root, "n_classes", cJSON_CreateNumber(K)) &&
             add(root, "n", cJSON_CreateNumber((double)m->n)) &&
             add(root, "top1", json_num(m->top1)) && add(root, "top5", json_num(m->top5)) &&
             add(root, "macro_f1", json_num(m->macro_f1)) &&
             add(root, "ece", json_num(m->ece)) &&
             add(root, "ece_bins", cJSON_CreateNumber(m->ece_bins)) &&
             add(root, "nll", json_num(m->nll));
    }
    cJSON *per = ok ? cJSON_CreateArray() : NULL;
    ok = ok && add(root, "per_class", per);
    cJSON *conf = ok ? cJSON_CreateArray() : NULL;
    ok = ok && add(root, "confusion", conf);
    for (int c = 0; ok && c < K; c++) {
        const int64_t *row = m->confusion + (size_t)c * (size_t)K;
        int64_t support = 0, predicted = 0;
        for (int j = 0; j < K; j++) {
            support += row[j];
            predicted += m->confusion[(size_t)j * (size_t)K + (size_t)c];
        }
        char idx[24];
        snprintf(idx, sizeof idx, "%d", c);
        const char *name = classnames && classnames[c] ? classnames[c] : idx;
        cJSON *e = cJSON_CreateObject();
        ok = add(per, NULL, e) && add(e, "index", cJSON_CreateNumber(c)) &&
             add(e, "name", cJSON_CreateString(name)) &&
             add(e, "accuracy", json_num(m->per_class_acc[c])) &&
             add(e, "f1", json_num(m->per_class_f1[c])) &&
             add(e, "support", cJSON_CreateNumber((double)support)) &&
             add(e, "predicted", cJSON_CreateNumber((double)predicted));
        cJSON *r = ok ? cJSON_CreateArray() : NULL;
        ok = ok && add(conf, NULL, r);
        for (int j = 0; ok && j < K; j++) ok = add(r, NULL, cJSON_CreateNumber((double)row[j]));
    }
    if (ok && m->hierarchy) {
        cJSON *h = cJSON_CreateObject();
        ok = add(root, "hierarchy", h) && add(h, "leaf_acc", json_num(m->leaf_acc)) &&
             add(h, "hca", json_num(m->hca)) && add(h, "mta", json_num(m->mta)) &&
             add(h, "n_cuts", cJSON_CreateNumber(m->n_cuts)) &&
             add(h, "node_scores_from",
                 cJSON_CreateString(m->node_scores_from ? m->node_scores_from : ""));
    }
    if (!ok) {
        cJSON_Delete(root);
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot build the metrics JSON", path);
    }
    ct_status s = ct_json_save(path, root);
    cJSON_Delete(root);
    return s;
}

/* ---- CSV ---- */

/* One CSV field, quoted (with quotes doubled) only when it must be. */
static ct_status csv_field(ct_atomic_file *f, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) return ct_atomic_write(f, s, strlen(s));
    ct_status st = ct_atomic_write(f, "\"", 1);
    for (const char *p = s; st == CT_OK && *p; p++) {
        const char *q = strchr(p, '"');
        size_t len = q ? (size_t)(q - p) + 1 : strlen(p);
        st = ct_atomic_write(f, p, len);
        if (st == CT_OK && q) st = ct_atomic_write(f, "\"", 1);
        p += len - 1;
    }
    if (st == CT_OK) st = ct_atomic_write(f, "\"", 1);
    return st;
}

/* A field followed by sep (',' or '\n'). */
static ct_status csv_put(ct_atomic_file *f, const char *s, char sep) {
    ct_status st = csv_field(f, s);
    return st == CT_OK ? ct_atomic_write(f, &sep, 1) : st;
}

ct_status ct_predictions_save_csv(const char *path, const char *const *item_keys,
                                  const int *labels, const float *probs, int64_t n, int K,
                                  const char *const *classnames) {
    if (!path || !probs || n < 0 || K < 1)
        return ct_set_error(CT_ERR_ARG, "ct_predictions_save_csv: %s: need a path, probs, "
                            "n >= 0 and K >= 1", path ? path : "(null)");
    /* Validate first so that a bad input never leaves a temp file behind. */
    for (int64_t i = 0; i < n; i++) {
        if (labels && labels[i] >= K)
            return ct_set_error(CT_ERR_ARG, "%s: labels[%lld] = %d is not below K = %d", path,
                                (long long)i, labels[i], K);
        for (int j = 0; j < K; j++)
            if (!isfinite(probs[(size_t)i * (size_t)K + (size_t)j]))
                return ct_set_error(CT_ERR_ARG, "%s: probs[%lld][%d] is not finite", path,
                                    (long long)i, j);
    }
    ct_atomic_file *f;
    ct_status s = ct_atomic_create(path, &f);
    if (s != CT_OK) return s;
    static const char header[] = "item,label,pred,confidence,label_name,pred_name\n";
    s = ct_atomic_write(f, header, sizeof header - 1);
    for (int64_t i = 0; s == CT_OK && i < n; i++) {
        const float *row = probs + (size_t)i * (size_t)K;
        int pred = 0;
        for (int j = 1; j < K; j++)
            if (row[j] > row[pred]) pred = j;
        int y = labels ? labels[i] : -1;
        char key[24], lab[24], prd[24], conf[32];
        snprintf(key, sizeof key, "%lld", (long long)i);
        lab[0] = 0;
        if (y >= 0) snprintf(lab, sizeof lab, "%d", y);
        snprintf(prd, sizeof prd, "%d", pred);
        snprintf(conf, sizeof conf, "%.9g", (double)row[pred]);
        const char *ln = y < 0 ? "" : classnames && classnames[y] ? classnames[y] : lab;
        const char *pn = classnames && classnames[pred] ? classnames[pred] : prd;
        const char *it = item_keys && item_keys[i] ? item_keys[i] : key;
        s = csv_put(f, it, ',');
        if (s == CT_OK) s = csv_put(f, lab, ',');
        if (s == CT_OK) s = csv_put(f, prd, ',');
        if (s == CT_OK) s = csv_put(f, conf, ',');
        if (s == CT_OK) s = csv_put(f, ln, ',');
        if (s == CT_OK) s = csv_put(f, pn, '\n');
    }
    if (s != CT_OK) {
        ct_atomic_abort(f);
        return s;
    }
    return ct_atomic_commit(f);
}

/* ---- multi-label outputs ---- */

ct_status ct_ml_metrics_save_json(const ct_ml_metrics *m, const char *const *classnames,
                                  const char *path) {
    if (!m || !path || m->n_classes < 1 || !m->ap)
        return ct_set_error(CT_ERR_ARG, "%s: multi-label metrics were not computed",
                            path ? path : "ct_ml_metrics_save_json");
    cJSON *root = cJSON_CreateObject();
    bool ok = root && add(root, "task", cJSON_CreateString("multi-label")) &&
              add(root, "n_classes", cJSON_CreateNumber(m->n_classes)) &&
              add(root, "n", cJSON_CreateNumber((double)m->n)) &&
              add(root, "map", json_num(m->map)) && add(root, "map_voc07", json_num(m->map_voc07)) &&
              add(root, "threshold", json_num(m->thresh)) && add(root, "cp", json_num(m->cp)) &&
              add(root, "cr", json_num(m->cr)) && add(root, "cf1", json_num(m->cf1)) &&
              add(root, "op", json_num(m->op)) && add(root, "or", json_num(m->or_)) &&
              add(root, "of1", json_num(m->of1)) && add(root, "top_k", cJSON_CreateNumber(m->top_k)) &&
              add(root, "cp_topk", json_num(m->cp3)) && add(root, "cr_topk", json_num(m->cr3)) &&
              add(root, "cf1_topk", json_num(m->cf13)) && add(root, "op_topk", json_num(m->op3)) &&
              add(root, "or_topk", json_num(m->or3)) && add(root, "of1_topk", json_num(m->of13));
    cJSON *per = ok ? cJSON_CreateArray() : NULL;
    ok = ok && add(root, "per_class", per);
    for (int c = 0; ok && c < m->n_classes; c++) {
        char idx[24];
        snprintf(idx, sizeof idx, "%d", c);
        cJSON *e = cJSON_CreateObject();
        ok = add(per, NULL, e) && add(e, "index", cJSON_CreateNumber(c)) &&
             add(e, "name", cJSON_CreateString(classnames && classnames[c] ? classnames[c] : idx)) &&
             add(e, "ap", json_num(m->ap[c]));
    }
    if (!ok) {
        cJSON_Delete(root);
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot build the metrics JSON", path);
    }
    ct_status s = ct_json_save(path, root);
    cJSON_Delete(root);
    return s;
}

/* names of the classes of row where pick(v) holds, ';'-joined, into a
 * malloc'd string */
static char *names_where(const int8_t *t, const float *p, double thresh, int K, int want,
                         const char *const *classnames) {
    size_t len = 1;
    char idx[24];
    for (int pass = 0; pass < 2; pass++) {
        char *out = pass ? malloc(len) : NULL;
        if (pass && !out) return NULL;
        size_t at = 0;
        for (int k = 0; k < K; k++) {
            bool hit = t ? t[k] == want : p[k] >= thresh;
            if (!hit) continue;
            snprintf(idx, sizeof idx, "%d", k);
            const char *nm = classnames && classnames[k] ? classnames[k] : idx;
            size_t l = strlen(nm) + (at ? 1 : 0);
            if (pass) {
                if (at) out[at] = ';';
                memcpy(out + at + (at ? 1 : 0), nm, strlen(nm));
            }
            at += l;
        }
        if (pass) {
            out[at] = 0;
            return out;
        }
        len = at + 1;
    }
    return NULL;
}

ct_status ct_ml_predictions_save_csv(const char *path, const char *const *item_keys,
                                     const int8_t *targets, const float *probs, int64_t n, int K,
                                     double thresh, const char *const *classnames) {
    if (!path || !probs || n < 0 || K < 1)
        return ct_set_error(CT_ERR_ARG, "ct_ml_predictions_save_csv: %s: need a path, probs, "
                            "n >= 0 and K >= 1", path ? path : "(null)");
    for (int64_t i = 0; i < n * K; i++)
        if (!isfinite(probs[i]))
            return ct_set_error(CT_ERR_ARG, "%s: probs[%lld][%lld] is not finite", path,
                                (long long)(i / K), (long long)(i % K));
    ct_atomic_file *f;
    ct_status s = ct_atomic_create(path, &f);
    if (s != CT_OK) return s;
    s = ct_atomic_write(f, "item,labels,unknown,predicted", 29);
    char idx[24];
    for (int k = 0; s == CT_OK && k < K; k++) {
        snprintf(idx, sizeof idx, "%d", k);
        s = ct_atomic_write(f, ",", 1);
        if (s == CT_OK) s = csv_field(f, classnames && classnames[k] ? classnames[k] : idx);
    }
    if (s == CT_OK) s = ct_atomic_write(f, "\n", 1);
    for (int64_t i = 0; s == CT_OK && i < n; i++) {
        const float *row = probs + i * K;
        const int8_t *t = targets ? targets + i * K : NULL;
        char *pos = t ? names_where(t, NULL, 0, K, 1, classnames) : strdup("");
        char *unk = t ? names_where(t, NULL, 0, K, -1, classnames) : strdup("");
        char *pred = names_where(NULL, row, thresh, K, 0, classnames);
        snprintf(idx, sizeof idx, "%lld", (long long)i);
        if (!pos || !unk || !pred) s = ct_set_error(CT_ERR_NOMEM, "%s: out of memory", path);
        if (s == CT_OK) s = csv_put(f, item_keys && item_keys[i] ? item_keys[i] : idx, ',');
        if (s == CT_OK) s = csv_put(f, pos, ',');
        if (s == CT_OK) s = csv_put(f, unk, ',');
        if (s == CT_OK) s = csv_put(f, pred, K ? ',' : '\n');
        free(pos), free(unk), free(pred);
        for (int k = 0; s == CT_OK && k < K; k++) {
            char v[32];
            snprintf(v, sizeof v, "%.6g", (double)row[k]);
            s = csv_put(f, v, k + 1 < K ? ',' : '\n');
        }
    }
    if (s != CT_OK) {
        ct_atomic_abort(f);
        return s;
    }
    return ct_atomic_commit(f);
}
