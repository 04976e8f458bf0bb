/* libFuzzer target: Fashion-MNIST's IDX files (datasets.inc). */
#include "datasets.inc"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return run_dataset(3, data, size); }
