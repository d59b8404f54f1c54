"""prepare_data and a loader on real photos (hymenoptera: ants vs bees, train/ and val/ folders)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from vizsla.data import ImageFolderDataset, create_loader, create_transform, prepare_data
from vizsla.jobdir import JobDir
from vizsla.spec import DataSpec

pytestmark = [pytest.mark.slow, pytest.mark.integration]

IMAGENET = {"input_size": [3, 224, 224], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
            "interpolation": "bicubic", "crop_pct": 0.875}


def test_prepare_hymenoptera(hymenoptera, tmp_path, capsys):
    started = time.perf_counter()
    data = prepare_data(DataSpec(root=str(hymenoptera)), JobDir(tmp_path / "job"), preprocessing=IMAGENET,
                        progress=False)
    seconds = time.perf_counter() - started
    with capsys.disabled():
        print(f"\nprepare_data on hymenoptera: {seconds:.2f} s for "
              f"{sum(len(data.splits[s]) for s in ('train', 'valid'))} photos")
    assert data.classes == ["ants", "bees"]
    assert data.split_dirs == {"train": "train", "valid": "val"} and data.test_source == "valid"
    assert data.splits["test"] == data.splits["valid"]
    assert len(data.splits["train"]) == 245 and len(data.splits["valid"]) == 153

    gif = hymenoptera / "train" / "ants" / "imageNotFound.gif"
    with Image.open(gif) as image:  # the "image not found" placeholder is a real 300x300 GIF
        assert image.format == "GIF" and image.size == (300, 300)
    assert (str(gif), 0) in data.splits["train"]
    assert data.bad_files == [] and data.warnings == []
    report = json.loads(JobDir(tmp_path / "job").data_report.read_text())
    assert report["splits"]["train"]["per_class"] == {"ants": 124, "bees": 121}
    assert seconds < 30


def test_first_batch_of_hymenoptera(hymenoptera, tmp_path):
    data = prepare_data(DataSpec(root=str(hymenoptera)), JobDir(tmp_path / "job"), progress=False)
    transform = create_transform(IMAGENET, train=True, augment=True, hflip=True)
    dataset = ImageFolderDataset(data.splits["train"], transform, max_pixels=89_478_485, draft_size=317)
    images, labels = next(iter(create_loader(dataset, batch_size=8, shuffle=True, num_workers=0, seed=0,
                                             epoch=0)))
    assert images.shape == (8, 3, 224, 224) and images.dtype == torch.float32
    assert set(labels.tolist()) <= {0, 1} and torch.isfinite(images).all()
    assert Path(data.splits["train"][0][0]).is_file()
