/* Tip-Adapter's cache model, shared by tip_adapter.c and sus_x.c (see
 * method_cache.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "methods/method_cache.h"

ct_status ct_cache_values(const char *who, const ct_tensor *labels, ct_tensor **V,
                          float **v_labels) {
    int64_t N = labels->numel, C = (*V)->shape[1];
    if (N == 0) return ct_set_error(CT_ERR_STATE, "%s: the cache is empty (no training "
                                    "features, nothing loaded)", who);
    if ((*V)->shape[0] != N) {
        /* the cache was resized by loading a run: size V to it */
        ct_tensor *nv = ct_tensor_new2(N, C, false);
        float *vl = malloc((size_t)N * sizeof *vl);
        if (!nv || !vl) {
            ct_tensor_free(nv), free(vl);
            return ct_set_error(CT_ERR_NOMEM, "%s: out of memory", who);
        }
        for (int64_t j = 0; j < N; j++) vl[j] = -1;
        ct_tensor_free(*V), free(*v_labels);
        *V = nv, *v_labels = vl;
    }
    if (!memcmp(*v_labels, labels->data, (size_t)N * sizeof(float))) return CT_OK;
    for (int64_t j = 0; j < N; j++) {
        float l = labels->data[j];
        if (!(l >= 0 && l < (float)C && l == floorf(l)))
            return ct_set_error(CT_ERR_FORMAT, "%s: cache label %lld is %g, not a class in "
                                "[0, %lld)", who, (long long)j, (double)l, (long long)C);
    }
    ct_tensor *v = *V;
    memset(v->data, 0, (size_t)v->numel * sizeof(float));
    for (int64_t j = 0; j < N; j++) v->data[j * C + (int64_t)labels->data[j]] = 1;
    memcpy(*v_labels, labels->data, (size_t)N * sizeof(float));
    return CT_OK;
}

ct_tensor *ct_cache_logits(ct_graph *g, ct_tensor *f, ct_tensor *keys, ct_tensor *V, float beta) {
    int64_t one = 1;
    ct_tensor *aff = ct_matmul(g, f, keys, false, true); /* (B, N) */
    ct_tensor *nb = ct_graph_tensor(g, 1, &one);
    if (!aff || !nb) return NULL;
    nb->data[0] = -beta;
    /* exp(-beta (1 - aff)) */
    ct_tensor *e = ct_exp(g, ct_add(g, ct_scale(g, aff, beta), nb));
    return ct_matmul(g, e, V, false, false); /* (B, C) */
}

double ct_cache_grid(int i, double lo, double scale, int steps) {
    return i * (scale - lo) / steps + lo;
}

void ct_cache_class_sums(double *cl, const float *a, const int *lab, int64_t N, int C,
                         double b0, double db, int nb) {
    memset(cl, 0, (size_t)C * (size_t)nb * sizeof *cl);
    for (int64_t j = 0; j < N; j++) {
        double x = (double)a[j] - 1, e = exp(b0 * x), q = exp(db * x);
        double *p = cl + (int64_t)lab[j] * nb;
        for (int b = 0; b < nb; b++) p[b] += e, e *= q;
    }
}

void ct_unit_rows(float *dst, const float *src, int64_t n, int E) {
    for (int64_t i = 0; i < n; i++) {
        const float *x = src + i * E;
        double ss = 0;
        for (int d = 0; d < E; d++) ss += (double)x[d] * x[d];
        float inv = ss > 0 ? (float)(1 / sqrt(ss)) : 0;
        for (int d = 0; d < E; d++) dst[i * E + d] = x[d] * inv;
    }
}
