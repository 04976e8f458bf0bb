/* Gradient checks (double precision) for the dense ops: linear, matmul,
 * elementwise, activations, layout, normalisation, softmax family and
 * losses. Tolerance |analytic - numeric| <= 1e-7 + 1e-6 |numeric| unless a
 * test states otherwise; h = 1e-6. */
#include "gradcheck.h"

#define SHAPE(...) (int64_t[]){__VA_ARGS__}
#define NDIM(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t))
#define INPUT(seed, std, ...) gc_input(seed, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), std)

static void free_all(ct_tensor **t, int n) {
    for (int i = 0; i < n; i++) ct_tensor_free(t[i]);
}

static ct_tensor *f_linear(ct_graph *g, ct_tensor *const *in, void *ctx) {
    return ct_linear(g, in[0], in[1], in[2]);
}
static void test_linear(void) {
    ct_tensor *in[3] = {INPUT(1, 1, 2, 3, 5), INPUT(2, 1, 4, 5), INPUT(3, 1, 4)};
    gradcheck("linear", f_linear, in, 3, NULL);
    ct_tensor *nob[3] = {in[0], in[1], NULL};
    gradcheck("linear (no bias)", f_linear, nob, 3, NULL);
    free_all(in, 3);
}

/* LoRA on a frozen layer, with and without dropout: gradients reach x, A
 * and B (the masks are regenerated in backward), never w or b. */
static ct_tensor *f_lora(ct_graph *g, ct_tensor *const *in, void *ctx) {
    float p = *(const float *)ctx;
    return ct_lora_linear(g, in[0], in[1], in[2], in[3], in[4], 0.7f, p, 11);
}
static ct_tensor *f_dropout(ct_graph *g, ct_tensor *const *in, void *ctx) {
    return ct_dropout(g, in[0], *(const float *)ctx, 5);
}
static void test_lora_dropout(void) {
    ct_tensor *in[5] = {INPUT(1, 1, 2, 3, 5), INPUT(2, 1, 4, 5), INPUT(3, 1, 4), INPUT(4, 1, 2, 5),
                        INPUT(5, 1, 4, 2)};
    in[1]->requires_grad = in[2]->requires_grad = false;
    float ps[2] = {0.0f, 0.3f};
    for (int i = 0; i < 2; i++) {
        char name[64];
        snprintf(name, sizeof name, "lora_linear (dropout %.1f)", (double)ps[i]);
        gradcheck(name, f_lora, in, 5, &ps[i]);
    }
    /* the same as the composition it fuses, without dropout */
    ct_graph *g = ct_graph_create(0);
    ct_tensor *y = ct_lora_linear(g, in[0], in[1], in[2], in[3], in[4], 0.7f, 0.0f, 11);
    ct_tensor *z = ct_add(g, ct_linear(g, in[0], in[1], in[2]),
                          ct_scale(g, ct_linear(g, ct_linear(g, in[0], in[3], NULL), in[4], NULL),
                                   0.7f));
    CHECK(y && z);
    if (y && z) CHECK_CLOSE_D("lora_linear vs composition", y->data, z->data, (size_t)y->numel,
                              1e-12, 1e-12);
    ct_graph_free(g);
    float p = 0.4f;
    gradcheck("dropout 0.4", f_dropout, in, 1, &p);
    free_all(in, 5);
}

typedef struct { bool ta, tb; } mm_ctx;
static ct_tensor *f_matmul(ct_graph *g, ct_tensor *const *in, void *ctx) {
    mm_ctx *c = ctx;
    return ct_matmul(g, in[0], in[1], c->ta, c->tb);
}
static void test_matmul(void) {
    for (int t = 0; t < 4; t++) {
        mm_ctx c = {t & 1, t >> 1};
        int64_t M = 3, K = 4, N = 5;
        int64_t sa[3] = {2, c.ta ? K : M, c.ta ? M : K};
        int64_t sb3[3] = {2, c.tb ? N : K, c.tb ? K : N};
        char name[64];
        /* batched against batched, and batched against a shared 2-D B */
        ct_tensor *in[2] = {gc_input(10 + t, 3, sa, 1), gc_input(20 + t, 3, sb3, 1)};
        snprintf(name, sizeof name, "matmul batched ta=%d tb=%d", c.ta, c.tb);
        gradcheck(name, f_matmul, in, 2, &c);
        ct_tensor *shared[2] = {in[0], gc_input(30 + t, 2, sb3 + 1, 1)};
        snprintf(name, sizeof name, "matmul shared-B ta=%d tb=%d", c.ta, c.tb);
        gradcheck(name, f_matmul, shared, 2, &c);
        ct_tensor_free(shared[1]);
        free_all(in, 2);
    }
}

static ct_tensor *f_add(ct_graph *g, ct_tensor *const *in, void *c) { return ct_add(g, in[0], in[1]); }
static ct_tensor *f_sub(ct_graph *g, ct_tensor *const *in, void *c) { return ct_sub(g, in[0], in[1]); }
static ct_tensor *f_mul(ct_graph *g, ct_tensor *const *in, void *c) { return ct_mul(g, in[0], in[1]); }
static ct_tensor *f_scale(ct_graph *g, ct_tensor *const *in, void *c) { return ct_scale(g, in[0], -2.5f); }

static void test_binary(void) {
    gc_fn fs[3] = {f_add, f_sub, f_mul};
    const char *names[3] = {"add", "sub", "mul"};
    for (int k = 0; k < 3; k++) {
        ct_tensor *a = INPUT(40, 1, 2, 3, 4);
        ct_tensor *same = INPUT(41, 1, 2, 3, 4), *row = INPUT(42, 1, 4), *tail = INPUT(43, 1, 1, 3, 4),
                  *scalar = INPUT(44, 1, 1);
        ct_tensor *bs[4] = {same, row, tail, scalar};
        const char *kinds[4] = {"same shape", "row broadcast", "trailing broadcast", "scalar"};
        for (int b = 0; b < 4; b++) {
            char name[96];
            snprintf(name, sizeof name, "%s (%s)", names[k], kinds[b]);
            ct_tensor *in[2] = {a, bs[b]};
            gradcheck(name, fs[k], in, 2, NULL);
        }
        ct_tensor *all[5] = {a, same, row, tail, scalar};
        free_all(all, 5);
    }
    ct_tensor *x = INPUT(45, 1, 3, 3);
    gradcheck("scale", f_scale, &x, 1, NULL);
    ct_tensor_free(x);
}

static ct_tensor *f_act(ct_graph *g, ct_tensor *const *in, void *ctx) {
    switch (*(int *)ctx) {
    case 0: return ct_gelu(g, in[0]);
    case 1: return ct_quick_gelu(g, in[0]);
    case 2: return ct_relu(g, in[0]);
    case 3: return ct_sigmoid(g, in[0]);
    case 4: return ct_tanh(g, in[0]);
    case 5: return ct_exp(g, in[0]);
    default: return ct_log(g, in[0]);
    }
}
static void test_activations(void) {
    const char *names[7] = {"gelu", "quick_gelu", "relu", "sigmoid", "tanh", "exp", "log"};
    for (int a = 0; a < 7; a++) {
        ct_tensor *x = INPUT(50 + a, 2, 3, 7);
        for (int64_t i = 0; i < x->numel; i++) {
            /* keep relu away from its kink and log on positive inputs */
            if (a == 2 && fabs(x->data[i]) < 1e-3) x->data[i] = 0.5;
            if (a == 6) x->data[i] = fabs(x->data[i]) + 0.1;
        }
        gradcheck(names[a], f_act, &x, 1, &a);
        ct_tensor_free(x);
    }
}

typedef struct { int dim; int64_t a, b; } dim_ctx;
static ct_tensor *f_sum(ct_graph *g, ct_tensor *const *in, void *ctx) {
    return ct_sum(g, in[0], ((dim_ctx *)ctx)->dim);
}
static ct_tensor *f_mean(ct_graph *g, ct_tensor *const *in, void *ctx) {
    return ct_mean(g, in[0], ((dim_ctx *)ctx)->dim);
}
static ct_tensor *f_sum_all(ct_graph *g, ct_tensor *const *in, void *ctx) { return ct_sum_all(g, in[0]); }
static ct_tensor *f_slice(ct_graph *g, ct_tensor *const *in, void *ctx) {
    dim_ctx *c = ctx;
    return ct_slice(g, in[0], c->dim, c->a, c->b);
}
static ct_tensor *f_concat(ct_graph *g, ct_tensor *const *in, void *ctx) {
    return ct_concat(g, in, 3, ((dim_ctx *)ctx)->dim);
}
static ct_tensor *f_transpose(ct_graph *g, ct_tensor *const *in, void *ctx) {
    dim_ctx *c = ctx;
    return ct_transpose(g, in[0], (int)c->a, (int)c->b);
}
static ct_tensor *f_reshape(ct_graph *g, ct_tensor *const *in, void *ctx) {
    /* reshape then a nonlinear op so the cotangent is not just copied */
    return ct_tanh(g, ct_reshape(g, in[0], 2, SHAPE(4, 6)));
}

static void test_layout(void) {
    ct_tensor *x = INPUT(60, 1, 2, 3, 4);
    for (int d = -1; d < 3; d++) {
        dim_ctx c = {d, 0, 0};
        char name[64];
        snprintf(name, sizeof name, "sum dim %d", d);
        gradcheck(name, f_sum, &x, 1, &c);
        snprintf(name, sizeof name, "mean dim %d", d);
        gradcheck(name, f_mean, &x, 1, &c);
        for (int64_t s = 0; s < 2; s++) {
            dim_ctx sc = {d, s, x->shape[d < 0 ? 2 : d] - s - (s ? 1 : 0)};
            if (sc.b <= 0) sc.b = 1;
            snprintf(name, sizeof name, "slice dim %d [%lld, +%lld)", d, (long long)sc.a, (long long)sc.b);
            gradcheck(name, f_slice, &x, 1, &sc);
        }
    }
    gradcheck("sum_all", f_sum_all, &x, 1, NULL);
    gradcheck("reshape", f_reshape, &x, 1, NULL);
    for (int a = 0; a < 3; a++)
        for (int b = a + 1; b < 3; b++) {
            dim_ctx c = {0, a, b};
            char name[64];
            snprintf(name, sizeof name, "transpose %d,%d", a, b);
            gradcheck(name, f_transpose, &x, 1, &c);
        }
    for (int d = 0; d < 3; d++) {
        int64_t s1[3] = {2, 3, 4}, s2[3] = {2, 3, 4}, s3[3] = {2, 3, 4};
        s2[d] = 1, s3[d] = 2;
        ct_tensor *in[3] = {gc_input(61, 3, s1, 1), gc_input(62, 3, s2, 1), gc_input(63, 3, s3, 1)};
        dim_ctx c = {d, 0, 0};
        char name[64];
        snprintf(name, sizeof name, "concat dim %d", d);
        gradcheck(name, f_concat, in, 3, &c);
        free_all(in, 3);
    }
    ct_tensor_free(x);
}

static const int64_t gather_ids[5] = {3, 0, 3, 1, 4};
static ct_tensor *f_gather(ct_graph *g, ct_tensor *const *in, void *ctx) {
    return ct_gather_rows(g, in[0], gather_ids, 2, SHAPE(1, 5));
}
static void test_gather(void) {
    ct_tensor *t = INPUT(70, 1, 6, 3);
    gradcheck("gather_rows (repeated ids)", f_gather, &t, 1, NULL);
    ct_tensor_free(t);
}

static ct_tensor *f_layernorm(ct_graph *g, ct_tensor *const *in, void *ctx) {
    return ct_layernorm(g, in[0], in[1], in[2], 1e-5f);
}
static ct_tensor *f_l2norm(ct_graph *g, ct_tensor *const *in, void *ctx) {
    return ct_l2_normalize(g, in[0], 1e-12f);
}
static void test_norms(void) {
    ct_tensor *in[3] = {INPUT(80, 2, 2, 3, 8), INPUT(81, 1, 8), INPUT(82, 1, 8)};
    gradcheck("layernorm", f_layernorm, in, 3, NULL);
    ct_tensor *noaff[3] = {in[0], NULL, NULL};
    gradcheck("layernorm (no affine)", f_layernorm, noaff, 3, NULL);
    gradcheck("l2_normalize", f_l2norm, in, 1, NULL);
    free_all(in, 3);
}

static ct_tensor *f_softmax(ct_graph *g, ct_tensor *const *in, void *c) { return ct_softmax(g, in[0]); }
static ct_tensor *f_log_softmax(ct_graph *g, ct_tensor *const *in, void *c) { return ct_log_softmax(g, in[0]); }
static const int64_t ce_labels[4] = {2, 0, 4, 4};
static ct_tensor *f_ce(ct_graph *g, ct_tensor *const *in, void *ctx) {
    return ct_cross_entropy(g, in[0], ce_labels, *(float *)ctx);
}
static ct_tensor *f_bce(ct_graph *g, ct_tensor *const *in, void *ctx) {
    return ct_bce_with_logits(g, in[0], ctx);
}
static ct_tensor *f_asl_clip(ct_graph *g, ct_tensor *const *in, void *ctx) {
    /* DualCoOp's clip 0.05 and eps 1e-6, no focusing */
    return ct_asymmetric_loss(g, in[0], ctx, 0.0f, 0.0f, 0.05f, 1e-6f);
}
static ct_tensor *f_asl_plain(ct_graph *g, ct_tensor *const *in, void *ctx) {
    return ct_asymmetric_loss(g, in[0], ctx, 0.0f, 0.0f, 0.0f, 1e-8f);
}
static ct_tensor *f_kl(ct_graph *g, ct_tensor *const *in, void *ctx) {
    /* KL(softmax(in[1]) || softmax(in[0])): both arguments through the op */
    return ct_kl_div(g, ct_log_softmax(g, in[0]), ct_softmax(g, in[1]));
}
static ct_tensor *f_kl_raw(ct_graph *g, ct_tensor *const *in, void *ctx) {
    return ct_kl_div(g, in[0], in[1]);
}
static ct_tensor *f_entropy(ct_graph *g, ct_tensor *const *in, void *ctx) { return ct_entropy(g, in[0]); }

static void test_softmax_losses(void) {
    ct_tensor *x = INPUT(90, 2, 4, 5), *y = INPUT(91, 2, 4, 5);
    gradcheck("softmax", f_softmax, &x, 1, NULL);
    gradcheck("log_softmax", f_log_softmax, &x, 1, NULL);
    float ls0 = 0, ls1 = 0.1f;
    gradcheck("cross_entropy", f_ce, &x, 1, &ls0);
    gradcheck("cross_entropy (label smoothing 0.1)", f_ce, &x, 1, &ls1);
    ct_real tgt[20];
    for (int i = 0; i < 20; i++) tgt[i] = (ct_real)((i * 7) % 5) / 4;
    gradcheck("bce_with_logits", f_bce, &x, 1, tgt);
    int8_t ml[20];
    for (int i = 0; i < 20; i++) ml[i] = (int8_t)((i * 7) % 3 - 1); /* -1 unknown, 0, 1 */
    gradcheck("asymmetric_loss (clip, no focusing)", f_asl_clip, &x, 1, ml);
    gradcheck("asymmetric_loss (no focusing or clip)", f_asl_plain, &x, 1, ml);
    {
        /* The focusing weight (1 - pt)^gamma is a constant (AsymmetricLoss
         * computes it with gradients disabled), so no finite difference of
         * the loss checks it: with DualCoOp's gammas (neg 2, pos 1) each
         * element's gradient is the unfocused one (same clip) times it. */
        double gw[2][20];
        for (int r = 0; r < 2; r++) {
            ct_graph *g = ct_graph_create(0);
            ct_tensor_zero_grad(x);
            ct_tensor *l = ct_asymmetric_loss(g, x, ml, r ? 2.0f : 0.0f, r ? 1.0f : 0.0f, 0.05f,
                                              1e-6f);
            CHECK_OK(l ? ct_backward(g, l) : CT_ERR_ARG);
            for (int i = 0; i < 20; i++) gw[r][i] = x->grad[i];
            ct_graph_free(g);
        }
        for (int i = 0; i < 20; i++) {
            double d = x->data[i], sp = 1 / (1 + exp(-d));
            double q = fmin(1 / (1 + exp(d)) + (double)0.05f, 1);
            double w = ml[i] < 0 ? 0 : ml[i] ? 1 - sp : (1 - q) * (1 - q);
            CHECK_NEAR("asymmetric_loss: focused gradient = weight * unfocused", gw[1][i],
                       w * gw[0][i], 1e-12, 1e-9);
        }
    }
    {
        /* without focusing or clip, ASL is the summed two-way cross-entropy:
         * -sum log sigma(+-d) over the known targets */
        ct_graph *g = ct_graph_create(0);
        ct_tensor *l = ct_asymmetric_loss(g, x, ml, 0, 0, 0, 1e-30f);
        double want = 0;
        for (int i = 0; i < 20; i++)
            if (ml[i] >= 0) want += log1p(exp(ml[i] ? -x->data[i] : x->data[i]));
        CHECK_MSG(l && fabs(l->data[0] - want) < 1e-5 * (1 + want), "asl plain %g vs %g",
                  l ? (double)l->data[0] : NAN, want);
        ct_graph_free(g);
    }
    ct_tensor *in[2] = {x, y};
    gradcheck("kl_div (through softmax)", f_kl, in, 2, NULL);
    /* direct: positive p (some exactly 0 to exercise the xlogy convention
     * would break the finite difference, so strictly positive here) */
    ct_tensor *p = INPUT(92, 1, 4, 5);
    for (int64_t i = 0; i < p->numel; i++) p->data[i] = fabs(p->data[i]) + 0.05;
    ct_tensor *raw[2] = {x, p};
    gradcheck("kl_div (direct)", f_kl_raw, raw, 2, NULL);
    gradcheck("entropy", f_entropy, &x, 1, NULL);
    ct_tensor_free(p);
    ct_tensor_free(x);
    ct_tensor_free(y);
}

typedef struct { int nh; bool causal; } att_ctx;
static ct_tensor *f_attention(ct_graph *g, ct_tensor *const *in, void *ctx) {
    att_ctx *c = ctx;
    return ct_attention(g, in[0], in[1], in[2], in[3], in[4], c->nh, c->causal);
}
static void test_attention(void) {
    for (int causal = 0; causal < 2; causal++)
        for (int extra = 0; extra < 2; extra++)
            for (int cross = 0; cross < 2; cross++) {
                int64_t B = 2, Tq = 4, Tk = cross ? 6 : 4, C = 8, P = 3;
                ct_tensor *in[5] = {INPUT(100, 1, B, Tq, C), INPUT(101, 1, B, Tk, C),
                                    INPUT(102, 1, B, Tk, C), extra ? INPUT(103, 1, P, C) : NULL,
                                    extra ? INPUT(104, 1, P, C) : NULL};
                att_ctx c = {2, causal};
                char name[96];
                snprintf(name, sizeof name, "attention causal=%d extra=%d Tq=%lld Tk=%lld", causal,
                         extra, (long long)Tq, (long long)Tk);
                gradcheck(name, f_attention, in, 5, &c);
                free_all(in, 5);
            }
}

int main(void) {
    ct_set_num_threads(2);
    RUN(test_linear);
    RUN(test_lora_dropout);
    RUN(test_matmul);
    RUN(test_binary);
    RUN(test_activations);
    RUN(test_layout);
    RUN(test_gather);
    RUN(test_norms);
    RUN(test_softmax_losses);
    RUN(test_attention);
    return ct_test_summary();
}
