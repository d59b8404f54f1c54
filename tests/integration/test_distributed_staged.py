"""A staged job in a real two-process torchrun job: rank 0 trains the head stage once, every rank
fine-tunes from that head (sent by broadcast), and the job never ends below the head stage."""

from __future__ import annotations

import pytest
import torch

from vizsla.jobdir import JobDir
from vizsla.models import load_model
from vizsla.testing.jobs import tiny_spec_dict, train_with_torchrun

pytestmark = pytest.mark.slow


def _train_two_processes(tmp_path, data, name: str, **train) -> JobDir:
    spec = tiny_spec_dict(data, tmp_path / name, finetune="staged", staged_head_epochs=2, epochs=1, **train)
    return train_with_torchrun(spec, tmp_path / f"{name}.yaml")


def test_a_two_process_staged_job_fine_tunes_every_rank_from_one_head_stage(tmp_path):
    from vizsla.testing.images import make_image_folder

    data = make_image_folder(tmp_path / "data", classes=("cat", "dog"), per_class=16, seed=3)

    # lr x backbone_lr_scale ~1e-12: the fine-tuning epoch changes nothing measurable, so the head stage
    # must win, and model/ must be exactly the head stage's weights (what rank 0 broadcast).
    job = _train_two_processes(tmp_path, data, "still", lr=1e-11, backbone_lr_scale=0.1)
    result = job.read_result()
    assert result["status"] == "Completed" and result["epochs_completed"] == 1
    stage = job.stage("head")
    stage_result = stage.read_result()
    assert stage_result["status"] == "Completed" and stage_result["epochs_completed"] == 2
    assert [p.name for p in job.root.joinpath("stages").iterdir()] == ["head"]
    stage_log = stage.root.joinpath("train.log").read_text()
    assert stage_log.count("epoch 1/2") == 1, "the head stage trained once, not once a rank"
    assert result["stages"]["winner"] == "head" and result["best_epoch"] is None
    saved = load_model(job.model_dir).state_dict()
    head = load_model(stage.model_dir).head.state_dict()
    assert all(torch.equal(saved[f"head.{key}"], value) for key, value in head.items())

    # a real fine-tuning run: whichever stage wins, validation never ends below the head stage's
    job = _train_two_processes(tmp_path, data, "moving", lr=0.05)
    result = job.read_result()
    assert result["status"] == "Completed"
    head_valid = result["stages"]["head"]["valid"]["valid_accuracy"]
    assert result["stages"]["winner"] in ("head", "finetune")
    assert result["metrics"]["valid_accuracy"] >= round(head_valid, 6)
