"""Warm start: the configurations a study tries first (``[study] enqueue``, ``tune(enqueue=)``).

Known-good configurations (a previous study's best, a published default) become the study's
first new trials, in the order given, before anything is sampled (Optuna's ``enqueue_trial``).
This module owns reading them (a list of tables in the spec, or a JSON file of objects named
by a path relative to the spec) and checking each against the ``[space]``: every parameter
given must be in the space with a value inside its domain; a parameter left out is filled in
only when its domain is a constant. An int given for a float domain is taken as that float.
The core receives them as an input (``StudySpec.enqueue``) and hands them out deterministically;
each is journaled as its trial's config like any sampled one, so a replay checks it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ash.scheduler.core.space import Config, Constant, LogUniform, SearchSpace, Uniform

MAX_ENQUEUED = 10_000


def parse_enqueue(
    value: Any, space: SearchSpace, base_dir: Path
) -> tuple[tuple[Config, ...], list[tuple[str, str]]]:
    """(the configs, problems as (key, message) pairs naming ``study.enqueue[i].param``)."""
    where = "study.enqueue"
    if isinstance(value, str):
        path = base_dir / value
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            return (), [(where, f"{path}: cannot be read ({exc.strerror or exc})")]
        except ValueError as exc:
            return (), [(where, f"{path}: not JSON ({exc})")]
        where = f"study.enqueue ({path})"
    if not isinstance(value, Sequence) or isinstance(value, str):
        return (), [(where, "must be a list of tables like [{lr = 0.1}] or a JSON file's path")]
    if len(value) > MAX_ENQUEUED:
        return (), [(where, f"{len(value)} configs (at most {MAX_ENQUEUED})")]
    configs: list[Config] = []
    problems: list[tuple[str, str]] = []
    for i, entry in enumerate(value):
        config, bad = check_config(entry, space, f"{where}[{i}]")
        problems += bad
        if not bad:
            configs.append(config)
    return tuple(configs), problems


def check_config(
    entry: Any, space: SearchSpace, where: str
) -> tuple[Config, list[tuple[str, str]]]:
    """One enqueued config, completed and normalised, or the problems naming its keys."""
    if not isinstance(entry, Mapping):
        return {}, [(where, f"must be a table of parameter values, got {entry!r}")]
    problems: list[tuple[str, str]] = []
    for name in entry:
        if name not in space.domains:
            known = ", ".join(space.names())
            problems.append((f"{where}.{name}", f"not a parameter of [space] ({known})"))
    config: Config = {}
    for name in space.order:  # parents first: a `when` is judged on the values before it
        domain = space.domains[name]
        if not space.active(name, config):
            continue  # inactive: absent from the config (a value given for it is left out)
        if name not in entry:
            if isinstance(domain, Constant):
                config[name] = domain.value
            else:
                problems.append(
                    (f"{where}.{name}", "missing (give every active non-constant parameter)")
                )
            continue
        v = entry[name]
        if isinstance(domain, Uniform | LogUniform) and type(v) is int:
            v = float(v)
        if isinstance(v, float) and not math.isfinite(v):
            problems.append((f"{where}.{name}", f"{v!r} is not finite"))
        elif not isinstance(v, bool | int | float | str) or not domain.contains(v):
            problems.append((f"{where}.{name}", f"{v!r} is outside the domain {domain}"))
        else:
            config[name] = v
    return config, problems
