#include "base/cpu.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cliptune.h"

static int g_isa, g_blas, g_bf16;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void detect(void) {
    int isa = CT_ISA_GENERIC;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) isa = CT_ISA_AVX2;
    if (isa == CT_ISA_AVX2 && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq"))
        isa = CT_ISA_AVX512;
#endif
    const char *e = getenv("CLIPTUNE_ISA");
    int want = isa;
    if (e && !strcmp(e, "generic")) want = CT_ISA_GENERIC;
    if (e && !strcmp(e, "avx2")) want = CT_ISA_AVX2;
    if (e && !strcmp(e, "avx512")) want = CT_ISA_AVX512;
    if (want < isa) isa = want; /* never above what the CPU has */
#if defined(__x86_64__)
    g_bf16 = isa == CT_ISA_AVX512 && __builtin_cpu_supports("avx512bf16");
#endif
    e = getenv("CLIPTUNE_GEMM");
    g_blas = e && !strcmp(e, "blas");
    g_isa = isa;
}

ct_isa ct_cpu_isa(void) {
    pthread_once(&g_once, detect);
    return (ct_isa)g_isa;
}

bool ct_cpu_gemm_blas(void) {
    pthread_once(&g_once, detect);
    return g_blas;
}

bool ct_cpu_has_bf16(void) {
    pthread_once(&g_once, detect);
    return g_bf16;
}

const char *ct_cpu_path(void) {
    static const char *names[3] = {"generic", "avx2", "avx512"};
    return ct_cpu_gemm_blas() ? "blas" : names[ct_cpu_isa()];
}
