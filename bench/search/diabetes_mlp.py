"""A Python trainer for bench/search's regression recording: scikit-learn's MLPRegressor on the
diabetes data set that scikit-learn ships (442 rows x 10 features, no download).

The rows are split once (70% train / 30% validation, fixed seed); features and target are
standardised on the training rows, so ``val_mse`` is the validation mean squared error in units
of the target's variance (1.0 = predicting the mean). One unit of resource is one epoch
(``partial_fit`` makes one pass over the training rows); the state between jobs is the pickled
model, so a promoted trial resumes where it stopped. A diverged model (non-finite error) reports
``val_mse = inf``, which ``ash record`` records as a failure.
"""

from __future__ import annotations

import functools
import math
import pickle
import warnings
from typing import Any

import numpy as np


@functools.cache
def _data() -> tuple[Any, Any, Any, Any]:
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    cut = int(0.7 * len(y))
    tr, va = order[:cut], order[cut:]
    mx, sx = X[tr].mean(0), X[tr].std(0)
    my, sy = y[tr].mean(), y[tr].std()
    return (X[tr] - mx) / sx, (y[tr] - my) / sy, (X[va] - mx) / sx, (y[va] - my) / sy


def train(
    config: dict[str, Any], start: float, stop: float, state: bytes | None
) -> tuple[dict[str, float], bytes | None]:
    from sklearn.neural_network import MLPRegressor

    Xt, yt, Xv, yv = _data()
    if state is None:
        width, layers = int(config["hidden"]), int(config["layers"])
        model = MLPRegressor(
            hidden_layer_sizes=(width,) * layers,
            activation=config["activation"],
            solver=config["optimizer"],
            alpha=float(config["weight_decay"]),
            batch_size=int(config["batch_size"]),
            learning_rate_init=float(config["lr"]),
            momentum=float(config["momentum"]),
            random_state=0,
        )
    else:
        model = pickle.loads(state)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for _ in range(round(stop - start)):
            model.partial_fit(Xt, yt)
        pred = model.predict(Xv)
        mse = float(np.mean((pred - yv) ** 2))
    if not math.isfinite(mse):
        return {"val_mse": math.inf}, None
    return {"val_mse": mse}, pickle.dumps(model)
