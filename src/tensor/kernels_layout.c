/* Layout kernels: reductions over a dim, slices, row gathers, transposes.
 * Shapes are viewed as (outer, n, inner) around the dim of interest. */
#include <string.h>

#include "tensor/kernels.h"

void sum_dim_forward(ct_real *out, const ct_real *inp, int64_t outer, int64_t n, int64_t inner,
                     ct_real scale) {
    // out (outer, inner) = scale * sum_j inp (outer, n, inner)
#pragma omp parallel for schedule(static) if (outer * n * inner > 65536)
    for (int64_t o = 0; o < outer; o++) {
        ct_real *dst = out + o * inner;
        for (int64_t i = 0; i < inner; i++) dst[i] = 0;
        for (int64_t j = 0; j < n; j++) {
            const ct_real *src = inp + (o * n + j) * inner;
            for (int64_t i = 0; i < inner; i++) dst[i] += src[i];
        }
        for (int64_t i = 0; i < inner; i++) dst[i] *= scale;
    }
}

void sum_dim_backward(ct_real *dinp, const ct_real *dout, int64_t outer, int64_t n,
                      int64_t inner, ct_real scale) {
#pragma omp parallel for schedule(static) if (outer * n * inner > 65536)
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < n; j++) {
            ct_real *dst = dinp + (o * n + j) * inner;
            const ct_real *src = dout + o * inner;
            for (int64_t i = 0; i < inner; i++) dst[i] += scale * src[i];
        }
}

void slice_forward(ct_real *out, const ct_real *inp, int64_t outer, int64_t n, int64_t inner,
                   int64_t start, int64_t len, bool add) {
    // out (outer, len, inner) (+)= inp (outer, n, inner)[:, start:start+len]
#pragma omp parallel for schedule(static) if (outer * len * inner > 65536)
    for (int64_t o = 0; o < outer; o++) {
        ct_real *dst = out + o * len * inner;
        const ct_real *src = inp + (o * n + start) * inner;
        if (add)
            for (int64_t i = 0; i < len * inner; i++) dst[i] += src[i];
        else
            memcpy(dst, src, (size_t)(len * inner) * sizeof(ct_real));
    }
}

void slice_backward(ct_real *dinp, const ct_real *dout, int64_t outer, int64_t n, int64_t inner,
                    int64_t start, int64_t len) {
#pragma omp parallel for schedule(static) if (outer * len * inner > 65536)
    for (int64_t o = 0; o < outer; o++) {
        ct_real *dst = dinp + (o * n + start) * inner;
        const ct_real *src = dout + o * len * inner;
        for (int64_t i = 0; i < len * inner; i++) dst[i] += src[i];
    }
}

void slice_place(ct_real *out, const ct_real *inp, int64_t outer, int64_t n, int64_t inner,
                 int64_t start, int64_t len) {
#pragma omp parallel for schedule(static) if (outer * len * inner > 65536)
    for (int64_t o = 0; o < outer; o++)
        memcpy(out + (o * n + start) * inner, inp + o * len * inner,
               (size_t)(len * inner) * sizeof(ct_real));
}

void gather_rows_forward(ct_real *out, const ct_real *table, const int64_t *ids, int64_t n,
                         int64_t C) {
#pragma omp parallel for schedule(static) if (n * C > 65536)
    for (int64_t i = 0; i < n; i++)
        memcpy(out + i * C, table + ids[i] * C, (size_t)C * sizeof(ct_real));
}

void gather_rows_backward(ct_real *dtable, const ct_real *dout, const int64_t *ids, int64_t n,
                          int64_t C) {
    /* Repeated ids add into the same row, so rows are not split across
     * threads; columns are. */
    const int64_t blk = 256;
#pragma omp parallel for schedule(static) if (n * C > 65536)
    for (int64_t c0 = 0; c0 < C; c0 += blk) {
        int64_t c1 = c0 + blk < C ? c0 + blk : C;
        for (int64_t i = 0; i < n; i++) {
            ct_real *dst = dtable + ids[i] * C;
            const ct_real *src = dout + i * C;
            for (int64_t c = c0; c < c1; c++) dst[c] += src[c];
        }
    }
}

void transpose_forward(ct_real *out, const ct_real *inp, const int64_t *s, int d0, int d1) {
    int64_t os[CT_MAX_DIMS] = {s[0], s[1], s[2], s[3]};
    os[d0] = s[d1];
    os[d1] = s[d0];
    int64_t is[CT_MAX_DIMS]; /* input strides */
    is[3] = 1;
    for (int d = 2; d >= 0; d--) is[d] = is[d + 1] * s[d + 1];
    int64_t st[CT_MAX_DIMS] = {is[0], is[1], is[2], is[3]}; /* input stride per output dim */
    st[d0] = is[d1];
    st[d1] = is[d0];
#pragma omp parallel for collapse(2) schedule(static) if (s[0] * s[1] * s[2] * s[3] > 65536)
    for (int64_t a = 0; a < os[0]; a++)
        for (int64_t b = 0; b < os[1]; b++)
            for (int64_t c = 0; c < os[2]; c++) {
                ct_real *dst = out + ((a * os[1] + b) * os[2] + c) * os[3];
                const ct_real *src = inp + a * st[0] + b * st[1] + c * st[2];
                for (int64_t d = 0; d < os[3]; d++) dst[d] = src[d * st[3]];
            }
}
