"""A user trainable in JAX (install the ``jax`` extra): an MLP on the bundled digits dataset.

``train(config, ctx)``: full-batch SGD with momentum, one jitted step per epoch; each epoch is
reported with ``ctx.report(epoch, ...)`` from a jitted evaluation. The parameters and momentum
buffers are saved as plain ``.npy`` files (no pickle) into ``ctx.checkpoint_dir()``, and a
promoted trial loads them from ``ctx.restore_dir()``, so its epochs continue where they stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ash.worker.datasets import cached_split

NAMES = ("W1", "b1", "W2", "b2")


def _loss(params: dict[str, jax.Array], X: jax.Array, y: jax.Array) -> jax.Array:
    h = jnp.tanh(X @ params["W1"] + params["b1"])
    logits = h @ params["W2"] + params["b2"]
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(y.shape[0]), y])


@jax.jit
def _step(
    params: dict[str, jax.Array],
    velocity: dict[str, jax.Array],
    X: jax.Array,
    y: jax.Array,
    lr: jax.Array,
    momentum: jax.Array,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array], jax.Array]:
    """One epoch: a full-batch gradient step with momentum."""
    loss, g = jax.value_and_grad(_loss)(params, X, y)
    velocity = {k: momentum * velocity[k] - lr * g[k] for k in params}
    return {k: params[k] + velocity[k] for k in params}, velocity, loss


@jax.jit
def _evaluate(params: dict[str, jax.Array], X: jax.Array, y: jax.Array) -> tuple[Any, Any]:
    logits = jnp.tanh(X @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]
    loss = -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(y.shape[0]), y])
    return loss, jnp.mean(jnp.argmax(logits, axis=1) == y)


def _init(config: dict[str, Any], d: int, k: int) -> tuple[dict[str, Any], dict[str, Any]]:
    h = int(config["hidden"])
    keys = jax.random.split(jax.random.PRNGKey(int(config.get("seed", 0))), 2)
    params = {
        "W1": jax.random.normal(keys[0], (d, h)) * jnp.sqrt(1.0 / d),
        "b1": jnp.zeros(h),
        "W2": jax.random.normal(keys[1], (h, k)) * jnp.sqrt(1.0 / h),
        "b2": jnp.zeros(k),
    }
    return params, {n: jnp.zeros_like(v) for n, v in params.items()}


def train(config: dict[str, Any], ctx: Any) -> dict[str, float]:
    data = cached_split("digits", ".", 0.3, 0)
    restore = ctx.restore_dir()
    if restore is None:
        params, velocity = _init(config, data.X_train.shape[1], data.n_classes)
        done = 0
    else:
        folder = Path(restore)
        params = {n: jnp.asarray(np.load(folder / f"{n}.npy")) for n in NAMES}
        velocity = {n: jnp.asarray(np.load(folder / f"v{n}.npy")) for n in NAMES}
        done = int(np.load(folder / "epochs.npy"))
    if done != int(ctx.start):
        raise RuntimeError(f"checkpoint holds {done} epochs but the job starts at {ctx.start}")
    X, y = jnp.asarray(data.X_train), jnp.asarray(data.y_train)
    Xv, yv = jnp.asarray(data.X_val), jnp.asarray(data.y_val)
    lr, momentum = jnp.float32(config["lr"]), jnp.float32(config["momentum"])
    metrics: dict[str, float] = {}
    for e in range(done, int(ctx.stop)):
        params, velocity, train_loss = _step(params, velocity, X, y, lr, momentum)
        val_loss, accuracy = _evaluate(params, Xv, yv)
        metrics = {
            "val_loss": float(val_loss),
            "val_accuracy": float(accuracy),
            "train_loss": float(train_loss),
            "epochs": e + 1,
        }
        ctx.report(e + 1, **metrics)
    out = Path(ctx.checkpoint_dir())
    for n in NAMES:
        np.save(out / f"{n}.npy", np.asarray(params[n]))
        np.save(out / f"v{n}.npy", np.asarray(velocity[n]))
    np.save(out / "epochs.npy", np.int64(ctx.stop))
    return metrics
