/* Linear layer forward/backward through the tape vs raw cblas_sgemm, same
 * run, CLIP shapes. Rows are tokens x batch (e.g. 1600 = 32 images x 50
 * tokens of ViT-B/32), OC x C the weight. Reported: GFLOP/s of each (median
 * of 5 interleaved measurements) and our/raw. */
#include <cblas.h>
#include <stdio.h>
#include <string.h>

#include "bench_common.h"
#include "cliptune.h"

typedef struct { int64_t N, OC, C; } shape;

static void fill(float *p, size_t n, uint64_t seed) {
    ct_rng r;
    ct_rng_init(&r, seed);
    ct_rng_fill_normal(&r, p, n, 0, 0.05f);
}

int main(int argc, char **argv) {
    shape shapes[] = {{1600, 768, 768}, {1600, 3072, 768}, {6304, 3072, 768},
                      {7700, 512, 512}, {7700, 2048, 512}};
    int ns = sizeof shapes / sizeof *shapes;
    if (argc > 1 && !strcmp(argv[1], "--quick")) ns = 1;
    printf("threads %d\n", ct_get_num_threads());
    printf("%-16s | %9s %9s %6s | %9s %9s %6s\n", "N x OC x C", "sgemm fw", "ours fw", "ratio",
           "sgemm bw", "ours bw", "ratio");
    for (int s = 0; s < ns; s++) {
        int64_t N = shapes[s].N, OC = shapes[s].OC, C = shapes[s].C;
        ct_tensor *x = ct_tensor_new2(N, C, true), *w = ct_tensor_new2(OC, C, true);
        ct_tensor *b = ct_tensor_new2(1, OC, true);
        float *y = malloc((size_t)(N * OC) * sizeof *y), *dy = malloc((size_t)(N * OC) * sizeof *dy);
        float *dx = malloc((size_t)(N * C) * sizeof *dx), *dw = malloc((size_t)(OC * C) * sizeof *dw);
        fill(x->data, (size_t)(N * C), 1);
        fill(w->data, (size_t)(OC * C), 2);
        fill(dy, (size_t)(N * OC), 3);
        ct_graph *g = ct_graph_create(0);
        double fl = 2.0 * (double)N * (double)OC * (double)C;
        int reps = bench_reps(fl, 60);
        double t_raw_f[5], t_our_f[5], t_raw_b[5], t_our_b[5];
        for (int m = -1; m < 5; m++) { /* m = -1: warm-up */
            double t0 = bench_now();
            for (int r = 0; r < reps; r++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)OC, (int)C, 1,
                            x->data, (int)C, w->data, (int)C, 0, y, (int)OC);
            double t1 = bench_now();
            for (int r = 0; r < reps; r++) {
                ct_graph_reset(g);
                ct_graph_set_grad(g, false);
                ct_linear(g, x, w, b);
            }
            double t2 = bench_now();
            for (int r = 0; r < reps; r++) {
                /* dX = dY W and dW = dY^T X, accumulating as training does */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)C, (int)OC, 1,
                            dy, (int)OC, w->data, (int)C, 1, dx, (int)C);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)OC, (int)C, (int)N, 1,
                            dy, (int)OC, x->data, (int)C, 1, dw, (int)C);
            }
            double t3 = bench_now();
            double tb = 0;
            for (int r = 0; r < reps; r++) {
                ct_graph_reset(g);
                ct_graph_set_grad(g, true);
                ct_tensor *out = ct_linear(g, x, w, b);
                double tb0 = bench_now();
                if (ct_backward_from(g, out, dy) != CT_OK) {
                    fprintf(stderr, "backward failed: %s\n", ct_last_error());
                    return 1;
                }
                tb += bench_now() - tb0;
            }
            if (m < 0) continue;
            t_raw_f[m] = (t1 - t0) / reps;
            t_our_f[m] = (t2 - t1) / reps;
            t_raw_b[m] = (t3 - t2) / reps;
            t_our_b[m] = tb / reps;
        }
        double rf = fl / bench_median(t_raw_f, 5) * 1e-9, of = fl / bench_median(t_our_f, 5) * 1e-9;
        double rb = 2 * fl / bench_median(t_raw_b, 5) * 1e-9;
        double ob = 2 * fl / bench_median(t_our_b, 5) * 1e-9;
        char name[32];
        snprintf(name, sizeof name, "%lldx%lldx%lld", (long long)N, (long long)OC, (long long)C);
        printf("%-16s | %9.1f %9.1f %5.0f%% | %9.1f %9.1f %5.0f%%\n", name, rf, of, 100 * of / rf, rb,
               ob, 100 * ob / rb);
        fflush(stdout);
        ct_graph_free(g);
        ct_tensor_free(x);
        ct_tensor_free(w);
        ct_tensor_free(b);
        free(y), free(dy), free(dx), free(dw);
    }
    printf("(GFLOP/s; backward = dX + dW GEMMs, ours also includes the bias gradient and the "
           "tape)\n");
    return 0;
}
