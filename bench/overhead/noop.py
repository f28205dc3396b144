"""A no-op trainer for the overhead benchmark: costs nothing, deterministic in config and stop.

``fit(config, start, stop, state)`` is ash's Python trainer contract (DESIGN section 3); the peers'
objectives in ``run.py`` call :func:`loss` too, so every system ranks the same values.
"""

from __future__ import annotations

import math
from typing import Any


def loss(x: float, r: float) -> float:
    """Deterministic in (x, resource) and not monotone in x."""
    return (x - 0.3) ** 2 + 0.1 * math.sin(40.0 * x + r) / math.sqrt(r)


def fit(
    config: dict[str, Any], start: float, stop: float, state: bytes | None
) -> tuple[dict[str, float], bytes | None]:
    return {"loss": loss(float(config["x"]), float(stop))}, None
