/* Multinomial logistic regression (the linear probe); objective and protocol
 * are described in logreg.h.
 *
 * Layout. Features are copied once per fit into double, zero-padded from d
 * to dp columns (a multiple of the tile width PW). The optimiser's variable
 * is [W (K, dp) | b (K)]; the padding columns of W have zero gradient, so
 * they stay exactly 0 from the zero start and change neither f nor the
 * gradient's inf-norm.
 *
 * Determinism. Each logit is one dot product summed over j in order, each
 * gradient entry one sum over samples in order (partial sums of a chunk are
 * stored and reloaded, which is exact), and the loss is summed over samples
 * in order. Threads only decide who computes which entries, never how, so the
 * result is the same bit for bit for any thread count. This needs no
 * per-thread partial gradients: the forward pass splits samples, the
 * backward pass splits classes (llm.c's dinp-over-rows, dweight-over-output-
 * channels split). */
#include "train/logreg.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

/* Register tiles: MR rows of the output times two vectors. MR * 2
 * accumulators + 2 loads + 1 broadcast fit the 16 AVX2 registers. The loops
 * over rows carry "GCC unroll": at -O2 GCC otherwise keeps them rolled and
 * the accumulators in memory (measured ~3x slower). */
#ifdef __AVX512F__
#define VW 8
#else
#define VW 4
#endif
#define PW (2 * VW) /* classes per forward panel, feature columns per backward tile */
#define MR 6        /* samples per forward tile, classes per backward tile */
#define SB 96       /* samples per forward task                               */
#define GP 4        /* panels kept hot in cache while a task sweeps its samples */
#define IB 64       /* samples per backward chunk (X chunk stays in L2)        */

typedef double vd __attribute__((vector_size(VW * sizeof(double)), aligned(sizeof(double)),
                                 may_alias));

/* The tiles need AVX2's 16 ymm registers (on the x86-64 baseline the 4-wide
 * vectors split into SSE halves that spill: measured 15x slower): in a
 * portable build the tile functions also get an AVX2 + FMA clone, chosen at
 * load time by the CPU (GCC's function multiversioning). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__AVX2__)
#define TILE_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define TILE_CLONES
#endif

/* The data of one problem plus the scratch its objective needs, allocated
 * once and reused by every fit on the same data (the C search). */
typedef struct lr_prob {
    const int *y;  /* (n)                                                  */
    int64_t n;
    int d, dp, K, Kp;
    int nthreads;
    double inv_C;
    double *X;     /* (n, dp): features, zero-padded                       */
    double *panel; /* (Kp / PW, dp, PW): W^T in panels of PW classes        */
    double *G;     /* (n, Kp): logits, then softmax - onehot                 */
    double *loss;  /* (n): per-sample cross-entropy                          */
} lr_prob;

static void prob_free(lr_prob *P) {
    free(P->X);
    free(P->panel);
    free(P->G);
    free(P->loss);
    memset(P, 0, sizeof *P);
}

static void *alloc_doubles(size_t a, size_t b, size_t *bytes) {
    size_t n;
    if (!ct_mul_size(a, b, &n) || !ct_mul_size(n, sizeof(double), &n)) return NULL;
    /* Round up so aligned_alloc's size-multiple rule holds. */
    n = (n + 63) / 64 * 64;
    *bytes = n;
    return n ? aligned_alloc(64, n) : NULL;
}

static ct_status check_dims(const char *who, int64_t n, int d, int K) {
    if (K < 2)
        return ct_set_error(CT_ERR_ARG, "%s: %d class%s: a classifier needs at least two", who, K,
                            K == 1 ? "" : "es");
    if (n <= 0) return ct_set_error(CT_ERR_ARG, "%s: no training example", who);
    if (d <= 0) return ct_set_error(CT_ERR_ARG, "%s: features of dimension %d", who, d);
    return CT_OK;
}

/* Validate and copy (X, y) into P. */
static ct_status prob_init(lr_prob *P, const char *who, const float *X, const int *y, int64_t n,
                           int d, int K) {
    memset(P, 0, sizeof *P);
    ct_status st = check_dims(who, n, d, K);
    if (st) return st;
    if (!X || !y) return ct_set_error(CT_ERR_ARG, "%s: X and y must not be NULL", who);
    for (int64_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= K)
            return ct_set_error(CT_ERR_ARG, "%s: label y[%lld] = %d outside [0, %d)", who,
                                (long long)i, y[i], K);
    int dp = (d + PW - 1) / PW * PW, Kp = (K + PW - 1) / PW * PW;
    if (dp < d || Kp < K || (int64_t)K * (dp + 1) > INT_MAX)
        return ct_set_error(CT_ERR_ARG, "%s: d = %d, K = %d: too many parameters", who, d, K);
    P->y = y;
    P->n = n;
    P->d = d;
    P->dp = dp;
    P->K = K;
    P->Kp = Kp;
    P->nthreads = ct_get_num_threads();
    size_t bytes = 0;
    if (!(P->X = alloc_doubles((size_t)n, (size_t)dp, &bytes)) ||
        !(P->panel = alloc_doubles((size_t)Kp, (size_t)dp, &bytes)) ||
        !(P->G = alloc_doubles((size_t)n, (size_t)Kp, &bytes)) ||
        !(P->loss = alloc_doubles((size_t)n, 1, &bytes))) {
        prob_free(P);
        return ct_set_error(CT_ERR_NOMEM, "%s: cannot allocate work space for n = %lld, d = %d, "
                                          "K = %d", who, (long long)n, d, K);
    }
    int64_t bad = -1;
#pragma omp parallel for schedule(static) reduction(max : bad)
    for (int64_t i = 0; i < n; i++) {
        const float *src = X + i * d;
        double *dst = P->X + i * dp;
        for (int j = 0; j < d; j++) {
            if (!isfinite(src[j]) && bad < i * d + j) bad = i * d + j;
            dst[j] = src[j];
        }
        for (int j = d; j < dp; j++) dst[j] = 0;
    }
    if (bad >= 0) {
        prob_free(P);
        return ct_set_error(CT_ERR_ARG, "%s: feature X[%lld, %d] is not finite", who,
                            (long long)(bad / d), (int)(bad % d));
    }
    return CT_OK;
}

/* ---- forward: logits -------------------------------------------------------- */

/* Z[r][0..PW) = sum_j X[r][j] * pan[j][0..PW) for r < R (R constant at each
 * call site, so the accumulators live in registers). */
static inline __attribute__((always_inline)) void fwd_tile(int R, int dp, const double *X,
                                                           const double *pan, double *Z,
                                                           int64_t ldz) {
    vd acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = (vd){0};
    for (int j = 0; j < dp; j++) {
        vd p0 = *(const vd *)(pan + (size_t)j * PW), p1 = *(const vd *)(pan + (size_t)j * PW + VW);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            double xv = X[(size_t)r * dp + j];
            acc[r][0] += xv * p0;
            acc[r][1] += xv * p1;
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        *(vd *)(Z + r * ldz) = acc[r][0];
        *(vd *)(Z + r * ldz + VW) = acc[r][1];
    }
}

TILE_CLONES static void fwd_tile_any(int R, int dp, const double *X, const double *pan, double *Z,
                         int64_t ldz) {
    switch (R) {
    case 1: fwd_tile(1, dp, X, pan, Z, ldz); break;
    case 2: fwd_tile(2, dp, X, pan, Z, ldz); break;
    case 3: fwd_tile(3, dp, X, pan, Z, ldz); break;
    case 4: fwd_tile(4, dp, X, pan, Z, ldz); break;
    case 5: fwd_tile(5, dp, X, pan, Z, ldz); break;
    default: fwd_tile(MR, dp, X, pan, Z, ldz); break;
    }
}

/* Softmax cross-entropy of one row: z (Kp) holds W x (no bias) on entry and
 * p - onehot(y) on exit (0 in the padding); returns CE. */
static double softmax_row(double *z, const double *b, int K, int Kp, int y) {
    double mx = -INFINITY;
    for (int k = 0; k < K; k++) {
        z[k] += b[k];
        if (z[k] > mx) mx = z[k];
    }
    double zy = z[y], s = 0;
    for (int k = 0; k < K; k++) {
        z[k] = exp(z[k] - mx);
        s += z[k];
    }
    double inv = 1.0 / s;
    for (int k = 0; k < K; k++) z[k] *= inv;
    z[y] -= 1.0;
    for (int k = K; k < Kp; k++) z[k] = 0;
    return mx + log(s) - zy;
}

/* G = X W^T (+ softmax and per-sample loss when with_loss). */
static void forward(lr_prob *P, const double *W, const double *b, bool with_loss) {
    int dp = P->dp, K = P->K, Kp = P->Kp, npan = Kp / PW;
    int64_t n = P->n;
    bool par = (double)n * Kp * dp > 1e6;
#pragma omp parallel for schedule(static) if (par)
    for (int pb = 0; pb < npan; pb++) {
        double *pan = P->panel + (size_t)pb * dp * PW;
        for (int j = 0; j < dp; j++)
            for (int c = 0; c < PW; c++) {
                int k = pb * PW + c;
                pan[(size_t)j * PW + c] = k < K ? W[(size_t)k * dp + j] : 0;
            }
    }
    int64_t nblk = (n + SB - 1) / SB;
#pragma omp parallel for schedule(dynamic, 1) if (par)
    for (int64_t blk = 0; blk < nblk; blk++) {
        int64_t i0 = blk * SB, i1 = i0 + SB < n ? i0 + SB : n;
        for (int g0 = 0; g0 < npan; g0 += GP) {
            int g1 = g0 + GP < npan ? g0 + GP : npan;
            for (int64_t i = i0; i < i1; i += MR) {
                int R = i1 - i < MR ? (int)(i1 - i) : MR;
                for (int pb = g0; pb < g1; pb++)
                    fwd_tile_any(R, dp, P->X + i * dp, P->panel + (size_t)pb * dp * PW,
                                 P->G + i * Kp + pb * PW, Kp);
            }
        }
        if (with_loss)
            for (int64_t i = i0; i < i1; i++)
                P->loss[i] = softmax_row(P->G + i * Kp, b, K, Kp, P->y[i]);
    }
}

/* ---- backward: gradient ------------------------------------------------------ */

/* gW[r][j0..j0+PW) += sum_{i in [i0, i1)} G[i][k0 + r] * X[i][j0..j0+PW), r < R;
 * gW and G point at class k0's row/column. */
static inline __attribute__((always_inline)) void bwd_tile(int R, int64_t i0, int64_t i1, int dp,
                                                           const double *X, const double *G,
                                                           int64_t ldg, double *gW) {
    vd acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        acc[r][0] = *(const vd *)(gW + (size_t)r * dp);
        acc[r][1] = *(const vd *)(gW + (size_t)r * dp + VW);
    }
    for (int64_t i = i0; i < i1; i++) {
        vd x0 = *(const vd *)(X + i * dp), x1 = *(const vd *)(X + i * dp + VW);
        const double *g = G + i * ldg;
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            acc[r][0] += g[r] * x0;
            acc[r][1] += g[r] * x1;
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        *(vd *)(gW + (size_t)r * dp) = acc[r][0];
        *(vd *)(gW + (size_t)r * dp + VW) = acc[r][1];
    }
}

TILE_CLONES static void bwd_tile_any(int R, int64_t i0, int64_t i1, int dp, const double *X, const double *G,
                         int64_t ldg, double *gW) {
    switch (R) {
    case 1: bwd_tile(1, i0, i1, dp, X, G, ldg, gW); break;
    case 2: bwd_tile(2, i0, i1, dp, X, G, ldg, gW); break;
    case 3: bwd_tile(3, i0, i1, dp, X, G, ldg, gW); break;
    case 4: bwd_tile(4, i0, i1, dp, X, G, ldg, gW); break;
    case 5: bwd_tile(5, i0, i1, dp, X, G, ldg, gW); break;
    default: bwd_tile(MR, i0, i1, dp, X, G, ldg, gW); break;
    }
}

/* gW (K, dp) = G^T X + W / C, gb (K) = column sums of G. */
static void backward(lr_prob *P, const double *W, double *gW, double *gb) {
    int dp = P->dp, K = P->K, Kp = P->Kp;
    int64_t n = P->n;
    int ntiles = (K + MR - 1) / MR;
    /* One task per thread: every task streams all of X (n, dp) from memory,
     * chunk by chunk, and reuses each chunk from L2 for all its tiles, so X
     * traffic is nthreads * |X| per evaluation. Only speed depends on this
     * split, never the sums. */
    int per = (ntiles + P->nthreads - 1) / P->nthreads;
    int ntasks = (ntiles + per - 1) / per;
    bool par = (double)n * Kp * dp > 1e6;
#pragma omp parallel for schedule(static, 1) if (par)
    for (int task = 0; task < ntasks; task++) {
        int t0 = task * per, t1 = t0 + per < ntiles ? t0 + per : ntiles;
        int k0 = t0 * MR, k1 = t1 * MR < K ? t1 * MR : K;
        memset(gW + (size_t)k0 * dp, 0, (size_t)(k1 - k0) * dp * sizeof *gW);
        for (int k = k0; k < k1; k++) gb[k] = 0;
        for (int64_t i0 = 0; i0 < n; i0 += IB) {
            int64_t i1 = i0 + IB < n ? i0 + IB : n;
            for (int t = t0; t < t1; t++) {
                int kt = t * MR, R = K - kt < MR ? K - kt : MR;
                for (int j0 = 0; j0 < dp; j0 += PW)
                    bwd_tile_any(R, i0, i1, dp, P->X + j0, P->G + kt, Kp,
                                 gW + (size_t)kt * dp + j0);
                for (int64_t i = i0; i < i1; i++)
                    for (int r = 0; r < R; r++) gb[kt + r] += P->G[i * Kp + kt + r];
            }
        }
        for (size_t e = (size_t)k0 * dp; e < (size_t)k1 * dp; e++) gW[e] += P->inv_C * W[e];
    }
}

/* The ct_lbfgs_fn: x = [W (K, dp) | b (K)]. */
static double objective(const double *x, double *grad, int nparam, void *ctx) {
    lr_prob *P = ctx;
    size_t nw = (size_t)P->K * P->dp;
    const double *W = x, *b = x + nw;
    forward(P, W, b, true);
    double f = 0, reg = 0;
    for (int64_t i = 0; i < P->n; i++) f += P->loss[i];
    for (size_t e = 0; e < nw; e++) reg += W[e] * W[e];
    f += 0.5 * P->inv_C * reg;
    backward(P, W, grad, grad + nw);
    return f;
}

/* ---- fitting ----------------------------------------------------------------- */

ct_lbfgs_params ct_logreg_default_params(int max_iter) {
    ct_lbfgs_params p = ct_lbfgs_default_params();
    p.gtol = 1e-4; /* LogisticRegression(tol=1e-4), passed to scipy as gtol */
    p.max_iter = max_iter;
    return p;
}

static ct_status check_C(const char *who, double C) {
    if (!(C > 0) || !isfinite(C))
        return ct_set_error(CT_ERR_ARG, "%s: C = %g, expected a finite value > 0", who, C);
    return CT_OK;
}

/* Fit on a prepared problem from zero; out receives unpadded W and b. */
static ct_status fit_prob(lr_prob *P, double C, const ct_lbfgs_params *p, ct_logreg *out) {
    int d = P->d, dp = P->dp, K = P->K, nparam = K * (dp + 1);
    double *x = calloc((size_t)nparam, sizeof *x);
    double *W = malloc((size_t)K * d * sizeof *W), *b = malloc((size_t)K * sizeof *b);
    if (!x || !W || !b) {
        free(x);
        free(W);
        free(b);
        return ct_set_error(CT_ERR_NOMEM, "logreg: cannot allocate %d parameters", nparam);
    }
    P->inv_C = 1.0 / C;
    int iters = 0;
    double fx = 0;
    ct_status st = ct_lbfgs_minimize(objective, x, nparam, p, P, &iters, &fx);
    if (st) {
        free(x);
        free(W);
        free(b);
        return st;
    }
    for (int k = 0; k < K; k++) memcpy(W + (size_t)k * d, x + (size_t)k * dp, d * sizeof *W);
    memcpy(b, x + (size_t)K * dp, K * sizeof *b);
    free(x);
    *out = (ct_logreg){.d = d, .K = K, .W = W, .b = b, .n_iter = iters, .loss = fx};
    return CT_OK;
}

ct_status ct_logreg_fit_ex(const float *X, const int *y, int64_t n, int d, int K, double C,
                           const ct_lbfgs_params *p, ct_logreg *out) {
    if (!out) return ct_set_error(CT_ERR_ARG, "logreg_fit: out must not be NULL");
    *out = (ct_logreg){0};
    ct_status st = check_C("logreg_fit", C);
    if (st) return st;
    ct_lbfgs_params dflt = ct_logreg_default_params(1000);
    lr_prob P;
    if ((st = prob_init(&P, "logreg_fit", X, y, n, d, K))) return st;
    st = fit_prob(&P, C, p ? p : &dflt, out);
    prob_free(&P);
    return st;
}

ct_status ct_logreg_fit(const float *X, const int *y, int64_t n, int d, int K, double C,
                        int max_iter, ct_logreg *out) {
    ct_lbfgs_params p = ct_logreg_default_params(max_iter);
    return ct_logreg_fit_ex(X, y, n, d, K, C, &p, out);
}

ct_status ct_logreg_objective(const float *X, const int *y, int64_t n, int d, int K, double C,
                              const double *W, const double *b, double *f, double *gW,
                              double *gb) {
    ct_status st = check_C("logreg_objective", C);
    if (st) return st;
    if (!W || !b || !f)
        return ct_set_error(CT_ERR_ARG, "logreg_objective: W, b and f must not be NULL");
    lr_prob P;
    if ((st = prob_init(&P, "logreg_objective", X, y, n, d, K))) return st;
    int dp = P.dp, nparam = K * (dp + 1);
    double *x = calloc((size_t)nparam, sizeof *x), *g = malloc((size_t)nparam * sizeof *g);
    if (!x || !g) {
        free(x);
        free(g);
        prob_free(&P);
        return ct_set_error(CT_ERR_NOMEM, "logreg_objective: cannot allocate %d parameters",
                            nparam);
    }
    for (int k = 0; k < K; k++) memcpy(x + (size_t)k * dp, W + (size_t)k * d, d * sizeof *x);
    memcpy(x + (size_t)K * dp, b, K * sizeof *x);
    P.inv_C = 1.0 / C;
    *f = objective(x, g, nparam, &P);
    if (gW)
        for (int k = 0; k < K; k++) memcpy(gW + (size_t)k * d, g + (size_t)k * dp, d * sizeof *g);
    if (gb) memcpy(gb, g + (size_t)K * dp, K * sizeof *g);
    free(x);
    free(g);
    prob_free(&P);
    return CT_OK;
}

void ct_logreg_scores(const ct_logreg *m, const float *X, int64_t n, float *scores) {
    if (!m || !m->W || !X || !scores || n <= 0) return;
    int d = m->d, K = m->K;
#pragma omp parallel for schedule(static) if ((double)n * K * d > 1e6)
    for (int64_t i = 0; i < n; i++) {
        const float *x = X + i * d;
        for (int k = 0; k < K; k++) {
            const double *w = m->W + (size_t)k * d;
            double s = 0;
#pragma omp simd reduction(+ : s)
            for (int j = 0; j < d; j++) s += (double)x[j] * w[j];
            scores[i * K + k] = (float)(s + m->b[k]);
        }
    }
}

void ct_logreg_free(ct_logreg *m) {
    if (!m) return;
    free(m->W);
    free(m->b);
    *m = (ct_logreg){0};
}

/* ---- the C search ------------------------------------------------------------- */

/* Correct validation predictions (argmax of the double logits, ties to the
 * lower class, as sklearn's predict) of the model in x. */
static int64_t val_correct(lr_prob *V, const double *x) {
    const double *b = x + (size_t)V->K * V->dp;
    forward(V, x, b, false);
    int64_t correct = 0;
    for (int64_t i = 0; i < V->n; i++) {
        const double *z = V->G + i * V->Kp;
        int best = 0;
        double bz = z[0] + b[0];
        for (int k = 1; k < V->K; k++)
            if (z[k] + b[k] > bz) {
                bz = z[k] + b[k];
                best = k;
            }
        correct += best == V->y[i];
    }
    return correct;
}

/* One fit of the search: validation correct count for C, remembered so that
 * a C the binary search revisits (an end of the previous interval, rebuilt
 * through 10^log10(C), equal up to an ulp or two) is not fitted again;
 * *C_fitted is the C actually fitted for that count. */
typedef struct search_memo {
    double C[32];
    int64_t correct[32];
    int n;
} search_memo;

static ct_status search_eval(lr_prob *T, lr_prob *V, search_memo *memo, double C,
                             const ct_lbfgs_params *p, int64_t *correct, double *C_fitted) {
    for (int i = 0; i < memo->n; i++)
        if (fabs(memo->C[i] - C) <= 4 * 2.220446049250313e-16 * C) {
            *correct = memo->correct[i];
            *C_fitted = memo->C[i];
            return CT_OK;
        }
    *C_fitted = C;
    ct_status st = check_C("logreg_search", C);
    if (st) return st;
    ct_logreg m;
    if ((st = fit_prob(T, C, p, &m))) return st;
    /* Score through the padded layout the forward kernel expects. */
    int dp = V->dp, K = V->K, d = V->d;
    double *x = calloc((size_t)K * (dp + 1), sizeof *x);
    if (!x) {
        ct_logreg_free(&m);
        return ct_set_error(CT_ERR_NOMEM, "logreg_search: cannot allocate the model");
    }
    for (int k = 0; k < K; k++) memcpy(x + (size_t)k * dp, m.W + (size_t)k * d, d * sizeof *x);
    memcpy(x + (size_t)K * dp, m.b, K * sizeof *x);
    *correct = val_correct(V, x);
    free(x);
    ct_logreg_free(&m);
    if (memo->n < 32) {
        memo->C[memo->n] = C;
        memo->correct[memo->n++] = *correct;
    }
    return CT_OK;
}

/* Follows KaiyangZhou/CoOp lpclip/linear_probe.py step for step: the initial
 * list and its first argmax, the (0.1 c, 10 c) start, "acc_left < acc_right"
 * (ties go left), the new interval from the log10 midpoint, num_step = 8, and
 * the final classifier being the last step's winner. Accuracies are compared
 * as counts (same order as linear_probe.py's fractions). */
ct_status ct_logreg_search(const float *Xtr, const int *ytr, int64_t ntr, const float *Xval,
                           const int *yval, int64_t nval, int d, int K, ct_logreg *best,
                           double *best_C, double *best_val_acc) {
    if (!best) return ct_set_error(CT_ERR_ARG, "logreg_search: best must not be NULL");
    *best = (ct_logreg){0};
    static const double init[] = {1e6, 1e4, 1e2, 1, 1e-2, 1e-4, 1e-6};
    const int n_init = (int)(sizeof init / sizeof init[0]), num_step = 8;
    const ct_lbfgs_params p = ct_logreg_default_params(1000);
    lr_prob T, V;
    ct_status st = prob_init(&T, "linear probe: the training split", Xtr, ytr, ntr, d, K);
    if (st) return st;
    if ((st = prob_init(&V, "linear probe: the validation split", Xval, yval, nval, d, K))) {
        prob_free(&T);
        return st;
    }
    search_memo memo = {.n = 0};
    int64_t acc = 0, peak_acc = -1;
    double c_peak = init[0];
    for (int i = 0; i < n_init; i++) {
        double c_fit;
        if ((st = search_eval(&T, &V, &memo, init[i], &p, &acc, &c_fit))) goto done;
        if (acc > peak_acc) { /* np.argmax: first maximum */
            peak_acc = acc;
            c_peak = init[i];
        }
    }
    double c_left = 1e-1 * c_peak, c_right = 1e1 * c_peak, c_final = c_peak;
    int64_t acc_final = peak_acc;
    for (int step = 0; step < num_step; step++) {
        int64_t acc_left, acc_right;
        double fit_left, fit_right;
        if ((st = search_eval(&T, &V, &memo, c_left, &p, &acc_left, &fit_left))) goto done;
        if ((st = search_eval(&T, &V, &memo, c_right, &p, &acc_right, &fit_right))) goto done;
        /* The interval arithmetic uses linear_probe.py's own values; the
         * winner is reported as the C that was fitted. */
        double lo, hi;
        if (acc_left < acc_right) {
            c_final = fit_right;
            acc_final = acc_right;
            lo = 0.5 * (log10(c_right) + log10(c_left));
            hi = log10(c_right);
        } else {
            c_final = fit_left;
            acc_final = acc_left;
            hi = 0.5 * (log10(c_right) + log10(c_left));
            lo = log10(c_left);
        }
        c_left = pow(10.0, lo);
        c_right = pow(10.0, hi);
    }
    /* The search kept only accuracies: refit the winner (same data, same
     * start, same C, deterministic: the very model the search scored). */
    if ((st = fit_prob(&T, c_final, &p, best))) goto done;
    if (best_C) *best_C = c_final;
    if (best_val_acc) *best_val_acc = (double)acc_final / (double)nval;
done:
    prob_free(&T);
    prob_free(&V);
    return st;
}
