/* Options shared by train / zeroshot / protocol, and running one cell. */
#ifndef CT_CLI_RUN_ARGS_H
#define CT_CLI_RUN_ARGS_H

#include "model_args.h"

typedef struct {
    model_args model;
    const char *data, *method, *out, *cache;
    const char *subsample;  /* "all", "base" or "novel" (base-to-novel protocol) */
    char *set;              /* joined --set values */
    int shots;
    uint64_t seed;
    bool resume;
    bool force;             /* train / zeroshot: replace a run already in --out */
    int64_t max_test;
    double partial_labels; /* --partial-labels P (0: every label known) */
    const char *taxonomy;   /* --taxonomy FILE: a hierarchy run (NULL: flat) */
    /* protocol only */
    char **methods;
    int n_methods;
    int shots_list[16], n_shots;
    uint64_t seeds[16];
    int n_seeds;
    bool base_to_novel;     /* train on base classes, test on base and novel */
    /* import only: the official checkpoint whose tensors replace training */
    const char *import_from;
    /* train: every --data given, in order; two or more make a multi-task run */
    const char *datas[CT_MT_MAX_TASKS];
    int n_datas;
} run_args;

/* fixed_method: zeroshot's; protocol passes "protocol" as cmd and accepts
 * --methods/--shots-list/--seeds. */
bool run_args_parse(int argc, char **argv, const char *cmd, const char *fixed_method,
                    run_args *ra);
void run_args_free(run_args *ra);

typedef struct {
    ct_model *model;
    ct_splits data;
    ct_dataset *novel_test; /* base-to-novel: the novel classes' test set, or NULL */
} run_ctx;

bool run_ctx_open(const run_args *ra, const char *cmd, run_ctx *rc);
/* Replace every split of s by its base (which = 0) or novel (1) classes. */
bool splits_subsample(ct_splits *s, const char *which, const char *cmd);
void run_ctx_close(run_ctx *rc);

/* A model path or data spec recorded in a run's config.json (absolute since
 * config.json records them so; as typed before) against one typed now. */
bool cli_same_model(const char *recorded, const char *typed);
bool cli_same_data(const char *recorded, const char *typed);

/* --force / --resume against what dir holds (a finished or interrupted run
 * is refused without them; --force removes it); prints the error. */
bool run_dir_ready(const run_args *ra, const char *dir);

/* One experiment; prints the error and returns 1 on failure. */
/* log_ctx, when not NULL, is a cli_progress (progress.h) that also gets the
 * feature-extraction and training progress. */
int run_one(const run_args *ra, run_ctx *rc, const char *method, int shots, uint64_t seed,
            const char *out, void (*log)(void *, const char *), void *log_ctx,
            ct_run_result *res);

#endif
