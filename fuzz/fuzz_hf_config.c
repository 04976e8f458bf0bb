/* libFuzzer target: a Hugging Face CLIP config.json. */
#include "fuzz_util.h"

#include "model/clip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ct_clip_config c;
    if (ct_clip_config_from_hf(fz_write("config.json", data, size), &c) != CT_OK)
        fz_failed_with_message();
    return 0;
}
