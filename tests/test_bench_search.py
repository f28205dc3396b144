"""bench/search's harness still runs: a tiny setting (iris, 8 simulated workers, 2 seeds).

random-ASHA always; Optuna TPE+SH and DEHB when they are installed (the ``bench`` extra). The
harness must reach the recorded target with random-ASHA on iris (it does in every seed of the
full benchmark) and write its tables and results file.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "bench" / "search" / "run.py"


def _run(tmp_path: Path, systems: str) -> dict[str, object]:
    subprocess.run(
        [
            sys.executable,
            str(RUN),
            "--recordings",
            "iris",
            "--workers",
            "8",
            "--seeds",
            "2",
            "--systems",
            systems,
            "--jobs",
            "1",
            "--out",
            str(tmp_path),
            "--no-plots",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    doc: dict[str, object] = json.loads(
        gzip.decompress((tmp_path / "results.json.gz").read_bytes())
    )
    return doc


def test_random_asha_reaches_the_target(tmp_path: Path) -> None:
    doc = _run(tmp_path, "ash-random")
    runs = doc["runs"]
    assert isinstance(runs, list) and len(runs) == 2
    for r in runs:
        assert r["system"] == "ash-random"
        assert r["ttt"] is not None and 0 < r["ttt"] <= 16
        times = [t for t, _ in r["curve"]]
        values = [v for _, v in r["curve"]]
        assert times == sorted(times) and values == sorted(values, reverse=True)  # val_loss, min
        assert r["rows"] > 50  # the lookup answered with many recorded configurations
    text = (tmp_path / "results.md").read_text()
    assert "| iris | random-ASHA |" in text


@pytest.mark.parametrize(("system", "module"), [("optuna-tpe-sh", "optuna"), ("dehb", "dehb")])
def test_peer_runs(tmp_path: Path, system: str, module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[bench]')")
    doc = _run(tmp_path, system)
    runs = doc["runs"]
    assert isinstance(runs, list) and len(runs) == 2
    for r in runs:
        assert r["system"] == system and r["trials"] > 10 and r["curve"]
