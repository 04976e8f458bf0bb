/* One step of CLIP's contrastive pretraining (forward through both towers,
 * symmetric loss, backward to every weight, AdamW in open_clip's two groups,
 * clamp) of the shipped model's architecture (models/cliptune-small/config.json:
 * 28 px ViT with patch 4, 24-token text, 4,096 ids, width 192, 4 layers each) on a batch
 * of random pixels and token ids: the compute of a `cliptune pretrain` step
 * without its data loading. bench/pretrain_torch.py times the same step in
 * PyTorch; bench/run.sh runs both.
 *     bench_pretrain [steps] [batch] [config.json]
 * (default 5 timed steps after one untimed warm-up step, batch 256). Prints
 * the median seconds per step and pairs per second. */
#include <stdio.h>
#include <stdlib.h>

#include "bench_common.h"
#include "cliptune.h"
#include "model/clip.h"
#include "train/clip_trainer.h"

#ifndef CLIPTUNE_SOURCE_DIR
#define CLIPTUNE_SOURCE_DIR "."
#endif

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 5;
    int64_t B = argc > 2 ? atoll(argv[2]) : 256;
    const char *arch = argc > 3 ? argv[3] : CLIPTUNE_SOURCE_DIR "/models/cliptune-small/config.json";
    if (steps < 1 || steps > 1000 || B < 2 || B > 4096) {
        fprintf(stderr, "usage: bench_pretrain [steps 1..1000] [batch 2..4096] [arch.json]\n");
        return 2;
    }
    ct_clip_config c;
    if (ct_clip_config_from_hf(arch, &c) != CT_OK) {
        fprintf(stderr, "bench_pretrain: %s\n", ct_last_error());
        return 1;
    }
    ct_clip *m = ct_clip_create(&c, 1);
    ct_clip_trainer_cfg tc = {0.9, 0.98, 1e-6, 0.2, 0};
    ct_clip_trainer *t = m ? ct_clip_trainer_create(m, &tc) : NULL;
    ct_graph *g = ct_graph_create(0);
    int64_t S = c.image_size, T = c.context_length;
    float *px = malloc((size_t)(B * 3 * S * S) * sizeof *px);
    int64_t *ids = malloc((size_t)(B * T) * sizeof *ids);
    double *sec = malloc((size_t)steps * sizeof *sec);
    if (!t || !g || !px || !ids || !sec) {
        fprintf(stderr, "bench_pretrain: out of memory\n");
        return 1;
    }
    ct_rng r;
    ct_rng_init(&r, 5);
    ct_rng_fill_uniform(&r, px, (size_t)(B * 3 * S * S), -2.0f, 2.0f);
    /* SOT, 10 words, EOT (the highest id, as CLIP's), padding 0 */
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < T; j++)
            ids[b * T + j] = j == 0    ? c.vocab_size - 2
                             : j < 11  ? (int64_t)ct_rng_below(&r, (uint64_t)c.vocab_size - 2)
                             : j == 11 ? c.vocab_size - 1
                                       : 0;
    double loss = 0;
    for (int s = -1; s < steps; s++) {
        double t0 = bench_now();
        if (ct_clip_trainer_step(t, g, px, ids, B, 1e-4, &loss) != CT_OK) {
            fprintf(stderr, "bench_pretrain: %s\n", ct_last_error());
            return 1;
        }
        if (s >= 0) sec[s] = bench_now() - t0;
    }
    double med = bench_median(sec, steps);
    printf("cliptune pretrain step: %lld params, batch %lld, %d px, %lld tokens: "
           "%.3f s/step, %.0f pairs/s (median of %d; loss %.4f)\n",
           (long long)ct_clip_num_params(m), (long long)B, (int)S, (long long)T, med,
           (double)B / med, steps, loss);
    free(sec), free(ids), free(px);
    ct_graph_free(g);
    ct_clip_trainer_free(t);
    ct_clip_free(m);
    return 0;
}
