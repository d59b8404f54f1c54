"""A repeated prepare_data on an unchanged folder reuses the prepared result; any change prepares again."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from vizsla.data import PreparedData, prepare, prepare_data
from vizsla.data.prepare import folder_digest, verdict_cache_file
from vizsla.errors import DataError
from vizsla.jobdir import JobDir
from vizsla.spec import DataSpec
from vizsla.testing.images import add_broken_files, make_image_folder


def _age(root: Path, seconds: float = 60.0) -> None:
    """Back-date every file: a fresh mtime cannot be trusted, so nothing would be reused."""
    stamp = time.time_ns() - int(seconds * 1e9) + 123_456
    for file in (p for p in root.rglob("*") if p.is_file()):
        os.utime(file, ns=(stamp, stamp))


def _prepare(root: Path, job: Path, **spec: object) -> PreparedData:
    return prepare_data(DataSpec(root=str(root), **spec), JobDir(job), progress=False)


def _report(job: Path) -> dict:
    return json.loads(JobDir(job).data_report.read_text())


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Roots whose layout was discovered (the cold path); the reused path discovers nothing."""
    calls: list[Path] = []
    real = prepare.discover_layout

    def counting(root: Path, spec: DataSpec) -> object:
        calls.append(root)
        return real(root, spec)

    monkeypatch.setattr(prepare, "discover_layout", counting)
    return calls


def test_an_unchanged_folder_is_prepared_once(tmp_path: Path, image_root: Path, counted: list[Path]) -> None:
    add_broken_files(image_root / "train" / "cat")
    _age(image_root)
    first = _prepare(image_root, tmp_path / "job1")
    second = _prepare(image_root, tmp_path / "job2")
    assert len(counted) == 1
    assert second == PreparedData(**{**first.__dict__, "report_path": JobDir(tmp_path / "job2").data_report})
    assert second.splits["test"] and second.bad_files and second.warnings == first.warnings
    one, two = JobDir(tmp_path / "job1"), JobDir(tmp_path / "job2")
    assert two.split_manifest.read_bytes() == one.split_manifest.read_bytes()
    assert two.bad_files.read_bytes() == one.bad_files.read_bytes()
    report, earlier = _report(tmp_path / "job2"), _report(tmp_path / "job1")
    files = earlier["validation_cache"]["decoded"]
    assert report["validation_cache"] == {"reused": files, "decoded": 0} and report["prepared_from_cache"]
    ignored = {"validation_cache", "validation_seconds", "prepared_from_cache"}
    assert {k: v for k, v in report.items() if k not in ignored} == {
        k: v for k, v in earlier.items() if k not in ignored
    }


def test_valid_as_test_split_is_restored(tmp_path: Path, counted: list[Path]) -> None:
    root = make_image_folder(tmp_path / "images", splits=("train", "valid"))
    _age(root)
    first = _prepare(root, tmp_path / "job1")
    second = _prepare(root, tmp_path / "job2")
    assert len(counted) == 1 and second.test_source == first.test_source == "valid"
    assert second.splits["test"] == second.splits["valid"] == first.splits["valid"]


@pytest.mark.parametrize("change", ["add", "remove", "rename", "touch", "rewrite"])
def test_any_change_in_the_folder_prepares_again(
    tmp_path: Path, image_root: Path, counted: list[Path], change: str
) -> None:
    _age(image_root)
    first = _prepare(image_root, tmp_path / "job1")
    target = image_root / "train" / "dog" / "dog_000.jpg"
    if change == "add":
        (image_root / "valid" / "dog" / "copy.jpg").write_bytes(target.read_bytes())
    elif change == "remove":
        target.unlink()
    elif change == "rename":
        target.rename(target.with_name("renamed.jpg"))
    elif change == "touch":
        stamp = time.time_ns() - 30 * 10**9 + 7
        os.utime(target, ns=(stamp, stamp))
    else:  # same mtime, other size
        stat = target.stat()
        target.write_bytes(target.read_bytes()[:200])
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    _age(image_root, seconds=30.0)
    second = _prepare(image_root, tmp_path / "job2")
    assert len(counted) == 2
    third = _prepare(image_root, tmp_path / "job3")
    assert len(counted) == 2 and third.splits == second.splits  # the new state is kept in turn
    if change == "rewrite":
        assert [b.path for b in second.bad_files] == [str(target)] and not first.bad_files


def test_fresh_files_are_not_trusted(tmp_path: Path, image_root: Path, counted: list[Path]) -> None:
    _age(image_root)
    recent = image_root / "train" / "cat" / "cat_000.jpg"
    future = time.time_ns() + 10**9
    os.utime(recent, ns=(future, future))
    assert folder_digest(image_root) is None
    _prepare(image_root, tmp_path / "job1")
    _prepare(image_root, tmp_path / "job2")
    assert len(counted) == 2


def test_settings_and_verdicts_key_the_reuse(tmp_path: Path, counted: list[Path]) -> None:
    root = make_image_folder(tmp_path / "flat", splits=(), per_class=10)
    _age(root)
    seed0 = _prepare(root, tmp_path / "job1")
    seed1 = _prepare(root, tmp_path / "job2", split_seed=1)
    assert len(counted) == 2 and seed1.splits != seed0.splits
    assert _prepare(root, tmp_path / "job3").splits == seed0.splits
    assert _prepare(root, tmp_path / "job4", split_seed=1).splits == seed1.splits
    assert len(counted) == 2
    verdict_cache_file(root).unlink()  # the verdicts it came from are gone: prepared (and checked) again
    assert _prepare(root, tmp_path / "job5").splits == seed0.splits
    assert len(counted) == 3


def test_unusable_data_fails_the_same_way_when_reused(tmp_path: Path, counted: list[Path]) -> None:
    root = make_image_folder(tmp_path / "images", splits=("train", "valid"))
    for file in (p for p in (root / "valid").rglob("*") if p.is_file()):
        file.write_bytes(b"not an image")
    _age(root)
    for job in ("job1", "job2"):
        with pytest.raises(DataError, match="no readable validation images"):
            _prepare(root, tmp_path / job)
        assert JobDir(tmp_path / job).data_report.is_file()
    assert len(counted) == 1
