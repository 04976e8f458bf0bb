#include "run_args.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool parse_int_list(const char *s, int *out, int cap, int *n, const char *what) {
    *n = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *end;
        long v = strtol(t, &end, 10);
        if (*end || v < 0 || *n == cap) {
            cli_error("%s: bad value \"%s\"", what, t);
            free(copy);
            return false;
        }
        out[(*n)++] = (int)v;
    }
    free(copy);
    return *n > 0;
}

bool run_args_parse(int argc, char **argv, const char *cmd, const char *fixed_method,
                    run_args *ra) {
    memset(ra, 0, sizeof *ra);
    ra->shots = fixed_method ? 0 : 16;
    ra->seed = 1;
    ra->cache = ".cliptune-cache";
    ra->method = fixed_method;
    bool bad = false, protocol = !strcmp(cmd, "protocol");
    const char *v = NULL;
    size_t setlen = 1;
    ra->set = calloc(1, 1);
    for (int i = 1; i < argc && !bad; i++) {
        if (model_args_parse(argc, argv, &i, &ra->model, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--data", &ra->data, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--out", &ra->out, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--cache", &ra->cache, &bad)) continue;
        if (!fixed_method && !protocol && cli_opt(argc, argv, &i, "--method", &ra->method, &bad))
            continue;
        if (cli_opt(argc, argv, &i, "--set", &v, &bad)) {
            if (bad) break;
            if (!strchr(v, '=')) {
                cli_error("%s: --set %s: expected KEY=VALUE", cmd, v);
                bad = true;
                break;
            }
            setlen += strlen(v) + 1;
            ra->set = realloc(ra->set, setlen);
            strcat(strcat(ra->set, " "), v);
            continue;
        }
        if (!protocol && cli_opt(argc, argv, &i, "--shots", &v, &bad)) {
            if (!bad) ra->shots = atoi(v);
            continue;
        }
        if (!protocol && cli_opt(argc, argv, &i, "--seed", &v, &bad)) {
            if (!bad) ra->seed = strtoull(v, NULL, 10);
            continue;
        }
        if (cli_opt(argc, argv, &i, "--max-test", &v, &bad)) {
            if (!bad) ra->max_test = atoll(v);
            continue;
        }
        if (protocol && cli_opt(argc, argv, &i, "--methods", &v, &bad)) {
            if (bad) break;
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
        cli_error("%s: unknown option or argument %s (see --help)", cmd, argv[i]);
        bad = true;
    }
    if (!bad && !ra->data) bad = cli_error("%s: no --data given (see --help)", cmd) != 0;
    if (!bad && !protocol && !ra->method)
        bad = cli_error("%s: no --method given (see `cliptune methods`)", cmd) != 0;
    if (!bad && !protocol && !ct_method_find(ra->method))
        bad = cli_error("%s: unknown method \"%s\" (see `cliptune methods`)", cmd, ra->method) != 0;
    for (int k = 0; !bad && k < ra->n_methods; k++)
        if (!ct_method_find(ra->methods[k]))
            bad = cli_error("%s: unknown method \"%s\" (see `cliptune methods`)", cmd,
                            ra->methods[k]) != 0;
    if (!bad && ra->shots < 0) bad = cli_error("%s: --shots must be >= 0", cmd) != 0;
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
    if (!model_load(&ra->model, true, &rc->model, cmd)) return false;
    if (ct_data_open(ra->data, &rc->data) != CT_OK) {
        cli_lib_error(cmd);
        model_unload(&rc->model);
        return false;
    }
    return true;
}

void run_ctx_close(run_ctx *rc) {
    model_unload(&rc->model);
    ct_splits_free(&rc->data);
}

int run_one(const run_args *ra, run_ctx *rc, const char *method, int shots, uint64_t seed,
            const char *out, void (*log)(void *, const char *), void *log_ctx,
            ct_run_result *res) {
    char dir[4096];
    if (out)
        snprintf(dir, sizeof dir, "%s", out);
    else
        snprintf(dir, sizeof dir, "runs/%s-%s-%dshot-seed%llu", method, rc->data.train->name,
                 shots, (unsigned long long)seed);
    for (char *p = dir + 5; *p; p++)
        if (*p == ':' || *p == ' ') *p = '_';
    ct_run_cfg cfg = {
        .model = &rc->model, .model_path = ra->model.model, .data = &rc->data,
        .data_spec = ra->data, .method = ct_method_find(method), .set = ra->set, .shots = shots,
        .seed = seed, .run_dir = dir,
        .cache_dir = ra->cache && strcmp(ra->cache, "none") ? ra->cache : NULL,
        .resume = ra->resume, .max_test = ra->max_test, .log = log, .log_ctx = log_ctx};
    if (cfg.cache_dir) {
        char mk[4200];
        snprintf(mk, sizeof mk, "mkdir -p '%s'", cfg.cache_dir);
        if (system(mk) != 0) return cli_error("cannot create the cache directory %s", cfg.cache_dir);
    }
    ct_run_result r;
    if (ct_run(&cfg, &r) != CT_OK) return cli_lib_error(method);
    if (log) {
        char line[256];
        snprintf(line, sizeof line, "run directory: %s", dir);
        log(log_ctx, line);
    }
    if (res) *res = r;
    return 0;
}
