/* ash native kernel: OpenMP implementation of kernel.h. */
#include "kernel.h"

#include <omp.h>

int ash_omp_max_threads(void) {
    int n = 0;
#pragma omp parallel
    {
#pragma omp single
        n = omp_get_num_threads();
    }
    return n;
}
