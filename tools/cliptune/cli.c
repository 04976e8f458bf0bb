#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

int cli_error(const char *fmt, ...) {
    va_list ap;
    fputs("cliptune: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int cli_lib_error(const char *what) { return cli_error("%s: %s", what, ct_last_error()); }

bool cli_opt(int argc, char **argv, int *i, const char *name, const char **val, bool *bad) {
    if (strcmp(argv[*i], name) != 0) return false;
    if (*i + 1 >= argc) {
        cli_error("option %s needs a value", name);
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
        cli_error("%s: '%s' is not an integer in %lld..%lld", opt, v, lo, hi);
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
        cli_error("%s: '%s' is not a number in [%g, %g]", opt, v, lo, hi);
        return false;
    }
    *out = x;
    return true;
}
