#include "harness.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ct_test_failures;
static int g_passed, g_failed, g_skipped;
static bool g_skip_current;

void ct_test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "  %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    ct_test_failures++;
}

static bool close_one(double g, double w, double atol, double rtol) {
    if (isnan(g) || isnan(w)) return isnan(g) && isnan(w);
    return fabs(g - w) <= atol + rtol * fabs(w);
}

bool ct_check_close_d(const char *file, int line, const char *name, const double *got,
                      const double *want, size_t n, double atol, double rtol) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (close_one(got[i], want[i], atol, rtol)) continue;
        if (bad < 5)
            ct_test_fail(file, line, "%s[%zu]: got %.9g, expected %.9g (|diff| %.3g > %.3g)",
                         name, i, got[i], want[i], fabs(got[i] - want[i]),
                         atol + rtol * fabs(want[i]));
        bad++;
    }
    if (bad > 5) ct_test_fail(file, line, "%s: %zu of %zu values out of tolerance", name, bad, n);
    return bad == 0;
}

bool ct_check_close_f(const char *file, int line, const char *name, const float *got,
                      const float *want, size_t n, double atol, double rtol) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (close_one(got[i], want[i], atol, rtol)) continue;
        if (bad < 5)
            ct_test_fail(file, line, "%s[%zu]: got %.9g, expected %.9g (|diff| %.3g > %.3g)",
                         name, i, (double)got[i], (double)want[i], fabs((double)got[i] - want[i]),
                         atol + rtol * fabs((double)want[i]));
        bad++;
    }
    if (bad > 5) ct_test_fail(file, line, "%s: %zu of %zu values out of tolerance", name, bad, n);
    return bad == 0;
}

void ct_test_skip(const char *reason) {
    g_skip_current = true;
    fprintf(stderr, "  skipped: %s\n", reason);
}

void ct_test_run(const char *name, ct_test_fn fn) {
    ct_test_failures = 0;
    g_skip_current = false;
    fn();
    if (ct_test_failures) {
        g_failed++;
        printf("[FAIL] %s (%d failed checks)\n", name, ct_test_failures);
    } else if (g_skip_current) {
        g_skipped++;
        printf("[SKIP] %s\n", name);
    } else {
        g_passed++;
        printf("[ OK ] %s\n", name);
    }
    fflush(stdout);
}

int ct_test_summary(void) {
    printf("%d passed, %d failed, %d skipped\n", g_passed, g_failed, g_skipped);
    if (g_failed) return 1;
    if (g_passed == 0 && g_skipped > 0) return 77;
    return 0;
}

const char *ct_test_tmpdir(void) {
    static char dir[4096];
    if (dir[0]) return dir;
    const char *base = getenv("CT_TEST_TMP");
    if (!base || !*base) base = "/tmp";
    mkdir(base, 0777);
    snprintf(dir, sizeof dir, "%s/ct-%d-XXXXXX", base, (int)getpid());
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        abort();
    }
    return dir;
}

const char *ct_test_clip_bpe(void) {
#ifdef CT_SOURCE_DIR
    return CT_SOURCE_DIR "/tests/fixtures/bpe/clip_subset";
#else
    return "tests/fixtures/bpe/clip_subset";
#endif
}

const char *ct_test_shared_dir(void) {
    const char *d = getenv("CT_SHARED_DIR");
#ifdef CT_SOURCE_DIR
    if (!d || !*d) d = CT_SOURCE_DIR "/../shared";
#endif
    struct stat st;
    if (!d || !*d || stat(d, &st) != 0 || !S_ISDIR(st.st_mode)) return NULL;
    return d;
}
