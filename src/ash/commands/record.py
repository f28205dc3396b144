"""``ash record``: learning curves of random configurations, in the simulator's curves format."""

from __future__ import annotations

import argparse

from ash.errors import UserError


def run(args: argparse.Namespace) -> int:
    raise UserError("ash record: not implemented yet")
