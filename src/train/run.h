/* One experiment end to end: model + dataset + method + shots + seed ->
 * a run directory with config.json, metrics.json, predictions.csv, log.txt,
 * report.md (+ confusion.svg) and, for trained methods, the checkpoint. */
#ifndef CT_TRAIN_RUN_H
#define CT_TRAIN_RUN_H

#include "cliptune.h"
#include "model/bundle.h"
#include "train/metrics.h"

typedef struct ct_run_cfg {
    const ct_bundle *model;
    const char *model_path;  /* recorded in config.json                       */
    const ct_splits *data;
    const char *data_spec;   /* recorded in config.json                       */
    const ct_method *method;
    const char *set;         /* "k=v ..." overrides of the method's defaults  */
    int shots;               /* k per class; 0: the whole training set        */
    uint64_t seed;
    const char *run_dir;     /* created if missing                            */
    const char *cache_dir;   /* feature cache; NULL: none                     */
    bool resume;
    int64_t max_test;        /* evaluate on the first max_test test items (0: all) */
    const char *subsample;   /* recorded in config.json: all | base | novel     */
    /* base-to-novel: after testing on the (base) test split, the learned
     * tensors are moved into a state made for these classes and scored on
     * this test set (CoOp / CoCoOp / MaPLe's novel column); NULL: none.
     * novel.json in the run directory holds its top-1. */
    const ct_dataset *novel_test;
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
    /* stages "features: <split>" (images) and "train" (steps, with loss/lr) */
    void (*progress)(void *ctx, const char *stage, int64_t done, int64_t total, double loss,
                     double lr);
    void *progress_ctx;
} ct_run_cfg;

typedef struct ct_run_result {
    double top1, top5, macro_f1, ece;
    double val_top1;          /* NaN without val */
    double novel_top1;        /* NaN without novel_test */
} ct_run_result;

ct_status ct_run(const ct_run_cfg *cfg, ct_run_result *res);

/* The method's learned tensors (params()) as run_dir/learned.safetensors,
 * and back into a freshly created state of the same method and task. */
ct_status ct_run_save_learned(const ct_method *m, void *state, const char *run_dir);
/* The same with extra metadata pairs (key, value) beside "method". */
ct_status ct_run_save_learned_meta(const ct_method *m, void *state, const char *run_dir,
                                   const char *const *meta, int n_meta);
ct_status ct_run_load_learned(const ct_method *m, void *state, const char *run_dir);

#endif
