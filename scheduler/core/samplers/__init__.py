"""ash.scheduler.core.samplers: how a new trial's configuration is chosen.

``base`` holds the interface (``Sampler``: ``sample`` and ``observe``) and the ``History`` of
results the core keeps for samplers; ``make_sampler`` builds a built-in sampler by the name the
spec's ``[study] sampler`` gives. Every sampler here is sans-I/O and deterministic for a seed:
its only randomness is the core's RNG passed to ``sample``.
"""

from __future__ import annotations

from ash.scheduler.core.samplers.base import (
    CheckedSampler,
    FunctionSampler,
    History,
    Level,
    RandomSampler,
    Sampler,
    SamplerError,
)
from ash.scheduler.core.samplers.bohb import BOHBSampler
from ash.scheduler.core.samplers.tpe import TPESampler
from ash.scheduler.core.space import SearchSpace

SAMPLERS = ("random", "tpe", "bohb")
BUILT_IN = (RandomSampler, TPESampler, BOHBSampler, FunctionSampler, CheckedSampler)


def make_sampler(name: str, space: SearchSpace) -> Sampler:
    """The built-in sampler called ``name`` (one of SAMPLERS) for ``space``."""
    if name == "random":
        return RandomSampler()
    if name == "tpe":
        return TPESampler(space)
    if name == "bohb":
        return BOHBSampler(space)
    raise ValueError(f"unknown sampler {name!r} (expected one of {', '.join(SAMPLERS)})")


__all__ = [
    "BUILT_IN",
    "SAMPLERS",
    "BOHBSampler",
    "CheckedSampler",
    "FunctionSampler",
    "History",
    "Level",
    "RandomSampler",
    "Sampler",
    "SamplerError",
    "TPESampler",
    "make_sampler",
]
