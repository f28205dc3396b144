"""The soak test's trainable: checks that every job resumes from the checkpoint it must.

Its state is JSON with the resource trained so far; a job whose state does not match its
``start`` raises, which fails the result with "resumed from ..." in the study's errors.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any


def fit(
    config: dict[str, Any], start: float, stop: float, state: bytes | None
) -> tuple[dict[str, float], bytes]:
    done = 0.0 if state is None else json.loads(state)["done"]
    if done != start:
        raise RuntimeError(f"resumed from {done}, expected {start}")
    time.sleep(float(os.environ.get("SOAK_SLEEP", "0.01")) * (stop - start) ** 0.5)
    loss = (config["x"] - 0.3) ** 2 + 1.0 / stop
    return {"loss": loss}, json.dumps({"done": stop}).encode()
