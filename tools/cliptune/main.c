/* cliptune command-line tool: parse, call the library, print. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} command;

static const command COMMANDS[] = {
    {"demo", cmd_demo, "the shipped model on Fashion-MNIST and digits, every method"},
    {"info", cmd_info, "architecture and size of a CLIP checkpoint"},
    {"tokenize", cmd_tokenize, "CLIP token ids of texts"},
    {"bpe-train", cmd_bpe_train, "train a BPE vocabulary (HF tokenizer folder) on captions"},
    {"pretrain", cmd_pretrain, "CLIP contrastive pretraining from scratch on image-caption pairs"},
    {"embed", cmd_embed, "image or text embeddings to .npy"},
    {"classify", cmd_classify, "zero-shot labels for images"},
    {"zeroshot", cmd_zeroshot, "zero-shot CLIP on a dataset, with a run report"},
    {"train", cmd_train, "adapt with a method on a dataset, with a run report"},
    {"methods", cmd_methods, "every method with category, setup and paper"},
    {"protocol", cmd_protocol, "few-shot protocol: methods x shots x seeds, results table"},
    {"eval", cmd_eval, "re-evaluate a finished run on a dataset's test split"},
    {"predict", cmd_predict, "labels for images from a finished run"},
    {"export", cmd_export, "a run's learned tensors in the official layout, or merged (clip-lora)"},
    {"import", cmd_import, "a run from a method's official checkpoint (e.g. CoOp's .pth)"},
    {"make-scenes", cmd_make_scenes,
     "Fashion-MNIST scenes: a VOC + COCO multi-label/segmentation set"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: cliptune <command> [options]   (cliptune <command> --help)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        fprintf(f, "  %-11s %s\n", COMMANDS[i].name, COMMANDS[i].help);
    fprintf(f, "  %-11s %s\n", "version", "version and thread count");
    fprintf(f, "  %-11s %s\n", "help CMD", "a command's options (as cliptune CMD --help)");
    fprintf(f, "\noptions take a value as --opt VALUE or --opt=VALUE; short forms: -m --model,\n"
               "-d --data, -o --out, -r --run, -l --labels, -k --top, -s --shots, -S --set.\n"
               "Exit status: 0 success, 1 a failure, 2 a usage error.\n");
    fprintf(f, "\nenvironment: CLIPTUNE_THREADS sets the number of threads; on a non-terminal,\n"
               "CLIPTUNE_PROGRESS_SECONDS the interval of progress lines (default 10).\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        if (argc > 2) { /* cliptune help CMD: the command's own help */
            for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
                if (!strcmp(argv[2], COMMANDS[i].name)) {
                    char *args[] = {argv[2], "--help", NULL};
                    return COMMANDS[i].run(2, args);
                }
            cli_error("help: unknown command '%s' (see 'cliptune help')", argv[2]);
            return 2;
        }
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("cliptune %s (threads: %d, kernels: %s)\n", ct_version(), ct_get_num_threads(),
               ct_cpu_path());
        return 0;
    }
    /* exit status: 0 success, 1 a runtime failure, 2 a usage error */
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) {
            /* mpirun -n N (a CT_MPI build): every rank runs the command;
             * rank 0 prints the output, the other ranks only their errors,
             * progress and protocol cells (stderr) */
            if (ct_dist_size() > 1 && ct_dist_rank() > 0 && !freopen("/dev/null", "w", stdout))
                cli_error("cannot silence rank %d's output", ct_dist_rank());
            int rc = COMMANDS[i].run(argc - 1, argv + 1);
            rc = rc && cli_usage_failed ? 2 : rc;
            /* a failed rank ends the whole job (after its message) */
            ct_dist_finish(rc);
            return rc;
        }
    cli_error("unknown command '%s' (see 'cliptune help')", argv[1]);
    return 2;
}
