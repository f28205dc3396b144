"""The layout keeps its promises (issue #14): the core imports no I/O, the scheduler and the
workers meet only on neutral ground (``ash.spec``, ``ash.link``), and no import cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from helpers import ROOT

PACKAGES = {
    "ash": ROOT / "src" / "ash",
    "ash.scheduler": ROOT / "scheduler",
    "ash.worker": ROOT / "worker",
    "ash.native": ROOT / "native",
}
# what the sans-I/O core may not import, at any level (DESIGN section 2)
NOT_IN_CORE = (
    "grpc",
    "google",
    "mpi4py",
    "threading",
    "os",
    "time",
    "random",
    "socket",
    "subprocess",
    "asyncio",
    "pathlib",
    "io",
    "ash.proto",
    "ash.link",
    "ash.worker",
    "ash.native",
)


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for pkg, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            rel = path.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if pkg == "ash" and parts[:1] in (["scheduler"], ["worker"], ["native"]):
                continue
            found[".".join([pkg, *parts])] = path
    return found


def imports(path: Path, *, top_level_only: bool) -> Iterator[str]:
    """The absolute modules ``path`` imports (not those under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text())

    def walk(nodes: list[ast.stmt]) -> Iterator[str]:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                yield from walk(node.orelse)
                continue
            if isinstance(node, ast.Import):
                yield from (a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                yield node.module
                yield from (f"{node.module}.{a.name}" for a in node.names)
            if top_level_only and isinstance(
                node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
            ):
                continue
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    yield from walk(
                        [n for n in inner if isinstance(n, ast.stmt)]
                        + [s for h in inner if isinstance(h, ast.ExceptHandler) for s in h.body]
                    )

    yield from walk(tree.body)


def graph(*, top_level_only: bool) -> dict[str, set[str]]:
    mods = modules()
    out: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for target in imports(path, top_level_only=top_level_only):
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                deps.add(target)  # (a submodule importing its own package is no cycle)
        out[name] = deps
    return out


def test_the_core_imports_no_io() -> None:
    bad = [
        f"{name} imports {dep}"
        for name, path in modules().items()
        if name.startswith("ash.scheduler.core")
        for dep in imports(path, top_level_only=False)
        if any(dep == m or dep.startswith(m + ".") for m in NOT_IN_CORE)
        or (dep.startswith("ash.") and not dep.startswith("ash.scheduler.core"))
    ]
    assert bad == []
    code = (
        "import sys, ash.scheduler.core\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('grpc', 'google', 'mpi4py', "
        "'numpy', 'threading') or m.startswith(('ash.worker', 'ash.link', 'ash.proto'))]\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_scheduler_and_worker_meet_only_on_neutral_ground() -> None:
    g = graph(top_level_only=False)
    bad = [
        f"{name} imports {dep}"
        for name, deps in g.items()
        for dep in deps
        if (
            name.startswith("ash.scheduler")
            and dep.startswith(("ash.worker", "ash.progress", "ash.report"))
        )
        or (
            name.startswith("ash.worker")
            and dep.startswith("ash.scheduler")
            and not dep.startswith("ash.scheduler.core")
        )
    ]
    assert bad == []


def test_no_import_cycles() -> None:
    g = graph(top_level_only=True)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(g.get(n, ())):
            if state.get(d) == 1:
                cycles.append([*stack[stack.index(d) :], d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(g):
        if n not in state:
            visit(n)
    assert cycles == []
