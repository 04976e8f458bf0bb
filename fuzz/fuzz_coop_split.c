/* libFuzzer target: a CoOp split JSON (split_zhou_*.json) (datasets.inc). */
#include "datasets.inc"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return run_dataset(0, data, size); }
