"""The rung ladder: which resource each rung of each bracket trains to.

Bracket s (the early-stopping rate) has rungs k = 0..K with r_k = r * eta^(s+k) and
K = floor(log_eta(R/r)) - s; the top rung is clamped to R so it always trains to max_resource.
The floor is computed by exact multiplication, not by a floating-point logarithm.

``ladder_problem`` is the spec checker's gate: a bracket has at most ``MAX_RUNGS`` rungs, so the
resources r * eta^k stay finite and few, and Hyperband's bracket sizes (eta^K) stay numbers.
Past that gate ``max_rungs`` still stops where r * eta^k overflows (it exceeds any finite R).
"""

from __future__ import annotations

import math

MAX_RUNGS = 64  # per bracket: eta >= 2 makes that a ratio max_resource/min_resource >= 2**63


def ladder_problem(r: float, big_r: float, eta: float) -> str | None:
    """What is wrong with a ladder from ``r`` to ``big_r`` by ``eta`` (already positive, finite,
    big_r >= r, eta >= 2), or None: more than MAX_RUNGS rungs, or a ratio that overflows."""
    ratio = big_r / r
    if not math.isfinite(ratio):
        return f"max_resource/min_resource = {big_r}/{r} overflows"
    rungs = max_rungs(r, big_r, eta) + 1  # a few thousand steps at most: r * eta^k overflows
    if rungs > MAX_RUNGS:
        return (
            f"the ladder from {r} to {big_r} by a factor of {eta} has {rungs} rungs, more than "
            f"{MAX_RUNGS} (raise min_resource or reduction_factor)"
        )
    return None


def max_rungs(r: float, big_r: float, eta: float) -> int:
    """floor(log_eta(R / r)), exactly for integral inputs."""
    k = 0
    while True:
        try:
            if r * eta ** (k + 1) > big_r * (1 + 1e-12):
                return k
        except OverflowError:  # past any finite R
            return k
        k += 1


def rung_resources(r: float, big_r: float, eta: float, s: int) -> list[float]:
    """Resources of rungs 0..K of bracket s; the last one is R."""
    top = max_rungs(r, big_r, eta) - s
    if top < 0:
        raise ValueError(f"early-stopping rate {s} leaves no rung between {r} and {big_r}")
    out = [_tidy(r * eta ** (s + k)) for k in range(top)]
    out.append(_tidy(big_r))
    return out


def bracket_size(s_max: int, top: int, eta: float) -> int:
    """Hyperband's number of configurations for a bracket with ``top`` halvings."""
    return math.ceil((s_max + 1) / (top + 1) * eta**top)


def _tidy(x: float) -> float:
    return int(x) if float(x).is_integer() else float(x)
