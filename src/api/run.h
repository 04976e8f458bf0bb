/* One experiment end to end: model + dataset + method + shots + seed ->
 * a run directory with config.json, metrics.json, predictions.csv, log.txt,
 * report.md (+ confusion.svg) and, for trained methods, the checkpoint. */
#ifndef CT_API_RUN_H
#define CT_API_RUN_H

#include "cliptune.h"
#include "api/model.h"
#include "train/metrics.h"

/* ct_run_cfg, ct_run_result, ct_run: cliptune.h */

/* The method's learned tensors (params()) as run_dir/learned.safetensors,
 * and back into a freshly created state of the same method and task. */
ct_status ct_run_save_learned(const ct_method *m, void *state, const char *run_dir);
/* The same with extra metadata pairs (key, value) beside "method". */
ct_status ct_run_save_learned_meta(const ct_method *m, void *state, const char *run_dir,
                                   const char *const *meta, int n_meta);
ct_status ct_run_load_learned(const ct_method *m, void *state, const char *run_dir);

/* config.json's record of the frozen model (shared by ct_run and ct_mt_run):
 * model (absolute path), model_hash, bpe, act, tokenizer_hash and
 * preprocess_hash. */
struct cJSON;
void ct_run_config_model(struct cJSON *j, const ct_model *model);

#endif
