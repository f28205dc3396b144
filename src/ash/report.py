"""The study report in ``--out``: report.html, the dashboard's own views in one offline file.

report.html is the page ``ash dashboard`` serves, made self-contained: its stylesheet, its view
code (``ash/dashboard/static/views.js``) and the vendored plotly.js are inlined, with the
study's view (``ash.dashboard.model``) embedded as JSON, so a finished study looks the same
offline as live, with nothing fetched from anywhere. Below the views, a table of the best trials.

With matplotlib (the ``plot`` extra) it also writes two static images beside it: ``curves.png``,
every trial's metric against resource, one panel per bracket, coloured by the highest rung the
trial reached (drawn through its ``ctx.report`` reports of the metric when it made any); and
``rungs.png``, the distribution of results at each rung.
"""

from __future__ import annotations

import html
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

from ash.scheduler.results import ranked_trials


def write_report(doc: dict[str, Any], out: Path, *, limit: int = 20) -> Path:
    """Write report.html (and PNGs when matplotlib imports) into ``out``; return the HTML path."""
    plots = _plots(doc, out)
    path = out / "report.html"
    path.write_text(_html(doc, plots, limit), encoding="utf-8")
    return path


def _plots(doc: dict[str, Any], out: Path) -> list[str]:
    """curves.png and rungs.png, drawn with matplotlib's object API (``Figure`` on its Agg
    canvas): pyplot is neither imported nor touched, so the caller's backend (a notebook's
    inline one) and its open figures stay as they were, and the import costs less."""
    try:
        from matplotlib import colormaps
        from matplotlib.figure import Figure
    except ImportError:
        return []
    metric = doc["metric"]
    trials = doc["trials"]
    brackets = sorted({t.get("bracket", 0) for t in trials}) or [0]
    fig = Figure(figsize=(6 * len(brackets), 4.2))
    axes = fig.subplots(1, len(brackets), squeeze=False, sharey=True)
    top_rung = max((r["rung"] for t in trials for r in t["results"]), default=0)
    cmap = colormaps["viridis"]
    for ax, b in zip(axes[0], brackets, strict=True):
        for t in _plotted([t for t in trials if t.get("bracket", 0) == b]):
            pts = [(r["resource"], r["value"]) for r in t["results"] if r["value"] is not None]
            if not pts:
                continue
            reached = max(r["rung"] for r in t["results"])
            xs, ys = zip(*sorted(pts), strict=True)
            color = cmap(reached / max(1, top_rung))
            alpha = 0.35 + 0.6 * reached / max(1, top_rung)
            dense = _reported(t, metric)
            if len(dense) > len(pts):  # the trainer reported along the way: draw those
                rx, ry = zip(*dense, strict=True)
                ax.plot(rx, ry, "-", color=color, alpha=alpha, lw=1)
                ax.plot(xs, ys, "o", color=color, alpha=alpha, ms=2.5)
            else:
                ax.plot(xs, ys, "-o", color=color, alpha=alpha, lw=1, ms=2.5)
        ax.set_xscale("log")
        ax.set_xlabel("resource")
        ax.set_title(f"bracket {b}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(metric)
    fig.suptitle(f"{doc['study']}: learning curves (colour = highest rung reached)")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)

    by_rung: dict[tuple[int, float], list[float]] = {}
    for t in trials:
        for r in t["results"]:
            if r["value"] is not None and math.isfinite(r["value"]):
                by_rung.setdefault((r["rung"], r["resource"]), []).append(r["value"])
    keys = sorted(by_rung, key=lambda k: (k[1], k[0]))
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    if keys:
        ax.boxplot([by_rung[k] for k in keys], showfliers=True)
        ax.set_xticks(range(1, len(keys) + 1))
        ax.set_xticklabels([f"rung {k[0]}\nr={k[1]:g}\nn={len(by_rung[k])}" for k in keys])
    ax.set_ylabel(metric)
    ax.set_title(f"{doc['study']}: results per rung")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out / "rungs.png", dpi=110)
    return ["curves.png", "rungs.png"]


def _reported(trial: dict[str, Any], metric: str) -> list[tuple[float, float]]:
    """The (step, metric) points of a trial's intermediate reports that carry the metric."""
    out = []
    for r in trial.get("reports", ()):
        v = r["metrics"].get(metric)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out.append((r["step"], float(v)))
    return out


def _plotted(trials: list[dict[str, Any]], cap: int = 1500) -> list[dict[str, Any]]:
    """At most ``cap`` curves per panel (one matplotlib line each costs ~1 ms): every trial
    that was promoted, highest rungs first, then an even sample of the others."""
    if len(trials) <= cap:
        return trials
    ranked = sorted(trials, key=lambda t: -max((r["rung"] for r in t["results"]), default=0))
    promoted = [t for t in ranked if any(r["rung"] > 0 for r in t["results"])][:cap]
    rest = [t for t in ranked[len(promoted) :]]
    room = cap - len(promoted)
    step = max(1, len(rest) // room) if room > 0 else len(rest) + 1
    return promoted + rest[::step][:room]


def _inline_view(doc: dict[str, Any]) -> str:
    """The dashboard's views of ``doc``, with their code, styles and plotly.js inlined."""
    from ash.dashboard.model import StudyModel

    model = StudyModel()
    model.load_results(doc)
    model.source = "report.html"
    model.compute_importance()
    static = resources.files("ash.dashboard") / "static"
    plotly = (static / "plotly.min.js").read_text(encoding="utf-8")
    views = (static / "views.js").read_text(encoding="utf-8")
    style = (static / "style.css").read_text(encoding="utf-8")
    data = json.dumps(model.view(), separators=(",", ":"), allow_nan=False, default=str)
    data = data.replace("</", "<\\/")  # never ends the script element early
    plotly = plotly.replace("</script", "<\\/script")
    return f"""<style>{style}</style>
<script>{plotly}</script>
<script type="application/json" id="ash-data">{data}</script>
<main id="app"></main>
<script type="module">
{views}
const app = document.getElementById("app");
const st = newState();
applyMessage(st, JSON.parse(document.getElementById("ash-data").textContent));
app.innerHTML = STUDY_HTML;
bindControls(st, app, () => render(st, app));
render(st, app);
</script>"""


def _html(doc: dict[str, Any], plots: list[str], limit: int) -> str:
    e = html.escape
    rows = []
    for t, top in ranked_trials(doc)[:limit]:
        cfg = ", ".join(f"{e(str(k))}={e(str(v))}" for k, v in t["config"].items())
        rows.append(
            f"<tr><td>{t['trial']}</td><td>{top['resource']}</td><td>{top['value']:.6g}</td>"
            f"<td>{e(t['status'])}</td><td>{cfg}</td></tr>"
        )
    figs = "".join(f'<p><img src="{p}" alt="{p}" style="max-width:100%"></p>' for p in plots)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(doc["study"])}: ash report</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head><body>
{_inline_view(doc)}
<section class="report"><h2>Best trials</h2>
<table id="best-trials"><tr><th>trial</th><th>resource</th><th>{e(doc["metric"])}</th>
<th>status</th><th>config</th></tr>{"".join(rows)}</table>{figs}</section>
</body></html>
"""
