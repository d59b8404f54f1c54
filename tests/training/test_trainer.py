"""End-to-end training jobs on tiny generated images with a tiny timm model."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import vizsla
from vizsla.callbacks import Callback
from vizsla.jobdir import JobDir
from vizsla.jobs import run_job
from vizsla.spec import build_spec, load_spec
from vizsla.testing.jobs import tiny_spec_dict


def test_job_writes_every_output(tiny_folder, tmp_path):
    spec = build_spec(tiny_spec_dict(tiny_folder, tmp_path / "runs" / "job1", epochs=3))
    result = run_job(spec, progress=False)
    job = JobDir(spec.output)
    assert result["status"] == "Completed"
    saved = json.loads(job.result.read_text())
    assert saved["status"] == "Completed" and saved["epochs_completed"] == 3
    for key in (
        "train_loss",
        "train_accuracy",
        "valid_loss",
        "valid_accuracy",
        "test_loss",
        "test_accuracy",
        "test_top5_accuracy",
    ):
        assert key in saved["metrics"], key
    assert saved["test_source"] == "test"
    assert saved["per_class"]["labels"] == ["cat", "dog", "fox"]
    assert sum(saved["per_class"]["support"]) == saved["data"]["images"]["test"]
    assert saved["hyperparameters"]["model.name"] == "test_efficientnet"
    assert saved["best_epoch"] in (0, 1, 2)
    epochs = [r for r in job.read_metrics() if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [0, 1, 2]
    assert job.loss_plot.stat().st_size > 1000 and job.confusion_matrix_plot.stat().st_size > 1000
    assert job.last_checkpoint.is_file()
    assert load_spec(job.spec).train.precision == "fp32"  # resolved spec written down


def test_model_dir_reloads_with_labels_and_same_test_accuracy(tiny_folder, tmp_path):
    spec = build_spec(tiny_spec_dict(tiny_folder, tmp_path / "job", epochs=4, lr=0.02))
    result = run_job(spec, progress=False)
    model = vizsla.load_model(spec.output)
    assert model.labels == ["cat", "dog", "fox"]
    assert model.preprocessing["input_size"][-1] == 32
    from vizsla.data import ImageFolderDataset, create_transform

    transform = create_transform(model.preprocessing, train=False, augment=False, hflip=False)
    samples = [
        (str(p), model.labels.index(p.parent.name)) for p in sorted((tiny_folder / "test").rglob("*.*"))
    ]
    dataset = ImageFolderDataset(samples, transform, max_pixels=10**8)
    correct = 0
    with torch.inference_mode():
        for image, label in (dataset[i] for i in range(len(dataset))):
            correct += int(model(image[None]).argmax(1).item() == label)
    assert correct / len(dataset) == pytest.approx(result["metrics"]["test_accuracy"], abs=1e-6)


def test_broken_files_are_skipped_listed_and_odd_formats_used(tiny_folder, tmp_path):
    from vizsla.testing.images import add_broken_files

    expected = add_broken_files(tiny_folder / "train" / "cat")
    spec = build_spec(tiny_spec_dict(tiny_folder, tmp_path / "broken", epochs=1))
    result = run_job(spec, progress=False)
    assert result["status"] == "Completed"
    with JobDir(spec.output).bad_files.open() as handle:
        bad = {row["path"].rsplit("/", 1)[-1]: row["reason"] for row in csv.DictReader(handle)}
    bad_expected = {name for name, outcome in expected.items() if outcome != "good"}
    assert bad_expected <= set(bad), (bad_expected, bad)
    good = [name for name, outcome in expected.items() if outcome == "good"]
    assert not set(good) & set(bad), "readable odd formats must be used"
    assert result["data"]["images"]["train"] == 30 + len(good)
    assert result["data"]["bad_files"] == len(bad)


def test_early_stopping_ends_completed_with_reason(tiny_folder, tmp_path):
    spec = build_spec(
        tiny_spec_dict(
            tiny_folder,
            tmp_path / "es",
            epochs=8,
            lr=1e-9,
            early_stopping_patience=1,
            early_stopping_metric="valid_loss",
        )
    )
    result = run_job(spec, progress=False)
    assert result["status"] == "Completed"
    assert result["epochs_completed"] < 8
    assert "early stopping" in result["stop_reason"]


def test_callback_can_stop_the_job(tiny_folder, tmp_path):
    class StopAtStep(Callback):
        def batch_end(self, state):
            if state.global_step == 3:
                state.request_stop("rule X fired")

    spec = build_spec(tiny_spec_dict(tiny_folder, tmp_path / "stop", epochs=3))
    result = run_job(spec, callbacks=[StopAtStep()], progress=False)
    assert result["status"] == "Stopped" and result["stop_reason"] == "rule X fired"


def test_failure_is_recorded_and_raised(tiny_folder, tmp_path):
    spec = build_spec(tiny_spec_dict(tiny_folder, tmp_path / "nan", epochs=2, lr=1e12, grad_clip_norm=None))

    class PoisonLoss(Callback):
        def after_forward(self, state):
            if state.global_step == 2:
                state.loss.data.fill_(float("nan"))

    with pytest.raises(FloatingPointError):
        run_job(spec, callbacks=[PoisonLoss()], progress=False)
    result = JobDir(spec.output).read_result()
    assert result["status"] == "Failed" and "loss is nan" in result["failure_reason"]


def test_existing_job_dir_is_refused_without_resume(tiny_folder, tmp_path):
    from vizsla.errors import UserError

    spec = build_spec(tiny_spec_dict(tiny_folder, tmp_path / "twice", epochs=1))
    run_job(spec, progress=False)
    with pytest.raises(UserError, match="already holds a job"):
        run_job(spec, progress=False)


def test_head_only_trains_on_cached_features_like_the_full_model(tiny_folder, tmp_path):
    base = {"finetune": "head", "epochs": 3, "lr": 0.05}
    cached_spec = tiny_spec_dict(tiny_folder, tmp_path / "cached", **base)
    cached_spec["data"]["augment"] = False
    cached_spec["cache_dir"] = str(tmp_path / "cache")  # its own: other tests build the same key
    plain_spec = tiny_spec_dict(tiny_folder, tmp_path / "plain", **base, feature_cache="off")
    plain_spec["data"]["augment"] = False
    cached = run_job(build_spec(cached_spec), progress=False)
    plain = run_job(build_spec(plain_spec), progress=False)
    assert cached["feature_cache"]["hit"] is False and plain["feature_cache"] is None
    for key in ("train_loss", "valid_loss", "test_loss"):
        assert cached["metrics"][key] == pytest.approx(plain["metrics"][key], rel=0.03), key
    again = tiny_spec_dict(tiny_folder, tmp_path / "again", **base)
    again["data"]["augment"] = False
    again["cache_dir"] = str(tmp_path / "cache")
    assert run_job(build_spec(again), progress=False)["feature_cache"]["hit"] is True


def test_cached_features_with_augmented_views(tiny_folder, tmp_path):
    spec = tiny_spec_dict(tiny_folder, tmp_path / "views", finetune="head", epochs=2, feature_views=3)
    result = run_job(build_spec(spec), progress=False)
    assert result["status"] == "Completed"
    assert result["feature_cache"]["views"] == 3
