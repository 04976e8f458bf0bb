/* cliptune classify: zero-shot labels for images. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    "\n" MODEL_ARGS_PRECISION_HELP;

/* label text from the template: every "{}" replaced by the label */
static char *fill(const char *tmpl, const char *label) {
    size_t n = strlen(tmpl) + 1, ll = strlen(label);
    for (const char *p = strstr(tmpl, "{}"); p; p = strstr(p + 2, "{}")) n += ll;
    char *s = malloc(n), *o = s;
    for (const char *p = tmpl; *p;) {
        if (p[0] == '{' && p[1] == '}') {
            memcpy(o, label, ll), o += ll, p += 2;
        } else {
            *o++ = *p++;
        }
    }
    *o = 0;
    return s;
}

int cmd_classify(int argc, char **argv) {
    if (cli_help_requested(argc, argv)) {
        fputs(HELP, stdout);
        return 0;
    }
    model_args a = {0};
    const char *labels_arg = NULL, *tmpl = "a photo of a {}.", *top_arg = NULL;
    bool bad = false;
    char **imgs = calloc((size_t)argc, sizeof *imgs), **labels = NULL, **texts = NULL;
    char *lbuf = NULL;
    int n = 0, K = 0, rc = 1;
    for (int i = 1; i < argc && !bad; i++) {
        if (model_args_parse_inference(argc, argv, &i, &a, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--labels", &labels_arg, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--template", &tmpl, &bad)) continue;
        if (cli_opt(argc, argv, &i, "--top", &top_arg, &bad)) continue;
        if (argv[i][0] == '-' && argv[i][1]) {
            cli_error("classify: unknown option %s (see --help)", argv[i]);
            goto out;
        }
        imgs[n++] = argv[i];
    }
    if (bad) goto out;
    if (!labels_arg || !*labels_arg) {
        cli_error("classify: no --labels given");
        goto out;
    }
    if (n == 0) {
        cli_error("classify: no images given");
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
    int top = K < 5 ? K : 5;
    if (top_arg && (top = atoi(top_arg)) < 1) {
        cli_error("classify: --top %s: expected a positive number", top_arg);
        goto out;
    }
    if (top > K) top = K;
    texts = calloc((size_t)K, sizeof *texts);
    for (int k = 0; k < K; k++) texts[k] = fill(tmpl, labels[k]);
    loaded_model m;
    if (!model_load(&a, true, &m, "classify")) goto out;
    int64_t E = ct_clip_get_config(m.clip)->embed_dim;
    float *img = malloc((size_t)n * (size_t)E * sizeof *img);
    ct_graph *g = ct_graph_create(0);
    ct_graph_set_grad(g, false);
    ct_tensor *txt = img ? model_encode_texts(g, &m, texts, K, true, "classify") : NULL;
    if (txt && model_encode_images(&m, imgs, n, img, "classify")) {
        int64_t shape[2] = {n, E};
        ct_tensor *probs = ct_softmax(g, ct_clip_logits(g, m.clip, ct_graph_wrap(g, img, 2, shape),
                                                        txt));
        if (!probs) {
            cli_lib_error("classify");
        } else {
            rc = 0;
            int *order = malloc((size_t)K * sizeof *order);
            for (int i = 0; i < n; i++) {
                const float *p = probs->data + (size_t)i * K;
                for (int k = 0; k < K; k++) order[k] = k;
                for (int a1 = 0; a1 < top; a1++) /* partial selection sort: top entries */
                    for (int b = a1 + 1; b < K; b++)
                        if (p[order[b]] > p[order[a1]]) {
                            int t = order[a1];
                            order[a1] = order[b], order[b] = t;
                        }
                printf("%s\t%s", imgs[i], labels[order[0]]);
                for (int k = 0; k < top; k++) printf("\t%s=%.4f", labels[order[k]], p[order[k]]);
                putchar('\n');
            }
            free(order);
        }
    }
    ct_graph_free(g);
    free(img);
    model_unload(&m);
out:
    if (texts)
        for (int k = 0; k < K; k++) free(texts[k]);
    free(texts);
    free(labels);
    free(lbuf);
    free(imgs);
    return rc;
}
