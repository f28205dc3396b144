"""An independent checker that a trace obeys ASHA's Algorithm 2 (promotion variant).

Deliberately naive (it re-sorts whole rungs at every step) and written without the core's data
structures, so that tests compare the fast core against a plain reading of the paper. It replays
trace events in order and reports every violation of:

- each job handed out once: a (trial, rung) is assigned again only after it was lost;
- results match an outstanding assignment, and are counted once;
- at most one promotion per trial and rung; a promotion only of a trial with a successful result
  at the rung below that is in the current top floor(n_k/eta) there, is the best such trial not
  yet promoted, and only when no higher rung of its bracket has a promotable trial;
- a new trial only when no rung of any bracket has a promotable trial.

Only the first two hold for other algorithms (``check_promotions=False``). Stopping on reports
(``[asha] stop_on = "reports"``, ``whole_jobs``): a trial is one job assigned at its top rung
that settles at the rung it was stopped at (its result, or a loss then its result), so results
and losses are matched to the trial's outstanding job whatever its rung.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


class _Bracket:
    def __init__(self) -> None:
        self.rungs: dict[int, dict[int, float]] = {}  # rung -> trial -> score (inf = failed)
        self.promoted: dict[int, set[int]] = {}  # rung -> trials promoted out of it

    def promotable(self, k: int, eta: float) -> list[int]:
        results = self.rungs.get(k, {})
        ranked = sorted(results.items(), key=lambda kv: (kv[1], kv[0]))
        top = ranked[: int(len(ranked) // eta)]
        done = self.promoted.get(k, set())
        return [t for t, score in top if t not in done and score != math.inf]


def audit(
    events: Iterable[dict[str, Any]],
    *,
    eta: float,
    mode: str,
    top_rung: dict[int, int] | int,
    check_promotions: bool = True,
    whole_jobs: bool = False,
) -> list[str]:
    """Violations found in ``events`` (empty when the trace obeys Algorithm 2)."""
    brackets: dict[int, _Bracket] = {}
    outstanding: dict[tuple[int, int], dict[str, Any]] = {}
    lost: set[tuple[int, int]] = set()
    assigned: set[tuple[int, int]] = set()
    trial_bracket: dict[int, int] = {}
    problems: list[str] = []

    def top_of(b: int) -> int:
        return top_rung if isinstance(top_rung, int) else top_rung[b]

    def bracket(b: int) -> _Bracket:
        if b not in brackets:
            brackets[b] = _Bracket()
        return brackets[b]

    for i, ev in enumerate(events):
        kind = ev["event"]
        trial, rung, b = ev["trial"], ev["rung"], ev.get("bracket", 0)
        key = (trial, -1) if whole_jobs else (trial, rung)
        where = f"event {i} ({kind} trial {trial} rung {rung})"
        if kind == "assign":
            if key in outstanding:
                problems.append(f"{where}: assigned while already in flight")
            if key in lost:
                lost.discard(key)  # a re-issue after a lost worker
            elif key in assigned:
                problems.append(f"{where}: assigned twice")
            elif check_promotions:
                problems.extend(
                    f"{where}: {p}"
                    for p in _check_decision(brackets, trial_bracket, trial, rung, b, eta, top_of)
                )
            if rung > 0:
                bracket(b).promoted.setdefault(rung - 1, set()).add(trial)
            trial_bracket.setdefault(trial, b)
            assigned.add(key)
            outstanding[key] = ev
        elif kind == "result":
            if key in lost and (ev["value"] is None or whole_jobs):
                lost.discard(key)  # a job given up after its last attempt: counts as failed
            elif outstanding.pop(key, None) is None:
                problems.append(f"{where}: result without an outstanding assignment")
                continue
            value = ev["value"]
            score = math.inf if value is None else (value if mode == "min" else -value)
            bracket(b).rungs.setdefault(rung, {})[trial] = score
        elif kind == "lost":
            if outstanding.pop(key, None) is None:
                problems.append(f"{where}: lost without an outstanding assignment")
            lost.add(key)
        else:
            problems.append(f"{where}: unknown event")
    return problems


def _check_decision(
    brackets: dict[int, _Bracket],
    trial_bracket: dict[int, int],
    trial: int,
    rung: int,
    b: int,
    eta: float,
    top_of: Any,
) -> list[str]:
    if rung == 0:
        if trial in trial_bracket:
            return ["rung-0 assignment of a trial that exists already"]
        for bi, other in brackets.items():
            for k in range(top_of(bi)):
                if other.promotable(k, eta):
                    return [f"new trial while bracket {bi} rung {k} has promotable trials"]
        return []
    br = brackets.get(b)
    if br is None or trial not in br.rungs.get(rung - 1, {}):
        return [f"promoted without a result at rung {rung - 1}"]
    for k in range(top_of(b) - 1, rung - 1, -1):
        if br.promotable(k, eta):
            return [f"promoted from rung {rung - 1} while higher rung {k} has promotable trials"]
    candidates = br.promotable(rung - 1, eta)
    if trial not in candidates:
        return [f"not among the promotable trials of rung {rung - 1}: {candidates[:5]}"]
    if candidates[0] != trial:
        return [f"not the best promotable trial of rung {rung - 1} (that is {candidates[0]})"]
    return []


def audit_for(events: Iterable[dict[str, Any]], spec: Any) -> list[str]:
    """``audit`` with eta, mode and the bracket ladders taken from a StudySpec."""
    from ash.scheduler.core.ladder import max_rungs

    sch = spec.schedule
    s_max = max_rungs(sch.min_resource, sch.max_resource, sch.reduction_factor)
    if spec.algorithm == "random":
        tops: dict[int, int] = {0: 0}
    else:
        tops = {b: s_max - sch.early_stopping_rate - b for b in range(sch.brackets)}
    return audit(
        events,
        eta=sch.reduction_factor,
        mode=spec.mode,
        top_rung=tops if spec.algorithm in ("asha", "random") else max(tops.values()),
        check_promotions=spec.algorithm in ("asha", "random"),
        whole_jobs=spec.algorithm == "asha-stopping" and spec.schedule.stop_on == "reports",
    )
