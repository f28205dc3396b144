"""A study as the dashboard sees it: fed with results documents and trace events, it keeps the
views (status, rung ladder, best so far, curves, parameters, timeline, workers, errors) and
hands out the whole view once (``view``) and then what changed since (``delta``).

Everything is incremental, O(log n) or O(1) per event, so a study of 100,000 trials costs
the server little while it is watched. What the page draws is capped here, not in the browser:
at most ``CURVE_CAP`` trials' curves and points (the trials that went highest first, since those
are the ones a user looks at, then the others in arrival order), each curve through at most
``REPORTS_CAP`` of its trial's ``ctx.report`` values (kept for the shown trials only, thinned
evenly beyond the cap: every 2nd, then every 4th...), the last ``TIMELINE_CAP`` jobs
of the timeline and the last ``POINTS_CAP`` results of the history plot (beyond them, every
result as a grid of counts: ``density.Density``). Times are seconds since
the study started; a results.json without a trace has none, so its results are numbered in
order instead (``clock`` says which).
"""

from __future__ import annotations

import csv
import heapq
import io
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ash.dashboard.density import Density

CURVE_CAP = 2000
REPORTS_CAP = 100  # intermediate reports kept per shown trial (its curve's points between rungs)
TIMELINE_CAP = 1500
POINTS_CAP = 2000
ERRORS_CAP = 200
DENSITY_S = 2.0  # a watched study's density grid is sent again at most this often (seconds)
IMPORTANCE_GROWTH = 0.1  # the importance is estimated again when its input grew by this much


class RungScores:
    """The scores of a rung (lower is better) as two heaps: the best ``k`` in a max-heap and
    the rest in a min-heap, so a result costs O(log n) and the promotion threshold (the ``k``-th
    best, ``k`` moving by one or two between asks) O(log n) when asked, where a sorted list
    costs a copy of the rung per result (a rung 0 of 100,000 results)."""

    __slots__ = ("best", "rest", "top")

    def __init__(self) -> None:
        self.top: list[float] = []  # the best, negated (a max-heap)
        self.rest: list[float] = []
        self.best: float | None = None

    def __len__(self) -> int:
        return len(self.top) + len(self.rest)

    def add(self, score: float) -> None:
        if self.best is None or score < self.best:
            self.best = score
        if self.top and score < -self.top[0]:
            heapq.heappush(self.top, -score)
        else:
            heapq.heappush(self.rest, score)

    def kth(self, k: int) -> float | None:
        """The ``k``-th best score (1 is the best), or None if there are fewer than ``k``."""
        if k <= 0 or k > len(self):
            return None
        while len(self.top) > k:
            heapq.heappush(self.rest, -heapq.heappop(self.top))
        while len(self.top) < k:
            heapq.heappush(self.top, -heapq.heappop(self.rest))
        return -self.top[0]


@dataclass(slots=True)
class TrialView:
    trial: int
    bracket: int
    config: dict[str, Any] = field(default_factory=dict)
    xs: list[float] = field(default_factory=list)  # resource of each result
    ys: list[float | None] = field(default_factory=list)  # its value (None: failed)
    reports: list[tuple[float, float]] = field(default_factory=list)  # intermediate (x, value)
    top: int = -1  # highest rung assigned
    inflight: int = 0
    status: str = "running"
    report_every: int = 1  # keeps every n-th report (n doubles each time the cap is reached)
    report_seen: int = 0

    def add_report(self, x: float, y: float) -> None:
        """One intermediate report, at step ``x``. A step at or before the last one kept
        starts the curve again from there (a lost job's retry, a job that trains from 0
        again): the reports from that step on are replaced."""
        while self.reports and self.reports[-1][0] >= x:
            self.reports.pop()
        self.report_seen += 1
        if (self.report_seen - 1) % self.report_every:
            return
        self.reports.append((x, y))
        if len(self.reports) > REPORTS_CAP:
            del self.reports[1::2]
            self.report_every *= 2

    def drop_reports(self) -> None:
        self.reports.clear()
        self.report_every, self.report_seen = 1, 0

    def value(self) -> float | None:
        """The value at the highest resource with a successful result."""
        best: tuple[float, float] | None = None
        for x, y in zip(self.xs, self.ys, strict=True):
            if y is not None and (best is None or x >= best[0]):
                best = (x, y)
        return None if best is None else best[1]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.trial,
            "b": self.bracket,
            "top": self.top,
            "x": self.xs,
            "y": self.ys,
            "r": [list(p) for p in self.reports],
            "c": self.config,
            "v": self.value(),
            "s": self.status,
        }


@dataclass(slots=True)
class JobView:
    job: int
    trial: int
    rung: int
    bracket: int
    worker: str
    t0: float
    resource: float


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _cell(v: Any) -> Any:
    return "" if v is None else v


def parse_reports(raw: Any, metric: str) -> list[tuple[float, float]]:
    """Intermediate reports in any of the shapes a result may carry them: ``[x, value]`` pairs
    or dicts with ``step``/``resource`` and ``value``/the metric/``metrics``."""
    out: list[tuple[float, float]] = []
    if not isinstance(raw, list):
        return out
    for i, r in enumerate(raw):
        x: float | None
        y: float | None
        if isinstance(r, list | tuple) and len(r) >= 2:
            x, y = _num(r[0]), _num(r[1])
        elif isinstance(r, dict):
            x = _num(r.get("resource", r.get("step", r.get("epoch", i + 1))))
            inner = r.get("metrics")
            m: dict[str, Any] = inner if isinstance(inner, dict) else r
            y = _num(r.get("value", m.get(metric)))
        else:
            continue
        if x is not None and y is not None:
            out.append((x, y))
    return out


class StudyModel:
    def __init__(self, study: str = "", metric: str = "value", mode: str = "min") -> None:
        self.epoch = 0  # a new epoch: the page must start again from ``view``
        self.source = ""  # where the study comes from, as the page says it
        self._init(study, metric, mode)

    def reset(self) -> None:
        """Forget everything (a new snapshot follows); pages start again from ``view``."""
        epoch, source = self.epoch, self.source
        self._init(self.study, self.metric, self.mode)
        self.epoch, self.source = epoch + 1, source
        self._changed = True

    def touch(self) -> None:
        self._changed = True

    def _init(self, study: str, metric: str, mode: str) -> None:
        self.study = study
        self.metric = metric
        self.mode = mode
        self.algorithm = ""
        self.eta: float | None = None
        self.max_resource: float | None = None
        self.max_trials: int | None = None
        self.clock = "seconds"
        self.t = 0.0
        self.finished = False
        self.error: str | None = None
        self.trials: dict[int, TrialView] = {}
        self.jobs: dict[int, JobView] = {}
        self.n_results = 0
        self.n_failed = 0
        self.n_lost = 0
        self.rung_res: dict[tuple[int, int], float] = {}
        self.rung_scores: dict[tuple[int, int], RungScores] = {}  # lower is better
        self.rung_failed: dict[tuple[int, int], int] = {}
        self.promoted: dict[tuple[int, int], int] = {}
        self.best_by_res: dict[float, tuple[float, int, float]] = {}
        self.ok_at: dict[float, dict[int, float]] = {}  # resource -> trial -> its first value
        self.best: dict[str, Any] | None = None
        self.best_series: list[list[Any]] = []
        self.points: deque[list[Any]] = deque(maxlen=POINTS_CAP)
        self.density = Density()  # every result, for the history plot beyond POINTS_CAP
        self._density_at: tuple[float, int] | None = None  # (monotonic, results) of the last grid
        self.segments: deque[list[Any]] = deque(maxlen=TIMELINE_CAP)
        self.workers: dict[str, dict[str, Any]] = {}
        self.errors: list[dict[str, Any]] = []
        self.params: dict[str, None] = {}
        self.shown: set[int] = set()
        self._shown_by_top: dict[int, set[int]] = {}
        self.importance: dict[str, Any] | None = None
        self.seq = 0
        self._order = 0
        # what changed since the last delta
        self._dirty: set[int] = set()
        self._dropped: set[int] = set()
        self._new_series = 0
        # (bounded: a study read before anyone watches must not keep all of it twice)
        self._new_points: deque[list[Any]] = deque(maxlen=POINTS_CAP)
        self._new_segments: deque[list[Any]] = deque(maxlen=TIMELINE_CAP)
        self._new_errors = 0
        self._changed = False
        self._importance_changed = False
        self.importance_basis: tuple[float, int] | None = None  # (resource, results) it used

    # -- inputs ---------------------------------------------------------------------------

    def _schedule_of(self, raw: dict[str, Any]) -> None:
        """The algorithm and the ladder of a results.json's own spec (its raw tables, defaults
        not written): what a snapshot's ``schedule`` gives a live view."""
        from ash.spec import SpecError, parse_spec

        try:
            spec = parse_spec(raw, source="results.json")
        except (SpecError, ValueError, TypeError):
            return  # an older or foreign spec: the view goes without
        sch = spec.schedule
        self.algorithm = spec.algorithm
        self.eta = float(sch.reduction_factor)
        self.max_resource = float(sch.max_resource)
        self.max_trials = sch.max_trials

    def load_results(
        self, doc: dict[str, Any], *, values: bool = True, t: float | None = None
    ) -> None:
        """A results document (results.json, or a snapshot's): its trials, configs, errors and
        (with ``values``) results, in the order they came: by their own ``t`` where they have
        one (a snapshot's), else timed at ``t`` or, without, numbered in order."""
        self.study = str(doc.get("study", self.study))
        self.metric = str(doc.get("metric", self.metric))
        self.mode = str(doc.get("mode", self.mode))
        if isinstance(doc.get("spec"), dict) and not self.algorithm:
            self._schedule_of(doc["spec"])
        if t is None and values:
            self.clock = "order"
        came: list[tuple[float, int, TrialView, dict[str, Any]]] = []
        trials: list[tuple[TrialView, dict[str, Any], list[tuple[float, float]]]] = []
        for td in doc.get("trials", []):
            tid = int(td["trial"])
            tv = self._trial(tid, int(td.get("bracket", 0)))
            tv.config = dict(td.get("config", {}))
            self.params.update(dict.fromkeys(tv.config))
            # ctx.report values: the trial's (ash's own), or its results' (other tools')
            reports = parse_reports(td.get("reports"), self.metric)
            trials.append((tv, td, reports))
            for r in td.get("results", []):
                reports.extend(parse_reports(r.get("reports"), self.metric))
                if values:
                    own = _num(r.get("t"))
                    when = 0.0 if t is None else t if own is None else min(own, t)
                    came.append((when, len(came), tv, r))
        if t is not None:
            came.sort(key=lambda c: (c[0], c[1]))
        for when, _, tv, r in came:
            if t is None:
                self._order += 1
            self._result(
                tv,
                int(r.get("rung", 0)),
                _num(r.get("resource")) or 0.0,
                _num(r.get("value")),
                self._order if t is None else when,
            )
        for tv, td, reports in trials:
            if not td.get("results") and td.get("status") == "running":
                self._top(tv, 0)
            tv.status = str(td.get("status", tv.status))
            self._touch(tv)
            self._reports(tv, reports)
        for e in doc.get("errors", []) or []:
            self._error(e.get("trial"), str(e.get("error", "")), None)
        if doc.get("error"):
            self.error = str(doc["error"])
        if "interrupted" in doc:
            self.finished = True
        self._infer_eta()
        self._changed = True

    def apply(self, ev: dict[str, Any]) -> None:
        """One trace event (assign, result, lost), a Watch snapshot, or a batch of a running
        job's intermediate reports (``report``: a Watch's, a replayed journal's)."""
        kind = ev.get("event")
        t = _num(ev.get("t"))
        if t is not None:
            self.t = max(self.t, t)
        if kind == "snapshot":
            self._snapshot(ev)
            return
        if kind == "finished":
            self.finish()
            return
        if kind not in ("assign", "result", "lost", "report"):
            return
        tv = self._trial(int(ev["trial"]), int(ev.get("bracket", 0)))
        rung = int(ev.get("rung", 0))
        now = self.t if t is None else t
        job = ev.get("job")
        if kind == "report":
            self._reports(tv, parse_reports(ev.get("reports"), self.metric))
        elif kind == "assign":
            if isinstance(ev.get("config"), dict) and not tv.config:
                tv.config = dict(ev["config"])
                self.params.update(dict.fromkeys(tv.config))
            res = _num(ev.get("resource")) or 0.0
            self.rung_res.setdefault((tv.bracket, rung), res)
            worker = str(ev.get("worker", "?"))
            if isinstance(job, int):
                self.jobs[job] = JobView(job, tv.trial, rung, tv.bracket, worker, now, res)
            w = self._worker(worker)
            w["running"] += 1
            w["assigned"] += 1
            if ev.get("threads") is not None:
                w["threads"] = ev["threads"]
            if ev.get("devices") is not None:
                w["devices"] = ev["devices"]
            w["last"] = now
            tv.inflight += 1
            tv.status = "running"
            self._top(tv, rung)
        elif kind == "lost":
            self.n_lost += 1
            jv = self.jobs.pop(job, None) if isinstance(job, int) else None
            tv.inflight = max(0, tv.inflight - 1)
            if jv is not None:
                self._segment(jv, now, "lost")
                w = self._worker(jv.worker)
                w["running"] = max(0, w["running"] - 1)
                w["lost"] += 1
        else:
            jv = self.jobs.pop(job, None) if isinstance(job, int) else None
            res = jv.resource if jv is not None else self.rung_res.get((tv.bracket, rung), 0.0)
            value = _num(ev.get("value"))
            if jv is not None:
                self._segment(jv, now, "ok" if value is not None else "failed")
                w = self._worker(jv.worker)
                w["running"] = max(0, w["running"] - 1)
                w["done"] += 1
                w["last"] = now
            if tv.inflight:
                tv.inflight -= 1
            self._reports(tv, parse_reports(ev.get("reports"), self.metric))  # other tools'
            self._result(tv, rung, res, value, now)
            if value is None and ev.get("error"):
                self._error(tv.trial, str(ev["error"]), now)
            tv.status = self._status(tv)
            if self.eta is None:
                self._infer_eta()
        self._touch(tv)
        self._changed = True

    def _snapshot(self, ev: dict[str, Any]) -> None:
        t = _num(ev.get("t")) or 0.0
        self.algorithm = str(ev.get("algorithm", ""))
        sch = ev.get("schedule") or {}
        self.eta = _num(sch.get("reduction_factor")) or self.eta
        self.max_resource = _num(sch.get("max_resource"))
        self.max_trials = sch.get("max_trials")
        self.load_results(ev.get("results") or {}, t=t)
        self.finished = bool(ev.get("finished"))
        self.error = ev.get("error") or None
        for b, rungs in enumerate(ev.get("rungs") or []):
            for k, (res, _n) in enumerate(rungs):
                self.rung_res.setdefault((b, k), float(res))
        for w in ev.get("workers") or []:
            wv = self._worker(str(w.get("id")))
            wv.update({k: w[k] for k in ("slots", "threads", "devices") if k in w})
        for j in ev.get("inflight") or []:
            tv = self._trial(int(j["trial"]), int(j.get("bracket", 0)))
            self.jobs[int(j["job"])] = JobView(
                int(j["job"]),
                tv.trial,
                int(j["rung"]),
                tv.bracket,
                str(j["worker"]),
                float(j.get("t", t)),
                float(j.get("resource", 0.0)),
            )
            self._worker(str(j["worker"]))["running"] += 1
            tv.inflight += 1
            self._top(tv, int(j["rung"]))
            tv.status = "running"
            self._touch(tv)
        self._changed = True

    def finish(self) -> None:
        self.finished = True
        self._changed = True

    # -- bookkeeping ----------------------------------------------------------------------

    def _trial(self, tid: int, bracket: int) -> TrialView:
        tv = self.trials.get(tid)
        if tv is None:
            tv = self.trials[tid] = TrialView(tid, bracket)
        return tv

    def _worker(self, wid: str) -> dict[str, Any]:
        w = self.workers.get(wid)
        if w is None:
            w = self.workers[wid] = {
                "id": wid,
                "threads": None,
                "slots": None,
                "running": 0,
                "assigned": 0,
                "done": 0,
                "lost": 0,
                "last": None,
            }
        return w

    def _score(self, value: float) -> float:
        return value if self.mode == "min" else -value

    def _top(self, tv: TrialView, rung: int) -> None:
        if rung <= tv.top:
            return
        for k in range(max(tv.top, 0), rung):  # it went up from each rung below ``rung``
            self.promoted[(tv.bracket, k)] = self.promoted.get((tv.bracket, k), 0) + 1
        if tv.trial in self.shown:
            self._shown_by_top[tv.top].discard(tv.trial)
            self._shown_by_top.setdefault(rung, set()).add(tv.trial)
        tv.top = rung

    def _result(self, tv: TrialView, rung: int, res: float, value: float | None, t: float) -> None:
        key = (tv.bracket, rung)
        self.rung_res.setdefault(key, res)
        self._top(tv, rung)
        tv.xs.append(res)
        tv.ys.append(value)
        self.n_results += 1
        if value is None:
            self.n_failed += 1
            self.rung_failed[key] = self.rung_failed.get(key, 0) + 1
            return
        self.ok_at.setdefault(res, {}).setdefault(tv.trial, value)
        scores = self.rung_scores.get(key)
        if scores is None:
            scores = self.rung_scores[key] = RungScores()
        scores.add(self._score(value))
        self.points.append([t, value, rung])
        self._new_points.append([t, value, rung])
        self.density.add(t, value)
        cand = (self._score(value), tv.trial, value)
        old = self.best_by_res.get(res)
        if old is None or cand < old:
            self.best_by_res[res] = cand
            top = max(self.best_by_res)
            _, trial, v = self.best_by_res[top]
            if self.best is None or (self.best["trial"], self.best["value"]) != (trial, v):
                self.best = {"trial": trial, "value": v, "resource": top, "t": t}
                self.best_series.append([t, v, trial, top])
                self._new_series += 1

    def _status(self, tv: TrialView) -> str:
        if tv.inflight:
            return "running"
        if not tv.ys:
            return "lost"
        if tv.ys[-1] is None:
            return "failed"
        if self.max_resource is not None and tv.xs[-1] >= self.max_resource:
            return "completed"
        return "stopped"

    def _segment(self, jv: JobView, t1: float, outcome: str) -> None:
        seg = [jv.worker, jv.t0, t1, jv.trial, jv.rung, outcome]
        self.segments.append(seg)
        self._new_segments.append(seg)

    def _error(self, trial: Any, msg: str, t: float | None) -> None:
        if len(self.errors) >= ERRORS_CAP:
            return
        self.errors.append({"trial": trial, "error": msg, "t": t})
        self._new_errors += 1

    def _infer_eta(self) -> None:
        if self.eta is not None:
            return
        for (b, k), res in self.rung_res.items():
            nxt = self.rung_res.get((b, k + 1))
            if nxt is not None and res > 0:
                self.eta = nxt / res
                return

    def _reports(self, tv: TrialView, points: list[tuple[float, float]]) -> None:
        """A trial's intermediate reports, kept while its curve is shown (``_touch``)."""
        if not points:
            return
        self._touch(tv)
        if tv.trial in self.shown:
            for x, y in points:
                tv.add_report(x, y)

    def _touch(self, tv: TrialView) -> None:
        """Mark ``tv`` changed, and keep it among the shown trials if it deserves a place."""
        if tv.trial in self.shown:
            self._dirty.add(tv.trial)
            return
        if len(self.shown) >= CURVE_CAP:
            low = min((k for k, s in self._shown_by_top.items() if s), default=None)
            if low is None or tv.top <= low:
                return
            out = self._shown_by_top[low].pop()
            self.trials[out].drop_reports()  # its curve is not drawn: its reports not kept
            self.shown.discard(out)
            self._dirty.discard(out)
            self._dropped.add(out)
        self.shown.add(tv.trial)
        self._shown_by_top.setdefault(tv.top, set()).add(tv.trial)
        self._dropped.discard(tv.trial)
        self._dirty.add(tv.trial)

    # -- views ----------------------------------------------------------------------------

    def rungs(self) -> list[dict[str, Any]]:
        """The ladder: per bracket and rung, its resource, results, failures, how many went up,
        and the promotion threshold (the worst value still in the top 1/eta)."""
        self._infer_eta()
        out = []
        for (b, k), res in sorted(self.rung_res.items()):
            scores = self.rung_scores.get((b, k)) or RungScores()
            n_ok = len(scores)
            n = n_ok + self.rung_failed.get((b, k), 0)
            threshold = None
            if self.eta and self.eta > 1:
                s = scores.kth(int(n // self.eta))
                if s is not None:
                    threshold = s if self.mode == "min" else -s
            best = None
            if scores.best is not None:
                best = scores.best if self.mode == "min" else -scores.best
            out.append(
                {
                    "bracket": b,
                    "rung": k,
                    "resource": res,
                    "results": n,
                    "failed": n - n_ok,
                    "promoted": self.promoted.get((b, k), 0),
                    "threshold": threshold,
                    "best": best,
                }
            )
        return out

    def status(self) -> dict[str, Any]:
        running = sum(1 for _ in self.jobs)
        return {
            "trials": len(self.trials),
            "results": self.n_results,
            "failed": self.n_failed,
            "lost": self.n_lost,
            "running": running,
            "workers": len(self.workers),
            "t": self.t,
            "finished": self.finished,
            "error": self.error,
            "best": self.best,
            "max_trials": self.max_trials,
            "shown": len(self.shown),
        }

    def _running(self) -> list[list[Any]]:
        return [[j.worker, j.t0, self.t, j.trial, j.rung, "running"] for j in self.jobs.values()]

    def head(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "metric": self.metric,
            "mode": self.mode,
            "algorithm": self.algorithm,
            "eta": self.eta,
            "clock": self.clock,
            "source": self.source,
            "params": list(self.params),
        }

    def view(self) -> dict[str, Any]:
        """The whole view, as the page's first state."""
        return {
            "kind": "full",
            "seq": self.seq,
            "epoch": self.epoch,
            **self.head(),
            "status": self.status(),
            "rungs": self.rungs(),
            "series": self.best_series,
            "points": list(self.points),
            "density": self._density(),
            "trials": [self.trials[t].to_json() for t in sorted(self.shown)],
            "segments": list(self.segments),
            "running": self._running(),
            "workers": list(self.workers.values()),
            "errors": self.errors,
            "importance": self.importance,
        }

    def changed(self) -> bool:
        return self._changed or self._importance_changed or self._density_due()

    def delta(self) -> dict[str, Any] | None:
        """What changed since the last ``delta`` (None: nothing); resets the marks."""
        if not self.changed():
            return None
        self.seq += 1
        d: dict[str, Any] = {
            "kind": "delta",
            "seq": self.seq,
            **self.head(),
            "status": self.status(),
            "rungs": self.rungs(),
            "series": self.best_series[len(self.best_series) - self._new_series :]
            if self._new_series
            else [],
            "points": list(self._new_points),
            "trials": [self.trials[t].to_json() for t in sorted(self._dirty)],
            "drop": sorted(self._dropped),
            "segments": list(self._new_segments),
            "running": self._running(),
            "workers": list(self.workers.values()),
            "errors": self.errors[len(self.errors) - self._new_errors :]
            if self._new_errors
            else [],
        }
        if self._importance_changed:
            d["importance"] = self.importance
        if self._density_due():
            d["density"] = self._density()
        self.mark_clean()
        return d

    def _density(self) -> dict[str, Any] | None:
        """Every result as a grid, for a study with more results than the points drawn."""
        self._density_at = (time.monotonic(), len(self.density))
        return self.density.grid(self.t) if len(self.density) > POINTS_CAP else None

    def _density_due(self) -> bool:
        if len(self.density) <= POINTS_CAP:
            return False
        if self._density_at is None:
            return True
        t, n = self._density_at
        return n != len(self.density) and time.monotonic() - t >= DENSITY_S

    def mark_clean(self) -> None:
        """Forget what changed (nobody watches: nothing to send)."""
        self._dirty.clear()
        self._dropped.clear()
        self._new_series = 0
        self._new_points.clear()
        self._new_segments.clear()
        self._new_errors = 0
        self._changed = False
        self._importance_changed = False

    def set_importance(self, imp: dict[str, Any] | None) -> None:
        self.importance = imp
        self._importance_changed = True

    def _importance_target(self) -> tuple[float, int] | None:
        """(resource, results there) the importance estimate would use now: the highest
        resource that has enough results (16, and 4 per parameter), else the fullest one."""
        if not self.params or not self.ok_at:
            return None
        need = max(16, 4 * len(self.params))
        enough = [r for r, trials in self.ok_at.items() if len(trials) >= need]
        res = max(enough) if enough else max(self.ok_at, key=lambda r: len(self.ok_at[r]))
        return res, len(self.ok_at[res])

    def importance_due(self) -> bool:
        """Whether the estimate is out of date: there is none, it was made at another resource,
        its resource has ``IMPORTANCE_GROWTH`` more results (fewer move it by less than its own
        noise), or the study ended with results it has not seen."""
        target = self._importance_target()
        if target is None:
            return False
        if self.importance_basis is None:
            return True
        (res, n), (res0, n0) = target, self.importance_basis
        if res != res0 or n >= n0 * (1 + IMPORTANCE_GROWTH) + 1:
            return True
        return self.finished and n != n0

    def importance_input(self) -> tuple[list[dict[str, Any]], list[float], float] | None:
        """(configs, values, resource) for the importance estimate, at ``_importance_target``'s
        resource; it becomes the estimate's basis (``importance_due``)."""
        target = self._importance_target()
        if target is None:
            return None
        res, n = target
        self.importance_basis = (res, n)
        configs, values = [], []
        for trial, value in self.ok_at[res].items():
            config = self.trials[trial].config
            if config:
                configs.append(config)
                values.append(value)
        return configs, values, res

    def trials_csv(self) -> str:
        """Every trial (not only those the page draws), one CSV row each: its id, bracket,
        highest rung, status, the resource and value of its highest successful result, and its
        config, a column per parameter (``param:NAME`` for one named like a fixed column)."""
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        params = list(self.params)
        fixed = ["trial", "bracket", "top_rung", "status", "resource", self.metric]
        columns = [  # a parameter named as a fixed column gets its own name: one meaning each
            f"param:{p}" if p in fixed or p.startswith("param:") else p for p in params
        ]
        w.writerow([*fixed, *columns])
        for tid in sorted(self.trials):
            tv = self.trials[tid]
            res: float | None = None
            val: float | None = None
            for x, y in zip(tv.xs, tv.ys, strict=False):
                if y is not None and (res is None or x >= res):
                    res, val = x, y
            c = tv.config
            w.writerow(
                [tid, tv.bracket, tv.top, tv.status, _cell(res), _cell(val)]
                + [_cell(c.get(p)) for p in params]
            )
        return out.getvalue()

    def compute_importance(self) -> None:
        """The importance estimate, now (report.html; the server does it in a thread)."""
        from ash.dashboard.importance import importance

        got = self.importance_input()
        if got is None:
            return
        configs, values, res = got
        imp = importance(configs, values, list(self.params))
        if imp:
            self.set_importance({"resource": res, "n": len(values), "values": imp})
