/* Softmax family and the losses built on it. Losses reduce in double so the
 * mean does not depend on row order or thread count beyond rounding. */
#include <math.h>
#include <tgmath.h>

#include "tensor/kernels.h"

#define PAR(N, K) if ((N) * (K) > 16384)

/* max and log-sum-exp of one row */
static ct_real row_lse(const ct_real *x, int64_t K) {
    ct_real mx = -INFINITY;
    for (int64_t k = 0; k < K; k++) mx = x[k] > mx ? x[k] : mx;
    ct_real s = 0;
    for (int64_t k = 0; k < K; k++) s += exp(x[k] - mx);
    return mx + log(s);
}

void softmax_forward(ct_real *out, const ct_real *inp, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) PAR(N, C)
    for (int64_t n = 0; n < N; n++) {
        const ct_real *x = inp + n * C;
        ct_real *y = out + n * C, mx = -INFINITY, s = 0;
        for (int64_t c = 0; c < C; c++) mx = x[c] > mx ? x[c] : mx;
        for (int64_t c = 0; c < C; c++) s += (y[c] = exp(x[c] - mx));
        for (int64_t c = 0; c < C; c++) y[c] /= s;
    }
}

void softmax_backward(ct_real *dinp, const ct_real *dout, const ct_real *out, int64_t N,
                      int64_t C) {
#pragma omp parallel for schedule(static) PAR(N, C)
    for (int64_t n = 0; n < N; n++) {
        const ct_real *y = out + n * C, *d = dout + n * C;
        ct_real dot = 0;
        for (int64_t c = 0; c < C; c++) dot += d[c] * y[c];
        for (int64_t c = 0; c < C; c++) dinp[n * C + c] += y[c] * (d[c] - dot);
    }
}

void log_softmax_forward(ct_real *out, const ct_real *inp, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) PAR(N, C)
    for (int64_t n = 0; n < N; n++) {
        ct_real lse = row_lse(inp + n * C, C);
        for (int64_t c = 0; c < C; c++) out[n * C + c] = inp[n * C + c] - lse;
    }
}

void log_softmax_backward(ct_real *dinp, const ct_real *dout, const ct_real *out, int64_t N,
                          int64_t C) {
#pragma omp parallel for schedule(static) PAR(N, C)
    for (int64_t n = 0; n < N; n++) {
        const ct_real *y = out + n * C, *d = dout + n * C;
        ct_real s = 0;
        for (int64_t c = 0; c < C; c++) s += d[c];
        for (int64_t c = 0; c < C; c++) dinp[n * C + c] += d[c] - exp(y[c]) * s;
    }
}

void cross_entropy_forward(ct_real *loss, ct_real *probs, const ct_real *logits,
                           const int64_t *labels, int64_t N, int64_t K, ct_real ls) {
    double total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total) PAR(N, K)
    for (int64_t n = 0; n < N; n++) {
        const ct_real *x = logits + n * K;
        ct_real lse = row_lse(x, K), sum_logp = 0;
        for (int64_t k = 0; k < K; k++) {
            ct_real lp = x[k] - lse;
            probs[n * K + k] = exp(lp);
            sum_logp += lp;
        }
        /* target = (1 - ls) onehot + ls / K */
        ct_real nll = -(x[labels[n]] - lse);
        total += (double)((1 - ls) * nll - ls / (ct_real)K * sum_logp);
    }
    *loss = (ct_real)(N ? total / (double)N : 0);
}

void cross_entropy_backward(ct_real *dlogits, ct_real dloss, const ct_real *probs,
                            const int64_t *labels, int64_t N, int64_t K, ct_real ls) {
    ct_real s = N ? dloss / (ct_real)N : 0, u = ls / (ct_real)K;
#pragma omp parallel for schedule(static) PAR(N, K)
    for (int64_t n = 0; n < N; n++) {
        for (int64_t k = 0; k < K; k++) {
            ct_real t = u + (k == labels[n] ? 1 - ls : 0);
            dlogits[n * K + k] += s * (probs[n * K + k] - t);
        }
    }
}

void bce_logits_forward(ct_real *loss, const ct_real *x, const ct_real *t, int64_t n) {
    double total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (n > 16384)
    for (int64_t i = 0; i < n; i++) {
        ct_real v = x[i];
        /* max(v, 0) - v t + log(1 + exp(-|v|)): stable for large |v| */
        total += (double)((v > 0 ? v : 0) - v * t[i] + log1p(exp(-fabs(v))));
    }
    *loss = (ct_real)(n ? total / (double)n : 0);
}

void bce_logits_backward(ct_real *dx, ct_real dloss, const ct_real *x, const ct_real *t,
                         int64_t n) {
    ct_real s = n ? dloss / (ct_real)n : 0;
#pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; i++) dx[i] += s * (1 / (1 + exp(-x[i])) - t[i]);
}

void kl_div_forward(ct_real *loss, const ct_real *log_q, const ct_real *p, int64_t N, int64_t K) {
    double total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total) PAR(N, K)
    for (int64_t i = 0; i < N * K; i++)
        if (p[i] > 0) total += (double)(p[i] * (log(p[i]) - log_q[i]));
    *loss = (ct_real)(N ? total / (double)N : 0);
}

void kl_div_backward(ct_real *dlog_q, ct_real *dp, ct_real dloss, const ct_real *log_q,
                     const ct_real *p, int64_t N, int64_t K) {
    ct_real s = N ? dloss / (ct_real)N : 0;
#pragma omp parallel for schedule(static) PAR(N, K)
    for (int64_t i = 0; i < N * K; i++) {
        if (dlog_q) dlog_q[i] -= s * p[i];
        /* d/dp [p log p - p log_q] = log p + 1 - log_q; 0 where p == 0 (xlogy) */
        if (dp && p[i] > 0) dp[i] += s * (log(p[i]) + 1 - log_q[i]);
    }
}

void entropy_forward(ct_real *loss, ct_real *probs, ct_real *h, const ct_real *logits, int64_t N,
                     int64_t K) {
    double total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total) PAR(N, K)
    for (int64_t n = 0; n < N; n++) {
        const ct_real *x = logits + n * K;
        ct_real lse = row_lse(x, K), e = 0;
        for (int64_t k = 0; k < K; k++) {
            ct_real lp = x[k] - lse, pk = exp(lp);
            probs[n * K + k] = pk;
            e -= pk * lp;
        }
        h[n] = e;
        total += (double)e;
    }
    *loss = (ct_real)(N ? total / (double)N : 0);
}

void entropy_backward(ct_real *dlogits, ct_real dloss, const ct_real *probs, const ct_real *h,
                      int64_t N, int64_t K) {
    ct_real s = N ? dloss / (ct_real)N : 0;
    // dH/dx_k = -p_k (log p_k + H)
#pragma omp parallel for schedule(static) PAR(N, K)
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) {
            ct_real pk = probs[n * K + k];
            ct_real lp = pk > 0 ? log(pk) : 0;
            dlogits[n * K + k] -= s * pk * (lp + h[n]);
        }
}

/* Asymmetric loss (Ridnik et al. 2021) on two-way logits given as their
 * difference d = pos - neg (softmax over (neg, pos) = (sigma(-d), sigma(d))):
 * per known target, p+ = sigma(d), p- = min(sigma(-d) + clip, 1) (clip > 0),
 * l = y log(max(p+, eps)) + (1 - y) log(max(p-, eps)), weighted by the
 * constant (1 - pt)^(y gp + (1 - y) gn), pt = y p+ + (1 - y) p-; the loss is
 * -sum. Targets < 0 are unknown and skipped. */
static inline void asl_terms(ct_real d, int y, ct_real gn, ct_real gp, ct_real clip, ct_real eps,
                             double *loss, double *dd) {
    double sp = 1 / (1 + exp(-(double)d)), sn = 1 / (1 + exp((double)d));
    if (y > 0) {
        double w = gp > 0 ? pow(1 - sp, gp) : 1;
        *loss = -w * log(sp > eps ? sp : eps);
        /* d/dd log(sigma(d)) = 1 - sigma(d) = sn, where the eps floor is not hit */
        *dd = sp > eps ? -w * sn : 0;
    } else {
        double q = clip > 0 ? sn + clip : sn, dq = -sp * sn; /* d sigma(-d) / dd */
        if (q >= 1) q = 1, dq = clip > 0 ? 0 : dq;
        double w = gn > 0 ? pow(1 - q, gn) : 1;
        *loss = -w * log(q > eps ? q : eps);
        *dd = q > eps ? -w * dq / q : 0;
    }
}

void asl_forward(ct_real *loss, const ct_real *d, const int8_t *y, int64_t n, ct_real gn,
                 ct_real gp, ct_real clip, ct_real eps) {
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        if (y[i] < 0) continue;
        double l, g;
        asl_terms(d[i], y[i], gn, gp, clip, eps, &l, &g);
        total += l;
    }
    *loss = (ct_real)total;
}

void asl_backward(ct_real *dd, ct_real dloss, const ct_real *d, const int8_t *y, int64_t n,
                  ct_real gn, ct_real gp, ct_real clip, ct_real eps) {
    for (int64_t i = 0; i < n; i++) {
        if (y[i] < 0) continue;
        double l, g;
        asl_terms(d[i], y[i], gn, gp, clip, eps, &l, &g);
        dd[i] += (ct_real)(dloss * g);
    }
}
