/* cliptune protocol: CoOp's few-shot protocol, every method x shots x seeds
 * cell as its own run directory, then one table of mean ± std over seeds.
 *
 * Cells are independent runs (OUT/<method>/<K>shot/seed<N>/), so the protocol
 * is restartable: a cell whose run finished is read back instead of re-run,
 * and an interrupted protocol picks up where it stopped. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "progress.h"
#include "run_args.h"

static const char *HELP =
    "usage: cliptune protocol --model MODEL --data SPEC --methods M1,M2,... [options]\n"
    "       cliptune protocol --model MODEL --data A --data B --methods zeroshot,softcpt\n"
    "\n"
    "The few-shot protocol: every method at every shot count and seed, each cell a\n"
    "run directory OUT/<method>/<K>shot/seed<N>/ (as `cliptune train` writes), then\n"
    "OUT/results.md (methods x shots, top-1 mean ± std over seeds, with\n"
    "accuracy_vs_shots.svg) and OUT/results.json. A cell whose run already finished\n"
    "is read back, not re-run, so re-running only does the missing cells.\n"
    "Training-free methods without a fitting step (zeroshot) never see the training\n"
    "data: they run once (OUT/<method>/0shot/seed<first>/) and that number fills\n"
    "every shots column.\n"
    "\n"
    "options:\n"
    "  --model MODEL        HF CLIP folder or OpenAI-layout .safetensors (--bpe, --act\n"
    "                       as for `cliptune train`)\n"
    "  --data SPEC          dataset (docs/datasets.md); given twice or more, every cell\n"
    "                       is one multi-task run over them (multi-task methods such as\n"
    "                       softcpt, and zeroshot): results.md has the mean top-1 over\n"
    "                       the tasks and a table per task\n"
    "  --methods LIST       comma-separated methods (see `cliptune methods`)\n"
    "  --shots LIST         shots per class (default 1,2,4,8,16)\n"
    "  --seeds LIST         seeds (default 1,2,3)\n"
    "  --out DIR            default runs/protocol-<dataset>\n"
    "  --set KEY=VALUE      hyper-parameter for every method; METHOD.KEY=VALUE for one\n"
    "                       (repeatable)\n"
    "  --cache DIR          image-feature cache (default .cliptune-cache; 'none')\n"
    "  --resume             continue interrupted training runs\n"
    "  --max-test N         evaluate on the first N test images only\n"
    "  --base-to-novel      CoOp/CoCoOp/MaPLe's base-to-novel protocol: train on the first\n"
    "                       ceil(n/2) classes, test on them (base) and on the rest\n"
    "                       (novel) with the same learned tensors; results.md adds\n"
    "                       base / novel / harmonic mean per method and shots\n"
    "  --targets LIST       cross-dataset transfer and domain generalisation (CoOp,\n"
    "                       CoCoOp, MaPLe): every trained run is also evaluated on the\n"
    "                       test split of each comma-separated target dataset (e.g.\n"
    "                       imagenetv2:DIR,imagenet-sketch:DIR,imagenet-a:DIR,\n"
    "                       imagenet-r:DIR); results.md adds the papers' table: source\n"
    "                       top-1, per-target top-1 and their average. A target whose\n"
    "                       classes are among the source's (ImageNet-A/-R) is scored by\n"
    "                       restricting the logits; other classes are re-encoded by\n"
    "                       prompt methods, and n/a for per-class learned tensors.\n"
    "                       Results in CELL/target<i>-<dataset>/, read back on re-runs\n"
    "  --target SPEC        one target (repeatable; for specs that hold commas)\n"
    "  --taxonomy FILE      hierarchy runs (as `cliptune train --taxonomy`): every cell\n"
    "                       is scored on the tree too; results.json has leaf_acc, hca\n"
    "                       and mta per cell, results.md HCA and MTA tables\n";

static const int DEFAULT_SHOTS[] = {1, 2, 4, 8, 16};
static const uint64_t DEFAULT_SEEDS[] = {1, 2, 3};

typedef struct {
    int method;      /* index into the method list     */
    int shots;       /* 0 for training-free methods    */
    uint64_t seed;
    char dir[4096];
    double top1;
    double novel;    /* base-to-novel: top-1 on the novel classes (else NaN) */
    double leaf, hca, mta;             /* --taxonomy: ProTeCt's metrics (else NaN) */
    double task_top1[CT_MT_MAX_TASKS]; /* multi-task: each task's top-1 (top1: the mean) */
    bool skipped;
    bool handled;    /* this rank ran or read it (several ranks: merge_cells) */
} cell;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Several ranks: the numbers of each rank's cells to every rank (each
 * cell is one rank's; the others contribute zeros). */
enum { CELL_VALUES = 6 + CT_MT_MAX_TASKS };
static bool merge_cells(cell *cells, int n_cells) {
    double *v = calloc((size_t)(n_cells ? n_cells : 1) * CELL_VALUES, sizeof *v);
    if (!v) return cli_error("protocol: out of memory") == 0;
    for (int c = 0; c < n_cells; c++) {
        const cell *x = &cells[c];
        double *o = v + (size_t)c * CELL_VALUES;
        if (!x->handled) continue;
        o[0] = x->top1, o[1] = x->novel, o[2] = x->leaf, o[3] = x->hca, o[4] = x->mta;
        o[5] = x->skipped;
        for (int t = 0; t < CT_MT_MAX_TASKS; t++) o[6 + t] = x->task_top1[t];
    }
    bool ok = ct_dist_merge(v, (int64_t)n_cells * CELL_VALUES) == CT_OK ||
              cli_lib_error("protocol") == 0;
    for (int c = 0; ok && c < n_cells; c++) {
        cell *x = &cells[c];
        const double *o = v + (size_t)c * CELL_VALUES;
        x->top1 = o[0], x->novel = o[1], x->leaf = o[2], x->hca = o[3], x->mta = o[4];
        x->skipped = o[5] != 0;
        for (int t = 0; t < CT_MT_MAX_TASKS; t++) x->task_top1[t] = o[6 + t];
    }
    free(v);
    return ok;
}

/* Nothing to fit and no loss: the training split is never looked at (ct_run
 * computes no training features), so shots and seed cannot change it. */
static bool training_free(const ct_method *m) { return !m->fit && !m->loss; }

/* The --set text that applies to method `name`: unscoped KEY=VALUE pairs and
 * the NAME.KEY=VALUE ones with the prefix removed. A scope that names no
 * method of the protocol is an error (a typo would otherwise be ignored). */
static char *method_set(const char *set, const char *name, char *const *methods, int n_methods) {
    char *out = calloc(strlen(set) + 2, 1);
    if (!out) {
        cli_error("protocol: out of memory");
        return NULL;
    }
    const char *end;
    for (const char *p = ct_kv_item(set, &end); p; p = ct_kv_item(end, &end)) {
        char *item = strndup(p, (size_t)(end - p));
        if (!item) {
            cli_error("protocol: out of memory");
            free(out);
            return NULL;
        }
        char *t = item, *eq = strchr(t, '='), *dot = strchr(t, '.');
        if (dot && eq && dot < eq) {
            *dot = 0;
            bool known = false;
            for (int k = 0; k < n_methods; k++) known = known || !strcmp(methods[k], t);
            if (!known) {
                cli_error("protocol: --set %s.%s: %s is not one of --methods", t, dot + 1, t);
                free(item), free(out);
                return NULL;
            }
            if (strcmp(t, name)) {
                free(item);
                continue;
            }
            t = dot + 1;
        }
        strcat(strcat(out, " "), t);
        free(item);
    }
    return out;
}

/* The hyper-parameters ct_run will record for a method: its defaults with
 * the overrides on top. */
static bool resolved_hp(const ct_method *m, const char *set, ct_kv *hp) {
    memset(hp, 0, sizeof *hp);
    if (ct_kv_parse(hp, m->defaults) == CT_OK && ct_kv_parse(hp, set) == CT_OK) return true;
    cli_lib_error(m->name);
    ct_kv_free(hp);
    return false;
}

/* The first difference between what a finished cell recorded (model, data
 * specs, max_test, hyper-parameters h, whether it had a taxonomy) and what
 * this protocol would run; false (error printed) on one. */
static bool compare_settings(const char *dir, const char *model, const char *const *data,
                             int n_data, int64_t max_test, bool taxonomy, const ct_kv *h,
                             const run_args *ra, const ct_kv *hp) {
    const char *what = NULL;
    char was[512] = "", now[512] = "";
    if (!cli_same_model(model, ra->model.model)) {
        what = "--model", snprintf(was, sizeof was, "%s", model);
        snprintf(now, sizeof now, "%s", ra->model.model);
    } else if (n_data != ra->n_datas) {
        what = "the number of --data", snprintf(was, sizeof was, "%d", n_data);
        snprintf(now, sizeof now, "%d", ra->n_datas);
    } else if (max_test != ra->max_test) {
        what = "--max-test", snprintf(was, sizeof was, "%lld", (long long)max_test);
        snprintf(now, sizeof now, "%lld", (long long)ra->max_test);
    } else if (taxonomy != (ra->taxonomy != NULL)) {
        what = "--taxonomy", snprintf(was, sizeof was, "%s", taxonomy ? "a tree" : "none");
        snprintf(now, sizeof now, "%s", ra->taxonomy ? ra->taxonomy : "none");
    } else if (h->n != hp->n) {
        what = "the hyper-parameters", snprintf(was, sizeof was, "%d keys", h->n);
        snprintf(now, sizeof now, "%d keys", hp->n);
    }
    for (int t = 0; !what && t < n_data; t++)
        if (!data[t] || !cli_same_data(data[t], ra->datas[t])) {
            what = "--data", snprintf(was, sizeof was, "%s", data[t] ? data[t] : "(none)");
            snprintf(now, sizeof now, "%s", ra->datas[t]);
        }
    for (int i = 0; !what && i < hp->n; i++) {
        const char *v = NULL;
        for (int j = 0; j < h->n; j++)
            if (!strcmp(h->keys[j], hp->keys[i])) v = h->vals[j];
        if (v && !strcmp(v, hp->vals[i])) continue;
        what = hp->keys[i];
        snprintf(was, sizeof was, "%s", v ? v : "(unset)");
        snprintf(now, sizeof now, "%s", hp->vals[i]);
    }
    if (what)
        return cli_error("protocol: %s was run with other settings (%s: %s there, %s now); "
                         "delete it or choose another --out", dir, what, was, now) == 0;
    return true;
}

/* DIR/file parsed (NULL, error cleared, when missing or not JSON). */
static cJSON *load_json(const char *dir, const char *file) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (access(path, F_OK) != 0) return NULL;
    char *text = NULL;
    size_t n = 0;
    cJSON *j = ct_read_file(path, &text, &n) == CT_OK ? cJSON_ParseWithLength(text, n) : NULL;
    free(text);
    ct_clear_error();
    return j;
}

/* Does config.json in a finished cell describe the run this protocol would
 * make? A cell left by a protocol with other settings must not be mixed into
 * this table silently. Returns false (error printed) on a mismatch. */
static bool same_settings(const char *dir, const run_args *ra, const ct_kv *hp) {
    if (ra->n_datas > 1) { /* a multi-task cell: config.json as ct_mt_run writes it */
        cJSON *c = load_json(dir, "config.json");
        const cJSON *ts = cJSON_GetObjectItemCaseSensitive(c, "tasks");
        const cJSON *hj = cJSON_GetObjectItemCaseSensitive(c, "hyper_parameters");
        const cJSON *mo = cJSON_GetObjectItemCaseSensitive(c, "model");
        const cJSON *mx = cJSON_GetObjectItemCaseSensitive(c, "max_test");
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "multi_task")) ||
            !cJSON_IsArray(ts) || cJSON_GetArraySize(ts) > CT_MT_MAX_TASKS ||
            !cJSON_IsObject(hj) || !cJSON_IsString(mo) || !cJSON_IsNumber(mx)) {
            cJSON_Delete(c);
            return cli_error("protocol: %s/config.json: not a multi-task run's (delete the "
                             "cell or choose another --out)", dir) == 0;
        }
        const char *data[CT_MT_MAX_TASKS] = {0};
        int n = cJSON_GetArraySize(ts);
        for (int t = 0; t < n; t++) {
            const cJSON *d = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ts, t), "data");
            data[t] = cJSON_IsString(d) ? d->valuestring : NULL;
        }
        ct_kv h = {0};
        bool ok = true;
        for (const cJSON *e = hj->child; ok && e; e = e->next)
            ok = (cJSON_IsString(e) && e->string &&
                  ct_kv_set(&h, e->string, e->valuestring) == CT_OK) ||
                 cli_error("protocol: %s/config.json: hyper_parameters malformed", dir) == 0;
        ok = ok && compare_settings(dir, mo->valuestring, data, n, (int64_t)mx->valuedouble,
                                    false, &h, ra, hp);
        ct_kv_free(&h);
        cJSON_Delete(c);
        return ok;
    }
    ct_saved_run *run = ct_saved_run_open(dir);
    if (!run) return cli_lib_error("protocol") == 0;
    const ct_run_info *ri = ct_saved_run_info(run);
    ct_kv h = {0};
    bool ok = ct_kv_parse(&h, ri->hyper_parameters) == CT_OK || cli_lib_error("protocol") == 0;
    const char *data[1] = {ri->data};
    ok = ok && compare_settings(dir, ri->model, data, 1, ri->max_test, ri->taxonomy != NULL, &h,
                                ra, hp);
    ct_kv_free(&h);
    ct_saved_run_free(run);
    return ok;
}

static double num_in(const cJSON *o, const char *key) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, key);
    double v = cJSON_IsNumber(t) ? t->valuedouble : NAN;
    return v >= 0 && v <= 1 ? v : NAN;
}

/* A top-1 in [0, 1] read from DIR/file ("metrics.json" of a finished run:
 * one with report.md too, the last file ct_run writes, so that a run killed
 * while writing its directory is redone; "novel.json" of a base-to-novel
 * cell), NaN if none. A finished cell's other numbers go to x when given:
 * the hierarchy metrics, a multi-task cell's per-task top-1 (its value being
 * the mean). */
static double finished_value(const char *dir, const char *file, cell *x, int n_tasks) {
    char path[4200];
    snprintf(path, sizeof path, "%s/report.md", dir);
    if (access(path, F_OK) != 0) return NAN;
    cJSON *m = load_json(dir, file);
    double top1 = num_in(m, "top1");
    if (isnan(top1)) top1 = num_in(m, "map");       /* multi-label runs */
    if (isnan(top1)) top1 = num_in(m, "miou");      /* segmentation runs */
    if (isnan(top1)) top1 = num_in(m, "mean_top1"); /* multi-task runs */
    if (x) {
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(m, "hierarchy");
        x->leaf = num_in(h, "leaf_acc"), x->hca = num_in(h, "hca"), x->mta = num_in(h, "mta");
        const cJSON *ts = cJSON_GetObjectItemCaseSensitive(m, "tasks");
        for (int t = 0; t < n_tasks; t++) {
            x->task_top1[t] = num_in(cJSON_GetArrayItem(ts, t), "top1");
            if (isnan(x->task_top1[t])) top1 = NAN; /* incomplete: run it again */
        }
    }
    cJSON_Delete(m);
    return top1;
}

/* The harmonic mean of base and novel accuracy, as the papers report it. */
static double hmean(double b, double n) { return b + n > 0 ? 2 * b * n / (b + n) : 0; }

/* results.md's base-to-novel section: per method and shots, base / novel /
 * HM (mean ± std over seeds of base and novel; HM of the means). */
static bool append_b2n(FILE *f, const run_args *ra, const ct_method *const *ms, const int *shots,
                       int n_shots, int n_seeds, const cell *cells, int n_cells) {
    double *b = malloc((size_t)(n_seeds + 1) * sizeof *b), *n = malloc((size_t)(n_seeds + 1) * sizeof *n);
    if (!b || !n) {
        free(b), free(n);
        return false;
    }
    fprintf(f, "\n## Base-to-novel\n\nTrained on the base classes (the first half); top-1 on "
            "the base and the novel classes' test images, mean ± std over seeds, and the "
            "harmonic mean HM of the two means (as the MaPLe and PromptSRC tables).\n\n"
            "| method | shots | base | novel | HM |\n|---|---:|---:|---:|---:|\n");
    for (int m = 0; m < ra->n_methods; m++)
        for (int k = 0; k < n_shots; k++) {
            int nv = 0;
            for (int c = 0; c < n_cells; c++)
                if (cells[c].method == m && (training_free(ms[m]) || cells[c].shots == shots[k]))
                    b[nv] = cells[c].top1, n[nv++] = cells[c].novel;
            double bm, bs, nm, ns;
            ct_mean_std(b, nv, &bm, &bs);
            ct_mean_std(n, nv, &nm, &ns);
            if (nv < 2) bs = ns = 0;
            fprintf(f, "| %s | %d | %.2f ± %.2f | %.2f ± %.2f | %.2f |\n", ra->methods[m],
                    shots[k], 100 * bm, 100 * bs, 100 * nm, 100 * ns, 100 * hmean(bm, nm));
        }
    free(b), free(n);
    return true;
}

static bool has_duplicates(const int *v, int n, const char *what) {
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (v[i] == v[j]) return cli_error("protocol: %s lists %d twice", what, v[i]) != 0;
    return false;
}

/* Append text to a file written by the report layer, atomically. */
static bool append_file(const char *path, const char *text) {
    char *old = NULL;
    size_t n = 0;
    if (ct_read_file(path, &old, &n) != CT_OK) return cli_lib_error("protocol") == 0;
    size_t t = strlen(text);
    char *all = malloc(n + t + 1);
    bool ok = all != NULL;
    if (ok) {
        memcpy(all, old, n), memcpy(all + n, text, t);
        ok = ct_write_file_atomic(path, all, n + t) == CT_OK;
        if (!ok) cli_lib_error("protocol");
    }
    free(all);
    free(old);
    return ok;
}

static cJSON *json_num(double v) {
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

/* The numbers a protocol tabulates besides each cell's main one (top1):
 * the hierarchy metrics (--taxonomy) or each task's top-1 (multi-task). */
enum { V_MAIN = -4, V_LEAF = -3, V_HCA = -2, V_MTA = -1 }; /* >= 0: task index */

static double cell_value(const cell *c, int what) {
    switch (what) {
    case V_MAIN: return c->top1;
    case V_LEAF: return c->leaf;
    case V_HCA: return c->hca;
    case V_MTA: return c->mta;
    default: return c->task_top1[what];
    }
}

/* One number's table: per method and shots, mean and std over the seeds
 * (a training-free method's one run: std NaN, shown without a ±). */
typedef struct {
    const char *key;   /* results.json's name ("hca", a task's name) */
    const char *label; /* results.md's caption ("HCA", "Top-1 on digits") */
    const char *stem;  /* the plot: OUT/<stem>_vs_shots.svg */
    int what;
    double *mean, *std;
} table;

static bool summarize(const run_args *ra, const ct_method *const *ms, const int *shots,
                      int n_shots, const cell *cells, int n_cells, table *t) {
    size_t nt = (size_t)ra->n_methods * (size_t)n_shots;
    t->mean = malloc(nt * sizeof *t->mean), t->std = malloc(nt * sizeof *t->std);
    double *v = malloc((size_t)(n_cells ? n_cells : 1) * sizeof *v);
    if (!t->mean || !t->std || !v) {
        free(v);
        return cli_error("protocol: out of memory") == 0;
    }
    for (int m = 0; m < ra->n_methods; m++)
        for (int k = 0; k < n_shots; k++) {
            int nv = 0;
            for (int c = 0; c < n_cells; c++)
                if (cells[c].method == m && (training_free(ms[m]) || cells[c].shots == shots[k]))
                    v[nv++] = cell_value(&cells[c], t->what);
            size_t at = (size_t)m * (size_t)n_shots + (size_t)k;
            ct_mean_std(v, nv, &t->mean[at], &t->std[at]);
            if (training_free(ms[m])) t->std[at] = NAN;
        }
    free(v);
    return true;
}

/* results.md gets another metric's table (ct_report_protocol_metric's,
 * its title one level down) and OUT/<stem>_vs_shots.svg its plot. */
static bool append_table(const char *out, const char *md, const char *title, const table *t,
                         const run_args *ra, const int *shots, int n_shots, int n_seeds) {
    char tmp[4200], svg[4200];
    snprintf(tmp, sizeof tmp, "%s/.%s-table.md", out, t->stem);
    snprintf(svg, sizeof svg, "%s/%s_vs_shots.svg", out, t->stem);
    if (ct_report_protocol_metric(tmp, svg, title, t->label, (const char *const *)ra->methods,
                                  ra->n_methods, shots, n_shots, t->mean, t->std,
                                  n_seeds) != CT_OK)
        return cli_lib_error("protocol") == 0;
    char *text = NULL;
    size_t n = 0;
    bool ok = ct_read_file(tmp, &text, &n) == CT_OK || cli_lib_error("protocol") == 0;
    unlink(tmp);
    char *sect = ok ? malloc(n + 3) : NULL;
    if (sect) {
        sect[0] = '\n', sect[1] = '#';
        memcpy(sect + 2, text, n);
        sect[n + 2] = 0;
        ok = append_file(md, sect);
    } else if (ok) {
        ok = cli_error("protocol: out of memory") == 0;
    }
    free(sect), free(text);
    return ok;
}

static bool write_json(const char *path, const run_args *ra, const char *dataset,
                       const char *metric,
                       char *const *methods, int n_methods, const int *shots, int n_shots,
                       const uint64_t *seeds, int n_seeds, const cell *cells, int n_cells,
                       const double *mean, const double *std, const ct_method *const *ms,
                       const table *extra, int n_extra) {
    bool mt = ra->n_datas > 1;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", ra->model.model);
    if (mt) {
        cJSON_AddItemToObject(j, "data", cJSON_CreateStringArray(ra->datas, ra->n_datas));
        cJSON_AddBoolToObject(j, "multi_task", true);
    } else {
        cJSON_AddStringToObject(j, "data", ra->data);
    }
    cJSON_AddStringToObject(j, "dataset", dataset);
    if (ra->taxonomy) cJSON_AddStringToObject(j, "taxonomy", ra->taxonomy);
    /* each cell's number: top-1 accuracy, mAP on a multi-label dataset,
     * mIoU on a segmentation dataset, the mean top-1 over the tasks of a
     * multi-task protocol */
    cJSON_AddStringToObject(j, "metric", metric);
    cJSON_AddItemToObject(j, "methods",
                          cJSON_CreateStringArray((const char *const *)methods, n_methods));
    cJSON_AddItemToObject(j, "shots", cJSON_CreateIntArray(shots, n_shots));
    cJSON *sd = cJSON_AddArrayToObject(j, "seeds");
    for (int i = 0; i < n_seeds; i++)
        cJSON_AddItemToArray(sd, cJSON_CreateNumber((double)seeds[i]));
    cJSON *cs = cJSON_AddArrayToObject(j, "cells");
    for (int i = 0; i < n_cells; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "method", methods[cells[i].method]);
        cJSON_AddNumberToObject(c, "shots", cells[i].shots);
        cJSON_AddNumberToObject(c, "seed", (double)cells[i].seed);
        cJSON_AddItemToObject(c, metric, json_num(cells[i].top1));
        if (ra->base_to_novel) cJSON_AddItemToObject(c, "novel_top1", json_num(cells[i].novel));
        /* the hierarchy metrics beside top1; a multi-task cell's per task */
        cJSON *ts = mt ? cJSON_AddArrayToObject(c, "tasks") : NULL;
        for (int e = 0; e < n_extra; e++) {
            double v = cell_value(&cells[i], extra[e].what);
            if (!mt) {
                cJSON_AddItemToObject(c, extra[e].key, json_num(v));
                continue;
            }
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "task", extra[e].key);
            cJSON_AddItemToObject(o, "top1", json_num(v));
            cJSON_AddItemToArray(ts, o);
        }
        cJSON_AddStringToObject(c, "run_dir", cells[i].dir);
        cJSON_AddItemToArray(cs, c);
    }
    /* mean/std as the table shows them; a training-free method's one run
     * stands for every shots column, with no spread over seeds (std 0) */
    cJSON *sum = cJSON_AddArrayToObject(j, "summary");
    for (int m = 0; m < n_methods; m++)
        for (int k = 0; k < n_shots; k++) {
            size_t at = (size_t)m * (size_t)n_shots + (size_t)k;
            bool once = training_free(ms[m]);
            cJSON *c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "method", methods[m]);
            cJSON_AddNumberToObject(c, "shots", shots[k]);
            cJSON_AddItemToObject(c, "mean", json_num(mean[at]));
            cJSON_AddItemToObject(c, "std", json_num(once ? 0.0 : std[at]));
            cJSON_AddNumberToObject(c, "runs", once ? 1 : n_seeds);
            cJSON_AddBoolToObject(c, "training_free", once);
            cJSON *ts = mt ? cJSON_AddArrayToObject(c, "tasks") : NULL;
            for (int e = 0; e < n_extra; e++) {
                cJSON *o = cJSON_CreateObject();
                if (mt) cJSON_AddStringToObject(o, "task", extra[e].key);
                cJSON_AddItemToObject(o, "mean", json_num(extra[e].mean[at]));
                cJSON_AddItemToObject(o, "std", json_num(once ? 0.0 : extra[e].std[at]));
                if (mt)
                    cJSON_AddItemToArray(ts, o);
                else
                    cJSON_AddItemToObject(c, extra[e].key, o);
            }
            cJSON_AddItemToArray(sum, c);
        }
    bool ok = cli_json_save(path, j, "protocol");
    cJSON_Delete(j);
    return ok;
}

/* results.md, accuracy_vs_shots.svg and results.json from the cells (with
 * --taxonomy also the HCA and MTA tables, hca_vs_shots.svg and
 * mta_vs_shots.svg, and leaf_acc in results.json; multi-task: a table per
 * task, task<T>_vs_shots.svg). */
static bool write_results(const char *out, const run_args *ra, const char *dataset,
                          const char *metric, char names[][64],
                          const ct_method *const *ms, const int *shots, int n_shots,
                          const uint64_t *seeds, int n_seeds, const cell *cells, int n_cells) {
    int n_methods = ra->n_methods;
    bool mt = ra->n_datas > 1;
    table main_t = {.what = V_MAIN}, extra[CT_MT_MAX_TASKS + 3];
    int n_extra = 0;
    char labels[CT_MT_MAX_TASKS][96], stems[CT_MT_MAX_TASKS][24];
    if (ra->taxonomy) {
        extra[n_extra++] = (table){.key = "leaf_acc", .label = "Leaf accuracy", .stem = "leaf",
                                   .what = V_LEAF};
        extra[n_extra++] = (table){.key = "hca", .label = "HCA", .stem = "hca", .what = V_HCA};
        extra[n_extra++] = (table){.key = "mta", .label = "MTA", .stem = "mta", .what = V_MTA};
    }
    for (int t = 0; mt && t < ra->n_datas; t++) {
        snprintf(labels[t], sizeof labels[t], "Top-1 accuracy on %s", names[t]);
        snprintf(stems[t], sizeof stems[t], "task%d", t);
        extra[n_extra++] = (table){.key = names[t], .label = labels[t], .stem = stems[t],
                                   .what = t};
    }
    bool ok = summarize(ra, ms, shots, n_shots, cells, n_cells, &main_t);
    for (int e = 0; ok && e < n_extra; e++)
        ok = summarize(ra, ms, shots, n_shots, cells, n_cells, &extra[e]);
    char md[4200], svg[4200], js[4200], title[512];
    snprintf(md, sizeof md, "%s/results.md", out);
    snprintf(svg, sizeof svg, "%s/accuracy_vs_shots.svg", out);
    snprintf(js, sizeof js, "%s/results.json", out);
    snprintf(title, sizeof title, "Few-shot protocol on %s%s", dataset,
             !strcmp(metric, "map")         ? " (multi-label: mAP)"
             : !strcmp(metric, "miou")      ? " (segmentation: mIoU)"
             : !strcmp(metric, "mean_top1") ? " (multi-task: mean top-1 over the tasks)"
                                            : "");
    const char *label = !strcmp(metric, "map")         ? "mAP"
                        : !strcmp(metric, "miou")      ? "mIoU"
                        : !strcmp(metric, "mean_top1") ? "Mean top-1 accuracy over the tasks"
                                                       : "Top-1 accuracy";
    if (ok && ct_report_protocol_metric(md, svg, title, label, (const char *const *)ra->methods,
                                        n_methods, shots, n_shots, main_t.mean, main_t.std,
                                        n_seeds) != CT_OK)
        ok = cli_lib_error("protocol") == 0;
    for (int e = 0; ok && e < n_extra; e++) {
        /* leaf accuracy is results.json's only: it is the top-1 table's number */
        if (extra[e].what == V_LEAF) continue;
        char sub[600];
        if (mt)
            snprintf(sub, sizeof sub, "Task %s", extra[e].key);
        else
            snprintf(sub, sizeof sub, "%s (hierarchy: %s)",
                     extra[e].what == V_HCA ? "Hierarchical consistency accuracy"
                                            : "Mean tree-cut accuracy",
                     ra->taxonomy);
        ok = append_table(out, md, sub, &extra[e], ra, shots, n_shots, n_seeds);
    }
    /* the notes the generic table cannot carry */
    char *notes = NULL;
    size_t nn = 0;
    FILE *f = ok ? open_memstream(&notes, &nn) : NULL;
    if (f) {
        fprintf(f, "\nSeeds: ");
        for (int i = 0; i < n_seeds; i++)
            fprintf(f, "%s%llu", i ? ", " : "", (unsigned long long)seeds[i]);
        fprintf(f, ". Each cell is a run directory `<method>/<K>shot/seed<N>/` beside this "
                "file (config, metrics, predictions, report); per-run numbers are in "
                "`results.json`.\n");
        if (ra->taxonomy)
            fprintf(f, "\nHierarchy (ProTeCt's metrics, docs/training.md \"Hierarchy runs\"): "
                    "leaf accuracy is the top-1 over the tree's leaves, HCA counts an image "
                    "right only when every decision on its label's path is, MTA is the mean "
                    "accuracy over the evaluation tree cuts.\n");
        if (mt)
            fprintf(f, "\nMulti-task: every cell is one run over all the tasks; each task is "
                    "scored among its own classes, and the first table is the mean of the "
                    "tasks' top-1.\n");
        for (int m = 0; m < n_methods; m++)
            if (training_free(ms[m]))
                fprintf(f, "\n%s is training-free (no fitting step, no loss): it never sees "
                        "the training images, so shots and seed cannot change it. It was run "
                        "once (`%s/0shot/seed%llu/`) and that number is repeated in every "
                        "shots column, without a spread.\n",
                        ra->methods[m], ra->methods[m], (unsigned long long)seeds[0]);
        if (ra->base_to_novel)
            append_b2n(f, ra, ms, shots, n_shots, n_seeds, cells, n_cells);
        fclose(f);
        ok = append_file(md, notes);
    } else if (ok) {
        ok = cli_error("protocol: out of memory") == 0;
    }
    free(notes);
    ok = ok && write_json(js, ra, dataset, metric, ra->methods, n_methods, shots, n_shots, seeds,
                          n_seeds, cells, n_cells, main_t.mean, main_t.std, ms, extra, n_extra);
    free(main_t.mean), free(main_t.std);
    for (int e = 0; e < n_extra; e++) free(extra[e].mean), free(extra[e].std);
    return ok;
}

/* ---- cross-dataset transfer / domain generalisation (--targets) ---- */

typedef struct {
    char **specs;      /* target data specs                        */
    int n;
    ct_splits *data;   /* n opened targets                         */
    ct_dataset **test; /* n test splits (--max-test applied)       */
    double *top1;      /* (n_cells, n): NaN where not applicable   */
    char **why;        /* (n_cells, n): why not applicable, or NULL */
} xd_targets;

/* Removes --targets LIST / --target SPEC from argv (run_args does not know
 * them) into t->specs. False (error printed) on a bad list. */
static bool xd_take_args(int *argc, char **argv, xd_targets *t) {
    int w = 1;
    for (int i = 1; i < *argc; i++) {
        bool list = !strcmp(argv[i], "--targets"), one = !strcmp(argv[i], "--target");
        if (!list && !one) {
            argv[w++] = argv[i];
            continue;
        }
        if (i + 1 >= *argc) return cli_usage("protocol: %s needs a value", argv[i]) == 0;
        const char *v = argv[++i];
        for (const char *p = v;;) {
            const char *comma = list ? strchr(p, ',') : NULL;
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            if (len == 0) return cli_usage("protocol: %s %s: an empty target", argv[i - 1], v) == 0;
            char **sp = realloc(t->specs, (size_t)(t->n + 1) * sizeof *sp);
            if (!sp) return cli_error("protocol: out of memory") == 0;
            t->specs = sp;
            if (!(t->specs[t->n] = strndup(p, len)))
                return cli_error("protocol: out of memory") == 0;
            t->n++;
            if (!comma) break;
            p = comma + 1;
        }
    }
    argv[w] = NULL;
    *argc = w;
    return true;
}

static void xd_free(xd_targets *t, int n_cells) {
    for (int i = 0; i < t->n; i++) {
        free(t->specs[i]);
        if (t->data) ct_splits_free(&t->data[i]);
        if (t->test) ct_dataset_free(t->test[i]);
    }
    for (int i = 0; t->why && i < n_cells * t->n; i++) free(t->why[i]);
    free(t->specs), free(t->data), free(t->test), free(t->top1), free(t->why);
    memset(t, 0, sizeof *t);
}

/* A target's file-name-safe dataset name. */
static void xd_dirname(char *buf, size_t n, const char *cell_dir, int i, const char *name) {
    snprintf(buf, n, "%s/target%d-%s", cell_dir, i + 1, name);
    for (char *p = buf + strlen(cell_dir) + 1; *p; p++)
        if (*p == '/' || *p == ':' || *p == ' ') *p = '_';
}

/* Was this target evaluated for this spec already? (target.json records
 * it; report.md is the last file written) */
static bool xd_done(const char *dir, const char *spec) {
    char path[4200];
    snprintf(path, sizeof path, "%s/target.json", dir);
    char *text = NULL;
    size_t n = 0;
    bool same = false;
    if (ct_read_file(path, &text, &n) == CT_OK) {
        cJSON *j = cJSON_ParseWithLength(text, n);
        const cJSON *d = j ? cJSON_GetObjectItemCaseSensitive(j, "data") : NULL;
        same = cJSON_IsString(d) && cli_same_data(d->valuestring, spec);
        cJSON_Delete(j);
    }
    free(text);
    ct_clear_error();
    return same;
}

/* Cell x's run evaluated on target i: top-1, or NaN with *why set when the
 * method cannot score the target's classes. False on other errors. */
static bool xd_eval(const cell *x, xd_targets *t, int i, const run_args *ra, run_ctx *rc,
                    double *top1, char **why) {
    *top1 = NAN, *why = NULL;
    const ct_dataset *test = t->test[i];
    char dir[4400], abs_spec[4096];
    xd_dirname(dir, sizeof dir, x->dir, i, test->name);
    if (xd_done(dir, t->specs[i])) {
        *top1 = finished_value(dir, "metrics.json", NULL, 0);
        if (!isnan(*top1)) return true;
        char path[4500];
        snprintf(path, sizeof path, "%s/target.json", dir);
        char *text = NULL;
        size_t n = 0;
        if (ct_read_file(path, &text, &n) == CT_OK) { /* an n/a recorded before */
            cJSON *j = cJSON_ParseWithLength(text, n);
            const cJSON *w = j ? cJSON_GetObjectItemCaseSensitive(j, "not_applicable") : NULL;
            if (cJSON_IsString(w)) *why = strdup(w->valuestring);
            cJSON_Delete(j);
        }
        free(text);
        ct_clear_error();
        if (*why) return true;
    }
    if (!rc->model && !(rc->model = model_load(&ra->model, true, "protocol"))) return false;
    ct_saved_run *r = ct_saved_run_open(x->dir);
    if (!r) return cli_lib_error("protocol") == 0;
    ct_status s = CT_OK;
    if (ct_saved_run_class_relation(r, test) == 2) { /* as the target, its template too */
        s = ct_saved_run_set_classes(r, (const char *const *)test->classnames, test->n_classes);
        if (s == CT_OK) s = ct_saved_run_set_dataset_name(r, test->name);
    }
    if (s == CT_OK) s = ct_saved_run_attach(r, rc->model);
    ct_metrics m = {0};
    const char *cache = ra->cache && strcmp(ra->cache, "none") ? ra->cache : NULL;
    if (s == CT_OK) s = ct_saved_run_evaluate(r, test, t->specs[i], cache, dir, &m);
    ct_saved_run_free(r);
    if (s == CT_ERR_UNSUPPORTED) { /* per-class learned tensors: n/a, said why */
        if (!(*why = strdup(ct_last_error()))) return cli_error("protocol: out of memory") == 0;
        ct_clear_error();
    } else if (s != CT_OK) {
        return cli_lib_error("protocol") == 0;
    } else {
        *top1 = m.top1;
    }
    ct_metrics_free(&m);
    /* what was evaluated, written last: a re-run reads it back */
    if (ct_mkdir_p(dir) != CT_OK) return cli_lib_error("protocol") == 0;
    cJSON *j = cJSON_CreateObject();
    if (ct_data_spec_absolute(t->specs[i], abs_spec, sizeof abs_spec) != CT_OK)
        snprintf(abs_spec, sizeof abs_spec, "%s", t->specs[i]);
    cJSON_AddStringToObject(j, "data", abs_spec);
    cJSON_AddStringToObject(j, "dataset", test->name);
    if (*why) cJSON_AddStringToObject(j, "not_applicable", *why);
    else cJSON_AddNumberToObject(j, "top1", *top1);
    char path[4500];
    snprintf(path, sizeof path, "%s/target.json", dir);
    bool ok = cli_json_save(path, j, "protocol");
    cJSON_Delete(j);
    return ok;
}

/* Is every target an ImageNet variant and the source ImageNet? Then the
 * table is CoOp's domain generalisation one. */
static bool xd_is_dg(const char *source, const xd_targets *t) {
    if (strncmp(source, "imagenet:", 9)) return false;
    static const char *const v[] = {"imagenetv2:", "imagenet-sketch:", "imagenet-a:",
                                    "imagenet-r:"};
    for (int i = 0; i < t->n; i++) {
        bool hit = false;
        for (int k = 0; k < 4; k++) hit = hit || !strncmp(t->specs[i], v[k], strlen(v[k]));
        if (!hit) return false;
    }
    return true;
}

/* results.md's transfer table and results.json's "targets" / "transfer":
 * per method and shots the source top-1 and each target's (mean ± std over
 * seeds) and the average over the targets (of the means; n/a when a
 * target is). */
static bool xd_write(const char *out, const run_args *ra, const ct_method *const *ms,
                     const int *shots, int n_shots, const cell *cells, int n_cells,
                     const xd_targets *t) {
    bool dg = xd_is_dg(ra->data, t);
    int n_seeds_max = n_cells + 1;
    double *v = malloc((size_t)n_seeds_max * sizeof *v);
    char *md = NULL;
    size_t mn = 0;
    FILE *f = v ? open_memstream(&md, &mn) : NULL;
    if (!f) {
        free(v);
        return cli_error("protocol: out of memory") == 0;
    }
    char jpath[4200];
    snprintf(jpath, sizeof jpath, "%s/results.json", out);
    char *jt = NULL;
    size_t jn = 0;
    cJSON *j = ct_read_file(jpath, &jt, &jn) == CT_OK ? cJSON_ParseWithLength(jt, jn) : NULL;
    free(jt);
    if (!j) {
        fclose(f), free(md), free(v);
        return cli_error("protocol: cannot read back %s", jpath) == 0;
    }
    cJSON_AddStringToObject(j, "transfer_kind", dg ? "domain-generalisation" : "cross-dataset");
    cJSON *jt_ = cJSON_AddArrayToObject(j, "targets");
    for (int i = 0; i < t->n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "data", t->specs[i]);
        cJSON_AddStringToObject(e, "dataset", t->test[i]->name);
        cJSON_AddNumberToObject(e, "classes", t->test[i]->n_classes);
        cJSON_AddNumberToObject(e, "test_images", (double)t->test[i]->n_items);
        cJSON_AddItemToArray(jt_, e);
    }
    /* per cell: its targets' top-1 (null where n/a) */
    cJSON *jc = cJSON_GetObjectItemCaseSensitive(j, "cells");
    for (int c = 0; c < n_cells && cJSON_IsArray(jc); c++) {
        cJSON *e = cJSON_GetArrayItem(jc, c), *a = cJSON_CreateArray();
        for (int i = 0; i < t->n; i++)
            cJSON_AddItemToArray(a, json_num(t->top1[(size_t)c * t->n + i]));
        cJSON_AddItemToObject(e, "targets_top1", a);
    }
    fprintf(f, "\n## %s\n\nTrained on %s; each run evaluated on the test split of every "
            "target (top-1, mean ± std over seeds). Average: the mean of the targets' "
            "means, as the %s tables report it.\n\n| method | shots | source |", dg ?
            "Domain generalisation" : "Cross-dataset transfer", ra->data, dg ?
            "CoOp / CoCoOp / MaPLe domain generalisation" : "CoCoOp / MaPLe cross-dataset");
    for (int i = 0; i < t->n; i++) fprintf(f, " %s |", t->test[i]->name);
    fprintf(f, " average |\n|---|---:|---:|");
    for (int i = 0; i <= t->n; i++) fprintf(f, "---:|");
    fprintf(f, "\n");
    cJSON *js = cJSON_AddArrayToObject(j, "transfer");
    bool any_na = false;
    for (int m = 0; m < ra->n_methods; m++)
        for (int k = 0; k < n_shots; k++) {
            cJSON *row = cJSON_CreateObject(), *tm = cJSON_CreateArray();
            cJSON_AddStringToObject(row, "method", ra->methods[m]);
            cJSON_AddNumberToObject(row, "shots", shots[k]);
            double mean, sd, avg = 0;
            bool avg_ok = true;
            for (int i = -1; i < t->n; i++) {
                int nv = 0;
                bool na = false;
                for (int c = 0; c < n_cells; c++)
                    if (cells[c].method == m &&
                        (training_free(ms[m]) || cells[c].shots == shots[k])) {
                        double x = i < 0 ? cells[c].top1 : t->top1[(size_t)c * t->n + i];
                        if (isnan(x)) na = true;
                        else v[nv++] = x;
                    }
                if (na || nv == 0) {
                    fprintf(f, " n/a |");
                    if (i >= 0) cJSON_AddItemToArray(tm, cJSON_CreateNull()), avg_ok = false;
                    any_na = any_na || i >= 0;
                    continue;
                }
                ct_mean_std(v, nv, &mean, &sd);
                if (nv < 2) sd = 0;
                if (i < 0) {
                    fprintf(f, "| %s | %d | %.2f ± %.2f |", ra->methods[m], shots[k], 100 * mean,
                            100 * sd);
                    cJSON_AddNumberToObject(row, "source", mean);
                } else {
                    fprintf(f, " %.2f ± %.2f |", 100 * mean, 100 * sd);
                    cJSON_AddItemToArray(tm, cJSON_CreateNumber(mean));
                    avg += mean / t->n;
                }
            }
            if (avg_ok) fprintf(f, " %.2f |\n", 100 * avg);
            else fprintf(f, " n/a |\n");
            cJSON_AddItemToObject(row, "targets", tm);
            cJSON_AddItemToObject(row, "average", json_num(avg_ok ? avg : NAN));
            cJSON_AddItemToArray(js, row);
        }
    if (any_na) {
        fprintf(f, "\nn/a: the method cannot score that target's classes:\n\n");
        for (int c = 0; c < n_cells; c++)
            for (int i = 0; i < t->n; i++) {
                const char *w = t->why[(size_t)c * t->n + i];
                bool first = true; /* one line per method and target */
                for (int d = 0; d < c && first; d++)
                    first = !(cells[d].method == cells[c].method && t->why[(size_t)d * t->n + i]);
                if (w && first) fprintf(f, "- %s on %s: %s\n", ra->methods[cells[c].method],
                                        t->test[i]->name, w);
            }
    }
    fprintf(f, "\nEach target's evaluation is in `<method>/<K>shot/seed<N>/target<i>-<dataset>/` "
            "(metrics, predictions, report).\n");
    fclose(f);
    char mdp[4200];
    snprintf(mdp, sizeof mdp, "%s/results.md", out);
    bool ok = md && append_file(mdp, md) && cli_json_save(jpath, j, "protocol");
    cJSON_Delete(j);
    free(md), free(v);
    return ok;
}

int cmd_protocol(int argc, char **argv) {
    if (cli_help_requested(argc, argv)) {
        fputs(HELP, stdout);
        return 0;
    }
    xd_targets xt = {0};
    int n_cells = 0;
    if (!xd_take_args(&argc, argv, &xt)) {
        xd_free(&xt, 0);
        return 1;
    }
    run_args ra;
    if (!run_args_parse(argc, argv, "protocol", NULL, &ra)) {
        xd_free(&xt, 0);
        return 1;
    }
    int code = 1;
    run_ctx rc;
    memset(&rc, 0, sizeof rc);
    /* multi-task (several --data): every task's splits; sp[0] is rc.data */
    ct_splits sp[CT_MT_MAX_TASKS];
    memset(sp, 0, sizeof sp);
    char names[CT_MT_MAX_TASKS][64];
    bool mt = ra.n_datas > 1;
    cell *cells = NULL;
    char **sets = NULL;
    const ct_method **ms = NULL;
    int shots[16], n_shots = ra.n_shots, n_seeds = ra.n_seeds;
    uint64_t seeds[16];
    memcpy(shots, ra.shots_list, sizeof shots);
    memcpy(seeds, ra.seeds, sizeof seeds);
    if (n_shots == 0) {
        n_shots = (int)(sizeof DEFAULT_SHOTS / sizeof *DEFAULT_SHOTS);
        memcpy(shots, DEFAULT_SHOTS, sizeof DEFAULT_SHOTS);
    }
    if (n_seeds == 0) {
        n_seeds = (int)(sizeof DEFAULT_SEEDS / sizeof *DEFAULT_SEEDS);
        memcpy(seeds, DEFAULT_SEEDS, sizeof DEFAULT_SEEDS);
    }
    if (ra.n_methods == 0) {
        cli_usage("protocol: no --methods given (see `cliptune methods`)");
        goto out;
    }
    if (!ra.model.model) {
        cli_usage("protocol: no --model given (see --help)");
        goto out;
    }
    int seeds_int[16];
    for (int i = 0; i < n_seeds; i++) seeds_int[i] = (int)seeds[i];
    if (has_duplicates(shots, n_shots, "--shots") || has_duplicates(seeds_int, n_seeds, "--seeds"))
        goto out;
    for (int i = 0; i < ra.n_methods; i++)
        for (int j = i + 1; j < ra.n_methods; j++)
            if (!strcmp(ra.methods[i], ra.methods[j])) {
                cli_error("protocol: --methods lists %s twice", ra.methods[i]);
                goto out;
            }
    /* The data first: the default output directory is named after it. The
     * model is loaded only when a cell has to run, so that a finished
     * protocol re-reads its table in a moment. */
    if (mt && (ra.base_to_novel || ra.taxonomy || ra.partial_labels > 0 ||
               strcmp(ra.subsample, "all"))) {
        cli_usage("protocol: a multi-task protocol (several --data) takes no --base-to-novel, "
                  "--taxonomy, --partial-labels or --subsample");
        goto out;
    }
    for (int m = 0; mt && m < ra.n_methods; m++) {
        const ct_method *me = ct_method_find(ra.methods[m]);
        if (!training_free(me) && !me->multi_task) {
            cli_usage("protocol: %s is not a multi-task method (several --data: multi-task "
                      "methods such as softcpt, and training-free ones such as zeroshot)",
                      me->name);
            goto out;
        }
    }
    if (ct_data_open(ra.data, &rc.data) != CT_OK) {
        cli_lib_error("protocol");
        goto out;
    }
    if (xt.n) {
        if (ra.base_to_novel || (ra.subsample && strcmp(ra.subsample, "all")) || mt) {
            cli_error("protocol: --targets trains on all of one source's classes; drop "
                      "--base-to-novel / --subsample / the second --data");
            goto out;
        }
        if (rc.data.train->targets || rc.data.train->masks) {
            cli_error("protocol: --targets is for single-label classification sources");
            goto out;
        }
        xt.data = calloc((size_t)xt.n, sizeof *xt.data);
        xt.test = calloc((size_t)xt.n, sizeof *xt.test);
        if (!xt.data || !xt.test) {
            cli_error("protocol: out of memory");
            goto out;
        }
        for (int i = 0; i < xt.n; i++) {
            if (ct_data_open(xt.specs[i], &xt.data[i]) != CT_OK) {
                cli_lib_error("protocol");
                goto out;
            }
            if (xt.data[i].test->targets || xt.data[i].test->masks) {
                cli_error("protocol: target %s is not a single-label classification dataset",
                          xt.specs[i]);
                goto out;
            }
            if (!(xt.test[i] = ct_dataset_head(xt.data[i].test, ra.max_test))) {
                cli_lib_error("protocol");
                goto out;
            }
        }
    }
    char dname[1024] = "";
    for (int t = 0; t < ra.n_datas; t++) {
        if (t && ct_data_open(ra.datas[t], &sp[t]) != CT_OK) {
            cli_lib_error("protocol");
            goto out;
        }
        const ct_splits *st = t ? &sp[t] : &rc.data;
        snprintf(names[t], sizeof names[t], "%s", st->train->name);
        size_t dl = strlen(dname);
        snprintf(dname + dl, sizeof dname - dl, "%s%s", t ? "+" : "", st->train->name);
    }
    if (ra.base_to_novel) {
        if (ra.subsample && strcmp(ra.subsample, "all")) {
            cli_error("protocol: --base-to-novel chooses the classes; drop --subsample");
            goto out;
        }
        ct_dataset *novel = ct_dataset_subsample_classes(rc.data.test, 1);
        rc.novel_test = novel ? ct_dataset_head(novel, ra.max_test) : NULL;
        ct_dataset_free(novel);
        if (!rc.novel_test || !splits_subsample(&rc.data, "base", "protocol")) {
            if (!rc.novel_test) cli_lib_error("protocol");
            goto out;
        }
        ra.subsample = "base";
    }
    const char *dataset = mt ? dname : rc.data.train->name;
    char outdir[4096];
    if (ra.out) {
        snprintf(outdir, sizeof outdir, "%s", ra.out);
    } else {
        snprintf(outdir, sizeof outdir, "runs/protocol-%s", dataset);
        for (char *p = outdir + 5; *p; p++)
            if (*p == ':' || *p == ' ' || *p == '/') *p = '_';
    }
    size_t len = strlen(outdir);
    while (len > 1 && outdir[len - 1] == '/') outdir[--len] = 0;

    ms = calloc((size_t)ra.n_methods, sizeof *ms);
    sets = calloc((size_t)ra.n_methods, sizeof *sets);
    for (int m = 0; ms && sets && m < ra.n_methods; m++) {
        ms[m] = ct_method_find(ra.methods[m]);
        if (!(sets[m] = method_set(ra.set, ra.methods[m], ra.methods, ra.n_methods))) goto out;
        n_cells += training_free(ms[m]) ? 1 : n_shots * n_seeds;
    }
    cells = calloc((size_t)n_cells, sizeof *cells);
    if (!ms || !sets || !cells) {
        cli_error("protocol: out of memory");
        goto out;
    }
    int c = 0;
    for (int m = 0; m < ra.n_methods; m++)
        for (int k = 0; k < (training_free(ms[m]) ? 1 : n_shots); k++)
            for (int s = 0; s < (training_free(ms[m]) ? 1 : n_seeds); s++, c++) {
                cells[c].method = m;
                cells[c].shots = training_free(ms[m]) ? 0 : shots[k];
                cells[c].seed = seeds[s];
                snprintf(cells[c].dir, sizeof cells[c].dir, "%s/%s/%dshot/seed%llu", outdir,
                         ra.methods[m], cells[c].shots, (unsigned long long)cells[c].seed);
            }

    /* a progress bar per stage of each cell (features, training) on a TTY */
    cli_progress prog;
    cli_progress_init(&prog);
    /* mpirun -n N: the ranks take cells from a work queue, each cell one
     * rank's run; one rank alone: the cells in order */
    const int rank = ct_dist_rank(), n_ranks = ct_dist_size();
    if (rank == 0)
        printf("protocol: %d methods x %d shots x %d seeds on %s -> %s (%d runs%s)\n",
               ra.n_methods, n_shots, n_seeds, dataset, outdir, n_cells,
               n_ranks > 1 ? ", over the ranks" : "");
    fflush(stdout);
    if (ct_dist_queue_begin(n_cells) != CT_OK) {
        cli_lib_error("protocol");
        goto out;
    }
    /* the cell lines: rank 0's on stdout, the other ranks' (whose stdout
     * main.c silences) on stderr */
    char on_rank[32] = "";
    if (n_ranks > 1) snprintf(on_rank, sizeof on_rank, " [rank %d]", rank);
    FILE *cf = rank > 0 ? stderr : stdout;
    for (int64_t q; (q = ct_dist_queue_next()) >= 0;) {
        c = (int)q;
        cell *x = &cells[c];
        x->handled = true;
        const ct_method *m = ms[x->method];
        char label[256];
        if (training_free(m))
            snprintf(label, sizeof label, "%s (training-free: once for all shots and seeds)",
                     m->name);
        else
            snprintf(label, sizeof label, "%s %d-shot seed %llu", m->name, x->shots,
                     (unsigned long long)x->seed);
        /* one whole line per cell, after it: an error from the cell comes
         * first, on stderr, and the line then says which cell failed */
        x->top1 = finished_value(x->dir, "metrics.json", x, mt ? ra.n_datas : 0);
        x->novel = ra.base_to_novel ? finished_value(x->dir, "novel.json", NULL, 0) : NAN;
        if (!isnan(x->top1) && ra.base_to_novel && isnan(x->novel)) x->top1 = NAN;
        if (!isnan(x->top1)) {
            ct_kv hp;
            bool same = resolved_hp(m, sets[x->method], &hp) && same_settings(x->dir, &ra, &hp);
            ct_kv_free(&hp);
            if (!same) {
                fprintf(cf, "[%d/%d] %s: failed\n", c + 1, n_cells, label);
                goto out;
            }
            x->skipped = true;
            fprintf(cf, "[%d/%d] %s: %.1f%% (skipped: done)%s\n", c + 1, n_cells, label,
                    100 * x->top1, on_rank);
            fflush(cf);
            continue;
        }
        double t0 = now_s();
        ct_run_result res;
        run_args cell_args = ra;
        cell_args.set = sets[x->method];
        bool ran = (rc.model || (rc.model = model_load(&ra.model, true, "protocol")));
        if (ran && mt) {
            const ct_splits *spp[CT_MT_MAX_TASKS];
            for (int t = 0; t < ra.n_datas; t++) spp[t] = t ? &sp[t] : &rc.data;
            ct_mt_run_cfg mc = ct_mt_run_cfg_default();
            mc.model = rc.model, mc.n_tasks = ra.n_datas, mc.data = spp;
            mc.data_specs = ra.datas, mc.method = m, mc.set = sets[x->method];
            mc.shots = x->shots, mc.seed = x->seed, mc.run_dir = x->dir;
            mc.cache_dir = ra.cache && strcmp(ra.cache, "none") ? ra.cache : NULL;
            mc.resume = ra.resume, mc.max_test = ra.max_test;
            mc.progress = cli_progress_cb, mc.progress_ctx = &prog;
            ct_mt_run_result mr;
            ran = ct_mt_run(&mc, &mr) == CT_OK || cli_error("%s", ct_last_error()) == 0;
            res = (ct_run_result){.top1 = ran ? mr.mean_top1 : NAN, .novel_top1 = NAN};
            for (int t = 0; ran && t < ra.n_datas; t++) x->task_top1[t] = mr.top1[t];
        } else if (ran) {
            ran = run_one(&cell_args, &rc, m->name, x->shots, x->seed, x->dir, NULL, &prog,
                          &res) == 0;
        }
        if (!ran) {
            cli_progress_clear(&prog);
            fprintf(cf, "[%d/%d] %s: failed\n", c + 1, n_cells, label);
            goto out;
        }
        x->top1 = res.segmentation ? res.miou : res.multi_label ? res.map : res.top1;
        x->novel = res.novel_top1;
        x->leaf = res.hierarchy ? res.leaf_acc : NAN;
        x->hca = res.hierarchy ? res.hca : NAN;
        x->mta = res.hierarchy ? res.mta : NAN;
        cli_progress_clear(&prog);
        if (ra.base_to_novel)
            fprintf(cf, "[%d/%d] %s: base %.1f%%, novel %.1f%% (%.1f s)%s\n", c + 1, n_cells,
                    label, 100 * x->top1, 100 * x->novel, now_s() - t0, on_rank);
        else
            fprintf(cf, "[%d/%d] %s: %.1f%% (%.1f s)%s\n", c + 1, n_cells, label, 100 * x->top1,
                    now_s() - t0, on_rank);
        fflush(cf);
    }
    /* each rank's cells to every rank; then rank 0 alone (the queue, still
     * open, keeps the library single-rank) evaluates the targets and
     * writes the tables */
    if (n_ranks > 1 && !merge_cells(cells, n_cells)) goto out;
    if (rank > 0) { /* (queue_end returns once rank 0 has written the tables) */
        if (ct_dist_queue_end() != CT_OK) {
            cli_lib_error("protocol");
            goto out;
        }
        code = 0;
        goto out;
    }
    /* --targets: every cell's run on every target (read back when done) */
    if (xt.n) {
        xt.top1 = calloc((size_t)n_cells * (size_t)xt.n, sizeof *xt.top1);
        xt.why = calloc((size_t)n_cells * (size_t)xt.n, sizeof *xt.why);
        if (!xt.top1 || !xt.why) {
            cli_error("protocol: out of memory");
            goto out;
        }
        for (c = 0; c < n_cells; c++)
            for (int i = 0; i < xt.n; i++) {
                size_t at = (size_t)c * (size_t)xt.n + (size_t)i;
                if (!xd_eval(&cells[c], &xt, i, &ra, &rc, &xt.top1[at], &xt.why[at])) {
                    printf("target %s, run %s: failed\n", xt.specs[i], cells[c].dir);
                    goto out;
                }
                if (xt.why[at])
                    printf("  %s -> %s: n/a (per-class learned tensors)\n", cells[c].dir,
                           xt.test[i]->name);
                else
                    printf("  %s -> %s: %.1f%%\n", cells[c].dir, xt.test[i]->name,
                           100 * xt.top1[at]);
                fflush(stdout);
            }
    }
    const char *metric = mt                     ? "mean_top1"
                         : rc.data.train->masks   ? "miou"
                         : rc.data.train->targets ? "map"
                                                  : "top1";
    if (!write_results(outdir, &ra, dataset, metric, names, ms, shots, n_shots, seeds, n_seeds,
                       cells, n_cells))
        goto out;
    if (xt.n && !xd_write(outdir, &ra, ms, shots, n_shots, cells, n_cells, &xt)) goto out;
    if (ct_dist_queue_end() != CT_OK) {
        cli_lib_error("protocol");
        goto out;
    }
    printf("results: %s/results.md, %s/results.json\n", outdir, outdir);
    code = 0;
out:
    xd_free(&xt, n_cells);
    for (int m = 0; sets && m < ra.n_methods; m++) free(sets[m]);
    free(sets);
    free(ms);
    free(cells);
    for (int t = 1; t < CT_MT_MAX_TASKS; t++) ct_splits_free(&sp[t]);
    run_ctx_close(&rc);
    run_args_free(&ra);
    return code;
}
