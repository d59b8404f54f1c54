"""MLflow mirror of a job as a trainer callback: params and the dataset input at fit start, metrics each
epoch, final metrics, the MLflow model (a pyfunc LoggedModel, registered when asked) and artifacts at fit end,
over the plain `MlflowRun` API (mlflow_run.py) and tracking/registry.py.

A final metric that the epoch records carry too (train_loss, valid_accuracy, ...) is not logged again: the
history holds it at the best epoch's step (logged as `best_epoch`), and a second value at the last epoch's
step made it appear twice. Metrics only the result has (test_accuracy, ...) are logged once, at the last step.

Epoch metrics are sent in one write every METRICS_FLUSH_S at most (and at fit end), so a job of many short
epochs, such as a tuning trial on cached features, does not pay a store round trip per epoch; a resumed run
gets the epochs of its history that never reached the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vizsla.callbacks import Callback, TrainState
from vizsla.tracking.mlflow_run import (
    PARAM_VALUE_LIMIT,
    MlflowRun,
    _numeric_items,
    as_job_dir,
    default_artifact_location,
    end_tags,
    flatten_params,
    preload_mlflow,
    resolve_tracking_uri,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "PARAM_VALUE_LIMIT",
    "MlflowTracker",
    "default_artifact_location",
    "flatten_params",
    "preload_mlflow",
    "resolve_tracking_uri",
]

log = logging.getLogger("vizsla.tracking")

SKIPPED_EPOCH_KEYS = ("kind", "epoch", "time")
METRICS_FLUSH_S = 10.0  # seconds: epoch metrics wait at most this long for the next write to the store


class MlflowTracker(Callback):
    """Record a job as one MLflow run (nested under `parent_run_id` when given); resumed jobs reuse it."""

    def __init__(
        self,
        tracking_uri: str | None,
        experiment: str,
        parent_run_id: str | None = None,
        *,
        reuse_run: bool = True,
        log_model: bool = True,
        register: str | None = None,
    ) -> None:
        """REUSE_RUN: a resumed job continues its run (False: every start is a run of its own). LOG_MODEL:
        a completed job logs its model (tuning trials do not: the tuning job logs its best trial's);
        REGISTER: then a version of that registered model is created from it."""
        self.run = MlflowRun(tracking_uri, experiment, parent_run_id, reuse_run=reuse_run)
        self.log_model = log_model
        self.register = register
        self.model_id: str | None = None
        self.model_version: str | None = None
        self._pending: list[Any] = []  # mlflow Metric entities of epochs not sent yet
        self._flushed_at = 0.0  # time.monotonic() of the last write of epoch metrics

    @property
    def client(self) -> MlflowClient:
        return self.run.client

    @property
    def tracking_uri(self) -> str | None:
        return self.run.tracking_uri

    @property
    def run_id(self) -> str | None:
        return self.run.run_id

    @property
    def experiment(self) -> str:
        return self.run.experiment

    def info(self) -> dict[str, str | None]:
        """What result.json's "mlflow" entry and tracking.json hold."""
        return self.run.info()

    def fit_start(self, state: TrainState) -> None:
        if self._pending and self.run.run_id is not None:  # one tracker, a new job: the last one's epochs
            self._flush_epochs()
        self.run.start(state.job_dir, state.spec.job_name)
        self.run.log_params(_spec_dict(state.spec))
        self._pending, self._flushed_at = [], time.monotonic()
        try:
            self.run.log_dataset(state.job_dir)
        except Exception as exc:  # noqa: BLE001 - tracking never fails the job
            log.warning("could not record the dataset input in MLflow: %r", exc)
        if self.run.resumed:
            self._log_missing_epochs(state.history)

    def epoch_end(self, state: TrainState) -> None:
        if not state.history:
            return
        self._pending += _epoch_metrics(state.history[-1], state.epoch)
        if time.monotonic() - self._flushed_at >= METRICS_FLUSH_S:
            self._flush_epochs()

    def fit_end(self, state: TrainState) -> None:
        from mlflow.entities import Metric

        try:
            final: list[Any] = []
            step = int(state.history[-1].get("epoch", state.epoch)) if state.history else state.epoch
            if state.result is not None:
                state.result["mlflow"] = self.info()
                now = int(time.time() * 1000)  # later than the last epoch's: the final value is the latest
                in_history = {k for record in state.history for k in record}
                values = dict(_numeric_items(state.result.get("metrics") or {}, tuple(in_history)))
                if isinstance(state.result.get("best_epoch"), int):  # whose weights the final metrics are of
                    values["best_epoch"] = float(state.result["best_epoch"])
                final = [Metric(key, value, now, step) for key, value in values.items()]
            # One write for the epochs not sent yet, the final metrics and the end tags.
            tags = end_tags(state.status, state.result, state.stop_reason)
            self.run.log_batch(metrics=self._pending + final, tags=tags)
            self._pending = []
            logged = self._log_model(state, step)
            # The trainer writes result.json after fit_end; the final in-memory version is uploaded instead.
            # The model folder is inside the logged model (runs:/<id>/model) when there is one.
            self.run.log_artifacts(as_job_dir(state.job_dir), state.result, with_model=not logged)
        finally:
            self.run.end(state.status)

    def _log_model(self, state: TrainState, step: int) -> bool:
        """Log a completed job's model (and register it when asked); whether it was logged."""
        job_dir = as_job_dir(state.job_dir)
        if not self.log_model or state.status != "Completed" or not job_dir.model_dir.is_dir():
            return False
        from vizsla.tracking.registry import log_job_model, register_model

        started = time.perf_counter()
        try:
            self.model_id = log_job_model(self.client, self.run.run_id or "", job_dir, step=step)
            if self.register:
                self.model_version = register_model(self.client, self.register, self.model_id, self.run_id)
        except Exception as exc:  # noqa: BLE001 - tracking never fails the job
            log.warning("could not log the model to MLflow: %r", exc)
            return self.model_id is not None
        log.info("logged the MLflow model %s in %.1f s%s", self.model_id, time.perf_counter() - started,
                 f"; registered {self.register} version {self.model_version}" if self.model_version else "")
        if state.result is not None:
            record: dict[str, Any] = {**self.info(), "model_id": self.model_id}
            if self.model_version:
                record["registered"] = {"name": self.register, "version": self.model_version}
            state.result["mlflow"] = record
        return True

    def _flush_epochs(self) -> None:
        pending, self._pending = self._pending, []
        self._flushed_at = time.monotonic()
        if pending:
            self.run.log_batch(metrics=pending)

    def _log_missing_epochs(self, history: list[dict[str, Any]]) -> None:
        """A resumed run: send the epochs of the restored history that the run lacks (the process that ran
        them may have died before sending them)."""
        records = [r for r in history if r.get("kind", "epoch") == "epoch"]
        if not records:
            return
        probe = next((k for k, _ in _numeric_items(records[-1], SKIPPED_EPOCH_KEYS)), None)
        logged = self.run.metric_steps(probe) if probe else set()
        for record in records:
            if int(record.get("epoch", -1)) not in logged:
                self._pending += _epoch_metrics(record, int(record.get("epoch", 0)))
        self._flush_epochs()


def _epoch_metrics(record: Mapping[str, Any], epoch: int) -> list[Any]:
    """The mlflow Metric entities of one epoch record (step = its epoch, timestamp = its time)."""
    from mlflow.entities import Metric

    step = int(record.get("epoch", epoch))
    when = record.get("time")
    timestamp = int((when if isinstance(when, int | float) else time.time()) * 1000)
    return [Metric(key, value, timestamp, step) for key, value in _numeric_items(record, SKIPPED_EPOCH_KEYS)]


def _spec_dict(spec: Any) -> Mapping[str, Any]:
    return spec.model_dump(mode="json") if hasattr(spec, "model_dump") else dict(spec)

