/* The distributed layer over Open MPI (-DCT_MPI=ON; base/dist.h).
 *
 * MPI is initialised on first use, and only in a process that an MPI
 * launcher started (mpirun / mpiexec / srun set OMPI_COMM_WORLD_SIZE,
 * PMIX_RANK or PMI_RANK; CLIPTUNE_MPI=1 forces it): the same binary run
 * by hand stays a plain single process. MPI calls come from the main thread
 * only (MPI_THREAD_FUNNELED): OpenMP threads never communicate. */
#include "base/dist.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mpi.h>
#include <omp.h>

#include "base/error.h"
#include "base/file.h"

static int g_state; /* 0: not looked at, 1: single process, 2: MPI initialised */
static int g_rank, g_size = 1;
static bool g_queue;          /* a work queue is open */
static MPI_Win g_win;         /* the queue's counter: one int64 on rank 0 */
static int64_t *g_counter, g_jobs;
static MPI_Op g_ordered_sum = MPI_OP_NULL;

static bool launched(void) {
    const char *f = getenv("CLIPTUNE_MPI");
    if (f && *f) return strcmp(f, "0") != 0;
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

static void finalize_at_exit(void) {
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
}

/* invec (the lower ranks' partial sum) + inoutvec: with commute = 0 MPI
 * keeps the operands in rank order. */
static void ordered_sum(void *in, void *inout, int *len, MPI_Datatype *type) {
    (void)type;
    const float *a = in;
    float *b = inout;
    for (int i = 0; i < *len; i++) b[i] = a[i] + b[i];
}

static void init(void) {
    if (g_state) return;
    g_state = 1;
    if (!launched()) return;
    int already = 0, provided = 0;
    MPI_Initialized(&already);
    if (!already) MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    MPI_Op_create(ordered_sum, 0, &g_ordered_sum);
    g_state = 2;
    if (!already) atexit(finalize_at_exit);
    /* the cores this process may use, shared with the ranks beside it on
     * this host (unless CLIPTUNE_THREADS says otherwise): a rank bound to
     * one core sees one; N unbound ranks on one host share them */
    const char *t = getenv("CLIPTUNE_THREADS");
    if (!(t && *t)) {
        MPI_Comm local;
        int local_size = 1;
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local);
        MPI_Comm_size(local, &local_size);
        MPI_Comm_free(&local);
        int procs = omp_get_num_procs(), all = (int)sysconf(_SC_NPROCESSORS_ONLN);
        int n = procs < all ? procs : procs / (local_size > 0 ? local_size : 1);
        ct_set_num_threads(n > 0 ? n : 1);
    }
    if (g_size > 1) ct_file_set_shared(true);
    if (g_size > 1 && g_rank > 0) ct_file_set_discard(true);
}

int ct_dist_rank(void) {
    init();
    return g_rank;
}

int ct_dist_size(void) {
    init();
    return g_size;
}

bool ct_dist_parallel(void) {
    init();
    return g_size > 1 && !g_queue;
}

ct_status ct_dist_queue_begin(int64_t n_jobs) {
    init();
    if (n_jobs < 0)
        return ct_set_error(CT_ERR_ARG, "ct_dist_queue_begin: %lld jobs", (long long)n_jobs);
    if (g_queue) return ct_set_error(CT_ERR_STATE, "ct_dist_queue_begin: a queue is open");
    g_jobs = n_jobs;
    g_queue = true;
    if (g_state != 2) {
        static int64_t single;
        g_counter = &single, single = 0;
        return CT_OK;
    }
    MPI_Win_allocate(g_rank == 0 ? (MPI_Aint)sizeof(int64_t) : 0, sizeof(int64_t),
                     MPI_INFO_NULL, MPI_COMM_WORLD, &g_counter, &g_win);
    if (g_rank == 0) *g_counter = 0;
    MPI_Barrier(MPI_COMM_WORLD);
    ct_file_set_discard(false); /* each rank writes its own jobs' files */
    return CT_OK;
}

int64_t ct_dist_queue_next(void) {
    if (!g_queue) return -1;
    int64_t got;
    if (g_state != 2) {
        got = (*g_counter)++;
    } else {
        /* one atomic fetch-and-add on rank 0's counter: no rank waits for
         * another to finish its job */
        const int64_t one = 1;
        MPI_Win_lock(MPI_LOCK_SHARED, 0, 0, g_win);
        MPI_Fetch_and_op(&one, &got, MPI_INT64_T, 0, 0, MPI_SUM, g_win);
        MPI_Win_unlock(0, g_win);
    }
    return got < g_jobs ? got : -1;
}

ct_status ct_dist_queue_end(void) {
    if (!g_queue) return ct_set_error(CT_ERR_STATE, "ct_dist_queue_end: no queue is open");
    g_queue = false;
    if (g_state == 2) {
        /* every rank has drained the queue, and rank 0 has written what it
         * writes (the protocol's tables) before the others go on */
        MPI_Barrier(MPI_COMM_WORLD);
        MPI_Win_free(&g_win);
        if (g_size > 1 && g_rank > 0) ct_file_set_discard(true);
    }
    return CT_OK;
}

ct_status ct_dist_merge(double *v, int64_t n) {
    init();
    if (g_state != 2 || g_size == 1) return CT_OK;
    for (int64_t i = 0; i < n; i += INT_MAX / 2) {
        int k = n - i < INT_MAX / 2 ? (int)(n - i) : INT_MAX / 2;
        MPI_Allreduce(MPI_IN_PLACE, v + i, k, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    }
    return CT_OK;
}

void ct_dist_finish(int failed) {
    if (g_state != 2) return;
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin) return;
    fflush(stdout);
    fflush(stderr);
    if (failed && g_size > 1) MPI_Abort(MPI_COMM_WORLD, failed); /* ends every rank */
    MPI_Finalize();
}

ct_status ct_dist_allgather_rows(void *buf, int64_t n, int64_t align, size_t row_bytes) {
    if (!ct_dist_parallel() || n == 0) return CT_OK;
    if (row_bytes == 0 || row_bytes > INT_MAX || n > INT_MAX)
        return ct_set_error(CT_ERR_UNSUPPORTED, "distributed gather: %lld rows of %zu bytes",
                            (long long)n, row_bytes);
    int *counts = malloc((size_t)g_size * sizeof *counts);
    int *displs = malloc((size_t)g_size * sizeof *displs);
    if (!counts || !displs) {
        free(counts), free(displs);
        return ct_set_error(CT_ERR_NOMEM, "distributed gather: out of memory");
    }
    for (int r = 0; r < g_size; r++) {
        int64_t lo, hi;
        ct_dist_range(n, align, r, g_size, &lo, &hi);
        counts[r] = (int)(hi - lo), displs[r] = (int)lo;
    }
    MPI_Datatype row;
    MPI_Type_contiguous((int)row_bytes, MPI_BYTE, &row);
    MPI_Type_commit(&row);
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs, row, MPI_COMM_WORLD);
    MPI_Type_free(&row);
    free(counts), free(displs);
    return CT_OK;
}

ct_status ct_dist_sum_f32(float *v, size_t n) {
    if (!ct_dist_parallel()) return CT_OK;
    for (size_t i = 0; i < n; i += INT_MAX / 2) {
        int k = n - i < INT_MAX / 2 ? (int)(n - i) : INT_MAX / 2;
        MPI_Allreduce(MPI_IN_PLACE, v + i, k, MPI_FLOAT, g_ordered_sum, MPI_COMM_WORLD);
    }
    return CT_OK;
}

ct_status ct_dist_all(bool *v) {
    if (!ct_dist_parallel()) return CT_OK;
    int x = *v ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    *v = x != 0;
    return CT_OK;
}

ct_status ct_dist_same_u64(uint64_t h, const char *what) {
    if (!ct_dist_parallel()) return CT_OK;
    uint64_t mn = h, mx = h;
    MPI_Allreduce(MPI_IN_PLACE, &mn, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &mx, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    if (mn != mx)
        return ct_set_error(CT_ERR_STATE, "%s differs between the ranks (rank %d of %d)", what,
                            g_rank, g_size);
    return CT_OK;
}

ct_status ct_dist_barrier(void) {
    if (ct_dist_parallel()) MPI_Barrier(MPI_COMM_WORLD);
    return CT_OK;
}
