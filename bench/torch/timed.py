"""bench/torch/timed.py: examples/torch_digits.py with clocks, the same for every tuner.

Importing it wraps ``torch_digits.epoch`` and ``torch_digits.build`` in place, so every tuner's
trainer (ash's slot, Ray's actor, Optuna's process), which calls them through the module, is
timed the same way; ``train`` is ash's ``(config, ctx)`` trainer with a clock per call. A module,
not a closure, because ash spawns its slots and Ray its workers: each imports it by name (its
folder on PYTHONPATH) and appends to the file that ``BENCH_TORCH_LOG`` names, one JSON line
per epoch (``epoch_s``) and per ash job (``call``, its epochs and model build). Clocks are
``time.perf_counter`` (CLOCK_MONOTONIC, one clock for every process of the machine).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import torch_digits

_epoch, _build, _train = torch_digits.epoch, torch_digits.build, torch_digits.train
_spent = {"epochs_s": 0.0, "build_s": 0.0}


def _log(row: dict[str, Any]) -> None:
    path = os.environ.get("BENCH_TORCH_LOG")
    if path:
        with open(path, "a") as f:  # one short O_APPEND write per line: lines never interleave
            f.write(json.dumps({"pid": os.getpid(), **row}) + "\n")


def epoch(*a: Any) -> Any:
    t = time.perf_counter()
    try:
        return _epoch(*a)
    finally:
        s = time.perf_counter() - t
        _spent["epochs_s"] += s
        _log({"epoch_s": s})


def build(config: dict[str, Any]) -> Any:
    t = time.perf_counter()
    try:
        return _build(config)
    finally:
        _spent["build_s"] += time.perf_counter() - t


torch_digits.epoch, torch_digits.build = epoch, build  # type: ignore[assignment]


def train(config: dict[str, Any], ctx: Any) -> dict[str, float]:
    _spent["epochs_s"] = _spent["build_s"] = 0.0
    t = time.perf_counter()
    out = _train(config, ctx)
    t1 = time.perf_counter()
    _log({"t0": t, "t1": t1, "call": t1 - t, "epochs": int(ctx.stop - ctx.start), **_spent})
    return out
