/* ash native kernel, internal: ISA dispatch for the blocked GEMM (see gemm.h, gemm_tmpl.h). */
#include "gemm.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define GEMM_KC 256      /* k block: one B micro-panel (KC x 32 floats) stays in L1/L2 */
#define GEMM_NCB 256     /* column block */
#define GEMM_MCB 96      /* row block: a packed A block (MCB x KC) stays in L2 */
#define GEMM_MCB_PAD 120 /* MCB rounded up to a multiple of every MR below */
#define GEMM_MR_MAX 24
#define GEMM_SMALLN 4 /* at most this many columns: the row-vector kernel (small_t) */

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)

/* ---- AVX-512 (16 floats a vector; 8 x 32 and 16 x 16 register tiles) ---- */
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
#define FN(name) CAT(name, avx512)
#define VT __m512
#define MT __mmask16
#define VL 16
#define MR2 8
#define MR1 16
#define MRN2 8
#define MRN1 8
#define V_ZERO() _mm512_setzero_ps()
#define V_SET1(x) _mm512_set1_ps(x)
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_STORE(p, v) _mm512_storeu_ps((p), (v))
#define V_MASK(n) ((__mmask16)((n) >= 16 ? 0xFFFFu : ((n) <= 0 ? 0u : ((1u << (n)) - 1u))))
#define V_MLOAD(p, m) _mm512_maskz_loadu_ps((m), (p))
#define V_MSTORE(p, m, v) _mm512_mask_storeu_ps((p), (m), (v))
#define V_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#include "gemm_tmpl.h"
#undef FN
#undef VT
#undef MT
#undef VL
#undef MR2
#undef MR1
#undef MRN2
#undef MRN1
#undef V_ZERO
#undef V_SET1
#undef V_LOAD
#undef V_STORE
#undef V_MASK
#undef V_MLOAD
#undef V_MSTORE
#undef V_FMA
#pragma GCC pop_options

/* ---- AVX2 + FMA (8 floats a vector; 6 x 16 and 12 x 8 register tiles) ---- */
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define FN(name) CAT(name, avx2)
#define VT __m256
#define MT __m256i
#define VL 8
#define MR2 6
#define MR1 12
#define MRN2 6
#define MRN1 8
#define V_ZERO() _mm256_setzero_ps()
#define V_SET1(x) _mm256_set1_ps(x)
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_STORE(p, v) _mm256_storeu_ps((p), (v))
#define V_MASK(n) _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define V_MLOAD(p, m) _mm256_maskload_ps((p), (m))
#define V_MSTORE(p, m, v) _mm256_maskstore_ps((p), (m), (v))
#define V_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#include "gemm_tmpl.h"
#undef FN
#undef VT
#undef MT
#undef VL
#undef MR2
#undef MR1
#undef MRN2
#undef MRN1
#undef V_ZERO
#undef V_SET1
#undef V_LOAD
#undef V_STORE
#undef V_MASK
#undef V_MLOAD
#undef V_MSTORE
#undef V_FMA
#pragma GCC pop_options

/* ---- portable fallback: same order of operations per element, no SIMD assumptions ---- */
static void block_generic(const ash_gemm *g, int i0, int i1, int j0, int j1, float *ws) {
    (void)ws;
    for (int i = i0; i < i1; i++) {
        for (int j = j0; j < j1; j++) {
            float *c = g->C + (ptrdiff_t)i * g->ldc + j;
            float acc = g->bias ? g->bias[j] : (g->accumulate ? *c : 0.0f);
            for (int k = 0; k < g->K; k++)
                acc += g->A[(ptrdiff_t)i * g->ars + (ptrdiff_t)k * g->acs] *
                       g->B[(ptrdiff_t)k * g->brs + (ptrdiff_t)j * g->bcs];
            *c = acc;
        }
    }
}

typedef void (*block_fn)(const ash_gemm *, int, int, int, int, float *);
static block_fn g_block = block_generic;
static const char *g_isa = "generic";

/* The best micro-kernel this CPU runs; ASH_GEMM_ISA=avx2|generic forces a lesser one (tests). */
__attribute__((constructor)) static void gemm_pick_isa(void) {
    __builtin_cpu_init();
    const char *force = getenv("ASH_GEMM_ISA");
    int allow512 = !force || strcmp(force, "avx512") == 0;
    int allow2 = allow512 || strcmp(force, "avx2") == 0;
    if (allow512 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")) {
        g_block = block_avx512;
        g_isa = "avx512";
    } else if (allow2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        g_block = block_avx2;
        g_isa = "avx2";
    }
}

size_t ash_gemm_workspace_floats(void) {
    return (size_t)GEMM_KC * GEMM_NCB + (size_t)GEMM_MCB_PAD * GEMM_KC +
           (size_t)GEMM_MR_MAX * GEMM_KC + 64;
}

void ash_gemm_block(const ash_gemm *g, int i0, int i1, int j0, int j1, float *ws) {
    if (i0 >= i1 || j0 >= j1) return;
    g_block(g, i0, i1, j0, j1, ws);
}

const char *ash_gemm_isa_name(void) { return g_isa; }
