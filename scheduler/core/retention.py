"""Checkpoint retention: which trials' checkpoints can still be needed (pure, sans-I/O).

A trial's checkpoint at rung k (resource r_k) is read only by its promotion to rung k+1 (and by
that job's re-issues). ``Retention`` follows the core's inputs (jobs issued, results recorded)
and says which checkpoints can go, as ``(trial, resource, dead)`` drops; the driver deletes them
once the result that made them safe is durable. Three rules:

1. Latest per trial: a trial's rung-k checkpoint goes once its rung-k+1 result is recorded
   (successful or failed); a failed result's checkpoint goes at once (it is never promoted).
2. Never promotable ("dead"): a trial at rung k whose rank there can no longer reach the set the
   bracket promotes from.

   - ASHA (promotion, Algorithm 2): rung k promotes from its top floor(n_k/eta) keys (score,
     trial). A key's rank never improves as the rung fills, so a key outside the best
     floor(F_k/eta) keys, F_k an upper bound on rung k's final size, is never promoted. ASHA may
     promote more than floor(n/eta) trials in total (a promoted trial can be overtaken later),
     so F_k is not floor(F_{k-1}/eta): it is bounded from the counts the rung below holds now,
     F_0 = the bracket's share of ``max_trials`` and
     F_{k+1} = min(F_k, promoted_k + alive_k + (F_k - n_k)), where alive_k counts the
     unpromoted successful keys of rung k still within its bound and F_k - n_k the results rung
     k may still receive. Without ``max_trials`` (a time limit) F_0 is unbounded and rule 2
     does not apply to ASHA.
   - ASHA stopping variant: a result continues at once or never: a stopped one is dead.
   - Synchronous SH / Hyperband: rung k holds exactly size_k results and promotes its top
     max(1, floor(size_k/eta)) successful ones: a key outside that many best keys is dead.
3. The top rung is never promoted from: its checkpoints (the trained models) are kept only for
   the best ``keep_best`` top-rung results so far; when the study ends (``final``) only the
   ``keep_best`` best trials (highest resource reached, then score, then trial id; the order
   results.json ranks by) keep their latest checkpoint.

Raising ``max_trials`` on an existing journal raises F_0: a checkpoint dropped under the old
bound may then be wanted. The driver hands such a promotion out with ``start = 0`` (the trial is
retrained from scratch); the store remembers which trials it dropped as dead for that.

Costs: O(K + log n) per input for K rungs; memory O(trials).
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING, NamedTuple

from ash.scheduler.core.brackets import StoppingBracket, SyncBracket

if TYPE_CHECKING:
    from ash.scheduler.core.scheduler import Job, Scheduler


class Drop(NamedTuple):
    """The checkpoint of ``trial`` at ``resource`` can go; ``dead``: the trial will never resume
    from any checkpoint again (as opposed to one replaced by its newer checkpoint)."""

    trial: int
    resource: float
    dead: bool


class _Watch:
    """The best ``cap`` successful keys of one rung (a max-heap), the rest being dead.

    ``cap`` None: unbounded (nothing dies). ``cap`` only ever shrinks."""

    __slots__ = ("alive", "cap", "heap", "members", "n", "promoted", "up")

    def __init__(self, cap: int | None) -> None:
        self.cap = cap
        self.n = 0  # results recorded at this rung (failed included)
        self.heap: list[tuple[float, int]] = []  # negated keys: the worst kept key at the root
        self.members: set[int] = set()
        self.up: set[int] = set()  # trials in the heap already promoted from this rung
        self.alive = 0  # unpromoted successful keys not (yet) known dead
        self.promoted = 0

    def add(self, trial: int, score: float) -> list[int]:
        """Record a result; return the trials that are now dead (maybe ``trial`` itself)."""
        self.n += 1
        if score == math.inf:
            return [trial]
        full = self.cap is not None and len(self.heap) >= self.cap
        if full and (not self.heap or (score, trial) > (-self.heap[0][0], -self.heap[0][1])):
            return [trial]  # dead on arrival: worse than every kept key
        heapq.heappush(self.heap, (-score, -trial))
        self.members.add(trial)
        self.alive += 1
        return self.shrink(self.cap)

    def shrink(self, cap: int | None) -> list[int]:
        if cap is None:
            return []
        self.cap = cap if self.cap is None else min(self.cap, cap)
        dead: list[int] = []
        while len(self.heap) > self.cap:
            _, neg = heapq.heappop(self.heap)
            trial = -neg
            self.members.discard(trial)
            if trial in self.up:
                self.up.discard(trial)
            else:
                self.alive -= 1
                dead.append(trial)
        return dead

    def promote(self, trial: int) -> None:
        self.promoted += 1
        if trial in self.members and trial not in self.up:
            self.up.add(trial)
            self.alive -= 1


class Retention:
    """Follows a Scheduler's inputs; see the module docstring. Call ``issued`` for every job
    the core hands out and ``result`` for every result it records (after the core did)."""

    def __init__(self, core: Scheduler, keep_best: int) -> None:
        self.core = core
        self.keep_best = keep_best
        self.max_trials = core.schedule.max_trials
        self.watches: dict[tuple[int, int], _Watch] = {}
        self.kept: dict[int, tuple[float, float]] = {}  # trial -> (resource, score) it may need
        self.at: dict[int, int] = {}  # trial -> the rung of its latest result
        self.promoted: set[int] = set()  # trials whose latest rung's checkpoint a job resumes
        self.best_top: list[tuple[float, int]] = []  # negated keys: the keep_best best at R

    # -- inputs ---------------------------------------------------------------------------

    def issued(self, job: Job) -> None:
        """A job was handed out (new, promoted or re-issued)."""
        if job.rung == 0 or self.at.get(job.trial) != job.rung - 1:
            return
        if job.trial in self.promoted:
            return  # a re-issue
        self.promoted.add(job.trial)
        bracket = self.core.brackets[job.bracket]
        if not isinstance(bracket, StoppingBracket):
            self._watch(job.bracket, job.rung - 1).promote(job.trial)

    def result(self, job: Job, score: float) -> list[Drop]:
        """A result was recorded for ``job`` (``score`` as the core ranks it): what can go."""
        trial, rung = job.trial, job.rung
        drops: list[Drop] = []
        prev = self.kept.pop(trial, None)
        if prev is not None:
            drops.append(Drop(trial, prev[0], False))
        self.promoted.discard(trial)
        self.at[trial] = rung
        self.kept[trial] = (job.stop, score)
        bracket = self.core.brackets[job.bracket]
        if rung == bracket.top:
            self._top(trial, score, drops)
        elif isinstance(bracket, StoppingBracket):
            cont = bracket.continuing
            if score == math.inf or not cont or cont[-1] != (trial, rung + 1):
                self._dead(trial, rung, drops)
        else:
            for t in self._watch(job.bracket, rung).add(trial, score):
                self._dead(t, rung, drops)
            if not isinstance(bracket, SyncBracket):
                self._tighten(job.bracket, drops)
        return drops

    # -- answers --------------------------------------------------------------------------

    def wants_top(self, trial: int, score: float) -> bool:
        """Whether a top-rung result would be among the ``keep_best`` kept (else its state
        need not even be written)."""
        if score == math.inf or self.keep_best <= 0:
            return False
        top = self.best_top
        return len(top) < self.keep_best or (score, trial) < (-top[0][0], -top[0][1])

    def needed(self) -> dict[int, float]:
        """trial -> the resource of the one checkpoint it may still need."""
        return {t: r for t, (r, _) in self.kept.items()}

    def final(self) -> list[Drop]:
        """At the study's end: every kept checkpoint but the ``keep_best`` best trials'."""
        ranked = sorted(self.kept.items(), key=lambda kv: (-kv[1][0], kv[1][1], kv[0]))
        drops = [Drop(t, r, True) for t, (r, _) in ranked[self.keep_best :]]
        for d in drops:
            del self.kept[d.trial]
        return drops

    # -- internals ------------------------------------------------------------------------

    def _watch(self, bracket: int, rung: int) -> _Watch:
        w = self.watches.get((bracket, rung))
        if w is None:
            w = _Watch(self._cap(bracket, rung))
            self.watches[(bracket, rung)] = w
        return w

    def _cap(self, bracket: int, rung: int) -> int | None:
        b = self.core.brackets[bracket]
        if isinstance(b, SyncBracket):  # the rung's size is known once it takes trials
            size = b.size[rung]
            return max(1, int(size // b.eta)) if size > 0 else None
        f0 = self._share(bracket)
        return None if f0 is None or rung > 0 else int(f0 // b.eta)

    def _share(self, bracket: int) -> int | None:
        """F_0: how many trials the bracket can ever take (trial i goes to bracket i mod B)."""
        if self.max_trials is None:
            return None
        n_brackets = len(self.core.brackets)
        return max(0, (self.max_trials - bracket + n_brackets - 1) // n_brackets)

    def _tighten(self, bracket: int, drops: list[Drop]) -> None:
        """Recompute the bounds F_k of a promotion bracket and kill what fell out of them."""
        f = self._share(bracket)
        if f is None:
            return
        b = self.core.brackets[bracket]
        watches = self.watches
        for k in range(b.top):
            w = watches.get((bracket, k)) or self._watch(bracket, k)
            cap = int(f // b.eta)
            if w.cap is None or cap < w.cap:  # add() already holds the rung to its cap
                for t in w.shrink(cap):
                    self._dead(t, k, drops)
            more = w.promoted + w.alive + (f - w.n if f > w.n else 0)
            if more < f:
                f = more

    def _dead(self, trial: int, rung: int, drops: list[Drop]) -> None:
        if self.at.get(trial) != rung or trial in self.promoted:
            return
        got = self.kept.pop(trial, None)
        if got is not None:
            drops.append(Drop(trial, got[0], True))

    def _top(self, trial: int, score: float, drops: list[Drop]) -> None:
        if score == math.inf or self.keep_best <= 0:
            self._dead(trial, self.at[trial], drops)
            return
        heapq.heappush(self.best_top, (-score, -trial))
        if len(self.best_top) > self.keep_best:
            _, neg = heapq.heappop(self.best_top)
            self._dead(-neg, self.at[-neg], drops)
