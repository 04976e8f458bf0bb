/* Forward/backward kernel pairs, in llm.c's manner: outputs first, then saved
 * state, inputs, parameters, sizes. Backward kernels accumulate (+=) into
 * their gradient outputs; a NULL gradient pointer means "frozen, skip".
 * All arrays are contiguous row-major ct_real. */
#ifndef CT_TENSOR_KERNELS_H
#define CT_TENSOR_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#include "cliptune.h"

/* ---- linear / matmul (kernels_linear.c) ---- */
/* out (N, OC) = inp (N, C) @ w (OC, C)^T + b (OC, may be NULL) */
void linear_forward(ct_real *out, const ct_real *inp, const ct_real *w, const ct_real *b,
                    int64_t N, int64_t C, int64_t OC);
void linear_backward(ct_real *dinp, ct_real *dw, ct_real *db, const ct_real *dout,
                     const ct_real *inp, const ct_real *w, int64_t N, int64_t C, int64_t OC);
/* LoRA on a frozen linear layer, fused (src/tensor/kernels_linear.c):
 * out (N, OC) = inp wᵀ + b + s ((inp ⊙ m) aᵀ) bmᵀ with a (R, C), bm (OC, R)
 * and an inverted-dropout mask m of rate p drawn per element from seed
 * (regenerated in backward, never stored); u (N, R) = (inp ⊙ m) aᵀ is saved
 * by the forward. Backward: dinp, da, dbm (each may be NULL) accumulate;
 * du (N, R) and part (n_part, R, C) are scratch (n_part row blocks: the sum
 * does not depend on the thread count); no gradient for w or b. */
void lora_forward(ct_real *out, ct_real *u, const ct_real *inp, const ct_real *w,
                  const ct_real *b, const ct_real *a, const ct_real *bm, ct_real s, float p,
                  uint64_t seed, int64_t N, int64_t C, int64_t OC, int64_t R);
void lora_backward(ct_real *dinp, ct_real *da, ct_real *dbm, const ct_real *dout,
                   const ct_real *inp, const ct_real *w, const ct_real *a, const ct_real *bm,
                   const ct_real *u, ct_real *du, ct_real *part, int n_part, ct_real s,
                   float p, uint64_t seed, int64_t N, int64_t C, int64_t OC, int64_t R);
/* Inverted dropout with the mask regenerated from (seed, element). */
void dropout_forward(ct_real *out, const ct_real *inp, float p, uint64_t seed, int64_t n);
void dropout_backward(ct_real *dinp, const ct_real *dout, float p, uint64_t seed, int64_t n);
/* C (M, N) per batch = op(A) op(B); A batch stride sa, B batch stride sb (0:
 * shared), C contiguous. */
void matmul_forward(ct_real *c, const ct_real *a, const ct_real *b, int64_t batch, int64_t M,
                    int64_t N, int64_t K, bool ta, bool tb, int64_t sa, int64_t sb);
void matmul_backward(ct_real *da, ct_real *db, const ct_real *dc, const ct_real *a,
                     const ct_real *b, int64_t batch, int64_t M, int64_t N, int64_t K, bool ta,
                     bool tb, int64_t sa, int64_t sb);

/* ---- elementwise (kernels_eltwise.c) ---- */
/* b is broadcast with period P: out[i] = a[i] op b[i % P]; n % P == 0. */
typedef enum { CT_BIN_ADD, CT_BIN_SUB, CT_BIN_MUL } ct_binop;
void binary_forward(ct_real *out, const ct_real *a, const ct_real *b, int64_t n, int64_t P,
                    ct_binop op);
void binary_backward(ct_real *da, ct_real *db, const ct_real *dout, const ct_real *a,
                     const ct_real *b, int64_t n, int64_t P, ct_binop op);
void scale_forward(ct_real *out, const ct_real *x, ct_real s, int64_t n);
void scale_backward(ct_real *dx, const ct_real *dout, ct_real s, int64_t n);
/* dx += dout (identity backward, also reshape/view). */
void accumulate(ct_real *dx, const ct_real *dout, int64_t n);

typedef enum {
    CT_ACT_GELU, CT_ACT_QUICK_GELU, CT_ACT_RELU, CT_ACT_SIGMOID, CT_ACT_TANH, CT_ACT_EXP,
    CT_ACT_LOG
} ct_act;
void act_forward(ct_real *out, const ct_real *x, int64_t n, ct_act act);
/* out (N, OC) = act(inp (N, C) w (OC, C)ᵀ + b + res (N, OC)) in one pass
 * over out where the engine's GEMM can (float; GELU, QuickGELU or none:
 * act < 0), else GEMM, then add, then activation. b, res may be NULL; res
 * must not overlap out. */
struct ct_wpack;
/* pk: w's bf16 copy (inference only; NULL: fp32) */
void linear_forward_ex(ct_real *out, const ct_real *inp, const ct_real *w,
                       const struct ct_wpack *pk, const ct_real *b, const ct_real *res, int64_t N,
                       int64_t C, int64_t OC, int act);
/* Needs x and the forward output y. */
void act_backward(ct_real *dx, const ct_real *dout, const ct_real *x, const ct_real *y,
                  int64_t n, ct_act act);

/* ---- normalisation (kernels_norm.c) ---- */
void layernorm_forward(ct_real *out, ct_real *mean, ct_real *rstd, const ct_real *inp,
                       const ct_real *w, const ct_real *b, int64_t N, int64_t C, ct_real eps);
void layernorm_backward(ct_real *dinp, ct_real *dw, ct_real *db, const ct_real *dout,
                        const ct_real *inp, const ct_real *w, const ct_real *mean,
                        const ct_real *rstd, int64_t N, int64_t C);
/* norm (N): max(||x||, eps) per row */
void l2norm_forward(ct_real *out, ct_real *norm, const ct_real *inp, int64_t N, int64_t C,
                    ct_real eps);
void l2norm_backward(ct_real *dinp, const ct_real *dout, const ct_real *out, const ct_real *norm,
                     ct_real eps, int64_t N, int64_t C);

/* ---- softmax family and losses (kernels_softmax.c) ---- */
void softmax_forward(ct_real *out, const ct_real *inp, int64_t N, int64_t C);
void softmax_backward(ct_real *dinp, const ct_real *dout, const ct_real *out, int64_t N,
                      int64_t C);
void log_softmax_forward(ct_real *out, const ct_real *inp, int64_t N, int64_t C);
void log_softmax_backward(ct_real *dinp, const ct_real *dout, const ct_real *out, int64_t N,
                          int64_t C);
/* probs (N, K) saved; loss scalar = mean over rows. */
void cross_entropy_forward(ct_real *loss, ct_real *probs, const ct_real *logits,
                           const int64_t *labels, int64_t N, int64_t K, ct_real ls);
void cross_entropy_backward(ct_real *dlogits, ct_real dloss, const ct_real *probs,
                            const int64_t *labels, int64_t N, int64_t K, ct_real ls);
void asl_forward(ct_real *loss, const ct_real *d, const int8_t *y, int64_t n, ct_real gn,
                 ct_real gp, ct_real clip, ct_real eps);
void asl_backward(ct_real *dd, ct_real dloss, const ct_real *d, const int8_t *y, int64_t n,
                  ct_real gn, ct_real gp, ct_real clip, ct_real eps);
void bce_logits_forward(ct_real *loss, const ct_real *x, const ct_real *t, int64_t n);
void bce_logits_backward(ct_real *dx, ct_real dloss, const ct_real *x, const ct_real *t,
                         int64_t n);
void kl_div_forward(ct_real *loss, const ct_real *log_q, const ct_real *p, int64_t N, int64_t K);
void kl_div_backward(ct_real *dlog_q, ct_real *dp, ct_real dloss, const ct_real *log_q,
                     const ct_real *p, int64_t N, int64_t K);
/* probs (N, K) and per-row entropy h (N) saved. */
void entropy_forward(ct_real *loss, ct_real *probs, ct_real *h, const ct_real *logits, int64_t N,
                     int64_t K);
void entropy_backward(ct_real *dlogits, ct_real dloss, const ct_real *probs, const ct_real *h,
                      int64_t N, int64_t K);

/* ---- layout (kernels_layout.c) ---- */
/* Reduction over the middle of (outer, n, inner). */
void sum_dim_forward(ct_real *out, const ct_real *inp, int64_t outer, int64_t n, int64_t inner,
                     ct_real scale);
void sum_dim_backward(ct_real *dinp, const ct_real *dout, int64_t outer, int64_t n,
                      int64_t inner, ct_real scale);
/* Copy (or with add, accumulate) block [start, start+len) of the middle dim
 * of (outer, n, inner) into (outer, len, inner); backward adds it back into
 * the big tensor; slice_place copies a block in (concat's forward). */
void slice_forward(ct_real *out, const ct_real *inp, int64_t outer, int64_t n, int64_t inner,
                   int64_t start, int64_t len, bool add);
void slice_backward(ct_real *dinp, const ct_real *dout, int64_t outer, int64_t n, int64_t inner,
                    int64_t start, int64_t len);
void slice_place(ct_real *out, const ct_real *inp, int64_t outer, int64_t n, int64_t inner,
                 int64_t start, int64_t len);
void gather_rows_forward(ct_real *out, const ct_real *table, const int64_t *ids, int64_t n,
                         int64_t C);
void gather_rows_backward(ct_real *dtable, const ct_real *dout, const int64_t *ids, int64_t n,
                          int64_t C);
/* Swap dims d0 < d1 of a 4-D (padded) shape. */
void transpose_forward(ct_real *out, const ct_real *inp, const int64_t *shape4, int d0, int d1);

/* ---- attention (kernels_attention.c) ---- */
/* q (B, Tq, C); k, v (B, Tk, C); ek, ev (P, C) or NULL with P = 0.
 * att (B, NH, Tq, P + Tk): the softmax probabilities, for backward (NULL: none kept). scratch holds
 * attention_scratch_size(..., false) values. */
void attention_forward(ct_real *out, ct_real *att, ct_real *scratch, const ct_real *q,
                       const ct_real *k, const ct_real *v, const ct_real *ek, const ct_real *ev,
                       int64_t B, int64_t Tq, int64_t Tk, int64_t P, int64_t C, int64_t NH,
                       bool causal);
/* Values of scratch forward/backward need with nthreads OpenMP threads:
 * per-thread packed copies of one head, plus (backward) per-batch partial
 * sums for dek/dev, reduced at the end (race-free, deterministic). */
size_t attention_scratch_size(int64_t B, int64_t Tq, int64_t Tk, int64_t P, int64_t C,
                              int64_t NH, int nthreads, bool backward);
void attention_backward(ct_real *dq, ct_real *dk, ct_real *dv, ct_real *dek, ct_real *dev,
                        ct_real *scratch, const ct_real *dout, const ct_real *att,
                        const ct_real *q, const ct_real *k, const ct_real *v,
                        const ct_real *ek, const ct_real *ev, int64_t B, int64_t Tq,
                        int64_t Tk, int64_t P, int64_t C, int64_t NH, bool causal);

/* ---- convolution family (kernels_conv.c) ---- */
/* Patch embedding, conv with kernel = stride = p, no bias: x (B, Cin, H, W),
 * w (D, Cin, p, p), out (B, Hp*Wp, D) with Hp = H/p, Wp = W/p (floor).
 * cols (B*Hp*Wp, Cin*p*p) is written by forward (im2col) and read by backward
 * for dw; keep it until backward. */
void patch_embed_forward(ct_real *out, ct_real *cols, const ct_real *x, const ct_real *w,
                         int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t D, int64_t p);
void patch_embed_backward(ct_real *dx, ct_real *dw, const ct_real *dout, const ct_real *cols,
                          const ct_real *w, int64_t B, int64_t Cin, int64_t H, int64_t W,
                          int64_t D, int64_t p);
/* x (B, Cin, H, W), w (Cout, Cin, kh, kw), b (Cout) or NULL, out (B, Cout, Ho,
 * Wo), Ho = (H + 2*pad - kh)/stride + 1. cols is scratch for ONE batch
 * element: Cin*kh*kw*Ho*Wo values (batches are looped in order, the GEMMs use
 * BLAS threads). Its contents are not needed between forward and backward
 * (backward recomputes them), and it is not touched at all (may be NULL) for a
 * pointwise conv: kh == kw == 1, stride 1, pad 0. */
void conv2d_forward(ct_real *out, const ct_real *x, const ct_real *w, const ct_real *b,
                    ct_real *cols, int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t Cout,
                    int64_t kh, int64_t kw, int64_t stride, int64_t pad);
void conv2d_backward(ct_real *dx, ct_real *dw, ct_real *db, ct_real *cols, const ct_real *dout,
                     const ct_real *x, const ct_real *w, int64_t B, int64_t Cin, int64_t H,
                     int64_t W, int64_t Cout, int64_t kh, int64_t kw, int64_t stride,
                     int64_t pad);
/* Eval-mode batch norm over dim 1 of (B, C, HW): rm, rv (C); gamma, beta (C)
 * or NULL (1 and 0). */
void batchnorm_frozen_forward(ct_real *out, const ct_real *x, const ct_real *rm,
                              const ct_real *rv, const ct_real *gamma, const ct_real *beta,
                              int64_t B, int64_t C, int64_t HW, ct_real eps);
void batchnorm_frozen_backward(ct_real *dx, ct_real *dgamma, ct_real *dbeta, const ct_real *dout,
                               const ct_real *x, const ct_real *rm, const ct_real *rv,
                               const ct_real *gamma, int64_t B, int64_t C, int64_t HW,
                               ct_real eps);
/* k x k windows, stride s, no padding: Ho = (H - k)/s + 1. */
void avg_pool2d_forward(ct_real *out, const ct_real *x, int64_t B, int64_t C, int64_t H,
                        int64_t W, int64_t k, int64_t s);
void avg_pool2d_backward(ct_real *dx, const ct_real *dout, int64_t B, int64_t C, int64_t H,
                         int64_t W, int64_t k, int64_t s);

/* ---- optimal transport (kernels_ot.c) ---- */
/* plan (B, M, N); scratch: B * (M + N) * 2 values. Returns iterations run. */
int sinkhorn_forward(ct_real *plan, ct_real *scratch, const ct_real *cost, const ct_real *r,
                     const ct_real *c, int64_t B, int64_t M, int64_t N, ct_real eps, int iters,
                     ct_real tol);

/* ---- dense-prediction layers (kernels_dense.c) ---- */
/* Transposed convolution, no padding: x (B, Cin, H, W), w (Cin, Cout, k, k)
 * (torch layout), b (Cout) or NULL; out (B, Cout, (H-1)s + k, (W-1)s + k);
 * cols: scratch of Cout k k H W values. */
void conv_transpose2d_forward(ct_real *out, ct_real *cols, const ct_real *x, const ct_real *w,
                              const ct_real *b, int64_t B, int64_t Cin, int64_t H, int64_t W,
                              int64_t Cout, int64_t k, int64_t s);
/* cols: scratch of Cout k k H W values (one batch element), as forward's. */
void conv_transpose2d_backward(ct_real *dx, ct_real *dw, ct_real *db, ct_real *cols,
                               const ct_real *dout, const ct_real *x, const ct_real *w,
                               int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t Cout,
                               int64_t k, int64_t s);
/* Training-mode batch norm over (B, HW) per channel of (B, C, HW): the batch
 * mean and 1/sqrt(biased var + eps) saved in mean, rstd (C). */
void batchnorm_train_forward(ct_real *out, ct_real *mean, ct_real *rstd, const ct_real *x,
                             const ct_real *gamma, const ct_real *beta, int64_t B, int64_t C,
                             int64_t HW, ct_real eps);
void batchnorm_train_backward(ct_real *dx, ct_real *dgamma, ct_real *dbeta, const ct_real *dout,
                              const ct_real *x, const ct_real *mean, const ct_real *rstd,
                              const ct_real *gamma, int64_t B, int64_t C, int64_t HW);
/* Max pooling k x k, stride s, no padding; arg (B, C, Ho, Wo) the flat index
 * of each maximum within its plane. */
void max_pool2d_forward(ct_real *out, int32_t *arg, const ct_real *x, int64_t B, int64_t C,
                        int64_t H, int64_t W, int64_t k, int64_t s);
void max_pool2d_backward(ct_real *dx, const ct_real *dout, const int32_t *arg, int64_t BC,
                         int64_t HW, int64_t HWo);
/* F.interpolate(x, size=(Ho, Wo)) of (BC, H, W) planes, mode "nearest" or
 * "bilinear" with align_corners=False. */
void resize_forward(ct_real *out, const ct_real *x, int64_t BC, int64_t H, int64_t W, int64_t Ho,
                    int64_t Wo, bool bilinear);
void resize_backward(ct_real *dx, const ct_real *dout, int64_t BC, int64_t H, int64_t W,
                     int64_t Ho, int64_t Wo, bool bilinear);
/* Per-pixel cross-entropy of logits (B, K, HW) against labels (B, HW);
 * pixels labelled ignore contribute 0; the sum over the others divided by
 * their count (avg_non_ignore) or by every pixel (B*HW). probs (B, K, HW)
 * saved, *n_valid the non-ignored count. Backward takes the divisor. */
void pixel_ce_forward(ct_real *loss, ct_real *probs, int64_t *n_valid, const ct_real *logits,
                      const uint8_t *labels, int64_t B, int64_t K, int64_t HW, int ignore,
                      bool avg_non_ignore);
void pixel_ce_backward(ct_real *dlogits, ct_real dloss, const ct_real *probs,
                       const uint8_t *labels, int64_t B, int64_t K, int64_t HW, int ignore,
                       int64_t den);

#endif
