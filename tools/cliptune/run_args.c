#include "run_args.h"

#include "progress.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A non-negative integer option value; prints the error. */
static bool parse_int_list(const char *s, int *out, int cap, int *n, const char *what) {
    *n = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *end;
        errno = 0;
        long v = strtol(t, &end, 10);
        if (!*t || *end || errno || v < 0 || v > 1000000000L || *n == cap) {
            cli_usage("%s: bad value \"%s\"", what, t);
            free(copy);
            return false;
        }
        out[(*n)++] = (int)v;
    }
    free(copy);
    if (*n == 0) cli_usage("%s: empty list", what);
    return *n > 0;
}

bool run_args_parse(int argc, char **argv, const char *cmd, const char *fixed_method,
                    run_args *ra) {
    memset(ra, 0, sizeof *ra);
    ra->shots = fixed_method ? 0 : 16;
    ra->seed = 1;
    ra->cache = ".cliptune-cache";
    ra->subsample = "all";
    ra->method = fixed_method;
    bool bad = false, protocol = !strcmp(cmd, "protocol");
    const char *v = NULL;
    ra->set = calloc(1, 1);
    for (int i = 1; i < argc && !bad; i++) {
        if (model_args_parse(argc, argv, &i, &ra->model, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--data", &v, &bad)) {
            if (bad) break;
            if (ra->data && strcmp(cmd, "train") && strcmp(cmd, "zeroshot") && !protocol) {
                cli_usage("%s: --data given twice (several only for a multi-task train, "
                          "zeroshot or protocol)", cmd);
                bad = true;
                break;
            }
            if (ra->n_datas == CT_MT_MAX_TASKS) {
                cli_usage("%s: more than %d --data", cmd, CT_MT_MAX_TASKS);
                bad = true;
                break;
            }
            if (!ra->data) ra->data = v;
            ra->datas[ra->n_datas++] = v;
            continue;
        }
        if (cli_opt(argc, argv, &i, "--out", &ra->out, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--cache", &ra->cache, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--subsample", &ra->subsample, &bad)) {
            if (!bad && strcmp(ra->subsample, "all") && strcmp(ra->subsample, "base") &&
                strcmp(ra->subsample, "novel")) {
                cli_usage("%s: --subsample %s: expected all, base or novel", cmd, ra->subsample);
                bad = true;
            }
            continue;
        }
        if (!fixed_method && !protocol && cli_opt(argc, argv, &i, "--method", &ra->method, &bad))
            continue;
        if (!strcmp(cmd, "import") && cli_opt(argc, argv, &i, "--from", &ra->import_from, &bad))
            continue;
        if (cli_opt(argc, argv, &i, "--set", &v, &bad)) {
            if (bad) break;
            if (!strchr(v, '=')) {
                cli_usage("%s: --set %s: expected KEY=VALUE", cmd, v);
                bad = true;
                break;
            }
            if (ct_kv_append(&ra->set, v) != CT_OK) {
                cli_lib_error(cmd);
                bad = true;
                break;
            }
            continue;
        }
        if (!protocol && cli_opt(argc, argv, &i, "--shots", &v, &bad)) {
            long long x = 0;
            if (!bad && !cli_parse_ll(v, "--shots", 0, 100000, &x)) bad = true;
            ra->shots = (int)x;
            continue;
        }
        if (!protocol && cli_opt(argc, argv, &i, "--seed", &v, &bad)) {
            long long x = 0;
            if (!bad && !cli_parse_ll(v, "--seed", 0, (long long)1 << 62, &x)) bad = true;
            ra->seed = (uint64_t)x;
            continue;
        }
        if (cli_opt(argc, argv, &i, "--taxonomy", &ra->taxonomy, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--partial-labels", &v, &bad)) {
            if (!bad && !cli_parse_double(v, "--partial-labels", 1e-9, 1, &ra->partial_labels))
                bad = true;
            continue;
        }
        if (cli_opt(argc, argv, &i, "--max-test", &v, &bad)) {
            long long x = 0;
            if (!bad && !cli_parse_ll(v, "--max-test", 0, (long long)1 << 62, &x)) bad = true;
            ra->max_test = x;
            continue;
        }
        if (protocol && cli_opt(argc, argv, &i, "--methods", &v, &bad)) {
            if (bad) break;
            if (ra->methods) {
                cli_usage("%s: --methods given twice", cmd);
                bad = true;
                break;
            }
            char *copy = strdup(v), *save = NULL;
            ra->methods = calloc(strlen(v) + 1, sizeof *ra->methods);
            for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
                ra->methods[ra->n_methods++] = strdup(t);
            free(copy);
            continue;
        }
        if (protocol && cli_opt(argc, argv, &i, "--shots", &v, &bad)) {
            if (!bad && !parse_int_list(v, ra->shots_list, 16, &ra->n_shots, "--shots")) bad = true;
            continue;
        }
        if (protocol && cli_opt(argc, argv, &i, "--seeds", &v, &bad)) {
            int tmp[16];
            if (!bad && !parse_int_list(v, tmp, 16, &ra->n_seeds, "--seeds")) bad = true;
            for (int k = 0; k < ra->n_seeds; k++) ra->seeds[k] = (uint64_t)tmp[k];
            continue;
        }
        if (!strcmp(argv[i], "--resume")) {
            ra->resume = true;
            continue;
        }
        if (!protocol && !strcmp(argv[i], "--force")) {
            ra->force = true;
            continue;
        }
        if (protocol && !strcmp(argv[i], "--base-to-novel")) {
            ra->base_to_novel = true;
            continue;
        }
        cli_usage("%s: unknown option or argument %s (see --help)", cmd, argv[i]);
        bad = true;
    }
    if (!bad && !ra->data) bad = cli_usage("%s: no --data given (see --help)", cmd) != 0;
    if (!bad && !strcmp(cmd, "import") && !ra->import_from)
        bad = cli_usage("import: no --from CHECKPOINT given (see --help)") != 0;
    if (!bad && !protocol && !ra->method)
        bad = cli_usage("%s: no --method given (see `cliptune methods`)", cmd) != 0;
    if (!bad && !protocol && !ct_method_find(ra->method))
        bad = cli_usage("%s: unknown method \"%s\" (see `cliptune methods`)", cmd, ra->method) != 0;
    for (int k = 0; !bad && k < ra->n_methods; k++)
        if (!ct_method_find(ra->methods[k]))
            bad = cli_usage("%s: unknown method \"%s\" (see `cliptune methods`)", cmd,
                            ra->methods[k]) != 0;
    if (!bad && ra->shots < 0) bad = cli_usage("%s: --shots must be >= 0", cmd) != 0;
    if (bad) run_args_free(ra);
    return !bad;
}

void run_args_free(run_args *ra) {
    free(ra->set);
    for (int k = 0; k < ra->n_methods; k++) free(ra->methods[k]);
    free(ra->methods);
    memset(ra, 0, sizeof *ra);
}

bool run_ctx_open(const run_args *ra, const char *cmd, run_ctx *rc) {
    memset(rc, 0, sizeof *rc);
    if (!(rc->model = model_load(&ra->model, true, cmd))) return false;
    if (ct_data_open(ra->data, &rc->data) != CT_OK) {
        cli_lib_error(cmd);
        ct_model_free(rc->model);
        rc->model = NULL;
        return false;
    }
    if (!splits_subsample(&rc->data, ra->subsample, cmd)) {
        run_ctx_close(rc);
        return false;
    }
    return true;
}

bool splits_subsample(ct_splits *s, const char *which, const char *cmd) {
    if (!which || !strcmp(which, "all")) return true;
    int w = !strcmp(which, "novel");
    ct_dataset **parts[3] = {&s->train, &s->val, &s->test};
    for (int i = 0; i < 3; i++) {
        if (!*parts[i]) continue;
        ct_dataset *sub = ct_dataset_subsample_classes(*parts[i], w);
        if (!sub) {
            cli_lib_error(cmd);
            return false;
        }
        ct_dataset_free(*parts[i]);
        *parts[i] = sub;
    }
    return true;
}

void run_ctx_close(run_ctx *rc) {
    ct_dataset_free(rc->novel_test);
    rc->novel_test = NULL;
    ct_model_free(rc->model);
    rc->model = NULL;
    ct_splits_free(&rc->data);
}

bool cli_same_model(const char *recorded, const char *typed) {
    char abs_[4096];
    return !strcmp(recorded, typed) || (realpath(typed, abs_) && !strcmp(recorded, abs_));
}

bool cli_same_data(const char *recorded, const char *typed) {
    char abs_[8192];
    return !strcmp(recorded, typed) ||
           (ct_data_spec_absolute(typed, abs_, sizeof abs_) == CT_OK && !strcmp(recorded, abs_));
}

static bool file_in(const char *dir, const char *name) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* Remove the files of dir, its predictions/ folder (segmentation label
 * maps) and, with self, dir itself. */
static bool remove_files(const char *dir, bool self) {
    char p[4400];
    snprintf(p, sizeof p, "%s/predictions", dir);
    DIR *sd = opendir(p);
    if (sd) {
        closedir(sd);
        if (!remove_files(p, true)) return false;
    }
    if (!self) return true;
    sd = opendir(dir);
    struct dirent *f;
    while (sd && (f = readdir(sd)) != NULL) {
        if (!strcmp(f->d_name, ".") || !strcmp(f->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, f->d_name);
        unlink(p);
    }
    if (sd) closedir(sd);
    if (rmdir(dir) != 0)
        return cli_error("--force: cannot remove %s: %s", dir, strerror(errno)) == 0;
    return true;
}

/* What a run writes into its directory, eval-* folders included: removed
 * before --force starts the run again, so nothing of the old one remains. */
static bool remove_run(const char *dir) {
    static const char *const files[] = {
        "config.json", "metrics.json", "predictions.csv", "log.txt", "report.md",
        "confusion.svg", "learned.safetensors", "checkpoint.safetensors", "checkpoint.json",
        "novel.json", "wise_ft_curve.csv", "wise_ft_curve.json", "overlays.png"};
    char p[4400];
    for (size_t k = 0; k < sizeof files / sizeof *files; k++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[k]);
        if (unlink(p) != 0 && errno != ENOENT)
            return cli_error("--force: cannot remove %s: %s", p, strerror(errno)) == 0;
    }
    if (!remove_files(dir, false)) return false;
    /* the label maps `predict` wrote for a segmentation run */
    snprintf(p, sizeof p, "%s/predict", dir);
    DIR *pd = opendir(p);
    if (pd) {
        closedir(pd);
        if (!remove_files(p, true)) return false;
    }
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "eval-", 5)) continue;
        char sub[4400];
        snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
        if (!remove_files(sub, true)) {
            closedir(d);
            return false;
        }
    }
    if (d) closedir(d);
    return true;
}

bool run_dir_ready(const run_args *ra, const char *dir) {
    /* train / zeroshot never silently replace a run (protocol skips finished
     * cells and resumes the others itself) */
    if (ra->force && !remove_run(dir)) return false;
    if (!ra->force && !ra->resume) {
        if (file_in(dir, "metrics.json"))
            return cli_error("%s holds a finished run (metrics.json): give another --out, or "
                             "--force to replace it", dir) == 0;
        if (file_in(dir, "checkpoint.safetensors"))
            return cli_error("%s holds an interrupted run (checkpoint.safetensors): --resume "
                             "continues it, --force starts over", dir) == 0;
    }
    return true;
}

int run_one(const run_args *ra, run_ctx *rc, const char *method, int shots, uint64_t seed,
            const char *out, void (*log)(void *, const char *), void *log_ctx,
            ct_run_result *res) {
    char dir[4096];
    if (out) {
        snprintf(dir, sizeof dir, "%s", out);
    } else {
        /* the default name only: a dataset name may hold ':' or ' ' or '/' */
        char name[256];
        bool sub = ra->subsample && strcmp(ra->subsample, "all");
        snprintf(name, sizeof name, "%s-%s%s%s-%dshot-seed%llu", method, rc->data.train->name,
                 sub ? "-" : "", sub ? ra->subsample : "", shots, (unsigned long long)seed);
        for (char *p = name; *p; p++)
            if (*p == ':' || *p == ' ' || *p == '/') *p = '_';
        snprintf(dir, sizeof dir, "runs/%s", name);
    }
    ct_run_cfg cfg = {
        .model = rc->model, .data = &rc->data,
        .data_spec = ra->data, .method = ct_method_find(method), .set = ra->set, .shots = shots,
        .seed = seed, .run_dir = dir,
        .cache_dir = ra->cache && strcmp(ra->cache, "none") ? ra->cache : NULL,
        .resume = ra->resume, .max_test = ra->max_test, .subsample = ra->subsample,
        .novel_test = rc->novel_test, .import_from = ra->import_from,
        .partial_labels = ra->partial_labels, .taxonomy_path = ra->taxonomy,
        .log = log, .log_ctx = log_ctx,
        .progress = log_ctx ? cli_progress_cb : NULL, .progress_ctx = log_ctx};
    if (!ra->n_methods && !run_dir_ready(ra, dir)) return 1;
    ct_run_result r;
    if (ct_run(&cfg, &r) != CT_OK) return cli_error("%s", ct_last_error());
    if (log) {
        char line[256];
        snprintf(line, sizeof line, "run directory: %s", dir);
        log(log_ctx, line);
    }
    if (res) *res = r;
    return 0;
}
