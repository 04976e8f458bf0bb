/* Shared timing helpers for the benchmarks (not tests: nothing here fails). */
#ifndef CT_BENCH_COMMON_H
#define CT_BENCH_COMMON_H

#include <stdlib.h>
#include <time.h>

static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int bench_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static inline double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Repetitions so that one measurement takes about 0.25 s of work. */
static inline int bench_reps(double flops, double guess_gflops) {
    int r = (int)(0.25 * guess_gflops * 1e9 / flops);
    return r < 1 ? 1 : r > 200 ? 200 : r;
}

#endif
