"""The rung ladder: which resource each rung of each bracket trains to.

Bracket s (the early-stopping rate) has rungs k = 0..K with r_k = r * eta^(s+k) and
K = floor(log_eta(R/r)) - s; the top rung is clamped to R so it always trains to max_resource.
The floor is computed by exact multiplication, not by a floating-point logarithm.
"""

from __future__ import annotations

import math


def max_rungs(r: float, big_r: float, eta: float) -> int:
    """floor(log_eta(R / r)), exactly for integral inputs."""
    k = 0
    while r * eta ** (k + 1) <= big_r * (1 + 1e-12):
        k += 1
    return k


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
