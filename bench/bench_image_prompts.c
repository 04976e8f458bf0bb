/* One training step of an image-side method at ViT-B/16's shape with random
 * weights, as bench/image_prompts_torch.py runs the same step in PyTorch:
 *   maple:     MaPLe (n_ctx 2, depth 9), batch 4, 100 classes, SGD;
 *   clip-lora: CLIP-LoRA (r 2, q/k/v of all 12 blocks of both towers,
 *              dropout 0.25), batch 32, 100 classes, AdamW;
 *   tower:     the image tower alone, forward and backward to the input
 *              pixels (batch 8, no weight gradients): what every pixel-path
 *              method spends most of its step on.
 * A step is the method's loss on random normalised pixels, backward and the
 * optimiser update (the trainer's work minus decoding images). Class prompts
 * are "a photo of a class<k>." tokenized with the shipped model's tokenizer
 * (its ids fit the 49,408-entry embedding). Prints seconds per step (median
 * of the timed steps after one warm-up) and the process's peak RSS:
 *     bench_image_prompts maple|clip-lora|tower [steps] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench_common.h"
#include "cliptune.h"

#define K 100

int main(int argc, char **argv) {
    const char *which = argc > 1 ? argv[1] : "maple";
    int steps = argc > 2 ? atoi(argv[2]) : 3;
    bool lora = !strcmp(which, "clip-lora"), tower = !strcmp(which, "tower");
    const ct_method *m = ct_method_find(tower ? "vp" : which);
    if (!m || steps < 1) {
        fprintf(stderr, "usage: bench_image_prompts maple|clip-lora|tower [steps]\n");
        return 2;
    }
    ct_clip_config c = {0};
    c.format = CT_CLIP_OPENAI;
    c.image_size = 224, c.patch_size = 16, c.vision_width = 768, c.vision_layers = 12;
    c.vision_heads = 12, c.vision_mlp = 3072;
    c.context_length = 77, c.vocab_size = 49408, c.text_width = 512, c.text_layers = 12;
    c.text_heads = 8, c.text_mlp = 2048, c.embed_dim = 512;
    c.vision_act = c.text_act = CT_QUICK_GELU, c.vision_ln_eps = c.text_ln_eps = 1e-5f;
    c.eot_rule = CT_EOT_ARGMAX;
    ct_clip *clip = ct_clip_create(&c, 1);
    ct_tokenizer *tok = ct_tokenizer_load_hf(CT_SOURCE_DIR "/models/cliptune-small/vocab.json",
                                             CT_SOURCE_DIR "/models/cliptune-small/merges.txt");
    if (!clip || !tok) {
        fprintf(stderr, "bench: %s\n", ct_last_error());
        return 1;
    }
    char *names[K];
    for (int k = 0; k < K; k++) {
        names[k] = malloc(32);
        snprintf(names[k], 32, "class%d", k);
    }
    ct_preprocess_cfg pre;
    ct_preprocess_cfg_openai(&pre, 224);
    ct_task task = {.clip = clip, .tok = tok, .pre = &pre, .dataset_name = "bench",
                    .n_classes = K, .classnames = names, .seed = 1};
    ct_kv hp = {0};
    ct_train_cfg tc;
    void *st = NULL;
    if (ct_kv_parse(&hp, m->defaults) != CT_OK || m->create(&task, &hp, &st) != CT_OK ||
        ct_train_cfg_from_kv(&hp, &tc) != CT_OK) {
        fprintf(stderr, "bench: %s\n", ct_last_error());
        return 1;
    }
    int B = lora ? 32 : tower ? 8 : 4;
    size_t per = (size_t)3 * 224 * 224;
    float *px = malloc((size_t)B * per * sizeof *px);
    int *y = malloc((size_t)B * sizeof *y);
    ct_rng r;
    ct_rng_init(&r, 5);
    ct_rng_fill_normal(&r, px, (size_t)B * per, 0.0f, 1.0f);
    for (int i = 0; i < B; i++) y[i] = (int)(i * 7 % K);
    ct_tensor *p[256];
    int np = m->params(st, p, 256);
    ct_optim *opt = ct_optim_create(&tc.optim, p, np);
    ct_graph *g = ct_graph_create(0);
    /* as the trainer runs steps: only the learned tensors' gradients are
     * read after backward, intermediate ones are reused */
    ct_graph_set_reuse_grads(g, true);
    ct_graph_set_reuse_grads(g, true); /* as the trainer runs a step */
    double *t = malloc((size_t)steps * sizeof *t);
    if (tower) { /* pixels as a leaf that wants its gradient; loss: the sum of
                  * the embeddings (any scalar costs the same) */
        int64_t shape[4] = {B, 3, 224, 224};
        ct_tensor *x = ct_tensor_new(4, shape, true);
        memcpy(x->data, px, (size_t)B * per * sizeof *px);
        for (int s = 0; s <= steps; s++) {
            double t0 = bench_now();
            ct_graph_reset(g);
            ct_tensor_zero_grad(x);
            ct_tensor *loss = ct_sum_all(g, ct_clip_encode_image(g, clip, x, NULL, false, NULL));
            if (!loss || ct_backward(g, loss) != CT_OK) {
                fprintf(stderr, "bench: %s\n", ct_last_error());
                return 1;
            }
            if (s > 0) t[s - 1] = bench_now() - t0;
        }
        ct_tensor_free(x);
    }
    for (int s = 0; s <= steps && !tower; s++) {
        double t0 = bench_now();
        ct_graph_reset(g);
        ct_optim_zero_grad(opt);
        ct_batch b = {B, NULL, y, px, (uint64_t)s + 1, 0, NULL, NULL, 0};
        ct_tensor *loss = m->loss(st, g, &b);
        if (!loss || ct_backward(g, loss) != CT_OK || ct_optim_step(opt, tc.optim.lr) != CT_OK) {
            fprintf(stderr, "bench: %s\n", ct_last_error());
            return 1;
        }
        if (s > 0) t[s - 1] = bench_now() - t0;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("cliptune %-9s step (batch %d, %d classes, ViT-B/16 shape): %.3f s (median of %d), "
           "peak RSS %.0f MB, %d threads\n", which, B, K, bench_median(t, steps), steps,
           (double)ru.ru_maxrss / 1024.0, ct_get_num_threads());
    free(t), free(px), free(y);
    ct_graph_free(g);
    ct_optim_free(opt);
    m->destroy(st);
    ct_kv_free(&hp);
    for (int k = 0; k < K; k++) free(names[k]);
    ct_tokenizer_free(tok);
    ct_clip_free(clip);
    return 0;
}
