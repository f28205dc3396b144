"""MLflow tracking: one MLflow run per trial, its config as params, its metrics per report and
per rung result (install the ``mlflow`` extra).

Runs are created with ``MlflowClient`` (not the fluent ``mlflow.start_run``), because ASHA keeps
many trials open at once and a promoted trial's run goes on where it stopped. A run is named
``STUDY-trial-N`` and tagged ``ash.study``, ``ash.trial`` and, when it ends, ``ash.status``
(completed, stopped, failed) and ``ash.rung``; the best trial is tagged ``ash.best = true``.
Metrics are logged at ``step`` = the report's step or the rung's resource (rounded: MLflow's
steps are integers); a rung result whose step a report already logged adds only ``ash.rung``.
At the end of the study every run is terminated: FINISHED, FAILED for a failed trial, KILLED
if the study was interrupted. A study resumed from its journal into an existing experiment
finds each trial's run again by its tags and goes on in it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ash.integrations.base import Callback, CallbackError, Result, Study, missing, numeric


class MLflowCallback(Callback):
    """``MLflowCallback(tracking_uri="sqlite:///mlflow.db", experiment_name=None)``: the
    experiment defaults to the study's name and is created if it does not exist."""

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.tags = dict(tags or {})
        self.runs: dict[int, str] = {}  # trial -> run id
        self._reported: dict[int, float] = {}  # trial -> highest step reported
        self._client: Any = None
        self._existing = False
        self._study: Study | None = None

    def setup(self, study: Study) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise missing("MLflowCallback", "mlflow", "mlflow") from None
        self._study = study
        name = self.experiment_name or study.name
        try:
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
            found = self._client.get_experiment_by_name(name)
            self._existing = found is not None  # its runs may hold trials of a resumed study
            self.experiment_id = (
                found.experiment_id if found is not None else self._client.create_experiment(name)
            )
        except Exception as exc:
            raise CallbackError(
                f"callbacks: MLflowCallback: tracking_uri {self.tracking_uri!r}: cannot open "
                f"experiment {name!r}: {type(exc).__name__}: {(str(exc) or '?').splitlines()[0]}"
            ) from None

    def on_trial_start(self, trial: int, config: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        assert self._study is not None
        if self._existing:  # a study resumed from its journal goes on in the trial's run
            found = self._client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`ash.study` = '{_quoted(self._study.name)}' "
                f"and tags.`ash.trial` = '{trial}'",
                max_results=1,
            )
            if found:
                self.runs[trial] = found[0].info.run_id
                self._client.update_run(found[0].info.run_id, status="RUNNING")
                return
        run = self._client.create_run(
            self.experiment_id,
            run_name=f"{self._study.name}-trial-{trial}",
            tags={"ash.study": self._study.name, "ash.trial": str(trial), **self.tags},
        )
        self.runs[trial] = run.info.run_id
        params = [Param(k, str(v)) for k, v in config.items()]
        if params:
            self._client.log_batch(run.info.run_id, params=params)

    def _log(self, trial: int, step: float, values: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        run_id = self.runs.get(trial)
        if run_id is None or not values:
            return
        ms = int(time.time() * 1000)
        batch = [Metric(k, v, ms, round(step)) for k, v in values.items()]
        self._client.log_batch(run_id, metrics=batch)

    def on_report(self, trial: int, step: float, metrics: Mapping[str, Any]) -> None:
        self._reported[trial] = max(step, self._reported.get(trial, step))
        self._log(trial, step, numeric(metrics))

    def on_result(self, result: Result) -> None:
        values = {"ash.rung": float(result.rung)}
        if self._reported.get(result.trial, -1.0) < result.resource:
            values = {**numeric(result.metrics), **values}
        self._log(result.trial, result.resource, values)
        run_id = self.runs.get(result.trial)
        if run_id is not None and result.error is not None:
            self._client.set_tag(run_id, "ash.error", result.error[:5000])

    def on_study_end(self, doc: Mapping[str, Any] | None) -> None:
        trials = {t["trial"]: t for t in (doc or {}).get("trials", [])}
        if self._existing:  # runs of trials that ended before a resume: end them too
            self._adopt_running()
        best = ((doc or {}).get("best") or {}).get("trial")
        interrupted = doc is None or bool(doc.get("interrupted")) or bool(doc.get("error"))
        for trial, run_id in self.runs.items():
            t = trials.get(trial, {})
            status = t.get("status", "lost")
            self._client.set_tag(run_id, "ash.status", status)
            if t.get("results"):
                self._client.set_tag(run_id, "ash.rung", str(t["results"][-1]["rung"]))
            if trial == best:
                self._client.set_tag(run_id, "ash.best", "true")
            if status == "failed":
                end = "FAILED"
            elif interrupted and status in ("running", "lost"):
                end = "KILLED"
            else:
                end = "FINISHED"
            self._client.set_terminated(run_id, end)

    def _adopt_running(self) -> None:
        assert self._study is not None
        where = (
            f"tags.`ash.study` = '{_quoted(self._study.name)}' and attributes.status = 'RUNNING'"
        )
        token = None
        while True:
            page = self._client.search_runs(
                [self.experiment_id], filter_string=where, max_results=1000, page_token=token
            )
            for run in page:
                trial = run.data.tags.get("ash.trial", "")
                if trial.isdigit():
                    self.runs.setdefault(int(trial), run.info.run_id)
            token = page.token
            if not token:
                return


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")
