"""A job's MLflow model on a real MLflow server: loaded by mlflow.pyfunc it agrees with vizsla.load_model,
takes bytes, paths, arrays and DataFrames, is a LoggedModel with a signature and an input example, and
`mlflow models serve` answers with it; the run records its dataset and each final metric once."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

import vizsla
from vizsla.jobdir import JobDir
from vizsla.testing.servers import free_port, stop, wait_until_up


def validation_photos(job: Path) -> list[Path]:
    """The job's 20 validation images (data/split.csv), in a fixed order."""
    report = json.loads(JobDir(job).data_report.read_text())
    rows = JobDir(job).split_manifest.read_text().splitlines()[1:]
    paths = [Path(report["root"]) / row.split(",")[1] for row in rows if row.startswith("valid,")]
    assert len(paths) == 20
    return paths


def torch_top1(job: Path, photos: list[Path]) -> list[str]:
    """What vizsla.load_model predicts with the training code's own eval transform."""
    import torch

    from vizsla.data.decode import decode_image
    from vizsla.data.transforms import create_transform

    model = vizsla.load_model(job)
    transform = create_transform(model.preprocessing, train=False, augment=False, hflip=False)
    batch = torch.stack([transform(decode_image(p.read_bytes(), max_pixels=10**8)) for p in photos])
    with torch.inference_mode():
        return [model.labels[i] for i in model(batch).argmax(dim=1).tolist()]


def run_id_of(job: Path) -> str:
    return json.loads(JobDir(job).tracking.read_text())["run_id"]


@pytest.fixture(scope="module")
def loaded(tracked_job: Path, mlflow_server: str) -> mlflow.pyfunc.PyFuncModel:
    mlflow.set_tracking_uri(mlflow_server)
    return mlflow.pyfunc.load_model(f"runs:/{run_id_of(tracked_job)}/model")


def test_the_logged_model_gives_vizsla_load_models_top1_on_20_photos(tracked_job: Path, loaded) -> None:
    photos = validation_photos(tracked_job)
    scores = loaded.predict(pd.DataFrame({"image": [p.read_bytes() for p in photos]}))
    labels = json.loads((tracked_job / "model" / "labels.json").read_text())
    assert list(scores.columns) == [*labels, "label"]
    assert list(scores["label"]) == torch_top1(tracked_job, photos)
    np.testing.assert_allclose(scores[labels].to_numpy().sum(axis=1), 1.0, atol=1e-5)


def test_bytes_paths_arrays_and_frames_give_the_same_scores(tracked_job: Path, loaded) -> None:
    from PIL import Image

    photos = validation_photos(tracked_job)[:3]
    expected = loaded.predict(pd.DataFrame({"image": [p.read_bytes() for p in photos]}))
    model = loaded.unwrap_python_model()  # the same object; what a Python caller passes without a frame
    for given in (
        [p.read_bytes() for p in photos],
        [str(p) for p in photos],
        [np.asarray(Image.open(p).convert("RGB")) for p in photos],
        pd.DataFrame({"image": [str(p) for p in photos]}),
    ):
        got = model.predict(None, given)
        np.testing.assert_allclose(got.iloc[:, :-1].to_numpy(), expected.iloc[:, :-1].to_numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="image 0: .* is neither a file nor base64"):
        model.predict(None, ["no-such-photo.jpg"])


def test_it_is_a_logged_model_with_signature_and_input_example(tracked_job: Path, mlflow_server: str,
                                                               loaded) -> None:
    client = MlflowClient(mlflow_server)
    run = client.get_run(run_id_of(tracked_job))
    found = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    mine = [m for m in found if m.source_run_id == run.info.run_id]
    assert [m.name for m in mine] == ["model"] and mine[0].status.to_proto() == 2  # READY
    assert loaded.metadata.get_input_schema().input_names() == ["image"]
    assert "label" in loaded.metadata.get_output_schema().input_names()
    example = loaded.input_example
    assert isinstance(example, pd.DataFrame) and list(example.columns) == ["image"]
    labels = json.loads((tracked_job / "model" / "labels.json").read_text())
    assert loaded.predict(example)["label"].iloc[0] in labels


def test_the_run_records_its_dataset_and_each_final_metric_once(tracked_job: Path, mlflow_server: str
                                                                ) -> None:
    client = MlflowClient(mlflow_server)
    run = client.get_run(run_id_of(tracked_job))
    report = json.loads(JobDir(tracked_job).data_report.read_text())
    (dataset,) = [d.dataset for d in run.inputs.dataset_inputs]
    assert dataset.digest == report["content_digest"][:32] and dataset.name == "data"
    for key in ("train_loss", "valid_accuracy"):  # in every epoch record and among the final metrics
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == [0, 1], history
    assert len(client.get_metric_history(run.info.run_id, "test_accuracy")) == 1


@pytest.mark.slow
def test_mlflow_models_serve_answers_a_request(tracked_job: Path, mlflow_server: str) -> None:
    port = free_port()
    log_file = tracked_job.parent / "mlflow-serve.log"
    command = [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m",
               f"runs:/{run_id_of(tracked_job)}/model", "--env-manager", "local", "-p", str(port),
               "-h", "127.0.0.1"]
    bin_dir = str(Path(sys.executable).parent)  # mlflow starts `uvicorn` by name: this environment's
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ping", proc, log_file)
        photo = validation_photos(tracked_job)[0]
        body = {"dataframe_split": {"columns": ["image"],
                                    "data": [[base64.b64encode(photo.read_bytes()).decode()]]}}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            predictions = json.loads(reply.read())["predictions"]
    finally:
        stop(proc)
    assert predictions[0]["label"] == torch_top1(tracked_job, [photo])[0], log_file.read_text()[-3000:]
