/* Semantic segmentation metrics (mIoU, mAcc, aAcc and per class IoU /
 * accuracy) with mmsegmentation's semantics; the contract is documented at
 * ct_seg_metrics in cliptune.h, the reference re-implemented in
 * tools/ref/gen_segmetrics_ref.py. Counts are int64, so the totals are
 * exact (mmseg sums float32 histograms into float64 ones: exact below 2^24
 * pixels of a class per image). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/json.h"
#include "train/metrics.h"

ct_status ct_seg_confusion_add(int64_t *conf, int K, const uint8_t *pred, const uint8_t *gt,
                               int64_t n_pixels, int ignore_index) {
    if (!conf || (n_pixels > 0 && (!pred || !gt)))
        return ct_set_error(CT_ERR_ARG, "ct_seg_confusion_add: NULL confusion or label map");
    if (K < 1 || K > 256)
        return ct_set_error(CT_ERR_ARG, "ct_seg_confusion_add: %d classes (8-bit maps: 1 to 256)",
                            K);
    if (n_pixels < 0)
        return ct_set_error(CT_ERR_ARG, "ct_seg_confusion_add: %lld pixels",
                            (long long)n_pixels);
    for (int64_t i = 0; i < n_pixels; i++)
        if (pred[i] >= K)
            return ct_set_error(CT_ERR_ARG, "ct_seg_confusion_add: prediction %d at pixel %lld "
                                "is not a class (K = %d)", pred[i], (long long)i, K);
    for (int64_t i = 0; i < n_pixels; i++) {
        int g = gt[i];
        if (g == ignore_index) continue;
        conf[(size_t)(g < K ? g : K) * (size_t)K + pred[i]]++;
    }
    return CT_OK;
}

void ct_seg_metrics_free(ct_seg_metrics *m) {
    if (!m) return;
    free(m->iou);
    free(m->acc);
    free(m->area_label);
    free(m->area_pred);
    memset(m, 0, sizeof *m);
}

/* np.nanmean; *n the count of non-NaN values (NaN when none). */
static double nanmean(const double *v, int K, int *n) {
    double sum = 0;
    int c = 0;
    for (int k = 0; k < K; k++)
        if (!isnan(v[k])) sum += v[k], c++;
    if (n) *n = c;
    return c ? sum / c : NAN;
}

ct_status ct_seg_metrics_compute(const int64_t *conf, int K, ct_seg_metrics *out) {
    if (!out) return ct_set_error(CT_ERR_ARG, "ct_seg_metrics_compute: NULL output");
    memset(out, 0, sizeof *out);
    if (!conf) return ct_set_error(CT_ERR_ARG, "ct_seg_metrics_compute: NULL confusion");
    if (K < 1 || K > 256)
        return ct_set_error(CT_ERR_ARG, "ct_seg_metrics_compute: %d classes (1 to 256)", K);
    for (int64_t i = 0; i < (int64_t)(K + 1) * K; i++)
        if (conf[i] < 0)
            return ct_set_error(CT_ERR_ARG, "ct_seg_metrics_compute: confusion[%lld][%lld] = "
                                "%lld is negative", (long long)(i / K), (long long)(i % K),
                                (long long)conf[i]);
    ct_seg_metrics m = {.n_classes = K};
    m.iou = malloc((size_t)K * sizeof *m.iou);
    m.acc = malloc((size_t)K * sizeof *m.acc);
    m.area_label = calloc((size_t)K, sizeof *m.area_label);
    m.area_pred = calloc((size_t)K, sizeof *m.area_pred);
    if (!m.iou || !m.acc || !m.area_label || !m.area_pred) {
        ct_seg_metrics_free(&m);
        return ct_set_error(CT_ERR_NOMEM, "ct_seg_metrics_compute: cannot allocate %d classes",
                            K);
    }
    int64_t total_inter = 0;
    for (int r = 0; r <= K; r++)
        for (int c = 0; c < K; c++) {
            int64_t v = conf[(size_t)r * K + c];
            if (r < K) m.area_label[r] += v;
            m.area_pred[c] += v;
        }
    for (int c = 0; c < K; c++) {
        int64_t inter = conf[(size_t)c * K + c];
        int64_t uni = m.area_pred[c] + m.area_label[c] - inter;
        total_inter += inter;
        m.n_pixels += m.area_label[c];
        /* 0 / 0 is NaN as in torch */
        m.iou[c] = uni ? (double)inter / (double)uni : NAN;
        m.acc[c] = m.area_label[c] ? (double)inter / (double)m.area_label[c] : NAN;
    }
    if (m.n_pixels == 0) {
        ct_seg_metrics_free(&m);
        return ct_set_error(CT_ERR_ARG, "ct_seg_metrics_compute: no pixel has a class as ground "
                            "truth (all ignored or >= K = %d): nothing to measure", K);
    }
    m.aacc = (double)total_inter / (double)m.n_pixels;
    m.miou = nanmean(m.iou, K, &m.n_iou_classes);
    m.macc = nanmean(m.acc, K, NULL);
    *out = m;
    return CT_OK;
}

/* A number, or null for NaN/inf (JSON has neither). */
static cJSON *json_num(double v) {
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

static bool add(cJSON *obj, const char *key, cJSON *item) {
    if (!item) return false;
    if (key) return cJSON_AddItemToObject(obj, key, item);
    return cJSON_AddItemToArray(obj, item);
}

ct_status ct_seg_metrics_save_json(const ct_seg_metrics *m, const char *const *classnames,
                                   const char *path) {
    if (!m || !path || m->n_classes < 1 || !m->iou || !m->acc || !m->area_label || !m->area_pred)
        return ct_set_error(CT_ERR_ARG, "%s: segmentation metrics were not computed",
                            path ? path : "ct_seg_metrics_save_json");
    cJSON *root = cJSON_CreateObject();
    bool ok = root && add(root, "task", cJSON_CreateString("segmentation")) &&
              add(root, "n_classes", cJSON_CreateNumber(m->n_classes)) &&
              add(root, "n_pixels", cJSON_CreateNumber((double)m->n_pixels)) &&
              add(root, "miou", json_num(m->miou)) && add(root, "macc", json_num(m->macc)) &&
              add(root, "aacc", json_num(m->aacc)) &&
              add(root, "n_iou_classes", cJSON_CreateNumber(m->n_iou_classes));
    cJSON *per = ok ? cJSON_CreateArray() : NULL;
    ok = ok && add(root, "per_class", per);
    for (int c = 0; ok && c < m->n_classes; c++) {
        char idx[24];
        snprintf(idx, sizeof idx, "%d", c);
        cJSON *e = cJSON_CreateObject();
        ok = add(per, NULL, e) && add(e, "index", cJSON_CreateNumber(c)) &&
             add(e, "name", cJSON_CreateString(classnames && classnames[c] ? classnames[c] : idx)) &&
             add(e, "iou", json_num(m->iou[c])) && add(e, "acc", json_num(m->acc[c])) &&
             add(e, "pixels", cJSON_CreateNumber((double)m->area_label[c])) &&
             add(e, "predicted", cJSON_CreateNumber((double)m->area_pred[c]));
    }
    if (!ok) {
        cJSON_Delete(root);
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot build the metrics JSON", path);
    }
    ct_status s = ct_json_save(path, root);
    cJSON_Delete(root);
    return s;
}
