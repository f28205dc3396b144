/* ash native kernel: the state format, MLP training and evaluation (OpenMP) behind kernel.h.
 *
 * One training call runs a whole span of epochs inside one OpenMP parallel region. A
 * mini-batch is cut into row chunks whose number and size depend on the batch size only; each
 * chunk runs forward and backward on its own rows (GEMMs from gemm.c, element-wise work here)
 * and leaves a partial gradient. After a barrier the partials are summed in chunk order and
 * the optimizer steps, each thread on fixed slices of the parameters; a second barrier ends
 * the batch. Every number is computed by the same operations in the same order whichever
 * thread runs it, so any thread count gives bit-identical results. */
#include "kernel.h"

#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ash's state format is little-endian; big-endian hosts are not supported"
#endif

#define MAXL (ASH_MAX_HIDDEN + 1) /* weight layers */
#define MAX_LAYER_SIZE 65536u
#define MAX_CHUNKS 8
#define UPD_CHUNK 1024
#define RED_BLOCK 1024
#define CHUNK_ROWS 128 /* rows of a mini-batch chunk (fewer when that leaves one chunk) */
#define EVAL_ROWS 256
/* Below this much work per mini-batch (multiply-adds) the barriers cost more than a second
 * thread saves, so the region runs on one thread (an `if` clause, not a thread count). */
#define PAR_MIN_WORK 2.0e6

static int fail(ash_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* ------------------------------------------------------------------------------------------ */
/* Architecture                                                                                */

typedef struct {
    int L;             /* weight layers (hidden + 1) */
    int sz[MAXL + 1];  /* sz[0] = n_in, sz[L] = n_out */
    int act, opt;
    size_t woff[MAXL], boff[MAXL], np, nopt;
    int maxw;
} net_t;

static int net_from_arch(const ash_mlp_arch *a, net_t *net, ash_error *err) {
    if (!a) return fail(err, ASH_E_ARG, "arch must not be NULL");
    if (a->n_hidden < 1 || a->n_hidden > ASH_MAX_HIDDEN)
        return fail(err, ASH_E_ARG, "hidden must list 1 to %d layer sizes, got %u",
                    ASH_MAX_HIDDEN, a->n_hidden);
    if (a->n_in < 1 || a->n_in > MAX_LAYER_SIZE)
        return fail(err, ASH_E_ARG, "n_in must be in [1, %u], got %u", MAX_LAYER_SIZE, a->n_in);
    if (a->n_out < 2 || a->n_out > MAX_LAYER_SIZE)
        return fail(err, ASH_E_ARG, "n_out (classes) must be in [2, %u], got %u", MAX_LAYER_SIZE,
                    a->n_out);
    for (uint32_t i = 0; i < a->n_hidden; i++)
        if (a->hidden[i] < 1 || a->hidden[i] > MAX_LAYER_SIZE)
            return fail(err, ASH_E_ARG, "hidden[%u] must be in [1, %u], got %u", i,
                        MAX_LAYER_SIZE, a->hidden[i]);
    if (a->activation >= ASH_N_ACTIVATIONS)
        return fail(err, ASH_E_ARG, "activation code %u is unknown", a->activation);
    if (a->optimizer >= ASH_N_OPTIMIZERS)
        return fail(err, ASH_E_ARG, "optimizer code %u is unknown", a->optimizer);
    memset(net, 0, sizeof *net);
    net->L = (int)a->n_hidden + 1;
    net->sz[0] = (int)a->n_in;
    for (int i = 0; i < (int)a->n_hidden; i++) net->sz[i + 1] = (int)a->hidden[i];
    net->sz[net->L] = (int)a->n_out;
    net->act = (int)a->activation;
    net->opt = (int)a->optimizer;
    size_t off = 0;
    net->maxw = 0;
    for (int w = 0; w < net->L; w++) {
        net->woff[w] = off;
        off += (size_t)net->sz[w] * (size_t)net->sz[w + 1];
        net->boff[w] = off;
        off += (size_t)net->sz[w + 1];
    }
    for (int l = 0; l <= net->L; l++)
        if (net->sz[l] > net->maxw) net->maxw = net->sz[l];
    if (off > ((size_t)1 << 30))
        return fail(err, ASH_E_ARG, "the network has %zu parameters; at most 2^30 fit", off);
    net->np = off;
    net->nopt = (net->opt == ASH_ADAM ? 2 : 1) * off;
    return ASH_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* State bytes                                                                                 */

static uint64_t fnv1a64(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint32_t rd32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t rd64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static void wr32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void wr64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }

static size_t state_bytes(const net_t *net) {
    return ASH_STATE_HEADER_BYTES + 4 * (net->np + net->nopt) + 8;
}

size_t ash_mlp_state_size(const ash_mlp_arch *arch, ash_error *err) {
    net_t net;
    if (net_from_arch(arch, &net, err) != ASH_OK) return 0;
    return state_bytes(&net);
}

static int parse_state(const void *state, size_t size, ash_mlp_info *info, net_t *net,
                       ash_error *err) {
    const unsigned char *p = (const unsigned char *)state;
    const size_t minsz = ASH_STATE_HEADER_BYTES + 8;
    if (!p) return fail(err, ASH_E_ARG, "state must not be NULL");
    if (size < minsz)
        return fail(err, ASH_E_STATE, "state is truncated: %zu bytes, a state has at least %zu",
                    size, minsz);
    if (memcmp(p, "ASHK", 4) != 0)
        return fail(err, ASH_E_STATE, "state is not an ash MLP state (bad magic)");
    if (rd32(p + 4) != ASH_STATE_VERSION)
        return fail(err, ASH_E_STATE, "state has format version %u; this kernel reads version %u",
                    rd32(p + 4), ASH_STATE_VERSION);
    if (rd32(p + 8) != ASH_STATE_HEADER_BYTES)
        return fail(err, ASH_E_STATE, "state header size %u is wrong (expected %u): corrupted",
                    rd32(p + 8), ASH_STATE_HEADER_BYTES);
    ash_mlp_info in;
    memset(&in, 0, sizeof in);
    in.arch.n_hidden = rd32(p + 12);
    in.arch.n_in = rd32(p + 16);
    for (int i = 0; i < ASH_MAX_HIDDEN; i++) in.arch.hidden[i] = rd32(p + 20 + 4 * i);
    in.arch.n_out = rd32(p + 32);
    in.arch.activation = rd32(p + 36);
    in.arch.optimizer = rd32(p + 40);
    in.seed = rd64(p + 48);
    in.step = rd64(p + 56);
    in.epochs_done = rd64(p + 64);
    in.n_params = rd64(p + 72);
    in.n_opt = rd64(p + 80);
    ash_error sub;
    if (net_from_arch(&in.arch, net, &sub) != ASH_OK)
        return fail(err, ASH_E_STATE, "state header is corrupted: %s", sub.msg);
    if (in.n_params != net->np || in.n_opt != net->nopt)
        return fail(err, ASH_E_STATE, "state header is corrupted: parameter counts do not match "
                                      "the architecture");
    if (size != state_bytes(net))
        return fail(err, ASH_E_STATE,
                    "state is %s: %zu bytes, its header describes %zu bytes",
                    size < state_bytes(net) ? "truncated" : "longer than its header says", size,
                    state_bytes(net));
    if (fnv1a64(p, size - 8) != rd64(p + size - 8))
        return fail(err, ASH_E_STATE, "state checksum mismatch: the state is corrupted");
    if (info) *info = in;
    return ASH_OK;
}

/* Header from in, then params, o1, o2 (NULL: zeros), then the checksum. */
static void write_state(unsigned char *p, const net_t *net, const ash_mlp_info *in,
                        const float *params, const float *o1, const float *o2) {
    memset(p, 0, ASH_STATE_HEADER_BYTES);
    memcpy(p, "ASHK", 4);
    wr32(p + 4, ASH_STATE_VERSION);
    wr32(p + 8, ASH_STATE_HEADER_BYTES);
    wr32(p + 12, in->arch.n_hidden);
    wr32(p + 16, in->arch.n_in);
    for (int i = 0; i < ASH_MAX_HIDDEN; i++)
        wr32(p + 20 + 4 * i, i < (int)in->arch.n_hidden ? in->arch.hidden[i] : 0u);
    wr32(p + 32, in->arch.n_out);
    wr32(p + 36, in->arch.activation);
    wr32(p + 40, in->arch.optimizer);
    wr64(p + 48, in->seed);
    wr64(p + 56, in->step);
    wr64(p + 64, in->epochs_done);
    wr64(p + 72, net->np);
    wr64(p + 80, net->nopt);
    unsigned char *q = p + ASH_STATE_HEADER_BYTES;
    const size_t nb = 4 * net->np;
    memcpy(q, params, nb);
    if (o1) memcpy(q + nb, o1, nb); else memset(q + nb, 0, nb);
    if (net->nopt > net->np) {
        if (o2) memcpy(q + 2 * nb, o2, nb); else memset(q + 2 * nb, 0, nb);
    }
    size_t body = state_bytes(net) - 8;
    wr64(p + body, fnv1a64(p, body));
}

int ash_mlp_inspect(const void *state, size_t state_size, ash_mlp_info *info, ash_error *err) {
    net_t net;
    return parse_state(state, state_size, info, &net, err);
}

int ash_mlp_get_params(const void *state, size_t state_size, float *out, size_t n_out_floats,
                       ash_error *err) {
    net_t net;
    int rc = parse_state(state, state_size, NULL, &net, err);
    if (rc != ASH_OK) return rc;
    if (!out || n_out_floats < net.np)
        return fail(err, ASH_E_ARG, "out holds %zu floats, the state has %zu parameters",
                    n_out_floats, net.np);
    memcpy(out, (const unsigned char *)state + ASH_STATE_HEADER_BYTES, 4 * net.np);
    return ASH_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Random numbers: counter-based, so any chunk can draw its own without shared state           */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint64_t splitmix64(uint64_t *s) {
    *s += 0x9E3779B97F4A7C15ull;
    return mix64(*s);
}
static inline uint32_t fmix32(uint32_t h) {
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

/* The permutation of epoch `epoch`: Fisher-Yates from the identity, seeded by (seed, epoch). */
static void make_perm(uint32_t *perm, size_t n, uint64_t seed, uint64_t epoch) {
    uint64_t s = mix64(seed ^ 0x5851F42D4C957F2Dull) ^ mix64(epoch + 0x2545F4914F6CDD1Dull);
    for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
    for (size_t i = n - 1; i > 0; i--) {
        uint64_t r = splitmix64(&s) >> 32;
        size_t j = (size_t)((r * (uint64_t)(i + 1)) >> 32);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

int ash_mlp_init(const ash_mlp_arch *arch, uint64_t seed, void *state, size_t state_size,
                 ash_error *err) {
    net_t net;
    int rc = net_from_arch(arch, &net, err);
    if (rc != ASH_OK) return rc;
    if (!state || state_size != state_bytes(&net))
        return fail(err, ASH_E_ARG, "state buffer holds %zu bytes, the architecture needs %zu",
                    state_size, state_bytes(&net));
    ash_mlp_info in;
    memset(&in, 0, sizeof in);
    in.arch = *arch;
    for (uint32_t i = arch->n_hidden; i < ASH_MAX_HIDDEN; i++) in.arch.hidden[i] = 0;
    in.seed = seed;
    unsigned char *p = (unsigned char *)state;
    float *w = (float *)malloc(4 * (net.np ? net.np : 1));
    if (!w) return fail(err, ASH_E_NOMEM, "out of memory allocating %zu parameters", net.np);
    uint64_t s = mix64(seed ^ 0x9E3779B97F4A7C15ull);
    for (int l = 0; l < net.L; l++) {
        double fi = net.sz[l], fo = net.sz[l + 1];
        double bound = (net.act == ASH_TANH || net.act == ASH_SIGMOID) ? sqrt(6.0 / (fi + fo))
                                                                         : sqrt(6.0 / fi);
        size_t nw = (size_t)net.sz[l] * (size_t)net.sz[l + 1];
        for (size_t i = 0; i < nw; i++) {
            double u = (double)(splitmix64(&s) >> 11) * (1.0 / 9007199254740992.0);
            w[net.woff[l] + i] = (float)((2.0 * u - 1.0) * bound);
        }
        for (int j = 0; j < net.sz[l + 1]; j++) w[net.boff[l] + (size_t)j] = 0.0f;
    }
    write_state(p, &net, &in, w, NULL, NULL);
    free(w);
    return ASH_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Element-wise math (plain loops that gcc -O3 vectorises)                                     */

/* Element-wise loops are built for AVX-512, AVX2 and the baseline, and the loader picks one
 * (GCC function multiversioning). Without -ffast-math or FMA contraction (-std=c11 keeps
 * fp-contract off) every clone rounds exactly alike, so the choice never changes a result. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLONES
#endif

static inline float f_exp(float x) {
    x = x > 88.0f ? 88.0f : x;
    x = x < -87.0f ? -87.0f : x;
    float t = x * 1.44269504088896341f;
    int n = (int)(t + (t >= 0.0f ? 0.5f : -0.5f));
    float fn = (float)n;
    float r = x - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    union {
        uint32_t u;
        float f;
    } s;
    s.u = (uint32_t)(n + 127) << 23;
    return y * s.f;
}

static inline float f_tanh(float x) {
    float ax = fabsf(x);
    float e = f_exp(-2.0f * ax);
    float big = (1.0f - e) / (1.0f + e);
    float z = x * x;
    float sm = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                 1.33314422036e-1f) * z - 3.33332819422e-1f) * z * ax + ax;
    float r = ax < 0.625f ? sm : big;
    return x < 0.0f ? -r : r;
}

#define GELU_C 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_A 0.044715f
#define LEAKY 0.01f

CLONES static void act_forward(int act, const float *z, float *h, size_t n) {
    switch (act) {
    case ASH_RELU:
        for (size_t j = 0; j < n; j++) h[j] = z[j] > 0.0f ? z[j] : 0.0f;
        break;
    case ASH_LEAKY_RELU:
        for (size_t j = 0; j < n; j++) h[j] = z[j] > 0.0f ? z[j] : LEAKY * z[j];
        break;
    case ASH_TANH:
        for (size_t j = 0; j < n; j++) h[j] = f_tanh(z[j]);
        break;
    case ASH_SIGMOID:
        for (size_t j = 0; j < n; j++) h[j] = 1.0f / (1.0f + f_exp(-z[j]));
        break;
    default: /* ASH_GELU */
        for (size_t j = 0; j < n; j++) {
            float x = z[j];
            float t = f_tanh(GELU_C * (x + GELU_A * x * x * x));
            h[j] = 0.5f * x * (1.0f + t);
        }
        break;
    }
}

/* g *= f'(z) (and the dropout scale m when given); h = f(z) before dropout. */
CLONES static void act_backward(int act, const float *z, const float *h, const float *m,
                                float *g, size_t n) {
    switch (act) {
    case ASH_RELU:
        for (size_t j = 0; j < n; j++) g[j] = z[j] > 0.0f ? g[j] : 0.0f;
        break;
    case ASH_LEAKY_RELU:
        for (size_t j = 0; j < n; j++) g[j] = z[j] > 0.0f ? g[j] : LEAKY * g[j];
        break;
    case ASH_TANH:
        for (size_t j = 0; j < n; j++) g[j] = g[j] * (1.0f - h[j] * h[j]);
        break;
    case ASH_SIGMOID:
        for (size_t j = 0; j < n; j++) g[j] = g[j] * (h[j] * (1.0f - h[j]));
        break;
    default: /* ASH_GELU */
        for (size_t j = 0; j < n; j++) {
            float x = z[j];
            float t = f_tanh(GELU_C * (x + GELU_A * x * x * x));
            float d = 0.5f * (1.0f + t) +
                      0.5f * x * (1.0f - t * t) * GELU_C * (1.0f + 3.0f * GELU_A * x * x);
            g[j] = g[j] * d;
        }
        break;
    }
    if (m)
        for (size_t j = 0; j < n; j++) g[j] = g[j] * m[j];
}

CLONES static void dropout_row(const float *h, float *a, float *m, int j0, int n, uint32_t rk,
                        uint32_t thresh, float scale) {
    for (int j = 0; j < n; j++) {
        uint32_t r = fmix32(rk ^ ((uint32_t)(j0 + j) * 0x9E3779B9u));
        float s = (r >> 8) >= thresh ? scale : 0.0f;
        m[j] = s;
        a[j] = h[j] * s;
    }
}

/* Softmax cross-entropy of rows [i0, i1): g = (p - onehot) * inv_b; returns the summed loss. */
CLONES static double softmax_rows(const float *z, float *g, const int32_t *y, int i0, int i1, int C,
                                  float inv_b) {
    /* loss_i = log(s_i) - (z_iy - max_i) with s_i in [1, C]: the logs are taken of products of
     * 16 rows' s_i (in double, at most C^16 <= 2^256), one log call per 16 rows. */
    double sum = 0.0, prod = 1.0;
    for (int i = i0; i < i1; i++) {
        const float *zr = z + (size_t)i * C;
        float *gr = g + (size_t)i * C;
        float mx = zr[0];
        for (int j = 1; j < C; j++) mx = zr[j] > mx ? zr[j] : mx;
        for (int j = 0; j < C; j++) gr[j] = f_exp(zr[j] - mx);
        float s = 0.0f;
        for (int j = 0; j < C; j++) s += gr[j];
        float inv = inv_b / s;
        for (int j = 0; j < C; j++) gr[j] = gr[j] * inv;
        gr[y[i]] -= inv_b;
        sum -= (double)(zr[y[i]] - mx);
        prod *= (double)s;
        if ((i - i0) % 16 == 15 || i == i1 - 1) {
            sum += log(prod);
            prod = 1.0;
        }
    }
    return sum;
}

/* out[j] = sum over rows r (in order) of g[r*ld + j], j < nc. */
CLONES static void colsum(const float *restrict g, int ld, int rows, int nc, float *restrict out) {
    for (int j = 0; j < nc; j++) out[j] = 0.0f;
    for (int r = 0; r < rows; r++) {
        const float *restrict gr = g + (size_t)r * ld;
        for (int j = 0; j < nc; j++) out[j] += gr[j];
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Optimizer                                                                                   */

typedef struct {
    int opt;
    float lr, mu, wd, b1, b2, eps;
    float lr_t, bc2; /* adam: lr / (1 - b1^t), 1 - b2^t */
} upd_t;

CLONES static void update_range(const upd_t *u, float *p, const float *g, float *o1, float *o2,
                         size_t n, int is_weight) {
    const float wd = is_weight ? u->wd : 0.0f;
    if (u->opt == ASH_SGD) {
        const float mu = u->mu, lr = u->lr;
        for (size_t i = 0; i < n; i++) {
            float gi = g[i] + wd * p[i];
            float v = mu * o1[i] + gi;
            o1[i] = v;
            p[i] = p[i] - lr * v;
        }
    } else {
        const float b1 = u->b1, b2 = u->b2, c1 = 1.0f - u->b1, c2 = 1.0f - u->b2;
        const float lr_t = u->lr_t, inv_bc2 = 1.0f / u->bc2, eps = u->eps;
        for (size_t i = 0; i < n; i++) {
            float gi = g[i] + wd * p[i];
            float m = b1 * o1[i] + c1 * gi;
            float v = b2 * o2[i] + c2 * gi * gi;
            o1[i] = m;
            o2[i] = v;
            p[i] = p[i] - lr_t * m / (sqrtf(v * inv_bc2) + eps);
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Mini-batch chunks                                                                           */

/* A mini-batch of B rows is cut into nch row chunks of cr rows (the last may be shorter); the
 * cut depends on B only. Each chunk runs forward and backward on its own and leaves a partial
 * gradient; the partials are then summed in chunk order. */
typedef struct {
    int nch, cr;
} split_t;

static double batch_work(const net_t *net, int B) { return 3.0 * (double)B * (double)net->np; }

static split_t split_rows(const net_t *net, int B) {
    if (batch_work(net, B) < PAR_MIN_WORK) { /* serial anyway: one chunk, no partial sums */
        split_t one = {1, B};
        return one;
    }
    int nch = B / CHUNK_ROWS;
    if (nch > MAX_CHUNKS) nch = MAX_CHUNKS;
    if (nch < 2) nch = B >= 16 ? 2 : 1;
    int cr = (B + nch - 1) / nch;
    cr = (cr + 7) / 8 * 8;
    split_t s = {(B + cr - 1) / cr, cr};
    return s;
}

typedef struct {
    const net_t *net;
    float *P, *O1, *O2;
    float *Gp; /* MAX_CHUNKS partial gradients, gstride floats apart */
    size_t gstride;
    const float *X;
    const int32_t *y;
    size_t n, d;
    float *z[MAXL + 1], *h[MAXL + 1], *a[MAXL + 1], *m[MAXL + 1], *g[MAXL + 1];
    float *xb;
    int32_t *yb;
    uint32_t *perm;
    double *loss_part;
    float *ws;
    size_t ws_floats;
    uint64_t seed;
    uint32_t drop_thresh;
    float drop_scale;
    int dropout;
} ctx_t;

/* What changes per mini-batch (each thread holds its own identical copy). */
typedef struct {
    int B, gather;
    split_t sp;
    size_t b0;
    uint64_t step;
    upd_t upd;
} batch_t;

/* Forward and backward of rows [c*cr, ...) of the batch: loss_part[c] and partial gradient c. */
static void run_chunk(const ctx_t *cx, const batch_t *bt, int c, float *ws) {
    const net_t *net = cx->net;
    const int L = net->L;
    const int r0 = c * bt->sp.cr, r1 = r0 + bt->sp.cr < bt->B ? r0 + bt->sp.cr : bt->B;
    const int R = r1 - r0;
    const float *a0;
    const int32_t *yb;
    if (bt->gather) {
        const size_t d = cx->d;
        for (int r = r0; r < r1; r++) {
            uint32_t src = cx->perm[bt->b0 + (size_t)r];
            memcpy(cx->xb + (size_t)r * d, cx->X + (size_t)src * d, 4 * d);
            cx->yb[r] = cx->y[src];
        }
        a0 = cx->xb;
        yb = cx->yb;
    } else {
        a0 = cx->X + bt->b0 * cx->d;
        yb = cx->y + bt->b0;
    }
    for (int w = 0; w < L; w++) {
        const int K = net->sz[w], N = net->sz[w + 1];
        ash_gemm gm = {w == 0 ? a0 : cx->a[w], K, 1, cx->P + net->woff[w], N, 1, cx->z[w + 1],
                       N, cx->P + net->boff[w], 0, K};
        ash_gemm_block(&gm, r0, r1, 0, N, ws);
        if (w == L - 1) break;
        const int l = w + 1;
        uint64_t key = mix64(cx->seed ^ mix64(bt->step * 8u + (uint64_t)l));
        const size_t o = (size_t)r0 * N;
        act_forward(net->act, cx->z[l] + o, cx->h[l] + o, (size_t)R * N);
        if (cx->dropout)
            for (int i = r0; i < r1; i++)
                dropout_row(cx->h[l] + (size_t)i * N, cx->a[l] + (size_t)i * N,
                            cx->m[l] + (size_t)i * N, 0, N, (uint32_t)mix64(key + (uint64_t)i),
                            cx->drop_thresh, cx->drop_scale);
    }
    cx->loss_part[c] = softmax_rows(cx->z[L], cx->g[L], yb, r0, r1, net->sz[L],
                                    1.0f / (float)bt->B);
    float *Gc = cx->Gp + cx->gstride * (size_t)c;
    for (int w = L - 1; w >= 0; w--) {
        const int M = net->sz[w], N = net->sz[w + 1];
        const float *A = (w == 0 ? a0 : cx->a[w]) + (size_t)r0 * M;
        const float *gn = cx->g[w + 1] + (size_t)r0 * N;
        ash_gemm dw = {A, 1, M, gn, N, 1, Gc + net->woff[w], N, NULL, 0, R};
        ash_gemm_block(&dw, 0, M, 0, N, ws);
        colsum(gn, N, R, N, Gc + net->boff[w]);
        if (w == 0) break;
        ash_gemm da = {cx->g[w + 1], N, 1, cx->P + net->woff[w], 1, N, cx->g[w], M, NULL, 0, N};
        ash_gemm_block(&da, r0, r1, 0, M, ws);
        const size_t o = (size_t)r0 * M;
        act_backward(net->act, cx->z[w] + o, cx->h[w] + o, cx->dropout ? cx->m[w] + o : NULL,
                     cx->g[w] + o, (size_t)R * M);
    }
}

/* Sum the partial gradients (chunk order) into partial 0 and, if update, step the optimizer;
 * this thread's share is a contiguous run of fixed UPD_CHUNK slices of the parameters. The sum
 * runs block by block so that each block is summed and applied while it sits in L1. */
static void reduce_update(const ctx_t *cx, const batch_t *bt, int tid, int nth, int update) {
    const net_t *net = cx->net;
    const size_t np = net->np, npieces = (np + UPD_CHUNK - 1) / UPD_CHUNK;
    const size_t p0 = npieces * (size_t)tid / (size_t)nth;
    const size_t p1 = npieces * (size_t)(tid + 1) / (size_t)nth;
    const size_t lo = p0 * UPD_CHUNK, hi = p1 * UPD_CHUNK < np ? p1 * UPD_CHUNK : np;
    float *restrict g0 = cx->Gp;
    for (size_t b0 = lo; b0 < hi; b0 += RED_BLOCK) {
        const size_t b1 = b0 + RED_BLOCK < hi ? b0 + RED_BLOCK : hi;
        for (int c = 1; c < bt->sp.nch; c++) {
            const float *restrict gc = cx->Gp + cx->gstride * (size_t)c;
            for (size_t i = b0; i < b1; i++) g0[i] += gc[i];
        }
        if (!update) continue;
        for (int w = 0; w < net->L; w++) {
            const size_t ranges[2][2] = {{net->woff[w], net->boff[w]},
                                         {net->boff[w], net->boff[w] + (size_t)net->sz[w + 1]}};
            for (int k = 0; k < 2; k++) {
                size_t a = ranges[k][0] > b0 ? ranges[k][0] : b0;
                size_t b = ranges[k][1] < b1 ? ranges[k][1] : b1;
                if (a < b)
                    update_range(&bt->upd, cx->P + a, g0 + a, cx->O1 + a,
                                 cx->O2 ? cx->O2 + a : NULL, b - a, k == 0);
            }
        }
    }
}

/* The chunks of thread tid: a contiguous run, the same one for every batch of this size. */
static void run_chunks(const ctx_t *cx, const batch_t *bt, int tid, int nth, float *ws) {
    const int nch = bt->sp.nch;
    const int c0 = nch * tid / nth, c1 = nch * (tid + 1) / nth;
    for (int c = c0; c < c1; c++) run_chunk(cx, bt, c, ws);
}

/* ------------------------------------------------------------------------------------------ */
/* Input checks                                                                                */

static int check_xy(const net_t *net, const float *X, const int32_t *y, size_t n, size_t d,
                    int need_two_classes, ash_error *err) {
    if (!X) return fail(err, ASH_E_ARG, "X must not be NULL");
    if (!y) return fail(err, ASH_E_ARG, "y must not be NULL");
    if (n == 0) return fail(err, ASH_E_ARG, "X has no rows");
    if (n > (size_t)1 << 30) return fail(err, ASH_E_ARG, "X has %zu rows; at most 2^30", n);
    if (d != (size_t)net->sz[0])
        return fail(err, ASH_E_ARG, "X has %zu columns but the network expects n_in = %d", d,
                    net->sz[0]);
    const size_t total = n * d;
    int bad = 0;
    /* a team only pays off for large inputs (forking one costs microseconds, more when busy) */
#pragma omp parallel for reduction(| : bad) schedule(static) if (total >= ((size_t)1 << 20))
    for (size_t i = 0; i < total; i++) {
        uint32_t u;
        memcpy(&u, &X[i], 4);
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    if (bad) {
        for (size_t i = 0; i < total; i++)
            if (!isfinite(X[i]))
                return fail(err, ASH_E_DATA, "X[%zu, %zu] is %s: X must be finite", i / d, i % d,
                            isnan(X[i]) ? "NaN" : "infinite");
    }
    const int C = net->sz[net->L];
    unsigned char *seen = (unsigned char *)calloc((size_t)C, 1);
    if (!seen) return fail(err, ASH_E_NOMEM, "out of memory");
    int classes = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t v = y[i];
        if (v < 0 || v >= C) {
            free(seen);
            return fail(err, ASH_E_DATA, "y[%zu] = %d is out of range: labels must be in [0, %d)",
                        i, (int)v, C);
        }
        if (!seen[v]) {
            seen[v] = 1;
            classes++;
        }
    }
    free(seen);
    if (need_two_classes && classes < 2)
        return fail(err, ASH_E_DATA, "y holds a single class (%d): training needs at least two",
                    (int)y[0]);
    return ASH_OK;
}

static size_t rup16(size_t n) { return (n + 15) / 16 * 16; }

/* Scratch for mini-batches of up to Bm rows, carved out of one 64-byte aligned block. */
typedef struct {
    float *base;
} arena_t;

static int ctx_alloc(ctx_t *cx, arena_t *ar, const net_t *net, size_t Bm, size_t n, int gather,
                     int dropout, int nth_max, ash_error *err) {
    size_t off = 0, o_P, o_O1, o_O2 = 0, o_Gp, o_z[MAXL + 1], o_h[MAXL + 1], o_m[MAXL + 1],
           o_a[MAXL + 1], o_g[MAXL + 1], o_xb = 0, o_yb, o_perm = 0, o_loss, o_ws;
    const int L = net->L;
    const size_t gstride = rup16(net->np);
    o_P = off;
    off += gstride;
    o_O1 = off;
    off += gstride;
    if (net->opt == ASH_ADAM) {
        o_O2 = off;
        off += gstride;
    }
    o_Gp = off;
    off += gstride * MAX_CHUNKS;
    for (int l = 1; l <= L; l++) {
        size_t s = rup16(Bm * (size_t)net->sz[l]);
        o_z[l] = off;
        off += s;
        o_g[l] = off;
        off += s;
        if (l < L) {
            o_h[l] = off;
            off += s;
            if (dropout) {
                o_a[l] = off;
                off += s;
                o_m[l] = off;
                off += s;
            }
        }
    }
    if (gather) {
        o_xb = off;
        off += rup16(Bm * (size_t)net->sz[0]);
        o_perm = off;
        off += rup16(n);
    }
    o_yb = off;
    off += rup16(Bm);
    o_loss = off;
    off += rup16(2 * MAX_CHUNKS);
    const size_t wsf = rup16(ash_gemm_workspace_floats());
    o_ws = off;
    off += wsf * (size_t)nth_max;
    ar->base = (float *)aligned_alloc(64, 4 * off);
    if (!ar->base)
        return fail(err, ASH_E_NOMEM, "out of memory allocating %zu MiB of scratch",
                    (4 * off) >> 20);
    float *b = ar->base;
    cx->net = net;
    cx->P = b + o_P;
    cx->O1 = b + o_O1;
    cx->O2 = net->opt == ASH_ADAM ? b + o_O2 : NULL;
    cx->Gp = b + o_Gp;
    cx->gstride = gstride;
    for (int l = 0; l <= MAXL; l++) cx->z[l] = cx->h[l] = cx->a[l] = cx->m[l] = cx->g[l] = NULL;
    for (int l = 1; l <= L; l++) {
        cx->z[l] = b + o_z[l];
        cx->g[l] = b + o_g[l];
        if (l < L) {
            cx->h[l] = b + o_h[l];
            cx->a[l] = dropout ? b + o_a[l] : cx->h[l];
            cx->m[l] = dropout ? b + o_m[l] : NULL;
        }
    }
    cx->xb = gather ? b + o_xb : NULL;
    cx->perm = gather ? (uint32_t *)(b + o_perm) : NULL;
    cx->yb = (int32_t *)(b + o_yb);
    cx->loss_part = (double *)(b + o_loss);
    cx->ws = b + o_ws;
    cx->ws_floats = wsf;
    return ASH_OK;
}

static int all_finite(const float *p, size_t n) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &p[i], 4);
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    return !bad;
}

int ash_mlp_train(const void *state_in, size_t state_size, void *state_out, const float *X,
                  const int32_t *y, size_t n, size_t d, const ash_train_config *cfg,
                  ash_train_result *res, ash_error *err) {
    ash_mlp_info info;
    net_t net;
    int rc = parse_state(state_in, state_size, &info, &net, err);
    if (rc != ASH_OK) return rc;
    if (!state_out) return fail(err, ASH_E_ARG, "state_out must not be NULL");
    if (!cfg) return fail(err, ASH_E_ARG, "cfg must not be NULL");
    if (!res) return fail(err, ASH_E_ARG, "res must not be NULL");
    if (cfg->batch_size < 1)
        return fail(err, ASH_E_ARG, "batch_size must be >= 1, got %u", cfg->batch_size);
    if (!(isfinite(cfg->lr) && cfg->lr > 0.0f))
        return fail(err, ASH_E_ARG, "lr must be finite and > 0, got %g", (double)cfg->lr);
    if (!(cfg->momentum >= 0.0f && cfg->momentum < 1.0f))
        return fail(err, ASH_E_ARG, "momentum must be in [0, 1), got %g", (double)cfg->momentum);
    if (!(isfinite(cfg->weight_decay) && cfg->weight_decay >= 0.0f))
        return fail(err, ASH_E_ARG, "weight_decay must be finite and >= 0, got %g",
                    (double)cfg->weight_decay);
    if (!(cfg->dropout >= 0.0f && cfg->dropout < 1.0f))
        return fail(err, ASH_E_ARG, "dropout must be in [0, 1), got %g", (double)cfg->dropout);
    if (net.opt == ASH_ADAM) {
        if (!(cfg->beta1 >= 0.0f && cfg->beta1 < 1.0f))
            return fail(err, ASH_E_ARG, "beta1 must be in [0, 1), got %g", (double)cfg->beta1);
        if (!(cfg->beta2 >= 0.0f && cfg->beta2 < 1.0f))
            return fail(err, ASH_E_ARG, "beta2 must be in [0, 1), got %g", (double)cfg->beta2);
        if (!(isfinite(cfg->eps) && cfg->eps > 0.0f))
            return fail(err, ASH_E_ARG, "eps must be finite and > 0, got %g", (double)cfg->eps);
    }
    rc = check_xy(&net, X, y, n, d, 1, err);
    if (rc != ASH_OK) return rc;

    memset(res, 0, sizeof *res);
    res->threads = 1;
    res->train_loss = NAN;
    if (cfg->epochs == 0) {
        if (state_out != state_in) memmove(state_out, state_in, state_size);
        return ASH_OK;
    }

    const size_t bs = cfg->batch_size;
    const int gather = bs < n; /* mini-batches: shuffle every epoch; full batch: no shuffle */
    const size_t Bm = gather ? bs : n;
    const int dropout = cfg->dropout > 0.0f;
    ctx_t cx;
    arena_t ar;
    memset(&cx, 0, sizeof cx);
    int nth_max = omp_get_max_threads();
    if (nth_max < 1) nth_max = 1;
    rc = ctx_alloc(&cx, &ar, &net, Bm, n, gather, dropout, nth_max, err);
    if (rc != ASH_OK) return rc;

    const unsigned char *src = (const unsigned char *)state_in + ASH_STATE_HEADER_BYTES;
    memcpy(cx.P, src, 4 * net.np);
    memcpy(cx.O1, src + 4 * net.np, 4 * net.np);
    if (cx.O2) memcpy(cx.O2, src + 8 * net.np, 4 * net.np);
    cx.X = X;
    cx.y = y;
    cx.n = n;
    cx.d = d;
    cx.seed = info.seed;
    cx.dropout = dropout;
    cx.drop_thresh = (uint32_t)((double)cfg->dropout * 16777216.0);
    cx.drop_scale = dropout ? 1.0f / (1.0f - cfg->dropout) : 1.0f;
    upd_t upd;
    memset(&upd, 0, sizeof upd);
    upd.opt = net.opt;
    upd.lr = cfg->lr;
    upd.mu = cfg->momentum;
    upd.wd = cfg->weight_decay;
    upd.b1 = cfg->beta1;
    upd.b2 = cfg->beta2;
    upd.eps = cfg->eps;

    const size_t nbatches = (n + Bm - 1) / Bm;
    const int par = split_rows(&net, (int)Bm).nch > 1;
    int threads_used = 1, diverged = 0;
    uint32_t epochs_run = 0;
    double last_loss = NAN;

#pragma omp parallel if (par)
    {
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        float *ws = cx.ws + cx.ws_floats * (size_t)tid;
        batch_t bt;
        memset(&bt, 0, sizeof bt);
        bt.upd = upd;
        bt.gather = gather;
        int stop = 0;
        uint32_t e;
        double eloss = 0.0;
        for (e = 0; e < cfg->epochs && !stop; e++) {
            if (gather) {
                if (tid == 0) make_perm(cx.perm, n, info.seed, info.epochs_done + e);
#pragma omp barrier
            }
            eloss = 0.0;
            for (size_t b = 0; b < nbatches; b++) {
                bt.b0 = b * Bm;
                bt.B = (int)(n - bt.b0 < Bm ? n - bt.b0 : Bm);
                bt.sp = split_rows(&net, bt.B);
                bt.step = info.step + (uint64_t)e * nbatches + b;
                if (net.opt == ASH_ADAM) {
                    double t = (double)(bt.step + 1);
                    bt.upd.lr_t = (float)((double)cfg->lr / (1.0 - pow((double)cfg->beta1, t)));
                    bt.upd.bc2 = (float)(1.0 - pow((double)cfg->beta2, t));
                }
                run_chunks(&cx, &bt, tid, nth, ws);
#pragma omp barrier
                double s = 0.0;
                for (int k = 0; k < bt.sp.nch; k++) s += cx.loss_part[k];
                if (!isfinite(s)) {
                    stop = 1;
                    break;
                }
                eloss += s;
                reduce_update(&cx, &bt, tid, nth, 1);
#pragma omp barrier
            }
        }
        if (tid == 0) {
            threads_used = nth;
            diverged = stop;
            epochs_run = stop ? e - 1 : e;
            last_loss = eloss / (double)n;
        }
    }

    if (!diverged && !all_finite(cx.P, net.np)) diverged = 1;
    info.step += (uint64_t)epochs_run * nbatches;
    info.epochs_done += epochs_run;
    write_state((unsigned char *)state_out, &net, &info, cx.P, cx.O1, cx.O2);
    free(ar.base);
    res->epochs_run = epochs_run;
    res->diverged = diverged;
    res->threads = threads_used;
    res->train_loss = diverged ? INFINITY : last_loss;
    return ASH_OK;
}

int ash_mlp_loss_grad(const void *state, size_t state_size, const float *X, const int32_t *y,
                      size_t n, size_t d, float weight_decay, double *loss, float *grad,
                      size_t n_grad, ash_error *err) {
    ash_mlp_info info;
    net_t net;
    int rc = parse_state(state, state_size, &info, &net, err);
    if (rc != ASH_OK) return rc;
    if (!(isfinite(weight_decay) && weight_decay >= 0.0f))
        return fail(err, ASH_E_ARG, "weight_decay must be finite and >= 0, got %g",
                    (double)weight_decay);
    if (!grad || n_grad < net.np)
        return fail(err, ASH_E_ARG, "grad holds %zu floats, the network has %zu parameters",
                    n_grad, net.np);
    if (!loss) return fail(err, ASH_E_ARG, "loss must not be NULL");
    rc = check_xy(&net, X, y, n, d, 0, err);
    if (rc != ASH_OK) return rc;
    ctx_t cx;
    arena_t ar;
    memset(&cx, 0, sizeof cx);
    int nth_max = omp_get_max_threads();
    if (nth_max < 1) nth_max = 1;
    rc = ctx_alloc(&cx, &ar, &net, n, n, 0, 0, nth_max, err);
    if (rc != ASH_OK) return rc;
    memcpy(cx.P, (const unsigned char *)state + ASH_STATE_HEADER_BYTES, 4 * net.np);
    cx.X = X;
    cx.y = y;
    cx.n = n;
    cx.d = d;
    cx.seed = info.seed;
    double total = 0.0;
    batch_t bt0;
    memset(&bt0, 0, sizeof bt0);
    bt0.B = (int)n;
    bt0.sp = split_rows(&net, (int)n);
    bt0.step = info.step;
#pragma omp parallel if (bt0.sp.nch > 1)
    {
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        float *ws = cx.ws + cx.ws_floats * (size_t)tid;
        batch_t bt = bt0;
        run_chunks(&cx, &bt, tid, nth, ws);
#pragma omp barrier
        reduce_update(&cx, &bt, tid, nth, 0);
        if (tid == 0)
            for (int k = 0; k < bt.sp.nch; k++) total += cx.loss_part[k];
    }
    float *G = cx.Gp;
    double reg = 0.0;
    for (int w = 0; w < net.L; w++) {
        for (size_t i = net.woff[w]; i < net.boff[w]; i++) {
            reg += (double)cx.P[i] * (double)cx.P[i];
            G[i] += weight_decay * cx.P[i];
        }
    }
    *loss = total / (double)n + 0.5 * (double)weight_decay * reg;
    memcpy(grad, G, 4 * net.np);
    free(ar.base);
    return ASH_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Evaluation: independent row blocks, each forwarded by one thread                            */

int ash_mlp_evaluate(const void *state, size_t state_size, const float *X, const int32_t *y,
                     size_t n, size_t d, double *loss, double *accuracy, int *threads,
                     ash_error *err) {
    net_t net;
    int rc = parse_state(state, state_size, NULL, &net, err);
    if (rc != ASH_OK) return rc;
    if (!loss || !accuracy) return fail(err, ASH_E_ARG, "loss and accuracy must not be NULL");
    rc = check_xy(&net, X, y, n, d, 0, err);
    if (rc != ASH_OK) return rc;
    const size_t nblk = (n + EVAL_ROWS - 1) / EVAL_ROWS;
    int nth_max = omp_get_max_threads();
    if (nth_max < 1) nth_max = 1;
    const size_t wsf = rup16(ash_gemm_workspace_floats());
    const size_t buf = rup16((size_t)EVAL_ROWS * (size_t)net.maxw);
    const size_t per_thread = wsf + 3 * buf;
    float *P = (float *)aligned_alloc(64, 4 * (rup16(net.np) + per_thread * (size_t)nth_max));
    double *part = (double *)malloc(sizeof(double) * 2 * nblk);
    if (!P || !part) {
        free(P);
        free(part);
        return fail(err, ASH_E_NOMEM, "out of memory");
    }
    memcpy(P, (const unsigned char *)state + ASH_STATE_HEADER_BYTES, 4 * net.np);
    float *scratch = P + rup16(net.np);
    double work = (double)n * (double)net.np;
    int used = 1;
#pragma omp parallel if (work >= 8 * PAR_MIN_WORK)
    {
        const int tid = omp_get_thread_num();
        float *ws = scratch + per_thread * (size_t)tid;
        float *bz = ws + wsf, *ba = bz + buf, *bb = ba + buf;
        if (tid == 0) used = omp_get_num_threads();
#pragma omp for schedule(static)
        for (size_t blk = 0; blk < nblk; blk++) {
            const size_t r0 = blk * EVAL_ROWS;
            const int R = (int)(n - r0 < EVAL_ROWS ? n - r0 : EVAL_ROWS);
            const float *in = X + r0 * d;
            float *out = ba;
            for (int w = 0; w < net.L; w++) {
                const int K = net.sz[w], N = net.sz[w + 1];
                ash_gemm gm = {in, K, 1, P + net.woff[w], N, 1, w == net.L - 1 ? bz : out, N,
                               P + net.boff[w], 0, K};
                ash_gemm_block(&gm, 0, R, 0, N, ws);
                if (w < net.L - 1) {
                    act_forward(net.act, out, out, (size_t)R * N);
                    in = out;
                    out = out == ba ? bb : ba;
                }
            }
            const int C = net.sz[net.L];
            double ls = 0.0, correct = 0.0;
            for (int i = 0; i < R; i++) {
                const float *zr = bz + (size_t)i * C;
                int arg = 0;
                float mx = zr[0];
                for (int j = 1; j < C; j++)
                    if (zr[j] > mx) {
                        mx = zr[j];
                        arg = j;
                    }
                float s = 0.0f;
                for (int j = 0; j < C; j++) s += f_exp(zr[j] - mx);
                const int32_t t = y[r0 + (size_t)i];
                ls += (double)(logf(s) - (zr[t] - mx));
                correct += arg == t ? 1.0 : 0.0;
            }
            part[2 * blk] = ls;
            part[2 * blk + 1] = correct;
        }
    }
    double ls = 0.0, correct = 0.0;
    for (size_t b = 0; b < nblk; b++) {
        ls += part[2 * b];
        correct += part[2 * b + 1];
    }
    free(P);
    free(part);
    *loss = isfinite(ls) ? ls / (double)n : INFINITY;
    *accuracy = correct / (double)n;
    if (threads) *threads = used;
    return ASH_OK;
}

/* ------------------------------------------------------------------------------------------ */

int ash_omp_max_threads(void) {
    int n = 0;
#pragma omp parallel
    {
#pragma omp single
        n = omp_get_num_threads();
    }
    return n;
}

const char *ash_isa(void) { return ash_gemm_isa_name(); }
