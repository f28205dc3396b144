"""Live progress of a study in the terminal (rich), and the final table of best trials.

One display for every way a study runs: it renders a ``Snapshot``, built either from a local
Driver (``ash tune``) or from the scheduler's Status RPC (``ash tune --transport grpc``,
``ash status``). On a terminal it redraws a few times a second; elsewhere (CI, pipes) it stays
silent, so logs are not flooded.

Every string shown passes through ``ash.printable`` (worker and device ids, metric names and
values a worker reported come from peers: raw, an ESC in them would drive the terminal), and
goes into rich as ``Text``, never as markup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ash.printable import printable
from ash.scheduler.driver import Status
from ash.scheduler.results import ranked_trials

Snapshot = Status  # what the display shows: the driver's Status (workers from a Status call)


def from_driver(driver: Any) -> Snapshot:
    st: Status = driver.status()
    return st


def from_status(st: Any) -> Snapshot:
    """From an ``ash.v1.StudyStatus`` message."""
    from ash.link.wire import value_from_pb

    rungs: list[list[tuple[float, int]]] = []
    for r in st.rungs:
        while len(rungs) <= r.bracket:
            rungs.append([])
        rungs[r.bracket].append((r.resource, r.results))
    best = None
    if st.HasField("best"):
        best = {
            "trial": st.best.trial,
            "value": st.best.value,
            "resource": st.best.resource,
            "rung": st.best.rung,
            "config": {k: value_from_pb(v, k) for k, v in st.best.config.items()},
        }
    return Snapshot(
        study=st.study,
        algorithm=st.algorithm,
        metric=st.metric,
        mode=st.mode,
        trials=st.trials,
        max_trials=None if st.max_trials < 0 else st.max_trials,
        results=st.results,
        failed=st.failed,
        running=st.running,
        elapsed=st.elapsed_s,
        time_limit=st.time_limit_s or None,
        finished=st.finished,
        rungs=rungs,
        best=best,
        error=st.error or None,
        workers=st.workers,
        reports=st.reports,
        latest=_latest(st) if st.HasField("latest") else None,
        devices={w.id: list(w.devices) for w in st.worker_info if w.devices} or None,
    )


def _latest(st: Any) -> dict[str, Any]:
    from ash.link.wire import value_from_pb

    step = st.latest.step
    return {
        "trial": st.latest.trial,
        "rung": st.latest.rung,
        "step": int(step) if float(step).is_integer() else step,
        "metrics": {k: value_from_pb(v, k) for k, v in st.latest.metrics.items()},
    }


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return printable(x)


def _eta(s: Snapshot) -> str:
    guesses = []
    if s.time_limit is not None:
        guesses.append(max(0.0, s.time_limit - s.elapsed))
    if s.max_trials is not None and s.trials > 0:
        guesses.append(s.elapsed * (s.max_trials - s.trials) / s.trials)
    return f"~{min(guesses):.0f}s" if guesses else "?"


def render(s: Snapshot, title: str) -> Group:
    cap = f"/{s.max_trials}" if s.max_trials is not None else ""
    workers = f"  workers {s.workers}" if s.workers is not None else ""
    head = Text.assemble(
        (printable(title), "bold"),
        f"  trials {s.trials}{cap}  results {s.results}  failed {s.failed}"
        f"  running {s.running}{workers}  elapsed {s.elapsed:.1f}s  eta {_eta(s)}",
    )
    rungs = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
    rungs.add_column("bracket")
    rungs.add_column("rungs filled (resource: results)")
    for b, counts in enumerate(s.rungs):
        rungs.add_row(str(b), "  ".join(f"{_fmt(r)}: {n}" for r, n in counts))
    line = Text("best: none yet", style="dim")
    if s.best is not None:
        line = Text(
            f"best {printable(s.metric)}={_fmt(s.best['value'])}  trial {s.best['trial']} "
            f"at {_fmt(s.best['resource'])}  {printable(s.best['config'])}"
        )
    lines: list[Any] = [head, rungs, line]
    if s.reports:
        last = ""
        if s.latest is not None:
            shown = "  ".join(
                f"{printable(k)}={_fmt(v)}" for k, v in list(s.latest["metrics"].items())[:6]
            )
            last = (
                f"  last: trial {s.latest['trial']} rung {s.latest['rung']} "
                f"step {_fmt(s.latest['step'])}  {shown}"
            )
        lines.append(Text(f"reports {s.reports}{last}", style="dim"))
    if s.devices:
        held = "  ".join(
            f"{printable(w)}: {printable(','.join(d))}" for w, d in sorted(s.devices.items())
        )
        lines.append(Text(f"devices  {held}", style="dim"))
    return Group(*lines)


class Progress:
    """A live view of ``snapshot()``; ``tick`` redraws it."""

    def __init__(
        self, snapshot: Callable[[], Snapshot], title: str, *, enabled: bool = True
    ) -> None:
        self.snapshot = snapshot
        self.title = title
        self.console = Console(stderr=True)
        self.enabled = enabled and self.console.is_terminal
        self.live: Live | None = None

    def __enter__(self) -> Progress:
        if self.enabled:
            self.live = Live(
                render(self.snapshot(), self.title), console=self.console, refresh_per_second=4
            )
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(render(self.snapshot(), self.title))
            self.live.__exit__(None, None, None)
            self.live = None

    def tick(self) -> None:
        if self.live is not None:
            self.live.update(render(self.snapshot(), self.title))


def best_table(doc: dict[str, Any], limit: int = 10) -> Table:
    """The best trials, each at the highest resource it reached with a successful result."""
    metric = printable(doc["metric"])
    table = Table(title=Text(f"best trials ({metric}, {printable(doc['mode'])})"))
    for col in ("trial", "resource", metric, "status", "config"):
        table.add_column(Text(col))
    for t, top in ranked_trials(doc)[:limit]:
        cfg = ", ".join(f"{printable(k)}={_fmt(v)}" for k, v in t["config"].items())
        cells = (t["trial"], _fmt(top["resource"]), _fmt(top["value"]), t["status"], cfg)
        table.add_row(*(Text(printable(c)) for c in cells))
    return table
