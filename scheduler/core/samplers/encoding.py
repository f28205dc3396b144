"""How the model samplers see a configuration: one coordinate per non-constant parameter.

Three kinds of dimension, chosen per domain:

- ``real``: uniform and log-uniform values, and ints with more than ``MAX_POINTS`` values, as a
  coordinate u in [0, 1] (in log space for log domains; an int v sits at the middle of the
  interval of u that the prior maps to v, so encode and decode round-trip).
- ``ordinal``: ints with at most ``MAX_POINTS`` values and ordered choices, as an index i with a
  position ``positions[i]`` in [0, 1] (the same mapping as ``real``, at the points), so a kernel
  on positions treats neighbours as close.
- ``categorical``: choices, as an index into their values.

An inactive parameter (its ``when`` does not hold) is NaN. Constants have no dimension.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ash.scheduler.core.space import (
    Choice,
    Config,
    Constant,
    Domain,
    Int,
    LogUniform,
    Ordered,
    SearchSpace,
    Uniform,
    Value,
)

if TYPE_CHECKING:
    from random import Random

ENUMERABLE = 1 << 14  # a finite space this small is listed, for draws when nearly all tried
LIST_STEP = 8  # points listed at each add (~40 us; all listed after 1/8 of the space is tried)
MAX_POINTS = 128  # an int with at most this many values is modelled point by point
NAN = math.nan


@dataclass(frozen=True)
class Dim:
    name: str
    kind: str  # "real" | "ordinal" | "categorical"
    domain: Domain
    positions: tuple[float, ...] = ()  # ordinal: each index's place in [0, 1]
    values: tuple[Value, ...] = ()  # ordinal and categorical: the value of each index

    @property
    def size(self) -> int:
        return len(self.values)

    def encode(self, value: Value) -> float:
        """The coordinate of ``value``: u in [0, 1] (real) or an index (ordinal, categorical)."""
        d = self.domain
        if self.kind != "real":
            if isinstance(d, Int):
                return float(int(value) - d.low)
            return float(_index(self.values, value))
        if isinstance(d, Uniform):
            return _clip01((float(value) - d.low) / (d.high - d.low))
        if isinstance(d, LogUniform):
            lo, hi = math.log(d.low), math.log(d.high)
            return _clip01((math.log(float(value)) - lo) / (hi - lo))
        assert isinstance(d, Int)
        return _int_unit(d, int(value))

    def decode(self, x: float) -> Value:
        """The value at coordinate ``x`` (an index for ordinal and categorical dimensions)."""
        if self.kind != "real":
            return self.values[min(self.size - 1, max(0, int(x)))]
        d = self.domain
        u = _clip01(x)
        if isinstance(d, Uniform):
            return min(d.high, max(d.low, d.low + (d.high - d.low) * u))
        if isinstance(d, LogUniform):
            lo, hi = math.log(d.low), math.log(d.high)
            return min(d.high, max(d.low, math.exp(lo + (hi - lo) * u)))
        assert isinstance(d, Int)
        if d.log:
            lo, hi = math.log(d.low), math.log(d.high + 1)
            return min(d.high, max(d.low, int(math.exp(lo + (hi - lo) * u))))
        return min(d.high, max(d.low, d.low + int(u * (d.high - d.low + 1))))


def _int_unit(d: Int, v: int) -> float:
    if d.log:
        lo, hi = math.log(d.low), math.log(d.high + 1)
        return _clip01((0.5 * (math.log(v) + math.log(v + 1)) - lo) / (hi - lo))
    return _clip01((v - d.low + 0.5) / (d.high - d.low + 1))


def dim_of(name: str, domain: Domain) -> Dim | None:
    """The dimension that models ``domain``, or None for a constant."""
    if isinstance(domain, Constant):
        return None
    if isinstance(domain, Ordered):
        k = len(domain.values)
        return Dim(name, "ordinal", domain, tuple((i + 0.5) / k for i in range(k)), domain.values)
    if isinstance(domain, Choice):
        return Dim(name, "categorical", domain, (), domain.values)
    if isinstance(domain, Int) and domain.high - domain.low + 1 <= MAX_POINTS:
        values = tuple(range(domain.low, domain.high + 1))
        return Dim(name, "ordinal", domain, tuple(_int_unit(domain, v) for v in values), values)
    return Dim(name, "real", domain)


class Encoding:
    """The dimensions of a space, in its sampling order (parents before children)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.dims: list[Dim] = []
        for name in space.order:
            dim = dim_of(name, space.domains[name])
            if dim is not None:
                self.dims.append(dim)
        self.index = {d.name: i for i, d in enumerate(self.dims)}

    def encode(self, config: Mapping[str, Value]) -> tuple[float, ...]:
        return tuple(d.encode(config[d.name]) if d.name in config else NAN for d in self.dims)


def key(vec: tuple[float, ...]) -> tuple[float, ...]:
    """A hashable, comparable identity of an encoded configuration (NaN, inactive, is -1)."""
    return tuple(-1.0 if x != x else x for x in vec)


class Tried:
    """The configurations tried so far, on a FINITE space (every parameter a choice, an ordered
    choice or an int of at most MAX_POINTS values; ``of`` gives None for any other space).

    On a finite space a configuration proposed twice is the same model trained twice (on a
    tabular benchmark, literally the same curve): a wasted trial. The model samplers therefore
    never pick a candidate already tried while an untried one is among their candidates, and
    their prior draws redraw (up to ``retries`` times) a configuration already tried. Every
    trial counts, however it was added (``add`` from ``observe`` too: enqueued and resumed
    trials), so a resumed study knows the same set. O(d) per trial, one key per trial.

    Near the end of a grid those redraws fail, so a space of at most ``ENUMERABLE`` points is
    also listed: its distinct untried configurations, in the enumeration's order, ``LIST_STEP``
    more points at each ``add`` (a bounded cost per call, done long before the redraws start to
    fail), each removed (swap-remove) when it is tried. Once ``retries`` redraws in a row were
    all tried, every prior draw is uniform over that list: O(1) a draw, where a walk of the
    enumeration cost O(points) on every decision near the end of a grid. The list depends only
    on the calls made, and the draws on ``rng``, so a replay rebuilds both."""

    def __init__(self, encoding: Encoding, retries: int) -> None:
        self.encoding = encoding
        self.retries = retries
        self.keys: set[tuple[float, ...]] = set()
        total = math.prod(d.size for d in encoding.dims)
        self.total = total if total <= ENUMERABLE else 0  # points to list (0: too many)
        self.listed: list[tuple[tuple[float, ...], Config]] = []  # untried, listed so far
        self._at: dict[tuple[float, ...], int] = {}  # a listed key's place in ``listed``
        self._next = 0  # the enumeration's next index
        self.drawing = False  # prior draws come from ``listed``

    @classmethod
    def of(cls, encoding: Encoding, retries: int = 32) -> Tried | None:
        dims = encoding.dims
        finite = bool(dims) and all(d.kind != "real" for d in dims)
        return cls(encoding, retries) if finite else None

    def add(self, config: Mapping[str, Value]) -> None:
        k = key(self.encoding.encode(config))
        self.keys.add(k)
        i = self._at.pop(k, None)
        if i is not None:  # swap the last entry into its place
            last = self.listed.pop()
            if i < len(self.listed):
                self.listed[i] = last
                self._at[last[0]] = i
        if self._next < self.total:
            self._list(LIST_STEP)

    def discard(self, config: Mapping[str, Value]) -> None:
        """Untry ``config``: a sampled configuration replaced before it was trained (a resumed
        journal's own). Listed again if the enumeration has passed it."""
        k = key(self.encoding.encode(config))
        if k not in self.keys:
            return
        self.keys.discard(k)
        first, scale = 0, 1  # its first index in the enumeration (an inactive value: 0)
        for digit, d in zip(k, self.encoding.dims, strict=True):
            first += max(0, int(digit)) * scale
            scale *= d.size
        if first < self._next and k not in self._at:
            self._at[k] = len(self.listed)
            self.listed.append((k, complete(self.encoding.space, dict(config))))

    def __contains__(self, config: object) -> bool:
        return key(self.encoding.encode(config)) in self.keys  # type: ignore[arg-type]

    def prior(self, rng: Random) -> Config:
        """A draw from the prior, redrawn while it was tried (at most ``retries`` times); once
        that fails, a uniform draw among the untried configurations (``listed``), and a tried
        one only when none is left (or the space is too large to list)."""
        space = self.encoding.space
        if not self.drawing:
            config = space.sample(rng)
            for _ in range(self.retries):
                if config not in self:
                    return config
                config = space.sample(rng)
            if config not in self or not self.total:
                return config
            if self._next < self.total:  # only a very uneven prior gets here this early
                self._list(self.total)
            self.drawing = True
        if self.listed:
            return self.listed[rng.randrange(len(self.listed))][1]
        return space.sample(rng)  # every configuration tried: repeats are all that is left

    def _list(self, n: int) -> None:
        """List the untried among the next ``n`` points of the enumeration (mixed radix over the
        dimensions); a conditional space's inactive values collapse into one configuration."""
        dims, space = self.encoding.dims, self.encoding.space
        stop = min(self.total, self._next + n)
        for index in range(self._next, stop):
            values: dict[str, Value] = {}
            digits = []
            for d in dims:
                index, digit = divmod(index, d.size)
                values[d.name] = d.values[digit]
                digits.append(digit)
            candidate = complete(space, values)
            k = tuple(
                float(i) if d.name in candidate else -1.0 for i, d in zip(digits, dims, strict=True)
            )
            if k not in self.keys and k not in self._at:
                self._at[k] = len(self.listed)
                self.listed.append((k, candidate))
        self._next = stop


def _index(values: tuple[Value, ...], value: Value) -> int:
    for i, v in enumerate(values):
        if type(v) is type(value) and v == value:
            return i
    raise ValueError(f"{value!r} is not one of {values!r}")


def _clip01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def constant_value(space: SearchSpace, name: str) -> Value | None:
    d = space.domains[name]
    return d.value if isinstance(d, Constant) else None


def complete(space: SearchSpace, values: Mapping[str, Value]) -> Config:
    """A configuration in the space's order from the values of the active dimensions: constants
    filled in, inactive parameters left out."""
    config: Config = {}
    for name in space.order:
        if not space.active(name, config):
            continue
        d = space.domains[name]
        config[name] = d.value if isinstance(d, Constant) else values[name]
    return config
