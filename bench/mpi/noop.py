"""The no-op trainer of bench/mpi: returns at once, deterministic in the config and ``stop``."""

from __future__ import annotations

import math
from typing import Any


def fit(
    config: dict[str, Any], start: float, stop: float, state: bytes | None
) -> tuple[dict[str, float], bytes | None]:
    x = float(config["x"])
    return {"loss": (x - 0.3) ** 2 + 0.1 * math.sin(40.0 * x + stop) / math.sqrt(stop)}, None
