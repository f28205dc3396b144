"""ash.native: the OpenMP C kernel (kernel.h / kernel.c) behind a thin CPython binding.

The C side owns the numerics, the state format and the parallel loops; `ash.native.mlp` owns
the typed Python facade. Thread counts are never hard-coded in C: they come from the OpenMP
runtime, which threadpoolctl limits per calling thread.
"""

from ash.native._kernel import isa, omp_max_threads
from ash.native.mlp import (
    ACTIVATIONS,
    MLP,
    OPTIMIZERS,
    Evaluation,
    StateInfo,
    TrainResult,
    evaluate,
    info,
    init_state,
    loss_grad,
    params,
    train,
)

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "OPTIMIZERS",
    "Evaluation",
    "StateInfo",
    "TrainResult",
    "evaluate",
    "info",
    "init_state",
    "isa",
    "loss_grad",
    "omp_max_threads",
    "params",
    "train",
]
