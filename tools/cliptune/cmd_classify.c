/* cliptune classify: zero-shot labels for images. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "model_args.h"

static const char *HELP =
    "usage: cliptune classify --model MODEL --labels \"cat,dog,...\"\n"
    "                         [--template \"a photo of a {}.\"] [--top K]\n"
    "                         [--precision f32|bf16] IMG...\n"
    "\n"
    "Zero-shot classification: each label is put into the template ({} is\n"
    "replaced by the label), encoded, and compared with each image by\n"
    "logit_scale * cosine similarity; prints the best label and the top-K\n"
    "softmax probabilities (default K = min(5, labels)) per image.\n"
    "\n"
    "  --json            one JSON array: per image its path, label and top-K\n"
    "                    {\"label\", \"prob\"}\n" MODEL_ARGS_PRECISION_HELP;

int cmd_classify(int argc, char **argv) {
    if (cli_help_requested(argc, argv)) {
        fputs(HELP, stdout);
        return 0;
    }
    model_args a = {0};
    const char *labels_arg = NULL, *tmpl = "a photo of a {}.", *top_arg = NULL;
    bool bad = false;
    char **imgs = calloc((size_t)argc, sizeof *imgs), **labels = NULL;
    bool json = false;
    char *lbuf = NULL;
    int n = 0, K = 0, rc = 1;
    for (int i = 1; i < argc && !bad; i++) {
        if (model_args_parse_inference(argc, argv, &i, &a, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--labels", &labels_arg, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--template", &tmpl, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--top", &top_arg, &bad)) continue;
        if (!strcmp(argv[i], "--json")) {
            json = true;
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1]) {
            cli_usage("classify: unknown option %s (see --help)", argv[i]);
            goto out;
        }
        imgs[n++] = argv[i];
    }
    if (bad) goto out;
    if (!labels_arg || !*labels_arg) {
        cli_usage("classify: no --labels given");
        goto out;
    }
    if (n == 0) {
        cli_usage("classify: no images given");
        goto out;
    }
    lbuf = strdup(labels_arg);
    labels = calloc(strlen(labels_arg) + 1, sizeof *labels);
    for (char *tok = strtok(lbuf, ","); tok; tok = strtok(NULL, ",")) {
        while (*tok == ' ') tok++;
        if (*tok) labels[K++] = tok;
    }
    if (K == 0) {
        cli_error("classify: --labels has no labels");
        goto out;
    }
    long long top = K < 5 ? K : 5;
    if (top_arg && !cli_parse_ll(top_arg, "classify: --top", 1, 1 << 20, &top)) goto out;
    if (top > K) top = K;
    ct_model *m = model_load(&a, true, "classify");
    if (!m) goto out;
    float *probs = malloc((size_t)n * (size_t)K * sizeof *probs);
    int *order = malloc((size_t)K * sizeof *order);
    cJSON *arr = json ? cJSON_CreateArray() : NULL;
    if (!probs || !order || (json && !arr)) {
        cli_error("classify: out of memory");
    } else if (ct_model_classify(m, (const char *const *)imgs, n, (const char *const *)labels, K,
                                 tmpl, probs) != CT_OK) {
        cli_lib_error("classify");
    } else {
        rc = 0;
        for (int i = 0; i < n; i++) {
            const float *p = probs + (size_t)i * K;
            for (int k = 0; k < K; k++) order[k] = k;
            for (int a1 = 0; a1 < top; a1++) /* partial selection sort: ties keep the lower index */
                for (int b = a1 + 1; b < K; b++)
                    if (p[order[b]] > p[order[a1]]) {
                        int t = order[a1];
                        order[a1] = order[b], order[b] = t;
                    }
            if (json) {
                cJSON *o = cJSON_CreateObject(), *tk = cJSON_CreateArray();
                cJSON_AddStringToObject(o, "path", imgs[i]);
                cJSON_AddStringToObject(o, "label", labels[order[0]]);
                for (int k = 0; k < top; k++) {
                    cJSON *e = cJSON_CreateObject();
                    cJSON_AddStringToObject(e, "label", labels[order[k]]);
                    cJSON_AddNumberToObject(e, "prob", p[order[k]]);
                    cJSON_AddItemToArray(tk, e);
                }
                cJSON_AddItemToObject(o, "top", tk);
                cJSON_AddItemToArray(arr, o);
                continue;
            }
            printf("%s\t%s", imgs[i], labels[order[0]]);
            for (int k = 0; k < top; k++) printf("\t%s=%.4f", labels[order[k]], p[order[k]]);
            putchar('\n');
        }
        if (json) {
            char *t = cJSON_Print(arr);
            if (t) puts(t);
            free(t);
        }
    }
    cJSON_Delete(arr);
    free(order);
    free(probs);
    ct_model_free(m);
out:
    free(labels);
    free(lbuf);
    free(imgs);
    return rc;
}
