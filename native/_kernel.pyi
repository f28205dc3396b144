"""Type stub of ash.native._kernel, the CPython binding in binding.c."""

from collections.abc import Sequence
from typing import Any

import numpy as np

Buffer = bytes | bytearray | memoryview | np.ndarray[Any, Any]

def init_state(
    n_in: int, hidden: Sequence[int], n_out: int, activation: int, optimizer: int, seed: int
) -> bytes: ...
def state_info(state: Buffer) -> dict[str, object]: ...
def state_params(state: Buffer) -> bytes: ...
def train(
    state: Buffer,
    X: Buffer,
    y: Buffer,
    epochs: int,
    batch_size: int,
    lr: float,
    momentum: float = ...,
    weight_decay: float = ...,
    dropout: float = ...,
    beta1: float = ...,
    beta2: float = ...,
    eps: float = ...,
) -> tuple[bytes, float, int, bool, int]: ...
def evaluate(state: Buffer, X: Buffer, y: Buffer) -> tuple[float, float, int]: ...
def loss_grad(
    state: Buffer, X: Buffer, y: Buffer, weight_decay: float = ...
) -> tuple[float, bytes]: ...
def omp_max_threads() -> int: ...
def isa() -> str: ...
