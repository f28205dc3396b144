"""Threading of the native kernel: threadpoolctl limits reach it; 1 and 2 threads agree."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from ash.native import _kernel, mlp, omp_max_threads

needs_two = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores")


def _data(n: int = 3000, d: int = 32, c: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    y = (np.arange(n) % c).astype(np.int32)
    X = (rng.normal(size=(c, d))[y] + rng.normal(size=(n, d))).astype(np.float32)
    return X, y


def test_threadpool_info_lists_the_kernels_openmp() -> None:
    libs = [i for i in threadpool_info() if i["user_api"] == "openmp"]
    assert any("libgomp" in i["filepath"] for i in libs), libs


@needs_two
def test_limit_is_honoured_inside_the_kernel() -> None:
    X, y = _data()
    state = mlp.init_state(32, [256], 5, seed=0)
    for k in (1, 2):
        with threadpool_limits(limits=k, user_api="openmp"):
            assert omp_max_threads() == k
            assert mlp.train(state, X, y, 1, lr=0.01, batch_size=256).threads == k


@needs_two
def test_limit_is_per_calling_thread() -> None:
    seen: list[int] = []
    with threadpool_limits(limits=1, user_api="openmp"):
        t = threading.Thread(target=lambda: seen.append(omp_max_threads()))
        t.start()
        t.join()
        assert omp_max_threads() == 1
    assert seen == [_kernel.omp_max_threads()]


@needs_two
@pytest.mark.parametrize("optimizer", mlp.OPTIMIZERS)
@pytest.mark.parametrize("batch_size,dropout", [(256, 0.0), (100, 0.3), (10_000, 0.1)])
def test_one_and_two_threads_agree(optimizer: str, batch_size: int, dropout: float) -> None:
    X, y = _data()
    state = mlp.init_state(32, [128, 64], 5, activation="tanh", optimizer=optimizer, seed=3)
    out = {}
    for k in (1, 2):
        with threadpool_limits(limits=k, user_api="openmp"):
            res = mlp.train(
                state,
                X,
                y,
                3,
                lr=0.01,
                momentum=0.9,
                weight_decay=1e-4,
                dropout=dropout,
                batch_size=batch_size,
            )
            assert res.threads == k
            out[k] = res
    for (w1, b1), (w2, b2) in zip(mlp.params(out[1].state), mlp.params(out[2].state), strict=True):
        np.testing.assert_allclose(w1, w2, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(b1, b2, rtol=1e-5, atol=1e-7)
    assert out[1].train_loss == pytest.approx(out[2].train_loss, rel=1e-5)
    # the chunking does not depend on the thread count: the states are in fact identical
    assert out[1].state == out[2].state
