/* SubPT's subspace basis (subpt.c), exposed for its parity test. */
#ifndef CT_METHODS_SUBPT_H
#define CT_METHODS_SUBPT_H

#include <stdbool.h>
#include <stdint.h>

#include "cliptune.h"

/* U (dim, D): the top dim right singular vectors of the rows X (T, D) —
 * sklearn PCA(n_components=dim).components_ when centre (the rows' mean
 * subtracted first), the dominant eigenvectors of X^T X otherwise — up to
 * sign, through the (T, T) Gram matrix (cyclic Jacobi, double). Directions
 * whose eigenvalue is below 1e-10 of the largest (T centred rows have rank
 * <= T-1) are left as zero rows; *rank gets the number kept. */
ct_status ct_subpt_basis(const double *X, int64_t T, int64_t D, bool centre, int dim, float *U,
                         int *rank);

#endif
