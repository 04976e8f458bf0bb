/* The distributed layer: the few collective operations the feature cache,
 * the trainer and the protocol need, behind one small interface, so that
 * they call it without #ifdefs. The default build compiles dist_none.c (one
 * rank; every call a no-op); -DCT_MPI=ON compiles dist_mpi.c (Open MPI's
 * MPI_COMM_WORLD, initialised on first use when the process was started by
 * an MPI launcher). The public part (rank, size, the work queue, merging,
 * finishing) is declared in cliptune.h. Collective calls must be made by
 * every rank in the same order; they are made from the main thread only.
 *
 * Two modes:
 *   shared work (ct_dist_parallel() true: more than one rank and no work
 *     queue open): every rank runs the same program on the same data; the
 *     feature cache and pixel-path training split their work across the
 *     ranks and exchange results, and rank 0 alone writes files (the others'
 *     writes are discarded: ct_file_set_discard).
 *   a work queue (between ct_dist_queue_begin and _end): each job is one
 *     rank's alone; the library runs single-rank and every rank writes its
 *     own jobs' files. */
#ifndef CT_BASE_DIST_H
#define CT_BASE_DIST_H

#include "cliptune.h"

/* More than one rank, and no work queue open. */
bool ct_dist_parallel(void);

/* Rank r's share [lo, hi) of n rows when split over `size` ranks: contiguous
 * blocks, boundaries on multiples of align (>= 1), the first ranks taking
 * the larger blocks. A pure function, so every rank knows every share. */
static inline void ct_dist_range(int64_t n, int64_t align, int r, int size, int64_t *lo,
                                 int64_t *hi) {
    int64_t a = align > 0 ? align : 1, blocks = (n + a - 1) / a;
    int64_t base = blocks / size, extra = blocks % size;
    int64_t b0 = r * base + (r < extra ? r : extra), b1 = b0 + base + (r < extra);
    *lo = b0 * a < n ? b0 * a : n;
    *hi = b1 * a < n ? b1 * a : n;
}

/* buf holds n rows of row_bytes; this rank filled its own share
 * (ct_dist_range(n, align, rank, size)). Afterwards every rank holds all n
 * rows. (Shared-work mode only; a no-op otherwise.) */
ct_status ct_dist_allgather_rows(void *buf, int64_t n, int64_t align, size_t row_bytes);

/* v[i] summed over the ranks, in rank order (0 + 1 + ... + N-1, MPI_Allreduce
 * with a non-commutative operation, so Open MPI reduces in that order and
 * every rank receives the same bits); identical from run to run with the
 * same number of ranks. */
ct_status ct_dist_sum_f32(float *v, size_t n);

/* *v becomes true on every rank iff it is true on every rank. */
ct_status ct_dist_all(bool *v);

/* Every rank waits here for the others (shared-work mode only): after rank
 * 0 wrote files that the others read next. */
ct_status ct_dist_barrier(void);

/* CT_ERR_STATE ("what differs between ranks") unless h is the same on every
 * rank: a check that replicated state did not diverge. */
ct_status ct_dist_same_u64(uint64_t h, const char *what);

#endif
