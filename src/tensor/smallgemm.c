/* Compiled once per instruction set for the float library (CMakeLists.txt:
 * ct_isa_<isa>, symbols suffixed _avx512 / _avx2 / _generic and chosen at
 * run time by smallgemm_dispatch.c), and plainly for the double engine of the
 * gradient checks. */
#include "tensor/smallgemm.h"

#if defined(CT_ISA_AVX512)
#define SMALL(f) f##_avx512
#elif defined(CT_ISA_AVX2)
#define SMALL(f) f##_avx2
#elif defined(CT_ISA_GENERIC)
#define SMALL(f) f##_generic
#else
#define SMALL(f) f
#endif

#include <math.h>
#include <string.h>
#include <tgmath.h>

typedef ct_real vr __attribute__((vector_size(64), aligned(sizeof(ct_real)), may_alias));

#define SMR 6 /* rows of C per micro-tile           */
#define SNV 2 /* vectors of C columns per micro-tile */

static inline void store_vec(ct_real *c, vr v, int n, ct_real beta) {
    if (n == CT_VW && beta == 0) {
        *(vr *)c = v;
    } else if (n == CT_VW) {
        *(vr *)c = v + beta * *(vr *)c;
    } else {
        ct_real tmp[64 / sizeof(ct_real)];
        memcpy(tmp, &v, sizeof v);
        for (int j = 0; j < n; j++) c[j] = tmp[j] + (beta == 0 ? 0 : beta * c[j]);
    }
}

/* One R x (nv vectors) tile; R and nv are compile-time constants at each
 * call site so the accumulators live in registers. */
static inline __attribute__((always_inline)) void tile(int R, int nv, int ncols, int K,
                                                       ct_real alpha, const ct_real *A, int lda,
                                                       const ct_real *B, int ldb, ct_real beta,
                                                       ct_real *C, int ldc) {
    vr acc[SMR][SNV];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < nv; v++) acc[r][v] = (vr){0};
    for (int k = 0; k < K; k++) {
        const ct_real *b = B + (size_t)k * ldb;
        vr b0 = *(const vr *)b, b1 = nv > 1 ? *(const vr *)(b + CT_VW) : (vr){0};
        for (int r = 0; r < R; r++) {
            ct_real a = A[(size_t)r * lda + k];
            acc[r][0] += a * b0;
            if (nv > 1) acc[r][1] += a * b1;
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < nv; v++) {
            int n = ncols - v * CT_VW;
            if (n > CT_VW) n = CT_VW;
            if (n > 0) store_vec(C + (size_t)r * ldc + v * CT_VW, alpha * acc[r][v], n, beta);
        }
}

#define ROWS_CASE(R)                                                                   \
    case R:                                                                            \
        if (nv == 2)                                                                   \
            tile(R, 2, ncols, K, alpha, Ai, lda, B + j0, ldb, beta, C + (size_t)i0 * ldc + j0, \
                 ldc);                                                                 \
        else                                                                           \
            tile(R, 1, ncols, K, alpha, Ai, lda, B + j0, ldb, beta, C + (size_t)i0 * ldc + j0, \
                 ldc);                                                                 \
        break;

void SMALL(small_gemm)(int M, int N, int K, ct_real alpha, const ct_real *A, int lda, const ct_real *B,
                int ldb, ct_real beta, ct_real *C, int ldc) {
    for (int j0 = 0; j0 < N; j0 += SNV * CT_VW) {
        int ncols = N - j0 < SNV * CT_VW ? N - j0 : SNV * CT_VW;
        int nv = ncols > CT_VW ? 2 : 1;
        for (int i0 = 0; i0 < M; i0 += SMR) {
            const ct_real *Ai = A + (size_t)i0 * lda;
            switch (M - i0 < SMR ? M - i0 : SMR) {
                ROWS_CASE(1)
                ROWS_CASE(2)
                ROWS_CASE(3)
                ROWS_CASE(4)
                ROWS_CASE(5)
                ROWS_CASE(6)
            }
        }
    }
}

void SMALL(small_pack)(ct_real *dst, const ct_real *src, int rows, int cols, int lds) {
    int ld = ct_small_ldb(cols);
    for (int r = 0; r < rows; r++) {
        memcpy(dst + (size_t)r * ld, src + (size_t)r * lds, (size_t)cols * sizeof(ct_real));
        for (int c = cols; c < ld; c++) dst[(size_t)r * ld + c] = 0;
    }
}

void SMALL(small_pack_t)(ct_real *dst, const ct_real *src, int rows, int cols, int lds) {
    int ld = ct_small_ldb(rows);
    for (int c = 0; c < cols; c++) {
        ct_real *d = dst + (size_t)c * ld;
        for (int r = 0; r < rows; r++) d[r] = src[(size_t)r * lds + c];
        for (int r = rows; r < ld; r++) d[r] = 0;
    }
}

#ifdef CT_REAL_DOUBLE
void SMALL(small_exp)(ct_real *y, const ct_real *x, int n) {
    for (int i = 0; i < n; i++) y[i] = exp(x[i]);
}
#else
typedef int32_t vi __attribute__((vector_size(64), aligned(4), may_alias));
typedef vr vf;
#include "base/isa/vexp.h"

void SMALL(small_exp)(ct_real *y, const ct_real *x, int n) {
    int i = 0;
    for (; i + CT_VW <= n; i += CT_VW) *(vr *)(y + i) = vexp(*(const vr *)(x + i));
    if (i < n) {
        ct_real tmp[CT_VW];
        int m = n - i;
        for (int j = 0; j < CT_VW; j++) tmp[j] = j < m ? x[i + j] : 0;
        vr v = vexp(*(vr *)tmp);
        memcpy(tmp, &v, sizeof v);
        for (int j = 0; j < m; j++) y[i + j] = tmp[j];
    }
}
#endif
