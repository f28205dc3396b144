"""The study spec: load a TOML file and validate all of it before anything runs.

Every problem is collected (not just the first) into one SpecError whose lines each name the
file, the key and what is wrong, so a user fixes the file in one pass. The CLI turns SpecError into
exit code 2 with no traceback. The dataclasses here are the validated, typed form the rest of ash
uses; nothing downstream re-reads raw TOML.
"""

from __future__ import annotations

import math
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ash.errors import UserError
from ash.scheduler.core.samplers import SAMPLERS
from ash.scheduler.core.space import Config, SearchSpace, SpaceError

# Trainers that know their hyperparameters check a [space] against them: trainer type ->
# "module:function" taking a SearchSpace and returning (key, problem) pairs. A registry of
# names, imported only when a spec of that type is checked, so that the spec (neutral ground
# for the scheduler and the workers) depends on no trainer.
SPACE_CHECKS = {"mlp": "ash.worker.mlp_params:check_space"}


def space_checker(trainer: str) -> Callable[[SearchSpace], list[tuple[str, str]]]:
    import importlib

    module, _, name = SPACE_CHECKS[trainer].partition(":")
    check: Callable[[SearchSpace], list[tuple[str, str]]] = getattr(
        importlib.import_module(module), name
    )
    return check


ALGORITHMS = ("asha", "asha-stopping", "sha", "hyperband", "random")
MODES = ("min", "max")
TRAINERS = ("mlp", "python")
MAX_SECONDS = 1e8  # over 3 years; a timer (setitimer) overflows on a far larger one


class SpecError(UserError, ValueError):
    """One or more problems in a study spec; ``problems`` holds (key, message) pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {key}: {msg}" for key, msg in problems))


@dataclass(frozen=True)
class Schedule:
    """The ``[asha]`` table: the rung ladder and the stopping rules."""

    min_resource: float = 1
    max_resource: float = 27
    reduction_factor: float = 3
    early_stopping_rate: int = 0
    brackets: int = 1
    max_trials: int | None = None
    time_limit_s: float | None = None
    target: float | None = None
    max_attempts: int = 3
    bracket_trials: int | None = None
    # asha-stopping only: decide on the job results at rung boundaries ("results": a job per
    # rung) or on the trainer's ctx.report values at rung milestones ("reports": one job to R)
    stop_on: str = "results"


STOP_ON = ("results", "reports")


@dataclass(frozen=True)
class TrainerSpec:
    """The ``[trainer]`` table: what a worker runs for a job."""

    type: str = "mlp"
    dataset: str = "iris"
    validation_fraction: float = 0.3
    entrypoint: str | None = None
    timeout_s: float | None = None  # a job running longer fails (its process is killed)


@dataclass(frozen=True)
class StudySpec:
    name: str
    metric: str
    mode: str
    seed: int
    algorithm: str
    schedule: Schedule
    space: SearchSpace
    trainer: TrainerSpec | None = None
    source: str = "<spec>"
    base_dir: Path = field(default_factory=Path.cwd)
    raw: dict[str, Any] = field(default_factory=dict)  # the parsed TOML, for digests and the wire
    keep_best: int = 1  # [checkpoints] keep_best: trials whose checkpoint outlives the study
    enqueue: tuple[Config, ...] = ()  # [study] enqueue: the first new trials' configs, in order
    fail_fast: bool = True  # [study] fail_fast: stop when the first results all fail alike
    sampler: str = "random"  # [study] sampler: how new trials' configurations are chosen
    # A user's Sampler object (ash.tune(sampler=...)): local to this process, never serialized.
    custom_sampler: Any = field(default=None, compare=False, repr=False)


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a spec file; raises SpecError naming the file."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(source, [("file", f"cannot be read ({exc.strerror or exc})")]) from None
    except UnicodeDecodeError as exc:
        raise SpecError(source, [("file", f"is not UTF-8 text ({exc.reason})")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(source, [("toml", str(exc))]) from None
    return parse_spec(data, source=source, base_dir=path.parent, default_name=path.stem)


def parse_spec(
    data: Mapping[str, Any],
    *,
    source: str = "<spec>",
    base_dir: Path | None = None,
    default_name: str = "study",
) -> StudySpec:
    """Validate a parsed spec mapping; raises SpecError with every problem found."""
    v = _Validator()
    for key in data:
        if key not in ("study", "asha", "trainer", "space", "checkpoints"):
            v.bad(
                key,
                "unknown table (expected [study], [asha], [trainer], [space], [checkpoints])",
            )
    study = v.table(data, "study")
    name = v.get(study, "study", "name", str, default_name)
    metric = v.get(study, "study", "metric", str, "val_loss")
    mode = v.get(study, "study", "mode", str, "min")
    if mode not in MODES:
        v.bad("study.mode", f"must be 'min' or 'max', got {mode!r}")
    seed = v.get(study, "study", "seed", int, 0)
    algorithm = v.get(study, "study", "algorithm", str, "asha")
    if algorithm not in ALGORITHMS:
        v.bad(
            "study.algorithm", f"unknown algorithm {algorithm!r} (expected {', '.join(ALGORITHMS)})"
        )
    fail_fast = v.get(study, "study", "fail_fast", bool, True)
    sampler = v.get(study, "study", "sampler", str, "random")
    if sampler not in SAMPLERS:
        v.bad("study.sampler", f"unknown sampler {sampler!r} (expected {', '.join(SAMPLERS)})")
    v.unknown(
        study,
        "study",
        ("name", "metric", "mode", "seed", "algorithm", "sampler", "enqueue", "fail_fast"),
    )

    schedule = _schedule(v, v.table(data, "asha"), algorithm)
    keep_best = _keep_best(v, v.table(data, "checkpoints"))
    trainer = _trainer(v, data["trainer"]) if "trainer" in data else None
    space = SearchSpace({})
    raw_space = v.table(data, "space")
    if "space" not in data:
        v.bad("space", "missing: declare the parameters to tune")
    else:
        found = SearchSpace.problems(raw_space)  # every parameter's problem, not the first
        for exc in found:
            v.bad("space" if exc.key == "space" else f"space.{exc.key}", exc.message)
        if not found:
            try:
                space = SearchSpace.from_table(raw_space)
            except SpaceError as exc:
                v.bad("space" if exc.key == "space" else f"space.{exc.key}", exc.message)
    enqueue: tuple[Config, ...] = ()
    if "enqueue" in study and "space" in data and space.domains:
        from ash.warmstart import parse_enqueue

        enqueue, problems = parse_enqueue(study["enqueue"], space, base_dir or Path.cwd())
        for key, message in problems:
            v.bad(key, message)
    if trainer is not None and trainer.type == "mlp" and metric not in MLP_METRICS:
        v.bad("study.metric", f"the mlp trainer reports {', '.join(MLP_METRICS)}, not {metric!r}")
    if trainer is not None and trainer.type == "mlp" and schedule.stop_on == "reports":
        v.bad(
            "asha.stop_on",
            "'reports' needs a (config, ctx) Python trainer that calls ctx.report; "
            "the mlp trainer reports only its results",
        )
    if trainer is not None and trainer.type == "mlp" and not v.problems:
        _check_mlp(v, schedule, space)
    if v.problems:
        raise SpecError(source, v.problems)
    return StudySpec(
        name=name,
        metric=metric,
        mode=mode,
        seed=seed,
        algorithm=algorithm,
        schedule=schedule,
        space=space,
        trainer=trainer,
        source=source,
        base_dir=base_dir if base_dir is not None else Path.cwd(),
        raw=dict(data),
        keep_best=keep_best,
        enqueue=enqueue,
        fail_fast=fail_fast,
        sampler=sampler,
    )


def _keep_best(v: _Validator, t: Mapping[str, Any]) -> int:
    """The ``[checkpoints]`` table: how many of the best trials keep their checkpoint."""
    keep = v.get(t, "checkpoints", "keep_best", int, 1)
    v.unknown(t, "checkpoints", ("keep_best",))
    if keep < 0:
        v.bad("checkpoints.keep_best", f"must be >= 0, got {keep}")
        keep = 1
    return int(keep)


def _schedule(v: _Validator, t: Mapping[str, Any], algorithm: str) -> Schedule:
    r = v.get(t, "asha", "min_resource", float, None)
    big_r = v.get(t, "asha", "max_resource", float, None)
    eta = v.get(t, "asha", "reduction_factor", float, 3)
    s = v.get(t, "asha", "early_stopping_rate", int, 0)
    brackets = v.get(t, "asha", "brackets", int, 1)
    max_trials = v.get(t, "asha", "max_trials", int, None)
    time_limit = v.get(t, "asha", "time_limit_s", float, None)
    target = v.get(t, "asha", "target", float, None)
    attempts = v.get(t, "asha", "max_attempts", int, 3)
    bracket_trials = v.get(t, "asha", "bracket_trials", int, None)
    stop_on = v.get(t, "asha", "stop_on", str, "results")
    if stop_on not in STOP_ON:
        v.bad("asha.stop_on", f"must be 'results' or 'reports', got {stop_on!r}")
    elif stop_on == "reports" and algorithm != "asha-stopping":
        v.bad(
            "asha.stop_on",
            f"'reports' is for algorithm = 'asha-stopping' (this study's is {algorithm!r})",
        )
    v.unknown(t, "asha", tuple(Schedule.__dataclass_fields__))
    if r is None:
        v.bad("asha.min_resource", "missing (the resource of the lowest rung, e.g. 1 epoch)")
    elif r <= 0:
        v.bad("asha.min_resource", f"must be > 0, got {r}")
    elif r < sys.float_info.min:
        v.bad("asha.min_resource", f"must be a normal number >= {sys.float_info.min}, got {r}")
        r = None
    if big_r is None:
        v.bad("asha.max_resource", "missing (the resource a trial trains to at the top rung)")
    elif r is not None and r > 0 and big_r < r:
        v.bad("asha.max_resource", f"must be >= min_resource ({r}), got {big_r}")
    if eta < 2:
        v.bad("asha.reduction_factor", f"must be >= 2, got {eta}")
    if s < 0:
        v.bad("asha.early_stopping_rate", f"must be >= 0, got {s}")
    if brackets < 1:
        v.bad("asha.brackets", f"must be >= 1, got {brackets}")
    if max_trials is not None and max_trials < 1:
        v.bad("asha.max_trials", f"must be >= 1, got {max_trials}")
    if time_limit is not None and not 0 < time_limit <= MAX_SECONDS:
        v.bad("asha.time_limit_s", f"must be > 0 and <= {MAX_SECONDS:g} s, got {time_limit}")
    if max_trials is None and time_limit is None and not v.problems:
        v.bad("asha", "set max_trials or time_limit_s: otherwise the study never ends")
    if attempts < 1:
        v.bad("asha.max_attempts", f"must be >= 1, got {attempts}")
    if bracket_trials is not None and bracket_trials < 1:
        v.bad("asha.bracket_trials", f"must be >= 1, got {bracket_trials}")
    if r and big_r and r > 0 and big_r >= r and eta >= 2 and s >= 0 and brackets >= 1:
        from ash.scheduler.core.ladder import ladder_problem, max_rungs

        problem = ladder_problem(r, big_r, eta)
        top = max_rungs(r, big_r, eta)
        if problem is not None:
            v.bad("asha", problem)
        elif algorithm != "random" and s + brackets - 1 > top:
            v.bad(
                "asha.early_stopping_rate" if brackets == 1 else "asha.brackets",
                f"early_stopping_rate + brackets - 1 = {s + brackets - 1} exceeds "
                f"floor(log_eta(max_resource/min_resource)) = {top}: no rung would be left",
            )
    return Schedule(
        min_resource=_num(r or 1),
        max_resource=_num(big_r or 1),
        reduction_factor=_num(eta),
        early_stopping_rate=s,
        brackets=brackets,
        max_trials=max_trials,
        time_limit_s=time_limit,
        target=target,
        max_attempts=attempts,
        bracket_trials=bracket_trials,
        stop_on=stop_on,
    )


MLP_METRICS = ("val_loss", "val_accuracy", "train_loss")  # what the mlp kernel reports


def _check_mlp(v: _Validator, schedule: Schedule, space: SearchSpace) -> None:
    """The mlp trainer's resource is whole epochs, and its space must name its hyperparameters."""
    from ash.scheduler.core.ladder import max_rungs, rung_resources

    sch = schedule
    top = max_rungs(sch.min_resource, sch.max_resource, sch.reduction_factor)
    for s in range(top + 1):
        for r in rung_resources(sch.min_resource, sch.max_resource, sch.reduction_factor, s):
            if not float(r).is_integer():
                v.bad(
                    "asha",
                    f"the mlp trainer's resource is whole epochs, but a rung would train to {r} "
                    "(use integer min_resource, max_resource and reduction_factor)",
                )
                return
    for key, message in space_checker("mlp")(space):
        v.bad(key, message)


def _trainer(v: _Validator, t: Any) -> TrainerSpec:
    if not isinstance(t, Mapping):
        v.bad("trainer", f"must be a table, got {t!r}")
        return TrainerSpec()
    kind = v.get(t, "trainer", "type", str, "mlp")
    if kind not in TRAINERS:
        v.bad("trainer.type", f"unknown trainer {kind!r} (expected {', '.join(TRAINERS)})")
    dataset = v.get(t, "trainer", "dataset", str, "iris")
    fraction = v.get(t, "trainer", "validation_fraction", float, 0.3)
    if not 0 < fraction < 1:
        v.bad("trainer.validation_fraction", f"must be between 0 and 1 (exclusive), got {fraction}")
    entrypoint = v.get(t, "trainer", "entrypoint", str, None)
    if kind == "python":
        if entrypoint is None:
            v.bad("trainer.entrypoint", "missing: a python trainer needs entrypoint = 'pkg.mod:fn'")
        elif entrypoint.count(":") != 1 or not all(entrypoint.split(":")):
            v.bad("trainer.entrypoint", f"expected 'pkg.mod:fn', got {entrypoint!r}")
    elif entrypoint is not None:
        v.bad("trainer.entrypoint", "only a python trainer takes an entrypoint")
    if kind != "mlp":  # read by the mlp trainer only: a python trainer loads its own data
        for key in ("dataset", "validation_fraction"):
            if key in t:
                v.bad(f"trainer.{key}", f"only the mlp trainer takes {key} (this one is {kind!r})")
    timeout = v.get(t, "trainer", "timeout_s", float, None)
    if timeout is not None and not 0 < timeout <= MAX_SECONDS:
        v.bad("trainer.timeout_s", f"must be > 0 and <= {MAX_SECONDS:g} seconds, got {timeout}")
    v.unknown(t, "trainer", ("type", "dataset", "validation_fraction", "entrypoint", "timeout_s"))
    return TrainerSpec(
        type=kind,
        dataset=dataset,
        validation_fraction=fraction,
        entrypoint=entrypoint,
        timeout_s=timeout,
    )


class _Validator:
    """Collects problems as (key, message) pairs while reading typed values."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def bad(self, key: str, message: str) -> None:
        self.problems.append((key, message))

    def table(self, data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        t = data.get(key, {})
        if not isinstance(t, Mapping):
            self.bad(key, f"must be a table [{key}], got {type(t).__name__}")
            return {}
        return t

    def unknown(self, t: Mapping[str, Any], table: str, known: tuple[str, ...]) -> None:
        for key in t:
            if key not in known:
                self.bad(f"{table}.{key}", f"unknown key (expected one of {', '.join(known)})")

    def get(self, t: Mapping[str, Any], table: str, key: str, kind: type, default: Any) -> Any:
        if key not in t:
            return default
        value = t[key]
        where = f"{table}.{key}"
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.bad(where, f"must be a number, got {value!r}")
                return default if default is not None else 1
            if not math.isfinite(value):
                self.bad(where, f"must be finite, got {value!r}")
                return default if default is not None else 1
            return value
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            self.bad(where, f"must be an integer, got {value!r}")
            return default if default is not None else 1
        if kind is bool and not isinstance(value, bool):
            self.bad(where, f"must be true or false, got {value!r}")
            return default
        if kind is str and not isinstance(value, str):
            self.bad(where, f"must be a string, got {value!r}")
            return default
        if kind is dict and not isinstance(value, Mapping):
            self.bad(where, f"must be a table, got {value!r}")
            return default
        return value


def _num(x: float) -> float:
    """Keep integral numbers as int so resources print as 9, not 9.0."""
    return int(x) if float(x).is_integer() else float(x)
