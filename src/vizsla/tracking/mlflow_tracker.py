"""MLflow mirror of a job: params at fit start, metrics each epoch, final metrics and artifacts at fit end.

The only module of vizsla that imports mlflow, and only inside methods, so importing it stays cheap when
tracking is off. It talks to the store through an `MlflowClient` and an explicit run id, never mlflow's
global active run, so several jobs (tuning trials) can be tracked in one process.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from vizsla.callbacks import Callback, TrainState
from vizsla.jobdir import JobDir, atomic_write_json

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

PARAM_VALUE_LIMIT = 500  # chars: the limit of MLflow servers before 2.x; newer ones accept more
TAG_VALUE_LIMIT = 5000  # chars
PARAMS_PER_BATCH = 100  # MLflow's limit of params (and tags) in one log_batch call
METRICS_PER_BATCH = 1000
RUN_STATUS = {"Completed": "FINISHED", "Stopped": "KILLED", "Failed": "FAILED"}
SKIPPED_EPOCH_KEYS = ("kind", "epoch", "time")


def resolve_tracking_uri(job_dir: Path, uri: str | None) -> str:
    """The tracking URI to use: `uri` as given, else a SQLite store in the runs folder (job dir's parent)."""
    if uri:
        return uri
    return f"sqlite:///{Path(job_dir).resolve().parent / 'mlflow.db'}"


def default_artifact_location(tracking_uri: str) -> str | None:
    """Artifact root of a new experiment: `mlartifacts/` beside a SQLite file, else the server decides."""
    prefix = "sqlite:///"  # sqlite:///relative.db or sqlite:////absolute.db
    db_path = unquote(tracking_uri[len(prefix):].split("?")[0]) if tracking_uri.startswith(prefix) else ""
    if not db_path or db_path == ":memory:":
        return None
    return (Path(db_path).resolve().parent / "mlartifacts").as_uri()


def flatten_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten a nested spec into dotted keys with string values within MLflow's value limit."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, f"{name}."))
            continue
        flat[name] = _param_text(value)
    return flat


def _param_text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return text if len(text) <= PARAM_VALUE_LIMIT else text[: PARAM_VALUE_LIMIT - 3] + "..."


def quiet_mlflow_logging() -> None:
    """Keep MLflow's and alembic's INFO chatter (table migrations, artifact uploads) out of the job's log."""
    for name in ("mlflow", "alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _as_job_dir(job_dir: Any) -> JobDir:
    return job_dir if isinstance(job_dir, JobDir) else JobDir(job_dir)


def _numeric_items(record: Mapping[str, Any], skip: tuple[str, ...] = ()) -> Iterator[tuple[str, float]]:
    for key, value in record.items():
        if key in skip or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            yield key, float(value)


class MlflowTracker(Callback):
    """Record a job as one MLflow run (nested under `parent_run_id` when given); resumed jobs reuse it."""

    def __init__(
        self,
        tracking_uri: str | None,
        experiment: str,
        parent_run_id: str | None = None,
        *,
        reuse_run: bool = True,
    ) -> None:
        """REUSE_RUN: a resumed job continues its run (False: every start is a run of its own)."""
        self.configured_uri = tracking_uri  # None: resolved per job, beside its job directory
        self.tracking_uri: str | None = tracking_uri
        self.experiment = experiment
        self.parent_run_id = parent_run_id
        self.reuse_run = reuse_run
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self._client: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            raise RuntimeError("MlflowTracker.fit_start has not run yet")
        return self._client

    def fit_start(self, state: TrainState) -> None:
        job_dir = _as_job_dir(state.job_dir)
        self.tracking_uri = resolve_tracking_uri(job_dir.root, self.configured_uri)
        self._client = _create_client(self.tracking_uri)
        self.experiment_id = self._get_or_create_experiment()
        resumed = self._resumable_run(job_dir) if self.reuse_run else None
        self.run_id = resumed or self._create_run(state.spec.job_name, job_dir)
        atomic_write_json(job_dir.tracking, self.info())
        self._log_params(_spec_dict(state.spec))

    def epoch_end(self, state: TrainState) -> None:
        if not state.history:
            return
        record = state.history[-1]
        step = int(record.get("epoch", state.epoch))
        self._log_metrics(dict(_numeric_items(record, SKIPPED_EPOCH_KEYS)), step, record.get("time"))

    def fit_end(self, state: TrainState) -> None:
        job_dir = _as_job_dir(state.job_dir)
        try:
            if state.result is not None:
                state.result["mlflow"] = self.info()
                step = int(state.history[-1].get("epoch", state.epoch)) if state.history else state.epoch
                self._log_metrics(dict(_numeric_items(state.result.get("metrics") or {})), step)
            self._log_end_tags(state)
            self._log_artifacts(job_dir, state.result)
        finally:
            self.client.set_terminated(self.run_id, status=RUN_STATUS.get(state.status, "FAILED"))

    def info(self) -> dict[str, str | None]:
        """What result.json's "mlflow" entry and tracking.json hold."""
        return {"tracking_uri": self.tracking_uri, "experiment": self.experiment, "run_id": self.run_id}

    def _get_or_create_experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(self.experiment)
        if experiment is None:
            location = default_artifact_location(self.tracking_uri or "")
            try:
                return self.client.create_experiment(self.experiment, artifact_location=location)
            except MlflowException:  # another process created it between our get and create
                experiment = self.client.get_experiment_by_name(self.experiment)
                if experiment is None:
                    raise
        if experiment.lifecycle_stage == "deleted":
            self.client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id

    def _resumable_run(self, job_dir: JobDir) -> str | None:
        """The run id of tracking.json when it names a live run in this store (a resumed job)."""
        from mlflow.exceptions import MlflowException

        path = job_dir.tracking
        if not path.is_file():
            return None
        try:
            saved = json.loads(path.read_text())
            if saved.get("tracking_uri") != self.tracking_uri:
                return None
            run = self.client.get_run(saved["run_id"])
        except (OSError, ValueError, KeyError, MlflowException) as exc:
            log.warning("cannot resume the MLflow run of %s (%s); starting a new run", path, exc)
            return None
        if run.info.lifecycle_stage == "deleted" or run.info.experiment_id != self.experiment_id:
            return None
        self.client.update_run(run.info.run_id, status="RUNNING")
        self.client.set_tag(run.info.run_id, "vizsla.status", "InProgress")
        return run.info.run_id

    def _create_run(self, name: str, job_dir: JobDir) -> str:
        tags = {"vizsla.job_dir": str(job_dir.root.resolve()), "vizsla.status": "InProgress"}
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
        return run.info.run_id

    def _log_params(self, spec: Mapping[str, Any]) -> None:
        """Log the flattened spec; on a resumed run, only new keys (MLflow refuses to change a param)."""
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params
        params = flatten_params(spec)
        changed = sorted(k for k, v in params.items() if k in logged and logged[k] != v)
        if changed:
            log.warning("resumed MLflow run %s keeps earlier values of %s", self.run_id, ", ".join(changed))
        new = [Param(k, v) for k, v in params.items() if k not in logged]
        for batch in _chunks(new, PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=batch)

    def _log_metrics(self, values: Mapping[str, float], step: int, when: float | None = None) -> None:
        from mlflow.entities import Metric

        timestamp = int((when if isinstance(when, int | float) else time.time()) * 1000)
        metrics = [Metric(key, value, timestamp, step) for key, value in values.items()]
        for batch in _chunks(metrics, METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=batch)

    def _log_end_tags(self, state: TrainState) -> None:
        tags = {"vizsla.status": state.status}
        result = state.result or {}
        for key in ("failure_reason", "stop_reason"):
            reason = result.get(key) or (state.stop_reason if key == "stop_reason" else None)
            if reason:
                tags[f"vizsla.{key}"] = str(reason)[:TAG_VALUE_LIMIT]
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

    def _log_artifacts(self, job_dir: JobDir, result: Mapping[str, Any] | None) -> None:
        """Upload the job's outputs that exist; one failed upload is logged and does not stop the rest."""
        for local, artifact_path in _artifact_plan(job_dir, skip_result=result is not None):
            try:
                if local.is_dir():
                    self.client.log_artifacts(self.run_id, str(local), artifact_path)
                else:
                    self.client.log_artifact(self.run_id, str(local), artifact_path)
            except Exception as exc:  # noqa: BLE001 - tracking must never fail the job
                log.warning("could not log %s to MLflow: %r", local, exc)
        if result is not None:
            # The trainer writes result.json after fit_end; upload the final in-memory version instead.
            self.client.log_text(self.run_id, json.dumps(result, indent=2, default=str) + "\n", "result.json")


def _artifact_plan(job_dir: JobDir, *, skip_result: bool) -> list[tuple[Path, str | None]]:
    candidates: list[tuple[Path, str | None]] = [
        (job_dir.spec, None),
        (job_dir.metrics, None),
        (job_dir.loss_plot, None),
        (job_dir.confusion_matrix_plot, None),
        (job_dir.reports, "reports"),
        (job_dir.data_report, "data"),
        (job_dir.bad_files, "data"),
        (job_dir.model_dir, "model"),
    ]
    if not skip_result:
        candidates.insert(1, (job_dir.result, None))
    return [(path, dest) for path, dest in candidates if path.exists()]


def _spec_dict(spec: Any) -> Mapping[str, Any]:
    return spec.model_dump(mode="json") if hasattr(spec, "model_dump") else dict(spec)


def _create_client(tracking_uri: str) -> MlflowClient:
    """An MlflowClient for this URI, with MLflow quiet and its usage telemetry off unless the user set it."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # local-first: no calls home from training
    quiet_mlflow_logging()
    from mlflow import MlflowClient

    quiet_mlflow_logging()  # mlflow's import installs its own handler and level; set ours again after it
    return MlflowClient(tracking_uri=tracking_uri)
