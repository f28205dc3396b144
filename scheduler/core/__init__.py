"""ash.scheduler.core: the sans-I/O core. ASHA (promotion and stopping), synchronous SH,
Hyperband and random search as one pure state machine (``scheduler``), on rungs kept in sorted
structures (``rungs``), grouped in brackets (``brackets``) whose resources the ``ladder`` computes,
sampling configurations from a search ``space``.

It takes inputs (a worker asks, a result arrives, a worker vanished) with the time ``now`` and a
seeded RNG passed in, and returns jobs: no clock, no files, no threads, no network, no global
randomness (h11's style). Importing it loads no grpc, protobuf, ``ash.worker`` or I/O module
(tests/test_layout.py checks), so every driver (the embedded pool, the gRPC service, MPI rank 0,
the simulator, a journal replay) runs the very same decisions. See ``scheduler`` for the theory
of operation.
"""

from ash.scheduler.core.samplers import History, Sampler
from ash.scheduler.core.scheduler import Job, Scheduler, UnknownJobError
from ash.scheduler.core.space import Config, SearchSpace, SpaceError, Value

__all__ = [
    "Config",
    "History",
    "Job",
    "Sampler",
    "Scheduler",
    "SearchSpace",
    "SpaceError",
    "UnknownJobError",
    "Value",
]
