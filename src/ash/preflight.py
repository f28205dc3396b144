"""Start-up checks a spec cannot make on its own, all reported in one run.

The spec validator (ash.spec) reads one file in one pass. What needs more than the file (the
trainer's module importing, its entrypoint taking the trainer's arguments, the dataset being
there, ``--out`` and ``--trace`` being writable) is checked here before any worker starts, each
check run even when an earlier one failed, so a user fixes every problem in one go: one
``PreflightError`` lists them all, a line each.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ash.errors import UserError
from ash.spec import StudySpec


class PreflightError(UserError, ValueError):
    """One or more start-up problems; ``problems`` holds their lines."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        text = (
            problems[0]
            if len(problems) == 1
            else "\n  ".join([f"{len(problems)} problems:", *problems])
        )
        super().__init__(text)


def signature_problem(fn: Callable[..., Any], name: str) -> str | None:
    """What keeps ``fn`` from being called as a trainer, or None: it must take
    ``(config, start, stop, state)`` or ``(config, ctx)`` positionally."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # a builtin or an extension: called as it is
    params = list(sig.parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    required_kw = [p for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    for n in (4, 2):
        if len(required) <= n <= len(positional) and not required_kw:
            return None
    return (
        f"{name}: takes ({', '.join(p.name for p in params)}), not a trainer's "
        "(config, start, stop, state) or (config, ctx)"
    )


def preflight(
    spec: StudySpec,
    *,
    out: str | Path | None = None,
    trace: str | Path | None = None,
    trainer: Callable[..., Any] | None = None,
    journal: str | Path | None = None,
) -> None:
    """Run every start-up check; raise one PreflightError naming all that failed."""
    from ash.paths import check_out_dir, check_trace_file, check_trace_target
    from ash.worker.trainers import as_trainer, check_reports, check_trainer, make_trainer

    problems: list[str] = []

    def attempt(check: Callable[[], object]) -> object:
        try:
            return check()
        except UserError as exc:
            problems.append(str(exc))
            return None

    attempt(lambda: check_out_dir(out, "--out"))
    attempt(lambda: check_trace_file(trace, "--trace"))
    attempt(lambda: check_trace_target(trace, journal=journal, out=out, spec=spec.source))
    if trainer is not None:
        name = getattr(trainer, "__name__", "trainer")
        problem = signature_problem(trainer, name)
        if problem is not None:
            problems.append(f"tune({problem})")
        else:
            attempt(lambda: check_reports(spec, as_trainer(trainer), f"tune({name})"))
    elif spec.trainer is not None and spec.trainer.type == "python":
        made = attempt(lambda: make_trainer(spec))
        fn = getattr(made, "fn", None)
        if fn is not None:
            entry = f"trainer.entrypoint {spec.trainer.entrypoint!r}"
            problem = signature_problem(fn, entry)
            if problem is not None:
                problems.append(f"{spec.source}: {problem}")
            else:
                attempt(lambda: check_reports(spec, made, f"{spec.source}: {entry}"))
    else:
        attempt(lambda: check_trainer(spec))
    if problems:
        raise PreflightError(problems)
