/* Minimal test harness: checks record failures and keep going; main() runs
 * each test and ends with "N passed, N failed". Exit 0 all passed, 1 some
 * failed, 77 all skipped (ctest SKIP_RETURN_CODE). */
#ifndef CT_TEST_HARNESS_H
#define CT_TEST_HARNESS_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

extern int ct_test_failures; /* failures in the current test */

void ct_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond)) ct_test_fail(__FILE__, __LINE__, "check failed: %s", #cond); \
    } while (0)
#define CHECK_MSG(cond, ...)                                      \
    do {                                                          \
        if (!(cond)) ct_test_fail(__FILE__, __LINE__, __VA_ARGS__); \
    } while (0)
/* A status-returning call that must succeed; prints ct_last_error if not. */
#define CHECK_OK(expr)                                                                   \
    do {                                                                                 \
        ct_status st_ = (expr);                                                          \
        if (st_ != CT_OK)                                                                \
            ct_test_fail(__FILE__, __LINE__, "%s -> %s: %s", #expr, ct_status_str(st_), \
                         ct_last_error());                                               \
    } while (0)

/* |got - want| <= atol + rtol*|want| for all i; reports the first few
 * violations with name, index, got, expected and tolerance. Returns true if
 * all close. Works on double arrays; see the float/ct_real variants. */
bool ct_check_close_d(const char *file, int line, const char *name, const double *got,
                      const double *want, size_t n, double atol, double rtol);
bool ct_check_close_f(const char *file, int line, const char *name, const float *got,
                      const float *want, size_t n, double atol, double rtol);
#define CHECK_CLOSE_D(name, got, want, n, atol, rtol) \
    ct_check_close_d(__FILE__, __LINE__, name, got, want, n, atol, rtol)
#define CHECK_CLOSE_F(name, got, want, n, atol, rtol) \
    ct_check_close_f(__FILE__, __LINE__, name, got, want, n, atol, rtol)
#define CHECK_NEAR(name, got, want, atol, rtol)                             \
    do {                                                                    \
        double g_ = (got), w_ = (want);                                     \
        ct_check_close_d(__FILE__, __LINE__, name, &g_, &w_, 1, atol, rtol); \
    } while (0)

typedef void (*ct_test_fn)(void);
/* Run one test; prints "[ OK ] name" or "[FAIL] name". */
void ct_test_run(const char *name, ct_test_fn fn);
/* Mark the current test skipped with a reason (call, then return). */
void ct_test_skip(const char *reason);
/* Print the summary line and return the process exit code. */
int ct_test_summary(void);
#define RUN(fn) ct_test_run(#fn, fn)

/* A fresh, empty directory for this test binary's files (under CT_TEST_TMP,
 * else /tmp). Returns a path valid until exit. */
const char *ct_test_tmpdir(void);
/* ../shared as configured (CT_SHARED_DIR), or NULL if it does not exist
 * (only the OpenAI-vocabulary parity tests need it). */
const char *ct_test_shared_dir(void);
/* The folder with vocab.json + merges.txt that tokenize the tests' texts
 * exactly as OpenAI's CLIP vocabulary does, with its ids (the fixture
 * models' tables have its 49408 rows): tests/fixtures/bpe/clip_subset,
 * written by tools/ref/gen_bpe_subset.py. */
const char *ct_test_clip_bpe(void);

#endif
