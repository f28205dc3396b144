"""TensorBoard: one run folder per trial (``LOGDIR/trial-0007``) with its metrics as scalars per
report and per rung result and its config in the HParams dashboard (install the ``tensorboard``
extra, which writes event files with tensorboardX, no TensorFlow needed).

A trial's writer is open only while it has a job in flight: it is closed (flushed) when its rung
result is recorded and opened again, as a new event file in the same folder (numbered, so that
it sorts after the last), if the trial is promoted; so a study of thousands of trials holds at
most one writer (and its thread) per running job. Scalars are logged at ``step`` = the report's
step or the rung's resource; a rung result whose step a report already logged adds only
``ash/rung``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ash.integrations.base import Callback, CallbackError, Result, Study, missing, numeric


class TensorBoardCallback(Callback):
    """``TensorBoardCallback("tb")``, then ``tensorboard --logdir tb``."""

    def __init__(self, logdir: str | Path) -> None:
        self.logdir = Path(logdir)
        self._writers: dict[int, Any] = {}
        self._reported: dict[int, float] = {}
        self._opened: dict[int, int] = {}  # trial -> writers opened so far
        self._study: Study | None = None

    def setup(self, study: Study) -> None:
        try:
            import tensorboardX  # noqa: F401
        except ImportError:
            raise missing("TensorBoardCallback", "tensorboardX", "tensorboard") from None
        try:
            self.logdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CallbackError(
                f"callbacks: TensorBoardCallback: logdir {str(self.logdir)!r}: "
                f"{exc.strerror or exc}"
            ) from None
        self._study = study

    def folder(self, trial: int) -> Path:
        return self.logdir / f"trial-{trial:04d}"

    def _writer(self, trial: int) -> Any:
        w = self._writers.get(trial)
        if w is None:
            from tensorboardX import SummaryWriter

            # event files are named by the second they are opened: a suffix keeps a promoted
            # trial's next file from overwriting the last one, and in order
            n = self._opened[trial] = self._opened.get(trial, 0) + 1
            w = self._writers[trial] = SummaryWriter(
                str(self.folder(trial)), flush_secs=30, filename_suffix=f".{n:04d}"
            )
        return w

    def on_trial_start(self, trial: int, config: Mapping[str, Any]) -> None:
        from tensorboardX.summary import hparams

        assert self._study is not None
        w = self._writer(trial)
        shown = {
            k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in config.items()
        }
        exp, ssi, _ = hparams(shown, {self._study.metric: 0.0})
        fw = w._get_file_writer()
        fw.add_summary(exp)
        fw.add_summary(ssi)

    def _scalars(self, trial: int, step: float, values: Mapping[str, float]) -> None:
        w = self._writer(trial)
        for k, v in values.items():
            w.add_scalar(k, v, global_step=round(step))

    def on_report(self, trial: int, step: float, metrics: Mapping[str, Any]) -> None:
        self._reported[trial] = max(step, self._reported.get(trial, step))
        self._scalars(trial, step, numeric(metrics))

    def on_result(self, result: Result) -> None:
        values = {"ash/rung": float(result.rung)}
        if self._reported.get(result.trial, -1.0) < result.resource:
            values = {**numeric(result.metrics), **values}
        self._scalars(result.trial, result.resource, values)
        w = self._writers.pop(result.trial, None)
        if w is not None:
            w.close()

    def on_study_end(self, doc: Mapping[str, Any] | None) -> None:
        for w in self._writers.values():
            w.close()
        self._writers.clear()
