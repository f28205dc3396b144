"""What a detailed Watch stream carries beyond the trace (``WatchRequest.detail``): live views.

The trace names trials but not their configs, and results but not their metrics or errors; a
view that joins a running study also needs what happened before it joined. So a detailed
watcher first gets one ``snapshot`` event (the results document so far, the workers, the jobs in
flight, the rung ladder), then every trace event with ``config`` added to an ``assign`` and
``metrics`` (and ``error`` when it failed) added to a ``result``, and a ``report`` event per
batch of a running job's ``ctx.report`` values (those before it are in the snapshot, per trial).
The additions are looked up as the event happens (the driver tells its listeners after recording
the result), so two failures of one trial in one batch each carry their own error; nothing is
stored twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from ash.scheduler.driver import Driver


class Worker(Protocol):
    worker: str
    slots: int
    threads: int
    jobs: set[int]


def snapshot(driver: Driver, workers: Iterable[Worker], error: str | None = None) -> dict[str, Any]:
    """The study so far, as one ``snapshot`` event."""
    st = driver.status()
    sch = driver.spec.schedule
    doc = driver.results.to_json(times=True)
    doc["errors"] = [{"trial": t, "error": msg} for t, msg in driver.errors[-100:]]
    inflight = [
        {
            "job": a.job.job_id,
            "trial": a.job.trial,
            "rung": a.job.rung,
            "bracket": a.job.bracket,
            "resource": a.job.stop,
            "worker": a.worker,
            "t": a.t,
        }
        for a in list(driver.assigned.values())
    ]
    return {
        "event": "snapshot",
        "t": round(st.elapsed, 6),
        "results": doc,
        "algorithm": st.algorithm,
        "schedule": {
            "min_resource": sch.min_resource,
            "max_resource": sch.max_resource,
            "reduction_factor": sch.reduction_factor,
            "max_trials": sch.max_trials,
        },
        "rungs": [[[resource, n] for resource, n in b] for b in st.rungs],
        "finished": st.finished,
        "error": error or st.error,
        "workers": [
            {"id": w.worker, "slots": w.slots, "threads": w.threads, "jobs": len(w.jobs)}
            for w in workers
        ],
        "inflight": inflight,
    }


def enrich(event: dict[str, Any], driver: Driver) -> dict[str, Any]:
    """``event`` with the config of its trial (assign) or the metrics and error of its result."""
    rec = driver.results.trials.get(event.get("trial", -1))
    if rec is None:
        return event
    kind = event.get("event")
    if kind == "assign":
        return {**event, "config": rec.config}
    if kind != "result":
        return event
    out = dict(event)
    for r in reversed(rec.results):
        if r.get("rung") == event.get("rung"):
            out["metrics"] = r.get("metrics", {})
            break
    if event.get("value") is None:
        for trial, msg in reversed(driver.errors[-100:]):
            if trial == rec.trial:
                out["error"] = msg
                break
    return out
