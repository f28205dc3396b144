"""The dashboard in a real browser: headless Chromium (Debian's chromium + chromium-driver, which
CI installs) driven by selenium against a real ash-scheduler on loopback with a real worker
process, a finished study's results.json served by ``ash dashboard``, and report.html opened
from disk. Screenshots go to the test's tmp folder."""

from __future__ import annotations

import json
import random
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import BIN, Scheduler, dashboard_url, results, serve_dashboard, worker, write_study

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium "
    "chromium-driver; .ci/run installs them)",
)
selenium = pytest.importorskip("selenium")
pytest.importorskip("aiohttp")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402

TOKEN = "dash-test-token"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    opts = webdriver.ChromeOptions()
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1400,2300",
    ):
        opts.add_argument(arg)
    assert CHROMIUM is not None
    opts.binary_location = CHROMIUM
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(what: Callable[[], Any], timeout: float = 60.0, why: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = what()
        except Exception as exc:  # the page may be between renders
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {why}: last {last!r}")


def text(driver: Any, element_id: str) -> str:
    return str(driver.find_element("id", element_id).text)


def count(driver: Any, element_id: str) -> int:
    m = re.match(r"\d+", text(driver, element_id))
    return int(m.group(0)) if m else -1


def traces(driver: Any, plot_id: str) -> int:
    n = driver.execute_script(
        f"const el = document.getElementById('{plot_id}'); return el && el.data ? "
        "el.data.length : 0;"
    )
    return int(n)


def test_live_study_updates_in_the_browser(
    tmp_path: Path, cleanup: list[Any], browser: Any
) -> None:
    spec = write_study(tmp_path, max_trials=24)
    tok = tmp_path / "token"
    tok.write_text(TOKEN)
    s = Scheduler(
        spec,
        tmp_path,
        "--out",
        "out",
        "--trace",
        "trace.jsonl",
        "--token-file",
        str(tok),
        "--dashboard-port",
        "0",
        "--linger",
        "0",
    )
    cleanup.append(s)
    url = dashboard_url(s.proc)
    # a wrong or missing token is refused, by the API and by the page
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(url + "api/studies", headers=headers))
        assert err.value.code == 401
    browser.get(url + "?token=wrong")
    assert "wrong token" in browser.find_element("tag name", "body").text
    # a second dashboard, ash dashboard --scheduler, follows the same study over gRPC
    remote, remote_url = serve_dashboard(
        "--scheduler", s.target, "--token-file", str(tok), "--listen", "127.0.0.1:0"
    )
    cleanup.append(remote)

    browser.get(url + f"?token={TOKEN}")
    wait_for(lambda: text(browser, "title") == "py", why="the study's name")
    assert text(browser, "state") == "live"
    assert count(browser, "st-results") == 0
    w = worker(s.target, tmp_path, "w1", "--token-file", str(tok), env={"SLEEP": "0.25"})
    cleanup.append(w)
    first = wait_for(
        lambda: count(browser, "st-results") >= 2 and count(browser, "st-results"), why="results"
    )
    wait_for(lambda: count(browser, "st-results") > first + 2, why="more results, live")
    # parallel coordinates (WebGL) are drawn when asked for, and not again on every delta
    assert traces(browser, "plot-parcoords") == 0
    browser.find_element("id", "parcoords-draw").click()
    wait_for(lambda: traces(browser, "plot-parcoords") == 1, why="the parallel coordinates")
    drawn_at = browser.execute_script("return window.ashDashboard.parcoords.seq")
    now = count(browser, "st-results")
    wait_for(lambda: count(browser, "st-results") > now + 2, why="results after the drawing")
    assert browser.execute_script("return window.ashDashboard.parcoords.seq") == drawn_at
    wait_for(lambda: traces(browser, "plot-timeline") > 0, why="the timeline")
    wait_for(lambda: "w1" in text(browser, "workers"), why="the worker list")
    row = browser.find_element("css selector", '#rungs tr[data-bracket="0"][data-rung="0"]')
    before = row.find_elements("tag name", "td")[3].text
    wait_for(lambda: row.find_elements("tag name", "td")[3].text != before, why="rung 0 counts")
    # the same row element, its cells changed in place (a table rebuilt five times a second is
    # garbage Chromium keeps): the element found before the update is still in the page
    assert row == browser.find_element("css selector", '#rungs tr[data-bracket="0"][data-rung="0"]')
    browser.save_screenshot(str(tmp_path / "live.png"))
    # the page never reloaded: one document, updated by deltas
    assert (
        int(browser.execute_script("return Number(document.getElementById('app').dataset.seq)")) > 1
    )
    wait_for(lambda: text(browser, "state") == "finished", timeout=180, why="the study's end")
    assert s.wait() == 0
    doc = results(tmp_path / "out")
    n = sum(len(t["results"]) for t in doc["trials"])
    wait_for(lambda: count(browser, "st-results") == n, why=f"all {n} results")
    assert count(browser, "st-trials") == len(doc["trials"])
    assert browser.find_elements("css selector", "#errors details")  # raise/nan/crash trials
    wait_for(lambda: traces(browser, "plot-curves") > 0, why="the learning curves")
    # and again when asked, with the latest trials
    assert "Redraw" in text(browser, "parcoords-draw")
    browser.find_element("id", "parcoords-draw").click()
    wait_for(
        lambda: browser.execute_script("return window.ashDashboard.parcoords.seq") > drawn_at,
        why="the parallel coordinates drawn again",
    )
    assert traces(browser, "plot-parcoords") == 1
    rung0 = browser.find_element("css selector", '#rungs tr[data-bracket="0"][data-rung="0"]')
    cells = [c.text for c in rung0.find_elements("tag name", "td")]
    assert int(cells[3]) == sum(1 for t in doc["trials"] for r in t["results"] if r["rung"] == 0)
    browser.save_screenshot(str(tmp_path / "finished.png"))
    # the remote dashboard saw the same study through the scheduler's Watch stream
    req = urllib.request.Request(
        remote_url + "api/study/study", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    view = json.loads(urllib.request.urlopen(req, timeout=10).read())
    assert view["status"]["results"] == n and view["status"]["finished"]
    remote.send_signal(signal.SIGTERM)
    assert remote.wait(timeout=20) == 0
    w.wait(timeout=60)


def test_finished_study_and_its_offline_report(tmp_path: Path, browser: Any) -> None:
    spec = write_study(tmp_path, max_trials=40)
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            str(BIN / "ash"),
            "tune",
            str(spec),
            "--workers",
            "2",
            "--out",
            str(out),
            "--trace",
            str(out / "trace.jsonl"),
            "--quiet",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = results(out)
    n = sum(len(t["results"]) for t in doc["trials"])
    dash, url = serve_dashboard(str(out), "--listen", "127.0.0.1:0")
    try:
        browser.get(url)
        wait_for(lambda: count(browser, "st-results") == n, why=f"{n} results")
        assert text(browser, "state") == "finished"
        wait_for(lambda: traces(browser, "plot-importance") == 1, why="the importance")
        # times from the trace beside results.json
        wait_for(lambda: traces(browser, "plot-timeline") > 0, why="the timeline")
        wait_for(lambda: traces(browser, "plot-best") > 0, why="best so far")
        wait_for(lambda: traces(browser, "plot-scatter") > 0, why="the scatter")
        browser.save_screenshot(str(tmp_path / "finished-served.png"))
        served = {k: text(browser, k) for k in ("st-trials", "st-results", "st-best", "rungs")}
    finally:
        dash.terminate()
        assert dash.wait(timeout=20) == 0
    # report.html: the same views, offline, nothing fetched
    browser.get((out / "report.html").as_uri())
    wait_for(lambda: count(browser, "st-results") == n, why="the report's views")
    offline = {k: text(browser, k) for k in ("st-trials", "st-results", "st-best", "rungs")}
    assert offline == served
    wait_for(lambda: traces(browser, "plot-curves") > 0, why="the report's curves")
    browser.find_element("id", "parcoords-draw").click()
    wait_for(lambda: traces(browser, "plot-parcoords") == 1, why="the report's parcoords")
    assert browser.find_elements("css selector", "#best-trials tr")
    browser.save_screenshot(str(tmp_path / "report.png"))


def test_a_large_study_draws_a_stated_subset_and_parcoords_on_demand(
    tmp_path: Path, browser: Any
) -> None:
    """2,500 trials: the server sends the page 2,000 (the highest rungs first), the curves draw
    500 of them and the scatter all it has, each chart says so; the parallel coordinates wait
    for the button."""
    rng = random.Random(3)
    trials = []
    for i in range(2500):
        top = 2 if i % 27 == 0 else 1 if i % 3 == 0 else 0
        cfg = {"lr": 10 ** rng.uniform(-5, 0), "act": rng.choice(["relu", "tanh"])}
        results_ = [
            {"rung": k, "resource": 3**k, "value": rng.random() / (k + 1)} for k in range(top + 1)
        ]
        status = "completed" if top == 2 else "stopped"
        trials.append(
            {"trial": i, "bracket": 0, "config": cfg, "results": results_, "status": status}
        )
    doc = {"study": "big", "metric": "loss", "mode": "min", "trials": trials}
    (tmp_path / "results.json").write_text(json.dumps(doc))
    dash, url = serve_dashboard(str(tmp_path), "--listen", "127.0.0.1:0")
    try:
        browser.get(url)
        wait_for(lambda: count(browser, "st-trials") == 2500, why="the counts")
        wait_for(lambda: traces(browser, "plot-curves") > 0, why="the curves")
        wait_for(lambda: traces(browser, "plot-scatter") > 0, why="the scatter")
        assert text(browser, "curves-note") == (
            "showing 500 of 2,500 trials (those that went highest, best first)"
        )
        assert text(browser, "scatter-note") == (
            "showing 2,000 of 2,500 trials (those that went highest first)"
        )
        assert "2,000 of 2,500" in text(browser, "shown")
        # the history plot: every result as counts on a grid, the last 300 as points
        n = sum(len(t["results"]) for t in trials)
        wait_for(lambda: traces(browser, "plot-best") > 0, why="the history plot")
        best = browser.execute_script(
            "const d = document.getElementById('plot-best').data;"
            "return d.map((t) => [t.type, t.name, t.type === 'heatmap' ? t.text.flat()"
            ".reduce((a, b) => a + b, 0) : t.x.length]);"
        )
        kinds = [b[1] for b in best]
        assert best[0][0] == "heatmap" and kinds[-1] == "best so far"
        assert sum(b[2] for b in best if b[1].startswith("rung ")) == 300
        note = text(browser, "best-note")
        beyond = re.search(r"; ([\d,]+) results beyond", note)
        outside = int(beyond.group(1).replace(",", "")) if beyond else 0
        assert note.startswith(f"All {n:,} successful results as counts")
        assert best[0][2] + outside == n
        drawn = browser.execute_script(
            "return document.getElementById('plot-curves').data"
            ".reduce((n, t) => n + t.y.filter((y) => y === null).length, 0)"
        )
        assert drawn == 500  # one null after each trial's curve
        # every trial that reached rung 2 (93 of them) is among those drawn
        top = browser.execute_script(
            "return document.getElementById('plot-curves').data"
            ".filter((t) => t.name === 'reached rung 2')[0].y.filter((y) => y === null).length"
        )
        assert top == sum(1 for t in trials if len(t["results"]) == 3)
        # parallel coordinates: nothing drawn (no WebGL context) until asked
        time.sleep(1)
        assert traces(browser, "plot-parcoords") == 0
        assert not browser.find_elements("css selector", "#plot-parcoords canvas")
        browser.find_element("id", "parcoords-draw").click()
        wait_for(lambda: traces(browser, "plot-parcoords") == 1, why="the parallel coordinates")
        assert text(browser, "parcoords-note").startswith(
            "showing 500 of 2,500 trials (those that went highest, best first)"
        )
        n_lines = browser.execute_script(
            "return document.getElementById('plot-parcoords').data[0].dimensions[0].values.length"
        )
        assert n_lines == 500
        browser.save_screenshot(str(tmp_path / "large.png"))
    finally:
        dash.terminate()
        assert dash.wait(timeout=20) == 0


def test_the_study_list_shows_a_damaged_study_with_its_error(tmp_path: Path, browser: Any) -> None:
    """``ash dashboard FOLDER`` with a damaged study: the list page shows it with its error (as
    text: a folder named like markup stays text), next to the readable one, which opens."""
    runs = tmp_path / "runs"
    good, bad = runs / "good", runs / "<i>bad"
    good.mkdir(parents=True)
    bad.mkdir()
    trials = [
        {"trial": i, "config": {"x": i / 4}, "status": "completed",
         "results": [{"resource": 1, "value": 1.0 - i / 8, "rung": 0}]}
        for i in range(4)
    ]  # fmt: skip
    doc = {"study": "ok", "metric": "loss", "mode": "min", "trials": trials}
    (good / "results.json").write_text(json.dumps(doc))
    (bad / "results.json").write_text('{"trials": "x"}')
    dash, url = serve_dashboard(str(runs), "--listen", "127.0.0.1:0")
    try:
        browser.get(url)
        rows = wait_for(
            lambda: (
                len(browser.find_elements("css selector", "#studies tbody tr")) == 2
                and browser.find_elements("css selector", "#studies tbody tr")
            ),
            why="two studies listed",
        )
        shown = {r.find_element("css selector", "a").text: r.text for r in rows}
        why = f"{bad / 'results.json'}: not an ash results.json (no 'trials' list)"
        assert f"error: {why}" in shown["<i>bad"], shown
        assert "finished" in shown["ok"] and "error" not in shown["ok"]
        assert not browser.find_elements("css selector", "#studies i")  # text, not markup
        browser.save_screenshot(str(tmp_path / "list-with-a-damaged-study.png"))
        browser.find_element("link text", "<i>bad").click()
        wait_for(lambda: text(browser, "state") == "error", why="the damaged study's page")
        assert text(browser, "error") == why
        browser.get(url)
        wait_for(lambda: browser.find_elements("link text", "ok"), why="the list again")
        browser.find_element("link text", "ok").click()
        wait_for(lambda: count(browser, "st-results") == 4, why="the readable study's results")
        assert text(browser, "state") == "finished"
    finally:
        dash.terminate()
        assert dash.wait(timeout=20) == 0
