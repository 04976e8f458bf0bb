/* cliptune make-scenes OUT: the scenes demonstration set (VOC + COCO). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char *HELP =
    "usage: cliptune make-scenes OUT [--train N] [--val N] [--test N] [--seed S]\n"
    "                            [--canvas PX] [--fashion-mnist DIR]\n"
    "\n"
    "Write a multi-label classification and semantic segmentation demonstration\n"
    "set built from Fashion-MNIST to OUT, in the PASCAL VOC 2007/2012 layout\n"
    "(JPEGImages/, Annotations/, ImageSets/Main and Segmentation, SegmentationClass/\n"
    "palette PNGs) and as COCO instances_{train,val,test}.json in OUT/annotations,\n"
    "plus labels_{train,val,test}.csv (path,labels with ';' between classes),\n"
    "classnames.txt and README.txt, and two COCO-format captions per train scene\n"
    "(annotations/captions_train.json, with the nouns per class in\n"
    "annotations/synonyms.txt: training text for taidpt). Each scene is PX x PX\n"
    "RGB (default 56) with 1-3 tinted Fashion-MNIST items in distinct cells of a\n"
    "2x2 grid; train and val scenes use Fashion-MNIST's train images (val: the\n"
    "fashion-mnist spec's 10% holdout), test scenes its t10k images. The same\n"
    "options give byte-identical files. Every file is written atomically.\n"
    "\n"
    "  --train N, --val N, --test N   scenes per split (default 2000, 200, 1000)\n"
    "  --seed S                       default 0\n"
    "  --canvas PX                    scene side, 56..1024 (default 56)\n"
    "  --fashion-mnist DIR            the IDX files (default\n"
    "                                 /usr/share/datasets/fashion-mnist)\n"
    "\n"
    "See docs/datasets.md, \"The scenes demonstration set\".\n";

int cmd_make_scenes(int argc, char **argv) {
    if (cli_help_requested(argc, argv)) {
        fputs(HELP, stdout);
        return 0;
    }
    ct_scenes_cfg cfg = ct_scenes_cfg_default();
    const char *out = NULL, *v = NULL;
    bool bad = false;
    long long x;
    for (int i = 1; i < argc && !bad; i++) {
        v = NULL;
        if (cli_opt(argc, argv, &i, "--train", &v, &bad)) {
            if (v && !cli_parse_ll(v, "--train", 0, 999999, &x)) return 1;
            if (v) cfg.n_train = (int)x;
        } else if (cli_opt(argc, argv, &i, "--val", &v, &bad)) {
            if (v && !cli_parse_ll(v, "--val", 0, 999999, &x)) return 1;
            if (v) cfg.n_val = (int)x;
        } else if (cli_opt(argc, argv, &i, "--test", &v, &bad)) {
            if (v && !cli_parse_ll(v, "--test", 0, 999999, &x)) return 1;
            if (v) cfg.n_test = (int)x;
        } else if (cli_opt(argc, argv, &i, "--seed", &v, &bad)) {
            if (v && !cli_parse_ll(v, "--seed", 0, 9223372036854775807LL, &x)) return 1;
            if (v) cfg.seed = (uint64_t)x;
        } else if (cli_opt(argc, argv, &i, "--canvas", &v, &bad)) {
            if (v && !cli_parse_ll(v, "--canvas", 56, 1024, &x)) return 1;
            if (v) cfg.canvas = (int)x;
        } else if (cli_opt(argc, argv, &i, "--fashion-mnist", &v, &bad)) {
            if (v) cfg.fashion_mnist_dir = v;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_usage("make-scenes: unknown option %s (see --help)", argv[i]);
        } else if (out) {
            return cli_usage("make-scenes: more than one OUT given (%s, %s)", out, argv[i]);
        } else {
            out = argv[i];
        }
    }
    if (bad) return 1;
    if (!out) return cli_usage("make-scenes: no OUT folder given (see --help)");
    if (ct_data_make_scenes(&cfg, out) != CT_OK) return cli_lib_error("make-scenes");
    printf("wrote %d train, %d val and %d test scenes (%dx%d, seed %llu) to %s\n", cfg.n_train,
           cfg.n_val, cfg.n_test, cfg.canvas, cfg.canvas, (unsigned long long)cfg.seed, out);
    printf("  VOC:  %s (JPEGImages, Annotations, ImageSets, SegmentationClass)\n"
           "  COCO: %s/annotations/instances_{train,val,test}.json\n"
           "  CSV:  %s/labels_{train,val,test}.csv\n"
           "  captions (train): %s/annotations/captions_train.json, synonyms.txt\n", out, out,
           out, out);
    return 0;
}
