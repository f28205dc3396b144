"""Live progress of a running study in the terminal (rich), and the final table of best trials.

It only reads: the driver's core (trials, rung counts) and results (best so far). On a terminal
it redraws a compact panel a few times a second; elsewhere (CI, pipes) it stays silent until the
final summary, so logs are not flooded.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ash.scheduler.driver import Driver
from ash.scheduler.results import ranked_trials


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _eta(driver: Driver, elapsed: float) -> str:
    sch = driver.spec.schedule
    guesses = []
    if sch.time_limit_s is not None:
        guesses.append(max(0.0, sch.time_limit_s - elapsed))
    n = driver.core.n_trials
    if sch.max_trials is not None and n > 0:
        guesses.append(elapsed * (sch.max_trials - n) / n)
    return f"~{min(guesses):.0f}s" if guesses else "?"


class Progress:
    def __init__(self, driver: Driver, title: str, *, enabled: bool = True) -> None:
        self.driver = driver
        self.title = title
        self.console = Console(stderr=True)
        self.enabled = enabled and self.console.is_terminal
        self.started = time.monotonic()
        self.live: Live | None = None

    def __enter__(self) -> Progress:
        if self.enabled:
            self.live = Live(self.render(), console=self.console, refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self.render())
            self.live.__exit__(None, None, None)
            self.live = None

    def tick(self) -> None:
        if self.live is not None:
            self.live.update(self.render())

    def render(self) -> Group:
        d = self.driver
        elapsed = time.monotonic() - self.started
        res = d.results
        sch = d.spec.schedule
        cap = f"/{sch.max_trials}" if sch.max_trials is not None else ""
        head = Text.assemble(
            (self.title, "bold"),
            f"  trials {d.core.n_trials}{cap}  results {res.n_results}"
            f"  failed {res.n_failed}  running {len(d.assigned)}"
            f"  elapsed {elapsed:.1f}s  eta {_eta(d, elapsed)}",
        )
        rungs = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
        rungs.add_column("bracket")
        rungs.add_column("rungs filled (resource: results)")
        for b, counts in enumerate(d.core.rung_counts()):
            rungs.add_row(str(b), "  ".join(f"{_fmt(r)}: {n}" for r, n in counts))
        best = res.best()
        line = Text("best: none yet", style="dim")
        if best is not None:
            line = Text(
                f"best {res.metric}={_fmt(best['value'])}  trial {best['trial']} "
                f"at {_fmt(best['resource'])}  {best['config']}"
            )
        return Group(head, rungs, line)


def best_table(doc: dict[str, Any], limit: int = 10) -> Table:
    """The best trials, each at the highest resource it reached with a successful result."""
    table = Table(title=f"best trials ({doc['metric']}, {doc['mode']})")
    for col in ("trial", "resource", doc["metric"], "status", "config"):
        table.add_column(col)
    for t, top in ranked_trials(doc)[:limit]:
        cfg = ", ".join(f"{k}={_fmt(v)}" for k, v in t["config"].items())
        table.add_row(str(t["trial"]), _fmt(top["resource"]), _fmt(top["value"]), t["status"], cfg)
    return table
