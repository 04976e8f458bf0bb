/* Zero-shot classification of image files with a Hugging Face CLIP folder,
 * through the installed library only (cliptune.h):
 *
 *     cc zeroshot.c $(pkg-config --cflags --libs cliptune) -o zeroshot
 *     ./zeroshot MODEL_DIR "cat,dog,car" IMG...
 *
 * Prints, per image, the best label and its probability. The labels go into
 * CLIP's template "a photo of a {}."; the images are preprocessed as the
 * folder's preprocessor_config.json says. Exit status 1 with
 * "zeroshot: error: ..." on any failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cliptune.h>

static int fail(const char *what) {
    fprintf(stderr, "zeroshot: error: %s: %s\n", what, ct_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: zeroshot MODEL_DIR \"label,label,...\" IMG...\n");
        return 2;
    }
    const char *dir = argv[1];
    char path[4096], vocab[4096];
    ct_clip *m = ct_clip_load(dir, NULL);
    if (!m) return fail(dir);
    snprintf(vocab, sizeof vocab, "%s/vocab.json", dir);
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    ct_tokenizer *tok = ct_tokenizer_load_hf(vocab, path);
    if (!tok) return fail("tokenizer");
    ct_preprocess_cfg pre;
    snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
    if (ct_preprocess_cfg_from_hf(path, &pre) != CT_OK) return fail(path);
    const ct_clip_config *cfg = ct_clip_get_config(m);
    int S = cfg->image_size, T = cfg->context_length;

    /* the labels' prompts, tokenized */
    char *labels = malloc(strlen(argv[2]) + 1);
    strcpy(labels, argv[2]);
    int K = 0;
    char *names[256];
    for (char *s = strtok(labels, ","); s && K < 256; s = strtok(NULL, ",")) names[K++] = s;
    int64_t *ids = malloc((size_t)K * T * sizeof *ids);
    for (int k = 0; k < K; k++) {
        char text[512];
        snprintf(text, sizeof text, "a photo of a %s.", names[k]);
        if (ct_tokenizer_tokenize(tok, text, T, true, ids + (size_t)k * T) != CT_OK)
            return fail(names[k]);
    }

    /* the images, preprocessed to (n, 3, S, S) */
    int n = argc - 3;
    float *px = malloc((size_t)n * 3 * S * S * sizeof *px);
    for (int i = 0; i < n; i++) {
        ct_image img;
        if (ct_image_load(argv[3 + i], &img) != CT_OK) return fail(argv[3 + i]);
        ct_status st = ct_preprocess(&img, &pre, px + (size_t)i * 3 * S * S);
        ct_image_free(&img);
        if (st != CT_OK) return fail(argv[3 + i]);
    }

    /* inference: no tape */
    ct_graph *g = ct_graph_create(0);
    ct_graph_set_grad(g, false);
    int64_t shape[4] = {n, 3, S, S};
    ct_tensor *pixels = ct_graph_wrap(g, px, 4, shape);
    ct_tensor *img = ct_clip_encode_image(g, m, pixels, NULL, false, NULL);
    ct_tensor *txt = ct_clip_encode_text(g, m, ids, K, T, NULL);
    ct_tensor *logits = ct_clip_logits(g, m, img, txt);
    ct_tensor *prob = ct_softmax(g, logits); /* over the last dim */
    if (!prob) return fail("encode");
    for (int i = 0; i < n; i++) {
        const ct_real *p = prob->data + (size_t)i * K;
        int best = 0;
        for (int k = 1; k < K; k++)
            if (p[k] > p[best]) best = k;
        printf("%s\t%s\t%.3f\n", argv[3 + i], names[best], (double)p[best]);
    }
    ct_graph_free(g);
    free(px), free(ids), free(labels);
    ct_tokenizer_free(tok);
    ct_clip_free(m);
    return 0;
}
