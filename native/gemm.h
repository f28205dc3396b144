/* ash native kernel, internal: a blocked single-precision GEMM on caller-chosen output blocks.
 *
 * Each call computes one rectangular block of C so that the caller (kernel.c) can partition
 * the output into fixed chunks across an OpenMP team. Every element of C is the same sequence
 * of fused multiply-adds (k = 0, 1, ..., K-1, starting from 0, the bias or the old C) whatever
 * the block it falls in, so results do not depend on the chunking or on the thread count.
 * The micro-kernels are compiled for AVX-512 and AVX2+FMA under target pragmas and picked at
 * load time from the CPU's features; a portable C loop covers other machines. */
#ifndef ASH_GEMM_H
#define ASH_GEMM_H

#include <stddef.h>

typedef struct {
    const float *A; /* A(i,k) = A[i*ars + k*acs] */
    ptrdiff_t ars, acs;
    const float *B; /* B(k,j) = B[k*brs + j*bcs] */
    ptrdiff_t brs, bcs;
    float *C; /* C(i,j) = C[i*ldc + j] */
    ptrdiff_t ldc;
    const float *bias; /* non-NULL: C = bias[j] + A B */
    int accumulate;    /* bias NULL and non-zero: C += A B; otherwise C = A B */
    int K;
} ash_gemm;

/* Floats of scratch one thread needs for ash_gemm_block (64-byte aligned). */
size_t ash_gemm_workspace_floats(void);

/* C[i0:i1, j0:j1] per g; ws: ash_gemm_workspace_floats() floats owned by the calling thread. */
void ash_gemm_block(const ash_gemm *g, int i0, int i1, int j0, int j1, float *ws);

/* "avx512", "avx2" or "generic": the micro-kernel this process uses. */
const char *ash_gemm_isa_name(void);

#endif
