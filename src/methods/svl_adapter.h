/* SVL-Adapter's pieces (svl_adapter.c), exposed for the parity test
 * (tests/test_svl_adapter.c) and used by the method itself. */
#ifndef CT_METHODS_SVL_ADAPTER_H
#define CT_METHODS_SVL_ADAPTER_H

#include "cliptune.h"

/* relu(fc2(relu(fc1 x))) when last_relu, else fc2(relu(fc1 x)); p holds fc1
 * w, b, fc2 w, b (the encoder, the SimCLR projector, AdapterMLP). */
ct_tensor *ct_svl_mlp2(ct_graph *g, ct_tensor *x, ct_tensor *const *p, bool last_relu);

/* utils.py nt_xent of embeddings e (2B, P), rows 0..B-1 view 1 and B..2B-1
 * view 2 of the same images: CE over rows of normalize(e) normalize(e)^T /
 * temperature - 1e5 I, the target of row i being its other view. */
ct_tensor *ct_svl_nt_xent(ct_graph *g, ct_tensor *e, float temperature);

/* One SimCLR step (ssl_pretraining.py train_ssl): zero grads, NT-Xent of
 * proj(enc(px)) for px (2B, in_dim) (the two views stacked), backward, an
 * optimiser step at lr over o (the encoder and projector). *loss receives
 * the loss before the step. */
ct_status ct_svl_simclr_step(ct_graph *g, ct_optim *o, ct_tensor *const *enc,
                             ct_tensor *const *proj, const float *px, int64_t two_b,
                             int in_dim, float temperature, float lr, float *loss);

/* AdapterMLP's logits mlp(enc(px)) (n, K) of pixels px (n, in_dim). */
ct_tensor *ct_svl_adapter_logits(ct_graph *g, ct_tensor *const *enc, ct_tensor *const *mlp,
                                 const float *px, int64_t n, int in_dim);

/* low_shot_adapt.py's fusion: alpha * adapter + (1 - alpha) * scale cos(f,
 * zs), f (n, E) CLIP image embeddings (not normalised), zs (K, E) unit. */
ct_tensor *ct_svl_fuse(ct_graph *g, ct_tensor *adapter, const float *f, int64_t n, int E,
                       const float *zs, int K, float scale, float alpha);

/* tune_alpha: the alpha index a (alpha = a / 20, a = 0..20) whose fusion
 * alpha A + (1 - alpha) Z of the scores A, Z (n, K) has the best accuracy
 * on labels y, the first best kept; *acc (may be NULL) receives it. */
int ct_svl_pick_alpha(const float *A, const float *Z, const int *y, int64_t n, int K,
                      double *acc);

/* confidence_alpha: 1 - the mean over rows of max softmax(scale cos(x, zs))
 * for x (n, E), zs (K, E) unit. NAN when out of memory (error set). */
double ct_svl_confidence_alpha(const float *x, int64_t n, int E, const float *zs, int K,
                               float scale);

#endif
