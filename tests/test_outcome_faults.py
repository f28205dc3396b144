"""The end of an embedded study (``ash tune``, ``ash.tune``): writing its results.

An ``--out`` that cannot be written when the study ends (a file put in place of its folder, a
full disk, a permission) is one line naming the folder and the OS's reason, the callbacks are
ended all the same, and the journal writes the results on the next run. Real processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import run_ash

SPEC = """
[study]
name = "end"
metric = "loss"
seed = 1
algorithm = "asha"
[asha]
min_resource = 1
max_resource = 3
reduction_factor = 3
max_trials = 6
[trainer]
type = "python"
entrypoint = "{module}:fit"
[space]
x = {{ uniform = [0.0, 1.0] }}
"""

# the trainer spoils --out (CLOBBER=file: a file in place of the folder; CLOBBER=blocked: a
# folder where results.json's temporary file goes) while the study runs
CLOBBER = """
import os, pathlib, shutil

def fit(config, start, stop, state):
    out = pathlib.Path(os.environ["OUT"])
    how = os.environ.get("CLOBBER")
    try:
        if how == "file" and out.is_dir():
            shutil.rmtree(out)
            out.write_text("a file in place of the folder")
        elif how == "blocked":
            (out / "results.json.tmp").mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # the other slot did it
    return {"loss": (config["x"] - 0.3) ** 2 + 1 / stop}, None
"""


@pytest.mark.parametrize("how", ["file", "blocked"])
def test_an_out_that_cannot_be_written_is_one_line_and_the_journal_writes_it_later(
    tmp_path: Path, how: str
) -> None:
    (tmp_path / "clobber.py").write_text(CLOBBER)
    (tmp_path / "study.toml").write_text(SPEC.format(module="clobber"))
    out = tmp_path / "out"
    args = ["tune", "study.toml", "--workers", "2", "--threads", "1", "--quiet"]
    args += ["--out", "out", "--journal", "j.jsonl"]
    got = run_ash(*args, cwd=tmp_path, env={"OUT": str(out), "CLOBBER": how})
    assert got.returncode == 2, got.stderr
    assert "Traceback" not in got.stderr
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1, got.stderr
    why = "it exists and is not a directory" if how == "file" else "Is a directory"
    assert lines[0].startswith("ash: error: --out out: the results could not be written ("), lines
    assert why in lines[0] and "the journal j.jsonl keeps the study" in lines[0], lines
    if how == "file":
        out.unlink()
    else:
        (out / "results.json.tmp").rmdir()
    again = run_ash(*args, cwd=tmp_path, env={"OUT": str(out)})
    assert again.returncode == 0, again.stderr
    doc = json.loads((out / "results.json").read_text())
    assert len(doc["trials"]) == 6 and doc["interrupted"] is False
    assert {t["status"] for t in doc["trials"]} <= {"completed", "stopped"}, doc["trials"]


def test_an_out_that_cannot_be_written_still_ends_the_callbacks(tmp_path: Path) -> None:
    """``ash.tune``: ResultsNotWritten (a UserError), with the document it could not write;
    every callback hears the study end (an MLflow run is not left open)."""
    script = tmp_path / "api.py"
    script.write_text(
        CLOBBER + "import ash\n"
        "from ash.integrations import Callback\n"
        "from ash.errors import UserError\n"
        "class Log(Callback):\n"
        "    def on_study_end(self, doc):\n"
        "        print('study_end', doc, flush=True)\n"
        "if __name__ == '__main__':\n"
        "    try:\n"
        "        ash.tune(fit, space={'x': {'uniform': [0, 1]}}, max_resource=1, max_trials=4,\n"
        "                 workers=2, threads=1, quiet=True, out='out', callbacks=[Log()])\n"
        "    except UserError as exc:\n"
        "        print('error', exc, flush=True)\n"
        "        print('trials', len(exc.doc['trials']), flush=True)\n"
    )
    got = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "OUT": str(tmp_path / "out"), "CLOBBER": "file"},
        check=False,
    )
    assert got.returncode == 0, got.stderr
    assert "Traceback" not in got.stderr
    lines = got.stdout.splitlines()
    assert lines[0] == "study_end None", got.stdout
    assert lines[1] == (
        "error --out out: the results could not be written (it exists and is not a directory);"
        " there is no --journal to write them from later"
    )
    assert lines[2] == "trials 4"
