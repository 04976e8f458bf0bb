/* One CoCoOp training step (forward + backward to the context and the
 * Meta-Net, no optimiser update) at batch 1, the official batch size:
 *   - tiny: the test fixture model (tests/fixtures/methods/tiny, text width
 *     32, 2 layers) with Fashion-MNIST's 10 class names;
 *   - b16: 100 ImageNet class names on a ViT-B/16-sized text tower (width
 *     512, 12 layers, 8 heads), random weights (image tower tiny, unused).
 * Each image encodes its own K prompts (truncated after the last EOT), so a
 * step costs K text encodings per image; shared_prefix=1 (the default)
 * encodes each image's SOT + context once, shared_prefix=0 does not. Needs the real BPE from ../shared
 * (or CT_SHARED_DIR); prints seconds per step (median).
 *     bench_cocoop [steps] [all|tiny|b16] */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench_common.h"
#include "cliptune.h"

static const char *const FMNIST[10] = {"t-shirt/top", "trouser", "pullover", "dress", "coat",
                                       "sandal", "shirt", "sneaker", "bag", "ankle boot"};

static ct_clip_config text_b16(void) {
    ct_clip_config c = {0};
    c.format = CT_CLIP_OPENAI;
    c.image_size = 32, c.patch_size = 16, c.vision_width = 64, c.vision_layers = 1;
    c.vision_heads = 1, c.vision_mlp = 256;
    c.context_length = 77, c.vocab_size = 49408, c.text_width = 512, c.text_layers = 12;
    c.text_heads = 8, c.text_mlp = 2048, c.embed_dim = 512;
    c.vision_act = c.text_act = CT_QUICK_GELU;
    c.vision_ln_eps = c.text_ln_eps = 1e-5f;
    c.eot_rule = CT_EOT_ARGMAX, c.eot_id = 49407;
    return c;
}

/* K names: the first K "word1 word2" names built from a small word list
 * (ImageNet-like lengths, 1-3 BPE tokens each) for b16, or Fashion-MNIST's. */
static const char *const WORDS[20] = {"great", "white", "shark", "tiger", "goldfish",
                                      "rooster", "house", "finch", "spotted", "salamander",
                                      "green", "mamba", "sea", "snake", "black", "grouse",
                                      "garden", "spider", "box", "turtle"};

static double run(const char *what, ct_clip *m, ct_tokenizer *tok, int K, int reps,
                  const char *hp_text) {
    char **names = malloc((size_t)K * sizeof *names);
    for (int k = 0; k < K; k++) {
        names[k] = malloc(64);
        if (K == 10) snprintf(names[k], 64, "%s", FMNIST[k]);
        else snprintf(names[k], 64, "%s %s", WORDS[k % 20], WORDS[(k / 20 + 7 * k) % 20]);
    }
    ct_task task = {0};
    task.clip = m, task.tok = tok, task.n_classes = K, task.classnames = names, task.seed = 1;
    const ct_method *cc = ct_method_find("cocoop");
    ct_kv hp = {0};
    void *state = NULL;
    if (ct_kv_parse(&hp, hp_text) != CT_OK || cc->create(&task, &hp, &state) != CT_OK) {
        fprintf(stderr, "cocoop: %s\n", ct_last_error());
        exit(1);
    }
    int E = ct_clip_get_config(m)->embed_dim;
    float *x = malloc((size_t)E * sizeof *x);
    int y = 1;
    ct_rng r;
    ct_rng_init(&r, 5);
    ct_rng_fill_normal(&r, x, (size_t)E, 0, 1);
    ct_batch b = {1, x, &y, NULL, 0, 0, NULL, NULL, 0};
    ct_tensor *p[5];
    int np = cc->params(state, p, 5);
    ct_graph *g = ct_graph_create(0);
    double *t = malloc((size_t)reps * sizeof *t);
    for (int i = -1; i < reps; i++) {
        double t0 = bench_now();
        ct_graph_reset(g);
        for (int j = 0; j < np; j++) ct_tensor_zero_grad(p[j]);
        ct_tensor *loss = cc->loss(state, g, &b);
        if (!loss || ct_backward(g, loss) != CT_OK) {
            fprintf(stderr, "step failed: %s\n", ct_last_error());
            exit(1);
        }
        if (i >= 0) t[i] = bench_now() - t0;
    }
    double med = bench_median(t, reps);
    printf("  %-52s %-15s %8.4f s/step (median of %d), arena %5.0f MiB\n", what, hp_text, med, reps,
           (double)ct_graph_arena_reserved(g) / (1 << 20));
    fflush(stdout);
    free(t), free(x);
    ct_graph_free(g);
    cc->destroy(state);
    ct_kv_free(&hp);
    for (int k = 0; k < K; k++) free(names[k]);
    free(names);
    return med;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    const char *which = argc > 2 ? argv[2] : "all";
    if (reps < 1) reps = 1;
    char src[4096], vocab[4200], merges[4200], root[4096];
    snprintf(src, sizeof src, "%s", __FILE__);
    snprintf(root, sizeof root, "%s/..", dirname(src));
    const char *shared = getenv("CT_SHARED_DIR");
    if (shared) snprintf(vocab, sizeof vocab, "%s/data/clip-bpe/hf/vocab.json", shared);
    else snprintf(vocab, sizeof vocab, "%s/../shared/data/clip-bpe/hf/vocab.json", root);
    snprintf(merges, sizeof merges, "%.*s/merges.txt", (int)(strlen(vocab) - 11), vocab);
    struct stat st;
    ct_tokenizer *tok = stat(vocab, &st) == 0 ? ct_tokenizer_load_hf(vocab, merges) : NULL;
    if (!tok) {
        printf("bench_cocoop: no CLIP BPE at %s (set CT_SHARED_DIR); skipped\n", vocab);
        return 0;
    }
    printf("CoCoOp step, batch 1, n_ctx 4 (\"a photo of a\"), %d threads\n",
           ct_get_num_threads());
    if (!strcmp(which, "all") || !strcmp(which, "tiny")) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/tests/fixtures/methods/tiny", root);
        ct_clip *m = ct_clip_load(dir, NULL);
        if (!m) {
            fprintf(stderr, "%s: %s\n", dir, ct_last_error());
            return 1;
        }
        for (int v = 0; v < 2; v++)
            run("tiny model (width 32 x 2), 10 Fashion-MNIST classes:", m, tok, 10, reps,
                v ? "shared_prefix=0" : "shared_prefix=1");
        ct_clip_free(m);
    }
    if (!strcmp(which, "all") || !strcmp(which, "b16")) {
        ct_clip_config cfg = text_b16();
        ct_clip *m = ct_clip_create(&cfg, 1);
        if (!m) {
            fprintf(stderr, "create failed: %s\n", ct_last_error());
            return 1;
        }
        for (int v = 0; v < 2; v++)
            run("ViT-B/16 text tower (512 x 12), 100 classes:", m, tok, 100, reps > 3 ? 3 : reps,
                v ? "shared_prefix=0" : "shared_prefix=1");
        ct_clip_free(m);
    }
    ct_tokenizer_free(tok);
    return 0;
}
