"""discover_layout: split spellings, explicit names, seeded stratified splits, errors and warnings."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from vizsla.data.layout import discover_layout, stratified_split
from vizsla.errors import DataError
from vizsla.spec import DataSpec
from vizsla.testing.images import make_image_folder


def _layout(root: Path, **spec: object):
    return discover_layout(root, DataSpec(root=str(root), **spec))


def _classes_per_split(layout) -> dict[str, Counter]:
    return {split: Counter(cls for _, cls in entries) for split, entries in layout.files.items()}


@pytest.mark.parametrize(
    ("names", "expected_dirs"),
    [
        (("train", "val"), {"train": "train", "valid": "val"}),
        (("Training", "Validation", "Testing"),
         {"train": "Training", "valid": "Validation", "test": "Testing"}),
        (("TRAIN", "dev", "test"), {"train": "TRAIN", "valid": "dev", "test": "test"}),
    ],
)
def test_split_folder_spellings(tmp_path, names, expected_dirs):
    root = make_image_folder(tmp_path, splits=names, per_class=2)
    layout = _layout(root)
    assert layout.split_dirs == expected_dirs
    assert layout.method == "folders" and layout.classes == ["cat", "dog"]
    assert len(layout.files["train"]) == 4 and len(layout.files["valid"]) == 4
    assert len(layout.files["test"]) == (4 if "test" in expected_dirs else 0)


def test_explicit_split_names_win(tmp_path):
    root = make_image_folder(tmp_path, splits=("fit", "holdout", "exam", "train"), per_class=2)
    layout = _layout(root, train_split="fit", valid_split="holdout", test_split="exam")
    assert layout.split_dirs == {"train": "fit", "valid": "holdout", "test": "exam"}
    assert all(path.parent.parent.name == "fit" for path, _ in layout.files["train"])


def test_explicit_split_name_that_does_not_exist(tmp_path):
    root = make_image_folder(tmp_path, per_class=2)
    with pytest.raises(DataError, match="holdout") as info:
        _layout(root, valid_split="holdout")
    assert str(root / "holdout") in info.value.message


def test_two_folders_for_one_split_is_an_error(tmp_path):
    root = make_image_folder(tmp_path, splits=("train", "val", "valid"), per_class=2)
    with pytest.raises(DataError, match="several valid split folders"):
        _layout(root)


def test_single_folder_split_is_stratified_and_seeded(tmp_path):
    root = make_image_folder(tmp_path, classes=("a", "b", "c"), per_class=10, splits=())
    layout = _layout(root, split_seed=3)
    assert layout.method == "stratified" and layout.split_info["seed"] == 3
    assert layout.split_info["fractions"] == [0.8, 0.1, 0.1]
    counts = _classes_per_split(layout)
    assert counts == {"train": Counter(a=8, b=8, c=8), "valid": Counter(a=1, b=1, c=1),
                      "test": Counter(a=1, b=1, c=1)}
    all_files = [path for entries in layout.files.values() for path, _ in entries]
    assert len(all_files) == len(set(all_files)) == 30
    assert _layout(root, split_seed=3).files == layout.files
    assert _layout(root, split_seed=4).files != layout.files


def test_single_folder_split_fractions(tmp_path):
    root = make_image_folder(tmp_path, per_class=20, splits=())
    counts = _classes_per_split(_layout(root, split_fractions=(0.5, 0.5, 0.0)))
    assert counts["train"] == Counter(cat=10, dog=10) and counts["valid"] == Counter(cat=10, dog=10)
    assert not counts["test"]


def test_class_with_too_few_images_stays_in_train(tmp_path):
    root = make_image_folder(tmp_path, classes=("big",), per_class=10, splits=())
    make_image_folder(tmp_path, classes=("tiny",), per_class=2, splits=())
    layout = _layout(root)
    counts = _classes_per_split(layout)
    assert counts["train"]["tiny"] == 2 and counts["valid"]["tiny"] == 0 and counts["test"]["tiny"] == 0
    assert any("'tiny' has only 2 image(s)" in w for w in layout.warnings)


def test_stratified_split_keeps_every_class_in_every_split_when_possible():
    by_class = {"x": [Path(f"x{i}") for i in range(3)], "y": [Path(f"y{i}") for i in range(50)]}
    files, warns = stratified_split(by_class, (0.8, 0.1, 0.1), seed=0)
    counts = {split: Counter(cls for _, cls in entries) for split, entries in files.items()}
    assert counts["train"]["x"] == counts["valid"]["x"] == counts["test"]["x"] == 1
    assert counts["valid"]["y"] == counts["test"]["y"] == 5 and not warns


def test_valid_is_carved_from_train_when_only_train_and_test_exist(tmp_path):
    root = make_image_folder(tmp_path, splits=("train", "test"), per_class=9)
    layout = _layout(root, split_seed=1)
    assert layout.method == "carved_valid" and layout.split_dirs == {"train": "train", "valid": "train",
                                                                    "test": "test"}
    counts = _classes_per_split(layout)
    assert counts["valid"] == Counter(cat=1, dog=1) and counts["train"] == Counter(cat=8, dog=8)
    assert all(path.parent.parent.name == "train" for path, _ in layout.files["valid"])
    assert not {p for p, _ in layout.files["valid"]} & {p for p, _ in layout.files["train"]}
    assert _layout(root, split_seed=1).files == layout.files


def test_hidden_files_are_skipped_and_nested_files_found(tmp_path):
    root = make_image_folder(tmp_path, per_class=2)
    cat = root / "train" / "cat"
    (cat / ".DS_Store").write_bytes(b"x")
    (cat / "Thumbs.db").write_bytes(b"x")
    (cat / ".hidden").mkdir()
    (cat / ".hidden" / "a.jpg").write_bytes(b"x")
    (root / "train" / "__MACOSX" / "cat").mkdir(parents=True)
    (cat / "nested" / "deeper").mkdir(parents=True)
    shutil.copy(next(cat.glob("*.jpg")), cat / "nested" / "deeper" / "n.jpg")
    (cat / "notes.txt").write_text("not an image, still listed so validation reports it")
    layout = _layout(root)
    names = sorted(path.name for path, cls in layout.files["train"] if cls == "cat")
    assert names == ["cat_000.jpg", "cat_001.png", "n.jpg", "notes.txt"]
    assert layout.classes == ["cat", "dog"]


def test_missing_root_names_the_path(tmp_path):
    with pytest.raises(DataError, match="not found") as info:
        _layout(tmp_path / "nope")
    assert str(tmp_path / "nope") in info.value.message


def test_root_that_is_a_file(tmp_path):
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="not a folder"):
        _layout(tmp_path / "file.jpg")


def test_no_class_folders(tmp_path):
    (tmp_path / "loose.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="no class folders") as info:
        _layout(tmp_path)
    assert str(tmp_path) in info.value.message


def test_one_class_is_an_error(tmp_path):
    root = make_image_folder(tmp_path, classes=("cat",), per_class=3)
    with pytest.raises(DataError, match="only one class") as info:
        _layout(root)
    assert str(root / "train") in info.value.message


def test_no_images_in_train(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / "train" / name).mkdir(parents=True)
    (tmp_path / "valid").mkdir()
    with pytest.raises(DataError, match="no image files") as info:
        _layout(tmp_path)
    assert str(tmp_path / "train") in info.value.message


def test_split_folders_without_train(tmp_path):
    root = make_image_folder(tmp_path, splits=("valid", "test"), per_class=2)
    with pytest.raises(DataError, match="no train folder"):
        _layout(root)


def test_class_set_differences_are_warnings(tmp_path):
    root = make_image_folder(tmp_path, classes=("cat", "dog", "owl"), splits=("train",), per_class=2)
    make_image_folder(tmp_path, classes=("cat", "eel"), splits=("valid",), per_class=2)
    (root / "train" / "empty_class").mkdir()
    layout = _layout(root)
    assert layout.classes == ["cat", "dog", "owl"]
    assert Counter(cls for _, cls in layout.files["valid"]) == Counter(cat=2)
    joined = "\n".join(layout.warnings)
    assert "valid classes not in train dropped (2 files): eel" in joined
    assert "train classes with no valid images: dog, owl" in joined
    assert "empty class folder(s)" in joined and "empty_class" in joined


def test_folders_that_are_not_splits_are_reported(tmp_path):
    root = make_image_folder(tmp_path, splits=("train", "valid"), per_class=2)
    (root / "extras" / "x").mkdir(parents=True)
    (root / "train" / "README.md").write_text("loose file")
    layout = _layout(root)
    assert any("not splits were ignored: extras" in w for w in layout.warnings)
    assert any("outside class folders" in w for w in layout.warnings)
