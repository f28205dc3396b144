"""Shared test helpers: paths, and specs built from plain dicts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ash.scheduler.spec import StudySpec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent


def make_spec(algorithm: str = "asha", mode: str = "min", seed: int = 0, **asha: Any) -> StudySpec:
    table: dict[str, Any] = {"min_resource": 1, "max_resource": 27, "reduction_factor": 3}
    table.update(asha)
    if "max_trials" not in table and "time_limit_s" not in table:
        table["max_trials"] = 50
    return parse_spec(
        {
            "study": {
                "name": "t",
                "metric": "loss",
                "mode": mode,
                "seed": seed,
                "algorithm": algorithm,
            },
            "asha": table,
            "space": {"x": {"uniform": [0.0, 1.0]}, "k": {"choice": ["a", "b"]}},
        },
        source="test.toml",
    )
