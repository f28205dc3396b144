"""Numerics of the native MLP kernel: gradients against a numpy reference, learning, resume."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from ash.native import mlp

F64 = npt.NDArray[np.float64]


def _act(name: str, z: F64) -> F64:
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "leaky_relu":
        leaky: F64 = np.where(z > 0.0, z, 0.01 * z)
        return leaky
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    assert name == "gelu"
    gelu: F64 = 0.5 * z * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (z + 0.044715 * z**3)))
    return gelu


def _ref_logits(layers: list[tuple[F64, F64]], X: F64, act: str) -> F64:
    a = X
    for w, b in layers[:-1]:
        a = _act(act, a @ w + b)
    w, b = layers[-1]
    return a @ w + b


def _ref_loss(
    layers: list[tuple[F64, F64]], X: F64, y: npt.NDArray[np.int32], act: str, wd: float
) -> float:
    z = _ref_logits(layers, X, act)
    m = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - m).sum(axis=1)) + m[:, 0]
    ce = float(np.mean(lse - z[np.arange(len(y)), y]))
    return ce + 0.5 * wd * sum(float((w**2).sum()) for w, _ in layers)


def _blobs(
    n: int, d: int, c: int, seed: int, spread: float = 3.0
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(c, d)) * spread
    y = (np.arange(n) % c).astype(np.int32)
    rng.shuffle(y)
    X = (centers[y] + rng.normal(size=(n, d))).astype(np.float32)
    return X, y


@pytest.mark.parametrize("activation", mlp.ACTIVATIONS)
@pytest.mark.parametrize("hidden", [[7], [7, 6], [5, 6, 4]])
def test_gradient_matches_finite_differences(activation: str, hidden: list[int]) -> None:
    X32, y = _blobs(23, 5, 3, seed=1, spread=1.0)
    wd = 0.01
    state = mlp.init_state(5, hidden, 3, activation=activation, seed=3)
    layers = [(w.astype(np.float64), b.astype(np.float64)) for w, b in mlp.params(state)]
    X = X32.astype(np.float64)
    loss, grads = mlp.loss_grad(state, X32, y, weight_decay=wd)
    assert loss == pytest.approx(_ref_loss(layers, X, y, activation, wd), rel=1e-5)
    h = 1e-6
    for (w, b), (gw, gb) in zip(layers, grads, strict=True):
        for p, g in ((w, gw), (b, gb)):
            flat, gflat = p.reshape(-1), g.reshape(-1)
            fd = np.empty_like(flat)
            for i in range(flat.size):
                old = flat[i]
                flat[i] = old + h
                up = _ref_loss(layers, X, y, activation, wd)
                flat[i] = old - h
                down = _ref_loss(layers, X, y, activation, wd)
                flat[i] = old
                fd[i] = (up - down) / (2 * h)
            np.testing.assert_allclose(gflat, fd, rtol=2e-3, atol=2e-5)


def test_evaluate_matches_numpy_forward() -> None:
    X, y = _blobs(700, 6, 4, seed=2, spread=0.7)  # > one 256-row evaluation block
    state = mlp.init_state(6, [16, 8], 4, activation="tanh", seed=5)
    state = mlp.train(state, X, y, 3, lr=0.05, momentum=0.9, batch_size=50).state
    layers = [(w.astype(np.float64), b.astype(np.float64)) for w, b in mlp.params(state)]
    z = _ref_logits(layers, X.astype(np.float64), "tanh")
    ev = mlp.evaluate(state, X, y)
    assert ev.loss == pytest.approx(
        _ref_loss(layers, X.astype(np.float64), y, "tanh", 0.0), rel=1e-4
    )
    assert ev.accuracy == pytest.approx(float(np.mean(z.argmax(axis=1) == y)))


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.05), ("adam", 0.01)])
def test_learns_separable_blobs(optimizer: str, lr: float) -> None:
    X, y = _blobs(600, 10, 4, seed=0)
    Xv, yv = X[400:], y[400:]
    state = mlp.init_state(10, [32], 4, optimizer=optimizer, seed=0)
    before = mlp.evaluate(state, Xv, yv)
    res = mlp.train(
        state,
        X[:400],
        y[:400],
        20,
        lr=lr,
        momentum=0.9,
        batch_size=32,
        dropout=0.1,
        weight_decay=1e-4,
    )
    assert not res.diverged and res.epochs_run == 20
    after = mlp.evaluate(res.state, Xv, yv)
    assert after.loss < before.loss and after.accuracy >= 0.95
    assert mlp.info(res.state).epochs_done == 20
    assert mlp.info(res.state).step == 20 * 13


def test_iris_reaches_95_percent() -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    selection = pytest.importorskip("sklearn.model_selection")
    iris = datasets.load_iris()
    X, y = np.asarray(iris.data), np.asarray(iris.target, dtype=np.int32)
    Xtr, Xva, ytr, yva = selection.train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    mu, sd = Xtr.mean(axis=0), Xtr.std(axis=0)
    Xtr, Xva = (Xtr - mu) / sd, (Xva - mu) / sd
    for seed in range(3):
        state = mlp.init_state(4, [64], 3, activation="relu", seed=seed)
        res = mlp.train(
            state, Xtr, ytr, 50, lr=0.02, momentum=0.9, weight_decay=1e-3, batch_size=16
        )
        assert mlp.evaluate(res.state, Xva, yva).accuracy >= 0.95


@pytest.mark.parametrize("optimizer", mlp.OPTIMIZERS)
@pytest.mark.parametrize("batch_size", [16, 10_000])
def test_resume_is_identical_to_one_call(optimizer: str, batch_size: int) -> None:
    X, y = _blobs(300, 8, 3, seed=4, spread=1.0)
    kw = dict(lr=0.01, momentum=0.8, weight_decay=1e-3, dropout=0.2, batch_size=batch_size)
    s0 = mlp.init_state(8, [24, 12], 3, activation="gelu", optimizer=optimizer, seed=9)
    one = mlp.train(s0, X, y, 9, **kw).state
    s = s0
    for upto in (1, 3, 9):
        s = mlp.train(s, X, y, upto - mlp.info(s).epochs_done, **kw).state
    assert s == one
    assert mlp.info(one).epochs_done == 9


def test_same_seed_same_state_other_seed_differs() -> None:
    X, y = _blobs(200, 4, 2, seed=6)
    a = mlp.train(mlp.init_state(4, [8], 2, seed=1), X, y, 2, lr=0.1, dropout=0.3).state
    b = mlp.train(mlp.init_state(4, [8], 2, seed=1), X, y, 2, lr=0.1, dropout=0.3).state
    c = mlp.train(mlp.init_state(4, [8], 2, seed=2), X, y, 2, lr=0.1, dropout=0.3).state
    assert a == b and a != c


def test_divergence_is_reported_not_raised() -> None:
    X, y = _blobs(200, 4, 3, seed=7)
    state = mlp.init_state(4, [16], 3, seed=0)
    res = mlp.train(state, X * 1e3, y, 50, lr=1e6, momentum=0.9, batch_size=20)
    assert res.diverged
    assert res.train_loss == float("inf")
    assert res.epochs_run < 50
    ev = mlp.evaluate(res.state, X, y)  # the returned state is still a valid state
    assert ev.loss >= 0.0


def test_zero_epochs_returns_the_state() -> None:
    X, y = _blobs(50, 3, 2, seed=8)
    state = mlp.init_state(3, [4], 2)
    assert mlp.train(state, X, y, 0, lr=0.1).state == state


def test_mlp_class_roundtrip() -> None:
    X, y = _blobs(120, 3, 3, seed=9)
    net = mlp.MLP.create(3, [16], 3, activation="leaky_relu", optimizer="adam", seed=4)
    net.train(X, y, 5, lr=0.01, batch_size=8)
    assert net.info.epochs_done == 5
    again = mlp.MLP(net.state)
    assert again.evaluate(X, y) == net.evaluate(X, y)
    assert [w.shape for w, _ in again.params()] == [(3, 16), (16, 3)]


_ISA_SCRIPT = """
import sys, numpy as np
from ash.native import isa, mlp
rng = np.random.default_rng(0)
X = rng.normal(size=(300, 37)).astype(np.float32)
y = (np.arange(300) % 3).astype(np.int32)
s = mlp.init_state(37, [45, 19], 3, activation="tanh", seed=1)
s = mlp.train(s, X, y, 2, lr=0.05, momentum=0.9, batch_size=64).state
loss, grads = mlp.loss_grad(s, X, y, weight_decay=1e-3)
flat = np.concatenate([np.concatenate([w.ravel(), b]) for w, b in grads])
sys.stdout.write(isa() + " " + repr(loss) + "\\n")
np.save(sys.argv[1], flat)
"""


@pytest.mark.parametrize("forced", ["avx2", "generic"])
def test_every_gemm_path_agrees(forced: str, tmp_path: Path) -> None:
    """The AVX2 and portable micro-kernels give what the default one gives (odd sizes, edges)."""
    out = {}
    for name, env in (("default", {}), (forced, {"ASH_GEMM_ISA": forced})):
        path = tmp_path / f"{name}.npy"
        proc = subprocess.run(
            [sys.executable, "-c", _ISA_SCRIPT, str(path)],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        chosen, loss = proc.stdout.split()
        if name != "default" and chosen != forced:
            pytest.skip(f"this CPU cannot run the {forced} kernel")
        out[name] = (float(loss), np.load(path))
    assert out[forced][0] == pytest.approx(out["default"][0], rel=1e-4)
    np.testing.assert_allclose(out[forced][1], out["default"][1], rtol=2e-3, atol=2e-5)
