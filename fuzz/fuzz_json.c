/* libFuzzer target: the JSON loader and the typed getters every run file
 * goes through (config.json, metrics.json, results.json, novel.json). */
#include "fuzz_util.h"

#include "base/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = fz_write("run.json", data, size);
    cJSON *j = ct_json_load(p);
    if (!j) {
        fz_failed_with_message();
        return 0;
    }
    static const char *const keys[] = {"method", "model", "data", "shots", "seed", "epoch",
                                       "max_test", "top1", "hyper_parameters", "classnames"};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        int64_t i;
        double d;
        const char *s;
        bool b;
        (void)ct_json_get_int(j, keys[k], &i, p);
        (void)ct_json_get_double(j, keys[k], &d, p);
        (void)ct_json_get_string(j, keys[k], &s, p);
        (void)ct_json_get_bool(j, keys[k], &b, p);
    }
    cJSON_Delete(j);
    return 0;
}
