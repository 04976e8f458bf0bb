/* Tape wiring for the dense-prediction layers: transposed convolution,
 * training-mode batch norm, max pooling, nearest / bilinear resizing and
 * per-pixel cross-entropy (NCHW, torch semantics; kernels_dense.c). */
#include <limits.h>
#include <string.h>

#include "autograd/graph.h"
#include "tensor/kernels.h"

/* ---- transposed convolution ---- */

static void convt_bw(ct_graph *g, ct_node *n) {
    ct_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    conv_transpose2d_backward(ct_op_grad(g, x), ct_op_grad(g, w), ct_op_grad(g, b),
                              n->saved[0], n->out->grad, x->data, w->data, x->shape[0],
                              x->shape[1], x->shape[2], x->shape[3], w->shape[1], w->shape[2],
                              n->i[0]);
}

ct_tensor *ct_conv_transpose2d(ct_graph *g, ct_tensor *x, ct_tensor *w, ct_tensor *b,
                               int stride) {
    ct_tensor *in[3] = {x, w, b};
    if (!ct_op_inputs_ok(g, in, 2)) return NULL;
    char s1[64], s2[64];
    if (stride < 1)
        return ct_op_fail(g, CT_ERR_ARG, "conv_transpose2d: stride %d must be >= 1", stride);
    if (x->ndim != 4 || w->ndim != 4 || w->shape[0] != x->shape[1] || w->shape[2] != w->shape[3])
        return ct_op_fail(g, CT_ERR_ARG, "conv_transpose2d: input %s and weight %s%s%s must be "
                          "(B, Cin, H, W) and (Cin, Cout, k, k)", ct_shape_str(x, s1, sizeof s1),
                          ct_shape_str(w, s2, sizeof s2), w->name ? " " : "",
                          w->name ? w->name : "");
    int64_t B = x->shape[0], Cin = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t Cout = w->shape[1], k = w->shape[2];
    if (b && b->numel != Cout)
        return ct_op_fail(g, CT_ERR_ARG, "conv_transpose2d: bias %s has %lld values, expected "
                          "%lld", ct_shape_str(b, s1, sizeof s1), (long long)b->numel,
                          (long long)Cout);
    int64_t Ho = (H - 1) * stride + k, Wo = (W - 1) * stride + k;
    if (H < 1 || W < 1 || k < 1 || Ho > INT_MAX / 2 || Wo > INT_MAX / 2 ||
        Cin > INT_MAX || Cout * k * k > INT_MAX || H * W > INT_MAX ||
        Cout * k * k * H * W > INT64_MAX / 8)
        return ct_op_fail(g, CT_ERR_ARG, "conv_transpose2d: input %s with weight %s has no "
                          "valid output size", ct_shape_str(x, s1, sizeof s1),
                          ct_shape_str(w, s2, sizeof s2));
    ct_tensor *out = ct_op_out(g, 4, (int64_t[]){B, Cout, Ho, Wo});
    ct_real *cols = ct_op_alloc(g, (size_t)(Cout * k * k * H * W) * sizeof(ct_real));
    if (!out || !cols) return NULL;
    conv_transpose2d_forward(out->data, cols, x->data, w->data, b ? b->data : NULL, B, Cin, H, W,
                             Cout, k, stride);
    if (ct_op_needs_grad(g, in, 3)) {
        ct_node *nd = ct_op_record(g, out, "conv_transpose2d", convt_bw, in, 3);
        if (!nd) return NULL;
        nd->i[0] = stride;
        nd->saved[0] = cols;
    }
    return out;
}

/* ---- training-mode batch norm ---- */

static void bn_train_bw(ct_graph *g, ct_node *n) {
    ct_tensor *x = n->in[0], *gamma = n->in[1], *beta = n->in[2];
    batchnorm_train_backward(ct_op_grad(g, x), ct_op_grad(g, gamma), ct_op_grad(g, beta),
                             n->out->grad, x->data, n->saved[0], n->saved[1],
                             gamma ? gamma->data : NULL, n->i[0], n->i[1], n->i[2]);
}

ct_tensor *ct_batchnorm_train(ct_graph *g, ct_tensor *x, ct_tensor *gamma, ct_tensor *beta,
                              ct_real *running_mean, ct_real *running_var, float momentum,
                              float eps) {
    ct_tensor *in[3] = {x, gamma, beta};
    if (!ct_op_inputs_ok(g, in, 1)) return NULL;
    char s1[64];
    if (x->ndim < 2)
        return ct_op_fail(g, CT_ERR_ARG, "batchnorm_train: input %s must be (B, C, ...)",
                          ct_shape_str(x, s1, sizeof s1));
    int64_t B = x->shape[0], C = x->shape[1], HW = B * C != 0 ? x->numel / (B * C) : 0;
    if ((gamma && gamma->numel != C) || (beta && beta->numel != C))
        return ct_op_fail(g, CT_ERR_ARG, "batchnorm_train: gamma / beta do not match %lld "
                          "channels of input %s", (long long)C, ct_shape_str(x, s1, sizeof s1));
    if (B * HW < 2)
        return ct_op_fail(g, CT_ERR_ARG, "batchnorm_train: input %s has one value per channel "
                          "(torch refuses it too)", ct_shape_str(x, s1, sizeof s1));
    if (!(eps >= 0) || !(momentum >= 0 && momentum <= 1))
        return ct_op_fail(g, CT_ERR_ARG, "batchnorm_train: eps %g must be >= 0 and momentum %g "
                          "in [0, 1]", (double)eps, (double)momentum);
    ct_tensor *out = ct_op_out(g, x->ndim, x->shape);
    ct_real *stats = ct_op_alloc(g, 2 * (size_t)(C ? C : 1) * sizeof(ct_real));
    if (!out || !stats) return NULL;
    batchnorm_train_forward(out->data, stats, stats + C, x->data, gamma ? gamma->data : NULL,
                            beta ? beta->data : NULL, B, C, HW, (ct_real)eps);
    /* torch: running = (1 - momentum) running + momentum batch, with the
     * unbiased variance */
    double unb = (double)(B * HW) / (double)(B * HW - 1);
    for (int64_t c = 0; c < C; c++) {
        double r = (double)stats[C + c], var = 1.0 / (r * r) - (double)eps;
        if (running_mean)
            running_mean[c] = (ct_real)((1 - momentum) * running_mean[c] + momentum * stats[c]);
        if (running_var)
            running_var[c] = (ct_real)((1 - momentum) * running_var[c] + momentum * var * unb);
    }
    if (ct_op_needs_grad(g, in, 3)) {
        ct_node *nd = ct_op_record(g, out, "batchnorm_train", bn_train_bw, in, 3);
        if (!nd) return NULL;
        nd->saved[0] = stats, nd->saved[1] = stats + C;
        nd->i[0] = B, nd->i[1] = C, nd->i[2] = HW;
    }
    return out;
}

/* ---- max pooling ---- */

static void max_pool_bw(ct_graph *g, ct_node *n) {
    ct_tensor *x = n->in[0];
    ct_real *dx = ct_op_grad(g, x);
    if (dx)
        max_pool2d_backward(dx, n->out->grad, n->saved[0], x->shape[0] * x->shape[1],
                            x->shape[2] * x->shape[3], n->out->shape[2] * n->out->shape[3]);
}

ct_tensor *ct_max_pool2d(ct_graph *g, ct_tensor *x, int k, int s) {
    if (!ct_op_inputs_ok(g, &x, 1)) return NULL;
    char s1[64];
    if (k < 1 || s < 1)
        return ct_op_fail(g, CT_ERR_ARG, "max_pool2d: kernel %d and stride %d must be >= 1", k,
                          s);
    if (x->ndim != 4 || x->shape[2] < k || x->shape[3] < k || x->shape[2] * x->shape[3] > INT_MAX)
        return ct_op_fail(g, CT_ERR_ARG, "max_pool2d: input %s must be (B, C, H, W) with "
                          "H, W >= kernel %d", ct_shape_str(x, s1, sizeof s1), k);
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t Ho = (H - k) / s + 1, Wo = (W - k) / s + 1;
    ct_tensor *out = ct_op_out(g, 4, (int64_t[]){B, C, Ho, Wo});
    int32_t *arg = ct_op_alloc(g, (size_t)(B * C * Ho * Wo > 0 ? B * C * Ho * Wo : 1) *
                                      sizeof(int32_t));
    if (!out || !arg) return NULL;
    max_pool2d_forward(out->data, arg, x->data, B, C, H, W, k, s);
    if (ct_op_needs_grad(g, &x, 1)) {
        ct_node *nd = ct_op_record(g, out, "max_pool2d", max_pool_bw, &x, 1);
        if (!nd) return NULL;
        nd->saved[0] = arg;
    }
    return out;
}

/* ---- resizing ---- */

static void resize_bw(ct_graph *g, ct_node *n) {
    ct_tensor *x = n->in[0];
    ct_real *dx = ct_op_grad(g, x);
    int64_t nd = x->ndim;
    if (dx)
        resize_backward(dx, n->out->grad, x->numel / (x->shape[nd - 2] * x->shape[nd - 1]),
                        x->shape[nd - 2], x->shape[nd - 1], n->out->shape[nd - 2],
                        n->out->shape[nd - 1], n->i[0] != 0);
}

ct_tensor *ct_resize2d(ct_graph *g, ct_tensor *x, int64_t Ho, int64_t Wo, bool bilinear) {
    if (!ct_op_inputs_ok(g, &x, 1)) return NULL;
    char s1[64];
    if (x->ndim < 2 || x->ndim > 4 || Ho < 1 || Wo < 1 || Ho > INT_MAX / 4 || Wo > INT_MAX / 4 ||
        x->shape[x->ndim - 2] < 1 || x->shape[x->ndim - 1] < 1)
        return ct_op_fail(g, CT_ERR_ARG, "resize2d: input %s must be (..., H, W) and the size "
                          "%lldx%lld positive", ct_shape_str(x, s1, sizeof s1), (long long)Ho,
                          (long long)Wo);
    int nd = x->ndim;
    int64_t H = x->shape[nd - 2], W = x->shape[nd - 1], shape[4];
    memcpy(shape, x->shape, (size_t)nd * sizeof *shape);
    shape[nd - 2] = Ho, shape[nd - 1] = Wo;
    ct_tensor *out = ct_op_out(g, nd, shape);
    if (!out) return NULL;
    resize_forward(out->data, x->data, x->numel / (H * W), H, W, Ho, Wo, bilinear);
    if (ct_op_needs_grad(g, &x, 1)) {
        ct_node *n = ct_op_record(g, out, bilinear ? "resize_bilinear" : "resize_nearest",
                                  resize_bw, &x, 1);
        if (!n) return NULL;
        n->i[0] = bilinear;
    }
    return out;
}

/* ---- per-pixel cross-entropy ---- */

static void pixel_ce_bw(ct_graph *g, ct_node *n) {
    ct_tensor *x = n->in[0];
    ct_real *dx = ct_op_grad(g, x);
    if (dx)
        pixel_ce_backward(dx, n->out->grad[0], n->saved[0], n->saved[1], x->shape[0],
                          x->shape[1], x->shape[2] * x->shape[3], (int)n->i[0], n->i[1]);
}

ct_tensor *ct_pixel_cross_entropy(ct_graph *g, ct_tensor *logits, const uint8_t *labels,
                                  int ignore_index, bool avg_non_ignore) {
    if (!ct_op_inputs_ok(g, &logits, 1)) return NULL;
    char s1[64];
    if (logits->ndim != 4 || !labels)
        return ct_op_fail(g, CT_ERR_ARG, "pixel_cross_entropy: logits %s must be (B, K, H, W) "
                          "with labels (B, H, W)", ct_shape_str(logits, s1, sizeof s1));
    int64_t B = logits->shape[0], K = logits->shape[1];
    int64_t HW = logits->shape[2] * logits->shape[3];
    for (int64_t i = 0; i < B * HW; i++)
        if (labels[i] != ignore_index && labels[i] >= K)
            return ct_op_fail(g, CT_ERR_ARG, "pixel_cross_entropy: label %d at pixel %lld is "
                              "outside [0, %lld) and not the ignore index %d", labels[i],
                              (long long)i, (long long)K, ignore_index);
    ct_tensor *out = ct_op_out(g, 1, (int64_t[]){1});
    ct_real *probs = ct_op_alloc(g, (size_t)(B * K * HW > 0 ? B * K * HW : 1) * sizeof(ct_real));
    if (!out || !probs) return NULL;
    int64_t nv = 0;
    pixel_ce_forward(out->data, probs, &nv, logits->data, labels, B, K, HW, ignore_index,
                     avg_non_ignore);
    if (ct_op_needs_grad(g, &logits, 1)) {
        ct_node *nd = ct_op_record(g, out, "pixel_cross_entropy", pixel_ce_bw, &logits, 1);
        uint8_t *lab = ct_op_alloc(g, (size_t)(B * HW > 0 ? B * HW : 1));
        if (!nd || !lab) return NULL;
        memcpy(lab, labels, (size_t)(B * HW));
        nd->saved[0] = probs, nd->saved[1] = lab;
        nd->i[0] = ignore_index, nd->i[1] = avg_non_ignore ? nv : B * HW;
    }
    return out;
}
