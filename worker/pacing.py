"""``--prefetch auto``: how many jobs a worker queues ahead of its slots, from how long its jobs
take.

A worker pulls: each slot that finishes waits one round trip to the scheduler for its next job.
For jobs of a tenth of a millisecond that wait is most of the time; for jobs of a second it is
nothing, and jobs queued ahead would only be decided earlier, on fewer results (ASHA's promotions
get worse) and held by one worker while another idles. So the depth follows the jobs: none
while they take ``SLOW_S`` or more, else enough to cover ``COVER_S`` of work per slot (at most
``MAX_AHEAD``), from a moving average of the jobs' seconds; a change is sent only when it at
least doubles or halves the depth, or turns it on or off, so the scheduler hears of it rarely.
"""

from __future__ import annotations

import math

SLOW_S = 0.05  # jobs this long or longer: nothing queued ahead
COVER_S = 0.02  # otherwise queue about this many seconds of jobs per slot
MAX_AHEAD = 32
WARMUP = 3  # jobs seen before the first decision


class Pacing:
    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.ahead = 0  # jobs queued beyond the slots now
        self.mean: float | None = None  # moving average of job seconds
        self.seen = 0

    def observe(self, seconds: float) -> int | None:
        """A job took ``seconds``; the new capacity (slots + ahead) when it should change."""
        self.seen += 1
        self.mean = seconds if self.mean is None else 0.8 * self.mean + 0.2 * seconds
        if self.seen < WARMUP:
            return None
        want = self.depth(self.mean)
        a, b = sorted((want, self.ahead))
        if want == self.ahead or (a > 0 and b < 2 * a):
            return None
        self.ahead = want
        return self.slots + want

    def depth(self, seconds: float) -> int:
        if seconds >= SLOW_S:
            return 0
        per_slot = min(MAX_AHEAD, max(1, math.ceil(COVER_S / max(seconds, 1e-6))))
        return min(MAX_AHEAD, per_slot * self.slots)
