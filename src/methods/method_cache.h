/* Tip-Adapter's cache model (gaopengcuhk/Tip-Adapter main.py / utils.py),
 * the pieces its users share: Tip-Adapter(-F) (tip_adapter.c) and SuS-X's
 * TIP-X (sus_x.c), whose tipx.py takes the cache term from Tip-Adapter.
 *
 *   cache(f) = exp(-beta (1 - f K^T)) V
 *
 * f (B, E) unit image embeddings, K (N, E) unit keys, V (N, C) the one-hot
 * classes of the keys. */
#ifndef CT_METHODS_CACHE_H
#define CT_METHODS_CACHE_H

#include "cliptune.h"

/* *V = one-hot(labels) (N, C), rebuilt whenever labels changed since the
 * last call (fit, or a run's learned tensors loaded over them) and resized
 * when N did; *v_labels (N) holds the labels *V was built from. Every label
 * must be an integer class in [0, C): else CT_ERR_FORMAT naming who. */
ct_status ct_cache_values(const char *who, const ct_tensor *labels, ct_tensor **V,
                          float **v_labels);

/* exp(-beta (1 - f K^T)) V on the tape: f (B, E), keys (N, E), V (N, C) ->
 * (B, C); gradients reach f and keys where they require them. */
ct_tensor *ct_cache_logits(ct_graph *g, ct_tensor *f, ct_tensor *keys, ct_tensor *V, float beta);

/* The hyper-parameter grids of search_hp / tipx.py's hparam_search:
 * i (scale - lo) / steps + lo, i = 0 .. steps-1 (lo 0.1 for most, 1 for
 * TIP-X's beta). */
double ct_cache_grid(int i, double lo, double scale, int steps);

/* For one query's affinities a (N) to keys of classes lab (N): cl[k nb + b]
 * = sum over the keys of class k of exp(beta_b (a_j - 1)), beta_b = b0 + b db
 * for b < nb, in double. The grid is arithmetic in beta, so the terms are
 * geometric in b: two exp() per key instead of one per grid point. */
void ct_cache_class_sums(double *cl, const float *a, const int *lab, int64_t N, int C,
                         double b0, double db, int nb);

/* dst (n, E) = the rows of src (n, E) L2-normalised (a zero row stays 0). */
void ct_unit_rows(float *dst, const float *src, int64_t n, int E);

#endif
