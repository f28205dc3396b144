"""Samplers: the interface, the [study] sampler key, determinism and replay of model samplers."""

from __future__ import annotations

import random
from typing import Any

import pytest

from ash.scheduler.core import History, Sampler, Scheduler, SearchSpace
from ash.scheduler.core.space import Config
from ash.spec import SpecError, parse_spec


def spec_of(sampler: str | None = None, space: dict[str, Any] | None = None, **asha: Any) -> Any:
    study: dict[str, Any] = {"name": "s", "metric": "loss", "seed": 3}
    if sampler is not None:
        study["sampler"] = sampler
    table: dict[str, Any] = {"min_resource": 1, "max_resource": 9, "reduction_factor": 3}
    table.update(asha)
    table.setdefault("max_trials", 40)
    return parse_spec(
        {
            "study": study,
            "asha": table,
            "space": space or {"x": {"uniform": [0.0, 1.0]}, "k": {"choice": ["a", "b", "c"]}},
        },
        source="s.toml",
    )


def drive(core: Scheduler, objective: Any) -> list[tuple[int, int, Config]]:
    """Run a study to its end with 3 jobs in flight, reporting the oldest first."""
    out: list[tuple[int, int, Config]] = []
    pending: list[Any] = []
    while True:
        while len(pending) < 3:
            job = core.next_job(0.0)
            if job is None:
                break
            pending.append(job)
            out.append((job.trial, job.rung, job.config))
        if not pending:
            assert core.finished
            return out
        job = pending.pop(0)
        core.report(job.job_id, objective(job.config, job.stop), 0.0)


def bowl(config: Config, resource: float) -> float:
    return (float(config["x"]) - 0.3) ** 2 + (0.0 if config["k"] == "b" else 0.2) + 1 / resource


def test_default_sampler_is_random_and_samples_as_before() -> None:
    plain, named = spec_of(), spec_of("random")
    assert plain.sampler == named.sampler == "random"
    a = drive(Scheduler(plain, random.Random(3)), bowl)
    b = drive(Scheduler(named, random.Random(3)), bowl)
    assert a == b
    # the configs are exactly the space's own draws from the seed, in trial order
    rng = random.Random(3)
    firsts = [c for _, rung, c in a if rung == 0]
    assert firsts == [plain.space.sample(rng) for _ in firsts]


def test_unknown_sampler_is_a_spec_error_naming_the_key() -> None:
    with pytest.raises(SpecError, match=r"s.toml: study.sampler: unknown sampler 'gp'"):
        spec_of("gp")
    with pytest.raises(SpecError, match=r"study.sampler: must be a string"):
        spec_of(3)  # type: ignore[arg-type]


class Recording:
    """A user's sampler: the smallest x seen so far plus a step, and everything it was told."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float, float]] = []

    def sample(self, rng: random.Random, space: SearchSpace, history: History) -> Config:
        config = space.sample(rng)
        config["x"] = min(1.0, 0.01 * len(history.configs))
        return config

    def observe(self, trial: int, config: Config, resource: float, score: float) -> None:
        self.seen.append((trial, resource, score))


def test_a_users_sampler_chooses_configs_and_observes_every_result() -> None:
    user = Recording()
    assert isinstance(user, Sampler)
    core = Scheduler(spec_of(), random.Random(0), sampler=user)
    decisions = drive(core, bowl)
    firsts = [c for _, rung, c in decisions if rung == 0]
    assert [c["x"] for c in firsts] == [min(1.0, 0.01 * i) for i in range(len(firsts))]
    assert len(user.seen) == len(decisions)  # every job reported once
    levels = core.history.levels
    assert sorted(levels) == [1, 3, 9]
    assert sum(len(v) for v in levels.values()) == len(user.seen) == core.history.n_results
    # history holds what observe was told, by level, in order
    for resource, level in levels.items():
        told = [(t, s) for t, r, s in user.seen if r == resource]
        assert list(zip(level.trials, level.scores, strict=True)) == told


def test_a_plain_function_still_works_as_a_sampler() -> None:
    core = Scheduler(spec_of(), random.Random(0), sampler=lambda rng: {"x": 0.5, "k": "a"})
    job = core.next_job(0.0)
    assert job is not None and job.config == {"x": 0.5, "k": "a"}
    with pytest.raises(TypeError, match="sampler 3: expected an object with sample"):
        Scheduler(spec_of(), random.Random(0), sampler=3)
