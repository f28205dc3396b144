"""Fixtures shared by the process tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from helpers import Scheduler


@pytest.fixture
def cleanup() -> Iterator[list[Any]]:
    procs: list[Any] = []
    yield procs
    for p in procs:
        proc = p.proc if isinstance(p, Scheduler) else p
        if proc.poll() is None:
            proc.kill()
            proc.wait()
