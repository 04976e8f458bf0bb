/* cliptune demo: the shipped model (models/cliptune-small, pretrained by
 * `cliptune pretrain` on the corpus scripts/corpus.sh builds) transferred to
 * Fashion-MNIST and scikit-learn's digits with every landed method at 1, 4
 * and 16 shots, through the protocol command (one run directory per cell,
 * restartable), then one methods x shots table per dataset and a combined
 * report. --full runs the whole protocol. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "cli.h"

#ifndef CLIPTUNE_SOURCE_DIR
#define CLIPTUNE_SOURCE_DIR "."
#endif

static const char *HELP =
    "usage: cliptune demo [--full] [--out DIR] [--model MODEL] [--methods LIST]\n"
    "                     [--fashion-mnist DIR] [--digits FILE] [--max-test N]\n"
    "\n"
    "Transfer the shipped CLIP (models/cliptune-small, trained by this project: see\n"
    "its MODEL_CARD.md) to Fashion-MNIST and scikit-learn's 8x8 digits: zero-shot,\n"
    "a raw-pixel linear probe (the floor: no CLIP at all), a linear probe on CLIP\n"
    "features and every method at 1, 4 and 16 shots (seed 1; the first 1,000 test\n"
    "images of Fashion-MNIST, all 901 test digits), with budget-sized schedules (see\n"
    "docs/demo.md). Prints one methods x shots table per dataset and writes\n"
    "OUT/demo.md with the tables and accuracy-vs-shots plots; every cell is a run\n"
    "directory under OUT/<dataset>/, and re-running only does the missing cells.\n"
    "Then the multi-label part: the scenes set (`cliptune make-scenes`, written once\n"
    "to OUT/scenes-data in PASCAL VOC's layout) with zero-shot and DualCoOp on every\n"
    "training scene and TaI-DPT on the training scenes' captions only, scored by\n"
    "mAP on the 500 test scenes; and the segmentation part: the same scenes' label\n"
    "maps (vocseg:) labelled by MaskCLIP (training-free) and DenseCLIP (trained on\n"
    "the label maps), scored by mIoU. Then the hierarchy part:\n"
    "Fashion-MNIST with data/taxonomies/fashion-mnist.txt, zero-shot, CoOp, ProTeCt,\n"
    "MaPLe and ProTeCt on MaPLe at 16 shots, scored by top-1, HCA and MTA; and the\n"
    "multi-task part: Fashion-MNIST\n"    "and digits learned jointly, zero-shot and SoftCPT at 4 shots, per-task and mean\n"
    "top-1.\n"
    "\n"
    "  --full            the whole protocol instead: shots 1,2,4,8,16, seeds 1,2,3,\n"
    "                    full test sets, the methods' own schedules (hours)\n"
    "  --out DIR         default runs/demo (runs/demo-full with --full)\n"
    "  --model MODEL     default models/cliptune-small\n"
    "  --methods LIST    comma-separated subset of the demo's methods\n"
    "  --fashion-mnist DIR  IDX files (default /usr/share/datasets/fashion-mnist)\n"
    "  --digits FILE     digits.csv.gz (default: python3-sklearn's copy)\n"
    "  --max-test N      test images per dataset (default 1000; --full: all)\n"
    "\n"
    "scripts/demo.sh installs what is missing (as root), builds, and runs this.\n";

/* The demo's methods and the per-method settings that fit the budget (the
 * --full protocol drops these and uses each method's own defaults). */
typedef struct {
    const char *name;
    const char *budget; /* --set for the quick demo                              */
    bool digits;        /* also on digits (descriptor files exist for both)      */
} demo_method;

static const demo_method METHODS[] = {
    {"zeroshot", "", true},
    {"pixel-probe", "", true},
    {"linear-probe", "", true},
    /* LP++: 300 full-batch epochs on the cached features (well under a second) */
    {"lp++", "", true},
    /* views=cycle: one fresh augmented view per epoch, as the official codes
     * (the trainer's default shows every view every epoch: 10x the steps) */
    {"coop", "views=cycle", true},
    {"cocoop", "epochs=4 views=cycle", true},
    /* CoCoOp's cost (n images x K prompts per step, and per scored image):
     * two epochs at the full rate (the default first epoch is warmup at 1e-5) */
    {"cpl", "epochs=2 warmup_epochs=0 views=cycle", true},
    {"kgcoop", "views=cycle", true},
    {"prograd", "views=cycle", true},
    /* SubPT: 10 recorded early epochs, then 20 projected ones (its defaults at
     * 16 shots: 50 + 50) */
    {"subpt", "views=cycle epochs=20 early_epochs=10", true},
    {"lasp", "views=cycle", true},
    /* a seeded 10,000 of the 60,000 training images as the unlabelled pool */
    {"upl", "unlabelled=10000", true},
    /* 3000 unlabelled images; 200 epochs of 6 steps give about the steps
     * the default 60 epochs give 10,000 (docs/methods/clippr.md) */
    {"clippr", "unlabelled=3000 epochs=200 checkpoint_every=50", true},
    {"clip-adapter", "", true},
    {"tip-adapter", "", true},
    {"tip-adapter-f", "", true},
    /* name-only: the support set from a seeded 2,000 unlabelled training images */
    {"sus-x", "unlabelled=2000", true},
    /* SimCLR on a seeded 2,000 unlabelled training images, 60 steps */
    {"svl-adapter", "unlabelled=2000 ssl_steps=60", true},
    {"taskres", "", true},
    {"vt-clip", "", true},
    {"calip", "", true},
    {"cupl", "", true},
    {"vcd", "", true},
    {"wise-ft", "", true},
    {"tpt", "n_views=16", true},
    /* batch 128 (the official) gives 1 step per epoch at 16 shots x 10 classes */
    {"plot", "batch_size=32 lr=0.01", true},
    /* short schedules of tests/test_proda.c / test_vpt_var.c (docs/methods/) */
    {"proda", "n_prompts=8 n_ctx=4 epochs=10 lr=0.02 views=cycle", true},
    {"vpt-var", "epochs=20 batch_size=16 lr=0.1 mc_samples=2 vpt-var.std_posterior.lr=10 "
                "views=cycle", true},
    /* the image-side methods (trainer's pixel path), with the short
     * schedules of tests/test_image_prompts.c's learns checks */
    {"vp", "epochs=10 warmup_steps=5", true},
    {"vpt-deep", "epochs=10 lr=0.02", true},
    {"ivlp", "epochs=5", true},
    {"maple", "", true},
    {"promptsrc", "epochs=5 gpa_mean=4 gpa_std=1", true},
    {"upt", "epochs=6", true},
    {"dpt", "epochs=10 guide_epochs=5 warmup_epochs=2", true},
    {"clip-lora", "iters_per_shot=5 lr=1e-3", true},
    /* unsupervised: 10 steps on 320 unlabelled training images, the model's
     * own logit scale (docs/methods/must.md: it does not beat zero-shot on
     * the shipped model) */
    {"must", "unlabelled=320 epochs=1 batch_size=32 lr=1e-5 logit_scale=model "
             "conf_threshold=0.9", true},
};

/* The multi-label part: the scenes set (ct_data_make_scenes) with every
 * training scene, mAP. DualCoOp's official logit scales saturate its loss on
 * the shipped model (docs/methods/dualcoop.md): the budget sets them. TaI-DPT
 * keeps its defaults and trains on the set's train captions (its captions=
 * is set in every mode: demo_scenes). */
static const demo_method ML_METHODS[] = {
    {"zeroshot", "", false},
    {"dualcoop", "epochs=20 lr=0.01 out_scale=1 cls_token=1", false},
    {"taidpt", "", false},
};

/* The segmentation part: the same scenes as label maps (vocseg:), mIoU.
 * DenseCLIP trains on the label maps: 50 steps of 8 scenes at 10x the
 * official learning rates (docs/methods/denseclip.md); its text length
 * fits the longest class name ("T-shirt/top", 7 tokens with SOT / EOT). */
static const demo_method SEG_METHODS[] = {
    {"maskclip", "", false},
    {"denseclip", "iters=50 batch_size=8 lr=1e-3 backbone.lr=1e-4 text_length=8", false},
};

/* The hierarchy part: Fashion-MNIST with its taxonomy (docs/training.md,
 * "Hierarchy runs"), ProTeCt's metrics. CoOp and ProTeCt with the short
 * schedule of tests/test_protect.c's learns check (the official 200 epochs
 * of batch 128 do not fit the budget). */
#define HIER_BUDGET "epochs=5 batch_size=32 aug_views=0 lr=0.02 n_ctx=4"
/* ProTeCt on MaPLe and MaPLe, as tests/test_protect.c learns-maple */
#define HIER_MAPLE_BUDGET "epochs=10 batch_size=8 lr=0.02"
static const demo_method HIER_METHODS[] = {
    {"zeroshot", "", false},
    {"coop", HIER_BUDGET, false},
    {"protect", HIER_BUDGET, false},
    {"maple", HIER_MAPLE_BUDGET, false},
    {"protect-maple", HIER_MAPLE_BUDGET, false},
};

/* The multi-task part: Fashion-MNIST + digits in one run (docs/training.md,
 * "Multi-task runs"), SoftCPT with the schedule of tests/test_softcpt.c. */
static const demo_method MT_METHODS[] = {
    {"zeroshot", "", false},
    {"softcpt", "epochs=20 lr=0.01 aug_views=0", false},
};

typedef struct {
    const char *key;   /* dataset name in OUT/ and the table                      */
    const char *title;
    char spec[4096];
} demo_data;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* path under the source tree when it does not exist relative to the cwd */
static const char *resolve(const char *rel, char *buf, size_t n) {
    if (access(rel, F_OK) == 0) return rel;
    snprintf(buf, n, "%s/%s", CLIPTUNE_SOURCE_DIR, rel);
    return access(buf, F_OK) == 0 ? buf : rel;
}

static bool in_list(const char *list, const char *name) {
    if (!list) return true;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return true;
        if (!e) break;
        p = e + 1;
    }
    return false;
}

/* Print results.json's summary as a methods x shots table. */
/* (show false: demo.md only; the caller printed its own summary) */
static bool print_table(const char *dir, const char *key, const char *title, FILE *md,
                        const char *metric, bool show) {
    char path[4200];
    snprintf(path, sizeof path, "%s/results.json", dir);
    cJSON *j = cli_json_load(path, "demo");
    if (!j) return false;
    const cJSON *shots = cJSON_GetObjectItemCaseSensitive(j, "shots");
    const cJSON *methods = cJSON_GetObjectItemCaseSensitive(j, "methods");
    const cJSON *sum = cJSON_GetObjectItemCaseSensitive(j, "summary");
    int ns = cJSON_GetArraySize(shots), nm = cJSON_GetArraySize(methods);
    if (show) { /* the console table */
        printf("\n%s — %s %% on the test subset\n%-16s", title, metric, "method");
        for (int k = 0; k < ns; k++) printf(" %7d-shot", cJSON_GetArrayItem(shots, k)->valueint);
        printf("\n");
        const cJSON *c;
        for (int m = 0; m < nm; m++) {
            const char *name = cJSON_GetArrayItem(methods, m)->valuestring;
            printf("%-16s", name);
            for (int k = 0; k < ns; k++) {
                double v = NAN;
                cJSON_ArrayForEach(c, sum) {
                    const cJSON *cm = cJSON_GetObjectItemCaseSensitive(c, "method");
                    const cJSON *cs = cJSON_GetObjectItemCaseSensitive(c, "shots");
                    const cJSON *mean = cJSON_GetObjectItemCaseSensitive(c, "mean");
                    if (cJSON_IsString(cm) && !strcmp(cm->valuestring, name) &&
                        cJSON_IsNumber(cs) &&
                        cs->valueint == cJSON_GetArrayItem(shots, k)->valueint &&
                        cJSON_IsNumber(mean))
                        v = mean->valuedouble;
                }
                if (isnan(v)) printf(" %12s", "-");
                else printf(" %12.1f", 100 * v);
            }
            printf("\n");
        }
    }
    fflush(stdout);
    cJSON_Delete(j);
    /* the protocol's own markdown table and plot */
    snprintf(path, sizeof path, "%s/results.md", dir);
    char *text = NULL;
    size_t n = 0;
    if (ct_read_file(path, &text, &n) != CT_OK) return cli_lib_error("demo") == 0;
    fprintf(md, "\n## %s\n\n", title);
    /* drop the protocol's own title line */
    const char *body = text;
    if (body[0] == '#') {
        const char *nl = strchr(body, '\n');
        body = nl ? nl + 1 : body + n;
    }
    /* the plots are beside results.md (accuracy_vs_shots.svg, and
     * hca_vs_shots.svg ... for the extra tables): links relative to demo.md */
    const char *tail = "_vs_shots.svg)";
    for (const char *p = body; *p;) {
        /* results.md's own sections (HCA, MTA, per task) one level down */
        if ((p == body || p[-1] == '\n') && !strncmp(p, "## ", 3)) fputc('#', md);
        const char *nl = strchr(p, '\n');
        const char *line_end = nl ? nl + 1 : p + strlen(p);
        const char *hit = strstr(p, tail);
        if (!hit || hit >= line_end) { /* line by line */
            fwrite(p, 1, (size_t)(line_end - p), md);
            p = line_end;
            continue;
        }
        const char *at = hit; /* the link target's start: after "](" */
        while (at > p && at[-1] != '(' && at[-1] != '/') at--;
        bool link = at > p + 1 && at[-1] == '(' && at[-2] == ']';
        fwrite(p, 1, (size_t)(at - p), md);
        if (link) fprintf(md, "%s/", key);
        fwrite(at, 1, (size_t)(hit - at) + strlen(tail), md);
        p = hit + strlen(tail);
    }
    free(text);
    return true;
}

/* One part on the scenes set in OUT/scenes-data (generated once,
 * deterministic): the protocol over every training scene with the part's
 * methods, its metric per cell. */
typedef struct {
    const char *prefix, *key, *title, *metric;
    const demo_method *methods;
    size_t n_methods;
} scenes_part;

static const scenes_part SCENES_PARTS[] = {
    {"voc", "scenes", "Scenes (multi-label, every training scene)", "mAP", ML_METHODS,
     sizeof ML_METHODS / sizeof *ML_METHODS},
    {"vocseg", "scenes-seg", "Scenes (segmentation, label maps)", "mIoU", SEG_METHODS,
     sizeof SEG_METHODS / sizeof *SEG_METHODS},
};

static int demo_scenes(const char *out, const char *model, const char *methods, bool full,
                       FILE *md, const scenes_part *part) {
    char data[4200], spec[4300], dir[4200], list[256] = "", set[512] = "", caps[4400] = "";
    snprintf(data, sizeof data, "%s/scenes-data", out);
    snprintf(spec, sizeof spec, "%s:%s", part->prefix, data);
    snprintf(dir, sizeof dir, "%s/%s", out, part->key);
    for (size_t k = 0; k < part->n_methods; k++) {
        const demo_method *dm = part->methods + k;
        if (!in_list(methods, dm->name) || !ct_method_find(dm->name)) continue;
        if (*list) strcat(list, ",");
        strcat(list, dm->name);
        if (!strcmp(dm->name, "taidpt")) /* its training text: the captions */
            snprintf(caps, sizeof caps, "taidpt.captions=%s/annotations/captions_train.json",
                     data);
        if (full || !*dm->budget) continue;
        char b[256]; /* METHOD.KEY=VALUE for each budget setting */
        snprintf(b, sizeof b, "%s", dm->budget);
        for (char *sv = NULL, *t = strtok_r(b, " ", &sv); t; t = strtok_r(NULL, " ", &sv)) {
            strcat(set, *set ? " " : "");
            strcat(strcat(strcat(set, dm->name), "."), t);
        }
    }
    if (!*list) return 0;
    /* (a set written before the train captions existed is written again: the
     * same scenes, byte for byte, plus the captions) */
    char probe[4300], probe2[4300];
    snprintf(probe, sizeof probe, "%s/ImageSets/Main/test.txt", data);
    snprintf(probe2, sizeof probe2, "%s/annotations/captions_train.json", data);
    if (access(probe, F_OK) != 0 || access(probe2, F_OK) != 0) {
        ct_scenes_cfg c = ct_scenes_cfg_default(); /* as tests/test_multilabel.c */
        c.n_train = 1000, c.n_val = 200, c.n_test = 500;
        printf("\n== %s: generating %d/%d/%d scenes in %s ==\n", part->title, c.n_train,
               c.n_val, c.n_test, data);
        fflush(stdout);
        if (ct_data_make_scenes(&c, data) != CT_OK) return cli_lib_error("demo");
    } else {
        printf("\n== %s ==\n", part->title);
    }
    const char *av[64];
    int ac = 0;
    av[ac++] = "protocol";
    av[ac++] = "--model", av[ac++] = model;
    av[ac++] = "--data", av[ac++] = spec;
    av[ac++] = "--methods", av[ac++] = list;
    av[ac++] = "--shots", av[ac++] = "0";
    av[ac++] = "--seeds", av[ac++] = full ? "1,2,3" : "1";
    av[ac++] = "--out", av[ac++] = dir;
    int ns = 0;
    for (char *sv = NULL, *t = strtok_r(set, " ", &sv); t && ns < 16; t = strtok_r(NULL, " ", &sv))
        av[ac++] = "--set", av[ac++] = t, ns++;
    if (*caps) av[ac++] = "--set", av[ac++] = caps;
    av[ac] = NULL;
    fflush(stdout);
    if (cmd_protocol(ac, (char **)av) != 0) return 1;
    return print_table(dir, part->key, part->title, md, part->metric, true) ? 0 : 1;
}

/* A part over Fashion-MNIST / digits with one shots count and seed 1: the
 * hierarchy part (a taxonomy) and the multi-task part (several datasets).
 * Prints its methods' main number and, per method, ProTeCt's metrics or
 * each task's top-1 from results.json. */
typedef struct {
    const char *key, *title;
    int n_data;             /* 1, or 2 (Fashion-MNIST + digits): multi-task  */
    const char *taxonomy;   /* source-relative; NULL: none                    */
    const char *shots;
    const demo_method *methods;
    size_t n_methods;
} task_part;

static const task_part TASK_PARTS[] = {
    {"fashion-mnist-hier", "Fashion-MNIST hierarchy (taxonomy: clothing / footwear / bags)", 1,
     "data/taxonomies/fashion-mnist.txt", "16", HIER_METHODS,
     sizeof HIER_METHODS / sizeof *HIER_METHODS},
    {"multitask", "Fashion-MNIST + digits (multi-task, one run over both)", 2, NULL, "4",
     MT_METHODS, sizeof MT_METHODS / sizeof *MT_METHODS},
};

/* The per-method line of a part: results.json's summary at its one shots
 * count, the hierarchy metrics or each task's top-1 (percent). */
static bool print_part_summary(const char *dir, const task_part *part) {
    char path[4200];
    snprintf(path, sizeof path, "%s/results.json", dir);
    cJSON *j = cli_json_load(path, "demo");
    if (!j) return false;
    const cJSON *sum = cJSON_GetObjectItemCaseSensitive(j, "summary"), *c;
    const cJSON *first = cJSON_GetArrayItem(sum, 0);
    const cJSON *ts0 = cJSON_GetObjectItemCaseSensitive(first, "tasks"), *t;
    printf("\n%s, %s-shot, seed 1 (%%)\n%-16s", part->title, part->shots, "method");
    if (part->taxonomy) {
        printf(" %8s %8s %8s\n", "top-1", "HCA", "MTA");
    } else {
        cJSON_ArrayForEach(t, ts0)
            printf(" %14.14s", cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "task")));
        printf(" %8s\n", "mean");
    }
    cJSON_ArrayForEach(c, sum) {
        printf("%-16s", cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "method")));
        double mean = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(c, "mean"));
        if (part->taxonomy) {
            const char *keys[2] = {"hca", "mta"};
            printf(" %8.1f", 100 * mean);
            for (int k = 0; k < 2; k++) {
                const cJSON *o = cJSON_GetObjectItemCaseSensitive(c, keys[k]);
                printf(" %8.1f",
                       100 * cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "mean")));
            }
        } else {
            cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(c, "tasks"))
                printf(" %14.1f",
                       100 * cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(t, "mean")));
            printf(" %8.1f", 100 * mean);
        }
        printf("\n");
    }
    fflush(stdout);
    cJSON_Delete(j);
    return true;
}

static int demo_task_part(const char *out, const char *model, const char *methods, bool full,
                          const demo_data *data, const char *max_test, FILE *md,
                          const task_part *part) {
    char dir[4200], list[256] = "", set[1024] = "", tax[4096];
    snprintf(dir, sizeof dir, "%s/%s", out, part->key);
    for (size_t k = 0; k < part->n_methods; k++) {
        const demo_method *dm = part->methods + k;
        if (!in_list(methods, dm->name) || !ct_method_find(dm->name)) continue;
        if (*list) strcat(list, ",");
        strcat(list, dm->name);
        if (full || !*dm->budget) continue;
        char b[256]; /* METHOD.KEY=VALUE for each budget setting */
        snprintf(b, sizeof b, "%s", dm->budget);
        for (char *sv = NULL, *t = strtok_r(b, " ", &sv); t; t = strtok_r(NULL, " ", &sv)) {
            strcat(set, *set ? " " : "");
            strcat(strcat(strcat(set, dm->name), "."), t);
        }
    }
    if (!*list) return 0;
    printf("\n== %s ==\n", part->title);
    const char *av[96];
    int ac = 0;
    av[ac++] = "protocol";
    av[ac++] = "--model", av[ac++] = model;
    for (int d = 0; d < part->n_data; d++) av[ac++] = "--data", av[ac++] = data[d].spec;
    if (part->taxonomy)
        av[ac++] = "--taxonomy", av[ac++] = resolve(part->taxonomy, tax, sizeof tax);
    av[ac++] = "--methods", av[ac++] = list;
    av[ac++] = "--shots", av[ac++] = full ? "1,2,4,8,16" : part->shots;
    av[ac++] = "--seeds", av[ac++] = full ? "1,2,3" : "1";
    av[ac++] = "--out", av[ac++] = dir;
    if (max_test) av[ac++] = "--max-test", av[ac++] = max_test;
    int ns = 0;
    for (char *sv = NULL, *t = strtok_r(set, " ", &sv); t && ns < 32; t = strtok_r(NULL, " ", &sv))
        av[ac++] = "--set", av[ac++] = t, ns++;
    av[ac] = NULL;
    fflush(stdout);
    if (cmd_protocol(ac, (char **)av) != 0) return 1;
    if (!full && !print_part_summary(dir, part)) return 1;
    /* the console got the part's own summary; --full's several shots: the table */
    return print_table(dir, part->key, part->title, md,
                       part->n_data > 1 ? "mean top-1" : "top-1", full) ? 0 : 1;
}

int cmd_demo(int argc, char **argv) {
    if (cli_help_requested(argc, argv)) {
        fputs(HELP, stdout);
        return 0;
    }
    bool full = false, bad = false;
    const char *out = NULL, *model = NULL, *methods = NULL, *fmnist = NULL, *digits = NULL,
               *max_test = NULL;
    for (int i = 1; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "--full")) {
            full = true;
            continue;
        }
        if (cli_opt(argc, argv, &i, "--out", &out, &bad) ||
            cli_opt(argc, argv, &i, "--model", &model, &bad) ||
            cli_opt(argc, argv, &i, "--methods", &methods, &bad) ||
            cli_opt(argc, argv, &i, "--fashion-mnist", &fmnist, &bad) ||
            cli_opt(argc, argv, &i, "--digits", &digits, &bad) ||
            cli_opt(argc, argv, &i, "--max-test", &max_test, &bad))
            continue;
        bad = !cli_usage("demo: unknown option '%s' (see --help)", argv[i]);
    }
    if (bad) return 1;
    for (const char *p = methods; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        bool known = false;
        for (size_t k = 0; k < sizeof METHODS / sizeof *METHODS; k++)
            known = known || (strlen(METHODS[k].name) == len && !strncmp(p, METHODS[k].name, len));
        for (size_t k = 0; k < sizeof ML_METHODS / sizeof *ML_METHODS; k++)
            known = known ||
                    (strlen(ML_METHODS[k].name) == len && !strncmp(p, ML_METHODS[k].name, len));
        const demo_method *more[3] = {SEG_METHODS, HIER_METHODS, MT_METHODS};
        size_t n_more[3] = {sizeof SEG_METHODS / sizeof *SEG_METHODS,
                            sizeof HIER_METHODS / sizeof *HIER_METHODS,
                            sizeof MT_METHODS / sizeof *MT_METHODS};
        for (int g = 0; g < 3; g++)
            for (size_t k = 0; k < n_more[g]; k++)
                known = known || (strlen(more[g][k].name) == len &&
                                  !strncmp(p, more[g][k].name, len));
        if (!known) return cli_error("demo: --methods: '%.*s' is not a demo method", (int)len, p);
        p = e ? e + 1 : p + len;
    }
    char mbuf[4096];
    if (!model) model = resolve("models/cliptune-small", mbuf, sizeof mbuf);
    if (access(model, F_OK) != 0)
        return cli_error("demo: no model at %s (the shipped one is models/cliptune-small in the "
                         "source tree; or give --model)", model);
    if (!out) out = full ? "runs/demo-full" : "runs/demo";
    long long mt = full ? 0 : 1000;
    if (max_test && !cli_parse_ll(max_test, "--max-test", 0, 1LL << 40, &mt)) return 1;

    demo_data data[2] = {{"fashion-mnist", "Fashion-MNIST", ""}, {"digits", "Digits (8x8)", ""}};
    snprintf(data[0].spec, sizeof data[0].spec, "%s%s", fmnist ? "fashion-mnist:" : "fashion-mnist",
             fmnist ? fmnist : "");
    snprintf(data[1].spec, sizeof data[1].spec, "%s%s", digits ? "digits:" : "digits",
             digits ? digits : "");
    /* check the data before hours of work */
    for (int d = 0; d < 2; d++) {
        ct_splits sp;
        if (ct_data_open(data[d].spec, &sp) != CT_OK) {
            cli_lib_error("demo");
            fprintf(stderr, "cliptune: hint: as root, scripts/demo.sh installs the data "
                            "(apt-get install dataset-fashion-mnist; the digits come from the "
                            "python3-sklearn .deb)\n");
            return 1;
        }
        ct_splits_free(&sp);
    }
    if (ct_mkdir_p(out) != CT_OK) return cli_lib_error("demo");
    double t0 = now_s();
    char mdpath[4200];
    snprintf(mdpath, sizeof mdpath, "%s/demo.md", out);
    char *mdtext = NULL;
    size_t mdlen = 0;
    FILE *md = open_memstream(&mdtext, &mdlen);
    if (!md) return cli_error("demo: out of memory");
    fprintf(md, "# cliptune demo: %s transferred to Fashion-MNIST, digits and scenes, with "
                "a taxonomy and as two tasks at once\n\n"
                "Model `%s`; %s. Produced by `cliptune demo%s`.\n",
            model, model,
            full ? "shots 1,2,4,8,16, seeds 1,2,3, full test sets, the methods' own schedules"
                 : "shots 1, 4, 16, seed 1, budget-sized schedules (docs/demo.md)",
            full ? " --full" : "");
    int code = 0;
    for (int d = 0; d < 2 && code == 0; d++) {
        char list[1024] = "", set[2048] = "", dir[4200], mt_s[32];
        for (size_t k = 0; k < sizeof METHODS / sizeof *METHODS; k++) {
            if (!in_list(methods, METHODS[k].name) || (d == 1 && !METHODS[k].digits)) continue;
            if (!ct_method_find(METHODS[k].name)) continue; /* not in this build */
            if (*list) strcat(list, ",");
            strcat(list, METHODS[k].name);
            if (full || !*METHODS[k].budget) continue;
            /* METHOD.KEY=VALUE for each budget setting */
            char b[256];
            snprintf(b, sizeof b, "%s", METHODS[k].budget);
            for (char *sv = NULL, *t = strtok_r(b, " ", &sv); t; t = strtok_r(NULL, " ", &sv)) {
                strcat(set, *set ? " " : "");
                strcat(strcat(strcat(set, METHODS[k].name), "."), t);
            }
        }
        /* the class descriptions of the two LLM-prompt methods, per dataset */
        char desc[2][4600];
        for (int k = 0; k < 2; k++) {
            char rel[256], buf[4096];
            snprintf(rel, sizeof rel, "data/descriptors/%s%s.json", data[d].key, k ? "" : "-cupl");
            snprintf(desc[k], sizeof desc[k], "%s.%s=%s", k ? "vcd" : "cupl",
                     k ? "descriptors" : "descriptions", resolve(rel, buf, sizeof buf));
        }
        if (!*list) continue; /* --methods names none of this part's */
        snprintf(dir, sizeof dir, "%s/%s", out, data[d].key);
        snprintf(mt_s, sizeof mt_s, "%lld", mt);
        const char *av[160];
        int ac = 0;
        av[ac++] = "protocol";
        av[ac++] = "--model", av[ac++] = model;
        av[ac++] = "--data", av[ac++] = data[d].spec;
        av[ac++] = "--methods", av[ac++] = list;
        av[ac++] = "--shots", av[ac++] = full ? "1,2,4,8,16" : "1,4,16";
        av[ac++] = "--seeds", av[ac++] = full ? "1,2,3" : "1";
        av[ac++] = "--out", av[ac++] = dir;
        if (mt > 0) av[ac++] = "--max-test", av[ac++] = mt_s;
        char *sets[64];
        int nset = 0;
        for (char *sv = NULL, *t = strtok_r(set, " ", &sv); t && nset < 64;
             t = strtok_r(NULL, " ", &sv))
            sets[nset++] = t;
        for (int k = 0; k < nset; k++) av[ac++] = "--set", av[ac++] = sets[k];
        for (int k = 0; k < 2; k++)
            if (strstr(list, k ? "vcd" : "cupl")) av[ac++] = "--set", av[ac++] = desc[k];
        av[ac] = NULL;
        printf("\n== %s ==\n", data[d].title);
        fflush(stdout);
        if (cmd_protocol(ac, (char **)av) != 0) {
            code = 1;
            break;
        }
        if (!print_table(dir, data[d].key, data[d].title, md, "top-1", true)) code = 1;
    }
    for (size_t k = 0; k < sizeof SCENES_PARTS / sizeof *SCENES_PARTS && code == 0; k++)
        code = demo_scenes(out, model, methods, full, md, SCENES_PARTS + k);
    char mt_arg[32];
    snprintf(mt_arg, sizeof mt_arg, "%lld", mt);
    for (size_t k = 0; k < sizeof TASK_PARTS / sizeof *TASK_PARTS && code == 0; k++)
        code = demo_task_part(out, model, methods, full, data, mt > 0 ? mt_arg : NULL, md,
                              TASK_PARTS + k);
    fprintf(md, "\nTotal time: %.0f s.\n", now_s() - t0);
    fclose(md);
    if (code == 0 && ct_write_file_atomic(mdpath, mdtext, mdlen) != CT_OK)
        code = cli_lib_error("demo");
    free(mdtext);
    if (code == 0) printf("\nreport: %s (%.0f s)\n", mdpath, now_s() - t0);
    return code;
}
