/* cliptune command-line tool. Subcommands grow as the library does. */
#include <stdio.h>
#include <string.h>

#include "cliptune.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: cliptune <command> [options]\n"
            "\n"
            "commands:\n"
            "  version     print the version and the engine's configuration\n"
            "  help        this message\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("cliptune 0.1.0 (threads: %d)\n", ct_get_num_threads());
        return 0;
    }
    fprintf(stderr, "cliptune: error: unknown command '%s' (see 'cliptune help')\n", argv[1]);
    return 2;
}
