"""Brackets: the three ways a ladder of rungs hands out work.

A bracket owns its rungs and answers two questions: "which trial goes up next?" (``promotion``)
and "does this bracket take a new trial now?" (``wants_new``). It is told of completed results
(``record``). It never samples configurations or tracks jobs: the Scheduler does that.

- PromotionBracket: ASHA as in the paper (Algorithm 2). Scan rungs K-1..0; promote the best trial
  in the top floor(n_k/eta) not yet promoted. Always takes new trials.
- StoppingBracket: the stopping variant the peers ship. A result at rung k either continues at
  once (rank among rung k's results so far within the top n_k/eta) or stops for good. With
  ``inline`` (``[asha] stop_on = "reports"``) a trial is one job to the top rung and its
  reports at rung milestones are the results ranked (``decide``): a continue queues no job, the
  running one goes on.
- SyncBracket: synchronous Successive Halving. Rung 0 takes ``size`` trials; rung k+1 is filled
  only when every result of rung k is in, with its top max(1, floor(n_k/eta)) successful trials.
"""

from __future__ import annotations

from collections import deque

from ash.scheduler.core.rungs import Rung


class PromotionBracket:
    kind = "promotion"

    def __init__(self, index: int, resources: list[float], eta: float) -> None:
        self.index = index
        self.eta = eta
        self.rungs = [Rung(r, eta, ceil=self.kind == "stopping") for r in resources]

    @property
    def top(self) -> int:
        return len(self.rungs) - 1

    def record(self, trial: int, rung: int, score: float) -> None:
        self.rungs[rung].add(trial, score, promotable=rung < self.top)

    def peek_promotion(self) -> tuple[int, int] | None:
        """(trial, from_rung) of the promotion get_job would make, without making it."""
        for k in range(self.top - 1, -1, -1):
            head = self.rungs[k].best_promotable()
            if head is not None:
                return head[1], k
        return None

    def promotion(self) -> tuple[int, int] | None:
        """Make the next promotion: (trial, to_rung), or None if none is allowed."""
        for k in range(self.top - 1, -1, -1):
            trial = self.rungs[k].pop_promotable()
            if trial is not None:
                return trial, k + 1
        return None

    def wants_new(self) -> bool:
        return True

    def done(self) -> bool:
        return False


class StoppingBracket(PromotionBracket):
    kind = "stopping"

    def __init__(
        self, index: int, resources: list[float], eta: float, *, inline: bool = False
    ) -> None:
        super().__init__(index, resources, eta)
        self.inline = inline
        self.continuing: deque[tuple[int, int]] = deque()

    def record(self, trial: int, rung: int, score: float) -> None:
        if self.decide(trial, rung, score) and not self.inline:
            self.continuing.append((trial, rung + 1))

    def decide(self, trial: int, rung: int, score: float) -> bool:
        """Record a result at ``rung``; whether the trial continues: the stopping rule decides
        at once, continue iff below the top rung and in the top ceil(n/eta) so far."""
        in_top = self.rungs[rung].add(trial, score, promotable=False)
        return rung < self.top and score != float("inf") and in_top

    def peek_promotion(self) -> tuple[int, int] | None:
        return (self.continuing[0][0], self.continuing[0][1] - 1) if self.continuing else None

    def promotion(self) -> tuple[int, int] | None:
        return self.continuing.popleft() if self.continuing else None


class SyncBracket:
    kind = "sync"

    def __init__(self, index: int, resources: list[float], eta: float, size: int) -> None:
        self.index = index
        self.eta = eta
        self.rungs = [Rung(r, eta) for r in resources]
        self.keys: list[list[tuple[float, int]]] = [[] for _ in resources]
        self.size = [0] * len(resources)  # how many trials each rung takes (0 = not yet known)
        self.size[0] = size
        self.issued = [0] * len(resources)
        self.queue: deque[tuple[int, int]] = deque()
        self.finished = False

    @property
    def top(self) -> int:
        return len(self.rungs) - 1

    def record(self, trial: int, rung: int, score: float) -> None:
        self.rungs[rung].add(trial, score, promotable=False)
        self.keys[rung].append((score, trial))
        self._maybe_advance(rung)

    def _maybe_advance(self, rung: int) -> None:
        keys = self.keys[rung]
        if len(keys) < self.size[rung]:
            return
        if rung == self.top:
            self.finished = True
            return
        ok = sorted(key for key in keys if key[0] != float("inf"))
        take = ok[: max(1, int(len(keys) // self.eta))]
        if not take:
            self.finished = True
            return
        self.size[rung + 1] = len(take)
        self.queue.extend((trial, rung + 1) for _, trial in take)

    def peek_promotion(self) -> tuple[int, int] | None:
        return (self.queue[0][0], self.queue[0][1] - 1) if self.queue else None

    def promotion(self) -> tuple[int, int] | None:
        if not self.queue:
            return None
        trial, rung = self.queue.popleft()
        self.issued[rung] += 1
        return trial, rung

    def wants_new(self) -> bool:
        return self.issued[0] < self.size[0]

    def took_new(self) -> None:
        self.issued[0] += 1

    def done(self) -> bool:
        return self.finished


Bracket = PromotionBracket | SyncBracket
