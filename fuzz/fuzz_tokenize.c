/* libFuzzer target: text through the shipped model's tokenizer (tokenizer.inc). */
#include "tokenizer.inc"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return run_tokenizer(2, data, size); }
