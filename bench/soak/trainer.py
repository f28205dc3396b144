"""The soak test's trainable: checks that every job resumes from the checkpoint it must.

Its state is JSON with the resource trained so far; a job whose state does not match its
``start`` raises, which fails the result with "resumed from ..." in the study's errors.

Environment (all optional): ``SOAK_SLEEP`` scales the default sleep (0.01 s x sqrt(work));
``SOAK_JOB_S="lo,hi"`` makes every job sleep between lo and hi seconds instead (long jobs);
``SOAK_ECHO=1`` returns the config's numbers as metrics ``cfg_<name>``, so a result can be
checked against the config it was trained with; ``SOAK_LOG=FILE`` appends one JSON line per
finished job (config, start, stop, seconds), from which the soak counts training redone.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any


def job_seconds(config: dict[str, Any], start: float, stop: float) -> float:
    span = os.environ.get("SOAK_JOB_S")
    if span:
        lo, hi = (float(v) for v in span.split(","))
        spread = (float(config["x"]) * 7919.0) % 1.0
        return lo + (hi - lo) * spread
    return float(os.environ.get("SOAK_SLEEP", "0.01")) * math.sqrt(stop - start)


def fit(
    config: dict[str, Any], start: float, stop: float, state: bytes | None
) -> tuple[dict[str, float], bytes]:
    done = 0.0 if state is None else json.loads(state)["done"]
    if done != start:
        raise RuntimeError(f"resumed from {done}, expected {start}")
    t0 = time.monotonic()
    time.sleep(job_seconds(config, start, stop))
    loss = (config["x"] - 0.3) ** 2 + 1.0 / stop
    metrics = {"loss": loss}
    if os.environ.get("SOAK_ECHO"):
        metrics.update({f"cfg_{k}": float(v) for k, v in config.items()})
    log = os.environ.get("SOAK_LOG")
    if log:
        line = {"config": config, "start": start, "stop": stop, "s": time.monotonic() - t0}
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(line) + "\n").encode())  # one write: lines never interleave
        finally:
            os.close(fd)
    return metrics, json.dumps({"done": stop}).encode()
