"""`tracking.tensorboard: true`: the job's epoch curves as event files TensorBoard's own reader loads, and
the job's train.log holds its progress lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vizsla.jobdir import JobDir
from vizsla.testing.cli import invoke_cli

EPOCHS = 3


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny job run by `vizsla train --tensorboard` (in this process; tracking off)."""
    from vizsla.testing.images import make_image_folder

    root = tmp_path_factory.mktemp("tensorboard")
    data = make_image_folder(root / "data", classes=("cat", "dog"), per_class=6, seed=0)
    out = root / "job"
    code, output = invoke_cli(
        "train", "--data", str(data), "--output", str(out), "--model", "test_efficientnet",
        "--weights", "none", "--image-size", "32", "--epochs", str(EPOCHS), "--batch-size", "4",
        "--finetune", "full",
        "--precision", "fp32", "--workers", "0", "--no-tracking", "--tensorboard", "--quiet",
    )
    assert code == 0, output
    return out


def test_event_accumulator_reads_the_epoch_curves(job: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert JobDir(job).tensorboard == job / "tensorboard"
    events = EventAccumulator(str(JobDir(job).tensorboard))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    expected = {"loss/train", "loss/valid", "accuracy/train", "accuracy/valid", "lr",
                "throughput/train_images_per_s", "time/epoch_s"}
    assert expected <= tags, tags
    epochs = [r for r in JobDir(job).read_metrics() if r.get("kind") == "epoch"]
    for tag, key in (("loss/train", "train_loss"), ("accuracy/valid", "valid_accuracy")):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == list(range(EPOCHS))
        assert [s.value for s in scalars] == pytest.approx([r[key] for r in epochs], rel=1e-6)
    assert all(s.value > 0 for s in events.Scalars("throughput/train_images_per_s"))


def test_train_log_holds_the_jobs_progress_lines(job: Path) -> None:
    text = JobDir(job).log.read_text()
    for epoch in range(1, EPOCHS + 1):
        assert f"epoch {epoch}/{EPOCHS}  train_loss" in text, text
    result = json.loads(JobDir(job).result.read_text())
    assert f"{result['status']} {result['job_name']}" in text
    assert "settings: model test_efficientnet" in text
