/* libFuzzer target for the .npy reader (scripts/fuzz.sh builds and runs it;
 * ctest replays its corpus). The reader takes a path, so each input is
 * written to a scratch file first. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cliptune.h"

static char g_path[256];
static int g_fd = -1;

static void cleanup(void) {
    if (g_path[0]) unlink(g_path);
}

static void setup(void) {
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    snprintf(g_path, sizeof g_path, "%s/fuzz_npy.%ld.npy", dir, (long)getpid());
    g_fd = open(g_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (g_fd < 0) abort();
    atexit(cleanup);
}

static void put_input(const uint8_t *data, size_t size) {
    if (ftruncate(g_fd, 0) != 0) abort();
    size_t off = 0;
    while (off < size) {
        ssize_t w = pwrite(g_fd, data + off, size - off, (off_t)off);
        if (w <= 0) abort();
        off += (size_t)w;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (g_fd < 0) setup();
    put_input(data, size);
    ct_npy a;
    ct_status s = ct_npy_read(g_path, &a);
    if (s != CT_OK) {
        if (a.data != NULL || ct_last_error()[0] == 0) abort();
        return 0;
    }
    if (a.dtype != CT_F32 && a.dtype != CT_I64) abort();
    if (a.ndim < 0 || a.ndim > 8 || !a.data) abort();
    size_t numel = 1;
    for (int d = 0; d < a.ndim; d++) {
        if (a.shape[d] < 0) abort();
        numel *= (size_t)a.shape[d];
    }
    size_t nbytes = numel * ct_dtype_size(a.dtype);
    if (numel != a.numel || nbytes > size) abort();
    /* The data is the tail of the file, copied: compare so that ASan checks
     * the whole allocation and a wrong offset is caught. */
    if (nbytes && memcmp(a.data, data + size - nbytes, nbytes) != 0) abort();
    ct_npy_free(&a);
    return 0;
}
