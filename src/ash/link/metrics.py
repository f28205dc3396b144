"""What a trial's metrics may be: the one validator both the worker and the scheduler apply.

Metrics land in the journal, ``results.json``, ``trials.csv`` and the trace's reports, once per
result, so a trainer that returns a list, a megabyte of text or ten thousand keys would bloat
every one of them. A result's metrics must therefore be:

- at most ``MAX_METRICS`` (64) of them, named by strings of 1..``MAX_NAME_CHARS`` (64) chars;
- each a number (bool, int within int64, float) or a string of at most ``MAX_TEXT_CHARS``
  (256) chars, or None (no value; not sent over the wire); numpy-like scalars (anything with a
  ``shape`` of ``()`` and an ``item()``) count as the Python value ``item()`` returns;
- together at most ``MAX_TOTAL_BYTES`` (16 KiB): UTF-8 names and texts, 8 bytes per number.

Non-finite floats are allowed here: they are data (a diverged run), which ranks worst when it is
the study's metric and is written as null. Anything else fails that one result, never the
study: ``check_metrics`` returns the reason, naming the metric and what is wrong.
``MAX_ERROR_CHARS`` bounds a result's error message for the same reason (``clip_error``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ash.scheduler.core.space import Value

MAX_METRICS = 64
MAX_NAME_CHARS = 64
MAX_TEXT_CHARS = 256
MAX_TOTAL_BYTES = 16 * 1024
MAX_ERROR_CHARS = 2000
INT64 = (-(2**63), 2**63 - 1)

Metrics = dict[str, Value | None]


def check_metrics(metrics: Mapping[Any, Any]) -> tuple[Metrics, str | None]:
    """``(clean, None)`` with numpy-like scalars unwrapped, or ``({}, reason)`` if the metrics
    break a limit of this module (the reason names the metric and what is wrong)."""
    if len(metrics) > MAX_METRICS:
        return {}, f"{len(metrics)} metrics (at most {MAX_METRICS})"
    clean: Metrics = {}
    total = 0
    for name, raw in metrics.items():
        if not isinstance(name, str):
            return {}, f"metric name {_short(name)} is a {type(name).__name__}, not a string"
        if not 0 < len(name) <= MAX_NAME_CHARS:
            chars = f"{len(name)} characters (1..{MAX_NAME_CHARS})"
            return {}, f"metric name {_short(name)} has {chars}"
        value, problem = _value(raw)
        if problem is not None:
            return {}, f"metric {name!r}: {problem}"
        total += len(name.encode("utf-8", "replace"))
        total += len(value.encode("utf-8", "replace")) if isinstance(value, str) else 8
        if total > MAX_TOTAL_BYTES:
            return {}, f"metrics exceed {MAX_TOTAL_BYTES} bytes in all (at metric {name!r})"
        clean[name] = value
    return clean, None


def _value(raw: Any) -> tuple[Value | None, str | None]:
    v = raw
    scalar = getattr(v, "shape", None) == () and callable(getattr(v, "item", None))
    if scalar and not isinstance(v, bool | int | float | str):
        try:
            v = v.item()  # numpy scalars, 0-d arrays, one-element tensors
        except Exception:  # a foreign object's item() may raise anything
            v = raw
    if v is None:
        return None, None
    if isinstance(v, bool):
        return bool(v), None
    if isinstance(v, float):
        return float(v), None  # a subclass (numpy's float64) becomes a plain float
    if isinstance(v, int):
        if not INT64[0] <= v <= INT64[1]:
            return None, "an integer outside the 64-bit range"
        return int(v), None
    if isinstance(v, str):
        if len(v) > MAX_TEXT_CHARS:
            return None, f"a string of {len(v)} characters (at most {MAX_TEXT_CHARS})"
        return str(v), None
    return None, f"a {type(raw).__name__} is not a number or a string"


def clip_error(text: str) -> str:
    """``text`` cut to ``MAX_ERROR_CHARS`` characters (with a note of how much was cut)."""
    if len(text) <= MAX_ERROR_CHARS:
        return text
    return f"{text[:MAX_ERROR_CHARS]}... ({len(text) - MAX_ERROR_CHARS} more characters)"


def _short(name: object) -> str:
    text = repr(name)
    return text if len(text) <= MAX_NAME_CHARS + 2 else f"{text[:MAX_NAME_CHARS]}..."


MAX_REPORTS_PER_JOB = 1000  # intermediate reports (ctx.report) one job keeps; later ones dropped
MAX_REPORT_BATCH = 256  # reports of one job in one message


def check_step(step: Any) -> tuple[float | None, str | None]:
    """A report's step as a number, or (None, reason): a finite int or float (not a bool)."""
    v = step
    if getattr(v, "shape", None) == () and callable(getattr(v, "item", None)):
        try:
            v = v.item()
        except Exception:
            v = step
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None, f"step {_short(step)} is not a number"
    f = float(v)
    if f != f or f in (float("inf"), float("-inf")):
        return None, f"step {v} is not finite"
    return (int(f) if f.is_integer() and abs(f) < 2**53 else f), None
