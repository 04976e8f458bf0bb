/* The engine's own GEMM (the path this CPU picks, or CLIPTUNE_ISA's) next
 * to the BLAS library's cblas_sgemm, interleaved, on the shapes of a ViT
 * block (forward x Wᵀ; backward dX = dY W and dW = dYᵀ X), 2 threads.
 * Prints GFLOP/s (median of 5) of each and the ratio, and on CPUs with
 * AVX512_BF16 the bf16-weight GEMM's rate on the forward shapes (products
 * counted as fp32 ones). */
#include <cblas.h>
#include <stdio.h>
#include <string.h>

#include "base/blas.h"
#include "base/gemm.h"
#include "bench_common.h"
#include "cliptune.h"

int main(void) {
    struct {
        const char *what;
        bool ta, tb;
        int M, N, K;
    } shapes[] = {
        {"fwd qkv  x Wt", false, true, 1600, 768, 768},
        {"fwd fc1  x Wt", false, true, 1600, 3072, 768},
        {"fwd fc2  x Wt", false, true, 1600, 768, 3072},
        {"fwd B/16 fc1", false, true, 6304, 3072, 768},
        {"bwd dX = dY W", false, false, 1600, 768, 3072},
        {"bwd dW = dYt X", true, false, 3072, 768, 1600},
        {"text fc1 x Wt", false, true, 7700, 2048, 512},
        {"cls proj", false, true, 32, 512, 768},
    };
    printf("path %s, threads %d\n", ct_cpu_path(), ct_get_num_threads());
    printf("%-16s %5s %5s %5s | %8s %8s | %6s | %8s\n", "shape", "M", "N", "K", "ours", "blas",
           "ratio", "bf16");
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int M = shapes[s].M, N = shapes[s].N, K = shapes[s].K;
        bool ta = shapes[s].ta, tb = shapes[s].tb;
        float *A = malloc((size_t)M * K * 4), *B = malloc((size_t)K * N * 4);
        float *C = malloc((size_t)M * N * 4);
        for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)(i % 7) * 0.1f;
        for (size_t i = 0; i < (size_t)K * N; i++) B[i] = (float)(i % 5) * 0.1f;
        memset(C, 0, (size_t)M * N * 4);
        double flops = 2.0 * M * N * K, t[3][5];
        int reps = bench_reps(flops, 200);
        /* the weight is B = Wᵀ in the forward shapes (tb) */
        ct_wpack *P = tb && !ta ? ct_wpack_bf16(B, N, K) : NULL;
        for (int r = -1; r < 5; r++)
            for (int e = 0; e < (P ? 3 : 2); e++) {
                double t0 = bench_now();
                for (int i = 0; i < reps; i++) {
                    if (e == 2)
                        ct_gemm_wpack(M, A, K, P, C, N, NULL);
                    else if (e == 0)
                        ct_gemm(ta, tb, M, N, K, 1, A, ta ? M : K, B, tb ? K : N, 0, C, N);
                    else
                        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                                    tb ? CblasTrans : CblasNoTrans, M, N, K, 1, A, ta ? M : K, B,
                                    tb ? K : N, 0, C, N);
                }
                if (r >= 0) t[e][r] = (bench_now() - t0) / reps;
            }
        double a = flops / bench_median(t[0], 5) * 1e-9, b = flops / bench_median(t[1], 5) * 1e-9;
        printf("%-16s %5d %5d %5d | %8.1f %8.1f | %5.2fx | ", shapes[s].what, M, N, K, a, b, a / b);
        if (P)
            printf("%8.1f\n", flops / bench_median(t[2], 5) * 1e-9);
        else
            printf("%8s\n", "-");
        ct_wpack_free(P);
        free(A), free(B), free(C);
    }
    return 0;
}
