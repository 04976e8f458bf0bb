/* CLIP encoder throughput with random weights in the real architectures
 * (ViT-B/32, ViT-B/16 and RN50 image towers at batch 32; the text tower at
 * 77 tokens, batch 100), inference mode (no tape), next to the raw sgemm
 * rate measured in the same run.
 *     bench_clip [--quick]            all four, a table
 *     bench_clip --path               the code path the CPU picked
 *     bench_clip b32|b16|text|rn50 [REPS] [bf16]
 *                                     one workload, one machine-readable line
 *                                     (bench/peers.sh: items/s of each timed
 *                                     repetition and the peak RSS); bf16: with
 *                                     ct_clip_set_precision(CT_PRECISION_BF16)
 *                                     (exit status 2 where the CPU lacks it) */
#include <cblas.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "bench_common.h"
#include "cliptune.h"

static ct_clip_config vit_b(int patch) {
    ct_clip_config c = {0};
    c.format = CT_CLIP_OPENAI;
    c.image_size = 224, c.patch_size = patch, c.vision_width = 768, c.vision_layers = 12;
    c.vision_heads = 12, c.vision_mlp = 3072;
    c.context_length = 77, c.vocab_size = 49408, c.text_width = 512, c.text_layers = 12;
    c.text_heads = 8, c.text_mlp = 2048, c.embed_dim = patch == 32 ? 512 : 512;
    c.vision_act = c.text_act = CT_QUICK_GELU;
    c.vision_ln_eps = c.text_ln_eps = 1e-5f;
    c.eot_rule = CT_EOT_ARGMAX, c.eot_id = 49407;
    return c;
}

/* OpenAI's RN50: ModifiedResNet (3, 4, 6, 3), width 64, 224 px, embed 1024 */
static ct_clip_config rn50(void) {
    ct_clip_config c = vit_b(32);
    c.vision_resnet_layers[0] = 3, c.vision_resnet_layers[1] = 4;
    c.vision_resnet_layers[2] = 6, c.vision_resnet_layers[3] = 3;
    c.vision_width = 64, c.vision_heads = 32, c.vision_layers = 0, c.vision_mlp = 0;
    c.embed_dim = 1024;
    return c;
}

static double gemm_rate(void) {
    int M = 1600, N = 768, K = 768;
    float *a = calloc((size_t)M * K, 4), *b = calloc((size_t)N * K, 4), *c = calloc((size_t)M * N, 4);
    double t[3];
    for (int m = -1; m < 3; m++) {
        double t0 = bench_now();
        for (int r = 0; r < 20; r++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, a, K, b, K, 0, c, N);
        if (m >= 0) t[m] = (bench_now() - t0) / 20;
    }
    free(a), free(b), free(c);
    return 2.0 * M * N * K / bench_median(t, 3) * 1e-9;
}

int main(int argc, char **argv) {
    int reps = argc > 1 && !strcmp(argv[1], "--quick") ? 1 : 3, only = -1;
    const char *keys[4] = {"b32", "b16", "text", "rn50"};
    if (argc > 1 && !strcmp(argv[1], "--path")) {
        printf("%s\n", ct_cpu_path());
        return 0;
    }
    for (int w = 0; w < 4 && argc > 1; w++)
        if (!strcmp(argv[1], keys[w])) only = w;
    bool bf16 = false;
    if (only >= 0) {
        reps = argc > 2 ? atoi(argv[2]) : 3;
        if (reps < 1 || reps > 100) reps = 3;
        bf16 = argc > 3 && !strcmp(argv[3], "bf16");
    } else {
        printf("threads %d; raw sgemm 1600x768x768: %.1f GFLOP/s\n", ct_get_num_threads(),
               gemm_rate());
        printf("%-22s %6s | %10s\n", "encoder", "batch", "items/s");
    }
    ct_graph *g = ct_graph_create(0);
    ct_graph_set_grad(g, false);
    for (int which = only >= 0 ? only : 0; which < (only >= 0 ? only + 1 : 4); which++) {
        ct_clip_config cfg = which == 3 ? rn50() : vit_b(which == 1 ? 16 : 32);
        ct_clip *m = ct_clip_create(&cfg, 1);
        if (!m) {
            fprintf(stderr, "create failed: %s\n", ct_last_error());
            return 1;
        }
        if (bf16 && ct_clip_set_precision(m, CT_PRECISION_BF16) != CT_OK) {
            fprintf(stderr, "bf16: %s\n", ct_last_error());
            return 2;
        }
        int64_t B = which == 2 ? 100 : 32;
        double t[100];
        for (int r = -1; r < reps; r++) {
            ct_graph_reset(g);
            ct_graph_set_grad(g, false);
            double t0 = bench_now();
            ct_tensor *out;
            if (which != 2) {
                int64_t s[4] = {B, 3, 224, 224};
                ct_tensor *px = ct_graph_tensor(g, 4, s);
                out = ct_clip_encode_image(g, m, px, NULL, false, NULL);
            } else {
                int64_t *ids = calloc((size_t)B * 77, sizeof *ids);
                for (int64_t i = 0; i < B; i++) {
                    ids[i * 77] = 49406;
                    for (int k = 1; k < 12; k++) ids[i * 77 + k] = 320 + k + i;
                    ids[i * 77 + 12] = 49407;
                }
                out = ct_clip_encode_text(g, m, ids, B, 77, NULL);
                free(ids);
            }
            if (!out) {
                fprintf(stderr, "encode failed: %s\n", ct_last_error());
                return 1;
            }
            if (r >= 0) t[r] = bench_now() - t0;
        }
        const char *names[4] = {"ViT-B/32 image", "ViT-B/16 image", "text (77 tokens)",
                                "RN50 image"};
        if (only >= 0) {
            struct rusage ru;
            getrusage(RUSAGE_SELF, &ru);
            printf("result engine=cliptune path=%s%s workload=%s batch=%lld rss_mb=%.0f per_s=",
                   ct_cpu_path(), bf16 ? "-bf16" : "", keys[which], (long long)B,
                   ru.ru_maxrss / 1024.0);
            for (int r = 0; r < reps; r++) printf("%s%.3f", r ? "," : "", (double)B / t[r]);
            printf("\n");
            break;
        }
        printf("%-22s %6lld | %10.2f\n", names[which], (long long)B,
               (double)B / bench_median(t, reps));
        fflush(stdout);
        ct_clip_free(m);
    }
    ct_graph_free(g);
    return 0;
}
