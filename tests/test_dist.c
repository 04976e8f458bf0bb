/* The distributed layer's single-process behaviour (every build; the 2-rank
 * checks are tests/mpi_check.sh): how rows are shared out, the work queue and
 * merge with one rank, and the file layer's discard / shared switches that
 * make rank 0 the one writer. */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/dist.h"
#include "base/file.h"
#include "harness.h"

/* Every (n, align, ranks): shares contiguous, in rank order, covering
 * [0, n), boundaries on multiples of align, rank 0 never empty when n > 0,
 * shares differing by at most one block. */
static void test_range(void) {
    const int64_t ns[] = {0, 1, 5, 31, 32, 33, 100, 1000, 1001};
    const int64_t aligns[] = {1, 32};
    const int sizes[] = {1, 2, 3, 7};
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (size_t b = 0; b < 2; b++)
            for (size_t c = 0; c < sizeof sizes / sizeof *sizes; c++) {
                int64_t n = ns[a], al = aligns[b], at = 0, mn = n, mx = 0;
                int N = sizes[c];
                for (int r = 0; r < N; r++) {
                    int64_t lo, hi;
                    ct_dist_range(n, al, r, N, &lo, &hi);
                    CHECK_MSG(lo == at && hi >= lo, "n %lld align %lld rank %d/%d: [%lld, %lld) "
                              "after %lld", (long long)n, (long long)al, r, N, (long long)lo,
                              (long long)hi, (long long)at);
                    CHECK_MSG((lo == n || lo % al == 0) && (hi == n || hi % al == 0),
                              "n %lld align %lld rank %d/%d: [%lld, %lld) off the blocks",
                              (long long)n, (long long)al, r, N, (long long)lo, (long long)hi);
                    if (r == 0 && n > 0) CHECK(hi > lo);
                    int64_t blocks = (hi - lo + al - 1) / al;
                    mn = blocks < mn ? blocks : mn, mx = blocks > mx ? blocks : mx;
                    at = hi;
                }
                CHECK_MSG(at == n, "n %lld align %lld ranks %d: shares end at %lld",
                          (long long)n, (long long)al, N, (long long)at);
                CHECK(mx - mn <= 1);
            }
}

/* Not started by a launcher: one rank; the queue hands out 0..n-1 in order,
 * merging and gathering change nothing. */
static void test_one_rank(void) {
    CHECK(ct_dist_size() == 1 && ct_dist_rank() == 0 && !ct_dist_parallel());
    CHECK_OK(ct_dist_queue_begin(5));
    CHECK(!ct_dist_parallel());
    for (int64_t i = 0; i < 5; i++) CHECK(ct_dist_queue_next() == i);
    CHECK(ct_dist_queue_next() == -1 && ct_dist_queue_next() == -1);
    CHECK_OK(ct_dist_queue_end());
    CHECK(ct_dist_queue_begin(-1) == CT_ERR_ARG);
    double v[3] = {1.5, -0.0, 7};
    CHECK_OK(ct_dist_merge(v, 3));
    CHECK(v[0] == 1.5 && v[1] == 0 && v[2] == 7);
    float g[2] = {0.25f, 3};
    CHECK_OK(ct_dist_sum_f32(g, 2));
    CHECK(g[0] == 0.25f && g[1] == 3);
    float rows[4] = {1, 2, 3, 4};
    CHECK_OK(ct_dist_allgather_rows(rows, 2, 1, 2 * sizeof(float)));
    CHECK(rows[0] == 1 && rows[3] == 4);
    bool t = true;
    CHECK_OK(ct_dist_all(&t));
    CHECK(t);
    CHECK_OK(ct_dist_same_u64(42, "x"));
    CHECK_OK(ct_dist_barrier());
    ct_dist_finish(0);
}

static int entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] != '.';
    if (d) closedir(d);
    return n;
}

/* Discarding: every atomic writer succeeds and leaves nothing, not even a
 * temp file; switched off, writing works again. Shared: stale temp files
 * are left alone. */
static void test_discard(void) {
    const char *dir = ct_test_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/a.txt", dir);
    ct_file_set_discard(true);
    CHECK_OK(ct_write_file_atomic(path, "abc", 3));
    CHECK_OK(ct_write_file_atomic_nosync(path, "abc", 3));
    ct_atomic_file *f = NULL;
    CHECK_OK(ct_atomic_create(path, &f));
    CHECK_OK(ct_atomic_write(f, "xyz", 3));
    CHECK_OK(ct_atomic_commit(f));
    CHECK_OK(ct_atomic_create(path, &f));
    ct_atomic_abort(f);
    CHECK_MSG(entries(dir) == 0, "%d files written while discarding", entries(dir));
    ct_file_set_discard(false);
    CHECK_OK(ct_write_file_atomic(path, "abc", 3));
    CHECK(access(path, F_OK) == 0 && entries(dir) == 1);
    /* a temp file of a process that does not exist */
    char stale[4200];
    snprintf(stale, sizeof stale, "%s/b.txt.tmp.999999999.0", dir);
    CHECK_OK(ct_write_file_atomic(stale, "x", 1));
    ct_file_set_shared(true);
    CHECK(ct_clean_stale_temps(dir) == 0 && access(stale, F_OK) == 0);
    ct_file_set_shared(false);
    CHECK(ct_clean_stale_temps(dir) == 1 && access(stale, F_OK) != 0);
}

int main(void) {
    RUN(test_range);
    RUN(test_one_rank);
    RUN(test_discard);
    return ct_test_summary();
}
