/* Gradient checks (double precision) through whole transformer blocks: the
 * composition of ops must differentiate correctly end to end, with the
 * hook inserting and replacing tokens between layers (deep prompts). */
#include "nn/transformer.h"
#include "gradcheck.h"

enum { C = 8, H = 2, T = 5, B = 2, L = 2, NPROMPT = 2 };

static ct_tensor *rnd(uint64_t seed, int64_t d0, int64_t d1, double std) {
    int64_t s[2] = {d0, d1};
    return gc_input(seed, d1 ? 2 : 1, d1 ? s : &d0, std);
}

static void make_block(ct_block *b, uint64_t seed) {
    b->ln1_w = rnd(seed + 1, C, 0, 1), b->ln1_b = rnd(seed + 2, C, 0, 0.1);
    b->q_w = rnd(seed + 3, C, C, 0.4), b->q_b = rnd(seed + 4, C, 0, 0.1);
    b->k_w = rnd(seed + 5, C, C, 0.4), b->k_b = rnd(seed + 6, C, 0, 0.1);
    b->v_w = rnd(seed + 7, C, C, 0.4), b->v_b = rnd(seed + 8, C, 0, 0.1);
    b->o_w = rnd(seed + 9, C, C, 0.4), b->o_b = rnd(seed + 10, C, 0, 0.1);
    b->ln2_w = rnd(seed + 11, C, 0, 1), b->ln2_b = rnd(seed + 12, C, 0, 0.1);
    b->fc1_w = rnd(seed + 13, 4 * C, C, 0.4), b->fc1_b = rnd(seed + 14, 4 * C, 0, 0.1);
    b->fc2_w = rnd(seed + 15, C, 4 * C, 0.2), b->fc2_b = rnd(seed + 16, C, 0, 0.1);
    for (int i = 0; i < C; i++) b->ln1_w->data[i] += 1, b->ln2_w->data[i] += 1;
}

static ct_tensor **block_params(ct_block *b) { return &b->ln1_w; }
enum { NPARAM = 16 };

typedef struct {
    ct_block blocks[L];
    bool causal;
    ct_activation act;
    ct_tensor *prompt[L]; /* (NPROMPT, C) per layer, or NULL */
} ctx_t;

/* MaPLe-style: append prompts at the input, replace the last NPROMPT tokens
 * before later layers. */
static ct_tensor *expand(ct_graph *g, ct_tensor *p, int64_t batch) {
    int64_t s[3] = {batch, p->shape[0], p->shape[1]};
    return ct_add(g, ct_graph_tensor(g, 3, s), p);
}
static ct_tensor *hook(ct_graph *g, int layer, ct_tensor *x, void *vctx) {
    ctx_t *c = vctx;
    if (layer < 0 || !c->prompt[layer]) return x;
    ct_tensor *parts[2] = {layer == 0 ? x : ct_slice(g, x, 1, 0, x->shape[1] - NPROMPT),
                           expand(g, c->prompt[layer], x->shape[0])};
    return ct_concat(g, parts, 2, 1);
}

/* in[0] = x; in[1..] = block 0 params, block 1 params, prompts */
static ct_tensor *f_stack(ct_graph *g, ct_tensor *const *in, void *vctx) {
    ctx_t *c = vctx;
    return ct_transformer_forward(g, c->blocks, L, in[0], H, c->causal, c->act, 1e-5f, hook, c);
}

static void run(const char *name, bool causal, ct_activation act, bool prompts) {
    ctx_t c = {.causal = causal, .act = act};
    ct_tensor *in[1 + L * NPARAM + L];
    int64_t xs[3] = {B, T, C};
    in[0] = gc_input(1, 3, xs, 1);
    int n = 1;
    for (int l = 0; l < L; l++) {
        make_block(&c.blocks[l], 100 * (uint64_t)(l + 1));
        for (int k = 0; k < NPARAM; k++) in[n++] = block_params(&c.blocks[l])[k];
    }
    for (int l = 0; l < L; l++) {
        c.prompt[l] = prompts ? rnd(900 + (uint64_t)l, NPROMPT, C, 1) : NULL;
        in[n++] = c.prompt[l];
    }
    /* the whole stack at once (every input trained), then the prompts alone
     * with every weight frozen: the prompt-tuning case */
    gradcheck_tol(name, f_stack, in, n, &c, 1e-7, 1e-5);
    if (prompts) {
        bool saved[64];
        for (int k = 0; k < n - L; k++) saved[k] = in[k]->requires_grad, in[k]->requires_grad = false;
        char label[128];
        snprintf(label, sizeof label, "%s, frozen weights", name);
        gradcheck_tol(label, f_stack, in, n, &c, 1e-7, 1e-5);
        for (int k = 0; k < n - L; k++) in[k]->requires_grad = saved[k];
    }
    for (int k = 0; k < n; k++) ct_tensor_free(in[k]);
}

static void test_block_quick_gelu(void) { run("2 blocks, QuickGELU", false, CT_QUICK_GELU, false); }
static void test_block_gelu_causal(void) { run("2 blocks, GELU, causal", true, CT_GELU, false); }
static void test_deep_prompts(void) { run("2 blocks with deep prompts", false, CT_QUICK_GELU, true); }

int main(void) {
    RUN(test_block_quick_gelu);
    RUN(test_block_gelu_causal);
    RUN(test_deep_prompts);
    return ct_test_summary();
}
