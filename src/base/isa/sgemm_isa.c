/* Single-precision GEMM, one instruction set per compilation: this file is
 * compiled once for AVX-512, once for AVX2 + FMA and once for the x86-64
 * baseline (SSE2), each with its own flags and symbol suffix (CMakeLists.txt:
 * ct_sgemm_isa), and src/base/gemm.c picks one at run time.
 *
 * The classic blocked scheme (Goto; BLIS's five loops): a KC x NC block of
 * op(B) packed into NR-column micro-panels, an MC x KC block of alpha op(A)
 * packed into MR-row micro-panels, and a register-resident MR x NR micro-tile
 * of C updated by broadcast-FMA over KC steps. Packing reads A and B in any
 * transposition, so the micro-kernel is the same for all four cases. Panels
 * are zero-padded at the edges; edge tiles go through a local tile.
 *
 * One call computes a whole (sub-)problem on the calling thread, in the
 * 64-byte aligned workspace it is given; gemm.c splits the work between
 * threads and keeps a workspace per thread. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include "base/isa/sgemm_isa.h"

/* Tile and block sizes per ISA (measured on Zen 5 and with the AVX2 path
 * forced; bench_gemm; CT_ISA_TUNE / CT_ISA_EXTRA_DEFS override them for
 * tuning): MR x NR accumulators fill the register file (24 of 32 zmm; 12
 * of 16 ymm), KC x NR of B is streamed per tile, MC x KC of A stays in L2. */
#if defined(CT_ISA_AVX512)
#define VW 16
#define SUFFIX(f) f##_avx512
#define MR_ 6
#define NV_ 4
#define KC_ 512
#define MC_ 72
#elif defined(CT_ISA_AVX2)
#define VW 8
#define SUFFIX(f) f##_avx2
#define MR_ 4
#define NV_ 3
#define KC_ 384
#define MC_ 96
#else
#define VW 4
#define SUFFIX(f) f##_generic
#define MR_ 6
#define NV_ 2
#define KC_ 256
#define MC_ 144
#endif
#ifndef MR
#define MR MR_
#endif
#ifndef NV
#define NV NV_
#endif
#ifndef KC
#define KC KC_
#endif
#ifndef MC
#define MC MC_
#endif
#define NR (VW * NV)
#define NC (NR * 16)

typedef float vf __attribute__((vector_size(VW * sizeof(float)), aligned(sizeof(float)),
                                may_alias));

/* alpha op(A)[m0 + i, k0 + k] for i < mc, k < kc into MR-row micro-panels
 * (k-major within a panel: dst[k * MR + r]), zero rows past mc. */
static void pack_a(float *dst, bool ta, const float *A, int lda, int m0, int mc, int k0, int kc,
                   float alpha) {
    for (int i0 = 0; i0 < mc; i0 += MR, dst += (size_t)MR * kc) {
        int mr = mc - i0 < MR ? mc - i0 : MR;
        if (!ta) {
            for (int r = 0; r < mr; r++) {
                const float *src = A + (size_t)(m0 + i0 + r) * lda + k0;
                for (int k = 0; k < kc; k++) dst[k * MR + r] = alpha * src[k];
            }
        } else {
            for (int k = 0; k < kc; k++) {
                const float *src = A + (size_t)(k0 + k) * lda + m0 + i0;
                for (int r = 0; r < mr; r++) dst[k * MR + r] = alpha * src[r];
            }
        }
        for (int r = mr; r < MR; r++)
            for (int k = 0; k < kc; k++) dst[k * MR + r] = 0;
    }
}

/* op(B)[k0 + k, n0 + j] for k < kc, j < nc into NR-column micro-panels
 * (dst[k * NR + j]), zero columns past nc. */
static void pack_b(float *dst, bool tb, const float *B, int ldb, int k0, int kc, int n0, int nc) {
    for (int j0 = 0; j0 < nc; j0 += NR, dst += (size_t)NR * kc) {
        int nr = nc - j0 < NR ? nc - j0 : NR;
        if (!tb) {
            for (int k = 0; k < kc; k++) {
                const float *src = B + (size_t)(k0 + k) * ldb + n0 + j0;
                float *d = dst + (size_t)k * NR;
                if (nr == NR) {
                    for (int v = 0; v < NV; v++) ((vf *)d)[v] = ((const vf *)src)[v];
                } else {
                    memcpy(d, src, (size_t)nr * sizeof *d);
                    memset(d + nr, 0, (size_t)(NR - nr) * sizeof *d);
                }
            }
        } else {
            /* a transpose: 16 k at a time, so the 16 destination rows stay
             * in L1 while every column j is written */
            for (int kk = 0; kk < kc; kk += 16) {
                int ke = kc - kk < 16 ? kc - kk : 16;
                for (int j = 0; j < nr; j++) {
                    const float *src = B + (size_t)(n0 + j0 + j) * ldb + k0 + kk;
                    for (int k = 0; k < ke; k++) dst[(size_t)(kk + k) * NR + j] = src[k];
                }
            }
            for (int j = nr; j < NR; j++)
                for (int k = 0; k < kc; k++) dst[(size_t)k * NR + j] = 0;
        }
    }
}

typedef int32_t vi __attribute__((vector_size(VW * sizeof(float)), aligned(sizeof(float)),
                                  may_alias));

#include "base/isa/vexp.h"

/* The activations, the same instructions here and in ct_act_<isa> (the
 * unfused path): fused and unfused results are bit-identical. */
static inline vf quick_gelu(vf y) { return y / (1.0f + vexp(y * -1.702f)); }
static inline float gelu(float y) { return 0.5f * y * (1.0f + erff(y * 0.70710678118654752f)); }

void SUFFIX(ct_act)(float *y, const float *x, size_t n, ct_epi_act act) {
    if (act == CT_EPI_GELU) {
        for (size_t i = 0; i < n; i++) y[i] = gelu(x[i]);
        return;
    }
    if (act != CT_EPI_QUICK_GELU) return;
    size_t i = 0;
    for (; i + VW <= n; i += VW) *(vf *)(y + i) = quick_gelu(*(const vf *)(x + i));
    if (i < n) {
        float t[VW] = {0};
        memcpy(t, x + i, (n - i) * sizeof *t);
        vf v = quick_gelu(*(vf *)t);
        memcpy(t, &v, sizeof t);
        memcpy(y + i, t, (n - i) * sizeof *t);
    }
}

/* The last step of a tile: c (ldc) = (acc ? c : 0) + t, then, with the
 * epilogue's operands, + bias + residual and the activation. */
static inline __attribute__((always_inline)) void store_tile(vf t[MR][NV], float *c, int ldc,
                                                             bool acc, const float *bias,
                                                             const float *res, int ldr,
                                                             ct_epi_act act) {
#pragma GCC unroll 32
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) {
            vf *dst = (vf *)(c + (size_t)r * ldc + v * VW), y = t[r][v];
            if (acc) y += *dst;
            if (bias) y += ((const vf *)bias)[v];
            if (res) y += *(const vf *)(res + (size_t)r * ldr + v * VW);
            if (act == CT_EPI_QUICK_GELU) y = quick_gelu(y);
            *dst = y;
        }
    if (act == CT_EPI_GELU) /* exact GELU (erf), on the tile while it is in L1 */
        for (int r = 0; r < MR; r++)
            for (int j = 0; j < NR; j++) c[(size_t)r * ldc + j] = gelu(c[(size_t)r * ldc + j]);
}

/* The MR x NR tile c (ldc) = (acc ? c : 0) + a-panel x b-panel over kc,
 * then, with ep (the last pass), + bias + residual and the activation. */
static inline __attribute__((always_inline)) void micro_tile(int kc, const float *a, int lda,
                                                             const float *b, float *c, int ldc,
                                                             bool acc, const float *bias,
                                                             const float *res, int ldr,
                                                             ct_epi_act act) {
    /* a: a packed micro-panel (lda 0: a[k * MR + r]) or MR rows of A read
     * in place (a[r * lda + k]) */
    const bool packed = lda == 0;
    vf t[MR][NV];
#pragma GCC unroll 32
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) t[r][v] = (vf){0};
    for (int k = 0; k < kc; k++, a += packed ? MR : 1, b += NR) {
        vf bv[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) bv[v] = ((const vf *)b)[v];
#pragma GCC unroll 32
        for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) t[r][v] += a[packed ? (size_t)r : (size_t)r * lda] * bv[v];
    }
    store_tile(t, c, ldc, acc, bias, res, ldr, act);
}

/* An edge tile (mr < MR rows or nr < NR columns) goes through zero-padded
 * local copies of C and of the epilogue's operands, with the same
 * arithmetic as a full one: edge_in fills them, edge_out copies back. */
typedef struct {
    float c[MR * NR] __attribute__((aligned(64)));
    float res[MR * NR] __attribute__((aligned(64)));
    float bias[NR] __attribute__((aligned(64)));
} edge_tile;

static void edge_in(edge_tile *e, const float *c, int ldc, int mr, int nr, bool acc,
                    const float *bias, const float *res, int ldr) {
    memset(e->c, 0, sizeof e->c);
    for (int r = 0; r < mr && acc; r++)
        memcpy(e->c + r * NR, c + (size_t)r * ldc, (size_t)nr * sizeof *c);
    if (bias) {
        memset(e->bias, 0, sizeof e->bias);
        memcpy(e->bias, bias, (size_t)nr * sizeof *bias);
    }
    if (res) {
        memset(e->res, 0, sizeof e->res);
        for (int r = 0; r < mr; r++)
            memcpy(e->res + r * NR, res + (size_t)r * ldr, (size_t)nr * sizeof *res);
    }
}

static void edge_out(float *c, int ldc, const edge_tile *e, int mr, int nr) {
    for (int r = 0; r < mr; r++) memcpy(c + (size_t)r * ldc, e->c + r * NR, (size_t)nr * sizeof *c);
}

static void micro_kernel(int kc, const float *a, int lda, const float *b, float *c, int ldc,
                         int mr, int nr, bool acc, const ct_gemm_epilogue *ep) {
    const float *bias = ep ? ep->bias : NULL, *res = ep ? ep->residual : NULL;
    ct_epi_act act = ep ? ep->act : CT_EPI_NONE;
    int ldr = ep ? ep->ldr : 0;
    if (mr == MR && nr == NR) {
        if (lda && !ep)
            micro_tile(kc, a, lda, b, c, ldc, acc, NULL, NULL, 0, CT_EPI_NONE);
        else if (lda)
            micro_tile(kc, a, lda, b, c, ldc, acc, bias, res, ldr, act);
        else if (!ep)
            micro_tile(kc, a, 0, b, c, ldc, acc, NULL, NULL, 0, CT_EPI_NONE);
        else
            micro_tile(kc, a, 0, b, c, ldc, acc, bias, res, ldr, act);
        return;
    }
    edge_tile e;
    edge_in(&e, c, ldc, mr, nr, acc, bias, res, ldr);
    micro_tile(kc, a, lda, b, e.c, NR, true, bias ? e.bias : NULL, res ? e.res : NULL, NR, act);
    edge_out(c, ldc, &e, mr, nr);
}

int SUFFIX(ct_sgemm_nr)(void) { return NR; }
int SUFFIX(ct_sgemm_mr)(void) { return MR; }
size_t SUFFIX(ct_sgemm_work)(void) { return ((size_t)MC * KC + (size_t)KC * NC) * sizeof(float); }

void SUFFIX(ct_sgemm)(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc,
                      const ct_gemm_epilogue *ep, float *work) {
    float *pa = work, *pb = work + (size_t)MC * KC;
    const bool direct = !ta && alpha == 1 && lda > 0;
    if (beta != 0 && beta != 1)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] *= beta;
    if (K == 0 && beta == 0)
        for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, (size_t)N * sizeof *C);
    if (K == 0 && ep) { /* no pass over K to carry the epilogue */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                float *y = C + (size_t)i * ldc + j;
                if (ep->bias) *y += ep->bias[j];
                if (ep->residual) *y += ep->residual[(size_t)i * ep->ldr + j];
            }
        for (int i = 0; i < M; i++) SUFFIX(ct_act)(C + (size_t)i * ldc, C + (size_t)i * ldc, N, ep->act);
    }
    for (int n0 = 0; n0 < N; n0 += NC) {
        int nc = N - n0 < NC ? N - n0 : NC;
        for (int k0 = 0; k0 < K; k0 += KC) {
            int kc = K - k0 < KC ? K - k0 : KC;
            bool acc = k0 > 0 || beta != 0;
            const ct_gemm_epilogue *last = k0 + kc >= K ? ep : NULL;
            pack_b(pb, tb, B, ldb, k0, kc, n0, nc);
            for (int m0 = 0; m0 < M; m0 += MC) {
                int mc = M - m0 < MC ? M - m0 : MC;
                /* A row-major and unscaled: full micro-panels are read in
                 * place (no packing pass); only a ragged last one is packed */
                if (!direct) pack_a(pa, ta, A, lda, m0, mc, k0, kc, alpha);
                for (int j0 = 0; j0 < nc; j0 += NR) {
                    int nr = nc - j0 < NR ? nc - j0 : NR;
                    const float *b = pb + (size_t)j0 * kc;
                    for (int i0 = 0; i0 < mc; i0 += MR) {
                        int mr = mc - i0 < MR ? mc - i0 : MR;
                        ct_gemm_epilogue e;
                        if (last) { /* the epilogue's operands at this tile */
                            e = *last;
                            if (e.bias) e.bias += n0 + j0;
                            if (e.residual) e.residual += (size_t)(m0 + i0) * e.ldr + n0 + j0;
                        }
                        const float *ap = pa + (size_t)i0 * kc;
                        int ald = 0;
                        if (direct && mr == MR) {
                            ap = A + (size_t)(m0 + i0) * lda + k0, ald = lda;
                        } else if (direct && j0 == 0) {
                            pack_a(pa + (size_t)i0 * kc, false, A, lda, m0 + i0, mr, k0, kc, 1);
                        }
                        micro_kernel(kc, ap, ald, b, C + (size_t)(m0 + i0) * ldc + n0 + j0, ldc,
                                     mr, nr, acc, last ? &e : NULL);
                    }
                }
            }
        }
    }
}

#if defined(CT_ISA_AVX512) && defined(__x86_64__)
/* ---- bf16 weights (AVX512_BF16) ----
 * C = A Wᵀ (+ the epilogue) for a weight W (N x K) stored once as bf16 in
 * the layout ct_wpack_bf16 (gemm.c) writes: per block of CT_BF16_KC values
 * of k, per NR-column panel, per pair of k, the panel's NR columns as
 * 32-bit words (bf16 of k even, k odd); word (k0 / 2) * npad + panel * NR *
 * kcp + p * NR + n. A is rounded to bf16 (nearest even) as it is packed,
 * the pairs are multiplied and summed in fp32 by VDPBF16PS (twice the
 * products of an FMA), and the epilogue is the fp32 kernel's. Compiled in
 * the AVX-512 build only, the bf16 functions with their own target. */
#include <immintrin.h>

#define BF16_FN __attribute__((target("avx512bf16")))
#define BF16_MC 384 /* rows of A converted per block: 384 x 512 bf16 in L2 */
_Static_assert(NR == CT_BF16_NR, "the bf16 layout's panels are the kernel's NR columns");

/* rows [m0, m0 + mc) x k [k0, k0 + kc) of A into MR-row panels of bf16
 * pairs, row by row (dst[r * kcp + p], kcp pairs per row), zero past mc
 * and kc: a straight conversion, the kernel reads the MR rows in place */
BF16_FN static void pack_a_bf16(uint32_t *dst, const float *A, int lda, int m0, int mc, int k0,
                                int kc) {
    int kcp = (kc + 1) / 2, rows = (mc + MR - 1) / MR * MR;
    for (int i = 0; i < rows; i++, dst += kcp) {
        if (i >= mc) {
            memset(dst, 0, (size_t)kcp * sizeof *dst);
            continue;
        }
        const float *src = A + (size_t)(m0 + i) * lda + k0;
        for (int q = 0; q < kc; q += 32) {
            int n = kc - q < 32 ? kc - q : 32;
            __mmask16 lo = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
            __mmask16 hi = n >= 32 ? 0xffff : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
            __m512bh h = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, src + q + 16),
                                             _mm512_maskz_loadu_ps(lo, src + q));
            _mm512_mask_storeu_epi32(dst + q / 2, n >= 32 ? 0xffff : (__mmask16)((1u << ((n + 1) / 2)) - 1),
                                     (__m512i)h);
        }
    }
}

BF16_FN static inline __attribute__((always_inline)) void bf16_tile(
    int kcp, const uint32_t *a, const uint32_t *b, float *c, int ldc, bool acc,
    const float *bias, const float *res, int ldr, ct_epi_act act) {
    vf t[MR][NV];
#pragma GCC unroll 32
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) t[r][v] = (vf){0};
    for (int p = 0; p < kcp; p++, a++, b += NR) {
        __m512bh bv[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) bv[v] = (__m512bh)_mm512_loadu_si512(b + v * VW);
#pragma GCC unroll 32
        for (int r = 0; r < MR; r++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[(size_t)r * kcp]);
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) t[r][v] = (vf)_mm512_dpbf16_ps((__m512)t[r][v], av, bv[v]);
        }
    }
    store_tile(t, c, ldc, acc, bias, res, ldr, act);
}

BF16_FN static void bf16_kernel(int kcp, const uint32_t *a, const uint32_t *b, float *c, int ldc,
                                int mr, int nr, bool acc, const ct_gemm_epilogue *ep) {
    const float *bias = ep ? ep->bias : NULL, *res = ep ? ep->residual : NULL;
    ct_epi_act act = ep ? ep->act : CT_EPI_NONE;
    int ldr = ep ? ep->ldr : 0;
    if (mr == MR && nr == NR) {
        if (!ep)
            bf16_tile(kcp, a, b, c, ldc, acc, NULL, NULL, 0, CT_EPI_NONE);
        else
            bf16_tile(kcp, a, b, c, ldc, acc, bias, res, ldr, act);
        return;
    }
    edge_tile e;
    edge_in(&e, c, ldc, mr, nr, acc, bias, res, ldr);
    bf16_tile(kcp, a, b, e.c, NR, true, bias ? e.bias : NULL, res ? e.res : NULL, NR, act);
    edge_out(c, ldc, &e, mr, nr);
}

size_t ct_bgemm_work_avx512(void) {
    return (size_t)(BF16_MC + MR) * (CT_BF16_KC / 2) * sizeof(uint32_t);
}

BF16_FN void ct_bgemm_avx512(int M, int N, int K, const float *A, int lda, const uint32_t *W,
                             int npad, int panel0, float *C, int ldc, const ct_gemm_epilogue *ep,
                             void *work) {
    uint32_t *pa = work;
    for (int k0 = 0; k0 < K; k0 += CT_BF16_KC) {
        int kc = K - k0 < CT_BF16_KC ? K - k0 : CT_BF16_KC, kcp = (kc + 1) / 2;
        const ct_gemm_epilogue *last = k0 + kc >= K ? ep : NULL;
        const uint32_t *wk = W + (size_t)(k0 / 2) * npad;
        for (int m0 = 0; m0 < M; m0 += BF16_MC) {
            int mc = M - m0 < BF16_MC ? M - m0 : BF16_MC;
            pack_a_bf16(pa, A, lda, m0, mc, k0, kc);
            for (int j0 = 0; j0 < N; j0 += NR) {
                int nr = N - j0 < NR ? N - j0 : NR;
                const uint32_t *b = wk + (size_t)(panel0 + j0 / NR) * NR * kcp;
                for (int i0 = 0; i0 < mc; i0 += MR) {
                    int mr = mc - i0 < MR ? mc - i0 : MR;
                    ct_gemm_epilogue e;
                    if (last) {
                        e = *last;
                        if (e.bias) e.bias += j0;
                        if (e.residual) e.residual += (size_t)(m0 + i0) * e.ldr + j0;
                    }
                    bf16_kernel(kcp, pa + (size_t)i0 * kcp, b, C + (size_t)(m0 + i0) * ldc + j0,
                                ldc, mr, nr, k0 > 0, last ? &e : NULL);
                }
            }
        }
    }
}
#endif
