"""The hyperparameters the mlp trainer takes, their defaults and their legal values.

Kept free of numpy and the kernel so that spec validation (before anything runs) can check a
``[space]`` against it: an unknown name or a value the kernel would refuse is a spec error that
names the key, not a failure in the middle of a study.
"""

from __future__ import annotations

from collections.abc import Callable

from ash.scheduler.core.space import (
    Choice,
    Constant,
    Domain,
    Int,
    LogUniform,
    SearchSpace,
    Uniform,
    Value,
)

ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu", "leaky_relu")
OPTIMIZERS = ("sgd", "adam")


def _num(
    lo: float, hi: float, *, lo_open: bool = False, integer: bool = False
) -> Callable[[Value], bool]:
    def ok(v: Value) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return False
        if integer and not isinstance(v, int):
            return False
        return (lo < v if lo_open else lo <= v) and v <= hi

    return ok


# name -> (default, legal-value test, description of the legal values)
PARAMS: dict[str, tuple[Value, Callable[[Value], bool], str]] = {
    "lr": (0.1, _num(0.0, 1e3, lo_open=True), "a number > 0"),
    "hidden": (32, _num(1, 65536, integer=True), "an integer width from 1 to 65536"),
    "layers": (1, _num(1, 3, integer=True), "1, 2 or 3 hidden layers"),
    "activation": ("relu", lambda v: v in ACTIVATIONS, f"one of {', '.join(ACTIVATIONS)}"),
    "optimizer": ("sgd", lambda v: v in OPTIMIZERS, f"one of {', '.join(OPTIMIZERS)}"),
    "dropout": (0.0, _num(0.0, 0.95), "a number from 0 to 0.95"),
    "momentum": (0.0, _num(0.0, 0.999), "a number from 0 to 0.999"),
    "weight_decay": (0.0, _num(0.0, 10.0), "a number from 0 to 10"),
    "batch_size": (32, _num(1, 2**31 - 1, integer=True), "an integer >= 1"),
}


def _extremes(domain: Domain) -> list[Value]:
    if isinstance(domain, Choice):
        return list(domain.values)
    if isinstance(domain, Constant):
        return [domain.value]
    if isinstance(domain, Int):
        return [domain.low, domain.high]
    if isinstance(domain, Uniform | LogUniform):
        return [domain.low, domain.high]
    return []


def check_space(space: SearchSpace) -> list[tuple[str, str]]:
    """Problems (key, message) of a space for the mlp trainer; empty when it is fine."""
    problems = []
    for name, domain in space.domains.items():
        if name not in PARAMS:
            problems.append(
                (
                    f"space.{name}",
                    f"the mlp trainer has no such hyperparameter (it takes {', '.join(PARAMS)})",
                )
            )
            continue
        _, ok, legal = PARAMS[name]
        for v in _extremes(domain):
            if not ok(v):
                problems.append((f"space.{name}", f"value {v!r} is not {legal}"))
                break
    return problems
