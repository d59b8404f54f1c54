"""The staged recipe (training/stages.py): a head stage on cached features, then fine-tuning that can only
replace the head stage's model when an epoch validates better."""

from __future__ import annotations

import torch

from vizsla.callbacks import Callback
from vizsla.jobdir import JobDir
from vizsla.jobs import run_job
from vizsla.models import load_model
from vizsla.spec import build_spec
from vizsla.testing.jobs import tiny_spec_dict


def _staged(tiny_folder, out, **train):
    return build_spec(tiny_spec_dict(tiny_folder, out, finetune="staged", staged_head_epochs=3, **train))


def test_head_stage_runs_first_then_the_whole_model_trains_from_its_head(tiny_folder, tmp_path):
    seen = {}

    class Snapshot(Callback):
        def fit_start(self, state):
            seen["head"] = {k: v.clone() for k, v in state.model.head.state_dict().items()}
            seen["backbone"] = {k: v.clone() for k, v in state.model.backbone.state_dict().items()}

        def epoch_end(self, state):
            seen.setdefault("after", {k: v.clone() for k, v in state.model.backbone.state_dict().items()})

    spec = _staged(tiny_folder, tmp_path / "job", epochs=2, lr=0.05)
    result = run_job(spec, callbacks=[Snapshot()], progress=False)
    stage = JobDir(spec.output).stage("head")
    stage_result = stage.read_result()
    assert result["status"] == "Completed" and stage_result["status"] == "Completed"
    assert stage_result["epochs_completed"] == 3
    assert stage_result["hyperparameters"]["train.finetune"] == "head"
    stage_head = load_model(stage.model_dir).head.state_dict()
    assert all(torch.equal(seen["head"][k], stage_head[k]) for k in stage_head), "fine-tuning starts from it"
    assert any(not torch.equal(seen["backbone"][k], seen["after"][k]) for k in seen["backbone"])
    staged = result["stages"]
    assert staged["winner"] in ("head", "finetune") and staged["head"]["epochs"] == 3
    assert set(staged["head"]["valid"]) >= {"valid_accuracy", "valid_loss"}
    assert result["hyperparameters"]["train.layer_decay"] == 0.8
    assert result["hyperparameters"]["train.bn_policy"] == "frozen"


def test_fine_tuning_that_cannot_improve_leaves_the_head_stage_model(tiny_folder, tmp_path):
    # lr x backbone_lr_scale = 1e-12: the fine-tuning epochs change nothing measurable, so none beats the
    # head stage (a tie is no improvement) and model/ stays the head stage's weights.
    spec = _staged(tiny_folder, tmp_path / "job", epochs=2, lr=1e-11, backbone_lr_scale=0.1)
    result = run_job(spec, progress=False)
    assert result["status"] == "Completed"
    assert result["stages"]["winner"] == "head" and result["best_epoch"] is None
    job = JobDir(spec.output)
    saved = load_model(job.model_dir).state_dict()
    head = load_model(job.stage("head").model_dir).head.state_dict()
    assert all(torch.equal(saved[f"head.{k}"], v) for k, v in head.items())
    head_valid = result["stages"]["head"]["valid"]["valid_accuracy"]
    assert result["metrics"]["valid_accuracy"] == round(head_valid, 6)
    assert result["metrics"]["train_loss"] == job.stage("head").read_result()["metrics"]["train_loss"]


def test_valid_never_ends_below_the_head_stage(tiny_folder, tmp_path):
    # lr 3.0 x 0.5 wrecks the tiny backbone: the job still ends with the head stage's figure or better.
    spec = _staged(tiny_folder, tmp_path / "job", epochs=2, lr=3.0, backbone_lr_scale=0.5)
    result = run_job(spec, progress=False)
    head_valid = result["stages"]["head"]["valid"]["valid_accuracy"]
    assert result["metrics"]["valid_accuracy"] >= round(head_valid, 6)


def test_resumed_staged_job_does_not_train_its_head_stage_again(tiny_folder, tmp_path):
    class StopAfterFirstEpoch(Callback):
        def epoch_end(self, state):
            state.request_stop("test")

    spec = _staged(tiny_folder, tmp_path / "job", epochs=2)
    first = run_job(spec, callbacks=[StopAfterFirstEpoch()], progress=False)
    assert first["status"] == "Stopped"
    stage_result = JobDir(spec.output).stage("head").result
    written = stage_result.stat().st_mtime_ns
    resumed = run_job(spec, resume=True, progress=False)
    assert resumed["status"] == "Completed" and resumed["epochs_completed"] == 2
    assert stage_result.stat().st_mtime_ns == written
    assert resumed["stages"]["head"]["valid"] == first["stages"]["head"]["valid"]
