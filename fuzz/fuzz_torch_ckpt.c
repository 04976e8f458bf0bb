/* libFuzzer target for the PyTorch checkpoint reader (scripts/fuzz.sh
 * builds and runs it; ctest replays its corpus).
 *
 * The reader takes a path, so each input is written to a scratch file
 * (fuzz_util.h).
 * torch_ckpt.c is compiled into this file (not linked) so that the harness
 * can see the mapping inside the opaque handle and check the reader's main
 * promise: every listed tensor's strided extent lies inside its storage and
 * every storage inside the file (ASan cannot see reads past the end of a
 * mapping). While the library also carries torch_ckpt.o, the linker takes
 * these definitions and leaves that object out. */
#include "../src/base/torch_ckpt.c"

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write("input.pth", data, size);
    ct_torch_ckpt *ck = NULL;
    ct_status s = ct_torch_ckpt_open(path, &ck);
    if (s != CT_OK) {
        /* failures say why, naming the file, and return no handle */
        if (ck != NULL || strncmp(ct_last_error(), path, strlen(path)) != 0) abort();
        if (s != CT_ERR_FORMAT && s != CT_ERR_UNSUPPORTED && s != CT_ERR_NOMEM) abort();
        return 0;
    }
    const uint8_t *lo = ck->map.data, *hi = ck->map.data + ck->map.size;
    for (int i = 0; i < ct_torch_ckpt_count(ck); i++) {
        const ct_torch_tensor *t = ct_torch_ckpt_at(ck, i);
        if (!t || !t->name) abort();
        if (ct_torch_ckpt_find(ck, t->name) != t) abort();
        if (t->ndim < 0 || t->ndim > CT_TORCH_MAX_RANK || t->offset < 0) abort();
        if (t->elem_size != (t->from_f64 ? 8 : ct_dtype_size(t->dtype))) abort();
        size_t numel = 1;
        uint64_t last = (uint64_t)t->offset;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0 || t->stride[d] < 0) abort();
            if (__builtin_mul_overflow(numel, (size_t)t->shape[d], &numel)) abort();
        }
        if (numel != t->numel) abort();
        if (t->storage_bytes > 0 &&
            (t->storage < lo || t->storage > hi || t->storage_bytes > (size_t)(hi - t->storage)))
            abort();
        if (numel > 0) {
            for (int d = 0; d < t->ndim; d++) last += (uint64_t)(t->shape[d] - 1) * (uint64_t)t->stride[d];
            if ((last + 1) * t->elem_size > t->storage_bytes) abort();
            /* bounded so that a huge zero-stride view cannot time out */
            if (numel <= (1u << 20)) {
                float *out = malloc(numel * sizeof *out);
                if (!out) abort();
                if (ct_torch_tensor_to_f32(t, out, numel) != CT_OK) abort();
                free(out);
            }
        }
    }
    for (int i = 0; i < ck->n_sc; i++) {
        double v;
        if (!ct_torch_ckpt_real(ck, ck->sc[i].name, &v)) abort();
        if (ct_torch_ckpt_int(ck, ck->sc[i].name, NULL) == ck->sc[i].is_float) abort();
    }
    ct_torch_ckpt_close(ck);
    return 0;
}
