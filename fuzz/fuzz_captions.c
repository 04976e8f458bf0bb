/* libFuzzer target for the captions CSV of a pretraining corpus
 * (src/data/captions.h). */
#include "fuzz_util.h"

#include "data/captions.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = fz_write("captions.csv", data, size);
    char spec[1100];
    snprintf(spec, sizeof spec, "csv:%s", p);
    ct_caption_set cs;
    if (ct_captions_open(spec, &cs) != CT_OK) {
        fz_failed_with_message();
        return 0;
    }
    ct_captions_free(&cs);
    return 0;
}
