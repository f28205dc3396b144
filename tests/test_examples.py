"""The deep-learning examples, each run through a real embedded ``ash tune`` on a tiny budget:
the PyTorch CNN (examples/torch.toml) and the JAX MLP (examples/jax.toml). The study completes,
every epoch is reported once (``ctx.report``) and kept in results.json, and a promoted trial
resumes from the checkpoint files its last job wrote (its epochs continue: the trainers refuse a
checkpoint that does not hold ``ctx.start`` epochs, and the reports never repeat an epoch)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import BIN, EXAMPLES


def tiny(example: str, tmp_path: Path, **asha: int) -> Path:
    """The example's spec with a smaller [asha] budget, written into tmp_path."""
    text = (EXAMPLES / example).read_text()
    for key, value in asha.items():
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert n == 1, key
    spec = tmp_path / example
    spec.write_text(text)
    return spec


def run_example(example: str, tmp_path: Path, *extra: str, **asha: int) -> dict[str, Any]:
    spec = tiny(example, tmp_path, **asha)
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES)}
    proc = subprocess.run(
        [str(BIN / "ash"), "tune", str(spec), "--workers", "2", "--out", "out", "--quiet", *extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads((tmp_path / "out/results.json").read_text())
    return doc


def check_resumed(doc: dict[str, Any], max_trials: int, max_resource: int) -> None:
    assert not doc["errors"], doc["errors"]
    assert len(doc["trials"]) == max_trials
    assert {t["status"] for t in doc["trials"]} <= {"completed", "stopped"}
    promoted = 0
    for t in doc["trials"]:
        top = t["results"][-1]["resource"]
        # one report per epoch, never repeated: a promoted job continued from its checkpoint
        assert [r["step"] for r in t["reports"]] == list(range(1, int(top) + 1))
        for r in t["results"]:
            assert r["metrics"]["epochs"] == r["resource"]
            at = [p for p in t["reports"] if p["step"] == r["resource"]]
            assert at[0]["metrics"]["val_loss"] == pytest.approx(r["metrics"]["val_loss"])
            assert at[0]["rung"] == r["rung"]
        promoted += len(t["results"]) > 1
    assert promoted >= 1
    assert any(r["resource"] == max_resource for t in doc["trials"] for r in t["results"])
    assert doc["best"]["resource"] == max_resource


def test_torch_example_reports_and_resumes_from_torch_save(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    doc = run_example("torch.toml", tmp_path, max_trials=4, max_resource=4, reduction_factor=2)
    check_resumed(doc, 4, 4)
    best = next(t for t in doc["trials"] if t["trial"] == doc["best"]["trial"])
    assert best["results"][-1]["metrics"]["val_accuracy"] > 0.5  # it learns in 4 epochs
    assert not list(tmp_path.glob("ash-work-*"))  # the trial folders are cleaned up


def test_jax_example_reports_and_resumes_from_npy_files(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    doc = run_example(
        "jax.toml", tmp_path, max_trials=4, min_resource=1, max_resource=4, reduction_factor=2
    )
    check_resumed(doc, 4, 4)


def test_torch_example_threads_follow_the_grant(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import torch_digits\n"
        "from threadpoolctl import threadpool_limits\n"
        "with threadpool_limits(limits=1): a = torch_digits.grant_threads()\n"
        "with threadpool_limits(limits=2): b = torch_digits.grant_threads()\n"
        "print(a, b)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(EXAMPLES)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    assert out.stdout.split() == ["1", "2"]
