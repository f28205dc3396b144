"""Study results: what every trial did, the best one, and the files of ``--out``.

Fed with the same events the trace records (assign, result, lost) plus each result's metrics,
it keeps per-trial histories and the best result in O(1) per event. The best is taken at the
highest resource that has a successful result (so a lucky short run never outranks a fully
trained one), ties broken by trial id. A trial's intermediate reports (``ctx.report``) are kept
beside its results (a lost job's are dropped: its retry reports again). ``write`` produces
``results.json`` and ``trials.csv`` (DESIGN section 3). trials.csv's header is unambiguous: its
fixed columns, a column per parameter named as the parameter (``param:NAME`` when the name
would be taken for another column: ``param_column``), then ``metric:NAME`` per metric.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ash.link.metrics import MAX_REPORTS_PER_JOB
from ash.scheduler.core import Job
from ash.scheduler.core.rungs import score_of
from ash.scheduler.core.space import Config

CSV_FIXED = ("trial", "bracket", "rung", "resource", "value", "status")
_CSV_PREFIXES = ("metric:", "param:")


def param_column(name: str) -> str:
    """trials.csv's column of parameter ``name``: the name itself, or ``param:NAME`` when it is
    a fixed column's name or starts with ``metric:`` or ``param:`` (so no parameter column can
    be read as another column, whatever the metrics are, and the header is the spec's alone)."""
    return f"param:{name}" if name in CSV_FIXED or name.startswith(_CSV_PREFIXES) else name


class TrialRecord:
    __slots__ = (
        "bracket",
        "config",
        "inflight",
        "report_jobs",
        "reports",
        "results",
        "times",
        "trial",
    )

    def __init__(self, trial: int, config: Config, bracket: int) -> None:
        self.trial = trial
        self.config = config
        self.bracket = bracket
        self.inflight = 0
        self.results: list[dict[str, Any]] = []
        self.times: list[float | None] = []  # when each result came (the study's clock)
        self.reports: list[dict[str, Any]] = []  # intermediate reports: rung, step, metrics
        self.report_jobs: list[int] = []  # the job of each report (a lost job's are dropped)


class Results:
    def __init__(self, study: str, metric: str, mode: str, max_resource: float) -> None:
        self.study = study
        self.metric = metric
        self.mode = mode
        self.max_resource = max_resource
        self.trials: dict[int, TrialRecord] = {}
        self._best: dict[float, tuple[float, int, float, int]] = {}  # resource -> best there
        self.n_results = 0
        self.n_failed = 0
        self.n_reports = 0
        self.latest: dict[str, Any] | None = None  # the last report: trial, rung, step, metrics
        self._job_reports: dict[int, int] = {}  # running job -> reports kept

    def assign(self, job: Job) -> None:
        rec = self.trials.get(job.trial)
        if rec is None:
            rec = self.trials[job.trial] = TrialRecord(job.trial, job.config, job.bracket)
        rec.inflight += 1

    def lost(self, job: Job) -> None:
        rec = self.trials.get(job.trial)
        if rec is not None and rec.inflight:
            rec.inflight -= 1
        if self._job_reports.pop(job.job_id, 0) and rec is not None:  # its retry reports anew
            keep = [i for i, j in enumerate(rec.report_jobs) if j != job.job_id]
            self.n_reports -= len(rec.reports) - len(keep)
            rec.reports = [rec.reports[i] for i in keep]
            rec.report_jobs = [rec.report_jobs[i] for i in keep]

    def kept_of(self, job_id: int) -> int:
        """How many reports running job ``job_id`` has had kept."""
        return self._job_reports.get(job_id, 0)

    def report(
        self, job: Job, reports: Sequence[Sequence[Any]]
    ) -> list[tuple[float, dict[str, Any]]]:
        """Keep a running job's reports (up to MAX_REPORTS_PER_JOB per job); returns those
        kept, as ``(step, metrics)``."""
        rec = self.trials.get(job.trial)
        if rec is None:
            rec = self.trials[job.trial] = TrialRecord(job.trial, job.config, job.bracket)
        have = self._job_reports.get(job.job_id, 0)
        room = max(0, MAX_REPORTS_PER_JOB - have)
        kept = [(step, dict(metrics)) for step, metrics in list(reports)[:room]]
        if not kept:
            return []
        self._job_reports[job.job_id] = have + len(kept)
        for step, metrics in kept:
            clean = {k: _finite_or_none(v) for k, v in metrics.items()}
            rec.reports.append({"rung": job.rung, "step": step, "metrics": clean})
            rec.report_jobs.append(job.job_id)
        self.n_reports += len(kept)
        step, metrics = kept[-1]
        self.latest = {"trial": job.trial, "rung": job.rung, "step": step, "metrics": metrics}
        return kept

    def result(
        self,
        job: Job,
        value: float | None,
        metrics: dict[str, Any] | None = None,
        error: str | None = None,
        t: float | None = None,
    ) -> None:
        rec = self.trials.get(job.trial)
        if rec is None:
            rec = self.trials[job.trial] = TrialRecord(job.trial, job.config, job.bracket)
            rec.inflight = 1
        rec.inflight = max(0, rec.inflight - 1)
        self._job_reports.pop(job.job_id, None)
        if value is not None and not math.isfinite(value):
            value = None
        clean = {k: _finite_or_none(v) for k, v in (metrics or {}).items()}
        # why it failed: the first line, and the traceback below it (null when it did not)
        first, below = (error.partition("\n")[::2]) if value is None and error else (None, "")
        entry: dict[str, Any] = {
            "rung": job.rung,
            "resource": job.stop,
            "value": value,
            "metrics": clean,
            "error": first,
            "traceback": below or None,
        }
        rec.results.append(entry)
        rec.times.append(t)
        self.n_results += 1
        if value is None:
            self.n_failed += 1
            return
        key = (score_of(value, self.mode), job.trial, value, job.rung)
        best = self._best.get(job.stop)
        if best is None or key < best:
            self._best[job.stop] = key

    def best(self) -> dict[str, Any] | None:
        if not self._best:
            return None
        resource = max(self._best)
        _, trial, value, rung = self._best[resource]
        return {
            "trial": trial,
            "config": self.trials[trial].config,
            "value": value,
            "rung": rung,
            "resource": resource,
        }

    def status(self, rec: TrialRecord) -> str:
        if rec.inflight:
            return "running"
        if not rec.results:
            return "lost"
        last = rec.results[-1]
        if last["value"] is None:
            return "failed"
        return "completed" if last["resource"] >= self.max_resource else "stopped"

    def to_json(self, times: bool = False) -> dict[str, Any]:
        """The results document (results.json); with ``times``, each result also has ``t``,
        when it came (seconds of the study's clock; what a live view joining late needs)."""
        return {
            "study": self.study,
            "metric": self.metric,
            "mode": self.mode,
            "best": self.best(),
            "trials": [
                {
                    "trial": rec.trial,
                    "bracket": rec.bracket,
                    "config": rec.config,
                    "status": self.status(rec),
                    "results": [{**r, "t": t} for r, t in zip(rec.results, rec.times, strict=True)]
                    if times
                    else rec.results,
                    **({"reports": rec.reports} if rec.reports else {}),
                }
                for rec in sorted(self.trials.values(), key=lambda r: r.trial)
            ],
        }

    def write(self, out: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write results.json (plus ``extra`` keys) and trials.csv into ``out``; return it."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        doc = {**self.to_json(), **(extra or {})}
        _atomic_write(out / "results.json", json.dumps(doc, indent=1, allow_nan=False))
        self._write_csv(out / "trials.csv", doc["trials"])
        return out

    def _write_csv(self, path: Path, trials: list[dict[str, Any]]) -> None:
        params: dict[str, None] = {}
        metrics: dict[str, None] = {}
        for t in trials:
            params.update(dict.fromkeys(t["config"]))
            for r in t["results"]:
                metrics.update(dict.fromkeys(r["metrics"]))
        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            cols = [param_column(p) for p in params]
            w.writerow([*CSV_FIXED, *cols, *(f"metric:{m}" for m in metrics)])
            for t in trials:
                cfg = [t["config"].get(p, "") for p in params]
                for r in t["results"]:
                    value = "" if r["value"] is None else r["value"]
                    row = [t["trial"], t["bracket"], r["rung"], r["resource"], value, t["status"]]
                    w.writerow(row + cfg + [r["metrics"].get(m, "") for m in metrics])
        os.replace(tmp, path)


def _finite_or_none(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def ranked_trials(doc: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(trial, its result at the highest resource it reached successfully), best first:
    higher resource first, then better value, then lower trial id."""
    sign = 1.0 if doc["mode"] == "min" else -1.0
    ranked = []
    for t in doc["trials"]:
        ok = [r for r in t["results"] if r["value"] is not None]
        if ok:
            top = max(ok, key=lambda r: r["resource"])
            ranked.append(((-top["resource"], sign * top["value"], t["trial"]), t, top))
    ranked.sort(key=lambda x: x[0])
    return [(t, top) for _, t, top in ranked]
