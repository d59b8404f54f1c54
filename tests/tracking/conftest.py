"""A real MLflow tracking server for the tracking tests: `mlflow server` on a free port, a SQLite backend and
an artifact root in a temporary folder, started once per session and stopped at its end."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vizsla.testing.servers import free_port, stop, wait_until_up

SHARED_DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
START_TIMEOUT_S = 120.0  # migrations of a new SQLite store take a few seconds on a loaded machine


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a running `mlflow server` (SQLite backend, artifacts served from a temporary folder)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log_file = root / "server.log"
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", (root / "artifacts").as_uri(), "--workers", "1",
    ]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/health", proc, log_file, START_TIMEOUT_S)
        yield url
    finally:
        stop(proc)


PHOTOS_PER_CLASS = 10  # per split: 20 validation photos are the images the tests predict


def photo_folder(target: Path) -> Path:
    """A small image folder: 10 real photos per class and split from hymenoptera (ants, bees) when this
    checkout has them, else generated images of three classes."""
    import shutil

    source = SHARED_DATASETS / "hymenoptera"
    if not source.is_dir():
        from vizsla.testing.images import make_image_folder

        return make_image_folder(target, classes=("cat", "dog"), per_class=PHOTOS_PER_CLASS, seed=0)
    for split in ("train", "val"):
        for class_dir in sorted((source / split).iterdir()):
            photos = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
            (target / split / class_dir.name).mkdir(parents=True)
            for photo in photos[:PHOTOS_PER_CLASS]:
                shutil.copy2(photo, target / split / class_dir.name / photo.name)
    return target


@pytest.fixture(scope="session")
def tracked_job(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny job trained on real photos and tracked on the MLflow server: it logs its MLflow model and
    registers it as `tracked-job` (tracking.registered_model_name: `vizsla train --register`)."""
    from vizsla.jobs import run_job
    from vizsla.spec import build_spec
    from vizsla.testing.jobs import tiny_spec_dict

    root = tmp_path_factory.mktemp("tracked")
    data = photo_folder(root / "data")
    mapping = tiny_spec_dict(data, root / "runs" / "job", epochs=2, finetune="head")  # composed runner
    mapping["tracking"] = {"enabled": True, "uri": mlflow_server, "experiment": "vizsla-tests",
                           "registered_model_name": "tracked-job"}
    result = run_job(build_spec(mapping), progress=False)
    assert result["status"] == "Completed", result.get("failure_reason")
    assert result["mlflow"].get("model_id"), result["mlflow"]  # the MLflow model was logged
    return root / "runs" / "job"
