"""A study you can query: ``ash.load(...)`` and the ``Study`` it returns.

``load`` reads a study from wherever it is: a ``results.json`` (or the ``--out`` folder holding
it), a journal (replayed read-only through the same Driver code path a resume uses; no lock is
taken, so the study that owns a live journal keeps it, and a torn last line is left out), or a
running scheduler at ``host:port`` (its Status RPC, asking for the results document; a token
and a CA certificate are given as for ``ash status``). A ``Study`` answers ``.best``,
``.trials`` (one ``TrialRecord`` each: config, highest rung reached, per-rung results, its
``ctx.report`` reports, status, errors with tracebacks), ``.curves`` (metric against resource
per trial, through its reports of the metric as the dashboard draws it), ``.spec`` and
``.to_pandas()`` (the ``pandas`` extra; one row per trial, or per report).

Every source is untrusted input: its document is checked field by field (``check_doc``) before
a ``Study`` is made of it, so a damaged results.json is a ``LoadError`` naming the file and the
field, never a ``KeyError`` later or a silently empty study.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ash.errors import UserError

_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):\d{1,5}$")


class LoadError(UserError, ValueError):
    """What ``ash.load`` was given cannot be read as a study; names it and why."""


@dataclass(frozen=True)
class Best:
    """The best result: highest resource reached with success, then best value."""

    trial: int
    config: dict[str, Any]
    value: float  # the study's metric
    rung: int
    resource: float


@dataclass(frozen=True)
class TrialRecord:
    trial: int
    config: dict[str, Any]
    bracket: int
    status: str  # running, completed, stopped, failed, lost
    rung: int | None  # the highest rung it reached with a result (None: none yet)
    results: list[dict[str, Any]]  # per rung: rung, resource, value, metrics (+error, traceback)
    errors: list[str] = field(default_factory=list)  # each failure: message and traceback
    reports: list[dict[str, Any]] = field(default_factory=list)  # ctx.report: rung, step, metrics

    @property
    def value(self) -> float | None:
        """Its metric at the highest resource it reached with success, or None."""
        ok = [r for r in self.results if r["value"] is not None]
        return max(ok, key=lambda r: r["resource"])["value"] if ok else None


class Study:
    """A study's results, from any source ``load`` reads (``doc``: results.json's form)."""

    def __init__(self, doc: dict[str, Any], source: str = "<doc>") -> None:
        check_doc(doc, source)
        self.doc = doc
        self.source = source
        self.name: str = doc.get("study", "")
        self.metric: str = doc.get("metric", "")
        self.mode: str = doc.get("mode", "min")

    @property
    def spec(self) -> dict[str, Any] | None:
        """The spec that ran (its parsed TOML tables), when the source holds it."""
        spec = self.doc.get("spec")
        return spec if isinstance(spec, dict) else None

    @property
    def best(self) -> Best | None:
        b = self.doc.get("best")
        if not b:
            return None
        return Best(b["trial"], dict(b["config"]), b["value"], b["rung"], b["resource"])

    @property
    def trials(self) -> list[TrialRecord]:
        out = []
        for t in self.doc.get("trials", []):
            results = list(t.get("results", []))
            errors = [
                r["error"] + (f"\n{r['traceback']}" if r.get("traceback") else "")
                for r in results
                if r.get("error")
            ]
            rung = max((r["rung"] for r in results), default=None)
            out.append(
                TrialRecord(
                    t["trial"],
                    dict(t["config"]),
                    t.get("bracket", 0),
                    t["status"],
                    rung,
                    results,
                    errors,
                    list(t.get("reports", [])),
                )
            )
        return out

    @property
    def curves(self) -> dict[int, list[tuple[float, float | None]]]:
        """Per trial, its learning curve in order of resource: (resource, metric) at each rung
        it reached (None: that result failed) and, when the trial reported the metric with
        ``ctx.report``, (step, metric) at each such report between them, as the dashboard and
        curves.png draw it. At a rung's resource the result's value stands; a step reported
        again (a trial trained from 0 again) replaces the reports from that step on."""
        out: dict[int, list[tuple[float, float | None]]] = {}
        for t in self.doc["trials"]:
            pts: list[tuple[float, float | None]] = [
                (r["resource"], r["value"]) for r in t["results"]
            ]
            at_rungs = {x for x, _ in pts}
            pts += [p for p in _reported(t, self.metric) if p[0] not in at_rungs]
            out[t["trial"]] = sorted(pts, key=lambda p: p[0])
        return out

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The first failures: ``{trial, error, traceback}`` each."""
        return list(self.doc.get("errors", []))

    @property
    def finished(self) -> bool | None:
        """Whether the study is over (a journal or a scheduler says; None from results.json,
        which is written at the end of a run that may have been interrupted)."""
        done = self.doc.get("finished")
        return bool(done) if done is not None else None

    @property
    def running(self) -> int:
        """Jobs in flight (a live scheduler; a journal: those in flight at its last record)."""
        return int(self.doc.get("running", 0))

    def to_pandas(self, *, reports: bool = False) -> Any:
        """One row per trial: trial, bracket, status, rung, resource, value (its metric at the
        highest resource it reached with success), ``config/<param>`` and that result's
        metrics as ``metrics/<name>``. With ``reports``, one row per ``ctx.report`` instead:
        trial, bracket, status, rung, step, value (the report's study metric, or None),
        ``config/<param>`` and the report's metrics as ``metrics/<name>``. Needs the
        ``pandas`` extra."""
        try:
            import pandas as pd
        except ImportError:
            raise LoadError(
                "Study.to_pandas() needs pandas: pip install 'ash-hpo[pandas]'"
            ) from None
        if reports:
            columns = ["trial", "bracket", "status", "rung", "step", "value"]
            found = self._report_rows()
            return pd.DataFrame(found, columns=None if found else columns)
        rows = []
        for t in self.trials:
            ok = [r for r in t.results if r["value"] is not None]
            top = max(ok, key=lambda r: r["resource"]) if ok else None
            row: dict[str, Any] = {
                "trial": t.trial,
                "bracket": t.bracket,
                "status": t.status,
                "rung": t.rung,
                "resource": top["resource"] if top else None,
                "value": top["value"] if top else None,
            }
            row.update({f"config/{k}": v for k, v in t.config.items()})
            if top:
                row.update({f"metrics/{k}": v for k, v in top.get("metrics", {}).items()})
            rows.append(row)
        return pd.DataFrame(rows)

    def _report_rows(self) -> list[dict[str, Any]]:
        rows = []
        for t in self.trials:
            for rep in t.reports:
                metrics = rep["metrics"]
                row: dict[str, Any] = {
                    "trial": t.trial,
                    "bracket": t.bracket,
                    "status": t.status,
                    "rung": rep["rung"],
                    "step": rep["step"],
                    "value": _number(metrics.get(self.metric)),
                }
                row.update({f"config/{k}": v for k, v in t.config.items()})
                row.update({f"metrics/{k}": v for k, v in metrics.items()})
                rows.append(row)
        return rows

    def __repr__(self) -> str:
        best = self.best
        b = f", best {self.metric}={best.value:.6g} (trial {best.trial})" if best else ""
        return f"<Study {self.name!r} from {self.source}: {len(self.doc['trials'])} trials{b}>"


def _number(v: Any) -> float | None:
    """``v`` as a finite float, or None (a metric may be anything JSON holds)."""
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def _reported(trial: dict[str, Any], metric: str) -> list[tuple[float, float | None]]:
    """The (step, metric) points of a trial's reports that carry the metric, in the order
    made; a step at or before the last one kept starts the curve again from there."""
    out: list[tuple[float, float | None]] = []
    for r in trial.get("reports", ()):
        v = _number(r["metrics"].get(metric))
        if v is None:
            continue
        while out and out[-1][0] >= r["step"]:
            out.pop()
        out.append((r["step"], v))
    return out


class _Bad(Exception):
    """A field of the document is not what ash writes: its path and what is wrong."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# a field's type: (test, what it must be, whether null is allowed)
_INT = (_is_int, "an integer", False)
_NUMBER = (_is_number, "a number", False)
_NUMBER_OR_NULL = (_is_number, "a number", True)
_STR = (lambda v: isinstance(v, str), "a string", False)
_STR_OR_NULL = (_STR[0], "a string", True)
_OBJECT = (lambda v: isinstance(v, dict), "an object", False)
_OBJECT_OR_NULL = (_OBJECT[0], "an object", True)
_LIST = (lambda v: isinstance(v, list), "a list", False)
Kind = tuple[Any, str, bool]

# the fields of each object a Study reads: name -> (kind, required)
_TOP: dict[str, tuple[Kind, bool]] = {
    "study": (_STR, False),
    "metric": (_STR, False),
    "mode": (_STR, False),
    "trials": (_LIST, True),
    "best": (_OBJECT_OR_NULL, False),
    "errors": (_LIST, False),
}
_TRIAL: dict[str, tuple[Kind, bool]] = {
    "trial": (_INT, True),
    "config": (_OBJECT, True),
    "bracket": (_INT, False),
    "status": (_STR, True),
    "results": (_LIST, True),
    "reports": (_LIST, False),
}
_RESULT: dict[str, tuple[Kind, bool]] = {
    "rung": (_INT, True),
    "resource": (_NUMBER, True),
    "value": (_NUMBER_OR_NULL, True),
    "metrics": (_OBJECT, False),
    "error": (_STR_OR_NULL, False),
    "traceback": (_STR_OR_NULL, False),
}
_REPORT: dict[str, tuple[Kind, bool]] = {
    "rung": (_INT, True),
    "step": (_NUMBER, True),
    "metrics": (_OBJECT, True),
}
_BEST: dict[str, tuple[Kind, bool]] = {
    "trial": (_INT, True),
    "config": (_OBJECT, True),
    "value": (_NUMBER, True),
    "rung": (_INT, True),
    "resource": (_NUMBER, True),
}


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    return "a list" if isinstance(v, list) else "an object"


def _path(where: tuple[str | int, ...], key: str = "") -> str:
    """``("trials", 3, "results", 0)`` and ``"value"`` as ``trials[3].results[0].value``."""
    out = ""
    for part in (*where, key) if key else where:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _check(obj: Any, fields: dict[str, tuple[Kind, bool]], *where: str | int) -> None:
    """``obj`` is an object whose ``fields`` are there (when required) and of their kind;
    ``where`` names it (``"trials", 3, "results", 0``: made into text only for an error)."""
    if not isinstance(obj, dict):
        raise _Bad(f"{_path(where) or 'the document'}: expected an object, got {_kind(obj)}")
    for key, ((test, what, nullable), required) in fields.items():
        if key not in obj:
            if required:
                raise _Bad(f"{_path(where, key)}: missing")
            continue
        v = obj[key]
        if not test(v) and not (nullable and v is None):
            null = " or null" if nullable else ""
            raise _Bad(f"{_path(where, key)}: expected {what}{null}, got {_kind(v)}")


def check_doc(doc: Any, source: str) -> None:
    """Check that ``doc`` has the fields a ``Study`` reads, of the types ash writes them with;
    raise a ``LoadError`` naming ``source`` and the first field that is not."""
    try:
        _check(doc, _TOP)
        if doc.get("mode", "min") not in ("min", "max"):
            raise _Bad(f"mode: expected 'min' or 'max', got {doc['mode']!r}")
        seen: set[int] = set()
        for i, t in enumerate(doc["trials"]):
            _check(t, _TRIAL, "trials", i)
            if t["trial"] in seen:
                raise _Bad(f"trials[{i}].trial: trial {t['trial']} appears twice")
            seen.add(t["trial"])
            for j, r in enumerate(t["results"]):
                _check(r, _RESULT, "trials", i, "results", j)
            for j, r in enumerate(t.get("reports", ())):
                _check(r, _REPORT, "trials", i, "reports", j)
        if doc.get("best") is not None:
            _check(doc["best"], _BEST, "best")
        for i, e in enumerate(doc.get("errors", ())):
            if not isinstance(e, dict):
                raise _Bad(f"errors[{i}]: expected an object, got {_kind(e)}")
    except _Bad as exc:
        raise LoadError(f"{source}: not a results.json ({exc})") from None


def load(
    source: str | Path,
    *,
    token: str | None = None,
    tls_ca: str | Path | None = None,
    timeout: float = 30.0,
) -> Study:
    """A study from a results.json (or its folder), a journal, or a scheduler's ``host:port``."""
    path = Path(source)
    if path.is_dir():
        path = path / "results.json"
    if path.exists():
        try:
            with open(path, "rb") as f:
                head = f.read(256)
        except OSError as exc:
            raise LoadError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        if b'"ash-journal"' in head:
            return Study(_from_journal(path), str(path))
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LoadError(f"{path}: not a results.json ({exc})") from None
        return Study(doc, str(path))
    if isinstance(source, str) and _ADDRESS.match(source):
        return Study(_from_scheduler(source, token, tls_ca, timeout), source)
    raise LoadError(
        f"{source}: no such file, and not a scheduler address host:port (give a results.json, "
        "an --out folder, a journal, or a running scheduler's host:port)"
    )


def _from_journal(path: Path) -> dict[str, Any]:
    """Replay a journal read-only (no lock: its owner may be running; a torn tail is left
    out) and make its results document."""
    from ash.scheduler.driver import replay_read_only
    from ash.scheduler.journal import JournalError, amended
    from ash.scheduler.outcome import outcome

    try:
        driver, raw, records = replay_read_only(path)
    except JournalError as exc:
        raise LoadError(str(exc)) from None
    doc, _ = outcome(driver, interrupted=False)
    doc["spec"] = amended(raw, records)  # with the budget raises so far
    doc["running"] = len(driver.core.inflight)
    doc["finished"] = driver.core.finished
    return doc


def _from_scheduler(
    address: str, token: str | None, tls_ca: str | Path | None, timeout: float
) -> dict[str, Any]:
    import grpc

    from ash.link.auth import bearer
    from ash.link.wire import scheduler_stub, viewer_channel
    from ash.proto import ash_pb2 as pb

    ca = None
    if tls_ca is not None:
        from ash.tls import read_ca

        ca = read_ca(str(tls_ca), "tls_ca")
    with viewer_channel(address, ca) as channel:
        try:
            st = scheduler_stub(channel).Status(
                pb.StatusRequest(results=True), timeout=timeout, metadata=bearer(token)
            )
        except grpc.RpcError as exc:
            raise LoadError(f"{address}: {exc.code().name}: {exc.details()}") from None
    if not st.results_json:
        raise LoadError(f"{address}: the scheduler sent no results (an older ash-scheduler?)")
    doc: dict[str, Any] = json.loads(st.results_json)
    doc["running"] = st.running
    doc["finished"] = st.finished
    return doc
