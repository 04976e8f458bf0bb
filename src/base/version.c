#include "cliptune.h"

const char *ct_version(void) { return CLIPTUNE_VERSION; }

#include <string.h>

size_t ct_struct_size(const char *name) {
    static const struct {
        const char *name;
        size_t size;
    } SIZES[] = {
        {"ct_run_cfg", sizeof(ct_run_cfg)},       {"ct_run_result", sizeof(ct_run_result)},
        {"ct_run_info", sizeof(ct_run_info)},     {"ct_metrics", sizeof(ct_metrics)},
        {"ct_model_opts", sizeof(ct_model_opts)}, {"ct_dataset", sizeof(ct_dataset)},
        {"ct_splits", sizeof(ct_splits)},         {"ct_item", sizeof(ct_item)},
        {"ct_kv", sizeof(ct_kv)},                 {"ct_method", sizeof(ct_method)},
        {"ct_features", sizeof(ct_features)},     {"ct_task", sizeof(ct_task)},
        {"ct_batch", sizeof(ct_batch)},           {"ct_train_cfg", sizeof(ct_train_cfg)},
        {"ct_image", sizeof(ct_image)},           {"ct_preprocess_cfg", sizeof(ct_preprocess_cfg)},
        {"ct_clip_config", sizeof(ct_clip_config)}, {"ct_ml_metrics", sizeof(ct_ml_metrics)},
        {"ct_seg_metrics", sizeof(ct_seg_metrics)}, {"ct_mt_run_cfg", sizeof(ct_mt_run_cfg)},
        {"ct_mt_run_result", sizeof(ct_mt_run_result)},
        {"ct_mt_prediction", sizeof(ct_mt_prediction)},
    };
    for (size_t i = 0; name && i < sizeof SIZES / sizeof *SIZES; i++)
        if (!strcmp(SIZES[i].name, name)) return SIZES[i].size;
    return 0;
}
