/* Train CoOp (learned prompt context, Zhou et al. 2022) on a folder of
 * images per class and save the run, through the installed library only:
 *
 *     cc train_coop.c $(pkg-config --cflags --libs cliptune) -o train_coop
 *     ./train_coop MODEL folder:IMAGES RUN_DIR [SHOTS ["key=value ..."]]
 *
 * IMAGES holds one folder per class (split 80/10/10 by a fixed hash);
 * SHOTS (default 16) images per class are drawn with seed 1; the optional
 * last argument overrides CoOp's defaults (e.g. "epochs=10 n_ctx=4").
 * RUN_DIR gets config.json, metrics.json, predictions.csv, report.md and
 * learned.safetensors (the context as "ctx"), which `predict` (the next
 * example), `cliptune eval` / `predict` and the Python binding read. */
#include <stdio.h>
#include <stdlib.h>

#include <cliptune.h>

static int fail(const char *what) {
    fprintf(stderr, "train_coop: error: %s: %s\n", what, ct_last_error());
    return 1;
}

static void log_line(void *ctx, const char *line) {
    (void)ctx;
    printf("%s\n", line);
}

int main(int argc, char **argv) {
    if (argc < 4 || argc > 6) {
        fprintf(stderr, "usage: train_coop MODEL folder:IMAGES RUN_DIR [SHOTS [\"k=v ...\"]]\n");
        return 2;
    }
    ct_model_opts mo = {.need_tokenizer = true};
    ct_model *model = ct_model_load_ex(argv[1], &mo);
    if (!model) return fail(argv[1]);
    ct_splits data;
    if (ct_data_open(argv[2], &data) != CT_OK) {
        ct_model_free(model);
        return fail(argv[2]);
    }
    ct_run_cfg cfg = ct_run_cfg_default();
    cfg.model = model;
    cfg.data = &data;
    cfg.data_spec = argv[2];
    cfg.method = ct_method_find("coop");
    cfg.run_dir = argv[3];
    cfg.shots = argc > 4 ? atoi(argv[4]) : 16;
    cfg.set = argc > 5 ? argv[5] : NULL;
    cfg.log = log_line;
    ct_run_result res;
    ct_status s = ct_run(&cfg, &res);
    if (s == CT_OK)
        printf("coop: test top-1 %.2f%%, saved in %s\n", 100 * res.top1, argv[3]);
    ct_splits_free(&data);
    ct_model_free(model);
    return s == CT_OK ? 0 : fail("train");
}
