"""Simulated objectives for ``ash simulate``: synthetic learning curves and recorded ones.

A benchmark answers, for a trial's configuration, the metric after training to a resource and
the seconds a job from ``start`` to ``stop`` takes. Everything is a pure function of the benchmark
seed, the configuration and the resource (stable hashes, never Python's salted ``hash``), so a
simulation is reproducible across processes.

- Synthetic: a family of power-law learning curves. A configuration's final loss is a weighted
  bowl around a hidden optimum in the unit cube of the search space; its convergence rate and its
  cost per unit of resource vary per configuration, so early rankings are informative but not
  exact (curves cross), as in real training. Gaussian noise per (configuration, resource).
- Recorded: the curves-file format (``ash-curves`` version 1, JSON, optionally gzipped) that
  ``ash record`` writes: per configuration, the metric at each recorded resource and the seconds
  per unit of resource. Trials sample recorded configurations uniformly (with replacement).
  ``ash simulate`` replays a recording only for a spec it fits (``Recorded.check_fits``): the
  same metric and mode (the core ranks by the spec's mode; a recording of another metric or
  direction would be ranked backwards), every configuration inside the spec's ``[space]``, and
  resources up to the spec's ``max_resource``.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ash.errors import UserError
from ash.scheduler.core.space import Config, SearchSpace, SpaceError

CURVES_FORMAT = "ash-curves"
CURVES_VERSION = 1


class BenchmarkError(UserError, ValueError):
    """A benchmark name, option or file is unusable; the message names it."""


class Benchmark(Protocol):
    metric: str
    mode: str

    def sampler(self) -> Any:
        """A config sampler to use instead of the spec's space, or None."""

    def evaluate(self, trial: int, config: Config, resource: float) -> float | None: ...

    def seconds(self, trial: int, config: Config, start: float, stop: float) -> float: ...


def stable_unit(*parts: object) -> float:
    """A uniform number in [0, 1) from a stable hash of ``parts``."""
    h = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2.0**64


@dataclass
class Synthetic:
    space: SearchSpace
    seed: int = 0
    metric: str = "val_loss"
    mode: str = "min"
    cost: float = 1.0  # seconds per unit of resource, on average
    noise: float = 0.01
    max_resource: float = 27

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        d = len(self.space.domains)
        self._optimum = [rng.random() for _ in range(d)]
        self._weights = [0.2 + 0.8 * rng.random() for _ in range(d)]
        self._cache: dict[int, tuple[float, float, float, str]] = {}

    def sampler(self) -> None:
        return None

    def _latent(self, trial: int, config: Config) -> tuple[float, float, float, str]:
        got = self._cache.get(trial)
        if got is None:
            u = self.space.unit(config)
            bowl = sum(
                w * (x - o) ** 2 for w, x, o in zip(self._weights, u, self._optimum, strict=False)
            )
            final = 0.05 + bowl / max(1, len(u)) * 2.0
            key = json.dumps(config, sort_keys=True)
            rate = 0.4 + 1.6 * stable_unit(self.seed, "rate", key)
            speed = 0.5 + stable_unit(self.seed, "cost", key)
            got = (final, rate, speed, key)
            self._cache[trial] = got
        return got

    def evaluate(self, trial: int, config: Config, resource: float) -> float | None:
        final, rate, _, key = self._latent(trial, config)
        curve = final + 1.5 * float((1.0 + resource * 27 / self.max_resource) ** (-rate))
        if self.noise:
            u1 = max(stable_unit(self.seed, "n1", key, resource), 1e-300)
            u2 = stable_unit(self.seed, "n2", key, resource)
            curve += self.noise * math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)
        value = max(curve, 0.0)
        return value if self.mode == "min" else 1.0 / (1.0 + value)

    def seconds(self, trial: int, config: Config, start: float, stop: float) -> float:
        return self.cost * self._latent(trial, config)[2] * (stop - start)


class Recorded:
    """Replays a curves file (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        data = _read_curves(Path(path))
        self.metric: str = data["metric"]
        self.mode: str = data["mode"]
        self.resources: list[float] = data["resources"]
        self.rows: list[dict[str, Any]] = data["trials"]
        self._row_of: dict[int, int] = {}

    def check_fits(
        self, space: SearchSpace, *, metric: str, mode: str, max_resource: float
    ) -> None:
        """Raise BenchmarkError, naming this file and the field, unless the recording can stand
        for a study of this metric, mode, space and max_resource."""
        if self.metric != metric:
            raise BenchmarkError(
                f"{self.path}: metric: the recording is of {self.metric!r}, the spec's "
                f"[study] metric is {metric!r}"
            )
        if self.mode != mode:
            raise BenchmarkError(
                f"{self.path}: mode: the recording is {self.mode!r} for {metric!r}, the spec's "
                f"[study] mode is {mode!r}"
            )
        for i, row in enumerate(self.rows):
            try:
                space.check(row["config"])
            except SpaceError as exc:
                why = (
                    f"{exc.key!r} is not a parameter of [space]"
                    if exc.message == "unknown parameter"
                    else f"{exc.key}: {exc.message} (in the spec's [space])"
                )
                raise BenchmarkError(f"{self.path}: trials[{i}].config: {why}") from None
        if max_resource > self.resources[-1] + 1e-9:
            raise BenchmarkError(
                f"{self.path}: resources: the recording ends at {self.resources[-1]:g}, before "
                f"the spec's [asha] max_resource {max_resource:g}"
            )

    def sampler(self) -> Any:
        rows = self.rows
        row_of = self._row_of

        def sample(rng: random.Random) -> Config:
            i = rng.randrange(len(rows))
            config = dict(rows[i]["config"])
            row_of[id(config)] = i
            return config

        return sample

    def _row(self, trial: int, config: Config) -> dict[str, Any]:
        i = self._row_of.get(id(config))
        if i is None:
            raise BenchmarkError(f"{self.path}: trial {trial}'s config was not sampled from it")
        return self.rows[i]

    def evaluate(self, trial: int, config: Config, resource: float) -> float | None:
        row = self._row(trial, config)
        i = _index_at_least(self.resources, resource)
        if i is None:
            raise BenchmarkError(
                f"{self.path}: resource {resource} is beyond the recording's last resource "
                f"{self.resources[-1]}"
            )
        value = row["values"][i]
        return None if value is None else float(value)

    def seconds(self, trial: int, config: Config, start: float, stop: float) -> float:
        return float(self._row(trial, config)["seconds_per_unit"]) * (stop - start)


def _index_at_least(resources: list[float], r: float) -> int | None:
    import bisect

    i = bisect.bisect_left(resources, r - 1e-9)
    return i if i < len(resources) else None


def _read_curves(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        data = json.loads(raw)
    except (OSError, ValueError, EOFError) as exc:
        raise BenchmarkError(f"{path}: cannot be read as a curves file ({exc})") from None
    if not isinstance(data, Mapping) or data.get("format") != CURVES_FORMAT:
        raise BenchmarkError(f"{path}: format: expected {CURVES_FORMAT!r}")
    if data.get("version") != CURVES_VERSION:
        raise BenchmarkError(
            f"{path}: version: expected {CURVES_VERSION}, got {data.get('version')!r}"
        )
    if data.get("mode") not in ("min", "max") or not isinstance(data.get("metric"), str):
        raise BenchmarkError(f"{path}: metric/mode: expected a metric name and 'min' or 'max'")
    res = data.get("resources")
    if (
        not isinstance(res, list)
        or not res
        or not all(isinstance(x, int | float) for x in res)
        or any(b <= a for a, b in itertools.pairwise(res))
    ):
        raise BenchmarkError(f"{path}: resources: expected an increasing list of numbers")
    trials = data.get("trials")
    if not isinstance(trials, list) or not trials:
        raise BenchmarkError(f"{path}: trials: expected a non-empty list")
    for i, row in enumerate(trials):
        where = f"{path}: trials[{i}]"
        if not isinstance(row, Mapping) or not isinstance(row.get("config"), Mapping):
            raise BenchmarkError(f"{where}.config: expected a table of parameters")
        values = row.get("values")
        if not isinstance(values, list) or len(values) != len(res):
            raise BenchmarkError(f"{where}.values: expected {len(res)} values (one per resource)")
        if not all(v is None or isinstance(v, int | float) for v in values):
            raise BenchmarkError(f"{where}.values: expected numbers or null")
        spu = row.get("seconds_per_unit")
        if not isinstance(spu, int | float) or not spu >= 0:
            raise BenchmarkError(f"{where}.seconds_per_unit: expected a number >= 0")
    return dict(data)


def write_curves(
    path: str | Path,
    *,
    metric: str,
    mode: str,
    resources: list[float],
    trials: list[dict[str, Any]],
) -> None:
    """Write a curves file (gzipped when the name ends in .gz)."""
    doc = {
        "format": CURVES_FORMAT,
        "version": CURVES_VERSION,
        "metric": metric,
        "mode": mode,
        "resources": resources,
        "trials": trials,
    }
    raw = json.dumps(doc, separators=(",", ":")).encode()
    Path(path).write_bytes(gzip.compress(raw) if str(path).endswith(".gz") else raw)


def resolve(
    name: str, space: SearchSpace, *, seed: int, metric: str, mode: str, max_resource: float
) -> Benchmark:
    """``synthetic[:key=value,...]`` (keys: cost, noise) or a path to a curves file that fits
    the spec (``Recorded.check_fits``)."""
    head, _, opts = name.partition(":")
    if head != "synthetic":
        if not Path(name).exists():
            raise BenchmarkError(
                f"--benchmark {name!r}: not a built-in benchmark (synthetic) nor an existing file"
            )
        recorded = Recorded(name)
        recorded.check_fits(space, metric=metric, mode=mode, max_resource=max_resource)
        return recorded
    kwargs: dict[str, float] = {}
    for item in filter(None, opts.split(",")):
        key, eq, val = item.partition("=")
        if key not in ("cost", "noise") or not eq:
            raise BenchmarkError(f"--benchmark {name!r}: unknown option {item!r} (cost=, noise=)")
        try:
            kwargs[key] = float(val)
        except ValueError:
            raise BenchmarkError(f"--benchmark {name!r}: {key} must be a number") from None
        if not kwargs[key] >= 0:
            raise BenchmarkError(f"--benchmark {name!r}: {key} must be >= 0")
    return Synthetic(
        space, seed=seed, metric=metric, mode=mode, max_resource=max_resource, **kwargs
    )
