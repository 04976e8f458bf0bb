/* The distributed layer of the default build: one rank, nothing to
 * exchange (base/dist.h; dist_mpi.c is the Open MPI one). */
#include "base/dist.h"
#include "base/error.h"

int ct_dist_rank(void) { return 0; }
int ct_dist_size(void) { return 1; }
bool ct_dist_parallel(void) { return false; }

static int64_t g_next = -1, g_jobs;

ct_status ct_dist_queue_begin(int64_t n_jobs) {
    if (n_jobs < 0) return ct_set_error(CT_ERR_ARG, "ct_dist_queue_begin: %lld jobs",
                                        (long long)n_jobs);
    g_next = 0, g_jobs = n_jobs;
    return CT_OK;
}

int64_t ct_dist_queue_next(void) {
    if (g_next < 0 || g_next >= g_jobs) return -1;
    return g_next++;
}

ct_status ct_dist_queue_end(void) {
    g_next = -1;
    return CT_OK;
}

ct_status ct_dist_merge(double *v, int64_t n) {
    (void)v, (void)n;
    return CT_OK;
}

void ct_dist_finish(int failed) { (void)failed; }

ct_status ct_dist_allgather_rows(void *buf, int64_t n, int64_t align, size_t row_bytes) {
    (void)buf, (void)n, (void)align, (void)row_bytes;
    return CT_OK;
}

ct_status ct_dist_sum_f32(float *v, size_t n) {
    (void)v, (void)n;
    return CT_OK;
}

ct_status ct_dist_all(bool *v) {
    (void)v;
    return CT_OK;
}

ct_status ct_dist_same_u64(uint64_t h, const char *what) {
    (void)h, (void)what;
    return CT_OK;
}

ct_status ct_dist_barrier(void) { return CT_OK; }
