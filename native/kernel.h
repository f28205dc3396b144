/* ash native kernel: a plain C API with caller-owned buffers and status codes.
 * The training kernel (MLP, OpenMP) grows here; the binding in binding.c stays thin. */
#ifndef ASH_KERNEL_H
#define ASH_KERNEL_H

#ifdef __cplusplus
extern "C" {
#endif

/* The number of OpenMP threads a parallel region entered from the calling thread would use.
 * threadpoolctl's limits are per calling thread, so this answers for the caller only. */
int ash_omp_max_threads(void);

#ifdef __cplusplus
}
#endif
#endif
