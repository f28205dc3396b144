"""Bad inputs to the native kernel raise ValueError naming the argument; states are checked."""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from ash.native import _kernel, mlp


def _data() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(40, 4)).astype(np.float32), (np.arange(40) % 3).astype(np.int32)


STATE = mlp.init_state(4, [8], 3, seed=0)


def test_nan_in_x() -> None:
    X, y = _data()
    X[7, 2] = np.nan
    with pytest.raises(ValueError, match=r"X\[7, 2\] is NaN"):
        mlp.train(STATE, X, y, 1, lr=0.1)
    X[7, 2] = np.inf
    with pytest.raises(ValueError, match=r"X\[7, 2\] is infinite"):
        mlp.evaluate(STATE, X, y)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda X, y: (X[:, :3], y), r"X has 3 columns .* n_in = 4"),
        (lambda X, y: (X[0], y), r"X must be 2-dimensional"),
        (lambda X, y: (X, y[:-1]), r"y has 39 labels but X has 40 rows"),
        (lambda X, y: (X[:0], y[:0]), r"X has no rows"),
        (lambda X, y: (X, np.where(y == 2, 3, y)), r"y\[2\] = 3 is out of range"),
        (lambda X, y: (X, np.where(y == 1, -1, y)), r"y\[1\] = -1 is out of range"),
        (lambda X, y: (X, np.zeros_like(y)), r"y holds a single class"),
        (lambda X, y: (X.astype(str), y), r"X must hold real numbers"),
        (lambda X, y: (X, y.astype(np.float32)), r"y must hold integer class labels"),
        (lambda X, y: (X, y.reshape(-1, 1)), r"y must be 1-dimensional"),
    ],
)
def test_bad_data(make: object, match: str) -> None:
    X, y = _data()
    Xb, yb = make(X, y)  # type: ignore[operator]
    with pytest.raises(ValueError, match=match):
        mlp.train(STATE, Xb, yb, 1, lr=0.1)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"batch_size": 0}, r"batch_size must be .*>= 1"),
        ({"lr": 0.0}, r"lr must be finite and > 0"),
        ({"lr": float("nan")}, r"lr must be finite"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        ({"dropout": -0.1}, r"dropout must be in \[0, 1\)"),
        ({"weight_decay": -1.0}, r"weight_decay must be finite and >= 0"),
    ],
)
def test_bad_hyperparameters(kw: dict[str, float], match: str) -> None:
    X, y = _data()
    args: dict[str, float] = {"lr": 0.1, **kw}
    with pytest.raises(ValueError, match=match):
        mlp.train(STATE, X, y, 1, **args)


def test_bad_architecture() -> None:
    with pytest.raises(ValueError, match="activation must be one of"):
        mlp.init_state(4, [8], 3, activation="swish")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        mlp.init_state(4, [8], 3, optimizer="lbfgs")
    with pytest.raises(ValueError, match="hidden must list 1 to 3"):
        mlp.init_state(4, [8, 8, 8, 8], 3)
    with pytest.raises(ValueError, match="hidden must list 1 to 3"):
        mlp.init_state(4, [], 3)
    with pytest.raises(ValueError, match=r"hidden\[1\] must be in"):
        mlp.init_state(4, [8, 0], 3)
    with pytest.raises(ValueError, match="n_out"):
        mlp.init_state(4, [8], 1)


def test_raw_binding_checks_dtype_and_layout() -> None:
    X, y = _data()
    with pytest.raises(ValueError, match="X must have dtype float32"):
        _kernel.train(STATE, X.astype(np.float64), y, 1, 8, 0.1)
    with pytest.raises(ValueError, match="y must have dtype int32"):
        _kernel.train(STATE, X, y.astype(np.int64), 1, 8, 0.1)
    with pytest.raises(ValueError, match="X must be a C-contiguous"):
        _kernel.train(STATE, np.asfortranarray(X), y, 1, 8, 0.1)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        _kernel.train(STATE, X, y, 1, 0, 0.1)


def _refresh_checksum(state: bytes) -> bytes:
    body = state[:-8]
    h = 0xCBF29CE484222325
    for byte in body:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return body + struct.pack("<Q", h)


def test_checksum_is_fnv1a64() -> None:
    assert _refresh_checksum(STATE) == STATE


@pytest.mark.parametrize(
    "corrupt, match",
    [
        (lambda s: s[:-1], "truncated"),
        (lambda s: s[:50], "truncated"),
        (lambda s: b"", "truncated"),
        (lambda s: s + b"\0", "longer than its header"),
        (lambda s: s[:100] + bytes([s[100] ^ 1]) + s[101:], "checksum mismatch"),
        (lambda s: b"XXXX" + s[4:], "bad magic"),
        (lambda s: s[:4] + struct.pack("<I", 2) + s[8:], "version 2"),
        (lambda s: _refresh_checksum(s[:16] + struct.pack("<I", 5) + s[20:]), "corrupted"),
        (lambda s: _refresh_checksum(s[:36] + struct.pack("<I", 99) + s[40:]), "activation"),
    ],
)
def test_corrupted_state(corrupt: object, match: str) -> None:
    X, y = _data()
    bad = corrupt(STATE)  # type: ignore[operator]
    calls: list[Callable[[], object]] = [
        lambda: mlp.train(bad, X, y, 1, lr=0.1),
        lambda: mlp.evaluate(bad, X, y),
        lambda: mlp.info(bad),
        lambda: mlp.loss_grad(bad, X, y),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=match):
            call()


def test_state_header_fields() -> None:
    magic, version, header = struct.unpack_from("<4sII", STATE)
    assert (magic, version, header) == (b"ASHK", 1, 88)
    info = mlp.info(STATE)
    assert info.n_params == 4 * 8 + 8 + 8 * 3 + 3
    assert len(STATE) == 88 + 4 * 2 * info.n_params + 8
