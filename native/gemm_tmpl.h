/* ash native kernel, internal: GEMM block driver and register-tiled micro-kernel, written once
 * and included by gemm.c for each instruction set (the includer defines FN, VT, MT, VL, MR2,
 * MR1 and the V_* operations). A micro-tile of MR rows by NV*VL columns lives in registers for
 * the whole k loop; B rows are loaded as vectors, A elements are broadcast. */

/* init: 0 = zero, 1 = bias, 2 = load C. A(r,k) = a[r + k*aks], B(k,j) = b[k*bks + j]. */
#define UKR_BODY(NV, MR)                                                                        \
    VT acc[MR][NV];                                                                             \
    MT msk[NV];                                                                                 \
    for (int v = 0; v < NV; v++) msk[v] = V_MASK(nr - v * VL);                                  \
    if (init == 1) {                                                                            \
        VT bv[NV];                                                                              \
        for (int v = 0; v < NV; v++) bv[v] = V_MLOAD(bias + v * VL, msk[v]);                    \
        _Pragma("GCC unroll 32") for (int r = 0; r < MR; r++)                                   \
            for (int v = 0; v < NV; v++) acc[r][v] = bv[v];                                     \
    } else if (init == 2) {                                                                     \
        _Pragma("GCC unroll 32") for (int r = 0; r < MR; r++)                                   \
            for (int v = 0; v < NV; v++)                                                        \
                acc[r][v] = r < mr ? V_MLOAD(c + r * ldc + v * VL, msk[v]) : V_ZERO();          \
    } else {                                                                                    \
        _Pragma("GCC unroll 32") for (int r = 0; r < MR; r++)                                   \
            for (int v = 0; v < NV; v++) acc[r][v] = V_ZERO();                                  \
    }                                                                                           \
    if (nr == NV * VL) {                                                                        \
        for (int k = 0; k < K; k++) {                                                           \
            VT bv[NV];                                                                          \
            for (int v = 0; v < NV; v++) bv[v] = V_LOAD(b + k * bks + v * VL);                   \
            const float *ak = a + k * aks;                                                      \
            _Pragma("GCC unroll 32") for (int r = 0; r < MR; r++) {                             \
                VT av = V_SET1(ak[r]);                                                          \
                for (int v = 0; v < NV; v++) acc[r][v] = V_FMA(av, bv[v], acc[r][v]);           \
            }                                                                                   \
        }                                                                                       \
    } else {                                                                                    \
        for (int k = 0; k < K; k++) {                                                           \
            VT bv[NV];                                                                          \
            for (int v = 0; v < NV; v++) bv[v] = V_MLOAD(b + k * bks + v * VL, msk[v]);          \
            const float *ak = a + k * aks;                                                      \
            _Pragma("GCC unroll 32") for (int r = 0; r < MR; r++) {                             \
                VT av = V_SET1(ak[r]);                                                          \
                for (int v = 0; v < NV; v++) acc[r][v] = V_FMA(av, bv[v], acc[r][v]);           \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
    _Pragma("GCC unroll 32") for (int r = 0; r < MR; r++) {                                     \
        if (r < mr) {                                                                           \
            for (int v = 0; v < NV; v++) {                                                      \
                if (nr == NV * VL)                                                              \
                    V_STORE(c + r * ldc + v * VL, acc[r][v]);                                   \
                else                                                                            \
                    V_MSTORE(c + r * ldc + v * VL, msk[v], acc[r][v]);                          \
            }                                                                                   \
        }                                                                                       \
    }

static void FN(ukr2)(int K, const float *restrict a, ptrdiff_t aks, const float *restrict b,
                     ptrdiff_t bks, float *restrict c, ptrdiff_t ldc, int mr, int nr, int init,
                     const float *restrict bias) {
    UKR_BODY(2, MR2)
}

static void FN(ukr1)(int K, const float *restrict a, ptrdiff_t aks, const float *restrict b,
                     ptrdiff_t bks, float *restrict c, ptrdiff_t ldc, int mr, int nr, int init,
                     const float *restrict bias) {
    UKR_BODY(1, MR1)
}

#undef UKR_BODY

static void FN(block)(const ash_gemm *g, int i0, int i1, int j0, int j1, float *ws) {
    const int K = g->K;
    const int nv = (j1 - j0 <= VL) ? 1 : 2;
    const int NR = nv * VL, MR = nv == 2 ? MR2 : MR1;
    const int a_direct = (g->ars == 1); /* A column-contiguous: broadcast straight from it */
    const int b_direct = (g->bcs == 1); /* B row-contiguous: vector loads straight from it */
    float *bpack = ws;
    float *apack = ws + (size_t)GEMM_KC * GEMM_NCB;
    float *aedge = apack + (size_t)GEMM_MCB_PAD * GEMM_KC;
    const int init0 = g->bias ? 1 : (g->accumulate ? 2 : 0);
    if (K == 0) { /* degenerate: C = init */
        for (int i = i0; i < i1; i++)
            for (int j = j0; j < j1; j++) {
                float *c = g->C + (ptrdiff_t)i * g->ldc + j;
                *c = init0 == 1 ? g->bias[j] : (init0 == 2 ? *c : 0.0f);
            }
        return;
    }
    for (int jc = j0; jc < j1; jc += GEMM_NCB) {
        const int nc = (j1 - jc < GEMM_NCB) ? j1 - jc : GEMM_NCB;
        for (int k0 = 0; k0 < K; k0 += GEMM_KC) {
            const int kc = (K - k0 < GEMM_KC) ? K - k0 : GEMM_KC;
            const int init = k0 == 0 ? init0 : 2;
            const float *bsrc;
            ptrdiff_t bks;
            if (b_direct) {
                bsrc = g->B + (ptrdiff_t)k0 * g->brs + jc;
                bks = g->brs;
            } else {
                for (int k = 0; k < kc; k++) {
                    const float *src = g->B + (ptrdiff_t)(k0 + k) * g->brs + (ptrdiff_t)jc * g->bcs;
                    float *dst = bpack + (size_t)k * nc;
                    for (int j = 0; j < nc; j++) dst[j] = src[(ptrdiff_t)j * g->bcs];
                }
                bsrc = bpack;
                bks = nc;
            }
            for (int ic = i0; ic < i1; ic += GEMM_MCB) {
                const int mc = (i1 - ic < GEMM_MCB) ? i1 - ic : GEMM_MCB;
                if (!a_direct) { /* pack A rows into MR-interleaved panels, zero padded */
                    for (int p = 0; p < mc; p += MR) {
                        float *dst = apack + (size_t)p * kc;
                        const int mr = (mc - p < MR) ? mc - p : MR;
                        for (int r = 0; r < MR; r++) {
                            if (r < mr) {
                                const float *src = g->A + (ptrdiff_t)(ic + p + r) * g->ars +
                                                   (ptrdiff_t)k0 * g->acs;
                                for (int k = 0; k < kc; k++)
                                    dst[(size_t)k * MR + r] = src[(ptrdiff_t)k * g->acs];
                            } else {
                                for (int k = 0; k < kc; k++) dst[(size_t)k * MR + r] = 0.0f;
                            }
                        }
                    }
                }
                for (int jr = 0; jr < nc; jr += NR) {
                    const int nr = (nc - jr < NR) ? nc - jr : NR;
                    for (int ir = 0; ir < mc; ir += MR) {
                        const int mr = (mc - ir < MR) ? mc - ir : MR;
                        const float *ap;
                        ptrdiff_t aks;
                        if (!a_direct) {
                            ap = apack + (size_t)ir * kc;
                            aks = MR;
                        } else if (mr == MR) {
                            ap = g->A + (ic + ir) + (ptrdiff_t)k0 * g->acs;
                            aks = g->acs;
                        } else { /* edge rows of a column-contiguous A: copy, zero padded */
                            for (int k = 0; k < kc; k++) {
                                const float *src = g->A + (ic + ir) + (ptrdiff_t)(k0 + k) * g->acs;
                                for (int r = 0; r < MR; r++)
                                    aedge[(size_t)k * MR + r] = r < mr ? src[r] : 0.0f;
                            }
                            ap = aedge;
                            aks = MR;
                        }
                        float *c = g->C + (ptrdiff_t)(ic + ir) * g->ldc + jc + jr;
                        const float *bias = g->bias ? g->bias + jc + jr : NULL;
                        if (nv == 2)
                            FN(ukr2)(kc, ap, aks, bsrc + jr, bks, c, g->ldc, mr, nr, init, bias);
                        else
                            FN(ukr1)(kc, ap, aks, bsrc + jr, bks, c, g->ldc, mr, nr, init, bias);
                    }
                }
            }
        }
    }
}
