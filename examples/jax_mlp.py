"""A user trainable in JAX (install the ``jax`` extra): an MLP on the bundled digits dataset.

Same contract as every trainer: ``fn(config, start, stop, state) -> (metrics, state)``. The
whole span of epochs runs in one jitted ``lax.fori_loop`` (full-batch SGD with momentum), so
the Python overhead per job is one call. The state is an .npz archive of the parameters and
momentum buffers (no pickle).
"""

from __future__ import annotations

import io
from functools import partial
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


@partial(jax.jit, static_argnames=("epochs",))
def _fit(
    params: dict[str, jax.Array],
    velocity: dict[str, jax.Array],
    X: jax.Array,
    y: jax.Array,
    lr: float,
    momentum: float,
    epochs: int,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array], jax.Array]:
    def step(_: int, carry: tuple[Any, Any, jax.Array]) -> tuple[Any, Any, jax.Array]:
        p, v, _loss_value = carry
        loss, g = jax.value_and_grad(_loss)(p, X, y)
        v = {k: momentum * v[k] - lr * g[k] for k in p}
        return {k: p[k] + v[k] for k in p}, v, loss

    return jax.lax.fori_loop(0, epochs, step, (params, velocity, jnp.array(jnp.nan)))


def train(
    config: dict[str, Any], start: float, stop: float, state: bytes | None
) -> tuple[dict[str, float], bytes]:
    data = cached_split("digits", ".", 0.3, 0)
    d, k, h = data.X_train.shape[1], data.n_classes, int(config["hidden"])
    if state is None:
        keys = jax.random.split(jax.random.PRNGKey(int(config.get("seed", 0))), 2)
        params = {
            "W1": jax.random.normal(keys[0], (d, h)) * jnp.sqrt(1.0 / d),
            "b1": jnp.zeros(h),
            "W2": jax.random.normal(keys[1], (h, k)) * jnp.sqrt(1.0 / h),
            "b2": jnp.zeros(k),
        }
        velocity = {n: jnp.zeros_like(v) for n, v in params.items()}
    else:
        with np.load(io.BytesIO(state), allow_pickle=False) as z:
            params = {n: jnp.asarray(z[n]) for n in NAMES}
            velocity = {n: jnp.asarray(z["v" + n]) for n in NAMES}
    X, y = jnp.asarray(data.X_train), jnp.asarray(data.y_train)
    params, velocity, train_loss = _fit(
        params,
        velocity,
        X,
        y,
        float(config["lr"]),
        float(config["momentum"]),
        int(stop - start),
    )
    Xv, yv = jnp.asarray(data.X_val), jnp.asarray(data.y_val)
    h_val = jnp.tanh(Xv @ params["W1"] + params["b1"])
    logits = h_val @ params["W2"] + params["b2"]
    metrics = {
        "val_loss": float(_loss(params, Xv, yv)),
        "val_accuracy": float(jnp.mean(jnp.argmax(logits, axis=1) == yv)),
        "train_loss": float(train_loss),
    }
    buf = io.BytesIO()
    np.savez(
        buf,
        **{n: np.asarray(params[n]) for n in NAMES},
        **{"v" + n: np.asarray(velocity[n]) for n in NAMES},
    )
    return metrics, buf.getvalue()
