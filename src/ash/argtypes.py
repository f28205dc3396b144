"""argparse types shared by every entry point: numbers that must obey a rule, and ports.

Each type turns a bad value into ``argparse.ArgumentTypeError``, so argparse prints the flag,
the rule and the value on one line and exits 2 before anything starts.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def number(ok: Callable[[float], bool], rule: str) -> Callable[[str], float]:
    """An argparse type: a float for which ``ok`` holds, else an error stating ``rule``."""

    def parse(text: str) -> float:
        try:
            x = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not ok(x):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {x}")
        return x

    return parse


def whole(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``least``."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if n < least:
            raise argparse.ArgumentTypeError(f"must be >= {least}, got {n}")
        return n

    return parse


positive_int = whole(1)
non_negative_int = whole(0)
positive = number(lambda x: math.isfinite(x) and x > 0, "a finite number > 0")
non_negative = number(lambda x: math.isfinite(x) and x >= 0, "a finite number >= 0")


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free one) to 65535."""
    n = non_negative_int(text)
    if n > 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 0 to 65535, got {n}")
    return n
