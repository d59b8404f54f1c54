"""Mixup/CutMix of train batches and the weight average (ModelEmaV3) inside real tiny training jobs."""

from __future__ import annotations

import logging

import pytest
import torch

from vizsla.callbacks import Callback
from vizsla.jobdir import JobDir
from vizsla.jobs import run_job
from vizsla.spec import TrainSpec, build_spec
from vizsla.testing.jobs import tiny_spec_dict
from vizsla.training.ema import WARMUP_POWER
from vizsla.training.mixing import BatchMixing, create_mixing


def _epoch_records(output) -> list[dict]:
    return [r for r in JobDir(output).read_metrics() if r["kind"] == "epoch"]


class TargetsSeen(Callback):
    """Records what the callbacks see of each train batch's targets."""

    def __init__(self) -> None:
        self.targets: list[torch.Tensor] = []

    def after_forward(self, state) -> None:
        if state.mode == "train":
            self.targets.append(state.targets.detach().clone())


def test_batch_mixing_mixes_even_batches_and_leaves_odd_ones():
    spec = TrainSpec(mixup=1.0, label_smoothing=0.1)
    mixing = create_mixing(spec, num_classes=3, on_features=False)
    assert isinstance(mixing, BatchMixing)
    torch.manual_seed(0)
    images, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    original = images.clone()
    mixed, soft = mixing.mix(images, labels)
    assert soft is not None and soft.shape == (4, 3)
    assert torch.allclose(soft.sum(dim=1), torch.ones(4))
    assert not torch.equal(mixed, original)  # timm mixes in place: the batch the model sees
    assert torch.equal(mixing.accuracy_targets(labels, soft), soft.argmax(dim=1))
    odd, odd_soft = mixing.mix(torch.rand(3, 3, 8, 8), labels[:3])
    assert odd_soft is None and odd.shape[0] == 3
    logits = torch.randn(3, 3)
    plain = torch.nn.functional.cross_entropy(logits, labels[:3], label_smoothing=0.1)
    assert mixing.loss(logits, labels[:3], None) == pytest.approx(plain.item())


@pytest.mark.slow
def test_mixup_runs_end_to_end_and_raises_the_train_loss(tiny_folder, tmp_path):
    plain = tiny_spec_dict(tiny_folder, tmp_path / "plain", epochs=3, seed=3, lr=0.02)
    mixed = tiny_spec_dict(tiny_folder, tmp_path / "mixed", epochs=3, seed=3, lr=0.02, mixup=1.0)
    seen = TargetsSeen()
    run_job(build_spec(plain), progress=False)
    result = run_job(build_spec(mixed), callbacks=[seen], progress=False)
    assert result["status"] == "Completed"
    # the callbacks still see the hard labels of every batch
    assert seen.targets and all(t.dtype == torch.int64 and t.dim() == 1 for t in seen.targets)
    plain_loss = [r["train_loss"] for r in _epoch_records(plain["output"])]
    mixed_loss = [r["train_loss"] for r in _epoch_records(mixed["output"])]
    # soft targets cannot be fitted as well as hard ones: a higher train loss from the same start
    assert mixed_loss[-1] > plain_loss[-1] + 0.05, (plain_loss, mixed_loss)


@pytest.mark.slow
def test_cutmix_with_odd_batches_completes(tiny_folder, tmp_path):
    # 30 train images in batches of 7: four odd batches (trained unmixed) and a last one of 2 (mixed)
    spec = tiny_spec_dict(tiny_folder, tmp_path / "cutmix", epochs=1, batch_size=7, cutmix=1.0, mixup=0.5)
    result = run_job(build_spec(spec), progress=False)
    assert result["status"] == "Completed"
    assert 0.0 <= result["metrics"]["train_accuracy"] <= 1.0


def test_mixup_on_cached_features_is_logged_and_left_out(tiny_folder, tmp_path, caplog):
    plain = tiny_spec_dict(tiny_folder, tmp_path / "plain", epochs=2, finetune="head")
    mixed = tiny_spec_dict(tiny_folder, tmp_path / "mixed", epochs=2, finetune="head", mixup=1.0)
    reference = run_job(build_spec(plain), progress=False)
    with caplog.at_level(logging.WARNING, logger="vizsla"):
        result = run_job(build_spec(mixed), progress=False)
    assert "mixup/cutmix apply to images" in caplog.text
    assert result["metrics"] == pytest.approx(reference["metrics"])


class Weights(Callback):
    """The weights after each optimizer step (raw) and at each validation (what was validated)."""

    def __init__(self) -> None:
        self.stepped: list[dict[str, torch.Tensor]] = []
        self.validated: list[dict[str, torch.Tensor]] = []

    def batch_end(self, state) -> None:
        self.stepped.append({k: v.detach().clone() for k, v in state.model.state_dict().items()})

    def eval_end(self, state) -> None:
        if state.split == "valid":
            self.validated.append({k: v.detach().clone() for k, v in state.model.state_dict().items()})


def _replay_ema(stepped: list[dict[str, torch.Tensor]], decay: float) -> list[dict[str, torch.Tensor]]:
    """timm ModelEmaV3 with warmup by hand: after update t, decay_t = min(decay, 1 - t^-power)."""
    average = {k: v.clone() for k, v in stepped[0].items()}  # update 1 copies the weights
    out = [average]
    for t, weights in enumerate(stepped[1:], start=2):
        d = min(decay, 1 - t**-WARMUP_POWER)
        average = {
            k: v.lerp(weights[k], 1 - d) if v.is_floating_point() else weights[k].clone()
            for k, v in average.items()
        }
        out.append(average)
    return out


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key


@pytest.mark.slow
def test_ema_weights_are_validated_exported_and_checkpointed(tiny_folder, tmp_path):
    from vizsla.models import load_model

    spec = tiny_spec_dict(tiny_folder, tmp_path / "ema", epochs=3, lr=0.02, ema_decay=0.9)
    weights = Weights()
    result = run_job(build_spec(spec), callbacks=[weights], progress=False)
    assert result["status"] == "Completed"
    steps_per_epoch = 4  # 30 images in batches of 8
    replay = _replay_ema(weights.stepped, 0.9)
    for epoch in range(3):  # each validation saw the average after that epoch's last step
        _assert_same(weights.validated[epoch], replay[(epoch + 1) * steps_per_epoch - 1])
    best = result["best_epoch"]
    _assert_same(load_model(spec["output"]).state_dict(), weights.validated[best])  # model/ = validated
    _assert_same(weights.validated[-1], weights.validated[best])  # the final evaluation evaluates model/
    last = torch.load(JobDir(spec["output"]).last_checkpoint, weights_only=False)
    assert last["ema"]["updates"] == 3 * steps_per_epoch
    _assert_same(last["ema"]["weights"], replay[-1])
    _assert_same(last["model"], weights.stepped[-1])  # training continues from the raw weights
    raw, average = weights.stepped[-1], replay[-1]
    assert any(not torch.allclose(raw[k], average[k]) for k in raw if raw[k].is_floating_point())


class StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def batch_end(self, state) -> None:
        if state.global_step == self.step:
            state.request_stop("test stop")


@pytest.mark.slow
def test_stopped_ema_job_with_accumulation_resumes_like_an_uninterrupted_one(tiny_folder, tmp_path):
    from vizsla.models import load_model

    # 30 images in batches of 4: 8 batches an epoch, optimizer steps after batches 1, 3, 5 and 7.
    options = {"epochs": 2, "seed": 5, "lr": 0.02, "batch_size": 4, "ema_decay": 0.8, "accumulate_steps": 2}
    straight = tiny_spec_dict(tiny_folder, tmp_path / "straight", **options)
    reference = run_job(build_spec(straight), progress=False)

    stopped = tiny_spec_dict(tiny_folder, tmp_path / "stopped", **options)
    first = run_job(build_spec(stopped), callbacks=[StopAt(5)], progress=False)
    assert first["status"] == "Stopped"
    checkpoint = torch.load(JobDir(stopped["output"]).last_checkpoint, weights_only=False)
    # asked to stop after batch 5 (index 4, inside a group): the group's step came first
    assert checkpoint["epoch_position"]["batches"] == 6 and checkpoint["global_step"] == 6
    assert checkpoint["ema"]["updates"] == 3

    resumed = run_job(build_spec(stopped), resume=True, progress=False)
    assert resumed["status"] == "Completed" and resumed["best_epoch"] == reference["best_epoch"]
    for key, value in reference["metrics"].items():
        assert resumed["metrics"][key] == pytest.approx(value, abs=1e-5), key
    _assert_same(load_model(stopped["output"]).state_dict(), load_model(straight["output"]).state_dict())
