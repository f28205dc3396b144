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


# -- model samplers: determinism, replay, the audit ---------------------------------------------

MIXED = {
    "lr": {"log_uniform": [1e-4, 1.0]},
    "width": {"int": [1, 512]},  # wide: modelled as a real coordinate
    "layers": {"int": [1, 4]},  # narrow: modelled point by point
    "opt": {"choice": ["sgd", "adam", "rmsprop"]},
    "momentum": {"uniform": [0.0, 0.95], "when": {"opt": "sgd"}},
    "nesterov": {"choice": [True, False], "when": {"opt": "sgd"}},
    "size": {"ordered": ["s", "m", "l", "xl"]},
    "beta": {"uniform": [0.5, 0.99], "when": {"opt": ["adam", "rmsprop"], "size": ["l", "xl"]}},
    "seedless": 7,
}


def mixed_loss(config: Config, resource: float) -> float:
    """A known optimum: lr 1e-2, width ~100, 2 layers, sgd with momentum 0.9, size 'l'."""
    import math

    loss = (math.log10(float(config["lr"])) + 2) ** 2 / 4
    loss += (math.log(int(config["width"]) / 100)) ** 2 / 8 + abs(int(config["layers"]) - 2) / 4
    loss += {"sgd": 0.0, "adam": 0.15, "rmsprop": 0.3}[str(config["opt"])]
    loss += (float(config.get("momentum", 0.0)) - 0.9) ** 2
    loss += abs(["s", "m", "l", "xl"].index(str(config["size"])) - 2) / 10
    return loss + 1.0 / resource


def model_spec(sampler: str, seed: int = 3, **asha: Any) -> Any:
    table = {"min_resource": 1, "max_resource": 27, "max_trials": 120, **asha}
    return parse_spec(
        {
            "study": {"name": "s", "metric": "loss", "seed": seed, "sampler": sampler},
            "asha": table,
            "space": MIXED,
        },
        source="s.toml",
    )


@pytest.mark.parametrize("sampler", ["tpe", "bohb"])
def test_model_samplers_are_deterministic_for_a_seed_and_learn(sampler: str) -> None:
    spec = model_spec(sampler)
    a = drive(Scheduler(spec, random.Random(3)), mixed_loss)
    b = drive(Scheduler(spec, random.Random(3)), mixed_loss)
    assert a == b
    c = drive(Scheduler(spec, random.Random(4)), mixed_loss)
    assert a != c
    core = Scheduler(spec, random.Random(3))
    drive(core, mixed_loss)
    assert core.sampler.fits > 3  # type: ignore[attr-defined]
    for _, _, config in a:
        spec.space.check(config)  # inside the space; inactive parameters absent
    # the model's trials differ from the prior's: what random would have drawn is not what ran
    plain = drive(Scheduler(model_spec("random"), random.Random(3)), mixed_loss)
    assert [cfg for _, r, cfg in plain if r == 0] != [cfg for _, r, cfg in a if r == 0]


def sampler_state(sampler: Any) -> Any:
    """Everything a model sampler's next decisions depend on, comparable with ==."""
    levels = {
        r: (st.n, sorted(st.best), sorted(st.pool)) for r, st in sampler.levels.by_resource.items()
    }
    schedule = (sampler.schedule.level, sampler.schedule.n, sampler.fits)
    if hasattr(sampler, "tables"):
        return levels, schedule, [(t.dim.name, t.cdf) for t in sampler.tables]
    m = sampler.model
    model = None
    if m is not None:  # repr: exact for floats, and NaN (an inactive coordinate) equals itself
        model = repr(
            (
                m.xl.tolist(),
                m.bw_l.tolist(),
                m.l.const.tolist(),
                m.g.const.tolist(),
                m.gen.bit_generator.state,
                [q.tolist() for q in m.queue],
            )
        )
    return levels, schedule, model


def drive_driver(driver: Any, asks: int) -> list[tuple[int, int, Config]]:
    """``asks`` decisions with up to 3 jobs in flight, oldest reported first; then the jobs in
    flight are reported too, so nothing is in flight at the end."""
    out: list[tuple[int, int, Config]] = []
    pending: list[Any] = []
    for i in range(asks):
        a = driver.request(f"w{i % 3}")
        if a is not None:
            pending.append(a.job)
            out.append((a.job.trial, a.job.rung, a.job.config))
        if len(pending) >= 3 or (a is None and pending):
            job = pending.pop(0)
            driver.complete(job.job_id, mixed_loss(job.config, job.stop), {"loss": 0.0})
        driver.sync()
    for job in pending:
        driver.complete(job.job_id, mixed_loss(job.config, job.stop), {"loss": 0.0})
    driver.sync()
    return out


@pytest.mark.parametrize("sampler", ["tpe", "bohb"])
def test_a_resumed_model_equals_the_live_one_and_decides_the_same(
    sampler: str, tmp_path: Any
) -> None:
    from ash.scheduler.audit import audit_for
    from ash.scheduler.driver import open_study
    from ash.scheduler.trace import read_trace

    spec = model_spec(sampler, max_trials=150)
    whole = open_study(spec).driver
    first = drive_driver(whole, 180)
    state = sampler_state(whole.core.sampler)
    rest = drive_driver(whole, 400)
    assert whole.core.sampler.fits > 3

    journal, trace = tmp_path / "j.jsonl", tmp_path / "t.jsonl"
    live = open_study(spec, journal=journal, trace=trace).driver
    assert drive_driver(live, 180) == first
    live.close()  # the crash: nothing in flight, everything journaled
    opened = open_study(spec, journal=journal, trace=trace)
    assert opened.resumed_records > 0 and opened.lost_on_resume == 0
    back = opened.driver
    assert sampler_state(back.core.sampler) == state  # the model after replay is the live one
    assert drive_driver(back, 400) == rest  # and decides as the uninterrupted study did
    back.close()
    events = list(read_trace(trace))
    assert sum(e["event"] == "result" for e in events) == len(first) + len(rest)
    assert audit_for(events, spec) == []  # promotions are still exactly Algorithm 2


def test_a_changed_sampler_refuses_the_journal(tmp_path: Any) -> None:
    from ash.scheduler.driver import open_study
    from ash.scheduler.journal import JournalError

    journal = tmp_path / "j.jsonl"
    d = open_study(model_spec("tpe"), journal=journal).driver
    drive_driver(d, 40)
    d.close()
    with pytest.raises(JournalError, match="spec"):
        open_study(model_spec("bohb"), journal=journal)


@pytest.mark.parametrize("sampler", ["tpe", "bohb"])
@pytest.mark.parametrize("algorithm", ["asha", "hyperband", "asha-stopping"])
def test_the_audit_passes_on_model_sampled_traces(sampler: str, algorithm: str) -> None:
    import io

    from ash.scheduler.audit import audit_for
    from ash.scheduler.simulator import simulate
    from ash.scheduler.trace import TraceWriter

    spec = parse_spec(
        {
            "study": {"seed": 5, "sampler": sampler, "algorithm": algorithm, "metric": "loss"},
            "asha": {"min_resource": 1, "max_resource": 27, "max_trials": 200, "brackets": 2},
            "space": MIXED,
        }
    )
    buf = io.StringIO()
    writer = TraceWriter(buf)
    stats = simulate(spec, Bowl(), 8, seed=1, trace=writer)
    events = [__import__("json").loads(line) for line in buf.getvalue().splitlines()]
    assert stats.trials == 200 and len(events) > 400
    assert audit_for(events, spec) == []


class Bowl:
    """A simulator benchmark: ``mixed_loss`` plus noise, learning curves whose ranking holds
    across resources but for the noise, jobs of a second per unit of resource."""

    metric, mode = "loss", "min"

    def __init__(self, noise: float = 0.02, seed: int = 0) -> None:
        self.noise, self.seed = noise, seed

    def sampler(self) -> None:
        return None

    def evaluate(self, trial: int, config: Config, resource: float) -> float | None:
        from ash.scheduler.benchmarks import stable_unit

        jitter = stable_unit(self.seed, trial, resource) - 0.5
        return mixed_loss(config, resource) + self.noise * jitter

    def seconds(self, trial: int, config: Config, start: float, stop: float) -> float:
        return stop - start
