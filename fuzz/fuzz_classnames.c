/* libFuzzer target: classnames.txt (datasets.inc). */
#include "datasets.inc"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return run_dataset(4, data, size); }
