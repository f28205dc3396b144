"""The scheduler's GC tuning: frozen garbage cycles are collected by the periodic sweep."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from ash.scheduler import server


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture
def thawed() -> Iterator[None]:
    yield
    gc.unfreeze()  # leave the test process as it was


def frozen_garbage() -> weakref.ref[Node]:
    """A cycle that is frozen while alive and then becomes garbage."""
    node = Node()
    ref = weakref.ref(node)
    gc.freeze()
    del node
    return ref


def test_a_frozen_cycle_outlives_collections_until_the_sweep(thawed: None) -> None:
    ref = frozen_garbage()
    gc.collect()
    assert ref() is not None  # frozen: the collector does not see it
    server.sweep()
    assert ref() is None


def test_freeze_periodically_sweeps_every_so_often(thawed: None) -> None:
    async def until_gone(sweep_every: int, ref: weakref.ref[Node]) -> bool:
        """Run the freezer (every millisecond) until the object is gone, at most 5 s."""
        task = asyncio.create_task(server.freeze_periodically(0.001, sweep_every=sweep_every))
        deadline = asyncio.get_running_loop().time() + 5.0
        while ref() is not None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)
        task.cancel()
        return ref() is None

    gc.disable()  # only the freezer collects
    try:
        frozen = frozen_garbage()
        young = weakref.ref(Node())  # garbage at once, never frozen
        assert asyncio.run(until_gone(10**9, young))  # the freezer ran and collected it
        assert frozen() is not None  # ... but not the frozen cycle
        assert asyncio.run(until_gone(3, frozen))  # a sweep does
    finally:
        gc.enable()
