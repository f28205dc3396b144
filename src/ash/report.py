"""The study report in ``--out``: report.html, with learning-curve plots when matplotlib is there.

Plots (the ``plot`` extra): ``curves.png``, every trial's metric against resource, one panel per
bracket, coloured by the highest rung the trial reached, so promotions read as lines that go on
(drawn through the trial's intermediate reports of the metric, ``ctx.report``, when it made any,
with its results as dots);
and ``rungs.png``, the distribution of results at each rung. Without matplotlib the HTML report
holds everything but the plots, and says how to get them.
"""

from __future__ import annotations

import html
import math
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
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    metric = doc["metric"]
    trials = doc["trials"]
    brackets = sorted({t.get("bracket", 0) for t in trials}) or [0]
    fig, axes = plt.subplots(
        1, len(brackets), figsize=(6 * len(brackets), 4.2), squeeze=False, sharey=True
    )
    top_rung = max((r["rung"] for t in trials for r in t["results"]), default=0)
    cmap = plt.get_cmap("viridis")
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
    plt.close(fig)

    by_rung: dict[tuple[int, float], list[float]] = {}
    for t in trials:
        for r in t["results"]:
            if r["value"] is not None and math.isfinite(r["value"]):
                by_rung.setdefault((r["rung"], r["resource"]), []).append(r["value"])
    keys = sorted(by_rung, key=lambda k: (k[1], k[0]))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if keys:
        ax.boxplot([by_rung[k] for k in keys], showfliers=True)
        ax.set_xticks(range(1, len(keys) + 1))
        ax.set_xticklabels([f"rung {k[0]}\nr={k[1]:g}\nn={len(by_rung[k])}" for k in keys])
    ax.set_ylabel(metric)
    ax.set_title(f"{doc['study']}: results per rung")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out / "rungs.png", dpi=110)
    plt.close(fig)
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


def _html(doc: dict[str, Any], plots: list[str], limit: int) -> str:
    e = html.escape
    best = doc.get("best")
    rows = []
    mode = doc["mode"]
    for t, top in ranked_trials(doc)[:limit]:
        cfg = ", ".join(f"{e(str(k))}={e(str(v))}" for k, v in t["config"].items())
        rows.append(
            f"<tr><td>{t['trial']}</td><td>{top['resource']}</td><td>{top['value']:.6g}</td>"
            f"<td>{e(t['status'])}</td><td>{cfg}</td></tr>"
        )
    statuses: dict[str, int] = {}
    for t in doc["trials"]:
        statuses[t["status"]] = statuses.get(t["status"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    figs = "".join(f'<p><img src="{p}" alt="{p}"></p>' for p in plots) or (
        "<p><em>No plots: install the plot extra (pip install 'ash-hpo[plot]').</em></p>"
    )
    best_html = "<p>No successful result.</p>"
    if best is not None:
        best_html = (
            f"<p>Best {e(doc['metric'])} = <b>{best['value']:.6g}</b>: trial {best['trial']} at "
            f"resource {best['resource']} (rung {best['rung']}), config "
            f"<code>{e(str(best['config']))}</code></p>"
        )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{e(doc["study"])}: ash report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;font-size:90%}}
img{{max-width:100%}}</style></head><body>
<h1>{e(doc["study"])}</h1>
<p>{len(doc["trials"])} trials ({e(summary)}); metric {e(doc["metric"])} ({e(mode)}).</p>
{best_html}
{figs}
<h2>Best trials</h2>
<table><tr><th>trial</th><th>resource</th><th>{e(doc["metric"])}</th><th>status</th>
<th>config</th></tr>{"".join(rows)}</table>
</body></html>
"""
