"""Fixtures of the data tests: generated folders, a folder with broken files, the real-photo dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from vizsla.testing.images import add_broken_files, make_image_folder

SHARED_DATASETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"

SMALL_PREPROCESSING = {
    "input_size": [3, 32, 32],
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "interpolation": "bilinear",
    "crop_pct": 0.875,
}


@pytest.fixture
def preprocessing() -> dict:
    return {**SMALL_PREPROCESSING}


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    """ROOT/{train,valid,test}/{cat,dog}: 6 images per class and split."""
    return make_image_folder(tmp_path / "images")


@pytest.fixture
def broken_folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A folder holding every broken and odd-but-readable file, with their expected reason keywords."""
    folder = tmp_path / "odd"
    return folder, add_broken_files(folder)


@pytest.fixture
def hymenoptera() -> Path:
    root = SHARED_DATASETS / "hymenoptera"
    if not root.is_dir():
        pytest.skip(f"real photos not available: {root} is absent")
    return root.resolve()
