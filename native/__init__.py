"""ash.native: the OpenMP C kernel (kernel.h / kernel.c) behind a thin CPython binding.

The C side owns the numerics and the parallel loops; this package owns the Python facade.
Thread counts are never hard-coded in C: they come from the OpenMP runtime, which threadpoolctl
limits per calling thread.
"""

from ash.native._kernel import omp_max_threads

__all__ = ["omp_max_threads"]
