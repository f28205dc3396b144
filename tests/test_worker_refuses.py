"""ash-worker refuses an assignment whose config is not in the study's space.

The real scheduler never sends such configs, so a fake one does: a gRPC server on 127.0.0.1
port 0 serving just the Session stream. It welcomes a real ``ash-worker`` subprocess with a
python-trainer spec, assigns good and bad configs (NaN, an unknown parameter, out of range, a
missing one, wrong types), collects the results, then says finished. Bad jobs must come back
failed with a reason naming the parameter, good ones must succeed, the trainer (which writes down
every config it is called with) must see only the good ones, and the worker must exit 0.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from ash.link import wire
from ash.proto import ash_pb2 as pb
from ash.proto import ash_pb2_grpc as pb_grpc
from helpers import worker

SPEC = """
[study]
name = "refuses"
metric = "loss"
seed = 0
algorithm = "asha"
[asha]
min_resource = 1
max_resource = 9
reduction_factor = 3
max_trials = 10
[trainer]
type = "python"
entrypoint = "seen_trainer:fit"
[space]
alpha = { uniform = [0.0, 1.0] }
layers = { int = [1, 5] }
flavour = { choice = ["sweet", "sour"] }
"""

# Appends every config it trains to $SEEN (one JSON object a line), then reports a loss.
TRAINER = """
import json, os

def fit(config, start, stop, state):
    with open(os.environ["SEEN"], "a") as f:
        f.write(json.dumps(config, sort_keys=True) + "\\n")
    return {"loss": config["alpha"] + config["layers"]}, b"state"
"""

GOOD: list[dict[str, Any]] = [
    {"alpha": 0.25, "layers": 2, "flavour": "sweet"},
    {"alpha": 1.0, "layers": 5, "flavour": "sour"},
    {"alpha": 0.0, "layers": 1, "flavour": "sweet"},
]

# (config, the parameter the refusal must name, a word of the reason)
BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"alpha": math.nan, "layers": 2, "flavour": "sweet"}, "alpha", "finite"),
    ({"alpha": math.inf, "layers": 2, "flavour": "sweet"}, "alpha", "finite"),
    ({"alpha": 0.5, "layers": 2, "flavour": "sweet", "bogus": 1}, "bogus", "unknown"),
    ({"alpha": 1.5, "layers": 2, "flavour": "sweet"}, "alpha", "outside"),
    ({"alpha": 0.5, "layers": 9, "flavour": "sweet"}, "layers", "outside"),
    ({"alpha": 0.5, "layers": 2, "flavour": "bitter"}, "flavour", "outside"),
    ({"alpha": 0.5, "flavour": "sweet"}, "layers", "missing"),
    ({"alpha": 0.5, "layers": 2.0, "flavour": "sweet"}, "layers", "outside"),  # float for int
    ({"alpha": 0.5, "layers": True, "flavour": "sweet"}, "layers", "outside"),  # bool for int
    ({"alpha": "high", "layers": 2, "flavour": "sweet"}, "alpha", "outside"),  # text for float
    ({"alpha": 0.5, "layers": 2, "flavour": 1}, "flavour", "outside"),  # int for a text choice
]


class FakeScheduler(pb_grpc.SchedulerServicer):  # type: ignore[misc]
    """Serves one Session: welcome, every assignment at once, the results, then finished."""

    def __init__(self, assignments: list[pb.Assignment], wait_s: float = 120.0) -> None:
        self.assignments = assignments
        self.wait_s = wait_s  # how long to wait for the results before finishing anyway
        self.hello: pb.Hello | None = None
        self.results: dict[int, pb.Result] = {}
        self.releases: list[pb.Release] = []
        self.sessions = 0
        self.done = threading.Event()  # finished is being sent

    def Session(self, request_iterator: Any, context: Any) -> Iterator[pb.SchedulerMessage]:
        self.sessions += 1
        first = next(request_iterator)
        assert first.WhichOneof("msg") == "hello"
        self.hello = first.hello
        inbox: queue.Queue[pb.WorkerMessage | None] = queue.Queue()

        def read() -> None:
            try:
                for msg in request_iterator:
                    inbox.put(msg)
            except grpc.RpcError:
                pass
            inbox.put(None)

        threading.Thread(target=read, daemon=True).start()
        yield pb.SchedulerMessage(
            welcome=pb.Welcome(
                study="refuses",
                session=f"s{self.sessions}",
                heartbeat_s=0.5,
                lease_s=30.0,
                spec_toml=SPEC,
                metric="loss",
                max_checkpoint_bytes=1 << 20,
            )
        )
        for a in self.assignments:
            yield pb.SchedulerMessage(assignment=a)
        deadline = time.monotonic() + self.wait_s
        while len(self.results) + len(self.releases) < len(self.assignments):
            try:
                msg = inbox.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break  # the asserts will say what is missing
            if msg is None:
                return  # the worker went away
            kind = msg.WhichOneof("msg")
            if kind == "result":
                self.results[msg.result.job_id] = msg.result
            elif kind == "release":
                self.releases.append(msg.release)
        self.done.set()  # before the yield: the worker may hang up as soon as it reads it
        yield pb.SchedulerMessage(finished=pb.Finished(reason="study finished"))


def assignment(job_id: int, config: dict[str, Any]) -> pb.Assignment:
    a = pb.Assignment(job_id=job_id, trial=job_id, rung=0, bracket=0, start=0.0, stop=1.0)
    wire.config_to_pb(config, a.config)
    return a


def test_worker_refuses_configs_outside_the_space(tmp_path: Path) -> None:
    (tmp_path / "seen_trainer.py").write_text(TRAINER)
    seen = tmp_path / "seen.jsonl"
    # good and bad interleaved: a refusal must not stop the jobs behind it
    plan: list[tuple[dict[str, Any], str | None, str | None]] = []
    for i, (config, param, why) in enumerate(BAD):
        if i % 4 == 0:
            plan.append((GOOD[i // 4], None, None))
        plan.append((config, param, why))
    jobs = {100 + i: item for i, item in enumerate(plan)}
    fake = FakeScheduler([assignment(job, config) for job, (config, _, _) in jobs.items()])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    wire.add_scheduler_servicer(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    w = worker(
        f"127.0.0.1:{port}", tmp_path, "w-refuses", "--retry-for", "10", env={"SEEN": str(seen)}
    )
    try:
        code = w.wait(timeout=180)
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()
        server.stop(grace=None)
    stderr = w.stderr.read() if w.stderr else ""
    assert code == 0, stderr
    assert fake.done.is_set() and fake.sessions == 1, stderr
    assert fake.hello is not None and fake.hello.worker_id == "w-refuses"
    assert fake.releases == []
    assert set(fake.results) == set(jobs), stderr
    for job, (config, param, why) in jobs.items():
        r = fake.results[job]
        if param is None:
            assert r.ok, (config, r.error)
            assert r.value == config["alpha"] + config["layers"]
        else:
            assert not r.ok, (config, "was trained")
            assert param in r.error and why is not None and why in r.error, (config, r.error)
    trained = sorted(seen.read_text().splitlines()) if seen.exists() else []
    good = [json.dumps(c, sort_keys=True) for c, param, _ in plan if param is None]
    assert trained == sorted(good)
