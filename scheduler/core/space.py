"""The search space: typed parameter domains, conditions, and seeded sampling.

A space maps parameter names to domains (uniform, log-uniform, int, log-int, choice, ordered
choice, constant). It owns three things: building itself from the study spec's ``[space]`` table
(with errors that name the key), sampling a configuration from an RNG that the caller passes in
(never the global ``random`` state, so the same seed gives the same configurations), and mapping
a value to a unit coordinate in [0, 1] (used by the synthetic benchmark and by plots). Bounds are
refused where sampling or ``unit`` would give inf or nan: a uniform range wider than the largest
float, log bounds that are not > 0 or whose logarithms coincide, int bounds beyond +-2**53.

Conditions: a parameter with ``when = { parent = value }`` (or ``= [values]``; several keys must
all hold) is active only when each parent is active and has one of the values; an inactive
parameter is absent from the configuration. Parents must be choice or ordered parameters of the
same space, the values among theirs, and the conditions acyclic. Parameters are sampled in
declaration order, except that a parent comes before the parameters that depend on it (a stable
topological order), and an inactive one draws nothing from the RNG: a space without conditions
samples exactly as it always did.
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
class Ordered(Choice):
    """A choice whose values are ordered (``ordered = [...]``): sampled like a choice, modelled
    by the samplers as an integer index, so neighbours count as close."""


@dataclass(frozen=True)
class Condition:
    """``parent`` must be active and take one of ``values`` for the parameter to be active."""

    parent: str
    values: tuple[Value, ...]

    def holds(self, config: Mapping[str, Value]) -> bool:
        if self.parent not in config:
            return False
        value = config[self.parent]
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
    """An ordered mapping of parameter names to domains, with optional conditions."""

    def __init__(
        self,
        domains: Mapping[str, Domain],
        conditions: Mapping[str, Sequence[Condition]] | None = None,
    ) -> None:
        self.domains: dict[str, Domain] = dict(domains)
        self.conditions: dict[str, tuple[Condition, ...]] = {
            name: tuple(conds) for name, conds in (conditions or {}).items() if conds
        }
        _check_conditions(self.domains, self.conditions)
        self.order: list[str] = _sampling_order(self.domains, self.conditions)

    def sample(self, rng: Random) -> Config:
        if not self.conditions:
            return {name: domain.sample(rng) for name, domain in self.domains.items()}
        config: Config = {}
        for name in self.order:
            if self.active(name, config):
                config[name] = self.domains[name].sample(rng)
        return config

    def active(self, name: str, config: Mapping[str, Value]) -> bool:
        """Whether ``name`` is active given the values of its parents in ``config``."""
        conds = self.conditions.get(name)
        return conds is None or all(c.holds(config) for c in conds)

    def active_only(self, config: Mapping[str, Value]) -> dict[str, Value]:
        """``config`` without the parameters that are inactive in it (as ``check`` wants it)."""
        out: dict[str, Value] = {}
        for name in self.order:
            if name in config and self.active(name, out):
                out[name] = config[name]
        return out | {k: v for k, v in config.items() if k not in self.domains}

    def names(self) -> list[str]:
        return list(self.domains)

    def unit(self, config: Mapping[str, Value]) -> list[float]:
        """The configuration as a point of the unit cube, one coordinate per parameter (0.5 for
        an inactive one)."""
        return [d.unit(config[name]) if name in config else 0.5 for name, d in self.domains.items()]

    def check(self, config: Mapping[str, Value]) -> None:
        """Raise SpaceError unless ``config`` has exactly this space's active keys (inactive
        ones absent) with values inside."""
        for name in config:
            if name not in self.domains:
                raise SpaceError(name, "unknown parameter")
        for name in self.order:
            domain = self.domains[name]
            if not self.active(name, config):
                if name in config:
                    raise SpaceError(name, "is set but inactive (its `when` does not hold)")
                continue
            if name not in config:
                raise SpaceError(name, "missing")
            value = config[name]
            if isinstance(value, float) and not math.isfinite(value):
                raise SpaceError(name, f"value {value!r} is not finite")
            if not domain.contains(value):
                raise SpaceError(name, f"value {value!r} is outside the domain {domain}")

    @classmethod
    def problems(cls, table: Mapping[str, object]) -> list[SpaceError]:
        """Every problem of a ``[space]`` table at once (``from_table`` raises the first): each
        parameter's domain, then, when they all parse, the ``when`` conditions."""
        if not table:
            return [SpaceError("space", "is empty: declare at least one parameter")]
        found: list[SpaceError] = []
        domains: dict[str, Domain] = {}
        for name, entry in table.items():
            try:
                domains[name] = parse_domain(name, entry)
            except SpaceError as exc:
                found.append(exc)
        if found:
            return found
        for name, entry in table.items():
            if isinstance(entry, Mapping) and "when" in entry:
                try:
                    _conditions(name, entry["when"], domains)
                except SpaceError as exc:
                    found.append(exc)
        return found

    @classmethod
    def from_table(cls, table: Mapping[str, object]) -> SearchSpace:
        """Build from the ``[space]`` table of a study spec; raises SpaceError naming the key."""
        if not table:
            raise SpaceError("space", "is empty: declare at least one parameter")
        domains = {name: parse_domain(name, entry) for name, entry in table.items()}
        conditions = {
            name: _conditions(name, entry["when"], domains)
            for name, entry in table.items()
            if isinstance(entry, Mapping) and "when" in entry
        }
        return cls(domains, conditions)


_KINDS = ("uniform", "log_uniform", "int", "log_int", "choice", "ordered")
_OPTIONS = ("log", "when")


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
    extra = [k for k in entry if k not in _KINDS and k not in _OPTIONS]
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
    if kind == "ordered":
        return Ordered(_choice(name, args, kind).values)
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


def _choice(name: str, args: object, kind: str = "choice") -> Choice:
    where = f"{name}.{kind}"
    if not isinstance(args, Sequence) or isinstance(args, str) or not args:
        raise SpaceError(where, f"expected a non-empty list, got {args!r}")
    for value in args:
        if not isinstance(value, bool | int | float | str):
            raise SpaceError(where, f"values must be numbers, strings or booleans, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise SpaceError(where, f"value {value!r} is not finite")
    if len({(type(v), v) for v in args}) != len(args):
        raise SpaceError(where, "values repeat")
    return Choice(tuple(args))


def _conditions(name: str, when: object, domains: Mapping[str, Domain]) -> list[Condition]:
    """Parse ``when = { parent = value | [values], ... }`` of parameter ``name``."""
    where = f"{name}.when"
    if not isinstance(when, Mapping) or not when:
        raise SpaceError(where, f'expected a table like {{ optimizer = "sgd" }}, got {when!r}')
    out = []
    for parent, raw in when.items():
        if parent == name:
            raise SpaceError(where, f"{name!r} cannot depend on itself")
        domain = domains.get(parent)
        if domain is None:
            raise SpaceError(where, f"unknown parameter {parent!r} (not in [space])")
        if not isinstance(domain, Choice):
            raise SpaceError(
                where, f"{parent!r} is not a choice or ordered parameter: a condition needs one"
            )
        values = list(raw) if isinstance(raw, list | tuple) else [raw]
        if not values:
            raise SpaceError(f"{where}.{parent}", "expected a value or a non-empty list")
        for value in values:
            if not domain.contains(value):
                raise SpaceError(
                    f"{where}.{parent}",
                    f"{value!r} is not one of {parent}'s values {list(domain.values)!r}",
                )
        out.append(Condition(parent, tuple(values)))
    return out


def _check_conditions(
    domains: Mapping[str, Domain], conditions: Mapping[str, Sequence[Condition]]
) -> None:
    for name, conds in conditions.items():
        for c in conds:
            if name not in domains or c.parent not in domains:
                raise SpaceError(f"{name}.when", f"unknown parameter {c.parent!r}")


def _sampling_order(
    domains: Mapping[str, Domain], conditions: Mapping[str, Sequence[Condition]]
) -> list[str]:
    """Declaration order with every parent before its children; SpaceError on a cycle."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the path, 2 = placed

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join([*path[path.index(name) :], name])
            raise SpaceError(f"{name}.when", f"conditions form a cycle: {cycle}")
        state[name] = 1
        for c in conditions.get(name, ()):
            visit(c.parent, [*path, name])
        state[name] = 2
        order.append(name)

    for name in domains:
        visit(name, [])
    return order


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _clip01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x
