/* ash native kernel: a plain C11 API for training and evaluating a small MLP classifier.
 *
 * Caller-owned buffers, explicit sizes, status codes; no allocation visible to the caller and
 * no global state. Parallel loops use OpenMP with no hard-coded thread count: the team size is
 * whatever the runtime gives the calling thread (threadpoolctl limits it per calling thread).
 * Results are deterministic for a seed and, by construction, identical for any thread count:
 * the work is cut into chunks that do not depend on the team size, and every reduction runs in
 * a fixed order.
 *
 * State: a self-describing byte string (little-endian) holding the architecture, the weights,
 * the optimizer state, the RNG position and the epochs done:
 *
 *   off  size  field
 *     0     4  magic "ASHK"
 *     4     4  u32 version (1)
 *     8     4  u32 header bytes (88)
 *    12     4  u32 n_hidden (1..3)
 *    16     4  u32 n_in
 *    20    12  u32 hidden[3] (unused entries 0)
 *    32     4  u32 n_out
 *    36     4  u32 activation (enum ash_activation)
 *    40     4  u32 optimizer (enum ash_optimizer)
 *    44     4  u32 reserved (0)
 *    48     8  u64 seed
 *    56     8  u64 step (mini-batch updates done; drives dropout masks and Adam's bias correction)
 *    64     8  u64 epochs done (drives the per-epoch shuffle)
 *    72     8  u64 n_params
 *    80     8  u64 n_opt (floats of optimizer state: n_params for sgd, 2 n_params for adam)
 *    88  4 n_params  f32 parameters: for each layer W (fan_in x fan_out, row-major) then b
 *     .  4 n_opt     f32 optimizer state: sgd velocity; adam first then second moments
 *   end-8       8  u64 FNV-1a 64 checksum of every byte before it
 */
#ifndef ASH_KERNEL_H
#define ASH_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ASH_MAX_HIDDEN 3
#define ASH_STATE_VERSION 1u
#define ASH_STATE_HEADER_BYTES 88u

/* Status codes. On failure the ash_error (if given) holds a message naming the argument. */
enum ash_status {
    ASH_OK = 0,
    ASH_E_ARG = 1,   /* an argument (shape, hyperparameter, dtype, architecture) is invalid */
    ASH_E_DATA = 2,  /* X or y content is invalid (non-finite, label out of range, one class) */
    ASH_E_STATE = 3, /* the state is truncated, corrupted or from another version */
    ASH_E_NOMEM = 4, /* scratch memory could not be allocated */
};

typedef struct {
    char msg[256];
} ash_error;

enum ash_activation {
    ASH_RELU = 0,
    ASH_TANH = 1,
    ASH_SIGMOID = 2,
    ASH_GELU = 3,       /* tanh approximation */
    ASH_LEAKY_RELU = 4, /* slope 0.01 */
    ASH_N_ACTIVATIONS = 5,
};

enum ash_optimizer { ASH_SGD = 0, ASH_ADAM = 1, ASH_N_OPTIMIZERS = 2 };

typedef struct {
    uint32_t n_in, n_out, n_hidden;
    uint32_t hidden[ASH_MAX_HIDDEN];
    uint32_t activation, optimizer;
} ash_mlp_arch;

typedef struct {
    ash_mlp_arch arch;
    uint64_t seed, step, epochs_done;
    uint64_t n_params, n_opt;
} ash_mlp_info;

typedef struct {
    uint32_t epochs;     /* epochs to train in this call (0 allowed) */
    uint32_t batch_size; /* >= 1; >= n means full batch (no shuffle) */
    float lr;            /* > 0 */
    float momentum;      /* sgd: [0, 1) */
    float weight_decay;  /* L2 on weights (not biases): adds weight_decay * W to the gradient */
    float dropout;       /* inverted dropout on hidden activations: [0, 1) */
    float beta1, beta2, eps; /* adam: [0, 1), [0, 1), > 0 */
} ash_train_config;

typedef struct {
    uint32_t epochs_run; /* epochs completed in this call */
    int diverged;        /* 1: a non-finite loss or weight ended the span early */
    int threads;         /* OpenMP threads the call used */
    double train_loss;   /* mean cross-entropy over the last epoch (dropout on); inf if diverged */
} ash_train_result;

/* Bytes of a state for arch, or 0 (and err) if arch is invalid. */
size_t ash_mlp_state_size(const ash_mlp_arch *arch, ash_error *err);

/* Fresh state: He (relu-like) or Glorot (tanh, sigmoid) uniform weights, zero biases. */
int ash_mlp_init(const ash_mlp_arch *arch, uint64_t seed, void *state, size_t state_size,
                 ash_error *err);

/* Validate a state (size, magic, version, architecture, checksum) and describe it. */
int ash_mlp_inspect(const void *state, size_t state_size, ash_mlp_info *info, ash_error *err);

/* Copy the n_params parameters (layout above) into out (n_out_floats >= n_params). */
int ash_mlp_get_params(const void *state, size_t state_size, float *out, size_t n_out_floats,
                       ash_error *err);

/* Train cfg->epochs epochs from state_in into state_out (same size; may be the same buffer).
 * X: n x d row-major float32, y: n labels in [0, n_out) with at least two classes present. */
int ash_mlp_train(const void *state_in, size_t state_size, void *state_out, const float *X,
                  const int32_t *y, size_t n, size_t d, const ash_train_config *cfg,
                  ash_train_result *res, ash_error *err);

/* Mean cross-entropy and accuracy on (X, y); no dropout. loss is +inf on non-finite output. */
int ash_mlp_evaluate(const void *state, size_t state_size, const float *X, const int32_t *y,
                     size_t n, size_t d, double *loss, double *accuracy, int *threads,
                     ash_error *err);

/* Full-batch loss (mean cross-entropy + weight_decay/2 * sum W^2) and its gradient with respect
 * to every parameter (layout above), without dropout and without updating anything. */
int ash_mlp_loss_grad(const void *state, size_t state_size, const float *X, const int32_t *y,
                      size_t n, size_t d, float weight_decay, double *loss, float *grad,
                      size_t n_grad, ash_error *err);

/* The number of OpenMP threads a parallel region entered from the calling thread would use.
 * threadpoolctl's limits are per calling thread, so this answers for the caller only. */
int ash_omp_max_threads(void);

/* "avx512", "avx2" or "generic": the GEMM micro-kernel picked for this CPU. */
const char *ash_isa(void);

#ifdef __cplusplus
}
#endif
#endif
