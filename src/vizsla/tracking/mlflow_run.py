"""A job's MLflow run through a plain API (start, params, metrics at a step, tags, artifacts, end).

The only module of vizsla that imports mlflow (with `parent_run.py` and the tracker callback over this
run), and only inside functions, so importing it stays cheap when tracking is off. It talks to the store
through an `MlflowClient` and an explicit run id, never mlflow's global active run, so several jobs
(tuning trials) can be tracked in one process. `MlflowTracker` drives it from trainer events; script mode
drives it from a script process's outputs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from vizsla.infra.io import atomic_write_json
from vizsla.jobdir import JobDir
from vizsla.names import printable

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

PARAM_VALUE_LIMIT = 500  # chars: the limit of MLflow servers before 2.x; newer ones accept more
TAG_VALUE_LIMIT = 5000  # chars
PARAMS_PER_BATCH = 100  # MLflow's limit of params (and tags) in one log_batch call
METRICS_PER_BATCH = 1000
DATASET_DIGEST_CHARS = 32  # MLflow stores a dataset digest of at most 36 characters
RUN_STATUS = {"Completed": "FINISHED", "Stopped": "KILLED", "Failed": "FAILED"}


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
        text = printable(value)  # MLflow stores UTF-8: undecodable file-name bytes as \xNN
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


def _numeric_items(record: Mapping[str, Any], skip: tuple[str, ...] = ()) -> Iterator[tuple[str, float]]:
    for key, value in record.items():
        if key in skip or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            yield key, float(value)


class MlflowRun:
    """One job's MLflow run through a plain API: start, log params, metrics at a step, tags and artifacts,
    end with the job's status. Resumed jobs (tracking.json names a live run) continue their run."""

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
        self.resumed = False  # whether `start` continued the run of an earlier attempt
        self._client: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            raise RuntimeError("MlflowRun.start has not run yet")
        return self._client

    def start(self, job_dir: JobDir | str | Path, name: str) -> str:
        """Open the run of the job in JOB_DIR (its earlier one when resumable, else a new run named NAME),
        record it in tracking.json and return its id."""
        job_dir = as_job_dir(job_dir)
        self.tracking_uri = resolve_tracking_uri(job_dir.root, self.configured_uri)
        self._client = _create_client(self.tracking_uri)
        self.experiment_id = self._get_or_create_experiment()
        resumed = self._resumable_run(job_dir) if self.reuse_run else None
        self.resumed = resumed is not None
        self.run_id = resumed or self._create_run(name, job_dir)
        atomic_write_json(job_dir.tracking, self.info())
        return self.run_id

    def info(self) -> dict[str, str | None]:
        """What result.json's "mlflow" entry and tracking.json hold."""
        return {"tracking_uri": self.tracking_uri, "experiment": self.experiment, "run_id": self.run_id}

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log a (nested) mapping as flattened params; a resumed run gets only new keys (MLflow refuses to
        change a param)."""
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params if self.resumed else {}
        flat = flatten_params(params)
        changed = sorted(k for k, v in flat.items() if k in logged and logged[k] != v)
        if changed:
            log.warning("resumed MLflow run %s keeps earlier values of %s", self.run_id, ", ".join(changed))
        new = [Param(k, v) for k, v in flat.items() if k not in logged]
        for batch in _chunks(new, PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=batch)

    def log_metrics(self, values: Mapping[str, float], step: int, when: float | None = None) -> None:
        """VALUES at STEP, stamped WHEN (epoch seconds; default now)."""
        from mlflow.entities import Metric

        timestamp = int((when if isinstance(when, int | float) else time.time()) * 1000)
        self.log_batch(metrics=[Metric(key, value, timestamp, step) for key, value in values.items()])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.log_batch(tags=tags)

    def log_batch(self, metrics: Sequence[Any] = (), tags: Mapping[str, str] | None = None) -> None:
        """Send mlflow Metric entities and tags in as few log_batch calls as MLflow's per-call limits allow
        (the tags, a few, ride with the first metrics)."""
        from mlflow.entities import RunTag

        tag_items = [RunTag(k, v) for k, v in (tags or {}).items()]
        for batch in _chunks(list(metrics), METRICS_PER_BATCH - len(tag_items)):
            self.client.log_batch(self.run_id, metrics=batch, tags=tag_items)
            tag_items = []
        if tag_items:
            self.client.log_batch(self.run_id, tags=tag_items)

    def metric_steps(self, key: str) -> set[int]:
        """The steps at which metric KEY was logged in this run."""
        return {m.step for m in self.client.get_metric_history(self.run_id, key)}

    def log_artifacts(
        self,
        job_dir: JobDir | str | Path,
        result: Mapping[str, Any] | None = None,
        *,
        with_model: bool = True,
    ) -> None:
        """Upload the job's outputs that exist; one failed upload is logged and does not stop the rest.
        RESULT, when given, is uploaded as result.json instead of the file (it may be newer); WITH_MODEL:
        the model folder too (not when the run's logged model holds it)."""
        job_dir = as_job_dir(job_dir)
        plan = _artifact_plan(job_dir, skip_result=result is not None)
        for local, artifact_path in plan if with_model else [p for p in plan if p[0] != job_dir.model_dir]:
            try:
                if local.is_dir():
                    self.client.log_artifacts(self.run_id, str(local), artifact_path)
                else:
                    self.client.log_artifact(self.run_id, str(local), artifact_path)
            except Exception as exc:  # noqa: BLE001 - tracking must never fail the job
                log.warning("could not log %s to MLflow: %r", local, exc)
        if result is not None:
            text = json.dumps(result, indent=2, default=str) + "\n"
            self.client.log_text(self.run_id, text, job_dir.result.name)

    def log_dataset(self, job_dir: JobDir | str | Path) -> bool:
        """Record the job's image folder as the run's training input (an `mlflow.data` dataset whose
        digest is the data report's content digest of every image used); whether one was logged."""
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        report = json.loads(as_job_dir(job_dir).data_report.read_text(encoding="utf-8"))
        digest, source = report.get("content_digest"), str(report.get("source") or report.get("root"))
        if not digest:
            return False
        uri = source if "://" in source else Path(source).expanduser().resolve().as_uri()
        with warnings.catch_warnings():  # a file:// URI "can be interpreted in multiple ways": all local
            warnings.simplefilter("ignore", UserWarning)
            found = resolve_dataset_source(uri)
        dataset = MetaDataset(found, name=printable(Path(source.rstrip("/")).name),
                              digest=digest[:DATASET_DIGEST_CHARS])
        entity = dataset._to_mlflow_entity()  # noqa: SLF001 - MLflow's own way from a Dataset to its entity
        tag = InputTag(key="mlflow.data.context", value="training")
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(entity, tags=[tag])])
        return True

    def log_file(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def end(self, status: str) -> None:
        """Close the run with the job's STATUS (Completed, Stopped; anything else is a failure)."""
        self.client.set_terminated(self.run_id, status=RUN_STATUS.get(status, "FAILED"))

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
        tags = {"vizsla.job_dir": printable(str(job_dir.root.resolve())), "vizsla.status": "InProgress"}
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=printable(name))
        return run.info.run_id


def end_tags(status: str, result: Mapping[str, Any] | None, stop_reason: str | None = None) -> dict[str, str]:
    """The tags a run ends with: the job's status and, when there is one, why it failed or stopped."""
    tags = {"vizsla.status": status}
    result = result or {}
    for key in ("failure_reason", "stop_reason"):
        reason = result.get(key) or (stop_reason if key == "stop_reason" else None)
        if reason:
            tags[f"vizsla.{key}"] = printable(str(reason))[:TAG_VALUE_LIMIT]
    return tags


def as_job_dir(job_dir: JobDir | str | Path) -> JobDir:
    return job_dir if isinstance(job_dir, JobDir) else JobDir(job_dir)


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


def _telemetry_off() -> bool:
    """Turn MLflow's usage telemetry off unless the user set it; whether it is off now."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # local-first: no calls home from training
    return os.environ["MLFLOW_DISABLE_TELEMETRY"].strip().lower() in ("true", "1")


def preload_mlflow() -> bool:
    """Import MLflow's client and SQL store ahead of a job (a tuning worker's fork server does, once).

    Skipped when the user turned telemetry on: its client may start threads at import, which a process
    that forks must not have. Returns whether MLflow is imported."""
    if not _telemetry_off():
        return False
    quiet_mlflow_logging()
    import mlflow  # noqa: F401 - the import is the point
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - the default store (sqlite), ~1/2 of it

    quiet_mlflow_logging()
    _remember_schema_head()
    return True


def _remember_schema_head() -> None:
    """Work out once the newest MLflow schema revision that every new SQL store is checked against.

    MLflow finds it by loading its ~70 migration scripts each time (~50 ms a job); it depends only on the
    installed mlflow, so a process that forks jobs (a tuning worker's fork server) answers it once."""
    try:
        from mlflow.store.db import utils

        head = utils._get_latest_schema_revision()
    except Exception:  # noqa: BLE001 - another mlflow version: it keeps finding the head itself
        return
    utils._get_latest_schema_revision = lambda: head


def _create_client(tracking_uri: str) -> MlflowClient:
    """An MlflowClient for this URI, with MLflow quiet and its usage telemetry off unless the user set it."""
    _telemetry_off()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in a job's output
    quiet_mlflow_logging()
    from mlflow import MlflowClient

    quiet_mlflow_logging()  # mlflow's import installs its own handler and level; set ours again after it
    # The registry is the tracking store (MLflow would take the process-wide default store instead).
    registry_uri = os.environ.get("MLFLOW_REGISTRY_URI") or tracking_uri
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
