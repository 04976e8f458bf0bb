/* Which instruction set the engine's own kernels run on, chosen once at run
 * time from what the CPU (and the OS) supports, so one portable build is
 * fast on any x86-64 machine. CLIPTUNE_ISA=avx512|avx2|generic forces a
 * path (capped at what the CPU has: tests run every path the machine
 * offers); CLIPTUNE_GEMM=blas sends float GEMMs to the CBLAS library
 * instead of the engine's own (for comparisons). */
#ifndef CT_BASE_CPU_H
#define CT_BASE_CPU_H

#include <stdbool.h>

typedef enum ct_isa { CT_ISA_GENERIC = 0, CT_ISA_AVX2 = 1, CT_ISA_AVX512 = 2 } ct_isa;

ct_isa ct_cpu_isa(void);
/* GEMMs go to the CBLAS library (CLIPTUNE_GEMM=blas). */
bool ct_cpu_gemm_blas(void);
/* The AVX-512 path is taken and the CPU has AVX512_BF16 (bf16 weights). */
bool ct_cpu_has_bf16(void);

#endif
