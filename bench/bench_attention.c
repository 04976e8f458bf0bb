/* Fused attention forward/backward GFLOP/s for CLIP's shapes, next to the
 * raw cblas_sgemm rate measured in the same run (1600 x 768 x 768). FLOPs
 * counted as the GEMMs of textbook attention: forward 4 B T^2 C (QK^T, AV),
 * backward 8 B T^2 C (dA, dV, dQ, dK); softmax is not counted. */
#include <cblas.h>
#include <stdio.h>
#include <string.h>

#include "bench_common.h"
#include "cliptune.h"

typedef struct { const char *name; int64_t B, T, C, NH; bool causal; } cfg;

static void fill(float *p, size_t n, uint64_t seed) {
    ct_rng r;
    ct_rng_init(&r, seed);
    ct_rng_fill_normal(&r, p, n, 0, 1);
}

static double gemm_rate(void) {
    int M = 1600, N = 768, K = 768;
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * N * K);
    float *c = malloc(sizeof(float) * M * N);
    fill(a, (size_t)M * K, 1), fill(b, (size_t)N * K, 2);
    double t[5], fl = 2.0 * M * N * K;
    int reps = bench_reps(fl, 60);
    for (int m = -1; m < 5; m++) {
        double t0 = bench_now();
        for (int r = 0; r < reps; r++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, a, K, b, K, 0, c, N);
        if (m >= 0) t[m] = (bench_now() - t0) / reps;
    }
    free(a), free(b), free(c);
    return fl / bench_median(t, 5) * 1e-9;
}

int main(int argc, char **argv) {
    cfg cfgs[] = {{"ViT-B/32 image (50 tok)", 32, 50, 768, 12, false},
                  {"ViT-B/16 image (197 tok)", 8, 197, 768, 12, false},
                  {"text (77 tok, causal)", 100, 77, 512, 8, true}};
    int nc = sizeof cfgs / sizeof *cfgs;
    if (argc > 1 && !strcmp(argv[1], "--quick")) nc = 1;
    double gr = gemm_rate();
    printf("threads %d; raw sgemm 1600x768x768: %.1f GFLOP/s\n", ct_get_num_threads(), gr);
    printf("%-26s %5s | %8s %6s | %8s %6s\n", "attention", "batch", "fwd", "/gemm", "bwd", "/gemm");
    for (int i = 0; i < nc; i++) {
        cfg c = cfgs[i];
        int64_t shape[3] = {c.B, c.T, c.C};
        ct_tensor *q = ct_tensor_new(3, shape, true), *k = ct_tensor_new(3, shape, true);
        ct_tensor *v = ct_tensor_new(3, shape, true);
        size_t n = (size_t)(c.B * c.T * c.C);
        fill(q->data, n, 3), fill(k->data, n, 4), fill(v->data, n, 5);
        float *dout = malloc(n * sizeof *dout);
        fill(dout, n, 6);
        ct_graph *g = ct_graph_create(0);
        /* causal attention does about half the work, but we count the full
         * T^2 as the dense kernel would, to compare like with like */
        double ffl = 4.0 * (double)c.B * (double)(c.T * c.T) * (double)c.C;
        int reps = bench_reps(ffl * 3, 40);
        double tf[5], tb[5];
        for (int m = -1; m < 5; m++) {
            double f = 0, b = 0;
            for (int r = 0; r < reps; r++) {
                ct_graph_reset(g);
                double t0 = bench_now();
                ct_tensor *o = ct_attention(g, q, k, v, NULL, NULL, (int)c.NH, c.causal);
                double t1 = bench_now();
                if (ct_backward_from(g, o, dout) != CT_OK) {
                    fprintf(stderr, "backward failed: %s\n", ct_last_error());
                    return 1;
                }
                b += bench_now() - t1;
                f += t1 - t0;
            }
            if (m >= 0) tf[m] = f / reps, tb[m] = b / reps;
        }
        double fr = ffl / bench_median(tf, 5) * 1e-9, br = 2 * ffl / bench_median(tb, 5) * 1e-9;
        printf("%-26s %5lld | %8.1f %5.0f%% | %8.1f %5.0f%%\n", c.name, (long long)c.B, fr,
               100 * fr / gr, br, 100 * br / gr);
        fflush(stdout);
        ct_graph_free(g);
        ct_tensor_free(q), ct_tensor_free(k), ct_tensor_free(v);
        free(dout);
    }
    printf("(GFLOP/s; /gemm = share of the raw GEMM rate; goal >= 50%%)\n");
    return 0;
}
