#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/gemm.h"
#include "cliptune.h"

static bool shape_numel(int ndim, const int64_t *shape, int64_t *numel) {
    if (ndim < 0 || ndim > CT_MAX_DIMS) return false;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || __builtin_mul_overflow(n, shape[d], &n)) return false;
    }
    *numel = n;
    return true;
}

/* Shared by leaf and graph tensors: validates and fills shape fields. */
bool ct_tensor_set_shape(ct_tensor *t, int ndim, const int64_t *shape) {
    int64_t n;
    if (!shape_numel(ndim, shape, &n)) return false;
    t->ndim = ndim;
    for (int d = 0; d < CT_MAX_DIMS; d++) t->shape[d] = d < ndim ? shape[d] : 1;
    t->numel = n;
    return true;
}

ct_tensor *ct_tensor_new(int ndim, const int64_t *shape, bool requires_grad) {
    ct_tensor *t = calloc(1, sizeof *t);
    if (!t) {
        ct_set_error(CT_ERR_NOMEM, "tensor: out of memory");
        return NULL;
    }
    if (!ct_tensor_set_shape(t, ndim, shape)) {
        free(t);
        ct_set_error(CT_ERR_ARG, "tensor: invalid shape (ndim %d)", ndim);
        return NULL;
    }
    size_t n = (size_t)t->numel ? (size_t)t->numel : 1;
    t->data = calloc(n, sizeof(ct_real));
    if (requires_grad) t->grad = calloc(n, sizeof(ct_real));
    if (!t->data || (requires_grad && !t->grad)) {
        free(t->data);
        free(t->grad);
        free(t);
        ct_set_error(CT_ERR_NOMEM, "tensor: out of memory for %zu values", n);
        return NULL;
    }
    t->requires_grad = requires_grad;
    t->owns = true;
    return t;
}

ct_tensor *ct_tensor_new2(int64_t d0, int64_t d1, bool requires_grad) {
    int64_t s[2] = {d0, d1};
    return ct_tensor_new(2, s, requires_grad);
}

void ct_tensor_free(ct_tensor *t) {
    if (!t) return;
    ct_wpack_free(t->lowp);
    t->lowp = NULL;
    if (t->owns) {
        free(t->data);
        free(t->grad);
        free(t);
    }
}

void ct_tensor_zero_grad(ct_tensor *t) {
    if (t && t->grad) memset(t->grad, 0, (size_t)t->numel * sizeof(ct_real));
}

int64_t ct_tensor_dim(const ct_tensor *t, int d) {
    if (d < 0) d += t->ndim;
    return (d >= 0 && d < t->ndim) ? t->shape[d] : 1;
}

bool ct_tensor_same_shape(const ct_tensor *a, const ct_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

const char *ct_shape_str(const ct_tensor *t, char *buf, size_t n) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, o < n ? n - o : 0, "(");
    for (int d = 0; d < t->ndim; d++)
        o += (size_t)snprintf(buf + o, o < n ? n - o : 0, d ? ", %lld" : "%lld",
                              (long long)t->shape[d]);
    snprintf(buf + o, o < n ? n - o : 0, ")");
    return buf;
}
