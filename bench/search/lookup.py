"""The recorded objective every system in bench/search sees: a curves file plus its search space.

A recording (``ash record``) holds a finite set of configurations, each trained one unit at a
time to R. The samplers compared here propose configurations anywhere in the recording's search
space (its spec's ``[space]``), so each proposal is answered by the NEAREST recorded
configuration, with one distance for every system:

- a float or integer parameter is placed in [0, 1] as ash's space does (``Domain.unit``: linear,
  or logarithmic for ``log_uniform`` and ``log = true``);
- a choice of numbers (hidden units, batch size, layers) is ordinal: its index over (n - 1);
- a choice of strings (activation, optimizer) counts 1 when it differs, 0 when equal.

The distance is Euclidean over those coordinates; ties go to the lowest row. Uniform random
sampling in the space therefore lands on recorded configuration i with the probability of its
cell (the part of the space nearer to it than to any other), and a model-based sampler that
concentrates its proposals in a good region lands on the recorded configurations there: the
lookup is the same function for ash, Optuna and DEHB.

``Recording`` also carries the quantities every table uses (time(R), the target, the best final
value); they are defined as in bench/efficiency (see run.py).
"""

from __future__ import annotations

import gzip
import json
import math
import statistics
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ash.scheduler.core.space import Choice, Config, SearchSpace


@dataclass
class Recording:
    """A curves file, its space and the derived constants (times in seconds)."""

    name: str
    curves: Path
    space_table: dict[str, Any]
    metric: str
    mode: str
    resources: list[float]
    rows: list[dict[str, Any]]
    time_r: float = 0.0  # mean time to train one recorded configuration to R
    best: float = 0.0  # best final value over all recorded configurations
    target: float = 0.0  # the quantile's final value
    space: SearchSpace = field(init=False)

    def __post_init__(self) -> None:
        self.space = SearchSpace.from_table(self.space_table)

    @property
    def max_resource(self) -> float:
        return float(self.resources[-1])

    @property
    def sign(self) -> float:
        return 1.0 if self.mode == "min" else -1.0


def load(name: str, curves: Path, spec: Path, quantile: float) -> Recording:
    """Read a curves file and the ``[space]`` table of the spec it was recorded with."""
    doc = json.loads(gzip.decompress(curves.read_bytes()))
    with spec.open("rb") as f:
        space_table = tomllib.load(f)["space"]
    rec = Recording(
        name, curves, space_table, doc["metric"], doc["mode"], doc["resources"], doc["trials"]
    )
    finals = sorted(
        (r["values"][-1] for r in rec.rows if r["values"][-1] is not None),
        key=lambda v: rec.sign * v,
    )
    rec.best = finals[0]
    rec.target = finals[max(1, math.ceil(quantile * len(finals))) - 1]
    rec.time_r = statistics.fmean(r["seconds_per_unit"] for r in rec.rows) * rec.max_resource
    return rec


class Embedding:
    """Configurations of one space as points, for the nearest-neighbour lookup."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.parts: list[tuple[str, Any, list[Any] | None]] = []
        for name, dom in space.domains.items():
            if isinstance(dom, Choice) and not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in dom.values
            ):
                self.parts.append((name, dom, list(dom.values)))  # one-hot
            else:
                self.parts.append((name, dom, None))

    def point(self, config: Config) -> list[float]:
        out: list[float] = []
        for name, dom, cats in self.parts:
            value = config[name]
            if cats is None:
                out.append(dom.unit(value))
            else:
                # one-hot scaled so that two different values are at distance 1
                out.extend((1.0 if value == c else 0.0) / math.sqrt(2) for c in cats)
        return out


class Lookup:
    """The ``Benchmark`` the simulator and the peers' drivers query (nearest recorded config)."""

    def __init__(self, rec: Recording) -> None:
        self.rec = rec
        self.metric = rec.metric
        self.mode = rec.mode
        self.embedding = Embedding(rec.space)
        self.points = np.array([self.embedding.point(r["config"]) for r in rec.rows])
        self._cache: dict[str, int] = {}
        self.rows_used: set[int] = set()

    def sampler(self) -> None:
        return None  # the core samples from the spec's space with its own sampler

    def row(self, config: Config) -> int:
        key = json.dumps(config, sort_keys=True)
        i = self._cache.get(key)
        if i is None:
            p = np.array(self.embedding.point(config))
            i = int(np.argmin(((self.points - p) ** 2).sum(axis=1)))
            self._cache[key] = i
        self.rows_used.add(i)
        return i

    def value(self, i: int, resource: float) -> float | None:
        k = _index_at_least(self.rec.resources, resource)
        v = self.rec.rows[i]["values"][k]
        return None if v is None else float(v)

    def spu(self, i: int) -> float:
        return float(self.rec.rows[i]["seconds_per_unit"])

    # the Benchmark protocol of ash.scheduler.benchmarks (for ash's simulator)
    def evaluate(self, trial: int, config: Config, resource: float) -> float | None:
        return self.value(self.row(config), resource)

    def seconds(self, trial: int, config: Config, start: float, stop: float) -> float:
        return self.spu(self.row(config)) * (stop - start)


def _index_at_least(resources: list[float], r: float) -> int:
    import bisect

    i = bisect.bisect_left(resources, r - 1e-9)
    if i >= len(resources):
        raise ValueError(f"resource {r} is beyond the recording's last {resources[-1]}")
    return i
