"""ash.native.mlp: the typed Python facade of the native MLP kernel.

It owns the translation between Python values (strings for activations and optimizers, numpy
arrays of any real dtype) and the kernel's raw interface (enum codes, C-contiguous float32 X and
int32 y), and it names the argument in every error. The numerics, the state format and the
threading live in C (kernel.h): one call trains a whole span of epochs with the GIL released,
and the thread count is whatever threadpoolctl allows the calling thread.

A state is opaque bytes: architecture, weights, optimizer state, RNG position and epochs done,
with a versioned header and a checksum (never a pickle). Hyperparameters that may change from
one call to the next (lr, momentum, ...) are arguments of `train`; the architecture is fixed in
the state.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from ash.native import _kernel

ACTIVATIONS: tuple[str, ...] = ("relu", "tanh", "sigmoid", "gelu", "leaky_relu")
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")

FloatArray = npt.NDArray[np.float32]


class StateInfo(NamedTuple):
    """The validated header of a state."""

    n_in: int
    hidden: tuple[int, ...]
    n_out: int
    activation: str
    optimizer: str
    seed: int
    step: int
    epochs_done: int
    n_params: int


class TrainResult(NamedTuple):
    """What one `train` call returns; `diverged` means a non-finite loss ended the span early."""

    state: bytes
    train_loss: float
    diverged: bool
    epochs_run: int
    threads: int


class Evaluation(NamedTuple):
    """Mean cross-entropy (inf if the network's output is not finite) and accuracy."""

    loss: float
    accuracy: float


def _code(value: str, options: tuple[str, ...], name: str) -> int:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(options)}; got {value!r}")
    return options.index(value)


def _features(X: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(X)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"X must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"X must be 2-dimensional (samples x features), got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _labels(y: npt.ArrayLike) -> npt.NDArray[np.int32]:
    arr = np.asarray(y)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"y must hold integer class labels, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"y must be 1-dimensional, got shape {arr.shape}")
    if arr.size and arr.dtype.itemsize >= 4:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > np.iinfo(np.int32).max:
            bad = lo if lo < 0 else hi
            i = int(np.flatnonzero(arr == bad)[0])
            raise ValueError(f"y[{i}] = {bad} is out of range: labels must be >= 0 and fit int32")
    return np.ascontiguousarray(arr, dtype=np.int32)


def init_state(
    n_in: int,
    hidden: Sequence[int],
    n_out: int,
    activation: str = "relu",
    optimizer: str = "sgd",
    seed: int = 0,
) -> bytes:
    """A fresh state: He (relu-like) or Glorot (tanh, sigmoid) uniform weights, zero biases."""
    act = _code(activation, ACTIVATIONS, "activation")
    opt = _code(optimizer, OPTIMIZERS, "optimizer")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    state: bytes = _kernel.init_state(n_in, list(hidden), n_out, act, opt, seed)
    return state


def info(state: bytes) -> StateInfo:
    """Validate a state (size, magic, version, checksum) and describe it."""
    d = _kernel.state_info(state)
    hidden = d["hidden"]
    assert isinstance(hidden, tuple)
    return StateInfo(
        n_in=int(str(d["n_in"])),
        hidden=tuple(int(h) for h in hidden),
        n_out=int(str(d["n_out"])),
        activation=ACTIVATIONS[int(str(d["activation"]))],
        optimizer=OPTIMIZERS[int(str(d["optimizer"]))],
        seed=int(str(d["seed"])),
        step=int(str(d["step"])),
        epochs_done=int(str(d["epochs_done"])),
        n_params=int(str(d["n_params"])),
    )


def _split(flat: FloatArray, sizes: Sequence[int]) -> list[tuple[FloatArray, FloatArray]]:
    layers: list[tuple[FloatArray, FloatArray]] = []
    off = 0
    for fan_in, fan_out in itertools.pairwise(sizes):
        w = flat[off : off + fan_in * fan_out].reshape(fan_in, fan_out)
        off += fan_in * fan_out
        b = flat[off : off + fan_out]
        off += fan_out
        layers.append((w, b))
    return layers


def params(state: bytes) -> list[tuple[FloatArray, FloatArray]]:
    """The (W, b) of each layer, copies: W is fan_in x fan_out, so a layer is x @ W + b."""
    st = info(state)
    flat = np.frombuffer(_kernel.state_params(state), dtype=np.float32).copy()
    return _split(flat, [st.n_in, *st.hidden, st.n_out])


def train(
    state: bytes,
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    epochs: int,
    *,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    dropout: float = 0.0,
    batch_size: int = 32,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> TrainResult:
    """Train `epochs` more epochs in one kernel call; batch_size >= len(X) means full batch.

    Mini-batches are reshuffled every epoch from the state's seed and epoch count, so training
    0 -> 9 epochs in one call or through saved states gives identical weights. A non-finite loss
    stops the span: `diverged` is True and `train_loss` is inf.
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be an int >= 0, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    xs, ys = _features(X), _labels(y)
    new, loss, run, diverged, threads = _kernel.train(
        state, xs, ys, epochs, batch_size, lr, momentum, weight_decay, dropout, beta1, beta2, eps
    )
    return TrainResult(new, math.inf if diverged else loss, diverged, run, threads)


def evaluate(state: bytes, X: npt.ArrayLike, y: npt.ArrayLike) -> Evaluation:
    """Mean cross-entropy and accuracy on (X, y), without dropout."""
    loss, acc, _threads = _kernel.evaluate(state, _features(X), _labels(y))
    return Evaluation(loss if math.isfinite(loss) else math.inf, acc)


def loss_grad(
    state: bytes, X: npt.ArrayLike, y: npt.ArrayLike, weight_decay: float = 0.0
) -> tuple[float, list[tuple[FloatArray, FloatArray]]]:
    """Full-batch loss (mean cross-entropy + weight_decay/2 * sum W**2) and its gradient per
    layer as (dW, db), without dropout and without changing the state."""
    st = info(state)
    loss, grad = _kernel.loss_grad(state, _features(X), _labels(y), weight_decay)
    flat = np.frombuffer(grad, dtype=np.float32).copy()
    return loss, _split(flat, [st.n_in, *st.hidden, st.n_out])


class MLP:
    """A state with methods: `MLP.create(...)`, `.train(...)`, `.evaluate(...)`, `.state`."""

    def __init__(self, state: bytes) -> None:
        self.info = info(state)
        self.state = state

    @classmethod
    def create(
        cls,
        n_in: int,
        hidden: Sequence[int],
        n_out: int,
        activation: str = "relu",
        optimizer: str = "sgd",
        seed: int = 0,
    ) -> MLP:
        return cls(init_state(n_in, hidden, n_out, activation, optimizer, seed))

    def train(
        self,
        X: npt.ArrayLike,
        y: npt.ArrayLike,
        epochs: int,
        *,
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        dropout: float = 0.0,
        batch_size: int = 32,
    ) -> TrainResult:
        res = train(
            self.state,
            X,
            y,
            epochs,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            dropout=dropout,
            batch_size=batch_size,
        )
        self.state = res.state
        self.info = info(res.state)
        return res

    def evaluate(self, X: npt.ArrayLike, y: npt.ArrayLike) -> Evaluation:
        return evaluate(self.state, X, y)

    def params(self) -> list[tuple[FloatArray, FloatArray]]:
        return params(self.state)
