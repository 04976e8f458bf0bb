/* One owner for threads: OpenMP at op level. BLAS is told the same count so
 * that a GEMM called outside a parallel region uses all cores, and kernels
 * that call BLAS from inside a parallel region switch it to one thread
 * (ct_blas_* in blas.c) to avoid nested oversubscription. */
#include <omp.h>
#include <stdlib.h>

#include "base/blas.h"
#include "cliptune.h"

static int g_threads; /* 0: not yet initialised */

static int default_threads(void) {
    const char *e = getenv("CLIPTUNE_THREADS");
    if (e && *e) {
        char *end;
        long n = strtol(e, &end, 10);
        if (*end == 0 && n > 0 && n <= 4096) return (int)n;
    }
    return omp_get_num_procs();
}

void ct_set_num_threads(int n) {
    g_threads = n > 0 ? n : default_threads();
    omp_set_num_threads(g_threads);
    ct_blas_set_threads(g_threads);
}

int ct_get_num_threads(void) {
    if (!g_threads) ct_set_num_threads(0);
    return g_threads;
}
