/* Classify image files with a finished run (any method; e.g. the one
 * train_coop saved), through the installed library only:
 *
 *     cc predict.c $(pkg-config --cflags --libs cliptune) -o predict
 *     ./predict RUN_DIR IMG...
 *
 * The run directory says which model it was trained on (its path,
 * tokenizer, activation and content hash): that model is loaded and checked,
 * the method rebuilt with its learned tensors. Prints, per image, the path,
 * the predicted class and its probability, tab-separated. */
#include <stdio.h>
#include <stdlib.h>

#include <cliptune.h>

static int fail(const char *what) {
    fprintf(stderr, "predict: error: %s: %s\n", what, ct_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: predict RUN_DIR IMG...\n");
        return 2;
    }
    ct_saved_run *run = ct_saved_run_open(argv[1]);
    if (!run) return fail(argv[1]);
    /* NULL: the model the run records */
    if (ct_saved_run_attach(run, NULL) != CT_OK) {
        ct_saved_run_free(run);
        return fail(argv[1]);
    }
    const ct_run_info *info = ct_saved_run_info(run);
    int n = argc - 2, K = info->n_classes;
    float *probs = malloc((size_t)n * (size_t)K * sizeof *probs);
    ct_status s = probs ? ct_saved_run_predict_files(run, (const char *const *)argv + 2, n, probs)
                        : CT_ERR_NOMEM;
    for (int i = 0; s == CT_OK && i < n; i++) {
        const float *p = probs + (size_t)i * K;
        int best = 0;
        for (int k = 1; k < K; k++)
            if (p[k] > p[best]) best = k;
        printf("%s\t%s\t%.4f\n", argv[2 + i], info->classnames[best], (double)p[best]);
    }
    free(probs);
    ct_saved_run_free(run);
    return s == CT_OK ? 0 : fail("predict");
}
