/* libFuzzer target for the image decoders (PNG, JPEG, BMP, GIF, PNM, TIFF, WebP: the
 * format is told by the bytes), then the preprocessing of what decodes. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ct_image img = {0};
    if (ct_image_decode(data, size, "fuzz", &img) != CT_OK) {
        fz_failed_with_message();
        if (img.rgb) abort();
        return 0;
    }
    if (img.w < 1 || img.h < 1 || !img.rgb) abort();
    if ((int64_t)img.w * img.h > CT_IMAGE_MAX_PIXELS) abort();
    /* touch every pixel (ASan checks the allocation's size) */
    unsigned sum = 0;
    for (size_t i = 0; i < (size_t)img.w * img.h * 3; i++) sum += img.rgb[i];
    (void)sum;
    if ((int64_t)img.w * img.h <= 1 << 16) { /* CLIP's transform on small images */
        ct_preprocess_cfg cfg;
        ct_preprocess_cfg_openai(&cfg, 16);
        float out[3 * 16 * 16];
        if (ct_preprocess(&img, &cfg, out) != CT_OK) fz_failed_with_message();
    }
    ct_image_free(&img);
    return 0;
}
