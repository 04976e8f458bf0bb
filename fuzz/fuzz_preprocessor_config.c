/* libFuzzer target: a Hugging Face preprocessor_config.json. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ct_preprocess_cfg pc;
    if (ct_preprocess_cfg_from_hf(fz_write("preprocessor_config.json", data, size), &pc) != CT_OK)
        fz_failed_with_message();
    return 0;
}
