"""MlflowRun, the plain API (no trainer events) against a real SQLite MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow import MlflowClient

from vizsla.jobdir import JobDir
from vizsla.tracking import MlflowRun
from vizsla.tracking.mlflow_run import end_tags


def test_a_run_records_params_metrics_at_steps_artifacts_and_its_status(tmp_path: Path) -> None:
    job = JobDir(tmp_path / "runs" / "script-job")
    job.root.mkdir(parents=True)
    job.spec.write_text("name: script-job\n")
    run = MlflowRun(None, "scripts", reuse_run=False)

    run_id = run.start(job, "script-job")
    run.log_params({"lr": 0.1, "model": {"depth": 18}})
    run.log_metrics({"loss": 2.0}, step=0, when=1_700_000_000.0)
    run.log_metrics({"loss": 1.0}, step=1)
    run.set_tags(end_tags("Failed", {"failure_reason": "exit code 3"}))
    run.log_artifacts(job, {"status": "Failed"})
    run.end("Failed")

    assert json.loads(job.tracking.read_text()) == run.info() and run.info()["run_id"] == run_id
    client = MlflowClient(run.tracking_uri)
    record = client.get_run(run_id)
    assert record.info.status == "FAILED" and record.info.run_name == "script-job"
    assert record.data.params == {"lr": "0.1", "model.depth": "18"}
    assert record.data.tags["vizsla.failure_reason"] == "exit code 3"
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 2.0), (1, 1.0)]
    assert history[0].timestamp == 1_700_000_000_000
    assert {a.path for a in client.list_artifacts(run_id)} == {"spec.yaml", "result.json"}


def test_a_second_start_with_reuse_continues_the_run(tmp_path: Path) -> None:
    job = JobDir(tmp_path / "runs" / "job")
    job.root.mkdir(parents=True)
    first = MlflowRun(None, "jobs")
    run_id = first.start(job, "job")
    assert not first.resumed
    second = MlflowRun(None, "jobs")
    assert second.start(job, "job") == run_id and second.resumed
    second.end("Completed")
    assert MlflowClient(second.tracking_uri).get_run(run_id).info.status == "FINISHED"
