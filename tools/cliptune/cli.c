#include "cli.h"

#include <errno.h>
#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static void vprint_error(const char *fmt, va_list ap) {
    fputs("cliptune: error: ", stderr);
    /* mpirun -n N: which rank failed (its message ends the job) */
    if (ct_dist_size() > 1) fprintf(stderr, "rank %d of %d: ", ct_dist_rank(), ct_dist_size());
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprint_error(fmt, ap);
    va_end(ap);
    return 1;
}

bool cli_usage_failed = false;

int cli_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprint_error(fmt, ap);
    va_end(ap);
    cli_usage_failed = true;
    return 1;
}

int cli_lib_error(const char *what) { return cli_error("%s: %s", what, ct_last_error()); }

/* The short forms of the common options: -m MODEL, -mMODEL */
static const char *const SHORT[][2] = {
    {"--model", "-m"}, {"--data", "-d"}, {"--out", "-o"}, {"--run", "-r"},
    {"--labels", "-l"}, {"--top", "-k"}, {"--shots", "-s"}, {"--set", "-S"},
};

bool cli_opt(int argc, char **argv, int *i, const char *name, const char **val, bool *bad) {
    for (size_t k = 0; k < sizeof SHORT / sizeof *SHORT; k++) {
        if (strcmp(SHORT[k][0], name) || strncmp(argv[*i], SHORT[k][1], 2)) continue;
        if (argv[*i][2]) { /* -mVALUE */
            *val = argv[*i] + 2;
            return true;
        }
        if (*i + 1 >= argc) {
            cli_usage("option %s (%s) needs a value", SHORT[k][1], name);
            *bad = true;
            return true;
        }
        *val = argv[++*i];
        return true;
    }
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0) return false;
    if (argv[*i][n] == '=') { /* --opt=value */
        *val = argv[*i] + n + 1;
        return true;
    }
    if (argv[*i][n]) return false;
    if (*i + 1 >= argc) {
        cli_usage("option %s needs a value", name);
        *bad = true;
        return true;
    }
    *val = argv[++*i];
    return true;
}

bool cli_help_requested(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return true;
    return false;
}

bool cli_parse_ll(const char *v, const char *opt, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi) {
        cli_usage("%s: '%s' is not an integer in %lld..%lld", opt, v, lo, hi);
        return false;
    }
    *out = x;
    return true;
}

bool cli_parse_double(const char *v, const char *opt, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno || !isfinite(x) || x < lo || x > hi) {
        cli_usage("%s: '%s' is not a number in [%g, %g]", opt, v, lo, hi);
        return false;
    }
    *out = x;
    return true;
}

struct cJSON *cli_json_load(const char *path, const char *cmd) {
    char *text = NULL;
    size_t n = 0;
    if (ct_read_file(path, &text, &n) != CT_OK) {
        cli_lib_error(cmd);
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength(text, n);
    if (!j) cli_error("%s: %s: not valid JSON", cmd, path);
    free(text);
    return j;
}

bool cli_json_save(const char *path, const struct cJSON *j, const char *cmd) {
    char *text = cJSON_Print(j);
    if (!text) return cli_error("%s: out of memory", cmd) == 0;
    size_t n = strlen(text);
    text[n] = 0;
    char *t = realloc(text, n + 2);
    if (t) t[n] = '\n', t[n + 1] = 0, text = t, n++;
    bool ok = ct_write_file_atomic(path, text, n) == CT_OK || cli_lib_error(cmd) == 0;
    free(text);
    return ok;
}
