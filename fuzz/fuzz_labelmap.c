/* libFuzzer target for ct_label_map_load (segmentation label maps: palette
 * or greyscale PNGs read as indices). A map that loads must have sides in
 * the limits and every byte readable; a refusal must say why. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write("map.png", data, size);
    int w = -1, h = -1;
    uint8_t *m = NULL;
    if (ct_label_map_load(path, &w, &h, &m) != CT_OK) {
        fz_failed_with_message();
        if (m || w || h) abort();
        return 0;
    }
    if (!m || w < 1 || h < 1 || w > CT_IMAGE_MAX_SIDE || h > CT_IMAGE_MAX_SIDE ||
        (int64_t)w * h > CT_IMAGE_MAX_PIXELS)
        abort();
    unsigned sum = 0;
    for (size_t i = 0; i < (size_t)w * h; i++) sum += m[i]; /* ASan checks the size */
    (void)sum;
    free(m);
    return 0;
}
