"""What a worker agrees to run for a scheduler: the operator's limits on a study spec.

A scheduler chooses the code its workers run (a Python trainer is any importable ``pkg.mod:fn``)
and the files they read (the mlp trainer's dataset). ``TrustPolicy`` is the worker's side of
that: the trainer types it allows (``--allow-trainer``), the entrypoints a Python trainer may
name (``--allow-entrypoint``, fnmatch patterns on ``pkg.mod:fn``) and the directory a dataset
must be in (``--data-root``; bundled datasets are always allowed). ``refusal`` says why a spec
is refused, before anything of it is imported or read.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from ash.errors import UserError
from ash.spec import StudySpec

TRAINER_TYPES = ("mlp", "python")


def trainer_types(text: str) -> list[str]:
    """An argparse type: a comma list of trainer types."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in names if t not in TRAINER_TYPES]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"expected {' or '.join(TRAINER_TYPES)} (a comma list), got {text!r}"
        )
    return names


@dataclass(frozen=True)
class TrustPolicy:
    """What a worker runs; the defaults allow everything a spec can ask for."""

    trainers: frozenset[str] = frozenset(TRAINER_TYPES)
    entrypoints: tuple[str, ...] = ()  # fnmatch patterns; none: any entrypoint
    data_root: Path | None = None  # resolved; None: any dataset path

    def refusal(self, spec: StudySpec) -> str | None:
        """Why this worker will not run ``spec``, or None if it will."""
        t = spec.trainer
        if t is None:
            return None  # nothing to run; the trainer's own check says so
        if t.type not in self.trainers:
            allowed = ", ".join(sorted(self.trainers))
            return f"trainer.type {t.type!r} is not allowed here (--allow-trainer {allowed})"
        if t.type == "python":
            entry = t.entrypoint or ""
            if self.entrypoints and not any(fnmatchcase(entry, p) for p in self.entrypoints):
                patterns = " ".join(self.entrypoints)
                return f"trainer.entrypoint {entry!r} matches no --allow-entrypoint ({patterns})"
            return None
        return self._dataset_refusal(t.dataset, spec.base_dir)

    def _dataset_refusal(self, dataset: str, base_dir: Path) -> str | None:
        if self.data_root is None:
            return None
        from ash.worker.datasets import BUNDLED  # numpy: only when a root is to be checked

        if dataset in BUNDLED:
            return None
        path = (base_dir / dataset).resolve()  # an absolute dataset replaces base_dir
        if path.is_relative_to(self.data_root):
            return None
        return f"trainer.dataset {dataset!r} is {path}, outside --data-root {self.data_root}"


def policy_from_args(args: argparse.Namespace) -> TrustPolicy:
    """The policy ``--allow-trainer``, ``--allow-entrypoint`` and ``--data-root`` give."""
    trainers = TRAINER_TYPES
    if args.allow_trainer:
        trainers = tuple(t for group in args.allow_trainer for t in group)
    root = None
    if args.data_root is not None:
        root = Path(args.data_root).resolve()
        if not root.is_dir():
            raise UserError(f"--data-root {args.data_root}: not a directory")
    return TrustPolicy(frozenset(trainers), tuple(args.allow_entrypoint or ()), root)
