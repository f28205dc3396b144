"""Packaging promises: one ``ash`` namespace, console scripts, the native extension."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import BIN


def test_no_generic_top_level_imports(tmp_path: Path) -> None:
    code = (
        "import importlib.util as u, sys\n"
        "bad = [m for m in ('scheduler', 'worker', 'native', 'proto') if u.find_spec(m)]\n"
        "import ash.scheduler.core, ash.worker, ash.native\n"
        "sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=False)
    assert proc.returncode == 0


def test_console_scripts() -> None:
    out = subprocess.run(
        [str(BIN / "ash"), "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("ash ")
    for script in ("ash-scheduler", "ash-worker"):
        assert (BIN / script).exists()


def test_native_extension_honours_threadpoolctl() -> None:
    from threadpoolctl import threadpool_info, threadpool_limits

    from ash.native import omp_max_threads

    with threadpool_limits(limits=1, user_api="openmp"):
        assert omp_max_threads() == 1
    with threadpool_limits(limits=2, user_api="openmp"):
        assert omp_max_threads() == 2
    assert any(i["user_api"] == "openmp" for i in threadpool_info())


def test_every_package_folder_is_packaged() -> None:
    """A package folder missing from pyproject.toml works in an editable install and breaks a
    real one: every folder with an __init__.py must be listed."""
    import tomllib

    from helpers import ROOT

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = {v: k for k, v in cfg["package-dir"].items()}
    assert set(cfg["packages"]) == set(dirs.values())
    for init in ROOT.glob("**/__init__.py"):
        folder = init.parent.relative_to(ROOT).as_posix()
        if folder.startswith(("tests", "bench", ".venv", "build")) or "/." in folder:
            continue
        assert folder in dirs, f"{folder} is not in pyproject.toml's packages"
