/* libFuzzer target: OpenAI's bpe_simple_vocab_16e6.txt.gz (tokenizer.inc). */
#include "tokenizer.inc"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return run_tokenizer(0, data, size); }
