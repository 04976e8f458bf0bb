/* libFuzzer target for the safetensors reader (scripts/fuzz.sh builds and
 * runs it; ctest replays its corpus).
 *
 * The reader only takes a path, so each input is written to a scratch file.
 * safetensors.c is compiled into this file (not linked) so that the harness
 * can see the mapping inside the opaque handle and check the reader's main
 * promise: every tensor's bytes lie inside the file and match its shape.
 * ASan cannot catch reads past the end of a mapping, so that check has to
 * be explicit. */
#include "../src/base/safetensors.c"

#include <fcntl.h>
#include <unistd.h>

static char g_path[256];
static int g_fd = -1;

static void cleanup(void) {
    if (g_path[0]) unlink(g_path);
}

static void setup(void) {
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    snprintf(g_path, sizeof g_path, "%s/fuzz_safetensors.%ld.bin", dir, (long)getpid());
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
    ct_safetensors *st = ct_safetensors_open(g_path);
    if (!st) {
        if (ct_last_error()[0] == 0) abort(); /* failures must say why */
        return 0;
    }
    const uint8_t *lo = st->map.data, *hi = st->map.data + st->map.size;
    for (int i = 0; i < ct_safetensors_count(st); i++) {
        const ct_st_tensor *t = ct_safetensors_at(st, i);
        if (!t || !t->name) abort();
        if (ct_safetensors_find(st, t->name) != t) abort();
        if (t->ndim < 0 || t->ndim > 8) abort();
        size_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0) abort();
            if (__builtin_mul_overflow(numel, (size_t)t->shape[d], &numel)) abort();
        }
        if (numel * ct_dtype_size(t->dtype) != t->nbytes) abort();
        if (t->nbytes > 0 && (t->data < lo || t->data > hi || t->nbytes > (size_t)(hi - t->data)))
            abort();
        if (t->dtype == CT_F32 || t->dtype == CT_F16 || t->dtype == CT_BF16) {
            /* Bounded so a huge all-zero-shape trick cannot time out. */
            if (numel <= (1u << 20)) {
                ct_real *out = malloc((numel ? numel : 1) * sizeof *out);
                if (!out) abort();
                if (ct_st_to_real(t, out, numel) != CT_OK) abort();
                free(out);
            }
        } else if (ct_st_to_real(t, NULL, numel) != CT_ERR_UNSUPPORTED) {
            abort();
        }
    }
    for (int i = 0; i < st->n_meta; i++) {
        if (ct_safetensors_meta(st, st->meta[2 * i]) == NULL) abort();
    }
    ct_safetensors_close(st);
    return 0;
}
