#include "cli.h"

#include <stdarg.h>
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
