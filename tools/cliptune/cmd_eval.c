/* cliptune eval / predict: use a finished run directory again.
 *
 * A run directory holds what it takes to rebuild the adapted model: the
 * method and its resolved hyper-parameters and class names (config.json) and
 * the learned tensors (learned.safetensors). The method is created afresh on
 * the frozen model, as ct_run created it, and the learned tensors are loaded
 * into it; training-free methods have none and are rebuilt from the text
 * side alone. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "base/json.h"
#include "methods/vcd.h"
#include "base/file.h"
#include "model_args.h"
#include "run_args.h"
#include "progress.h"
#include "report/report.h"
#include "train/features.h"
#include "train/metrics.h"
#include "train/run.h"

static const char *HELP_EVAL =
    "usage: cliptune eval --run DIR [--data SPEC] [--model MODEL] [options]\n"
    "\n"
    "Re-evaluate a finished run on the test split of SPEC (default: the run's own\n"
    "dataset and model, from DIR/config.json). SPEC must have the run's classes, in\n"
    "the same order. Prints top-1, top-5, macro-F1 and ECE and writes metrics.json,\n"
    "predictions.csv, report.md and confusion.svg to DIR/eval-<dataset>/.\n"
    "\n"
    "options:\n"
    "  --run DIR         run directory (cliptune train / zeroshot / protocol)\n"
    "  --data SPEC       dataset to test on (docs/datasets.md)\n"
    "  --model MODEL     the frozen model (default: the run's); --bpe, --act as for train\n"
    "  --cache DIR       image-feature cache (default .cliptune-cache; 'none' disables)\n"
    "  --max-test N      first N test images only (default: the run's setting on its\n"
    "                    own data, all on other data)\n"
    "  --subsample S     all, base or novel classes (default: the run's); a run trained\n"
    "                    on base evaluated on novel prints base / novel / HM (CoOp's\n"
    "                    base-to-novel protocol; needs class-agnostic learned tensors)\n";

static const char *HELP_PREDICT =
    "usage: cliptune predict --run DIR [--model MODEL] [--top K] [--explain N] IMG...\n"
    "\n"
    "Classify images with a finished run: prints, per image, the path, the predicted\n"
    "class and the top-K softmax probabilities (default K = min(5, classes)),\n"
    "tab-separated as `cliptune classify` prints them.\n"
    "\n"
    "options:\n"
    "  --run DIR         run directory (cliptune train / zeroshot / protocol)\n"
    "  --model MODEL     the frozen model (default: the run's); --bpe, --act as for train\n"
    "  --top K           probabilities to print per image\n"
    "  --explain N       vcd runs: after each image, the N descriptors that score its\n"
    "                    predicted class highest, one per line: \"  because<TAB>CLASS<TAB>\n"
    "                    DESCRIPTOR<TAB>SCORE\" (score = exp(logit_scale) x cosine; the\n"
    "                    class's logit is the mean over all its descriptors)\n";

/* What DIR/config.json (and metrics.json, for runs that predate the class
 * names in config.json) say about a run. */
typedef struct {
    const char *dir;
    cJSON *config;
    const ct_method *method;
    const char *model, *data; /* as recorded (into config)           */
    const char *dataset;      /* recorded dataset name, or NULL      */
    const char *model_hash;   /* the model's content hash, or NULL (older runs) */
    const char *subsample;    /* "all", "base" or "novel"            */
    int64_t shots, seed, max_test;
    int n_classes;
    char **classnames;        /* n_classes, malloc'ed                */
    ct_kv hp;
} run_info;

static void run_info_free(run_info *ri) {
    for (int k = 0; ri->classnames && k < ri->n_classes; k++) free(ri->classnames[k]);
    free(ri->classnames);
    ct_kv_free(&ri->hp);
    cJSON_Delete(ri->config);
    memset(ri, 0, sizeof *ri);
}

/* Class names from a JSON array of strings, or of objects' "name" (the
 * "per_class" entries of metrics.json). */
static bool names_from(const cJSON *arr, const char *key, run_info *ri, const char *path,
                       const char *cmd) {
    int n = cJSON_GetArraySize(arr);
    if (n < 1) return cli_error("%s: %s: \"%s\" is empty", cmd, path, key) == 0;
    ri->classnames = calloc((size_t)n, sizeof *ri->classnames);
    if (!ri->classnames) return cli_error("%s: out of memory", cmd) == 0;
    ri->n_classes = n;
    for (int k = 0; k < n; k++) {
        const cJSON *e = cJSON_GetArrayItem(arr, k);
        if (cJSON_IsObject(e)) e = cJSON_GetObjectItemCaseSensitive(e, "name");
        if (!cJSON_IsString(e))
            return cli_error("%s: %s: %s[%d] is not a class name", cmd, path, key, k) == 0;
        if (!(ri->classnames[k] = strdup(e->valuestring)))
            return cli_error("%s: out of memory", cmd) == 0;
    }
    return true;
}

static bool run_info_load(const char *dir, const char *cmd, run_info *ri) {
    memset(ri, 0, sizeof *ri);
    ri->dir = dir;
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!(ri->config = ct_json_load(path))) return cli_lib_error(cmd) == 0;
    const cJSON *c = ri->config;
    const char *method = NULL;
    if (ct_json_get_string(c, "method", &method, path) != CT_OK ||
        ct_json_get_string(c, "model", &ri->model, path) != CT_OK ||
        ct_json_get_string(c, "data", &ri->data, path) != CT_OK ||
        ct_json_get_int(c, "shots", &ri->shots, path) != CT_OK ||
        ct_json_get_int(c, "seed", &ri->seed, path) != CT_OK ||
        ct_json_get_int(c, "max_test", &ri->max_test, path) != CT_OK)
        return cli_lib_error(cmd) == 0;
    if (!(ri->method = ct_method_find(method)))
        return cli_error("%s: %s: method \"%s\" is not in this build (see `cliptune methods`)",
                         cmd, path, method) == 0;
    const cJSON *mh = cJSON_GetObjectItemCaseSensitive(c, "model_hash");
    if (cJSON_IsString(mh)) ri->model_hash = mh->valuestring;
    const cJSON *ds = cJSON_GetObjectItemCaseSensitive(c, "dataset");
    if (cJSON_IsString(ds)) ri->dataset = ds->valuestring;
    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(c, "subsample");
    ri->subsample = cJSON_IsString(sub) ? sub->valuestring : "all";
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(c, "hyper_parameters"), *e;
    if (!cJSON_IsObject(h))
        return cli_error("%s: %s: no \"hyper_parameters\" object", cmd, path) == 0;
    cJSON_ArrayForEach(e, h) {
        if (!cJSON_IsString(e))
            return cli_error("%s: %s: hyper_parameters.%s is not a string", cmd, path,
                             e->string) == 0;
        if (ct_kv_set(&ri->hp, e->string, e->valuestring) != CT_OK) return cli_lib_error(cmd) == 0;
    }
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(c, "classnames");
    if (names) {
        if (!cJSON_IsArray(names))
            return cli_error("%s: %s: \"classnames\" is not an array", cmd, path) == 0;
        return names_from(names, "classnames", ri, path, cmd);
    }
    /* a run written before config.json recorded its class names */
    snprintf(path, sizeof path, "%s/metrics.json", dir);
    cJSON *m = ct_json_load(path);
    if (!m) return cli_lib_error(cmd) == 0;
    const cJSON *per = cJSON_GetObjectItemCaseSensitive(m, "per_class");
    bool ok = cJSON_IsArray(per)
                  ? names_from(per, "per_class", ri, path, cmd)
                  : cli_error("%s: %s: no \"per_class\" array (and config.json no "
                              "\"classnames\")", cmd, path) == 0;
    cJSON_Delete(m);
    return ok;
}

/* The frozen model for a run: --model, or the one its config.json records
 * (a failure then says so); a model whose weights differ from the recorded
 * hash is named in a warning. */
static bool load_run_model(model_args *a, const run_info *ri, ct_bundle *b, const char *cmd) {
    bool recorded = !a->model;
    if (recorded) a->model = ri->model;
    if (!model_load(a, true, b, cmd)) {
        if (recorded)
            fprintf(stderr, "cliptune: hint: %s: the model path came from %s/config.json; "
                    "--model MODEL overrides it\n", cmd, ri->dir);
        return false;
    }
    char mh[17];
    snprintf(mh, sizeof mh, "%016llx", (unsigned long long)ct_clip_hash(b->clip));
    if (ri->model_hash && strcmp(mh, ri->model_hash))
        fprintf(stderr, "cliptune: warning: %s: the model at %s is not the one the run %s was "
                "trained with (its weights differ)\n", cmd, a->model, ri->dir);
    return true;
}

/* Fails naming the first difference when data's classes are not the run's:
 * the learned classifier's rows are in the run's label order. */
static bool same_classes(const run_info *ri, const ct_dataset *d, const char *spec,
                         const char *cmd) {
    if (d->n_classes != ri->n_classes)
        return cli_error("%s: %s has %d classes, the run %s was trained on %d", cmd, spec,
                         d->n_classes, ri->dir, ri->n_classes) == 0;
    for (int k = 0; k < d->n_classes; k++)
        if (strcmp(d->classnames[k], ri->classnames[k]))
            return cli_error("%s: class %d is \"%s\" in %s but \"%s\" in the run %s", cmd, k,
                             d->classnames[k], spec, ri->classnames[k], ri->dir) == 0;
    return true;
}

/* The name of the dataset the run was trained on: methods may key on it
 * (CoOp's per-dataset prompt template), so it must be the training one even
 * when testing elsewhere. config.json does not record it; the run's data
 * spec is opened to learn it unless the caller has it open already. */
static char *trained_name(const run_info *ri, const ct_splits *open, const char *open_spec,
                          const char *cmd) {
    if (ri->dataset) return strdup(ri->dataset);
    if (open && cli_same_data(ri->data, open_spec)) return strdup(open->train->name);
    ct_splits sp;
    if (ct_data_open(ri->data, &sp) == CT_OK) {
        char *name = strdup(sp.train->name);
        ct_splits_free(&sp);
        return name;
    }
    const char *fallback = open ? open->train->name : "";
    fprintf(stderr, "cliptune: warning: %s: cannot open the run's dataset %s to learn its name "
            "(%s); per-dataset prompt templates use \"%s\"\n", cmd, ri->data, ct_last_error(),
            fallback);
    return strdup(fallback);
}

/* A method state as ct_run left it: created on a task with the run's classes
 * and hyper-parameters, learned tensors loaded. create() gets no training
 * data (an empty set and empty features); what training produced is in
 * learned.safetensors. The task lives as long as the state, as in ct_run. */
typedef struct {
    ct_dataset none;
    ct_features no_feats;
    ct_task task;
    void *state;
} rebuilt;

static bool rebuild(run_info *ri, const ct_bundle *b, const char *dataset_name,
                    const char *cache, rebuilt *r, const char *cmd) {
    memset(r, 0, sizeof *r);
    r->none = (ct_dataset){.name = (char *)dataset_name, .root = "", .n_classes = ri->n_classes,
                           .classnames = ri->classnames};
    r->no_feats.dim = ct_clip_get_config(b->clip)->embed_dim;
    r->task = (ct_task){.clip = b->clip, .tok = b->tok, .pre = &b->pre,
                        .dataset_name = dataset_name, .n_classes = ri->n_classes,
                        .classnames = ri->classnames, .train = &r->none,
                        .train_feats = &r->no_feats, .cache_dir = cache,
                        .seed = (uint64_t)ri->seed};
    /* config.json holds the trainer's keys too; only create() reads here,
     * so unread keys are expected and not checked */
    if (ri->method->create(&r->task, &ri->hp, &r->state) != CT_OK) {
        r->state = NULL;
        return cli_lib_error(cmd) == 0;
    }
    if (ri->method->params && ct_run_load_learned(ri->method, r->state, ri->dir) != CT_OK)
        return cli_lib_error(cmd) == 0;
    return true;
}

static void rebuilt_free(const run_info *ri, rebuilt *r) {
    if (r->state) ri->method->destroy(r->state);
    r->state = NULL;
}

/* Rows of logits to softmax probabilities, in place. */
static void softmax_rows(float *s, int64_t n, int K) {
    for (int64_t i = 0; i < n; i++) {
        float *r = s + i * K, mx = r[0], sum = 0;
        for (int k = 1; k < K; k++) mx = r[k] > mx ? r[k] : mx;
        for (int k = 0; k < K; k++) sum += (r[k] = expf(r[k] - mx));
        for (int k = 0; k < K; k++) r[k] /= sum;
    }
}

/* DIR/eval-<dataset>/: metrics.json, predictions.csv (probabilities),
 * report.md + confusion.svg. */
static bool write_eval(const run_info *ri, const char *spec, const char *model,
                       const ct_dataset *test, const ct_metrics *m, float *scores, int64_t n,
                       const int *labels) {
    char dir[4096], path[4200], name[256];
    snprintf(name, sizeof name, "%s", test->name);
    for (char *p = name; *p; p++)
        if (*p == '/' || *p == ':' || *p == ' ') *p = '_';
    snprintf(dir, sizeof dir, "%s/eval-%s", ri->dir, name);
    if (ct_mkdir_p(dir) != CT_OK && cli_lib_error("eval")) return false;
    const char *const *cn = (const char *const *)ri->classnames;
    int K = ri->n_classes;
    snprintf(path, sizeof path, "%s/metrics.json", dir);
    if (ct_metrics_save_json(m, cn, path) != CT_OK) return cli_lib_error("eval") == 0;
    softmax_rows(scores, n, K);
    char **keys = calloc((size_t)(n ? n : 1), sizeof *keys);
    bool ok = keys != NULL;
    for (int64_t i = 0; ok && i < n; i++) {
        char kb[4096];
        const char *k = ct_dataset_item_key(test, i, kb, sizeof kb);
        ok = k && (keys[i] = strdup(k));
    }
    snprintf(path, sizeof path, "%s/predictions.csv", dir);
    if (!ok)
        cli_error("eval: out of memory or an item key too long");
    else if (ct_predictions_save_csv(path, (const char *const *)keys, labels, scores, n, K, cn) !=
             CT_OK)
        ok = cli_lib_error("eval") == 0;
    for (int64_t i = 0; keys && i < n; i++) free(keys[i]);
    free(keys);
    if (!ok) return false;
    char shots[32], seed[32], nt[32], title[512];
    snprintf(shots, sizeof shots, "%lld", (long long)ri->shots);
    snprintf(seed, sizeof seed, "%lld", (long long)ri->seed);
    snprintf(nt, sizeof nt, "%lld", (long long)n);
    const char *kv[] = {"run", ri->dir, "method", ri->method->name, "model", model,
                        "trained on", ri->data, "shots", shots, "seed", seed,
                        "evaluated on", spec, "test images", nt};
    snprintf(title, sizeof title, "%s (%s-shot) evaluated on %s", ri->method->name, shots,
             test->name);
    if (ct_report_run(dir, title, kv, (int)(sizeof kv / sizeof *kv / 2), m, cn, NULL) != CT_OK)
        return cli_lib_error("eval") == 0;
    printf("written: %s/ (metrics.json, predictions.csv, report.md)\n", dir);
    return true;
}

int cmd_eval(int argc, char **argv) {
    if (cli_help_requested(argc, argv)) {
        fputs(HELP_EVAL, stdout);
        return 0;
    }
    model_args a = {0};
    const char *run = NULL, *data = NULL, *cache = ".cliptune-cache", *max_arg = NULL;
    const char *subsample = NULL;
    bool bad = false;
    for (int i = 1; i < argc && !bad; i++) {
        if (model_args_parse(argc, argv, &i, &a, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--run", &run, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--subsample", &subsample, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--data", &data, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--cache", &cache, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--max-test", &max_arg, &bad)) continue;
        return cli_error("eval: unknown option or argument %s (see --help)", argv[i]);
    }
    if (bad) return 1;
    if (!run) return cli_error("eval: no --run given (see --help)");
    int64_t max_test = 0;
    char *end = NULL;
    if (max_arg && ((max_test = strtoll(max_arg, &end, 10)) < 0 || *end || !*max_arg))
        return cli_error("eval: --max-test %s: expected a number >= 0", max_arg);
    run_info ri;
    if (!run_info_load(run, "eval", &ri)) {
        run_info_free(&ri);
        return 1;
    }
    int code = 1;
    const char *spec = data ? data : ri.data;
    /* on the run's own data, the run's test subset: the same number back */
    if (!max_arg) max_test = cli_same_data(ri.data, spec) ? ri.max_test : 0;
    if (cache && !strcmp(cache, "none")) cache = NULL;
    ct_splits sp = {0};
    ct_bundle b = {0};
    rebuilt r = {0};
    ct_dataset *test = NULL;
    ct_features fte = {0};
    float *scores = NULL;
    ct_metrics m = {0};
    char *dname = NULL;
    if (ct_data_open(spec, &sp) != CT_OK) {
        cli_lib_error("eval");
        if (!data)
            fprintf(stderr, "cliptune: hint: eval: the data spec came from %s/config.json; "
                    "--data SPEC overrides it\n", run);
        goto out;
    }
    if (!subsample) subsample = ri.subsample;
    if (!splits_subsample(&sp, subsample, "eval")) goto out;
    /* base-to-novel: a run trained on some classes, evaluated on others. The
     * method is rebuilt for the new class names; only class-agnostic learned
     * tensors (e.g. CoOp's unified context) can load, others fail by size. */
    bool cross = strcmp(subsample, ri.subsample) != 0;
    if (cross) {
        for (int k = 0; k < ri.n_classes; k++) free(ri.classnames[k]);
        free(ri.classnames);
        ri.classnames = calloc((size_t)sp.train->n_classes, sizeof *ri.classnames);
        ri.n_classes = sp.train->n_classes;
        for (int k = 0; ri.classnames && k < ri.n_classes; k++)
            ri.classnames[k] = strdup(sp.train->classnames[k]);
    } else if (!same_classes(&ri, sp.train, spec, "eval")) {
        goto out;
    }
    if (!load_run_model(&a, &ri, &b, "eval")) goto out;
    if (!(dname = trained_name(&ri, &sp, spec, "eval"))) {
        cli_error("eval: out of memory");
        goto out;
    }
    if (!rebuild(&ri, &b, dname, cache, &r, "eval")) goto out;
    if (!(test = ct_dataset_head(sp.test, max_test))) {
        cli_lib_error("eval");
        goto out;
    }
    if (cache && ct_mkdir_p(cache) != CT_OK && cli_lib_error("eval")) goto out;
    ct_feature_req req = {.clip = b.clip, .pre = &b.pre, .data = test, .seed = (uint64_t)ri.seed,
                          .cache_dir = cache, .batch = 32, .dense = ri.method->dense_features,
                          .raw_pixels = ri.method->raw_pixels};
    if (ct_features_get(&req, &fte) != CT_OK) {
        cli_lib_error("eval");
        goto out;
    }
    int K = ri.n_classes;
    if (!(scores = malloc((size_t)(fte.n ? fte.n : 1) * (size_t)K * sizeof *scores))) {
        cli_error("eval: out of memory");
        goto out;
    }
    /* pixel methods (test-time tuning, a changed image tower) score the images,
     * slowly: a progress bar on a terminal */
    cli_progress prog;
    cli_progress_init(&prog);
    r.task.progress = cli_progress_cb, r.task.progress_ctx = &prog;
    if ((ct_method_scores_images(ri.method)
             ? ct_predict_images(ri.method, r.state, &r.task, test, scores)
             : ct_predict(ri.method, r.state, &fte, scores)) != CT_OK ||
        ct_metrics_compute(scores, false, fte.labels, fte.n, K, CT_ECE_BINS_DEFAULT, &m) != CT_OK) {
        cli_lib_error("eval");
        goto out;
    }
    printf("eval: %s run %s on %s (%lld test images)\n", ri.method->name, run, test->name,
           (long long)fte.n);
    printf("test: top-1 %.2f%%  top-5 %.2f%%  macro-F1 %.2f%%  ECE %.2f%%\n", 100 * m.top1,
           100 * m.top5, 100 * m.macro_f1, 100 * m.ece);
    if (cross && !strcmp(ri.subsample, "base") && !strcmp(subsample, "novel")) {
        /* CoOp's base-to-novel summary: base from the run, novel here */
        char mp[4200];
        snprintf(mp, sizeof mp, "%s/metrics.json", run);
        cJSON *mj = ct_json_load(mp);
        double base;
        if (mj && ct_json_get_double(mj, "top1", &base, mp) == CT_OK)
            printf("base-to-novel: base %.2f%%  novel %.2f%%  HM %.2f%%\n", 100 * base,
                   100 * m.top1, 100 * ct_harmonic_mean(base, m.top1));
        cJSON_Delete(mj);
    }
    if (write_eval(&ri, spec, a.model, test, &m, scores, fte.n, fte.labels)) code = 0;
out:
    ct_metrics_free(&m);
    free(scores);
    ct_features_free(&fte);
    ct_dataset_free(test);
    rebuilt_free(&ri, &r);
    free(dname);
    model_unload(&b);
    ct_splits_free(&sp);
    run_info_free(&ri);
    return code;
}

static const char *HELP_EXPORT =
    "usage: cliptune export --run DIR --out MODELDIR [--model MODEL]\n"
    "\n"
    "Write a finished run's adapted model as a plain CLIP, a Hugging Face folder\n"
    "(config.json, model.safetensors in F32, the frozen model's preprocessor_config.json\n"
    "and tokenizer files), for methods whose learning folds into the weights:\n"
    "clip-lora (W + s B A on each adapted projection, loralib's merge). The folder\n"
    "loads wherever a CLIP checkpoint does (cliptune --model MODELDIR, transformers'\n"
    "CLIPModel) and, with the run's template, ranks the classes as the run does.\n"
    "\n"
    "options:\n"
    "  --run DIR         run directory (cliptune train / protocol)\n"
    "  --out MODELDIR    the folder to write (created; files written atomically)\n"
    "  --model MODEL     the frozen model (default: the run's); --bpe, --act as for train.\n"
    "                    Its tokenizer must be an HF vocab.json + merges.txt (a model\n"
    "                    folder's, or --bpe vocab.json)\n";

/* src's file name into dir (optional files skipped when absent). */
static bool copy_into(const char *src_dir, const char *name, const char *dir, bool optional) {
    char src[4200], dst[4200];
    snprintf(src, sizeof src, "%s/%s", src_dir, name);
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    if (optional && access(src, F_OK) != 0) return true;
    return ct_copy_file(src, dst) == CT_OK || cli_lib_error("export") == 0;
}

int cmd_export(int argc, char **argv) {
    if (cli_help_requested(argc, argv)) {
        fputs(HELP_EXPORT, stdout);
        return 0;
    }
    model_args a = {0};
    const char *run = NULL, *out = NULL;
    bool bad = false;
    for (int i = 1; i < argc && !bad; i++) {
        if (model_args_parse(argc, argv, &i, &a, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--run", &run, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--out", &out, &bad)) continue;
        return cli_error("export: unknown option or argument %s (see --help)", argv[i]);
    }
    if (bad) return 1;
    if (!run || !out) return cli_error("export: --run and --out are required (see --help)");
    run_info ri;
    if (!run_info_load(run, "export", &ri)) {
        run_info_free(&ri);
        return 1;
    }
    int code = 1;
    ct_bundle b = {0}, merged = {0};
    rebuilt r = {0};
    char tok_dir[4096];
    if (!a.model) a.model = ri.model;
    /* the tokenizer's vocab.json + merges.txt: the model folder's, or --bpe's */
    struct stat sb;
    const char *vocab = a.bpe;
    if (vocab) {
        const char *slash = strrchr(vocab, '/');
        size_t n = slash ? (size_t)(slash - vocab) : 1;
        snprintf(tok_dir, sizeof tok_dir, "%.*s", (int)n, slash ? vocab : ".");
    } else {
        snprintf(tok_dir, sizeof tok_dir, "%s", a.model);
    }
    if (!ri.method->merge) {
        cli_error("export: %s learns nothing a plain CLIP can hold (export supports clip-lora)",
                  ri.method->name);
        goto out;
    }
    if ((vocab && (strlen(vocab) < 10 || strcmp(vocab + strlen(vocab) - 10, "vocab.json"))) ||
        (!vocab && (stat(a.model, &sb) != 0 || !S_ISDIR(sb.st_mode)))) {
        cli_error("export: the tokenizer of %s is not an HF vocab.json + merges.txt (give a "
                  "model folder, or --bpe DIR/vocab.json)", vocab ? vocab : a.model);
        goto out;
    }
    if (!model_load(&a, true, &b, "export")) goto out;
    if (!rebuild(&ri, &b, ri.dataset ? ri.dataset : "", NULL, &r, "export")) goto out;
    /* a second copy of the frozen model takes the merged weights */
    if (!model_load(&a, true, &merged, "export")) goto out;
    if (ri.method->merge(r.state, merged.clip) != CT_OK || ct_mkdir_p(out) != CT_OK ||
        ct_clip_save_hf(merged.clip, out) != CT_OK) {
        cli_lib_error("export");
        goto out;
    }
    if (!copy_into(tok_dir, "vocab.json", out, false) ||
        !copy_into(tok_dir, "merges.txt", out, false) ||
        !copy_into(tok_dir, "tokenizer_config.json", out, true) ||
        !copy_into(tok_dir, "special_tokens_map.json", out, true) ||
        (stat(a.model, &sb) == 0 && S_ISDIR(sb.st_mode) &&
         !copy_into(a.model, "preprocessor_config.json", out, true)))
        goto out;
    printf("export: %s run %s merged into %s (%lld parameters)\n", ri.method->name, run, out,
           (long long)ct_clip_num_params(merged.clip));
    code = 0;
out:
    rebuilt_free(&ri, &r);
    model_unload(&merged);
    model_unload(&b);
    run_info_free(&ri);
    return code;
}

int cmd_predict(int argc, char **argv) {
    if (cli_help_requested(argc, argv)) {
        fputs(HELP_PREDICT, stdout);
        return 0;
    }
    model_args a = {0};
    const char *run = NULL, *top_arg = NULL, *explain_arg = NULL;
    bool bad = false;
    char **imgs = calloc((size_t)argc, sizeof *imgs);
    int n = 0;
    if (!imgs) return cli_error("predict: out of memory");
    for (int i = 1; i < argc && !bad; i++) {
        if (model_args_parse(argc, argv, &i, &a, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--run", &run, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--top", &top_arg, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--explain", &explain_arg, &bad)) continue;
        if (argv[i][0] == '-' && argv[i][1]) {
            free(imgs);
            return cli_error("predict: unknown option %s (see --help)", argv[i]);
        }
        imgs[n++] = argv[i];
    }
    int top = 5;
    char *end = NULL;
    if (!bad && top_arg && ((top = (int)strtol(top_arg, &end, 10)) < 1 || *end))
        bad = cli_error("predict: --top %s: expected a positive number", top_arg) != 0;
    int explain = 0;
    if (!bad && explain_arg && ((explain = (int)strtol(explain_arg, &end, 10)) < 1 || *end))
        bad = cli_error("predict: --explain %s: expected a positive number", explain_arg) != 0;
    if (!bad && !run) bad = cli_error("predict: no --run given (see --help)") != 0;
    if (!bad && n == 0) bad = cli_error("predict: no images given") != 0;
    if (bad) {
        free(imgs);
        return 1;
    }
    run_info ri;
    if (!run_info_load(run, "predict", &ri)) {
        run_info_free(&ri);
        free(imgs);
        return 1;
    }
    int code = 1, K = ri.n_classes;
    if (top > K) top = K;
    if (explain && strcmp(ri.method->name, "vcd")) {
        cli_error("predict: --explain needs a vcd run; %s is a %s run", run, ri.method->name);
        run_info_free(&ri);
        free(imgs);
        return 1;
    }
    if (ri.method->raw_pixels) {
        cli_error("predict: %s is a %s run (a pixel baseline); evaluate it with `cliptune eval`",
                  run, ri.method->name);
        run_info_free(&ri);
        free(imgs);
        return 1;
    }
    ct_bundle b = {0};
    rebuilt r = {0};
    char *dname = NULL;
    float *x = NULL, *p = NULL;
    int *labels = NULL, *order = NULL, *why = NULL;
    float *why_sc = NULL;
    if (!load_run_model(&a, &ri, &b, "predict")) goto out;
    if (!(dname = trained_name(&ri, NULL, NULL, "predict"))) {
        cli_error("predict: out of memory");
        goto out;
    }
    if (!rebuild(&ri, &b, dname, NULL, &r, "predict")) goto out;
    int E = ct_clip_get_config(b.clip)->embed_dim;
    x = malloc((size_t)n * (size_t)E * sizeof *x);
    p = malloc((size_t)n * (size_t)K * sizeof *p);
    labels = calloc((size_t)n, sizeof *labels); /* unused by logits; ct_batch carries them */
    order = malloc((size_t)K * sizeof *order);
    why = malloc((size_t)(explain ? explain : 1) * sizeof *why);
    why_sc = malloc((size_t)(explain ? explain : 1) * sizeof *why_sc);
    if (!x || !p || !labels || !order || !why || !why_sc) {
        cli_error("predict: out of memory");
        goto out;
    }
    if (!model_encode_images(&b, imgs, n, x, "predict")) goto out;
    ct_features f = {.n = n, .dim = E, .x = x, .labels = labels};
    /* pixel methods score the files themselves: a dataset of the paths */
    ct_item *items = ct_method_scores_images(ri.method) ? calloc((size_t)n, sizeof *items) : NULL;
    for (int i = 0; items && i < n; i++) items[i].path = imgs[i];
    ct_dataset files = {.name = "predict", .root = "", .n_classes = K,
                        .classnames = ri.classnames, .n_items = n, .items = items};
    ct_status ps = !ct_method_scores_images(ri.method) ? ct_predict(ri.method, r.state, &f, p)
                   : items ? ct_predict_images(ri.method, r.state, &r.task, &files, p)
                           : CT_ERR_NOMEM;
    free(items);
    if (ps != CT_OK) {
        cli_lib_error("predict");
        goto out;
    }
    /* as eval: a run whose scores are not numbers (a damaged learned file)
     * is refused, not printed as "nan" */
    for (int64_t i = 0; i < (int64_t)n * K; i++)
        if (!isfinite(p[i])) {
            cli_error("predict: the run %s gives a non-finite score for %s (class %s): its "
                      "learned tensors are damaged or diverged", run, imgs[i / K],
                      ri.classnames[i % K]);
            goto out;
        }
    softmax_rows(p, n, K);
    for (int i = 0; i < n; i++) {
        const float *pi = p + (size_t)i * K;
        for (int k = 0; k < K; k++) order[k] = k;
        for (int a1 = 0; a1 < top; a1++) /* partial selection sort; ties keep the lower index */
            for (int b1 = a1 + 1; b1 < K; b1++)
                if (pi[order[b1]] > pi[order[a1]] ||
                    (pi[order[b1]] == pi[order[a1]] && order[b1] < order[a1])) {
                    int t = order[a1];
                    order[a1] = order[b1], order[b1] = t;
                }
        printf("%s\t%s", imgs[i], ri.classnames[order[0]]);
        for (int k = 0; k < top; k++) printf("\t%s=%.4f", ri.classnames[order[k]], pi[order[k]]);
        putchar('\n');
        if (explain && ct_vcd_explain(r.state, x + (size_t)i * E, order[0], explain, why,
                                      why_sc) != CT_OK) {
            cli_lib_error("predict");
            goto out;
        }
        for (int j = 0; j < explain && why[j] >= 0; j++)
            printf("  because\t%s\t%s\t%.4f\n", ri.classnames[order[0]],
                   ct_vcd_descriptor(r.state, order[0], why[j]), why_sc[j]);
    }
    code = 0;
out:
    free(x), free(p), free(labels), free(order), free(why), free(why_sc);
    rebuilt_free(&ri, &r);
    free(dname);
    model_unload(&b);
    run_info_free(&ri);
    free(imgs);
    return code;
}
