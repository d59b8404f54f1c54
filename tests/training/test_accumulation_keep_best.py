"""Gradient accumulation and keep-best-K checkpoints in real tiny training jobs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from vizsla.jobdir import JobDir
from vizsla.jobs import run_job
from vizsla.spec import build_spec
from vizsla.testing.jobs import tiny_spec_dict
from vizsla.training.accumulation import GradientAccumulation, optimizer_steps_per_epoch
from vizsla.training.keep_best import BestCheckpoints


def test_groups_step_at_their_last_batch_and_average_their_losses():
    groups = GradientAccumulation(2, first=0, batches=5)
    assert [groups.steps_after(i) for i in range(5)] == [False, True, False, True, True]
    assert [groups.loss_scale(i) for i in range(5)] == [0.5, 0.5, 0.5, 0.5, 1.0]  # the last group: 1 batch
    resumed = GradientAccumulation(2, first=2, batches=3)  # the same epoch resumed after 2 batches
    assert [resumed.steps_after(i) for i in range(2, 5)] == [False, True, True]
    assert optimizer_steps_per_epoch(5, 2) == 3 and optimizer_steps_per_epoch(4, 1) == 4


@pytest.fixture
def even_folder(tmp_path):
    """Three classes x 8 images per split: 24 train images, whole batches of 4 and of 8."""
    from vizsla.testing.images import make_image_folder

    return make_image_folder(tmp_path / "even", classes=("cat", "dog", "fox"), per_class=8, seed=1)


def _head_weights(output) -> dict[str, torch.Tensor]:
    """The head's trained weights after the last epoch (checkpoints hold the raw weights)."""
    model = torch.load(JobDir(output).last_checkpoint, weights_only=False)["model"]
    return {k: v for k, v in model.items() if k.startswith("head.")}


@pytest.mark.parametrize("feature_cache", ["auto", "off"])
def test_two_accumulated_batches_of_4_step_like_one_batch_of_8(even_folder, tmp_path, feature_cache):
    # A head on a frozen backbone (eval mode, no dropout, no augmentation) with SGD: a step is linear in
    # the batch's mean gradient, so 2 x 4 accumulated images must give the weights of 8 at once (same
    # order, same cosine schedule counted in optimizer steps). Adam would amplify float rounding where
    # gradients nearly cancel.
    def spec(name: str, **train) -> dict:
        spec = tiny_spec_dict(even_folder, tmp_path / name, epochs=2, finetune="head", lr=0.1,
                              optimizer="sgd", feature_cache=feature_cache, **train)
        spec["data"]["augment"] = False
        spec["model"]["head_dropout"] = 0.0
        return spec

    runs = {
        "batch8": spec("batch8", batch_size=8),
        "accumulated": spec("accumulated", batch_size=4, accumulate_steps=2),
        "batch4": spec("batch4", batch_size=4),
    }
    for run in runs.values():
        assert run_job(build_spec(run), progress=False)["status"] == "Completed"
    whole, accumulated, small = (_head_weights(runs[name]["output"]) for name in runs)
    for key in whole:
        assert torch.allclose(accumulated[key], whole[key], atol=1e-6), key
    assert any(not torch.allclose(small[k], whole[k], atol=1e-4) for k in whole)  # steps of 4 differ


def test_keep_best_two_of_four_epochs(tiny_folder, tmp_path):
    spec = tiny_spec_dict(tiny_folder, tmp_path / "best", epochs=4, lr=0.02, keep_best_checkpoints=2,
                          finetune="head", early_stopping_metric="valid_loss")
    result = run_job(build_spec(spec), progress=False)
    job = JobDir(spec["output"])
    records = [r for r in job.read_metrics() if r["kind"] == "epoch"]
    expected = sorted(records, key=lambda r: (r["valid_loss"], r["epoch"]))[:2]
    index = json.loads(job.best_checkpoints.read_text())
    assert index["metric"] == "valid_loss" and index["mode"] == "min" and index["k"] == 2
    assert [e["epoch"] for e in index["checkpoints"]] == [r["epoch"] for r in expected]
    assert [e["value"] for e in index["checkpoints"]] == pytest.approx([r["valid_loss"] for r in expected])
    assert sorted(p.name for p in job.checkpoints.glob("best-*.pt")) == sorted(
        job.best_checkpoint(r["epoch"]).name for r in expected
    )
    assert index["checkpoints"][0]["epoch"] == result["best_epoch"]
    kept = torch.load(job.best_checkpoint(result["best_epoch"]), weights_only=False)
    from vizsla.models import load_model

    exported = load_model(spec["output"]).state_dict()  # the best file holds model/'s (head) weights
    assert kept["model"] and all(torch.equal(value, exported[key]) for key, value in kept["model"].items())


def _fake_job(job_dir: JobDir, weight: float) -> SimpleNamespace:
    """What BestCheckpoints reads of a job: its trained weights and spec (a tiny linear model)."""
    model = torch.nn.Linear(2, 2)
    torch.nn.init.constant_(model.weight, weight)
    spec = SimpleNamespace(train=SimpleNamespace(ema_decay=None), model_dump=lambda mode: {"job": "fake"})
    return SimpleNamespace(features=None, model=model, spec=spec, job_dir=job_dir)


def test_keep_best_ranking_ties_and_resume(tmp_path):
    job_dir = JobDir(tmp_path / "job")
    best = BestCheckpoints(job_dir, 2, "valid_loss", resumed_at=0)
    for epoch, loss in enumerate([0.5, 0.3, 0.3, 0.4, 0.2]):
        best.consider(_fake_job(job_dir, float(epoch)), {"epoch": epoch, "valid_loss": loss})
    index = json.loads(job_dir.best_checkpoints.read_text())
    assert [(e["epoch"], e["value"]) for e in index["checkpoints"]] == [(4, 0.2), (1, 0.3)]  # tie: earlier
    assert sorted(p.name for p in job_dir.checkpoints.glob("best-*.pt")) == [
        "best-epoch001.pt", "best-epoch004.pt"
    ]
    weights = torch.load(job_dir.best_checkpoint(4), weights_only=False)["model"]["weight"]
    assert torch.equal(weights, torch.full((2, 2), 4.0))
    # resumed from a checkpoint before epoch 4: its kept file is forgotten and deleted
    BestCheckpoints(job_dir, 2, "valid_loss", resumed_at=4)
    assert [p.name for p in job_dir.checkpoints.glob("best-*.pt")] == ["best-epoch001.pt"]
    assert [e["epoch"] for e in json.loads(job_dir.best_checkpoints.read_text())["checkpoints"]] == [1]
    accuracy = BestCheckpoints(JobDir(tmp_path / "acc"), 1, "valid_accuracy", resumed_at=0)
    for epoch, value in enumerate([0.6, 0.9, 0.7]):
        accuracy.consider(_fake_job(accuracy.job_dir, 0.0), {"epoch": epoch, "valid_accuracy": value})
    assert [e["epoch"] for e in accuracy.kept] == [1]  # accuracies rank upwards
