"""The Model Registry on a real MLflow server: `--register` at training, `vizsla models register/alias/
versions`, and `vizsla serve models:/NAME@ALIAS` answering from the registered version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from vizsla.jobdir import JobDir
from vizsla.testing.cli import invoke_cli
from vizsla.testing.servers import free_port, stop, wait_until_up
from vizsla.tracking.registry import resolve_registry_uri


def run_id_of(job: Path) -> str:
    return json.loads(JobDir(job).tracking.read_text())["run_id"]


def test_training_with_register_creates_a_version_of_its_run(tracked_job: Path, mlflow_server: str) -> None:
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    (version,) = client.search_model_versions("name = 'tracked-job'")
    assert version.run_id == run_id_of(tracked_job) and version.version == "1"
    result = json.loads(JobDir(tracked_job).result.read_text())
    assert result["mlflow"]["registered"] == {"name": "tracked-job", "version": "1"}


def test_register_alias_and_list_from_the_command_line(tracked_job: Path, mlflow_server: str,
                                                       tmp_path: Path) -> None:
    code, output = invoke_cli("models", "register", str(tracked_job), "pets", "--alias", "champion")
    assert code == 0, output
    assert "registered pets version 1, alias champion" in output
    code, output = invoke_cli("models", "register", str(tracked_job), "pets")
    assert code == 0 and "registered pets version 2" in output, output
    code, output = invoke_cli("models", "alias", "pets", "2", "staging", "--tracking-uri", mlflow_server)
    assert code == 0 and "pets@staging -> version 2" in output, output
    code, output = invoke_cli("models", "versions", "pets", "--tracking-uri", mlflow_server)
    assert code == 0, output
    assert output.splitlines()[0].startswith("2 ") and "@staging" in output.splitlines()[0]
    assert "@champion" in output.splitlines()[1]
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    assert client.get_model_version_by_alias("pets", "champion").version == "1"
    folder = resolve_registry_uri("models:/pets/2", mlflow_server, cache=tmp_path)  # a version by number
    assert (folder / "config.json").read_text() == (tracked_job / "model" / "config.json").read_text()
    assert resolve_registry_uri("models:/pets/2", mlflow_server, cache=tmp_path) == folder  # downloaded once


def test_a_registry_uri_the_store_lacks_is_a_clear_error(mlflow_server: str) -> None:
    code, message = invoke_cli("serve", "models:/no-such-model@champion", "--tracking-uri", mlflow_server)
    assert code == 2
    assert "models:/no-such-model@champion is not in the MLflow registry" in message
    code, message = invoke_cli(
        "models", "alias", "no-such-model", "1", "champion", "--tracking-uri", mlflow_server
    )
    assert code == 2 and "cannot set alias 'champion' on no-such-model version 1" in message


@pytest.mark.slow
def test_vizsla_serve_answers_from_a_model_registered_under_an_alias(tracked_job: Path, mlflow_server: str,
                                                                     tmp_path: Path) -> None:
    code, output = invoke_cli("models", "register", str(tracked_job), "served", "--alias", "champion")
    assert code == 0, output
    port = free_port()
    log_file = tmp_path / "serve.log"
    command = [sys.executable, "-m", "vizsla", "serve", "models:/served@champion", "--port", str(port),
               "--tracking-uri", mlflow_server]
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ping", proc, log_file)
        photo = next(p for p in sorted((tracked_job.parent.parent / "data").rglob("*"))
                     if p.suffix.lower() in (".jpg", ".jpeg"))
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=photo.read_bytes(),
                                         headers={"Content-Type": "image/jpeg"}, method="POST")
        with urllib.request.urlopen(request, timeout=60) as reply:
            body = json.loads(reply.read())
    finally:
        stop(proc)
    labels = json.loads((tracked_job / "model" / "labels.json").read_text())
    assert body["predictions"][0]["label"] in labels, log_file.read_text()[-3000:]


@pytest.mark.slow
def test_a_tuning_job_logs_every_trials_model_and_registers_the_best(mlflow_server: str,
                                                                     tmp_path: Path) -> None:
    from vizsla.testing.images import make_image_folder
    from vizsla.testing.jobs import tiny_spec_dict
    from vizsla.tuning.job import run_tuning
    from vizsla.tuning.tune_spec import build_tune_spec

    data = make_image_folder(tmp_path / "data", classes=("cat", "dog"), per_class=6, seed=0)
    training = tiny_spec_dict(data, tmp_path / "unused", epochs=1)
    training.pop("output")
    training["tracking"] = {"enabled": True, "uri": mlflow_server, "experiment": "tuning-tests",
                            "registered_model_name": "tuned"}
    config = {"ranges": {"lr": {"type": "Categorical", "values": [0.001, 0.05]}}, "training": training}
    spec = build_tune_spec(config, {"output": str(tmp_path / "tune"), "max_jobs": 2, "max_parallel": 1,
                                    "strategy": "Grid"}, source="test")
    summary = run_tuning(spec, progress=False)
    best = summary["best"]
    assert summary["counts"]["Completed"] == 2 and best["registered"] == {"name": "tuned", "version": "1"}

    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    parent = client.get_run(json.loads((tmp_path / "tune" / "tracking.json").read_text())["run_id"])
    assert parent.data.metrics["best_trial"] == best["number"]
    assert parent.data.metrics["best_objective"] == pytest.approx(best["value"])
    best_run = run_id_of(Path(best["job_dir"]))
    trial_runs = {run_id_of(folder) for folder in (tmp_path / "tune" / "trials").iterdir()}
    models = client.search_logged_models(experiment_ids=[parent.info.experiment_id])
    assert sorted(m.source_run_id for m in models) == sorted(trial_runs) and best_run in trial_runs
    assert summary["trial_models_logged"] == 2
    assert json.loads((tmp_path / "tune" / "result.json").read_text())["best"]["mlflow_model_id"] in {
        m.model_id for m in models if m.source_run_id == best_run
    }
    (version,) = client.search_model_versions("name = 'tuned'")  # only the best trial's is registered
    assert version.run_id == best_run

    again = run_tuning(spec.model_copy(update={"max_jobs": 2}), progress=False)  # resumed: nothing new
    assert again["trial_models_logged"] == 2
    assert len(client.search_logged_models(experiment_ids=[parent.info.experiment_id])) == 2
    assert again["best"]["registered"] == {"name": "tuned", "version": "1"}
    assert len(client.search_model_versions("name = 'tuned'")) == 1


def test_register_without_tracking_is_refused_before_anything_runs(tiny_folder: Path, tmp_path: Path) -> None:
    code, message = invoke_cli("train", "--data", str(tiny_folder), "--output", str(tmp_path / "job"),
                               "--no-tracking", "--register", "pets")
    assert code == 2 and "--register needs the job's MLflow run" in message
    assert not (tmp_path / "job").exists()


def test_no_log_model_keeps_the_run_without_a_model_and_refuses_register(tiny_folder: Path,
                                                                        tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, message = invoke_cli("train", "--data", str(tiny_folder), "--output", str(tmp_path / "refused"),
                               "--tracking-uri", store, "--no-log-model", "--register", "pets")
    assert code == 2 and "registered_model_name needs log_model" in message, message
    assert not (tmp_path / "refused").exists()

    code, message = invoke_cli("train", "--data", str(tiny_folder), "--output", str(tmp_path / "job"),
                               "--tracking-uri", store, "--no-log-model", "--epochs", "1", "--quiet")
    assert code == 0, message
    client = MlflowClient(store)
    run = client.get_run(run_id_of(tmp_path / "job"))
    assert run.info.status == "FINISHED" and run.data.metrics  # the run itself is whole
    assert client.search_logged_models(experiment_ids=[run.info.experiment_id]) == []


@pytest.mark.slow
def test_vizsla_transform_scores_a_folder_with_a_registered_models_alias(tracked_job: Path,
                                                                         mlflow_server: str,
                                                                         tmp_path: Path) -> None:
    code, output = invoke_cli("models", "register", str(tracked_job), "batch", "--alias", "champion")
    assert code == 0, output
    photos = tracked_job.parent.parent / "data" / "train"  # photo_folder's real or generated images
    code, output = invoke_cli("transform", "models:/batch@champion", "--data", str(photos),
                              "--output", str(tmp_path / "out"), "--tracking-uri", mlflow_server, "--quiet")
    assert code == 0, output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    count = sum(1 for p in photos.rglob("*") if p.is_file())
    assert summary["predicted"] == count and summary["rejected"] == 0
    labels = json.loads((tracked_job / "model" / "labels.json").read_text())
    lines = (tmp_path / "out" / summary["predictions"]).read_text().splitlines()
    assert len(lines) == count and all(json.loads(line)["label"] in labels for line in lines), lines[:2]
