/* cliptune eval / predict / export: use a finished run directory again,
 * through the library's saved runs (ct_saved_run: config.json read, the
 * model loaded or checked against the recorded hash, the method rebuilt
 * with its learned tensors). */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "model_args.h"
#include "progress.h"
#include "run_args.h"

static const char *HELP_EVAL =
    "usage: cliptune eval --run DIR [--data SPEC] [--model MODEL] [options]\n"
    "\n"
    "Re-evaluate a finished run on the test split of SPEC (default: the run's own\n"
    "dataset and model, from DIR/config.json). SPEC may have other classes: when each\n"
    "is one of the run's (ImageNet-A/-R's 200 for an ImageNet run) the run's scores\n"
    "are restricted to them, for every method; other class names are re-encoded by\n"
    "methods whose learned tensors are class-agnostic (CoOp's unified context,\n"
    "CoCoOp, MaPLe, ...; cross-dataset transfer), and refused with a clear error for\n"
    "per-class ones (linear probe, class-specific CoOp, Tip-Adapter's cache).\n"
    "Prints top-1, top-5, macro-F1 and ECE (a multi-label run: mAP,\n"
    "VOC07 mAP, CF1 / OF1 at probability 0.5 and at top-3; a segmentation run: mIoU,\n"
    "mAcc and pixel accuracy) and writes metrics.json, predictions.csv, report.md and\n"
    "confusion.svg (a segmentation run: predictions/ label maps and overlays.png) to\n"
    "DIR/eval-<dataset>/.\n"
    "\n"
    "options:\n"
    "  --run DIR         run directory (cliptune train / zeroshot / protocol)\n"
    "  --data SPEC       dataset to test on (docs/datasets.md)\n"
    "  --model MODEL     the frozen model (default: the run's, loaded with its recorded\n"
    "                    --bpe and --act); a model whose weights differ from the run's\n"
    "                    is refused\n"
    "  --cache DIR       image-feature cache (default .cliptune-cache; 'none' disables)\n"
    "  --max-test N      first N test images only (default: the run's setting on its\n"
    "                    own data, all on other data)\n"
    "  --subsample S     all, base or novel classes (default: the run's); a run trained\n"
    "                    on base evaluated on novel prints base / novel / HM (CoOp's\n"
    "                    base-to-novel protocol; needs class-agnostic learned tensors)\n"
    "  --taxonomy FILE   score against this class taxonomy (leaf accuracy, HCA, MTA)\n"
    "                    instead of the one a hierarchy run keeps (DIR/taxonomy.txt)\n"
    "  --json            print the result as one JSON object\n";

static const char *HELP_PREDICT =
    "usage: cliptune predict --run DIR [--model MODEL] [--top K] [--explain N] [--json]\n"
    "                        [--list FILE] IMG|DIR...\n"
    "       cliptune predict --run MULTITASK_RUN --task NAME [options] IMG|DIR...\n"
    "\n"
    "Classify images with a finished run: prints, per image, the path, the predicted\n"
    "class and the top-K softmax probabilities (default K = min(5, classes)),\n"
    "tab-separated as `cliptune classify` prints them; a multi-label run prints the\n"
    "classes at sigmoid probability >= 0.5 (';'-joined, - for none) and the top-K\n"
    "per-class probabilities. A segmentation run writes a label map per image (palette\n"
    "PNG, VOC's colours, named after the image) to --out DIR (default RUN/predict) and\n"
    "prints the path, the label map's path and the top-K classes by their share of the\n"
    "pixels. A multi-task run (several --data) classifies the images among one task's\n"
    "own classes: --task names it (its dataset name, or its index from 0). A DIR stands\n"
    "for the images\n"
    "in it and below it (.jpg .jpeg .png .bmp .gif .ppm .pgm .pbm .pnm .tif .tiff\n"
    ".webp, sorted by path); --list FILE reads one path per line (- for stdin).\n"
    "\n"
    "options:\n"
    "  --run DIR         run directory (cliptune train / zeroshot / protocol)\n"
    "  --model MODEL     the frozen model (default: the run's, loaded with its recorded\n"
    "                    --bpe and --act); a model whose weights differ from the run's\n"
    "                    is refused\n"
    "  --task NAME       multi-task runs: the images' task (fashion-mnist, digits, ...)\n"
    "  --top K           probabilities to print per image\n"
    "  --out DIR         segmentation runs: where the label maps go (default RUN/predict)\n"
    "  --json            one JSON array: per image its path, label and top-K\n"
    "                    {\"label\", \"prob\"} (and the explanations)\n"
    "  --explain N       vcd runs: after each image, the N descriptors that score its\n"
    "                    predicted class highest, one per line: \"  because<TAB>CLASS<TAB>\n"
    "                    DESCRIPTOR<TAB>SCORE\" (score = exp(logit_scale) x cosine; the\n"
    "                    class's logit is the mean over all its descriptors)\n";


/* Opens DIR and attaches the model: the recorded one, or --model / --bpe /
 * --act where given (defaulting to what the run recorded). */
static ct_saved_run *open_run_as(const char *dir, const model_args *a,
                                 const char *const *classes, int n_classes,
                                 const char *dataset_name, cli_progress *prog, const char *cmd,
                                 const char *taxonomy) {
    ct_saved_run *r = ct_saved_run_open(dir);
    if (!r) {
        cli_lib_error(cmd);
        return NULL;
    }
    const ct_run_info *ri = ct_saved_run_info(r);
    ct_model *m = NULL;
    if (classes && ct_saved_run_set_classes(r, classes, n_classes) != CT_OK) goto fail;
    if (taxonomy && ct_saved_run_set_taxonomy(r, taxonomy) != CT_OK) goto fail;
    if (dataset_name && ct_saved_run_set_dataset_name(r, dataset_name) != CT_OK) goto fail;
    if (prog) ct_saved_run_set_progress(r, cli_progress_cb, prog);
    if (a->model || a->bpe || a->act) {
        model_args b = *a;
        if (!b.model) b.model = ri->model;
        if (!b.bpe) b.bpe = ri->bpe;
        if (!b.act) b.act = ri->act;
        if (!(m = model_load(&b, true, cmd))) {
            ct_saved_run_free(r);
            return NULL;
        }
    }
    if (ct_saved_run_attach(r, m) != CT_OK) goto fail;
    /* the run borrows m: freed with the run by the caller (owned_model) */
    return r;
fail:
    cli_lib_error(cmd);
    ct_saved_run_free(r);
    ct_model_free(m);
    return NULL;
}

static ct_saved_run *open_run(const char *dir, const model_args *a, const char *const *classes,
                              int n_classes, cli_progress *prog, const char *cmd,
                              const char *taxonomy) {
    return open_run_as(dir, a, classes, n_classes, NULL, prog, cmd, taxonomy);
}

/* The model open_run loaded for --model (NULL when the run loaded its own). */
static ct_model *owned_model(ct_saved_run *r, const model_args *a) {
    return (a->model || a->bpe || a->act) ? ct_saved_run_model(r) : NULL;
}

static void close_run(ct_saved_run *r, const model_args *a) {
    ct_model *m = r ? owned_model(r, a) : NULL;
    ct_saved_run_free(r);
    ct_model_free(m);
}

static bool splits_subsample_cli(ct_splits *sp, const char *which) {
    return splits_subsample(sp, which, "eval");
}

/* A multi-label run: mAP and the threshold / top-3 F1s. */
static int eval_ml(ct_saved_run *r, const char *run, const char *spec, const ct_dataset *test,
                   const char *cache, const char *dir, bool json, cli_progress *prog) {
    ct_ml_metrics m = {0};
    if (ct_saved_run_evaluate_ml(r, test, spec, cache, dir, &m) != CT_OK) {
        cli_progress_clear(prog);
        cli_lib_error("eval");
        return 1;
    }
    cli_progress_clear(prog);
    const ct_run_info *ri = ct_saved_run_info(r);
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "run", run);
        cJSON_AddStringToObject(j, "method", ri->method);
        cJSON_AddStringToObject(j, "data", spec);
        cJSON_AddStringToObject(j, "dataset", test->name);
        cJSON_AddStringToObject(j, "task", "multi-label");
        cJSON_AddNumberToObject(j, "test_images", (double)m.n);
        cJSON_AddNumberToObject(j, "map", m.map);
        cJSON_AddNumberToObject(j, "map_voc07", m.map_voc07);
        cJSON_AddNumberToObject(j, "cf1", m.cf1);
        cJSON_AddNumberToObject(j, "of1", m.of1);
        cJSON_AddNumberToObject(j, "cf1_top3", m.cf13);
        cJSON_AddNumberToObject(j, "of1_top3", m.of13);
        cJSON_AddNumberToObject(j, "threshold", m.thresh);
        cJSON_AddStringToObject(j, "written", dir);
        char *t = cJSON_Print(j);
        if (t) puts(t);
        free(t);
        cJSON_Delete(j);
    } else {
        printf("eval: %s run %s on %s (%lld test images, multi-label)\n", ri->method, run,
               test->name, (long long)m.n);
        printf("test: mAP %.2f%%  mAP(VOC07) %.2f%%  CF1 %.2f%%  OF1 %.2f%% (p >= %.2g)  "
               "CF1 %.2f%%  OF1 %.2f%% (top-%d)\n", 100 * m.map, 100 * m.map_voc07,
               100 * m.cf1, 100 * m.of1, m.thresh, 100 * m.cf13, 100 * m.of13, m.top_k);
        printf("written: %s/ (metrics.json, predictions.csv, report.md)\n", dir);
    }
    ct_ml_metrics_free(&m);
    return 0;
}

/* A segmentation run: mIoU, mAcc, aAcc. */
static int eval_seg(ct_saved_run *r, const char *run, const char *spec, const ct_dataset *test,
                    const char *cache, const char *dir, bool json, cli_progress *prog) {
    ct_seg_metrics m = {0};
    if (ct_saved_run_evaluate_seg(r, test, spec, cache, dir, &m) != CT_OK) {
        cli_progress_clear(prog);
        cli_lib_error("eval");
        return 1;
    }
    cli_progress_clear(prog);
    const ct_run_info *ri = ct_saved_run_info(r);
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "run", run);
        cJSON_AddStringToObject(j, "method", ri->method);
        cJSON_AddStringToObject(j, "data", spec);
        cJSON_AddStringToObject(j, "dataset", test->name);
        cJSON_AddStringToObject(j, "task", "segmentation");
        cJSON_AddNumberToObject(j, "test_images", (double)test->n_items);
        cJSON_AddNumberToObject(j, "miou", m.miou);
        cJSON_AddNumberToObject(j, "macc", m.macc);
        cJSON_AddNumberToObject(j, "aacc", m.aacc);
        cJSON_AddNumberToObject(j, "labelled_pixels", (double)m.n_pixels);
        cJSON_AddStringToObject(j, "written", dir);
        char *t = cJSON_Print(j);
        if (t) puts(t);
        free(t);
        cJSON_Delete(j);
    } else {
        printf("eval: %s run %s on %s (%lld test images, segmentation)\n", ri->method, run,
               test->name, (long long)test->n_items);
        printf("test: mIoU %.2f%%  mAcc %.2f%%  aAcc %.2f%% (%lld labelled pixels)\n",
               100 * m.miou, 100 * m.macc, 100 * m.aacc, (long long)m.n_pixels);
        printf("written: %s/ (metrics.json, predictions/, overlays.png, report.md)\n", dir);
    }
    ct_seg_metrics_free(&m);
    return 0;
}

/* A multi-task run (ct_mt_run): every recorded task's test split again,
 * per-task top-1 and the mean; DIR/eval-multitask/. */
static int eval_multitask(const char *run, const model_args *a, const char *data,
                          const char *max_arg, const char *subsample, const char *cache,
                          bool json) {
    if (data || max_arg || (subsample && strcmp(subsample, "all")))
        return cli_usage("eval: %s is a multi-task run: it is evaluated on its recorded tasks "
                         "(no --data, --max-test or --subsample)", run);
    ct_model *m = NULL;
    if (a->model && !(m = model_load(a, true, "eval"))) return 1;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/eval-multitask", run);
    ct_mt_run_result r;
    ct_status s = ct_mt_evaluate(run, m, cache && strcmp(cache, "none") ? cache : NULL, dir, &r);
    ct_model_free(m);
    if (s != CT_OK) return cli_lib_error("eval");
    if (json) {
        cJSON *j = cJSON_CreateObject(), *ts = j ? cJSON_AddArrayToObject(j, "tasks") : NULL;
        for (int t = 0; ts && t < r.n_tasks; t++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "task", r.task_names[t]);
            cJSON_AddNumberToObject(o, "top1", r.top1[t]);
            cJSON_AddItemToArray(ts, o);
        }
        if (j) cJSON_AddBoolToObject(j, "multi_task", true);
        if (j) cJSON_AddNumberToObject(j, "mean_top1", r.mean_top1);
        char *text = j ? cJSON_PrintUnformatted(j) : NULL;
        if (!text) {
            cJSON_Delete(j);
            return cli_error("eval: out of memory");
        }
        printf("%s\n", text);
        free(text);
        cJSON_Delete(j);
    } else {
        for (int t = 0; t < r.n_tasks; t++) {
            printf("task %-20s top-1 %6.2f%%\n", r.task_names[t], 100 * r.top1[t]);
        }
        printf("mean top-1 over %d tasks: %.2f%%\n", r.n_tasks, 100 * r.mean_top1);
        printf("written: %s/ (metrics.json, report.md)\n", dir);
    }
    return 0;
}

int cmd_eval(int argc, char **argv) {
    if (cli_help_requested(argc, argv)) {
        fputs(HELP_EVAL, stdout);
        return 0;
    }
    model_args a = {0};
    const char *run = NULL, *data = NULL, *cache = ".cliptune-cache", *max_arg = NULL;
    const char *subsample = NULL, *taxonomy = NULL;
    bool bad = false, json = false;
    for (int i = 1; i < argc && !bad; i++) {
        if (model_args_parse(argc, argv, &i, &a, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--run", &run, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--subsample", &subsample, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--taxonomy", &taxonomy, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--data", &data, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--cache", &cache, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--max-test", &max_arg, &bad)) continue;
        if (!strcmp(argv[i], "--json")) {
            json = true;
            continue;
        }
        return cli_usage("eval: unknown option or argument %s (see --help)", argv[i]);
    }
    if (bad) return 1;
    if (!run) return cli_usage("eval: no --run given (see --help)");
    long long max_test = 0;
    if (max_arg && !cli_parse_ll(max_arg, "eval: --max-test", 0, 1LL << 40, &max_test)) return 1;
    if (subsample && strcmp(subsample, "all") && strcmp(subsample, "base") &&
        strcmp(subsample, "novel"))
        return cli_usage("eval: --subsample %s: expected all, base or novel", subsample);
    if (ct_run_is_multitask(run)) return eval_multitask(run, &a, data, max_arg, subsample,
                                                        cache, json);
    ct_saved_run *info_run = ct_saved_run_open(run);
    if (!info_run) return cli_lib_error("eval");
    const ct_run_info *ri = ct_saved_run_info(info_run);
    int code = 1;
    /* copies: info_run is freed before the run is opened for good */
    char *spec_copy = strdup(data ? data : ri->data);
    const char *spec = spec_copy;
    /* on the run's own data, the run's test subset: the same number back */
    if (!max_arg) max_test = spec && cli_same_data(ri->data, spec) ? ri->max_test : 0;
    if (cache && !strcmp(cache, "none")) cache = NULL;
    ct_splits sp = {0};
    ct_saved_run *r = NULL;
    ct_dataset *test = NULL;
    ct_metrics m = {0};
    char *ri_subsample = strdup(ri->subsample);
    char *ri_dataset = strdup(ri->dataset ? ri->dataset : "");
    if (!spec_copy || !ri_subsample || !ri_dataset) {
        cli_error("eval: out of memory");
        goto out;
    }
    double base_top1 = ri->top1;
    if (ct_data_open(spec, &sp) != CT_OK) {
        cli_lib_error("eval");
        if (!data)
            fprintf(stderr, "cliptune: hint: eval: the data spec came from %s/config.json; "
                    "--data SPEC overrides it\n", run);
        goto out;
    }
    if (!subsample) subsample = ri_subsample;
    if (!splits_subsample_cli(&sp, subsample)) goto out;
    /* base-to-novel: a run trained on some classes, evaluated on others. The
     * method is rebuilt for the new class names; only class-agnostic learned
     * tensors (e.g. CoOp's unified context) can load, others fail by size. */
    bool cross = strcmp(subsample, ri_subsample) != 0;
    /* another dataset: its classes a subset of the run's (scored by
     * restricting the logits) or others (re-encoded, as base-to-novel) */
    int relation = ct_saved_run_class_relation(info_run, sp.test);
    if (!ri->multi_label && !ri->segmentation && relation == 2) cross = true;
    ct_saved_run_free(info_run);
    info_run = NULL;
    cli_progress prog;
    cli_progress_init(&prog);
    /* other classes of another dataset: scored as that dataset (its prompt
     * template), as CoOp evaluates cross-dataset transfer */
    const char *as = cross && relation == 2 && strcmp(sp.test->name, ri_dataset)
                         ? sp.test->name : NULL;
    if (!(r = open_run_as(run, &a, cross ? (const char *const *)sp.test->classnames : NULL,
                          sp.test->n_classes, as, &prog, "eval", taxonomy)))
        goto out;
    if (!(test = ct_dataset_head(sp.test, max_test))) {
        cli_lib_error("eval");
        goto out;
    }
    char dir[4096], name[256];
    snprintf(name, sizeof name, "%s", test->name);
    for (char *p = name; *p; p++)
        if (*p == '/' || *p == ':' || *p == ' ') *p = '_';
    snprintf(dir, sizeof dir, "%s/eval-%s", run, name);
    if (ct_saved_run_info(r)->multi_label) {
        code = eval_ml(r, run, spec, test, cache, dir, json, &prog);
        goto out;
    }
    if (ct_saved_run_info(r)->segmentation) {
        code = eval_seg(r, run, spec, test, cache, dir, json, &prog);
        goto out;
    }
    if (ct_saved_run_evaluate(r, test, spec, cache, dir, &m) != CT_OK) {
        cli_progress_clear(&prog);
        cli_lib_error("eval");
        goto out;
    }
    cli_progress_clear(&prog);
    bool b2n = cross && !strcmp(ri_subsample, "base") && !strcmp(subsample, "novel");
    ri = ct_saved_run_info(r);
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "run", run);
        cJSON_AddStringToObject(j, "method", ri->method);
        cJSON_AddStringToObject(j, "data", spec);
        cJSON_AddStringToObject(j, "dataset", test->name);
        cJSON_AddNumberToObject(j, "test_images", (double)m.n);
        cJSON_AddNumberToObject(j, "top1", m.top1);
        cJSON_AddNumberToObject(j, "top5", m.top5);
        cJSON_AddNumberToObject(j, "macro_f1", m.macro_f1);
        cJSON_AddNumberToObject(j, "ece", m.ece);
        if (m.hierarchy) {
            cJSON *h = cJSON_AddObjectToObject(j, "hierarchy");
            cJSON_AddNumberToObject(h, "leaf_acc", m.leaf_acc);
            cJSON_AddNumberToObject(h, "hca", m.hca);
            cJSON_AddNumberToObject(h, "mta", m.mta);
            cJSON_AddNumberToObject(h, "n_cuts", m.n_cuts);
            cJSON_AddStringToObject(h, "node_scores_from", m.node_scores_from);
        }
        cJSON_AddStringToObject(j, "classes", relation == 0 ? "same" : relation == 1 ? "subset"
                                                                                 : "other");
        if (b2n && isfinite(base_top1)) {
            cJSON_AddNumberToObject(j, "base_top1", base_top1);
            cJSON_AddNumberToObject(j, "harmonic_mean", ct_harmonic_mean(base_top1, m.top1));
        }
        cJSON_AddStringToObject(j, "written", dir);
        char *t = cJSON_Print(j);
        if (t) puts(t);
        free(t);
        cJSON_Delete(j);
    } else {
        printf("eval: %s run %s on %s (%lld test images)\n", ri->method, run, test->name,
               (long long)m.n);
        if (relation == 1)
            printf("classes: %d of the run's %d (its scores restricted to them)\n",
                   test->n_classes, ri->n_classes);
        else if (relation == 2 && !b2n)
            printf("classes: %d others than the run's (the method rebuilt for their names)\n",
                   test->n_classes);
        printf("test: top-1 %.2f%%  top-5 %.2f%%  macro-F1 %.2f%%  ECE %.2f%%\n", 100 * m.top1,
               100 * m.top5, 100 * m.macro_f1, 100 * m.ece);
        if (m.hierarchy)
            printf("hierarchy (%d cuts, nodes scored from %s): leaf %.2f%%  HCA %.2f%%  "
                   "MTA %.2f%%\n", m.n_cuts, m.node_scores_from, 100 * m.leaf_acc, 100 * m.hca,
                   100 * m.mta);
        /* CoOp's base-to-novel summary: base from the run, novel here */
        if (b2n && isfinite(base_top1))
            printf("base-to-novel: base %.2f%%  novel %.2f%%  HM %.2f%%\n", 100 * base_top1,
                   100 * m.top1, 100 * ct_harmonic_mean(base_top1, m.top1));
        printf("written: %s/ (metrics.json, predictions.csv, report.md)\n", dir);
    }
    code = 0;
out:
    ct_metrics_free(&m);
    ct_dataset_free(test);
    close_run(r, &a);
    ct_saved_run_free(info_run);
    ct_splits_free(&sp);
    free(ri_subsample);
    free(ri_dataset);
    free(spec_copy);
    return code;
}

static const char *HELP_EXPORT =
    "usage: cliptune export --run DIR --out PATH [--format hf|official] [--model MODEL]\n"
    "\n"
    "Write what a finished run learned in a form other tools load:\n"
    "\n"
    "  --format official  (default for prompt and adapter methods) PATH.safetensors\n"
    "                    whose keys and shapes are the official repository's\n"
    "                    checkpoint's (CoOp's ctx, CoCoOp's meta_net.*, MaPLe's\n"
    "                    prompt_learner.*, CLIP-Adapter's fc.*, CLIP-LoRA's w_lora_*,\n"
    "                    VP's pad_*): coop cocoop kgcoop prograd maple ivlp vpt-deep\n"
    "                    promptsrc lasp upl tpt clip-adapter taskres clip-lora vp.\n"
    "                    docs/export.md shows the lines that load it into the\n"
    "                    official PyTorch model.\n"
    "  --format hf       (default for clip-lora) the adapted model as a plain CLIP, a\n"
    "                    Hugging Face folder PATH (config.json, model.safetensors in F32,\n"
    "                    the frozen model's preprocessor_config.json and tokenizer\n"
    "                    files), for methods whose learning folds into the weights\n"
    "                    (clip-lora: W + s B A, loralib's merge). It loads wherever a\n"
    "                    CLIP checkpoint does (cliptune --model, transformers' CLIPModel).\n"
    "\n"
    "options:\n"
    "  --run DIR         run directory (cliptune train / protocol)\n"
    "  --out PATH        the file (official) or folder (hf) to write, atomically\n"
    "  --model MODEL     the frozen model (default: the run's, as recorded); --bpe, --act\n"
    "                    as for train. hf needs an HF vocab.json + merges.txt tokenizer\n";

int cmd_export(int argc, char **argv) {
    if (cli_help_requested(argc, argv)) {
        fputs(HELP_EXPORT, stdout);
        return 0;
    }
    model_args a = {0};
    const char *run = NULL, *out = NULL, *format = NULL;
    bool bad = false;
    for (int i = 1; i < argc && !bad; i++) {
        if (model_args_parse(argc, argv, &i, &a, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--run", &run, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--out", &out, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--format", &format, &bad)) continue;
        return cli_usage("export: unknown option or argument %s (see --help)", argv[i]);
    }
    if (bad) return 1;
    if (!run || !out) return cli_usage("export: --run and --out are required (see --help)");
    if (format && strcmp(format, "hf") && strcmp(format, "official"))
        return cli_usage("export: --format %s: expected hf or official", format);
    ct_saved_run *r = open_run(run, &a, NULL, 0, NULL, "export", NULL);
    if (!r) return 1;
    const char *method = ct_saved_run_info(r)->method;
    if (!format) format = !strcmp(method, "clip-lora") ? "hf" : "official";
    int code = 1;
    if (!strcmp(format, "hf")) {
        if (ct_saved_run_export_merged(r, out) != CT_OK) {
            cli_lib_error("export");
        } else {
            printf("export: %s run %s merged into %s (%lld parameters)\n", method, run, out,
                   (long long)ct_clip_num_params(ct_model_clip(ct_saved_run_model(r))));
            code = 0;
        }
    } else if (ct_saved_run_export_official(r, out) != CT_OK) {
        cli_lib_error("export");
    } else {
        printf("export: %s run %s as %s's state dict in %s\n", method, run,
               ct_saved_run_official_repo(r), out);
        code = 0;
    }
    close_run(r, &a);
    return code;
}

/* ---- predict ---- */

typedef struct {
    char **v;
    int n, cap;
} path_list;

static bool push(path_list *l, const char *p) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        char **v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return false;
        l->v = v, l->cap = cap;
    }
    return (l->v[l->n] = strdup(p)) && ++l->n;
}

static void paths_free(path_list *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The images in dir and below it, sorted by path. */
static bool add_dir(path_list *l, const char *dir, int depth) {
    if (depth > 32) return cli_error("predict: %s: folders nested too deep", dir) == 0;
    DIR *d = opendir(dir);
    if (!d) return cli_error("predict: cannot read the folder %s", dir) == 0;
    path_list here = {0};
    struct dirent *e;
    bool ok = true;
    while (ok && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        ok = push(&here, p) || cli_error("predict: out of memory") == 0;
    }
    closedir(d);
    if (here.n) qsort(here.v, (size_t)here.n, sizeof *here.v, by_name);
    for (int i = 0; ok && i < here.n; i++) {
        struct stat st;
        if (stat(here.v[i], &st) != 0) continue;
        if (S_ISDIR(st.st_mode))
            ok = add_dir(l, here.v[i], depth + 1);
        else if (S_ISREG(st.st_mode) && ct_data_is_image_name(here.v[i]))
            ok = push(l, here.v[i]) || cli_error("predict: out of memory") == 0;
    }
    paths_free(&here);
    return ok;
}

static bool add_list(path_list *l, const char *file) {
    FILE *f = strcmp(file, "-") ? fopen(file, "r") : stdin;
    if (!f) return cli_error("predict: --list %s: cannot open it", file) == 0;
    char line[8192];
    bool ok = true;
    while (ok && fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (n) ok = push(l, line) || cli_error("predict: out of memory") == 0;
    }
    if (f != stdin) fclose(f);
    return ok;
}

/* A segmentation run: label maps into out (default RUN/predict), and per
 * image the classes with the largest share of its pixels. */
static int predict_seg(ct_saved_run *r, const char *run, const char *out, const path_list *imgs,
                       int top, bool json, cli_progress *prog) {
    const ct_run_info *ri = ct_saved_run_info(r);
    int K = ri->n_classes, n = imgs->n;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", out ? out : run);
    if (!out) strncat(dir, "/predict", sizeof dir - strlen(dir) - 1);
    int64_t *px = malloc((size_t)n * (size_t)K * sizeof *px);
    int *order = malloc((size_t)K * sizeof *order);
    if (!px || !order) {
        free(px), free(order);
        return cli_error("predict: out of memory");
    }
    if (ct_saved_run_segment_files(r, (const char *const *)imgs->v, n, dir, px) != CT_OK) {
        cli_progress_clear(prog);
        free(px), free(order);
        return cli_lib_error("predict");
    }
    cli_progress_clear(prog);
    cJSON *arr = json ? cJSON_CreateArray() : NULL;
    for (int i = 0; i < n; i++) {
        /* the label map: the image's base name with .png */
        char lm[8200];
        const char *base = strrchr(imgs->v[i], '/');
        base = base ? base + 1 : imgs->v[i];
        const char *dot = strrchr(base, '.');
        int bl = dot && dot > base ? (int)(dot - base) : (int)strlen(base);
        snprintf(lm, sizeof lm, "%s/%.*s.png", dir, bl, base);
        const int64_t *c = px + (size_t)i * (size_t)K;
        int64_t tot = 0;
        for (int k = 0; k < K; k++) tot += c[k], order[k] = k;
        for (int a = 0; a < top; a++) /* partial selection sort: K is small */
            for (int b = a + 1; b < K; b++)
                if (c[order[b]] > c[order[a]]) {
                    int t = order[a];
                    order[a] = order[b], order[b] = t;
                }
        if (json) {
            cJSON *o = cJSON_CreateObject(), *cl = cJSON_CreateArray();
            cJSON_AddStringToObject(o, "path", imgs->v[i]);
            cJSON_AddStringToObject(o, "label_map", lm);
            for (int a = 0; a < top && c[order[a]] > 0; a++) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddStringToObject(e, "label", ri->classnames[order[a]]);
                cJSON_AddNumberToObject(e, "share", tot ? (double)c[order[a]] / (double)tot : 0);
                cJSON_AddItemToArray(cl, e);
            }
            cJSON_AddItemToObject(o, "classes", cl);
            cJSON_AddItemToArray(arr, o);
            continue;
        }
        printf("%s\t%s", imgs->v[i], lm);
        for (int a = 0; a < top && c[order[a]] > 0; a++)
            printf("\t%s %.1f%%", ri->classnames[order[a]],
                   tot ? 100.0 * (double)c[order[a]] / (double)tot : 0.0);
        putchar('\n');
    }
    if (json) {
        char *t = cJSON_Print(arr);
        if (t) puts(t);
        free(t);
        cJSON_Delete(arr);
    }
    free(px), free(order);
    return 0;
}

int cmd_predict(int argc, char **argv) {
    if (cli_help_requested(argc, argv)) {
        fputs(HELP_PREDICT, stdout);
        return 0;
    }
    model_args a = {0};
    const char *run = NULL, *top_arg = NULL, *explain_arg = NULL, *list = NULL, *out = NULL;
    const char *task = NULL;
    bool bad = false, json = false;
    path_list imgs = {0};
    for (int i = 1; i < argc && !bad; i++) {
        if (model_args_parse(argc, argv, &i, &a, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--run", &run, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--out", &out, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--task", &task, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--top", &top_arg, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--explain", &explain_arg, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--list", &list, &bad)) continue;
        if (!strcmp(argv[i], "--json")) {
            json = true;
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1]) {
            paths_free(&imgs);
            return cli_usage("predict: unknown option %s (see --help)", argv[i]);
        }
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode))
            bad = !add_dir(&imgs, argv[i], 0);
        else
            bad = !push(&imgs, argv[i]) && cli_error("predict: out of memory");
    }
    long long top = 5, explain = 0;
    if (!bad && top_arg) bad = !cli_parse_ll(top_arg, "predict: --top", 1, 1 << 20, &top);
    if (!bad && explain_arg)
        bad = !cli_parse_ll(explain_arg, "predict: --explain", 1, 1 << 20, &explain);
    if (!bad && list) bad = !add_list(&imgs, list);
    if (!bad && !run) bad = cli_usage("predict: no --run given (see --help)") != 0;
    if (!bad && imgs.n == 0) bad = cli_usage("predict: no images given") != 0;
    if (bad) {
        paths_free(&imgs);
        return 1;
    }
    int code = 1, n = imgs.n;
    bool mt = ct_run_is_multitask(run);
    if (mt && (explain || out)) {
        paths_free(&imgs);
        return cli_usage("predict: %s is a multi-task run: no --explain or --out", run);
    }
    if (!mt && task) {
        paths_free(&imgs);
        return cli_usage("predict: --task is for multi-task runs; %s is a single-task run", run);
    }
    cli_progress prog;
    cli_progress_init(&prog);
    ct_saved_run *r = NULL;
    ct_model *mt_model = NULL;
    ct_mt_prediction mp = {0};
    float *p = NULL, *why_sc = NULL;
    int *order = NULL, *why = NULL;
    cJSON *arr = json ? cJSON_CreateArray() : NULL;
    int K = 0;
    bool multi_label = false;
    const char *const *classnames = NULL;
    const ct_run_info *ri = NULL;
    if (mt) {
        /* the run's recorded model unless --model names one (its hash is checked) */
        if (a.model && !(mt_model = model_load(&a, true, "predict"))) goto out;
        if (ct_mt_predict_files(run, mt_model, task, (const char *const *)imgs.v, n, &mp) !=
            CT_OK) {
            cli_lib_error("predict");
            goto out;
        }
        K = mp.n_classes, classnames = (const char *const *)mp.classnames;
    } else {
        if (!(r = open_run(run, &a, NULL, 0, &prog, "predict", NULL))) goto out;
        ri = ct_saved_run_info(r);
        K = ri->n_classes, classnames = ri->classnames, multi_label = ri->multi_label;
    }
    if (top > K) top = K;
    if (explain && strcmp(ri->method, "vcd")) { /* not multi-task: refused above */
        cli_usage("predict: --explain needs a vcd run; %s is a %s run", run, ri->method);
        goto out;
    }
    if (out && !ri->segmentation) { /* not multi-task: refused above */
        cli_usage("predict: --out is for segmentation runs; %s labels whole images", run);
        goto out;
    }
    if (ri && ri->segmentation) {
        code = predict_seg(r, run, out, &imgs, (int)top, json, &prog);
        goto out;
    }
    p = mt ? mp.probs : malloc((size_t)n * (size_t)K * sizeof *p);
    if (mt) mp.probs = NULL; /* p owns them now */
    order = malloc((size_t)K * sizeof *order);
    why = malloc((size_t)(explain ? explain : 1) * sizeof *why);
    why_sc = malloc((size_t)(explain ? explain : 1) * sizeof *why_sc);
    if (!p || !order || !why || !why_sc || (json && !arr)) {
        cli_error("predict: out of memory");
        goto out;
    }
    if (!mt && ct_saved_run_predict_files(r, (const char *const *)imgs.v, n, p) != CT_OK) {
        cli_progress_clear(&prog);
        cli_lib_error("predict");
        goto out;
    }
    cli_progress_clear(&prog);
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
        if (explain && ct_saved_run_explain(r, imgs.v[i], order[0], (int)explain, why, why_sc) !=
                           CT_OK) {
            cli_lib_error("predict");
            goto out;
        }
        if (json) {
            cJSON *o = cJSON_CreateObject(), *tk = cJSON_CreateArray();
            cJSON_AddStringToObject(o, "path", imgs.v[i]);
            cJSON_AddStringToObject(o, "label", classnames[order[0]]);
            if (multi_label) { /* every class at probability >= 0.5 */
                cJSON *ls = cJSON_AddArrayToObject(o, "labels");
                for (int k = 0; k < K; k++)
                    if (pi[k] >= CT_ML_THRESH_DEFAULT)
                        cJSON_AddItemToArray(ls, cJSON_CreateString(classnames[k]));
            }
            for (int k = 0; k < top; k++) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddStringToObject(e, "label", classnames[order[k]]);
                cJSON_AddNumberToObject(e, "prob", pi[order[k]]);
                cJSON_AddItemToArray(tk, e);
            }
            cJSON_AddItemToObject(o, "top", tk);
            if (explain) {
                cJSON *ex = cJSON_AddArrayToObject(o, "because");
                for (int j = 0; j < explain && why[j] >= 0; j++) {
                    cJSON *e = cJSON_CreateObject();
                    cJSON_AddStringToObject(e, "descriptor",
                                            ct_saved_run_descriptor(r, order[0], why[j]));
                    cJSON_AddNumberToObject(e, "score", why_sc[j]);
                    cJSON_AddItemToArray(ex, e);
                }
            }
            cJSON_AddItemToArray(arr, o);
            continue;
        }
        if (multi_label) { /* the labels at probability >= 0.5, ';'-joined */
            printf("%s\t", imgs.v[i]);
            int hits = 0;
            for (int k = 0; k < K; k++)
                if (pi[k] >= CT_ML_THRESH_DEFAULT)
                    printf("%s%s", hits++ ? ";" : "", classnames[k]);
            if (!hits) printf("-");
        } else {
            printf("%s\t%s", imgs.v[i], classnames[order[0]]);
        }
        for (int k = 0; k < top; k++) printf("\t%s=%.4f", classnames[order[k]], pi[order[k]]);
        putchar('\n');
        for (int j = 0; j < explain && why[j] >= 0; j++)
            printf("  because\t%s\t%s\t%.4f\n", classnames[order[0]],
                   ct_saved_run_descriptor(r, order[0], why[j]), why_sc[j]);
    }
    if (json) {
        char *t = cJSON_Print(arr);
        if (t) puts(t);
        free(t);
    }
    code = 0;
out:
    cJSON_Delete(arr);
    free(p), free(order), free(why), free(why_sc);
    if (r) close_run(r, &a);
    ct_mt_prediction_free(&mp);
    ct_model_free(mt_model);
    paths_free(&imgs);
    return code;
}
