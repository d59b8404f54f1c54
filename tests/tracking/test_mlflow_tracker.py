"""MlflowTracker against a real SQLite MLflow store: params, metric history, tags, artifacts, resume."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from mlflow import MlflowClient

from vizsla.callbacks import CallbackRunner, TrainState
from vizsla.infra.io import atomic_write_json
from vizsla.jobdir import JobDir
from vizsla.spec import DataSpec, JobSpec, ModelSpec, TrainSpec
from vizsla.tracking import MlflowTracker, flatten_params, resolve_tracking_uri
from vizsla.tracking.mlflow_tracker import PARAM_VALUE_LIMIT, default_artifact_location


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One runs folder (and so one SQLite store) for the module: migrations cost seconds, once."""
    return tmp_path_factory.mktemp("runs")


def make_job(runs: Path, name: str, **data_options: object) -> TrainState:
    """A job directory with the files a finished trainer leaves, and the state the trainer would pass."""
    spec = JobSpec(
        output=str(runs / name),
        data=DataSpec(root="/data/pets", **data_options),
        model=ModelSpec(name="resnet18", head=[128]),
        train=TrainSpec(epochs=3, lr=0.001),
    )
    job = JobDir(spec.output)
    job.root.mkdir(parents=True)
    job.spec.write_text(spec.to_yaml())
    job.loss_plot.write_bytes(b"\x89PNG loss")
    job.confusion_matrix_plot.write_bytes(b"\x89PNG cm")
    job.reports.mkdir()
    job.training_report.write_text("<html></html>")
    atomic_write_json(job.data_report, {"warnings": ["1 unreadable file"]})
    job.bad_files.write_text("path,reason\ncat/1.jpg,truncated\n")
    job.model_dir.mkdir()
    (job.model_dir / "model.safetensors").write_bytes(b"weights")
    (job.model_dir / "config.json").write_text("{}")
    atomic_write_json(job.result, {"status": "InProgress"})
    return TrainState(spec=spec, job_dir=job)


def run_epochs(tracker: MlflowTracker, state: TrainState, epochs: range) -> None:
    for epoch in epochs:
        state.epoch = epoch
        record = {"kind": "epoch", "epoch": epoch, "train_loss": 1.0 / (epoch + 1),
                  "valid_loss": 1.5 / (epoch + 1), "valid_accuracy": 0.5 + 0.1 * epoch, "lr": 0.001,
                  "epoch_time_s": 2.0, "time": 1_732_550_000.0 + epoch}
        state.history.append(record)
        with state.job_dir.metrics.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        tracker.epoch_end(state)


def finish(tracker: MlflowTracker, state: TrainState, status: str, **result: object) -> None:
    state.status = status
    state.result = {"job_name": state.spec.job_name, "status": status, "epochs_completed": len(state.history),
                    "metrics": {"valid_accuracy": 0.7, "test_accuracy": 0.65, "test_loss": 0.8}, **result}
    tracker.fit_end(state)


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_completed_job_is_mirrored_as_a_finished_run(runs_dir: Path) -> None:
    state = make_job(runs_dir, "job-complete")
    tracker = MlflowTracker(None, "pets")
    tracker.fit_start(state)
    run_epochs(tracker, state, range(3))
    finish(tracker, state, "Completed")

    assert tracker.tracking_uri == f"sqlite:///{runs_dir.resolve() / 'mlflow.db'}"
    client = MlflowClient(tracker.tracking_uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "job-complete"
    assert run.data.params["model.name"] == "resnet18"
    assert run.data.params["train.lr"] == "0.001"
    assert run.data.params["model.head"] == "[128]"
    assert run.data.params["data.root"] == "/data/pets"
    assert run.data.tags["vizsla.status"] == "Completed"
    assert run.data.tags["vizsla.job_dir"] == str(state.job_dir.root.resolve())
    history = client.get_metric_history(tracker.run_id, "train_loss")
    assert [(m.step, round(m.value, 4)) for m in history] == [(0, 1.0), (1, 0.5), (2, 0.3333)]
    assert history[0].timestamp == 1_732_550_000_000
    assert not {"kind", "epoch", "time"} & set(run.data.metrics)
    assert run.data.metrics["test_accuracy"] == pytest.approx(0.65)
    assert run.data.metrics["valid_accuracy"] == pytest.approx(0.7)  # epoch 2's: logged once, not again
    experiment = client.get_experiment_by_name("pets")
    assert experiment.artifact_location == (runs_dir.resolve() / "mlartifacts").as_uri()

    assert artifact_paths(client, tracker.run_id) == {
        "spec.yaml", "result.json", "metrics.jsonl", "Loss_plot.png", "confusion_matrix.png",
        "reports/training.html", "data/report.json", "data/bad_files.csv",
        "model/model.safetensors", "model/config.json",
    }
    uploaded = json.loads(Path(client.download_artifacts(tracker.run_id, "result.json")).read_text())
    expected_info = {"tracking_uri": tracker.tracking_uri, "experiment": "pets", "run_id": tracker.run_id}
    assert uploaded["mlflow"] == expected_info == state.result["mlflow"]
    assert json.loads((state.job_dir.root / "tracking.json").read_text()) == expected_info


def test_resumed_job_reuses_its_run_and_stop_is_killed(runs_dir: Path) -> None:
    state = make_job(runs_dir, "job-resumed")
    first = MlflowTracker(None, "pets")
    first.fit_start(state)
    run_epochs(first, state, range(2))  # then the process dies: no fit_end

    second = MlflowTracker(None, "pets")
    second.fit_start(state)
    client = MlflowClient(second.tracking_uri)
    assert second.run_id == first.run_id
    assert client.get_run(second.run_id).info.status == "RUNNING"
    run_epochs(second, state, range(2, 3))
    finish(second, state, "Stopped", stop_reason="early stopping: valid_accuracy did not improve")

    run = client.get_run(first.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["vizsla.stop_reason"].startswith("early stopping")
    assert [m.step for m in client.get_metric_history(first.run_id, "valid_loss")] == [0, 1, 2]
    runs = client.search_runs([run.info.experiment_id], "tags.`vizsla.job_dir` LIKE '%job-resumed'")
    assert len(runs) == 1


def test_nested_failed_run_has_parent_and_reason(runs_dir: Path) -> None:
    client = MlflowClient(resolve_tracking_uri(runs_dir / "x", None))
    experiment_id = client.get_experiment_by_name("pets").experiment_id
    parent = client.create_run(experiment_id, run_name="tune-001")
    state = make_job(runs_dir, "trial-3")
    tracker = MlflowTracker(None, "pets", parent_run_id=parent.info.run_id)
    tracker.fit_start(state)
    run_epochs(tracker, state, range(1))
    finish(tracker, state, "Failed", failure_reason="CUDA out of memory")

    run = client.get_run(tracker.run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert run.data.tags["vizsla.failure_reason"] == "CUDA out of memory"
    assert run.info.status == "FAILED"


def test_long_and_many_params_are_truncated_and_batched(runs_dir: Path) -> None:
    options = {f"option_{i:03d}": i for i in range(150)} | {"token": "x" * 900}
    state = make_job(runs_dir, "job-many-params", storage_options=options)
    tracker = MlflowTracker(None, "other-experiment")
    tracker.fit_start(state)
    params = MlflowClient(tracker.tracking_uri).get_run(tracker.run_id).data.params
    assert len(params) == len(flatten_params(state.spec.model_dump(mode="json"))) > 150
    assert params["data.storage_options.option_149"] == "149"
    assert len(params["data.storage_options.token"]) == PARAM_VALUE_LIMIT


def test_flatten_params_uses_dotted_keys_and_strings() -> None:
    flat = flatten_params({"a": {"b": 1, "c": [1, 2], "d": None, "e": {}}, "f": True, "g": "x" * 600})
    assert flat == {"a.b": "1", "a.c": "[1, 2]", "a.d": "None", "a.e": "{}", "f": "True",
                    "g": "x" * (PARAM_VALUE_LIMIT - 3) + "..."}


def test_resolve_tracking_uri_defaults_to_sqlite_in_runs_folder(tmp_path: Path) -> None:
    job = tmp_path / "runs" / "job"
    uri = resolve_tracking_uri(job, None)
    assert uri == f"sqlite:///{(tmp_path / 'runs').resolve()}/mlflow.db"
    assert resolve_tracking_uri(job, "http://localhost:5000") == "http://localhost:5000"
    assert default_artifact_location(uri) == ((tmp_path / "runs").resolve() / "mlartifacts").as_uri()
    assert default_artifact_location("http://localhost:5000") is None


def test_broken_store_disables_tracking_without_failing(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    state = make_job(tmp_path, "job")
    runner = CallbackRunner([MlflowTracker(f"sqlite:///{blocker}/mlflow.db", "pets")])
    runner.fire("fit_start", state)
    runner.fire("fit_end", state)
    assert "MlflowTracker" in runner.disabled and runner.callbacks == []


def test_fresh_store_migrations_are_quiet(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                          caplog: pytest.LogCaptureFixture) -> None:
    state = make_job(tmp_path / "fresh-runs", "job")
    with caplog.at_level(logging.INFO):
        MlflowTracker(None, "pets").fit_start(state)
    out, err = capfd.readouterr()
    assert "Creating initial MLflow database tables" not in out + err
    chatter = [r.getMessage() for r in caplog.records if r.name.startswith(("mlflow", "alembic"))]
    assert chatter == []
    assert (tmp_path / "fresh-runs" / "mlflow.db").is_file()


def test_one_tracker_follows_each_jobs_runs_folder(runs_dir: Path, tmp_path: Path) -> None:
    tracker = MlflowTracker(None, "pets")
    tracker.fit_start(make_job(runs_dir, "job-first"))
    first = tracker.info()
    tracker.fit_start(make_job(tmp_path / "elsewhere", "job-second"))
    assert tracker.tracking_uri == resolve_tracking_uri(tmp_path / "elsewhere" / "job-second", None)
    assert tracker.run_id != first["run_id"] and first["tracking_uri"] != tracker.tracking_uri


def test_short_epochs_reach_the_store_in_one_write_at_the_end(
    runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = make_job(runs_dir, "job-batched")
    tracker = MlflowTracker(None, "pets")
    tracker.fit_start(state)
    writes: list[dict] = []
    real = tracker.client.log_batch
    monkeypatch.setattr(
        tracker.client, "log_batch", lambda run_id, **kw: writes.append(kw) or real(run_id, **kw)
    )
    run_epochs(tracker, state, range(3))
    assert writes == []  # within METRICS_FLUSH_S: nothing sent yet
    finish(tracker, state, "Completed")
    assert len(writes) == 1  # the epochs, the final metrics and the end tags together
    client = MlflowClient(tracker.tracking_uri)
    assert [m.step for m in client.get_metric_history(tracker.run_id, "valid_loss")] == [0, 1, 2]
    run = client.get_run(tracker.run_id)
    assert run.data.tags["vizsla.status"] == "Completed" and run.info.status == "FINISHED"
    assert run.data.metrics["valid_accuracy"] == pytest.approx(0.7)


def test_long_epochs_reach_the_store_as_they_end(runs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vizsla.tracking import mlflow_tracker

    monkeypatch.setattr(mlflow_tracker, "METRICS_FLUSH_S", 0.0)
    state = make_job(runs_dir, "job-streamed")
    tracker = MlflowTracker(None, "pets")
    tracker.fit_start(state)
    run_epochs(tracker, state, range(2))
    client = MlflowClient(tracker.tracking_uri)
    assert [m.step for m in client.get_metric_history(tracker.run_id, "train_loss")] == [0, 1]
    finish(tracker, state, "Completed")
    assert [m.step for m in client.get_metric_history(tracker.run_id, "train_loss")] == [0, 1]
