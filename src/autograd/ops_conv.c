/* Tape wiring for the convolution family: patch embedding, conv2d, frozen
 * batch norm and average pooling (all NCHW, torch semantics). */
#include <limits.h>
#include <string.h>

#include "autograd/graph.h"
#include "tensor/kernels.h"

/* GEMM dimensions are int (CBLAS): refuse anything that would not fit. */
static bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

/* ---- patch embedding ---- */

static void patch_embed_bw(ct_graph *g, ct_node *n) {
    ct_tensor *x = n->in[0], *w = n->in[1];
    patch_embed_backward(ct_op_grad(g, x), ct_op_grad(g, w), n->out->grad, n->saved[0],
                         w->data, n->i[0], n->i[1], n->i[2], n->i[3], n->i[4], n->i[5]);
}

ct_tensor *ct_patch_embed(ct_graph *g, ct_tensor *x, ct_tensor *w, int p) {
    ct_tensor *in[2] = {x, w};
    if (!ct_op_inputs_ok(g, in, 2)) return NULL;
    char s1[64], s2[64];
    if (p < 1)
        return ct_op_fail(g, CT_ERR_ARG, "patch_embed: patch size %d must be >= 1", p);
    if (x->ndim != 4 || w->ndim != 4 || w->shape[1] != x->shape[1] || w->shape[2] != p ||
        w->shape[3] != p)
        return ct_op_fail(g, CT_ERR_ARG, "patch_embed: input %s and weight %s%s%s must be "
                          "(B, Cin, H, W) and (D, Cin, %d, %d)", ct_shape_str(x, s1, sizeof s1),
                          ct_shape_str(w, s2, sizeof s2), w->name ? " " : "",
                          w->name ? w->name : "", p, p);
    int64_t B = x->shape[0], Cin = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t D = w->shape[0], Hp = H / p, Wp = W / p, K = Cin * p * p;
    if (Hp < 1 || Wp < 1)
        return ct_op_fail(g, CT_ERR_ARG, "patch_embed: input %s is smaller than one %dx%d patch",
                          ct_shape_str(x, s1, sizeof s1), p, p);
    if (!fits_int(B * Hp * Wp) || !fits_int(K) || !fits_int(D) || !fits_int(W))
        return ct_op_fail(g, CT_ERR_UNSUPPORTED, "patch_embed: input %s is too large",
                          ct_shape_str(x, s1, sizeof s1));
    ct_tensor *out = ct_op_out(g, 3, (int64_t[]){B, Hp * Wp, D});
    ct_real *cols = ct_op_alloc(g, (size_t)(B * Hp * Wp) * (size_t)K * sizeof(ct_real));
    if (!out || !cols) return NULL;
    patch_embed_forward(out->data, cols, x->data, w->data, B, Cin, H, W, D, p);
    if (ct_op_needs_grad(g, in, 2)) {
        ct_node *nd = ct_op_record(g, out, "patch_embed", patch_embed_bw, in, 2);
        if (!nd) return NULL;
        nd->saved[0] = cols;
        int64_t args[6] = {B, Cin, H, W, D, p};
        for (int i = 0; i < 6; i++) nd->i[i] = args[i];
    }
    return out;
}

/* ---- conv2d ---- */

static void conv2d_bw(ct_graph *g, ct_node *n) {
    ct_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    int64_t B = x->shape[0], Cin = x->shape[1], H = x->shape[2], W = x->shape[3];
    conv2d_backward(ct_op_grad(g, x), ct_op_grad(g, w), ct_op_grad(g, b), n->saved[0],
                    n->out->grad, x->data, w->data, B, Cin, H, W, w->shape[0], w->shape[2],
                    w->shape[3], n->i[0], n->i[1]);
}

ct_tensor *ct_conv2d(ct_graph *g, ct_tensor *x, ct_tensor *w, ct_tensor *b, int stride,
                     int pad) {
    ct_tensor *in[3] = {x, w, b};
    if (!ct_op_inputs_ok(g, in, 2)) return NULL;
    char s1[64], s2[64];
    if (stride < 1 || pad < 0)
        return ct_op_fail(g, CT_ERR_ARG, "conv2d: stride %d must be >= 1 and padding %d >= 0",
                          stride, pad);
    if (x->ndim != 4 || w->ndim != 4 || w->shape[1] != x->shape[1])
        return ct_op_fail(g, CT_ERR_ARG, "conv2d: input %s and weight %s%s%s must be "
                          "(B, Cin, H, W) and (Cout, Cin, kh, kw)",
                          ct_shape_str(x, s1, sizeof s1), ct_shape_str(w, s2, sizeof s2),
                          w->name ? " " : "", w->name ? w->name : "");
    int64_t B = x->shape[0], Cin = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t Cout = w->shape[0], kh = w->shape[2], kw = w->shape[3];
    if (H + 2 * (int64_t)pad < kh || W + 2 * (int64_t)pad < kw)
        return ct_op_fail(g, CT_ERR_ARG, "conv2d: kernel %lldx%lld does not fit input %s "
                          "padded by %d", (long long)kh, (long long)kw,
                          ct_shape_str(x, s1, sizeof s1), pad);
    if (b && b->numel != Cout)
        return ct_op_fail(g, CT_ERR_ARG, "conv2d: bias %s has %lld values, expected %lld",
                          ct_shape_str(b, s1, sizeof s1), (long long)b->numel, (long long)Cout);
    int64_t Ho = (H + 2 * pad - kh) / stride + 1, Wo = (W + 2 * pad - kw) / stride + 1;
    int64_t K = Cin * kh * kw, L = Ho * Wo;
    if (!fits_int(K) || !fits_int(L) || !fits_int(Cout) || !fits_int(H * W))
        return ct_op_fail(g, CT_ERR_UNSUPPORTED, "conv2d: input %s with weight %s is too large",
                          ct_shape_str(x, s1, sizeof s1), ct_shape_str(w, s2, sizeof s2));
    ct_tensor *out = ct_op_out(g, 4, (int64_t[]){B, Cout, Ho, Wo});
    if (!out) return NULL;
    /* One batch element of im2col scratch (see kernels.h); the pointwise
     * case reads x directly and needs none. The same buffer serves backward. */
    ct_real *cols = NULL;
    if (!(kh == 1 && kw == 1 && stride == 1 && pad == 0)) {
        cols = ct_op_alloc(g, (size_t)K * (size_t)L * sizeof(ct_real));
        if (!cols) return NULL;
    }
    conv2d_forward(out->data, x->data, w->data, b ? b->data : NULL, cols, B, Cin, H, W, Cout, kh,
                   kw, stride, pad);
    if (ct_op_needs_grad(g, in, 3)) {
        ct_node *nd = ct_op_record(g, out, "conv2d", conv2d_bw, in, 3);
        if (!nd) return NULL;
        nd->saved[0] = cols;
        nd->i[0] = stride, nd->i[1] = pad;
    }
    return out;
}

/* ---- frozen batch norm ---- */

static void batchnorm_bw(ct_graph *g, ct_node *n) {
    ct_tensor *x = n->in[0], *gamma = n->in[1], *beta = n->in[2];
    batchnorm_frozen_backward(ct_op_grad(g, x), ct_op_grad(g, gamma), ct_op_grad(g, beta),
                              n->out->grad, x->data, n->saved[0], n->saved[1],
                              gamma ? gamma->data : NULL, n->i[0], n->i[1], n->i[2],
                              (ct_real)n->f[0]);
}

ct_tensor *ct_batchnorm_frozen(ct_graph *g, ct_tensor *x, const ct_real *running_mean,
                               const ct_real *running_var, ct_tensor *gamma, ct_tensor *beta,
                               float eps) {
    ct_tensor *in[3] = {x, gamma, beta};
    if (!ct_op_inputs_ok(g, in, 1)) return NULL;
    char s1[64], s2[64], s3[64];
    if (x->ndim < 2)
        return ct_op_fail(g, CT_ERR_ARG, "batchnorm_frozen: input %s must be (B, C, ...)",
                          ct_shape_str(x, s1, sizeof s1));
    if (!running_mean || !running_var)
        return ct_op_fail(g, CT_ERR_ARG, "batchnorm_frozen: running mean and variance are "
                          "required");
    int64_t B = x->shape[0], C = x->shape[1], HW = B * C != 0 ? x->numel / (B * C) : 0;
    if ((gamma && gamma->numel != C) || (beta && beta->numel != C))
        return ct_op_fail(g, CT_ERR_ARG, "batchnorm_frozen: gamma %s / beta %s do not match "
                          "%lld channels of input %s",
                          gamma ? ct_shape_str(gamma, s1, sizeof s1) : "NULL",
                          beta ? ct_shape_str(beta, s2, sizeof s2) : "NULL", (long long)C,
                          ct_shape_str(x, s3, sizeof s3));
    if (!(eps >= 0))
        return ct_op_fail(g, CT_ERR_ARG, "batchnorm_frozen: eps %g must be >= 0", (double)eps);
    /* Copy the statistics: backward must see the values forward used even if
     * the caller's buffers change in between. */
    ct_real *stats = ct_op_alloc(g, 2 * (size_t)(C ? C : 1) * sizeof(ct_real));
    if (!stats) return NULL;
    for (int64_t c = 0; c < C; c++) {
        if (!(running_var[c] + (ct_real)eps > 0))
            return ct_op_fail(g, CT_ERR_ARG, "batchnorm_frozen: running_var[%lld] + eps = %g "
                              "is not positive", (long long)c,
                              (double)(running_var[c] + (ct_real)eps));
        stats[c] = running_mean[c];
        stats[C + c] = running_var[c];
    }
    ct_tensor *out = ct_op_out(g, x->ndim, x->shape);
    if (!out) return NULL;
    batchnorm_frozen_forward(out->data, x->data, stats, stats + C, gamma ? gamma->data : NULL,
                             beta ? beta->data : NULL, B, C, HW, (ct_real)eps);
    if (ct_op_needs_grad(g, in, 3)) {
        ct_node *nd = ct_op_record(g, out, "batchnorm_frozen", batchnorm_bw, in, 3);
        if (!nd) return NULL;
        nd->saved[0] = stats, nd->saved[1] = stats + C;
        nd->i[0] = B, nd->i[1] = C, nd->i[2] = HW;
        nd->f[0] = eps;
    }
    return out;
}

/* ---- average pooling ---- */

static void avg_pool_bw(ct_graph *g, ct_node *n) {
    ct_tensor *x = n->in[0];
    ct_real *dx = ct_op_grad(g, x);
    if (dx)
        avg_pool2d_backward(dx, n->out->grad, x->shape[0], x->shape[1], x->shape[2], x->shape[3],
                            n->i[0], n->i[1]);
}

ct_tensor *ct_avg_pool2d(ct_graph *g, ct_tensor *x, int k, int s) {
    if (!ct_op_inputs_ok(g, &x, 1)) return NULL;
    char s1[64];
    if (k < 1 || s < 1)
        return ct_op_fail(g, CT_ERR_ARG, "avg_pool2d: kernel %d and stride %d must be >= 1", k,
                          s);
    if (x->ndim != 4 || x->shape[2] < k || x->shape[3] < k)
        return ct_op_fail(g, CT_ERR_ARG, "avg_pool2d: input %s must be (B, C, H, W) with "
                          "H, W >= kernel %d", ct_shape_str(x, s1, sizeof s1), k);
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t Ho = (H - k) / s + 1, Wo = (W - k) / s + 1;
    ct_tensor *out = ct_op_out(g, 4, (int64_t[]){B, C, Ho, Wo});
    if (!out) return NULL;
    avg_pool2d_forward(out->data, x->data, B, C, H, W, k, s);
    if (ct_op_needs_grad(g, &x, 1)) {
        ct_node *nd = ct_op_record(g, out, "avg_pool2d", avg_pool_bw, &x, 1);
        if (!nd) return NULL;
        nd->i[0] = k, nd->i[1] = s;
    }
    return out;
}
