/* One CoOp training step (forward + backward to the context, no optimiser
 * update) for 100 classes, 16 context vectors and a batch of 32 cached image
 * features, on a ViT-B/16-sized text tower (width 512, 12 layers, 8 heads,
 * vocabulary 49408) with random weights. The image tower is not used by a
 * step over cached features, so it is built tiny to keep the weights out of
 * the memory figure. Class names: the first 100 ImageNet classes (CLIP's
 * cleaned names), tokenized with the real BPE from ../shared; without it, a
 * byte-level vocabulary (no merges) and 3-letter names, 3 tokens each, about
 * the typical BPE length of a class name.
 *
 * Three variants: the method as it runs (shared_prefix=1: prompts truncated
 * after the last EOT, the common SOT + context prefix encoded once), the
 * truncated prompts through the plain encoder (shared_prefix=0), and full
 * 77-token prompts as coop.py runs them. Prints seconds per step (median)
 * and the process's peak resident set size so far (getrusage), so run one
 * variant per process for its own peak:
 *     bench_coop [steps] [all|shared|plain|full]
 * (default 3 timed steps after one untimed warm-up step, all variants in
 * that order). */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_common.h"
#include "cliptune.h"

static const char *const IMAGENET100[100] = {
    "tench", "goldfish", "great white shark", "tiger shark", "hammerhead shark", "electric ray",
    "stingray", "rooster", "hen", "ostrich", "brambling", "goldfinch", "house finch", "junco",
    "indigo bunting", "American robin", "bulbul", "jay", "magpie", "chickadee",
    "American dipper", "kite (bird of prey)", "bald eagle", "vulture", "great grey owl",
    "fire salamander", "smooth newt", "newt", "spotted salamander", "axolotl",
    "American bullfrog", "tree frog", "tailed frog", "loggerhead sea turtle",
    "leatherback sea turtle", "mud turtle", "terrapin", "box turtle", "banded gecko",
    "green iguana", "Carolina anole", "desert grassland whiptail lizard", "agama",
    "frilled-necked lizard", "alligator lizard", "Gila monster", "European green lizard",
    "chameleon", "Komodo dragon", "Nile crocodile", "American alligator", "triceratops",
    "worm snake", "ring-necked snake", "eastern hog-nosed snake", "smooth green snake",
    "kingsnake", "garter snake", "water snake", "vine snake", "night snake", "boa constrictor",
    "African rock python", "Indian cobra", "green mamba", "sea snake", "Saharan horned viper",
    "eastern diamondback rattlesnake", "sidewinder rattlesnake", "trilobite", "harvestman",
    "scorpion", "yellow garden spider", "barn spider", "European garden spider",
    "southern black widow", "tarantula", "wolf spider", "tick", "centipede", "black grouse",
    "ptarmigan", "ruffed grouse", "prairie grouse", "peafowl", "quail", "partridge",
    "african grey parrot", "macaw", "sulphur-crested cockatoo", "lorikeet", "coucal",
    "bee eater", "hornbill", "hummingbird", "jacamar", "toucan", "duck",
    "red-breasted merganser", "goose"};

enum { K = 100, N_CTX = 16, BATCH = 32 };

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

/* GPT-2's byte <-> symbol map, as UTF-8 (for the fallback vocabulary) */
static void byte_symbol(int b, char out[4]) {
    int cp = b;
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    if (!printable) {
        int n = 0; /* the n-th non-printable byte maps to 256 + n */
        for (int x = 0; x < b; x++)
            n += !((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE);
        cp = 256 + n;
    }
    if (cp < 0x80) out[0] = (char)cp, out[1] = 0;
    else out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 63)), out[2] = 0;
}

/* A byte-level tokenizer (no merges) written to a temporary folder. */
static ct_tokenizer *fallback_tokenizer(void) {
    char dir[] = "/tmp/bench_coop_XXXXXX", path[64];
    if (!mkdtemp(dir)) return NULL;
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fputc('{', f);
    for (int w = 0; w < 2; w++)
        for (int b = 0; b < 256; b++) {
            char s[4];
            byte_symbol(b, s);
            if (s[0] == '"' || s[0] == '\\') fprintf(f, "\"\\%s%s\": %d, ", s, w ? "</w>" : "",
                                                     w * 256 + b);
            else fprintf(f, "\"%s%s\": %d, ", s, w ? "</w>" : "", w * 256 + b);
        }
    fputs("\"<|startoftext|>\": 512, \"<|endoftext|>\": 513}", f);
    fclose(f);
    char merges[64];
    snprintf(merges, sizeof merges, "%s/merges.txt", dir);
    f = fopen(merges, "w");
    if (!f) return NULL;
    fputs("#version: 0.2\n", f);
    fclose(f);
    ct_tokenizer *t = ct_tokenizer_load_hf(path, merges);
    remove(path), remove(merges), rmdir(dir);
    return t;
}

static long peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

/* The full-length step coop.py runs: the same prompts at 77 tokens. */
static double step_77(ct_graph *g, const ct_clip *m, ct_tensor *emb, const int64_t *eot,
                      ct_tensor *img, const int64_t *labels) {
    double t0 = bench_now();
    ct_graph_reset(g);
    ct_tensor_zero_grad(emb);
    ct_tensor *txt = ct_clip_encode_text_embeds(g, m, emb, eot, NULL);
    ct_tensor *loss = ct_cross_entropy(g, ct_clip_logits(g, m, img, txt), labels, 0);
    if (!loss || ct_backward(g, loss) != CT_OK) {
        fprintf(stderr, "77-token step failed: %s\n", ct_last_error());
        exit(1);
    }
    return bench_now() - t0;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 3;
    const char *which = argc > 2 ? argv[2] : "all";
    bool all = !strcmp(which, "all");
    if (reps < 1) reps = 1;
    ct_clip_config cfg = text_b16();
    ct_clip *m = ct_clip_create(&cfg, 1);
    if (!m) {
        fprintf(stderr, "create failed: %s\n", ct_last_error());
        return 1;
    }
    char src[4096], vocab[4200], merges[4200];
    snprintf(src, sizeof src, "%s", __FILE__);
    const char *shared = getenv("CT_SHARED_DIR");
    if (shared) snprintf(vocab, sizeof vocab, "%s/data/clip-bpe/hf/vocab.json", shared);
    else snprintf(vocab, sizeof vocab, "%s/../../shared/data/clip-bpe/hf/vocab.json",
                  dirname(src));
    snprintf(merges, sizeof merges, "%.*s/merges.txt", (int)(strlen(vocab) - 11), vocab);
    struct stat st;
    ct_tokenizer *tok = stat(vocab, &st) == 0 ? ct_tokenizer_load_hf(vocab, merges) : NULL;
    char *names[K], synth[K][4];
    const char *how = "ImageNet class names, real BPE";
    for (int k = 0; k < K; k++) names[k] = (char *)IMAGENET100[k];
    if (!tok) {
        tok = fallback_tokenizer();
        how = "synthetic 3-token class names (no ../shared BPE)";
        for (int k = 0; k < K; k++) {
            snprintf(synth[k], sizeof synth[k], "%c%c%c", 'a' + k % 26, 'a' + k / 26, 'q');
            names[k] = synth[k];
        }
    }
    if (!tok) {
        fprintf(stderr, "no tokenizer: %s\n", ct_last_error());
        return 1;
    }
    ct_task task = {0};
    task.clip = m, task.tok = tok, task.n_classes = K, task.classnames = names, task.seed = 1;
    const ct_method *coop = ct_method_find("coop");
    static float x[BATCH * 512];
    static int y[BATCH];
    ct_rng r;
    ct_rng_init(&r, 5);
    ct_rng_fill_normal(&r, x, BATCH * 512, 0, 1);
    for (int i = 0; i < BATCH; i++) y[i] = (int)ct_rng_below(&r, K);
    ct_batch b = {BATCH, x, y, NULL, 0, 0, NULL, NULL, 0};
    ct_graph *g = ct_graph_create(0);
    /* as the trainer runs steps: only the learned tensors' gradients are
     * read after backward, intermediate ones are reused */
    ct_graph_set_reuse_grads(g, true);
    printf("CoOp step: %d classes (%s), %d context vectors, batch %d, text tower 512 x 12, "
           "%d threads\n", K, how, N_CTX, BATCH, ct_get_num_threads());
    double *t = malloc((size_t)reps * sizeof *t);
    for (int v = 0; v < 2; v++) {
        const char *name = v ? "plain" : "shared";
        if (!all && strcmp(which, name)) continue;
        ct_kv hp = {0};
        void *state = NULL;
        if (ct_kv_parse(&hp, v ? "n_ctx=16 shared_prefix=0" : "n_ctx=16") != CT_OK ||
            coop->create(&task, &hp, &state) != CT_OK) {
            fprintf(stderr, "coop: %s\n", ct_last_error());
            return 1;
        }
        ct_tensor *ctx;
        coop->params(state, &ctx, 1);
        for (int i = -1; i < reps; i++) {
            double t0 = bench_now();
            ct_graph_reset(g);
            ct_tensor_zero_grad(ctx);
            ct_tensor *loss = coop->loss(state, g, &b);
            if (!loss || ct_backward(g, loss) != CT_OK) {
                fprintf(stderr, "step failed: %s\n", ct_last_error());
                return 1;
            }
            if (i >= 0) t[i] = bench_now() - t0;
        }
        printf("  %-44s %6.3f s/step (median of %d), arena %5.0f MiB, peak RSS %5ld MiB\n",
               v ? "truncated, plain encoder (shared_prefix=0):"
                 : "coop as it runs (truncated, shared prefix):",
               bench_median(t, reps), reps, (double)ct_graph_arena_reserved(g) / (1 << 20),
               peak_rss_mb());
        fflush(stdout);
        coop->destroy(state);
        ct_kv_free(&hp);
    }
    if (!all && strcmp(which, "full")) {
        free(t);
        ct_graph_free(g);
        ct_tokenizer_free(tok);
        ct_clip_free(m);
        return 0;
    }

    /* the same prompts at 77 tokens, as embeddings that require grad */
    int64_t *ids = calloc((size_t)K * 77, sizeof *ids), eot[K], labels[BATCH];
    for (int k = 0; k < K; k++) {
        char text[256];
        snprintf(text, sizeof text, "X X X X X X X X X X X X X X X X %s.", names[k]);
        ct_tokenizer_tokenize(tok, text, 77, true, ids + (size_t)k * 77);
    }
    ct_clip_eot_positions(m, ids, K, 77, eot);
    for (int i = 0; i < BATCH; i++) labels[i] = y[i];
    ct_graph_reset(g);
    ct_graph_set_grad(g, false);
    ct_tensor *e = ct_clip_embed_tokens(g, m, ids, K, 77);
    int64_t es[3] = {K, 77, 512}, is[2] = {BATCH, 512};
    ct_tensor *emb = ct_tensor_new(3, es, true), *img = ct_tensor_new(2, is, false);
    memcpy(emb->data, e->data, (size_t)emb->numel * sizeof(float));
    memcpy(img->data, x, sizeof x);
    ct_graph_set_grad(g, true);
    for (int i = -1; i < reps; i++) {
        double dt = step_77(g, m, emb, eot, img, labels);
        if (i >= 0) t[i] = dt;
    }
    printf("  %-44s %6.3f s/step (median of %d), arena %5.0f MiB, peak RSS %5ld MiB\n",
           "full 77-token prompts (as coop.py):", bench_median(t, reps), reps,
           (double)ct_graph_arena_reserved(g) / (1 << 20), peak_rss_mb());
    free(t), free(ids);
    ct_tensor_free(emb), ct_tensor_free(img);
    ct_graph_free(g);
    ct_tokenizer_free(tok);
    ct_clip_free(m);
    return 0;
}
