/* libFuzzer target: an HF vocab.json + merges.txt (tokenizer.inc). */
#include "tokenizer.inc"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return run_tokenizer(1, data, size); }
