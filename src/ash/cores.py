"""The one definition of the cores a process may use, and the default shares of them.

Every count of cores in ash comes from here: the CPUs this process may run on (its affinity,
which Slurm, a container's cpuset or ``taskset`` may restrict), not the machine's
``os.cpu_count()``, so a worker under a cpuset never oversubscribes it.
"""

from __future__ import annotations

import os


def cpus() -> list[int]:
    """The ids of the CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))  # not on Linux


def available_cores() -> int:
    """How many CPUs this process may run on, at least one."""
    return max(1, len(cpus()))


def auto_threads(workers: int) -> int:
    """Kernel threads per worker for a fixed split: the cores shared out, at least one."""
    return max(1, available_cores() // max(1, workers))


def resolve_threads(threads: int | str, workers: int) -> int:
    """``--threads auto|K`` as a number of threads per worker."""
    if threads == "auto":
        return auto_threads(workers)
    if isinstance(threads, int) and threads >= 1:
        return threads
    raise ValueError(f"threads must be 'auto' or an integer >= 1, got {threads!r}")
