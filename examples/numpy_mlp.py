"""A user trainable in plain numpy: a one-hidden-layer MLP on the bundled digits dataset.

It follows ash's trainer contract, ``fn(config, start, stop, state) -> (metrics, state)``:
train from epoch ``start`` to ``stop``, resuming from ``state`` (bytes this function returned
for the same trial last time, None at rung 0). The state is an .npz archive of the weights and
the momentum buffers (no pickle), so a promoted trial resumes instead of retraining.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ash.worker.datasets import cached_split


def _unpack(state: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(state), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _pack(params: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **params)
    return buf.getvalue()


def train(
    config: dict[str, Any], start: float, stop: float, state: bytes | None
) -> tuple[dict[str, float], bytes]:
    data = cached_split("digits", ".", 0.3, 0)
    X, y = data.X_train, data.y_train
    n, d = X.shape
    k, h = data.n_classes, int(config["hidden"])
    rng = np.random.default_rng(int(config.get("seed", 0)))
    if state is None:
        p = {
            "W1": rng.normal(0, np.sqrt(2 / d), (d, h)).astype(np.float32),
            "b1": np.zeros(h, np.float32),
            "W2": rng.normal(0, np.sqrt(1 / h), (h, k)).astype(np.float32),
            "b2": np.zeros(k, np.float32),
        }
        p.update({f"v{name}": np.zeros_like(v) for name, v in list(p.items())})
    else:
        p = _unpack(state)
    lr, mom, bs = float(config["lr"]), float(config["momentum"]), int(config["batch_size"])
    order_rng = np.random.default_rng(int(start))
    loss = float("nan")
    for _ in range(int(start), int(stop)):
        order = order_rng.permutation(n)
        for i in range(0, n, bs):
            idx = order[i : i + bs]
            xb, yb = X[idx], y[idx]
            a = np.maximum(xb @ p["W1"] + p["b1"], 0)
            z = a @ p["W2"] + p["b2"]
            z -= z.max(axis=1, keepdims=True)
            prob = np.exp(z)
            prob /= prob.sum(axis=1, keepdims=True)
            loss = float(-np.log(prob[np.arange(len(yb)), yb] + 1e-12).mean())
            g = prob
            g[np.arange(len(yb)), yb] -= 1
            g /= len(yb)
            grads = {"W2": a.T @ g, "b2": g.sum(0)}
            ga = (g @ p["W2"].T) * (a > 0)
            grads.update({"W1": xb.T @ ga, "b1": ga.sum(0)})
            for name, grad in grads.items():
                p[f"v{name}"] = mom * p[f"v{name}"] - lr * grad
                p[name] = p[name] + p[f"v{name}"]
    a = np.maximum(data.X_val @ p["W1"] + p["b1"], 0)
    z = a @ p["W2"] + p["b2"]
    z -= z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    val_loss = float(-logp[np.arange(len(data.y_val)), data.y_val].mean())
    acc = float((z.argmax(1) == data.y_val).mean())
    return {"val_loss": val_loss, "val_accuracy": acc, "train_loss": loss}, _pack(p)
