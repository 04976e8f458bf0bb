/* SGD, Adam and AdamW with torch.optim semantics (torch 1.13 single-tensor
 * code paths), plus torch.nn.utils.clip_grad_norm_.
 *
 * All optimizer state lives in one buffer per role (SGD momentum; Adam
 * exp_avg and exp_avg_sq) covering every parameter, allocated in create, so a
 * step never allocates. Each parameter keeps its own step count because torch
 * keeps state per parameter: a parameter whose .grad was NULL is skipped and
 * does not advance, so its momentum/bias corrections start when it first gets
 * a gradient, exactly as in torch. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/gemm.h"
#include "cliptune.h"

/* sqrt in ct_real so the float build stays in float (sqrt of a float
 * promotes to double, which also blocks vectorization). */
#ifdef CT_REAL_DOUBLE
#define CT_SQRT(x) sqrt(x)
#else
#define CT_SQRT(x) sqrtf(x)
#endif

/* Below this many elements a loop runs on one thread: spawning costs more. */
#define CT_OPTIM_PAR_MIN 65536

struct ct_optim {
    ct_optim_config cfg;
    int n;
    ct_tensor **params; /* not owned                                         */
    size_t *offset;     /* params[i]'s slice of the state buffers            */
    int64_t *steps;     /* updates applied to params[i] so far               */
    ct_real *buf1;      /* SGD momentum_buffer or Adam exp_avg (NULL if none) */
    ct_real *buf2;      /* Adam exp_avg_sq (NULL for SGD)                    */
    size_t total;       /* values in each state buffer                       */
};

ct_optim_config ct_optim_default(ct_optim_kind kind, float lr) {
    ct_optim_config c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.lr = lr;
    c.nesterov = false;
    /* Adam fields are set for every kind so a config switched to Adam later
     * still has torch's betas/eps rather than zeros. */
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    c.weight_decay = kind == CT_OPTIM_ADAMW ? 0.01f : 0.0f;
    return c;
}

/* The checks torch's constructors make (they raise ValueError). */
static ct_status check_config(const ct_optim_config *c) {
    if (c->kind != CT_OPTIM_SGD && c->kind != CT_OPTIM_ADAM && c->kind != CT_OPTIM_ADAMW)
        return ct_set_error(CT_ERR_ARG, "optim: unknown kind %d", (int)c->kind);
    /* Written as !(x >= 0) so that NaN is rejected too. */
    if (!(c->lr >= 0.0f) || isinf(c->lr))
        return ct_set_error(CT_ERR_ARG, "optim: invalid learning rate %g", (double)c->lr);
    if (!(c->weight_decay >= 0.0f) || isinf(c->weight_decay))
        return ct_set_error(CT_ERR_ARG, "optim: invalid weight_decay %g",
                            (double)c->weight_decay);
    if (c->kind == CT_OPTIM_SGD) {
        if (!(c->momentum >= 0.0f) || isinf(c->momentum))
            return ct_set_error(CT_ERR_ARG, "optim: invalid momentum %g", (double)c->momentum);
        if (!isfinite(c->dampening))
            return ct_set_error(CT_ERR_ARG, "optim: invalid dampening %g",
                                (double)c->dampening);
        if (c->nesterov && (c->momentum <= 0.0f || c->dampening != 0.0f))
            return ct_set_error(CT_ERR_ARG,
                                "optim: nesterov momentum requires momentum > 0 and zero "
                                "dampening (momentum %g, dampening %g)",
                                (double)c->momentum, (double)c->dampening);
    } else {
        if (!(c->eps >= 0.0f) || isinf(c->eps))
            return ct_set_error(CT_ERR_ARG, "optim: invalid eps %g", (double)c->eps);
        if (!(c->beta1 >= 0.0f && c->beta1 < 1.0f))
            return ct_set_error(CT_ERR_ARG, "optim: invalid beta1 %g", (double)c->beta1);
        if (!(c->beta2 >= 0.0f && c->beta2 < 1.0f))
            return ct_set_error(CT_ERR_ARG, "optim: invalid beta2 %g", (double)c->beta2);
    }
    return CT_OK;
}

ct_optim *ct_optim_create(const ct_optim_config *cfg, ct_tensor *const *params, int n) {
    if (!cfg) {
        ct_set_error(CT_ERR_ARG, "optim: NULL config");
        return NULL;
    }
    if (check_config(cfg) != CT_OK) return NULL;
    if (n <= 0 || !params) {
        /* torch: "optimizer got an empty parameter list". */
        ct_set_error(CT_ERR_ARG, "optim: empty parameter list (n = %d)", n);
        return NULL;
    }
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const ct_tensor *p = params[i];
        if (!p) {
            ct_set_error(CT_ERR_ARG, "optim: param %d is NULL", i);
            return NULL;
        }
        const char *name = p->name ? p->name : "";
        if (!p->requires_grad || p->node) {
            ct_set_error(CT_ERR_ARG, "optim: param %d %s is not a leaf that requires grad", i,
                         name);
            return NULL;
        }
        if (p->numel < 0 || (p->numel > 0 && !p->data)) {
            ct_set_error(CT_ERR_ARG, "optim: param %d %s has no data", i, name);
            return NULL;
        }
        /* A repeated param would be updated twice per step. */
        for (int j = 0; j < i; j++) {
            if (params[j] == p) {
                ct_set_error(CT_ERR_ARG, "optim: param %d %s repeats param %d", i, name, j);
                return NULL;
            }
        }
        if (!ct_add_size(total, (size_t)p->numel, &total)) {
            ct_set_error(CT_ERR_ARG, "optim: total parameter count overflows");
            return NULL;
        }
    }

    bool adam = cfg->kind != CT_OPTIM_SGD;
    bool need1 = adam || cfg->momentum != 0.0f;
    size_t bytes;
    if (!ct_mul_size(total, sizeof(ct_real), &bytes)) {
        ct_set_error(CT_ERR_NOMEM, "optim: state for %zu values is too large", total);
        return NULL;
    }

    ct_optim *o = calloc(1, sizeof *o);
    if (!o) goto nomem;
    o->cfg = *cfg;
    o->n = n;
    o->params = malloc((size_t)n * sizeof *o->params);
    o->offset = malloc((size_t)n * sizeof *o->offset);
    o->steps = calloc((size_t)n, sizeof *o->steps);
    if (!o->params || !o->offset || !o->steps) goto nomem;
    /* Zeroed state is what torch starts Adam from; SGD's first step
     * overwrites its buffer instead of reading it. calloc(0) may return NULL,
     * hence the max with 1. */
    o->total = total;
    if (need1 && !(o->buf1 = calloc(total ? total : 1, sizeof(ct_real)))) goto nomem;
    if (adam && !(o->buf2 = calloc(total ? total : 1, sizeof(ct_real)))) goto nomem;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        o->params[i] = params[i];
        o->offset[i] = off;
        off += (size_t)params[i]->numel;
    }
    return o;

nomem:
    ct_optim_free(o);
    ct_set_error(CT_ERR_NOMEM, "optim: out of memory for state of %zu values", total);
    return NULL;
}

void ct_optim_free(ct_optim *o) {
    if (!o) return;
    free(o->params);
    free(o->offset);
    free(o->steps);
    free(o->buf1);
    free(o->buf2);
    free(o);
}

/* torch.optim.SGD for one param. d = g + wd*p; buf = d on the first step,
 * else momentum*buf + (1 - dampening)*d; d = nesterov ? d + momentum*buf :
 * buf; p -= lr*d. The gradient itself is never modified. */
static void sgd_param(const ct_optim_config *c, ct_real *restrict p, const ct_real *restrict g,
                      ct_real *restrict buf, int64_t n, bool first, ct_real lr) {
    const ct_real wd = (ct_real)c->weight_decay;
    const ct_real mom = (ct_real)c->momentum;
    /* torch computes 1 - dampening in Python (double) and casts once. */
    const ct_real keep = (ct_real)(1.0 - (double)c->dampening);
    const bool use_wd = c->weight_decay != 0.0f;
    const bool nesterov = c->nesterov;
    if (!buf) {
#pragma omp parallel for schedule(static) if (n > CT_OPTIM_PAR_MIN)
        for (int64_t i = 0; i < n; i++) {
            ct_real d = use_wd ? g[i] + wd * p[i] : g[i];
            p[i] -= lr * d;
        }
        return;
    }
#pragma omp parallel for schedule(static) if (n > CT_OPTIM_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        ct_real d = use_wd ? g[i] + wd * p[i] : g[i];
        ct_real b = first ? d : mom * buf[i] + keep * d;
        buf[i] = b;
        d = nesterov ? d + mom * b : b;
        p[i] -= lr * d;
    }
}

/* torch.optim.Adam / AdamW for one param at its step t (1-based). */
static void adam_param(const ct_optim_config *c, ct_real *restrict p, const ct_real *restrict g,
                       ct_real *restrict m, ct_real *restrict v, int64_t n, int64_t t,
                       double lr) {
    const double b1 = c->beta1, b2 = c->beta2;
    /* Bias corrections in double as torch does in Python: in float,
     * 1 - 0.999^t loses most of its digits for small t. */
    const double bc1 = 1.0 - pow(b1, (double)t);
    const double bc2 = 1.0 - pow(b2, (double)t);
    const ct_real step_size = (ct_real)(lr / bc1);
    const ct_real bc2_sqrt = (ct_real)sqrt(bc2);
    const ct_real rb1 = (ct_real)b1, rb2 = (ct_real)b2;
    const ct_real one_b1 = (ct_real)(1.0 - b1), one_b2 = (ct_real)(1.0 - b2);
    const ct_real eps = (ct_real)c->eps;
    const ct_real wd = (ct_real)c->weight_decay;
    const bool decoupled = c->kind == CT_OPTIM_ADAMW;
    const bool use_wd = c->weight_decay != 0.0f;
    /* AdamW: p *= 1 - lr*wd before the Adam update (factor formed in double,
     * as torch does in Python). */
    const ct_real decay = (ct_real)(1.0 - lr * (double)c->weight_decay);
#pragma omp parallel for schedule(static) if (n > CT_OPTIM_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        ct_real gi = g[i];
        if (use_wd) {
            if (decoupled)
                p[i] *= decay;
            else
                gi += wd * p[i];
        }
        ct_real mi = rb1 * m[i] + one_b1 * gi;
        ct_real vi = rb2 * v[i] + one_b2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        ct_real denom = CT_SQRT(vi) / bc2_sqrt + eps;
        p[i] -= step_size * (mi / denom);
    }
}

ct_status ct_optim_step(ct_optim *o, float lr) { return ct_optim_step_each(o, &lr, true); }

ct_status ct_optim_step_each(ct_optim *o, const float *lrs, bool same) {
    if (!o) return ct_set_error(CT_ERR_ARG, "optim_step: NULL optimizer");
    for (int i = 0; i < (same ? 1 : o->n); i++)
        if (!(lrs[i] >= 0.0f) || isinf(lrs[i]))
            return ct_set_error(CT_ERR_ARG, "optim_step: invalid learning rate %g",
                                (double)lrs[i]);
    for (int i = 0; i < o->n; i++) {
        float lr = lrs[same ? 0 : i];
        ct_tensor *t = o->params[i];
        if (!t->grad) continue; /* torch skips params whose .grad is None */
        int64_t n = t->numel;
        size_t off = o->offset[i];
        o->steps[i]++;
        if (t->lowp) { /* a bf16 inference copy of the old values */
            ct_wpack_free(t->lowp);
            t->lowp = NULL;
        }
        if (o->cfg.kind == CT_OPTIM_SGD) {
            sgd_param(&o->cfg, t->data, t->grad, o->buf1 ? o->buf1 + off : NULL, n,
                      o->steps[i] == 1, (ct_real)lr);
        } else {
            adam_param(&o->cfg, t->data, t->grad, o->buf1 + off, o->buf2 + off, n, o->steps[i],
                       (double)lr);
        }
    }
    return CT_OK;
}

void ct_optim_zero_grad(ct_optim *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++) ct_tensor_zero_grad(o->params[i]);
}

/* Sum of squares in double. Large arrays are cut into a fixed number of
 * chunks whose partial sums are added in order, so the result does not depend
 * on the thread count (an OpenMP reduction's order would). */
#define CT_NORM_CHUNKS 64
static double sum_squares(const ct_real *g, int64_t n) {
    if (n <= CT_OPTIM_PAR_MIN) {
        double s = 0.0;
        for (int64_t i = 0; i < n; i++) s += (double)g[i] * (double)g[i];
        return s;
    }
    double part[CT_NORM_CHUNKS];
#pragma omp parallel for schedule(static)
    for (int c = 0; c < CT_NORM_CHUNKS; c++) {
        int64_t lo = n * c / CT_NORM_CHUNKS, hi = n * (c + 1) / CT_NORM_CHUNKS;
        double s = 0.0;
        for (int64_t i = lo; i < hi; i++) s += (double)g[i] * (double)g[i];
        part[c] = s;
    }
    double s = 0.0;
    for (int c = 0; c < CT_NORM_CHUNKS; c++) s += part[c];
    return s;
}

double ct_clip_grad_norm(ct_tensor *const *params, int n, double max_norm) {
    if (!params || n <= 0) return 0.0;
    double sq = 0.0;
    for (int i = 0; i < n; i++) {
        if (params[i] && params[i]->grad) sq += sum_squares(params[i]->grad, params[i]->numel);
    }
    double total = sqrt(sq);
    /* torch: coef = max_norm / (total + 1e-6), clamped to 1. Multiplying by
     * exactly 1 changes nothing, so only coef < 1 touches the gradients (a
     * NaN total leaves them as they are; they already hold a NaN or inf). */
    double coef = max_norm / (total + 1e-6);
    if (coef < 1.0) {
        const ct_real k = (ct_real)coef;
        for (int i = 0; i < n; i++) {
            if (!params[i] || !params[i]->grad) continue;
            ct_real *g = params[i]->grad;
            int64_t m = params[i]->numel;
#pragma omp parallel for schedule(static) if (m > CT_OPTIM_PAR_MIN)
            for (int64_t j = 0; j < m; j++) g[j] *= k;
        }
    }
    return total;
}

ct_optim_state ct_optim_get_state(ct_optim *o) {
    ct_optim_state st = {o->total, o->buf1, o->buf2, o->n, o->steps};
    return st;
}
