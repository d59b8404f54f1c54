"""timm's auto-augment policies and random erasing on the train split: output, randomness, seeding, errors."""

from __future__ import annotations

import random
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from vizsla.data import ImageFolderDataset, create_loader, create_transform
from vizsla.data.augment import describe, normalize_policy
from vizsla.errors import SpecError
from vizsla.spec import DataSpec, build_spec, load_spec

POLICIES = ("rand-m9-mstd0.5-inc1", "trivialaugment", "augmix-m5-w4-d2", "original")
COLOUR = (200, 60, 30)  # far from the mean colour the policies fill with, so a rotation or shear shows


def _normalized(preprocessing: dict, rgb: tuple[int, int, int]) -> torch.Tensor:
    stats = zip(rgb, preprocessing["mean"], preprocessing["std"], strict=True)
    values = [(v / 255 - m) / s for v, m, s in stats]
    return torch.tensor(values).view(3, 1, 1)


def _runs(transform, image: Image.Image, seeds: range) -> list[torch.Tensor]:
    outputs = []
    for seed in seeds:
        torch.manual_seed(seed)
        outputs.append(transform(image))
    return outputs


@pytest.mark.parametrize("policy", POLICIES)
def test_policy_yields_normalized_tensors_random_and_seeded(preprocessing, policy):
    transform = create_transform(preprocessing, train=True, augment=True, hflip=True, auto_augment=policy)
    # a plain colour: crop and flip leave it unchanged, so every difference is the policy's doing
    image = Image.new("RGB", (48, 40), COLOUR)
    outputs = _runs(transform, image, range(12))
    for out in outputs:
        assert type(out) is torch.Tensor and out.dtype == torch.float32 and out.shape == (3, 32, 32)
        low, high = _normalized(preprocessing, (0, 0, 0)), _normalized(preprocessing, (255, 255, 255))
        assert bool(((out >= low - 1e-4) & (out <= high + 1e-4)).all()), "outside the normalized range"
    plain = _normalized(preprocessing, COLOUR).expand(3, 32, 32)
    assert any(not torch.allclose(out, plain, atol=1e-4) for out in outputs), "the policy never acted"
    assert any(not torch.equal(outputs[0], out) for out in outputs[1:]), "not random"
    assert all(torch.equal(a, b) for a, b in zip(outputs, _runs(transform, image, range(12)), strict=True))


def test_policies_leave_the_global_python_and_numpy_rngs_alone(preprocessing):
    transform = create_transform(preprocessing, train=True, augment=True, hflip=True,
                                 auto_augment="rand-m9-mstd0.5-inc1", random_erasing=0.5)
    random.seed(5)
    np.random.seed(5)
    transform(Image.new("RGB", (40, 40), COLOUR))
    expected_python, expected_numpy = random.Random(5).random(), np.random.RandomState(5).random_sample()
    assert (random.random(), np.random.random_sample()) == (expected_python, expected_numpy)


def test_random_erasing_erases_one_region(preprocessing):
    plain = _normalized(preprocessing, COLOUR).expand(3, 32, 32)
    image = Image.new("RGB", (40, 40), COLOUR)
    untouched = create_transform(preprocessing, train=True, augment=True, hflip=True, random_erasing=0.0)
    assert torch.allclose(untouched(image), plain, atol=1e-4)
    erasing = create_transform(preprocessing, train=True, augment=True, hflip=True, random_erasing=1.0)
    for seed in range(5):
        torch.manual_seed(seed)
        changed = ~torch.isclose(erasing(image), plain, atol=1e-4).all(dim=0)  # (H, W)
        rows, cols = changed.any(dim=1).nonzero(), changed.any(dim=0).nonzero()
        assert rows.numel() and cols.numel(), "nothing erased at probability 1"
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert 0.02 * 32 * 32 * 0.5 <= box <= 32 * 32 / 3 + 32, "one rectangle of timm's 2-33 % of the area"
        assert changed.sum() >= 0.9 * box, "the rectangle is filled with noise"


def test_loader_batches_do_not_depend_on_the_workers(preprocessing, tmp_path):
    paths = []
    for index in range(6):
        path = tmp_path / f"{index}.png"
        Image.fromarray(np.random.RandomState(index).randint(0, 255, (36, 44, 3), np.uint8)).save(path)
        paths.append((str(path), index % 2))
    transform = create_transform(preprocessing, train=True, augment=True, hflip=True,
                                 auto_augment="augmix-m5-w4-d2", random_erasing=0.5)
    dataset = ImageFolderDataset(paths, transform, max_pixels=10**7)

    def batches(workers: int) -> list[torch.Tensor]:
        loader = create_loader(dataset, batch_size=3, shuffle=True, num_workers=workers, seed=1, epoch=2)
        return [images for images, _ in loader]

    in_process, in_worker = batches(0), batches(1)
    assert all(torch.equal(a, b) for a, b in zip(in_process, in_worker, strict=True))


@pytest.mark.parametrize(
    "value, canonical",
    [(None, None), ("none", None), ("Off", None), ("TrivialAugment", "trivialaugment"),
     ("ta_wide", "trivialaugment"), (" rand-m9-mstd0.5-inc1 ", "rand-m9-mstd0.5-inc1"),
     ("rand-m7-n3-tweights", "rand-m7-n3-tweights"), ("originalr-mstd0.5", "originalr-mstd0.5")],
)
def test_policy_strings_are_normalized(value, canonical):
    assert normalize_policy(value) == canonical
    assert DataSpec(root="x", auto_augment=value).auto_augment == canonical


@pytest.mark.parametrize("value", ["rand-x", "foo", "rand-m9-tfoo", "augmix-q3", "rand-mx", "rand-p1.5"])
def test_invalid_policy_is_a_spec_error_naming_it(tmp_path, value):
    with pytest.raises(SpecError) as raised:
        build_spec({"output": str(tmp_path / "o"), "data": {"root": "x", "auto_augment": value}})
    message = str(raised.value)
    assert "data.auto_augment" in message and repr(value) in message and "rand-m9-mstd0.5-inc1" in message
    with pytest.raises(SpecError, match="valid examples"):
        create_transform({"input_size": [3, 8, 8], "mean": [0.5] * 3, "std": [0.5] * 3}, train=True,
                         augment=True, hflip=False, auto_augment=value)


def test_yaml_spec_carries_the_augmentation(tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text(f"output: {tmp_path / 'o'}\n"
                      "data: {root: x, auto_augment: trivialaugment, random_erasing: 0.25}\n")
    data = load_spec(config).data
    assert (data.auto_augment, data.random_erasing) == ("trivialaugment", 0.25)
    config.write_text(f"output: {tmp_path / 'o'}\ndata: {{root: x, auto_augment: rand-zz}}\n")
    with pytest.raises(SpecError, match=re.escape(str(config))):
        load_spec(config)


def test_description_for_the_log():
    assert describe(augment=True, hflip=True, auto_augment="rand-m9-mstd0.5-inc1", random_erasing=0.25) == (
        "random resized crop, flip, rand-m9-mstd0.5-inc1, random erasing 0.25"
    )
    assert describe(augment=False, hflip=True, auto_augment="original", random_erasing=0.0).startswith("none")


def _vizsla(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "vizsla", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_cli_refuses_a_bad_policy(tiny_folder, tmp_path):
    proc = _vizsla("train", "--data", str(tiny_folder), "--output", str(tmp_path / "o"), "--auto-augment",
                   "rand-x", "--no-tracking")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "'rand-x'" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_cli_trains_with_randaugment_and_random_erasing(tiny_folder, tmp_path):
    out = tmp_path / "runs" / "aug"
    proc = _vizsla(
        "train", "--data", str(tiny_folder), "--output", str(out), "--model", "test_efficientnet",
        "--weights", "none", "--image-size", "32", "--finetune", "full", "--epochs", "1", "--batch-size", "8",
        "--precision", "fp32", "--workers", "0", "--auto-augment", "rand-m9-mstd0.5",
        "--random-erasing", "0.25", "--no-tracking", "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    log = (out / "train.log").read_text()
    assert "train augmentation: random resized crop, flip, rand-m9-mstd0.5, random erasing 0.25" in log, log
    saved = load_spec(out / "spec.yaml").data
    assert (saved.auto_augment, saved.random_erasing) == ("rand-m9-mstd0.5", 0.25)
