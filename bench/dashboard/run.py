"""bench/dashboard: the web dashboard on a 100,000-trial study, in headless Chromium.

Goals (issue #17): first paint under 2 s, updates under 200 ms, browser memory under 500 MB,
server CPU under 5% of a core while a page watches.

1. ``ash simulate`` makes the study (ASHA, R=81, eta=3, five parameters, 64 simulated workers):
   results.json and the trace, cached in ``--work``.
2. A dashboard server process (this file with ``--serve``) holds the study as the detailed Watch
   stream would have fed it: every event but the last ``rate * watch_s`` ones, each ``assign``
   with its config. On a line on its stdin it goes live: the rest of the events arrive at
   ``--rate`` events/s through the same path a scheduler's stream takes (``sources.follow``),
   batched as a batching Watch stream carries them (one message per 50 ms window).
3. Headless Chromium (a 1400x2300 window: every chart in view, so every chart is drawn) opens
   the page. First paint: when the counts are drawn (ms since the navigation started, the
   page's own clock); also when every chart is drawn. Then the feed goes live for
   ``--watch-s`` seconds: the server's CPU (utime + stime from /proc) over that window, the
   page's update latency (server sent a delta -> its tables drawn; and how old a chart's data
   is when it is drawn), and the browser's memory: the JS heap, and the PSS of all of
   Chromium's processes, beside the same on about:blank (Chromium's own share). Then the
   parallel coordinates, drawn on demand, are asked for, and the memory measured again.
4. The control: the server process with the same feed at the same pace and no dashboard, for
   as long: what the stream itself costs the process.

Run only under the benchmark lock:
    flock /tmp/ash-bench.lock .venv/bin/python bench/dashboard/run.py [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WINDOW = "1400,2300"  # tall enough that every chart is in view, so every chart is drawn
BIN = Path(sys.executable).parent
SPEC = """
[study]
name = "big"
metric = "loss"
mode = "min"
seed = 1
algorithm = "asha"
[asha]
min_resource = 1
max_resource = 81
reduction_factor = 3
max_trials = {trials}
[trainer]
type = "python"
entrypoint = "nothing:fit"
[space]
lr = {{ log_uniform = [1e-5, 1.0] }}
width = {{ choice = [16, 32, 64, 128, 256] }}
dropout = {{ uniform = [0.0, 0.5] }}
momentum = {{ uniform = [0.5, 0.99] }}
act = {{ choice = ["relu", "tanh", "gelu"] }}
"""


def make_study(work: Path, trials: int) -> Path:
    out = work / f"study-{trials}"
    if (out / "results.json").is_file() and (out / "trace.jsonl").is_file():
        return out
    work.mkdir(parents=True, exist_ok=True)
    spec = work / f"big-{trials}.toml"
    spec.write_text(SPEC.format(trials=trials))
    subprocess.run(
        [
            str(BIN / "ash"),
            "simulate",
            str(spec),
            "--workers",
            "64",
            "--out",
            str(out),
            "--trace",
            str(out / "trace.jsonl.tmp"),
            "--quiet",
        ],
        check=True,
    )
    (out / "trace.jsonl.tmp").rename(out / "trace.jsonl")
    return out


# -- the server process -------------------------------------------------------------------


async def serve(study: Path, rate: float, live_events: int, feed_only: bool = False) -> None:
    from ash.dashboard.model import StudyModel
    from ash.dashboard.server import Dashboard
    from ash.dashboard.sources import follow, read_events
    from ash.scheduler.service import WATCH_BATCH_S

    doc = json.loads((study / "results.json").read_text())
    configs = {t["trial"]: t["config"] for t in doc["trials"]}
    events = read_events(study / "trace.jsonl")
    for ev in events:
        if ev["event"] == "assign" and ev["rung"] == 0:
            ev["config"] = configs[ev["trial"]]
    cut = max(0, len(events) - live_events)
    model = StudyModel(doc["study"], doc["metric"], doc["mode"])
    model.source = "bench replay"
    t0 = time.monotonic()
    for ev in events[:cut]:
        model.apply(ev)
    load_s = time.monotonic() - t0
    dash = Dashboard(None)
    dash.add(model)
    port = await dash.start("127.0.0.1", 0)
    print(
        json.dumps(
            {
                "url": f"http://127.0.0.1:{port}/",
                "load_s": load_s,
                "trials": len(model.trials),
                "results": model.n_results,
            }
        ),
        flush=True,
    )
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # "go"
    origin = events[cut]["t"] if cut < len(events) else 0.0

    async def batches() -> AsyncIterator[list[dict[str, Any]]]:
        # as a batching Watch stream (WatchRequest.batch) carries them: the events of each
        # WATCH_BATCH_S window in one message, each one JSON-encoded (the scheduler's share)
        # and decoded (the remote watcher's): both charged to this process
        start, i, live, base = time.monotonic(), 0, events[cut:], model.t
        while i < len(live):
            await asyncio.sleep(WATCH_BATCH_S)
            due = min(len(live), int((time.monotonic() - start) * rate) + 1)
            lines = [
                json.dumps(dict(ev, t=ev["t"] - origin + base))  # the study's clock goes on
                for ev in live[i:due]
            ]
            i = due
            yield [json.loads(line) for line in lines]
        yield [{"event": "finished"}]

    if feed_only:  # the control: the same stream, read and parsed, and no dashboard

        async def drain() -> None:
            async for _ in batches():
                pass

        await dash.close()
        task = asyncio.ensure_future(drain())
        await loop.run_in_executor(None, sys.stdin.readline)  # "stop"
        task.cancel()
        return
    dash.follow(follow(model, batches))
    await loop.run_in_executor(None, sys.stdin.readline)  # "stop"
    await dash.close()


# -- the measuring process ----------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_pss_mb(root: int) -> dict[str, float]:
    """Proportional set size (PSS: shared pages split among their sharers, so they are counted
    once) of ``root``'s descendants, by Chromium process type (browser, renderer, gpu-process,
    utility...), and their ``total``."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            status = (d / "status").read_text()
        except OSError:
            continue
        ppid = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("PPid:"))
        children.setdefault(ppid, []).append(int(d.name))
    out: dict[str, float] = {}
    stack = list(children.get(root, []))
    while stack:
        p = stack.pop()
        stack.extend(children.get(p, []))
        try:
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
            argv = Path(f"/proc/{p}/cmdline").read_bytes()  # chromium rewrites it: not NUL-split
        except OSError:
            continue
        m = re.search(rb"--type=([\w-]+)", argv)
        kind = m.group(1).decode() if m else "browser"
        kb = next(int(x.split()[1]) for x in rollup.splitlines() if x.startswith("Pss:"))
        out[kind] = out.get(kind, 0.0) + kb / 1024
    out["total"] = sum(out.values())
    return {k: round(v, 1) for k, v in out.items()}


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tempfile.mkdtemp(prefix='ash-bench-chromium-')}",
        f"--window-size={WINDOW}",
        "--enable-precise-memory-info",
    ):
        opts.add_argument(arg)
    opts.binary_location = shutil.which("chromium") or "chromium"
    return webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))


def wait(driver: Any, script: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = driver.execute_script(script)
        if got is not None:
            return got
        time.sleep(0.02)
    raise TimeoutError(script)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def start_server(args: argparse.Namespace, study: Path, *extra: str) -> subprocess.Popen[str]:
    live_events = int(args.rate * args.watch_s * 1.5)
    return subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            str(study),
            "--rate",
            str(args.rate),
            "--live-events",
            str(live_events),
            *extra,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def feed_alone_cpu(args: argparse.Namespace, study: Path) -> float:
    """The control: the server process with the stream but no dashboard (the events read at
    the same pace and parsed): what the stream itself costs, which a scheduler's own process
    pays anyway (``--dashboard-port``) and which the grpc client of ``ash dashboard
    --scheduler`` pays for any watcher."""
    server = start_server(args, study, "--feed-only")
    assert server.stdin is not None and server.stdout is not None
    server.stdout.readline()
    cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
    server.stdin.write("go\n")
    server.stdin.flush()
    time.sleep(args.watch_s)
    cpu = (cpu_seconds(server.pid) - cpu0) / (time.monotonic() - t0)
    server.stdin.write("stop\n")
    server.stdin.flush()
    server.wait(timeout=30)
    return cpu


def measure(args: argparse.Namespace) -> dict[str, Any]:
    study = make_study(Path(args.work), args.trials)
    server = start_server(args, study)
    assert server.stdin is not None and server.stdout is not None
    info = json.loads(server.stdout.readline())
    driver = browser()
    try:
        driver.get("about:blank")
        time.sleep(2)
        blank_pss = tree_pss_mb(driver.service.process.pid)
        paints = []
        for _ in range(args.loads):
            driver.get("about:blank")
            driver.get(info["url"])
            counts = wait(
                driver,
                "const s = window.ashDashboard; "
                "return s && s.timings.status ? s.timings.status.at : null",
            )
            charts = wait(
                driver,
                "const s = window.ashDashboard; "
                "return s && s.timings.drawnAt ? s.timings.drawnAt : null",
            )
            took = driver.execute_script("return window.ashDashboard.timings")
            paints.append(
                {
                    "counts_ms": counts,
                    "charts_ms": charts,
                    "sections_ms": {
                        k: round(v["ms"])
                        for k, v in took.items()
                        if isinstance(v, dict) and "ms" in v
                    },
                }
            )
        shown = driver.execute_script("return window.ashDashboard.trials.size")
        cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
        server.stdin.write("go\n")
        server.stdin.flush()
        rss_samples, heap_samples = [], []
        while time.monotonic() - t0 < args.watch_s:
            time.sleep(1.0)
            rss_samples.append(tree_pss_mb(driver.service.process.pid))
            heap_samples.append(
                driver.execute_script(
                    "return performance.memory ? performance.memory.usedJSHeapSize / 1048576 : null"
                )
            )
        cpu = (cpu_seconds(server.pid) - cpu0) / (time.monotonic() - t0)
        lat = driver.execute_script("return window.ashDashboard.latency")
        # the parallel coordinates are drawn on demand (WebGL): ask for them, as a user would
        seq0 = driver.execute_script("return window.ashDashboard.seq")
        driver.execute_script("document.getElementById('parcoords-draw').click()")
        wait(
            driver,
            "const t = window.ashDashboard.timings.parcoords; "
            f"return t && window.ashDashboard.parcoords.seq >= {seq0} ? t.ms : null",
        )
        time.sleep(2)
        parcoords_ms = driver.execute_script("return window.ashDashboard.timings.parcoords.ms")
        parcoords_pss = tree_pss_mb(driver.service.process.pid)
        seq = driver.execute_script("return window.ashDashboard.seq")
        final = driver.execute_script("return window.ashDashboard.status")
        timings = driver.execute_script("return window.ashDashboard.timings")
        live_sections = {
            k: round(v["ms"]) for k, v in timings.items() if isinstance(v, dict) and "ms" in v
        }
        server.stdin.write("stop\n")
        server.stdin.flush()
        server.wait(timeout=30)
    finally:
        driver.quit()
        if server.poll() is None:
            server.kill()
    feed_cpu = feed_alone_cpu(args, study)
    tables, charts = lat["tables"], lat["charts"]
    return {
        "trials": args.trials,
        "server_load_s": round(info["load_s"], 2),
        "study_at_open": {"trials": info["trials"], "results": info["results"]},
        "shown_trials": shown,
        "first_paint": paints,
        "live": {
            "rate_events_per_s": args.rate,
            "watch_s": args.watch_s,
            "messages": seq,
            "results_at_end": final["results"],
            "last_draw_ms": live_sections,
            "server_cpu_pct_of_a_core": round(100 * cpu, 2),
            "control_feed_alone_cpu_pct_of_a_core": round(100 * feed_cpu, 2),
            "update_ms_tables": {
                "median": statistics.median(tables) if tables else None,
                "p95": pct(tables, 0.95),
                "n": len(tables),
            },
            "chart_data_age_ms_when_drawn": {
                "median": statistics.median(charts) if charts else None,
                "p95": pct(charts, 0.95),
                "n": len(charts),
            },
            "browser_pss_mb_max": max(rss_samples, key=lambda x: x["total"]),
            "browser_pss_mb_about_blank": blank_pss,
            "page_pss_mb_over_about_blank": round(
                max(x["total"] for x in rss_samples) - blank_pss["total"], 1
            ),
            "parcoords_on_demand": {
                "draw_ms": round(parcoords_ms),
                "browser_pss_mb": parcoords_pss,
            },
            "js_heap_mb_max": round(max(h for h in heap_samples if h is not None), 1)
            if any(h is not None for h in heap_samples)
            else None,
        },
        "load_average": os.getloadavg(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=100_000)
    p.add_argument("--rate", type=float, default=200.0, help="live events per second")
    p.add_argument("--watch-s", type=float, default=30.0)
    p.add_argument("--loads", type=int, default=3, help="page loads for first paint")
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "ash-bench-dashboard"))
    p.add_argument("--json", help="write the results here")
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--live-events", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--feed-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        asyncio.run(serve(Path(args.serve), args.rate, args.live_events, args.feed_only))
        return
    result = measure(args)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
