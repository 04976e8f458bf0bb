/* Optimizers, gradient clipping and LR schedules against values produced by
 * PyTorch (tests/fixtures/optim_ref.h, from tools/ref/gen_optim_ref.py) and a
 * few hand-computed cases. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cliptune.h"
#include "fixtures/optim_ref.h"
#include "harness.h"

/* The reference is float64 torch fed float32-exact inputs, so the float build
 * differs only by its own rounding; the double build is limited by the %.9g
 * printing of the reference. */
#ifdef CT_REAL_DOUBLE
#define ATOL 1e-9
#define RTOL 2e-8
#else
#define ATOL 3e-7
#define RTOL 1e-6
#endif

static bool check_real(const char *file, int line, const char *name, const ct_real *got,
                       const double *want, size_t n, double atol, double rtol) {
    double *g = malloc(n * sizeof *g);
    if (!g) {
        ct_test_fail(file, line, "out of memory");
        return false;
    }
    for (size_t i = 0; i < n; i++) g[i] = (double)got[i];
    bool ok = ct_check_close_d(file, line, name, g, want, n, atol, rtol);
    free(g);
    return ok;
}
#define CHECK_REAL(name, got, want, n) \
    check_real(__FILE__, __LINE__, name, got, want, n, ATOL, RTOL)

static ct_tensor *vec(int64_t n, bool requires_grad) {
    ct_tensor *t = ct_tensor_new(1, &n, requires_grad);
    if (!t) {
        fprintf(stderr, "ct_tensor_new: %s\n", ct_last_error());
        abort();
    }
    return t;
}

static ct_optim_config case_config(const oref_optim_case *c) {
    ct_optim_config cfg = ct_optim_default(c->kind, (float)c->lr[0]);
    cfg.momentum = (float)c->momentum;
    cfg.dampening = (float)c->dampening;
    cfg.nesterov = c->nesterov;
    cfg.weight_decay = (float)c->weight_decay;
    if (c->kind != CT_OPTIM_SGD) {
        cfg.beta1 = (float)c->beta1;
        cfg.beta2 = (float)c->beta2;
        cfg.eps = (float)c->eps;
    }
    return cfg;
}

/* ------------------------------------------------------------------------ */

static void test_defaults(void) {
    ct_optim_config s = ct_optim_default(CT_OPTIM_SGD, 0.1f);
    CHECK(s.kind == CT_OPTIM_SGD && s.lr == 0.1f);
    CHECK(s.momentum == 0.0f && s.dampening == 0.0f && !s.nesterov && s.weight_decay == 0.0f);
    ct_optim_config a = ct_optim_default(CT_OPTIM_ADAM, 1e-3f);
    CHECK(a.kind == CT_OPTIM_ADAM && a.lr == 1e-3f);
    CHECK(a.beta1 == 0.9f && a.beta2 == 0.999f && a.eps == 1e-8f && a.weight_decay == 0.0f);
    ct_optim_config w = ct_optim_default(CT_OPTIM_ADAMW, 1e-3f);
    CHECK(w.kind == CT_OPTIM_ADAMW);
    CHECK(w.beta1 == 0.9f && w.beta2 == 0.999f && w.eps == 1e-8f && w.weight_decay == 0.01f);
}

/* Two SGD steps worked out by hand: lr 0.1, momentum 0.9, wd 0.1, same grad.
 * step 1: d = g + 0.1 p = (0.6, 0.05); buf = d (no dampening on the first
 *         step); p = (1, -2) - 0.1 d = (0.94, -2.005)
 * step 2: d = (0.5 + 0.094, 0.25 - 0.2005) = (0.594, 0.0495);
 *         buf = 0.9 (0.6, 0.05) + d = (1.134, 0.0945);
 *         p = (0.94 - 0.1134, -2.005 - 0.00945) = (0.8266, -2.01445) */
static void test_sgd_hand(void) {
    ct_tensor *p = vec(2, true);
    p->data[0] = 1;
    p->data[1] = -2;
    ct_optim_config cfg = ct_optim_default(CT_OPTIM_SGD, 0.1f);
    cfg.momentum = 0.9f;
    cfg.weight_decay = 0.1f;
    ct_optim *o = ct_optim_create(&cfg, &p, 1);
    CHECK(o != NULL);
    if (!o) goto done;
    p->grad[0] = 0.5;
    p->grad[1] = 0.25;
    CHECK_OK(ct_optim_step(o, 0.1f));
    CHECK_REAL("sgd step 1", p->data, ((const double[]){0.94, -2.005}), 2);
    /* The gradient is read, not rewritten with the weight decay. */
    CHECK(p->grad[0] == 0.5 && p->grad[1] == 0.25);
    CHECK_OK(ct_optim_step(o, 0.1f));
    CHECK_REAL("sgd step 2", p->data, ((const double[]){0.8266, -2.01445}), 2);
    ct_optim_free(o);
done:
    ct_tensor_free(p);
}

/* Replays the reference run: three params, the last without a gradient at
 * step 0 (so its momentum / bias-correction state starts one step late), a
 * different lr at every step. */
static void run_reference_case(const oref_optim_case *c) {
    ct_tensor *params[OREF_NPARAM];
    int off[OREF_NPARAM];
    for (int k = 0, o = 0; k < OREF_NPARAM; o += oref_sizes[k], k++) {
        params[k] = vec(oref_sizes[k], true);
        off[k] = o;
        for (int i = 0; i < oref_sizes[k]; i++) params[k]->data[i] = (ct_real)oref_p0[o + i];
    }
    ct_optim_config cfg = case_config(c);
    ct_optim *opt = ct_optim_create(&cfg, params, OREF_NPARAM);
    CHECK_MSG(opt != NULL, "%s: create failed: %s", c->name, ct_last_error());
    ct_real got[OREF_TOTAL];
    for (int s = 0; opt && s < OREF_NSTEP; s++) {
        ct_real *late_grad = NULL;
        for (int k = 0; k < OREF_NPARAM; k++) {
            if (k == OREF_LATE && s == 0) {
                late_grad = params[k]->grad;
                params[k]->grad = NULL;
                continue;
            }
            for (int i = 0; i < oref_sizes[k]; i++)
                params[k]->grad[i] = (ct_real)oref_grad[s][off[k] + i];
        }
        CHECK_OK(ct_optim_step(opt, (float)c->lr[s]));
        if (late_grad) params[OREF_LATE]->grad = late_grad;
        for (int k = 0; k < OREF_NPARAM; k++)
            memcpy(got + off[k], params[k]->data, (size_t)oref_sizes[k] * sizeof(ct_real));
        char name[64];
        snprintf(name, sizeof name, "%s step %d", c->name, s);
        CHECK_REAL(name, got, c->after[s], OREF_TOTAL);
    }
    ct_optim_free(opt);
    for (int k = 0; k < OREF_NPARAM; k++) ct_tensor_free(params[k]);
}

static void test_reference_torch(void) {
    size_t n = sizeof oref_optim_cases / sizeof oref_optim_cases[0];
    for (size_t i = 0; i < n; i++) run_reference_case(&oref_optim_cases[i]);
}

/* A param above the parallel threshold: element i replays reference
 * element i % 7 of param 0 (updates are elementwise), so every element must
 * land on the torch value whatever the thread split. */
static void test_large_param_parallel(void) {
    const int64_t period = oref_sizes[0], n = period * 10000; /* 70000 > 65536 */
    size_t ncase = sizeof oref_optim_cases / sizeof oref_optim_cases[0];
    double *want = malloc((size_t)n * sizeof *want);
    CHECK(want != NULL);
    if (!want) return;
    for (size_t ci = 0; ci < ncase; ci++) {
        const oref_optim_case *c = &oref_optim_cases[ci];
        ct_tensor *p = vec(n, true);
        for (int64_t i = 0; i < n; i++) p->data[i] = (ct_real)oref_p0[i % period];
        ct_optim_config cfg = case_config(c);
        ct_optim *o = ct_optim_create(&cfg, &p, 1);
        CHECK(o != NULL);
        for (int s = 0; o && s < OREF_NSTEP; s++) {
            for (int64_t i = 0; i < n; i++) p->grad[i] = (ct_real)oref_grad[s][i % period];
            CHECK_OK(ct_optim_step(o, (float)c->lr[s]));
            for (int64_t i = 0; i < n; i++) want[i] = c->after[s][i % period];
            char name[64];
            snprintf(name, sizeof name, "large %s step %d", c->name, s);
            CHECK_REAL(name, p->data, want, (size_t)n);
        }
        ct_optim_free(o);
        ct_tensor_free(p);
    }
    free(want);
}

/* torch skips a param whose .grad is None: data and state stay put. */
static void test_null_grad_untouched(void) {
    const ct_optim_kind kinds[] = {CT_OPTIM_SGD, CT_OPTIM_ADAM, CT_OPTIM_ADAMW};
    for (int ki = 0; ki < 3; ki++) {
        ct_tensor *ps[2] = {vec(4, true), vec(3, true)};
        for (int i = 0; i < 4; i++) {
            ps[0]->data[i] = (ct_real)(i + 1);
            ps[0]->grad[i] = 0.5;
        }
        for (int i = 0; i < 3; i++) ps[1]->data[i] = (ct_real)(10 + i);
        free(ps[1]->grad);
        ps[1]->grad = NULL;
        ct_optim_config cfg = ct_optim_default(kinds[ki], 0.1f);
        cfg.momentum = 0.9f;
        cfg.weight_decay = 0.1f; /* would move the param even with a zero grad */
        ct_optim *o = ct_optim_create(&cfg, ps, 2);
        CHECK(o != NULL);
        if (o) {
            CHECK_OK(ct_optim_step(o, 0.1f));
            CHECK_OK(ct_optim_step(o, 0.1f));
        }
        for (int i = 0; i < 3; i++)
            CHECK_MSG(ps[1]->data[i] == (ct_real)(10 + i), "kind %d: NULL-grad param moved", ki);
        CHECK_MSG(ps[0]->data[0] != 1, "kind %d: param with a grad did not move", ki);
        ct_optim_free(o);
        ct_tensor_free(ps[0]);
        ct_tensor_free(ps[1]);
    }
}

static void test_zero_grad(void) {
    ct_tensor *ps[2] = {vec(5, true), vec(2, true)};
    for (int i = 0; i < 5; i++) ps[0]->grad[i] = (ct_real)(i + 1);
    free(ps[1]->grad);
    ps[1]->grad = NULL; /* zero_grad must cope with a param that has none */
    ct_optim_config cfg = ct_optim_default(CT_OPTIM_ADAM, 1e-3f);
    ct_optim *o = ct_optim_create(&cfg, ps, 2);
    CHECK(o != NULL);
    ct_optim_zero_grad(o);
    for (int i = 0; i < 5; i++) CHECK(ps[0]->grad[i] == 0);
    CHECK(ps[1]->grad == NULL);
    ct_optim_zero_grad(NULL);
    ct_optim_free(o);
    ct_tensor_free(ps[0]);
    ct_tensor_free(ps[1]);
}

static void expect_create_fails(const char *what, const ct_optim_config *cfg,
                                ct_tensor *const *params, int n) {
    ct_clear_error();
    ct_optim *o = ct_optim_create(cfg, params, n);
    CHECK_MSG(o == NULL, "%s: create succeeded", what);
    CHECK_MSG(ct_last_error()[0] != 0, "%s: no error message", what);
    ct_optim_free(o);
}

static void test_create_errors(void) {
    ct_tensor *good = vec(3, true), *frozen = vec(3, false);
    ct_optim_config sgd = ct_optim_default(CT_OPTIM_SGD, 0.1f);
    ct_optim_config adam = ct_optim_default(CT_OPTIM_ADAM, 0.1f);

    ct_tensor *with_null[2] = {good, NULL};
    expect_create_fails("NULL param", &sgd, with_null, 2);
    expect_create_fails("no requires_grad", &sgd, &frozen, 1);
    ct_tensor *dup[2] = {good, good};
    expect_create_fails("duplicate param", &adam, dup, 2);
    expect_create_fails("NULL config", NULL, &good, 1);
    expect_create_fails("empty list", &sgd, &good, 0);
    expect_create_fails("NULL list", &sgd, NULL, 1);

    ct_optim_config c = sgd;
    c.lr = -1.0f;
    expect_create_fails("negative lr", &c, &good, 1);
    c = sgd;
    c.nesterov = true; /* torch: nesterov needs momentum > 0 */
    expect_create_fails("nesterov without momentum", &c, &good, 1);
    c.momentum = 0.9f;
    c.dampening = 0.1f; /* ... and zero dampening */
    expect_create_fails("nesterov with dampening", &c, &good, 1);
    c = adam;
    c.beta2 = 1.0f;
    expect_create_fails("beta2 = 1", &c, &good, 1);
    c = adam;
    c.weight_decay = -0.1f;
    expect_create_fails("negative weight_decay", &c, &good, 1);

    /* Valid: a param may have no grad yet at create. */
    ct_tensor *nograd = vec(2, true);
    free(nograd->grad);
    nograd->grad = NULL;
    ct_optim *o = ct_optim_create(&adam, &nograd, 1);
    CHECK(o != NULL);
    ct_optim_free(o);
    ct_optim_free(NULL);

    ct_tensor_free(nograd);
    ct_tensor_free(good);
    ct_tensor_free(frozen);
}

static void test_step_errors(void) {
    ct_tensor *p = vec(2, true);
    ct_optim_config cfg = ct_optim_default(CT_OPTIM_SGD, 0.1f);
    ct_optim *o = ct_optim_create(&cfg, &p, 1);
    CHECK(o != NULL);
    CHECK(ct_optim_step(o, -0.1f) == CT_ERR_ARG);
    CHECK(ct_optim_step(o, NAN) == CT_ERR_ARG);
    CHECK(ct_optim_step(NULL, 0.1f) == CT_ERR_ARG);
    ct_optim_free(o);
    ct_tensor_free(p);
}

static void test_clip_grad_norm(void) {
    static const double maxes[2] = {OREF_CLIP_MAX_SMALL, OREF_CLIP_MAX_LARGE};
    const double *totals[2] = {&oref_clip_total_small, &oref_clip_total_large};
    const double *afters[2] = {oref_clip_after_small, oref_clip_after_large};
    for (int c = 0; c < 2; c++) {
        /* Two tensors as in the reference, plus a param without a grad and a
         * NULL entry, which are skipped. */
        ct_tensor *a = vec(6, true), *b = vec(4, true), *none = vec(2, true);
        free(none->grad);
        none->grad = NULL;
        for (int i = 0; i < 6; i++) a->grad[i] = (ct_real)oref_clip_grad[i];
        for (int i = 0; i < 4; i++) b->grad[i] = (ct_real)oref_clip_grad[6 + i];
        ct_tensor *ps[4] = {a, none, NULL, b};
        double total = ct_clip_grad_norm(ps, 4, maxes[c]);
        CHECK_NEAR("total norm", total, *totals[c], ATOL, RTOL);
        CHECK_REAL("clipped a", a->grad, afters[c], 6);
        CHECK_REAL("clipped b", b->grad, afters[c] + 6, 4);
        ct_tensor_free(a);
        ct_tensor_free(b);
        ct_tensor_free(none);
    }
    CHECK(ct_clip_grad_norm(NULL, 0, 1.0) == 0.0);
}

/* Above the parallel threshold the sum of squares goes through fixed chunks;
 * the norm must still be right (and repeatable). */
static void test_clip_large(void) {
    const int64_t n = 70000;
    ct_tensor *p = vec(n, true);
    for (int64_t i = 0; i < n; i++) p->grad[i] = (ct_real)oref_clip_grad[i % 10];
    double want_total = sqrt((double)(n / 10)) * oref_clip_total_small;
    double first = ct_clip_grad_norm(&p, 1, 1e9); /* no clipping */
    double again = ct_clip_grad_norm(&p, 1, 1e9);
    CHECK_NEAR("large total", first, want_total, ATOL, RTOL);
    CHECK(first == again);
    double max_norm = 2.0;
    double total = ct_clip_grad_norm(&p, 1, max_norm);
    double coef = max_norm / (total + 1e-6);
    double *want = malloc((size_t)n * sizeof *want);
    CHECK(want != NULL);
    if (want) {
        for (int64_t i = 0; i < n; i++) want[i] = oref_clip_grad[i % 10] * coef;
        CHECK_REAL("large clipped", p->grad, want, (size_t)n);
        /* Clipped to max_norm (up to the 1e-6 in the denominator). */
        CHECK_NEAR("norm after clipping", ct_clip_grad_norm(&p, 1, 1e9), max_norm, 1e-5, 1e-5);
    }
    free(want);
    ct_tensor_free(p);
}

static void check_sched(const char *name, const ct_sched_config *s, const double *want, int n) {
    double got[64];
    for (int e = 0; e < n; e++) got[e] = ct_sched_lr(s, e);
    /* The schedule returns float whatever ct_real is. */
    ct_check_close_d(__FILE__, __LINE__, name, got, want, (size_t)n, 0.0, 1e-6);
}

static void test_sched_dassl(void) {
    ct_sched_config s = {0};
    s.kind = CT_SCHED_COSINE;
    s.base_lr = (float)OREF_SCHED_BASE;
    s.min_lr = 0.0f;
    s.total = OREF_SCHED_EPOCHS; /* Dassl: T_max = MAX_EPOCH, warmup included */
    s.warmup = CT_WARMUP_NONE;
    check_sched("cosine", &s, oref_sched_cosine, OREF_SCHED_EPOCHS);

    s.warmup = CT_WARMUP_CONSTANT;
    s.warmup_len = 1;
    s.warmup_lr = 1e-5f;
    check_sched("constant warmup", &s, oref_sched_warm_const, OREF_SCHED_EPOCHS);

    s.warmup = CT_WARMUP_LINEAR;
    s.warmup_len = 2;
    s.warmup_lr = 1e-5f;
    check_sched("linear warmup", &s, oref_sched_warm_linear, OREF_SCHED_EPOCHS);
}

static void test_sched_hand(void) {
    ct_sched_config s = {0};
    s.kind = CT_SCHED_CONSTANT;
    s.base_lr = 0.5f;
    s.total = 4;
    CHECK(ct_sched_lr(&s, 0) == 0.5f && ct_sched_lr(&s, 7) == 0.5f);
    s.warmup = CT_WARMUP_LINEAR;
    s.warmup_len = 4;
    s.warmup_lr = 0.01f;
    /* warmup_lr at 0, then base * e / len, then the main schedule */
    CHECK(ct_sched_lr(&s, 0) == 0.01f);
    CHECK(ct_sched_lr(&s, 1) == 0.125f && ct_sched_lr(&s, 2) == 0.25f);
    CHECK(ct_sched_lr(&s, 3) == 0.375f && ct_sched_lr(&s, 4) == 0.5f);
    s.warmup_len = 0; /* Dassl: warmup only when WARMUP_EPOCH > 0 */
    CHECK(ct_sched_lr(&s, 0) == 0.5f);

    /* Cosine with eta_min: base at t = 0, the midpoint at T/2, eta_min at T. */
    s.kind = CT_SCHED_COSINE;
    s.min_lr = 0.1f;
    s.total = 4;
    s.warmup = CT_WARMUP_CONSTANT;
    s.warmup_len = 2;
    s.warmup_lr = 0.001f;
    CHECK(ct_sched_lr(&s, 0) == 0.001f && ct_sched_lr(&s, 1) == 0.001f);
    CHECK_NEAR("cos t=0", ct_sched_lr(&s, 2), 0.5, 0, 1e-6);
    CHECK_NEAR("cos t=T/2", ct_sched_lr(&s, 4), 0.3, 0, 1e-6);
    CHECK_NEAR("cos t=T", ct_sched_lr(&s, 6), 0.1, 0, 1e-6);
}

int main(void) {
    RUN(test_defaults);
    RUN(test_sgd_hand);
    RUN(test_reference_torch);
    RUN(test_large_param_parallel);
    RUN(test_null_grad_untouched);
    RUN(test_zero_grad);
    RUN(test_create_errors);
    RUN(test_step_errors);
    RUN(test_clip_grad_norm);
    RUN(test_clip_large);
    RUN(test_sched_dassl);
    RUN(test_sched_hand);
    return ct_test_summary();
}
