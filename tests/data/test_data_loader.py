"""ImageFolderDataset and create_loader: reproducible per (seed, epoch), bad files skipped at run time."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vizsla.data import ImageFolderDataset, create_loader, create_transform, default_num_workers, prepare_data
from vizsla.data.dataset import collate_skip_bad
from vizsla.jobdir import JobDir
from vizsla.spec import DataSpec
from vizsla.testing.images import make_image_folder

LIMIT = 89_478_485


@pytest.fixture
def train_dataset(tmp_path, preprocessing) -> ImageFolderDataset:
    root = make_image_folder(tmp_path / "data", per_class=8, splits=("train", "valid"))
    data = prepare_data(DataSpec(root=str(root)), JobDir(tmp_path / "job"), progress=False)
    transform = create_transform(preprocessing, train=True, augment=True, hflip=True)
    return ImageFolderDataset(data.splits["train"], transform, max_pixels=LIMIT)


def _epoch(dataset, *, seed: int, epoch: int, workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    loader = create_loader(dataset, batch_size=5, shuffle=True, num_workers=workers, seed=seed, epoch=epoch)
    batches = [batch for batch in loader if batch is not None]
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


def test_same_seed_and_epoch_give_the_same_batches(train_dataset):
    images, labels = _epoch(train_dataset, seed=1, epoch=3)
    torch.manual_seed(1234)  # unrelated use of the global RNG must not change the batches
    torch.rand(100)
    again_images, again_labels = _epoch(train_dataset, seed=1, epoch=3)
    assert torch.equal(labels, again_labels) and torch.equal(images, again_images)
    assert images.shape == (16, 3, 32, 32)


def test_epochs_and_seeds_differ(train_dataset):
    images, labels = _epoch(train_dataset, seed=1, epoch=0)
    other_epoch, _ = _epoch(train_dataset, seed=1, epoch=1)
    other_seed, _ = _epoch(train_dataset, seed=2, epoch=0)
    assert not torch.equal(images, other_epoch) and not torch.equal(images, other_seed)
    assert sorted(labels.tolist()) == [0] * 8 + [1] * 8


def test_order_of_paths_differs_across_epochs(train_dataset):
    orders = []
    for epoch in range(3):
        loader = create_loader(train_dataset, batch_size=4, shuffle=True, num_workers=0, seed=0, epoch=epoch)
        orders.append([index for index, _ in loader.sampler])
    assert len({tuple(order) for order in orders}) == 3
    assert all(sorted(order) == list(range(16)) for order in orders)


def test_workers_give_the_same_batches_as_the_main_process(train_dataset):
    images, labels = _epoch(train_dataset, seed=4, epoch=2, workers=0)
    worker_images, worker_labels = _epoch(train_dataset, seed=4, epoch=2, workers=2)
    assert torch.equal(labels, worker_labels) and torch.equal(images, worker_images)


def test_unshuffled_loader_keeps_sample_order(tmp_path, preprocessing):
    root = make_image_folder(tmp_path / "data", per_class=3, splits=("train", "valid"))
    data = prepare_data(DataSpec(root=str(root)), JobDir(tmp_path / "job"), progress=False)
    evaluate = create_transform(preprocessing, train=False, augment=False, hflip=False)
    dataset = ImageFolderDataset(data.splits["valid"], evaluate, max_pixels=LIMIT)
    loader = create_loader(dataset, batch_size=4, shuffle=False, num_workers=0, seed=0, epoch=0)
    labels = torch.cat([batch[1] for batch in loader]).tolist()
    assert labels == [label for _, label in data.splits["valid"]]
    first, label = dataset[0]
    assert label == labels[0] and first.shape == (3, 32, 32)


def test_file_corrupted_after_validation_is_skipped(train_dataset, caplog):
    victim = train_dataset.samples[3][0]
    Path(victim).write_bytes(b"overwritten after validation")
    with caplog.at_level(logging.WARNING, logger="vizsla.data"):
        images, labels = _epoch(train_dataset, seed=0, epoch=0)
    assert len(labels) == 15
    assert any(victim in record.getMessage() and "not an image" in record.getMessage()
               for record in caplog.records)
    assert train_dataset[3] is None


def test_collate_skip_bad():
    item = (torch.zeros(3, 2, 2), 1)
    images, labels = collate_skip_bad([None, item, None, item])
    assert images.shape == (2, 3, 2, 2) and labels.tolist() == [1, 1]
    assert collate_skip_bad([None, None]) is None


def test_loader_settings(train_dataset):
    loader = create_loader(train_dataset, batch_size=4, shuffle=True, num_workers=2, seed=0, epoch=0,
                           drop_last=True)
    assert loader.num_workers == 2 and loader.prefetch_factor == 2 and not loader.persistent_workers
    assert loader.drop_last and len(loader) == 4
    assert create_loader(train_dataset, batch_size=4, shuffle=True, num_workers=0, seed=0,
                         epoch=0).prefetch_factor is None


@pytest.mark.parametrize(("cores", "expected"), [(1, 0), (2, 2), (3, 3), (64, 4)])
def test_default_num_workers(monkeypatch, cores, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert default_num_workers() == expected


def test_importing_vizsla_data_stays_light():
    code = ("import sys, vizsla.data; heavy = [m for m in ('torch', 'PIL', 'torchvision', 'numpy') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
