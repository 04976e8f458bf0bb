/* ProTeCt's internals that tests reach (protect.c). */
#ifndef CT_METHODS_PROTECT_H
#define CT_METHODS_PROTECT_H

#include <stdint.h>

/* Train on this tree cut (N bytes, 1 for the cut's nodes, in the task
 * taxonomy's node order; copied) instead of sampling one per batch from the
 * batch seed; NULL: sample again. The parity test feeds the reference's cut. */
void ct_protect_fix_cut(void *state, const uint8_t *cut);

#endif
