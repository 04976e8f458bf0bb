/* Helpers shared by the libFuzzer targets: the readers take paths, so each
 * input is written to files in a scratch folder of this process (removed at
 * exit). Every target also builds as a plain program that replays files
 * (fuzz/replay.c), which is how ctest runs the seed corpora and the kept
 * regression inputs in every build. */
#ifndef CT_FUZZ_UTIL_H
#define CT_FUZZ_UTIL_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cliptune.h"

static char fz_root[512];

static inline void fz_cleanup(void) {
    DIR *d = opendir(fz_root);
    struct dirent *e;
    char p[1024];
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", fz_root, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    rmdir(fz_root);
}

/* The scratch folder (created on first use). */
static inline const char *fz_dir(void) {
    if (fz_root[0]) return fz_root;
    const char *t = getenv("TMPDIR");
    snprintf(fz_root, sizeof fz_root, "%s/ctfuzz-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(fz_root)) abort();
    atexit(fz_cleanup);
    return fz_root;
}

/* name in the scratch folder, written with data; its path (static buffer of
 * 4: enough for one input's files). */
static inline const char *fz_write(const char *name, const uint8_t *data, size_t size) {
    static char paths[4][1024];
    static int next;
    char *p = paths[next++ & 3];
    snprintf(p, 1024, "%s/%s", fz_dir(), name);
    FILE *f = fopen(p, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) abort();
    return p;
}

/* The same, gzip-compressed (for readers of .gz files). */
static inline const char *fz_write_gz(const char *name, const uint8_t *data, size_t size) {
    static char p[1024];
    snprintf(p, sizeof p, "%s/%s", fz_dir(), name);
    gzFile g = gzopen(p, "wb1");
    if (!g) abort();
    if (size && gzwrite(g, data, (unsigned)size) != (int)size) abort();
    if (gzclose(g) != Z_OK) abort();
    return p;
}

/* Two inputs from one: the first 2 bytes (little-endian) give the length of
 * the first part (cut to what is there), the rest is the second. */
static inline void fz_split(const uint8_t *data, size_t size, const uint8_t **a, size_t *na,
                     const uint8_t **b, size_t *nb) {
    size_t n = size >= 2 ? (size_t)data[0] | (size_t)data[1] << 8 : 0;
    const uint8_t *rest = size >= 2 ? data + 2 : data;
    size_t left = size >= 2 ? size - 2 : size;
    if (n > left) n = left;
    *a = rest, *na = n, *b = rest + n, *nb = left - n;
}

/* A failure must say why. */
static inline void fz_failed_with_message(void) {
    if (ct_last_error()[0] == 0) abort();
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "refused: %s\n", ct_last_error());
}

#endif
