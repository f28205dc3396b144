"""The sampler interface and the results history every sampler may read.

A sampler chooses the configuration of each new trial; promotions are never its business (they
stay exactly ASHA's Algorithm 2, in the brackets). The core calls, and only calls:

- ``sample(rng, space, history) -> Config`` when a new trial starts. ``rng`` is the core's
  seeded RNG (the only randomness a sampler may use, so the same seed gives the same configs and a
  journal replay rebuilds the live run), ``space`` the study's SearchSpace, ``history`` the
  results so far (read-only).
- ``observe(trial, config, resource, score)`` after each result is recorded, in the order the
  core records them: ``score`` is oriented so that lower is better (``+inf`` for a failed or
  non-finite result), ``resource`` the rung's resource. Samplers that keep incremental
  statistics update them here; the same inputs in the same order give the same state, which is
  what makes a resumed model equal to the uninterrupted one.

``History`` is what the core already knows, kept by resource level with all brackets merged (a
rung of Hyperband bracket s at resource r and a rung of bracket s' at the same r are one level,
as BOHB's budgets are): per level, the (trial, score) pairs in arrival order, in two compact
arrays (16 bytes a result); and the configuration of every trial.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ash.scheduler.core.space import Config, SearchSpace, SpaceError

if TYPE_CHECKING:
    from random import Random


class Level:
    """The results at one resource level: trial ids and scores, in arrival order."""

    __slots__ = ("resource", "scores", "trials")

    def __init__(self, resource: float) -> None:
        self.resource = resource
        self.trials = array("q")
        self.scores = array("d")

    def __len__(self) -> int:
        return len(self.trials)


class History:
    """Every recorded result by resource level, and every trial's configuration (``configs``:
    the core's own list, read-only here, so a trial however it was added is there)."""

    def __init__(self, configs: Sequence[Config] = ()) -> None:
        self.configs: Sequence[Config] = configs  # trial id -> its configuration
        self.levels: dict[float, Level] = {}

    def add(self, trial: int, resource: float, score: float) -> None:
        level = self.levels.get(resource)
        if level is None:
            level = self.levels[resource] = Level(resource)
        level.trials.append(trial)
        level.scores.append(score)

    def resources(self) -> list[float]:
        """The resource levels with results, ascending."""
        return sorted(self.levels)

    @property
    def n_results(self) -> int:
        return sum(len(level) for level in self.levels.values())


@runtime_checkable
class Sampler(Protocol):
    """Chooses new trials' configurations (see the module docstring)."""

    def sample(self, rng: Random, space: SearchSpace, history: History) -> Config: ...

    def observe(self, trial: int, config: Config, resource: float, score: float) -> None: ...


class RandomSampler:
    """Uniform sampling from the space's priors: the decisions ash always made (the default)."""

    name = "random"

    def sample(self, rng: Random, space: SearchSpace, history: History) -> Config:
        return space.sample(rng)

    def observe(self, trial: int, config: Config, resource: float, score: float) -> None:
        return None


class FunctionSampler:
    """Adapts a plain ``fn(rng) -> Config`` (the simulator's recorded benchmarks) to a Sampler."""

    name = "function"

    def __init__(self, fn: object) -> None:
        self.fn = fn

    def sample(self, rng: Random, space: SearchSpace, history: History) -> Config:
        config: Config = self.fn(rng)  # type: ignore[operator]
        return config

    def observe(self, trial: int, config: Config, resource: float, score: float) -> None:
        return None


class SamplerError(ValueError):
    """A user's sampler returned something that is not a configuration of the space."""


class CheckedSampler:
    """A user's sampler, whose every configuration is checked against the space (a config
    outside it, or with an inactive parameter set, would reach the trainers otherwise)."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", type(inner).__name__)

    def sample(self, rng: Random, space: SearchSpace, history: History) -> Config:
        config = self.inner.sample(rng, space, history)
        if not isinstance(config, dict):
            raise SamplerError(
                f"sampler {self.name}: sample() returned {config!r}, not a dict of parameters"
            )
        try:
            space.check(config)
        except SpaceError as exc:
            raise SamplerError(
                f"sampler {self.name}: trial {len(history.configs)}: {exc} (in {config!r})"
            ) from None
        return config

    def observe(self, trial: int, config: Config, resource: float, score: float) -> None:
        self.inner.observe(trial, config, resource, score)
