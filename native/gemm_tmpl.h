/* ash native kernel, internal: GEMM block driver and register-tiled micro-kernel, written once
 * and included by gemm.c for each instruction set (the includer defines FN, VT, MT, VL, MR2,
 * MR1 and the V_* operations). A micro-tile of MR rows by NV*VL columns lives in registers for
 * the whole k loop; B rows are loaded as vectors, A elements are broadcast. */

/* init: 0 = zero, 1 = bias, 2 = load C. A(r,k) = a[r + k*aks], B(k,j) = b[k*bks + j]. */
#define UKR_BODY(NV, MR, AX)                                                                        \
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
            _Pragma("GCC unroll 32") for (int r = 0; r < MR; r++) {                             \
                VT av = V_SET1(AX(r));                                                          \
                for (int v = 0; v < NV; v++) acc[r][v] = V_FMA(av, bv[v], acc[r][v]);           \
            }                                                                                   \
        }                                                                                       \
    } else {                                                                                    \
        for (int k = 0; k < K; k++) {                                                           \
            VT bv[NV];                                                                          \
            for (int v = 0; v < NV; v++) bv[v] = V_MLOAD(b + k * bks + v * VL, msk[v]);          \
            _Pragma("GCC unroll 32") for (int r = 0; r < MR; r++) {                             \
                VT av = V_SET1(AX(r));                                                          \
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

/* A column-contiguous or packed: A(r,k) = a[r + k*aks]. */
#define AX_T(r) a[(r) + k * aks]
/* A row-contiguous: A(r,k) = a[r*aks + k], read in place (rows past mr repeat row 0). */
#define AX_N(r) ap[r][k]

static void FN(ukr2t)(int K, const float *restrict a, ptrdiff_t aks, const float *restrict b,
                      ptrdiff_t bks, float *restrict c, ptrdiff_t ldc, int mr, int nr, int init,
                      const float *restrict bias) {
    UKR_BODY(2, MR2, AX_T)
}

static void FN(ukr1t)(int K, const float *restrict a, ptrdiff_t aks, const float *restrict b,
                      ptrdiff_t bks, float *restrict c, ptrdiff_t ldc, int mr, int nr, int init,
                      const float *restrict bias) {
    UKR_BODY(1, MR1, AX_T)
}

static void FN(ukr2n)(int K, const float *restrict a, ptrdiff_t aks, const float *restrict b,
                      ptrdiff_t bks, float *restrict c, ptrdiff_t ldc, int mr, int nr, int init,
                      const float *restrict bias) {
    const float *ap[MRN2];
    for (int r = 0; r < MRN2; r++) ap[r] = a + (r < mr ? r : 0) * aks;
    UKR_BODY(2, MRN2, AX_N)
}

static void FN(ukr1n)(int K, const float *restrict a, ptrdiff_t aks, const float *restrict b,
                      ptrdiff_t bks, float *restrict c, ptrdiff_t ldc, int mr, int nr, int init,
                      const float *restrict bias) {
    const float *ap[MRN1];
    for (int r = 0; r < MRN1; r++) ap[r] = a + (r < mr ? r : 0) * aks;
    UKR_BODY(1, MRN1, AX_N)
}

#undef AX_T
#undef AX_N

#undef UKR_BODY

/* At most GEMM_SMALLN columns and A column-contiguous (A(i,k) = A[i + k*acs]), e.g. the output
 * layer's weight gradient: vectors run down the rows of C, one accumulator pair per column, so
 * no lanes are wasted on absent columns. Same fused multiply-add chain per element as above. */
static void FN(small_t)(const ash_gemm *g, int i0, int i1, int j0, int j1) {
    const int n = j1 - j0, K = g->K;
    for (int i = i0; i < i1; i += 2 * VL) {
        const int rows = i1 - i < 2 * VL ? i1 - i : 2 * VL;
        const MT m0 = V_MASK(rows), m1 = V_MASK(rows - VL);
        VT acc[2][GEMM_SMALLN];
        float tmp[2 * VL];
        for (int j = 0; j < GEMM_SMALLN; j++) {
            acc[0][j] = acc[1][j] = V_ZERO();
            if (j >= n) continue;
            if (g->bias) {
                acc[0][j] = acc[1][j] = V_SET1(g->bias[j0 + j]);
            } else if (g->accumulate) {
                for (int r = 0; r < 2 * VL; r++)
                    tmp[r] = r < rows ? g->C[(ptrdiff_t)(i + r) * g->ldc + j0 + j] : 0.0f;
                acc[0][j] = V_LOAD(tmp);
                acc[1][j] = V_LOAD(tmp + VL);
            }
        }
        for (int k = 0; k < K; k++) {
            const float *ak = g->A + i + (ptrdiff_t)k * g->acs;
            const VT a0 = V_MLOAD(ak, m0), a1 = V_MLOAD(ak + VL, m1);
            const float *bk = g->B + (ptrdiff_t)k * g->brs + (ptrdiff_t)j0 * g->bcs;
            for (int j = 0; j < GEMM_SMALLN; j++) {
                if (j < n) {
                    const VT b = V_SET1(bk[(ptrdiff_t)j * g->bcs]);
                    acc[0][j] = V_FMA(a0, b, acc[0][j]);
                    acc[1][j] = V_FMA(a1, b, acc[1][j]);
                }
            }
        }
        for (int j = 0; j < n; j++) {
            V_STORE(tmp, acc[0][j]);
            V_STORE(tmp + VL, acc[1][j]);
            for (int r = 0; r < rows; r++) g->C[(ptrdiff_t)(i + r) * g->ldc + j0 + j] = tmp[r];
        }
    }
}

static void FN(block)(const ash_gemm *g, int i0, int i1, int j0, int j1, float *ws) {
    const int K = g->K;
    const int nv = (j1 - j0 <= VL) ? 1 : 2;
    const int NR = nv * VL;
    /* A row-contiguous: read rows in place; column-contiguous: broadcast in place; else pack. */
    const int mode = g->acs == 1 ? 0 : (g->ars == 1 ? 1 : 2);
    const int MR = mode == 0 ? (nv == 2 ? MRN2 : MRN1) : (nv == 2 ? MR2 : MR1);
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
    if (mode == 1 && j1 - j0 <= GEMM_SMALLN) {
        FN(small_t)(g, i0, i1, j0, j1);
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
                if (mode == 2) { /* pack A rows into MR-interleaved panels, zero padded */
                    for (int p = 0; p < mc; p += MR) {
                        float *dst = apack + (size_t)p * kc;
                        const int mr = (mc - p < MR) ? mc - p : MR;
                        for (int r = 0; r < MR; r++) {
                            const float *src = g->A + (ptrdiff_t)(ic + p + r) * g->ars +
                                               (ptrdiff_t)k0 * g->acs;
                            for (int k = 0; k < kc; k++)
                                dst[(size_t)k * MR + r] = r < mr ? src[(ptrdiff_t)k * g->acs] : 0.0f;
                        }
                    }
                }
                for (int jr = 0; jr < nc; jr += NR) {
                    const int nr = (nc - jr < NR) ? nc - jr : NR;
                    const float *b = bsrc + jr;
                    for (int ir = 0; ir < mc; ir += MR) {
                        const int mr = (mc - ir < MR) ? mc - ir : MR;
                        float *c = g->C + (ptrdiff_t)(ic + ir) * g->ldc + jc + jr;
                        const float *bias = g->bias ? g->bias + jc + jr : NULL;
                        const ptrdiff_t ldc = g->ldc;
                        if (mode == 0) {
                            const float *a = g->A + (ptrdiff_t)(ic + ir) * g->ars + k0;
                            if (nv == 2)
                                FN(ukr2n)(kc, a, g->ars, b, bks, c, ldc, mr, nr, init, bias);
                            else
                                FN(ukr1n)(kc, a, g->ars, b, bks, c, ldc, mr, nr, init, bias);
                            continue;
                        }
                        const float *a;
                        ptrdiff_t aks;
                        if (mode == 2) {
                            a = apack + (size_t)ir * kc;
                            aks = MR;
                        } else if (mr == MR) {
                            a = g->A + (ic + ir) + (ptrdiff_t)k0 * g->acs;
                            aks = g->acs;
                        } else { /* edge rows of a column-contiguous A: copy, zero padded */
                            for (int k = 0; k < kc; k++) {
                                const float *src = g->A + (ic + ir) + (ptrdiff_t)(k0 + k) * g->acs;
                                for (int r = 0; r < MR; r++)
                                    aedge[(size_t)k * MR + r] = r < mr ? src[r] : 0.0f;
                            }
                            a = aedge;
                            aks = MR;
                        }
                        if (nv == 2)
                            FN(ukr2t)(kc, a, aks, b, bks, c, ldc, mr, nr, init, bias);
                        else
                            FN(ukr1t)(kc, a, aks, b, bks, c, ldc, mr, nr, init, bias);
                    }
                }
            }
        }
    }
}
