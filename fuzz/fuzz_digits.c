/* libFuzzer target: scikit-learn's digits.csv.gz (datasets.inc). */
#include "datasets.inc"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return run_dataset(2, data, size); }
