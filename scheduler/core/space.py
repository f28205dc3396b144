"""The search space: typed parameter domains and seeded sampling.

A space maps parameter names to domains (uniform, log-uniform, int, log-int, choice, constant).
It owns three things: building itself from the study spec's ``[space]`` table (with errors that
name the key), sampling a configuration from an RNG that the caller passes in (never the global
``random`` state, so the same seed gives the same configurations), and mapping a value to a unit
coordinate in [0, 1] (used by the synthetic benchmark and by plots). Bounds are refused where
sampling or ``unit`` would give inf or nan: a uniform range wider than the largest float, log
bounds that are not > 0 or whose logarithms coincide, int bounds beyond +-2**53.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeAlias

if TYPE_CHECKING:
    from random import Random

Value: TypeAlias = bool | int | float | str
MAX_INT = 2**53  # int bounds: every value between them is exact as a float (unit(), plots, JSON)
Config: TypeAlias = dict[str, Value]


class SpaceError(ValueError):
    """A parameter domain is malformed; ``key`` is the parameter's name."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class Domain(Protocol):
    """One parameter's domain."""

    def sample(self, rng: Random) -> Value: ...

    def unit(self, value: Value) -> float: ...

    def contains(self, value: Value) -> bool: ...


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def sample(self, rng: Random) -> Value:
        return self.low + (self.high - self.low) * rng.random()

    def unit(self, value: Value) -> float:
        return _clip01((float(value) - self.low) / (self.high - self.low))

    def contains(self, value: Value) -> bool:
        return _is_real(value) and self.low <= float(value) <= self.high


@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float

    def sample(self, rng: Random) -> Value:
        lo, hi = math.log(self.low), math.log(self.high)
        return min(self.high, max(self.low, math.exp(lo + (hi - lo) * rng.random())))

    def unit(self, value: Value) -> float:
        lo, hi = math.log(self.low), math.log(self.high)
        return _clip01((math.log(float(value)) - lo) / (hi - lo))

    def contains(self, value: Value) -> bool:
        return _is_real(value) and self.low <= float(value) <= self.high


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    log: bool = False

    def sample(self, rng: Random) -> Value:
        if not self.log:
            return rng.randint(self.low, self.high)
        lo, hi = math.log(self.low), math.log(self.high + 1)
        return min(self.high, max(self.low, int(math.exp(lo + (hi - lo) * rng.random()))))

    def unit(self, value: Value) -> float:
        if self.high == self.low:
            return 0.5
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return _clip01((math.log(float(value)) - lo) / (hi - lo))
        return _clip01((float(value) - self.low) / (self.high - self.low))

    def contains(self, value: Value) -> bool:
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and self.low <= value <= self.high
        )


@dataclass(frozen=True)
class Choice:
    values: tuple[Value, ...]

    def sample(self, rng: Random) -> Value:
        return self.values[rng.randrange(len(self.values))]

    def unit(self, value: Value) -> float:
        if len(self.values) == 1:
            return 0.5
        return self.values.index(value) / (len(self.values) - 1)

    def contains(self, value: Value) -> bool:
        return any(type(v) is type(value) and v == value for v in self.values)


@dataclass(frozen=True)
class Constant:
    value: Value

    def sample(self, rng: Random) -> Value:
        return self.value

    def unit(self, value: Value) -> float:
        return 0.5

    def contains(self, value: Value) -> bool:
        return type(value) is type(self.value) and value == self.value


class SearchSpace:
    """An ordered mapping of parameter names to domains."""

    def __init__(self, domains: Mapping[str, Domain]) -> None:
        self.domains: dict[str, Domain] = dict(domains)

    def sample(self, rng: Random) -> Config:
        return {name: domain.sample(rng) for name, domain in self.domains.items()}

    def names(self) -> list[str]:
        return list(self.domains)

    def unit(self, config: Mapping[str, Value]) -> list[float]:
        """The configuration as a point of the unit cube, one coordinate per parameter."""
        return [d.unit(config[name]) for name, d in self.domains.items()]

    def check(self, config: Mapping[str, Value]) -> None:
        """Raise SpaceError unless ``config`` has exactly this space's keys with values inside."""
        for name in config:
            if name not in self.domains:
                raise SpaceError(name, "unknown parameter")
        for name, domain in self.domains.items():
            if name not in config:
                raise SpaceError(name, "missing")
            value = config[name]
            if isinstance(value, float) and not math.isfinite(value):
                raise SpaceError(name, f"value {value!r} is not finite")
            if not domain.contains(value):
                raise SpaceError(name, f"value {value!r} is outside the domain {domain}")

    @classmethod
    def from_table(cls, table: Mapping[str, object]) -> SearchSpace:
        """Build from the ``[space]`` table of a study spec; raises SpaceError naming the key."""
        if not table:
            raise SpaceError("space", "is empty: declare at least one parameter")
        return cls({name: parse_domain(name, entry) for name, entry in table.items()})


_KINDS = ("uniform", "log_uniform", "int", "log_int", "choice")


def parse_domain(name: str, entry: object) -> Domain:
    """Parse one ``[space]`` entry: ``{ kind = [...] }`` or a plain constant."""
    if isinstance(entry, bool | int | float | str):
        if isinstance(entry, float) and not math.isfinite(entry):
            raise SpaceError(name, f"constant {entry!r} is not finite")
        return Constant(entry)
    if not isinstance(entry, Mapping):
        raise SpaceError(
            name, f"expected a constant or a table like {{ uniform = [0, 1] }}, got {entry!r}"
        )
    kinds = [k for k in entry if k in _KINDS]
    extra = [k for k in entry if k not in _KINDS and k != "log"]
    if extra:
        raise SpaceError(
            name, f"unknown distribution {extra[0]!r} (expected one of {', '.join(_KINDS)})"
        )
    if len(kinds) != 1:
        raise SpaceError(name, f"give exactly one distribution of {', '.join(_KINDS)}")
    kind = kinds[0]
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{name}.log", f"must be true or false, got {log!r}")
    if "log" in entry and kind not in ("int", "uniform"):
        raise SpaceError(f"{name}.log", f"applies to int and uniform only, not {kind}")
    args = entry[kind]
    if kind == "choice":
        return _choice(name, args)
    integer = kind in ("int", "log_int")
    log = log or kind.startswith("log_")
    low, high = _bounds(name, kind, args, integer=integer)
    if log and low <= 0:
        raise SpaceError(f"{name}.{kind}", f"log bounds must be > 0, got {low!r}")
    if log and not integer and not math.log(low) < math.log(high):
        raise SpaceError(f"{name}.{kind}", f"log bounds {low!r} and {high!r} are too close")
    if integer:
        return Int(int(low), int(high), log=log)
    return LogUniform(low, high) if log else Uniform(low, high)


def _bounds(name: str, kind: str, args: object, *, integer: bool) -> tuple[float, float]:
    where = f"{name}.{kind}"
    if not isinstance(args, Sequence) or isinstance(args, str) or len(args) != 2:
        raise SpaceError(where, f"expected [low, high], got {args!r}")
    for bound in args:
        if integer and (not isinstance(bound, int) or isinstance(bound, bool)):
            raise SpaceError(where, f"bounds must be integers, got {bound!r}")
        if not _is_real(bound) or not math.isfinite(float(bound)):
            raise SpaceError(where, f"bounds must be finite numbers, got {bound!r}")
    low, high = args
    if integer:
        if low > high:
            raise SpaceError(where, f"inverted range: low {low} > high {high}")
        if not -MAX_INT <= low <= high <= MAX_INT:
            raise SpaceError(where, f"bounds must be within +-2**53 (exact floats), got {args!r}")
        return low, high
    if low >= high:
        raise SpaceError(where, f"empty or inverted range: low {low} >= high {high}")
    if not math.isfinite(float(high) - float(low)):
        raise SpaceError(where, f"the width high - low of {args!r} overflows to infinity")
    return float(low), float(high)


def _choice(name: str, args: object) -> Choice:
    if not isinstance(args, Sequence) or isinstance(args, str) or not args:
        raise SpaceError(f"{name}.choice", f"expected a non-empty list, got {args!r}")
    for value in args:
        if not isinstance(value, bool | int | float | str):
            raise SpaceError(
                f"{name}.choice", f"values must be numbers, strings or booleans, got {value!r}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise SpaceError(f"{name}.choice", f"value {value!r} is not finite")
    if len({(type(v), v) for v in args}) != len(args):
        raise SpaceError(f"{name}.choice", "values repeat")
    return Choice(tuple(args))


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _clip01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x
