"""An MLflow run that groups other runs (a tuning job's run, with one nested run per trial)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vizsla.tracking.mlflow_run import (
    _create_client,
    _numeric_items,
    default_artifact_location,
    flatten_params,
    resolve_tracking_uri,
)

log = logging.getLogger(__name__)


class ParentRun:
    """Create (or reopen by id) a run that trial runs nest under via their `mlflow.parentRunId` tag."""

    def __init__(self, tracking_uri: str | None, experiment: str, job_dir: Path) -> None:
        self.tracking_uri = resolve_tracking_uri(job_dir, tracking_uri)
        self.experiment = experiment
        self.job_dir = Path(job_dir)
        self.client = _create_client(self.tracking_uri)
        self.run_id: str | None = None

    def start(self, name: str, params: Mapping[str, Any], run_id: str | None = None) -> str:
        """Reopen `run_id` when it still exists (a resumed tuning job), else create a new run."""
        from mlflow.exceptions import MlflowException

        if run_id:
            try:
                run = self.client.get_run(run_id)
                if run.info.lifecycle_stage != "deleted":
                    self.client.update_run(run_id, status="RUNNING")
                    self.run_id = run_id
                    return run_id
            except MlflowException as exc:
                log.warning("cannot reopen MLflow run %s (%s); starting a new one", run_id, exc)
        experiment_id = self._experiment_id()
        tags = {"vizsla.job_dir": str(self.job_dir.resolve()), "vizsla.kind": "tuning"}
        run = self.client.create_run(experiment_id, tags=tags, run_name=name)
        self.run_id = run.info.run_id
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in flatten_params(params).items()][:100]
        if items:
            self.client.log_batch(self.run_id, params=items)
        return self.run_id

    def finish(self, status: str, metrics: Mapping[str, Any], artifacts: list[Path]) -> None:
        """Log final metrics and files, and close the run with MLflow's status for ours."""
        if self.run_id is None:
            return
        for key, value in _numeric_items(metrics):
            self.client.log_metric(self.run_id, key, value)
        for path in artifacts:
            if path.exists():
                try:
                    self.client.log_artifact(self.run_id, str(path))
                except Exception as exc:  # noqa: BLE001 - tracking never fails the tuning job
                    log.warning("could not log %s to MLflow: %r", path, exc)
        self.client.set_tag(self.run_id, "vizsla.status", status)
        mlflow_status = {"Completed": "FINISHED", "Stopped": "KILLED"}.get(status, "FAILED")
        self.client.set_terminated(self.run_id, status=mlflow_status)

    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(self.experiment)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self.client.create_experiment(
                self.experiment, artifact_location=default_artifact_location(self.tracking_uri)
            )
        except MlflowException:  # created meanwhile by another process
            found = self.client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return found.experiment_id
