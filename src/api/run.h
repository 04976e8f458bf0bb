/* One experiment end to end: model + dataset + method + shots + seed ->
 * a run directory with config.json, metrics.json, predictions.csv, log.txt,
 * report.md (+ confusion.svg) and, for trained methods, the checkpoint. */
#ifndef CT_API_RUN_H
#define CT_API_RUN_H

#include "cliptune.h"
#include "api/model.h"
#include "train/metrics.h"

/* ct_run_cfg, ct_run_result, ct_run: cliptune.h */

/* A run's log: every line kept (log.txt, the report's tail) and handed to
 * the caller's callback (NULL: none) as it comes. */
typedef struct ct_run_log {
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
    char *text; /* the lines so far, '\n'-terminated, malloc'ed */
    size_t len, cap;
} ct_run_log;

void ct_run_logf(ct_run_log *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A trainer / task log callback appending to ctx (a ct_run_log). */
void ct_run_log_line(void *ctx, const char *line);

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
/* Hierarchy runs (run_hier.c). The run's taxonomy: cfg->taxonomy (checked
 * against the training classes), or cfg->taxonomy_path loaded into *owned
 * (the caller frees it), or none (*tax NULL; an error for methods with
 * .taxonomy unless they import). */
ct_status ct_run_taxonomy(const ct_run_cfg *cfg, bool ml, const ct_taxonomy **tax,
                          ct_taxonomy **owned);
/* ProTeCt's metrics of n items into out's hierarchy fields: node scores from
 * a state of m made for tax's node names holding trained's learned tensors
 * (task and hp as trained was created with; methods whose learned tensors
 * do not depend on the classes and that do not fit), scoring f (the items'
 * features) or, for methods that score images, images (the items
 * themselves); else from leaf_scores (n, K logits) summed per node. */
ct_status ct_run_hierarchy(const ct_method *m, void *trained, const ct_task *task, ct_kv *hp,
                           const ct_taxonomy *tax, const ct_features *f,
                           const ct_dataset *images, const float *leaf_scores, const int *labels,
                           int64_t n, ct_metrics *out);

#endif
