/* cliptune zeroshot / train / methods: one experiment into a run directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_args.h"
#include "progress.h"
#include "run_args.h"

static const char *HELP_TRAIN =
    "usage: cliptune train --method NAME --model MODEL --data SPEC [options]\n"
    "       cliptune zeroshot --model MODEL --data SPEC [options]\n"
    "       cliptune train --method softcpt --model MODEL --data A --data B [options]\n"
    "       (several --data, train or zeroshot: one multi-task run; metrics.json has\n"
    "       each task's top-1 among its own classes and the mean)\n"
    "\n"
    "Adapt (train) or apply (zeroshot) a method and evaluate it on the test split.\n"
    "Writes config.json, metrics.json, predictions.csv, log.txt, report.md,\n"
    "confusion.svg and learned.safetensors to the run directory (segmentation:\n"
    "predictions/ label maps and overlays.png instead of predictions.csv).\n"
    "\n"
    "options:\n"
    "  --model MODEL     HF CLIP folder or OpenAI-layout .safetensors\n"
    "  --bpe FILE        tokenizer for OpenAI-layout files (bpe_simple_vocab_16e6.txt.gz)\n"
    "  --act A           quick_gelu (default) or gelu, OpenAI layout only\n"
    "  --data SPEC       folder:DIR | coop:SPLIT.json@IMAGES | csv:FILE@ROOT |\n"
    "                    fashion-mnist[:DIR] | npy:X.npy,Y.npy; multi-label: voc:ROOT |\n"
    "                    coco:ROOT | mlcsv:TRAIN,[VAL,]TEST@ROOT | mljson:FILE@ROOT;\n"
    "                    segmentation (methods that label pixels: maskclip): vocseg:ROOT\n"
    "                    | adeseg:ROOT | pcontextseg:ROOT (docs/datasets.md). train:\n"
    "                    --data twice or more is one multi-task run over those datasets\n"
    "                    (a multi-task method: softcpt, mvlpt; or zeroshot;\n"
    "                    docs/training.md \"Multi-task runs\")\n"
    "  --shots K         training images per class (default 16; 0 = all; zeroshot: 0)\n"
    "  --seed N          few-shot sample and training seed (default 1)\n"
    "  --set KEY=VALUE   override a hyper-parameter (repeatable; see `cliptune methods`)\n"
    "  --out DIR         run directory (default runs/<method>-<data>-<K>shot-seed<N>)\n"
    "  --cache DIR       image-feature cache (default .cliptune-cache; 'none' disables)\n"
    "  --resume          continue an interrupted training run in DIR (refused, naming\n"
    "                    the difference, unless it is the same run: method, seed, data,\n"
    "                    model and hyper-parameters)\n"
    "  --force           replace a run already in DIR (otherwise refused)\n"
    "  --subsample S     all (default), base or novel: the first ceil(n/2) classes or the\n"
    "                    rest, relabelled from 0 (CoOp's base-to-novel protocol; evaluate\n"
    "                    a base-trained run on novel classes with eval --subsample novel)\n"
    "  --max-test N      evaluate on the first N test images only\n"
    "  --partial-labels P  multi-label data: keep each training label known with\n"
    "                    probability P, else unknown (DualCoOp's partial-label setting)\n"
    "  --taxonomy FILE   a hierarchy run: FILE's tree over the classes (parent<TAB>child\n"
    "                    lines; data/taxonomies/fashion-mnist.txt); adds leaf accuracy,\n"
    "                    HCA and MTA (ProTeCt's metrics) and is kept with the run for\n"
    "                    eval; the protect method trains with it\n";

static const char *HELP_IMPORT =
    "usage: cliptune import --from CHECKPOINT --method NAME --model MODEL --data SPEC\n"
    "                       [--set KEY=VALUE]... [--out DIR]\n"
    "\n"
    "Make a run directory from a checkpoint of a method's official code instead of\n"
    "training: e.g. CoOp's released prompt_learner/model.pth.tar-50 (PyTorch's\n"
    "torch.save files are read directly, zip or legacy format, data only: nothing in\n"
    "them is executed) or a safetensors file with the official keys (cliptune export\n"
    "--format official). The learned tensors are looked up by the official names\n"
    "(inside a Dassl checkpoint's state_dict), evaluated on SPEC's test split and\n"
    "saved as a run that eval / predict / export use. MODEL must be the CLIP the\n"
    "checkpoint was trained on, SPEC hold its classes in its order, and --set give\n"
    "the hyper-parameters it was trained with (n_ctx=16 csc=0 ...): a shape that\n"
    "differs is an error naming them. Methods: coop cocoop kgcoop prograd maple ivlp\n"
    "vpt-deep promptsrc lasp upl tpt clip-adapter taskres clip-lora vp.\n"
    "\n"
    "options: as for train (--model --bpe --act --data --set --out --cache --force\n"
    "--max-test --subsample), and\n"
    "  --from FILE       the checkpoint (.pth, .pth.tar, .safetensors)\n";

static void print_line(void *ctx, const char *line) {
    cli_progress_clear(ctx);
    printf("%s\n", line);
    fflush(stdout);
}

static bool g_import;

/* Two or more --data: one multi-task run over them (ct_mt_run). */
static int run_multitask(const run_args *ra, cli_progress *prog) {
    if (ra->import_from || strcmp(ra->subsample, "all") || ra->partial_labels > 0)
        return cli_usage("a multi-task run (several --data) takes no --from, --subsample or "
                         "--partial-labels");
    const ct_method *m = ct_method_find(ra->method);
    if (!m) return cli_usage("train: unknown method %s (see cliptune methods)", ra->method);
    ct_model *model = model_load(&ra->model, true, ra->method);
    if (!model) return 1;
    ct_splits sp[CT_MT_MAX_TASKS] = {{0}};
    const ct_splits *spp[CT_MT_MAX_TASKS];
    int code = 1;
    char dir[4096], names[1024] = "";
    for (int t = 0; t < ra->n_datas; t++) {
        if (ct_data_open(ra->datas[t], &sp[t]) != CT_OK) {
            cli_lib_error("train");
            goto out;
        }
        spp[t] = &sp[t];
        size_t n = strlen(names);
        snprintf(names + n, sizeof names - n, "%s%s", t ? "+" : "", sp[t].train->name);
    }
    if (ra->out) {
        snprintf(dir, sizeof dir, "%s", ra->out);
    } else {
        char name[1400];
        snprintf(name, sizeof name, "%s-%s-%dshot-seed%llu", ra->method, names, ra->shots,
                 (unsigned long long)ra->seed);
        for (char *p = name; *p; p++)
            if (*p == ':' || *p == ' ' || *p == '/') *p = '_';
        snprintf(dir, sizeof dir, "runs/%s", name);
    }
    if (!run_dir_ready(ra, dir)) goto out;
    ct_mt_run_cfg c = ct_mt_run_cfg_default();
    c.model = model, c.n_tasks = ra->n_datas, c.data = spp, c.data_specs = ra->datas;
    c.method = m, c.set = ra->set, c.shots = ra->shots, c.seed = ra->seed, c.run_dir = dir;
    c.cache_dir = ra->cache && strcmp(ra->cache, "none") ? ra->cache : NULL;
    c.resume = ra->resume, c.max_test = ra->max_test;
    c.log = print_line, c.log_ctx = prog, c.progress = cli_progress_cb, c.progress_ctx = prog;
    ct_mt_run_result r;
    if (ct_mt_run(&c, &r) != CT_OK) {
        cli_error("%s", ct_last_error());
        goto out;
    }
    char line[4200];
    snprintf(line, sizeof line, "run directory: %s", dir);
    print_line(prog, line);
    code = 0;
out:
    for (int t = 0; t < ra->n_datas; t++) ct_splits_free(&sp[t]);
    ct_model_free(model);
    return code;
}

static int run_cmd(int argc, char **argv, const char *fixed_method) {
    if (cli_help_requested(argc, argv)) {
        fputs(g_import ? HELP_IMPORT : HELP_TRAIN, stdout);
        return 0;
    }
    const char *cmd = fixed_method ? "zeroshot" : g_import ? "import" : "train";
    run_args ra;
    if (!run_args_parse(argc, argv, cmd, fixed_method, &ra)) return 1;
    if (ra.n_datas > 1) {
        cli_progress prog;
        cli_progress_init(&prog);
        int code = run_multitask(&ra, &prog);
        run_args_free(&ra);
        return code;
    }
    run_ctx rc;
    if (!run_ctx_open(&ra, cmd, &rc)) {
        run_args_free(&ra);
        return 1;
    }
    cli_progress prog;
    cli_progress_init(&prog);
    int code = run_one(&ra, &rc, ra.method, ra.shots, ra.seed, ra.out, print_line, &prog, NULL);
    run_ctx_close(&rc);
    run_args_free(&ra);
    return code;
}

int cmd_train(int argc, char **argv) { return run_cmd(argc, argv, NULL); }
int cmd_zeroshot(int argc, char **argv) { return run_cmd(argc, argv, "zeroshot"); }
int cmd_import(int argc, char **argv) {
    g_import = true;
    return run_cmd(argc, argv, NULL);
}

int cmd_methods(int argc, char **argv) {
    if (cli_help_requested(argc, argv)) {
        fputs("usage: cliptune methods\n\nList every method with its category, setup, paper "
              "and default hyper-parameters.\n", stdout);
        return 0;
    }
    if (argc > 1) return cli_usage("methods: unexpected argument %s", argv[1]);
    for (int i = 0; i < ct_method_count(); i++) {
        const ct_method *m = ct_method_at(i);
        printf("%-16s %-22s %-12s %s\n", m->name, m->category, m->setup, m->paper);
        printf("%-16s defaults: %s\n", "", m->defaults && *m->defaults ? m->defaults : "(none)");
    }
    printf("\ntrainer keys (methods that train): epochs batch_size optim lr momentum "
           "weight_decay sched\n  warmup_epochs warmup_type warmup_lr max_grad_norm select "
           "aug_views\n");
    return 0;
}
