"""Gradient accumulation in a real two-process torchrun job (DDP's no_sync() on the batches that do not
step): the same weights as the whole batch at once."""

from __future__ import annotations

import pytest
import torch

from vizsla.jobdir import JobDir
from vizsla.testing.jobs import tiny_spec_dict, train_with_torchrun

pytestmark = pytest.mark.slow


def test_two_processes_accumulating_two_batches_step_like_the_whole_batch(tmp_path):
    from vizsla.testing.images import make_image_folder

    # 32 train images: one global batch of 32 (16 a process), or two of 16 (8 a process) accumulated.
    data = make_image_folder(tmp_path / "data", classes=("cat", "dog"), per_class=16, seed=2)

    def train(name: str, **options) -> JobDir:
        spec = tiny_spec_dict(data, tmp_path / name, epochs=2, finetune="head", lr=0.1, optimizer="sgd",
                              keep_best_checkpoints=1, **options)
        spec["data"]["augment"] = False  # a linear head over fixed features: steps are plain averages
        spec["model"]["head_dropout"] = 0.0
        return train_with_torchrun(spec, tmp_path / f"{name}.yaml")

    whole = train("whole", batch_size=32)
    accumulated = train("accumulated", batch_size=16, accumulate_steps=2)
    heads = [torch.load(job.last_checkpoint, weights_only=False)["model"] for job in (whole, accumulated)]
    for key, value in heads[0].items():
        assert torch.allclose(heads[1][key], value, atol=1e-6), key
    # rank 0 alone keeps the best checkpoint
    assert [p.name for p in accumulated.checkpoints.glob("best-*.pt")] == [
        accumulated.best_checkpoint(accumulated.read_result()["best_epoch"]).name
    ]
