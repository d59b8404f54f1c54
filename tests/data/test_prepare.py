"""prepare_data: bad files listed and left out, odd formats kept, reports written, unusable data refused."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import pytest

from vizsla.data import PreparedData, prepare_data, validate
from vizsla.data.prepare import verdict_cache_file
from vizsla.data.validate import content_digest
from vizsla.errors import DataError
from vizsla.jobdir import JobDir
from vizsla.spec import DataSpec
from vizsla.testing.images import READABLE, add_broken_files, make_image_folder


def _prepare(root: Path, job: Path, **spec: object) -> PreparedData:
    return prepare_data(DataSpec(root=str(root), **spec), JobDir(job), progress=False)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_broken_files_are_listed_and_odd_ones_kept(tmp_path, caplog):
    root = make_image_folder(tmp_path / "data")
    expected = add_broken_files(root / "train" / "cat")
    with caplog.at_level(logging.WARNING, logger="vizsla.data"):
        data = _prepare(root, tmp_path / "job")
    bad = {Path(b.path).name: b for b in data.bad_files}
    assert set(bad) == {name for name, keyword in expected.items() if keyword != READABLE}
    for name, item in bad.items():
        assert expected[name] in item.reason and item.split == "train"
    train_names = {Path(path).name for path, _ in data.splits["train"]}
    assert {name for name, keyword in expected.items() if keyword == READABLE} <= train_names
    assert not set(bad) & train_names

    job = JobDir(tmp_path / "job")
    rows = _rows(job.bad_files)
    assert {row["path"] for row in rows} == {f"train/cat/{name}" for name in bad}
    assert all(expected[Path(row["path"]).name] in row["reason"] for row in rows)
    report = json.loads(job.data_report.read_text())
    assert report["num_bad_files"] == len(bad) == 6
    assert report["splits"]["train"]["per_class"] == {"cat": 6 + 9, "dog": 6}
    assert data.report_path == job.data_report
    assert any("unreadable file(s) left out" in r.message for r in caplog.records)


def test_splits_labels_and_manifest(tmp_path, image_root):
    data = _prepare(image_root, tmp_path / "job")
    assert data.classes == ["cat", "dog"] and data.test_source == "test"
    assert data.split_dirs == {"train": "train", "valid": "valid", "test": "test"}
    assert {split: len(samples) for split, samples in data.splits.items()} == {"train": 12, "valid": 12,
                                                                              "test": 12}
    for split, samples in data.splits.items():
        for path, label in samples:
            assert Path(path).is_absolute() and Path(path).parts[-3] == split
            assert Path(path).parent.name == data.classes[label]
    rows = _rows(JobDir(tmp_path / "job").split_manifest)
    assert len(rows) == 36 and rows[0] == {"split": "train", "path": "train/cat/cat_000.jpg", "label": "cat"}
    assert data.bad_files == [] and data.warnings == []


def test_without_test_split_test_metrics_come_from_valid(tmp_path):
    root = make_image_folder(tmp_path / "data", splits=("train", "val"))
    data = _prepare(root, tmp_path / "job")
    assert data.test_source == "valid" and data.splits["test"] == data.splits["valid"]
    assert data.split_dirs == {"train": "train", "valid": "val"}
    report = json.loads(JobDir(tmp_path / "job").data_report.read_text())
    assert report["test_source"] == "valid" and set(report["splits"]) == {"train", "valid"}
    assert {row["split"] for row in _rows(JobDir(tmp_path / "job").split_manifest)} == {"train", "valid"}


def test_single_folder_split_is_recorded_and_reproducible(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=10, splits=())
    first = _prepare(root, tmp_path / "job1", split_seed=7)
    second = _prepare(root, tmp_path / "job2", split_seed=7)
    assert first.splits == second.splits and first.split_dirs == {"train": ".", "valid": ".", "test": "."}
    manifest = JobDir(tmp_path / "job1").split_manifest
    assert manifest.read_text() == JobDir(tmp_path / "job2").split_manifest.read_text()
    assert [row["split"] for row in _rows(manifest)].count("valid") == 2
    report = json.loads(JobDir(tmp_path / "job1").data_report.read_text())
    assert report["split"] == {"method": "stratified", "seed": 7, "fractions": [0.8, 0.1, 0.1]}


def test_class_without_readable_train_images_is_dropped(tmp_path):
    root = make_image_folder(tmp_path / "data", classes=("cat", "dog", "owl"), per_class=2)
    for path in (root / "train" / "owl").iterdir():
        path.write_bytes(b"broken")
    data = _prepare(root, tmp_path / "job")
    assert data.classes == ["cat", "dog"]
    assert all(label in (0, 1) for samples in data.splits.values() for _, label in samples)
    assert len(data.splits["valid"]) == 4
    assert any("no readable train image dropped" in w and "owl" in w for w in data.warnings)


def test_unreadable_validation_split_is_an_error_after_the_report(tmp_path):
    root = make_image_folder(tmp_path / "data", splits=("train", "valid"), per_class=2)
    for path in (root / "valid").rglob("*.*"):
        path.write_bytes(b"")
    with pytest.raises(DataError, match="no readable validation images"):
        _prepare(root, tmp_path / "job")
    job = JobDir(tmp_path / "job")
    assert len(_rows(job.bad_files)) == 4 and job.data_report.is_file()


def test_single_class_after_bad_files_is_an_error(tmp_path):
    root = make_image_folder(tmp_path / "data", per_class=2)
    for path in (root / "train" / "dog").iterdir():
        path.write_bytes(b"\x00" * 10)
    with pytest.raises(DataError, match="fewer than 2 classes"):
        _prepare(root, tmp_path / "job")


def test_strong_imbalance_is_a_warning(tmp_path):
    root = make_image_folder(tmp_path / "data", classes=("many",), per_class=22, splits=("train", "valid"))
    make_image_folder(tmp_path / "data", classes=("few",), per_class=2, splits=("train", "valid"))
    data = _prepare(root, tmp_path / "job")
    assert any("strong class imbalance" in w and "'many' has 22" in w for w in data.warnings)


def test_data_errors_name_the_path(tmp_path):
    with pytest.raises(DataError) as info:
        _prepare(tmp_path / "missing", tmp_path / "job")
    assert str(tmp_path / "missing") in info.value.message


def _age(*paths: Path, seconds: float = 60.0) -> None:
    """Back-date files (all files under a folder) so their verdicts may be cached: fresh mtimes are not."""
    stamp = time.time_ns() - int(seconds * 1e9) + 123_456  # not a whole second: a fine-grained filesystem
    for path in paths:
        for file in [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]:
            os.utime(file, ns=(stamp, stamp))


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = validate.decode_image

    def counting(data: bytes, **kwargs: object) -> object:
        calls.append(content_digest(data))
        return real(data, **kwargs)

    monkeypatch.setattr(validate, "decode_image", counting)
    return calls


def _validation_cache(job: Path) -> dict[str, int]:
    return json.loads(JobDir(job).data_report.read_text())["validation_cache"]


def test_digests_name_the_content_of_every_sample(tmp_path, image_root):
    data = _prepare(image_root, tmp_path / "job")
    samples = {path for split in data.splits.values() for path, _ in split}
    assert set(data.digests) == samples
    for path in samples:
        assert data.digests[path] == hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()
    assert len(set(data.digests.values())) == len(samples)  # generated images all differ


def test_second_prepare_decodes_only_new_or_changed_files(tmp_path, image_root, monkeypatch):
    add_broken_files(image_root / "train" / "cat")
    _age(image_root)
    decodes = _count_decodes(monkeypatch)
    first = _prepare(image_root, tmp_path / "job1")
    total = len(decodes)
    assert _validation_cache(tmp_path / "job1") == {"reused": 0, "decoded": total}

    second = _prepare(image_root, tmp_path / "job2")
    assert len(decodes) == total  # nothing decoded again, good and bad verdicts alike
    assert _validation_cache(tmp_path / "job2") == {"reused": total, "decoded": 0}
    assert second.splits == first.splits and second.digests == first.digests
    assert [(b.path, b.reason) for b in second.bad_files] == [(b.path, b.reason) for b in first.bad_files]

    changed = image_root / "train" / "dog" / "dog_000.jpg"
    changed.write_bytes((image_root / "train" / "dog" / "dog_002.jpg").read_bytes())
    broken = image_root / "valid" / "cat" / "cat_000.jpg"
    broken.write_bytes(broken.read_bytes()[:100])
    new = make_image_folder(tmp_path / "more", classes=("dog",), per_class=1, splits=("test",))
    (new / "test" / "dog" / "dog_000.jpg").rename(image_root / "test" / "dog" / "extra.jpg")
    _age(changed, broken, image_root / "test" / "dog" / "extra.jpg", seconds=30.0)
    third = _prepare(image_root, tmp_path / "job3")
    assert len(decodes) == total + 3
    assert _validation_cache(tmp_path / "job3") == {"reused": total - 2, "decoded": 3}
    assert third.digests[str(changed)] == third.digests[str(image_root / "train" / "dog" / "dog_002.jpg")]
    assert str(broken) in {b.path for b in third.bad_files}


def test_a_file_changed_within_the_timestamp_granularity_is_decoded_again(tmp_path, image_root, monkeypatch):
    _age(image_root)
    recent = image_root / "train" / "cat" / "cat_000.jpg"
    future = time.time_ns() + 10**9  # a clock tick that has not passed yet: its mtime cannot be trusted
    os.utime(recent, ns=(future, future))
    _prepare(image_root, tmp_path / "job1")
    decodes = _count_decodes(monkeypatch)
    _prepare(image_root, tmp_path / "job2")
    assert decodes == [content_digest(recent.read_bytes())]


def test_verdicts_depend_on_the_pixel_limit(tmp_path, image_root, monkeypatch):
    _age(image_root)
    _prepare(image_root, tmp_path / "job1")
    decodes = _count_decodes(monkeypatch)
    with pytest.raises(DataError, match="fewer than 2 classes"):
        _prepare(image_root, tmp_path / "job2", max_image_pixels=1000)  # images are 40x32 = 1280 px
    rows = _rows(JobDir(tmp_path / "job2").bad_files)
    assert len(decodes) == 36 and len(rows) == 36  # checked again: a good verdict under a higher limit
    assert all("decompression bomb" in row["reason"] for row in rows)


def test_corrupt_verdict_cache_is_ignored_and_rebuilt(tmp_path, image_root):
    _age(image_root)
    base = tmp_path / "cache"
    prepare_data(DataSpec(root=str(image_root)), JobDir(tmp_path / "job1"), progress=False, cache_dir=base)
    files = list((base / "validation").glob("*.json"))
    assert len(files) == 1 and files[0] == verdict_cache_file(image_root, base)
    files[0].write_text('{"format": 1, "entr')
    data = prepare_data(DataSpec(root=str(image_root)), JobDir(tmp_path / "job2"), progress=False,
                        cache_dir=base)
    assert len(data.splits["train"]) == 12 and _validation_cache(tmp_path / "job2")["reused"] == 0
    assert len(json.loads(files[0].read_text())["entries"]) == 36
    prepare_data(DataSpec(root=str(image_root)), JobDir(tmp_path / "job3"), progress=False, cache_dir=base)
    assert _validation_cache(tmp_path / "job3") == {"reused": 36, "decoded": 0}
