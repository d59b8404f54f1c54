"""Decode every file once before training, so bad files are listed up front instead of failing an epoch.

Decoding runs in a thread pool sized to the cores: Pillow releases the GIL while it decodes, and JPEGs are
decoded at a reduced DCT scale (draft), which still reads and checks all of their compressed data.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vizsla.data.decode import BadImageError, read_and_decode
from vizsla.data.layout import Entry
from vizsla.jobdir import JobDir, atomic_write_json, atomic_write_text

_CHUNK = 512  # files submitted to the pool at a time: bounds memory for million-file folders


@dataclass(frozen=True)
class BadFile:
    """A file left out of training, with the split it was in and why."""

    split: str
    path: str
    reason: str


@dataclass(frozen=True)
class ValidationResult:
    """Readable files per split (same order as given) and the bad ones."""

    good: dict[str, list[Entry]]
    bad: list[BadFile]
    seconds: float


def available_cores() -> int:
    """Cores this process may run on (cgroup/affinity aware where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _check(path: Path, max_pixels: int, draft_size: int | None) -> str | None:
    try:
        read_and_decode(path, max_pixels=max_pixels, draft_size=draft_size)
    except BadImageError as exc:
        return exc.reason
    return None


def _reasons(paths: Sequence[Path], check: Callable[[Path], str | None], workers: int,
             advance: Callable[[], None]) -> Iterator[str | None]:
    """Check PATHS in a thread pool and yield their reasons in order (None = readable)."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vizsla-validate") as pool:
        for start in range(0, len(paths), _CHUNK):
            for reason in pool.map(check, paths[start : start + _CHUNK]):
                advance()
                yield reason


def validate_files(files: dict[str, list[Entry]], *, max_pixels: int, draft_size: int | None = None,
                   progress: bool = False, workers: int | None = None) -> ValidationResult:
    """Decode every file of every split once; return the good entries and the bad files with reasons."""
    started = time.perf_counter()
    order = [(split, entry) for split, entries in files.items() for entry in entries]
    paths = [entry[0] for _, entry in order]

    def check(path: Path) -> str | None:
        return _check(path, max_pixels, draft_size)

    good: dict[str, list[Entry]] = {split: [] for split in files}
    bad: list[BadFile] = []
    with _ProgressBar(len(paths), progress) as advance:
        reasons = _reasons(paths, check, workers or available_cores(), advance)
        for (split, entry), reason in zip(order, reasons, strict=True):
            if reason is None:
                good[split].append(entry)
            else:
                bad.append(BadFile(split, str(entry[0]), reason))
    return ValidationResult(good, bad, time.perf_counter() - started)


class _ProgressBar:
    """A rich progress bar on stderr when enabled; a no-op otherwise."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self._progress, self._task = total, enabled, None, None

    def __enter__(self) -> Callable[[], None]:
        if not self.enabled:
            return lambda: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._progress = Progress("checking images", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                  console=Console(stderr=True), transient=False)
        self._progress.start()
        task = self._progress.add_task("check", total=self.total)
        return lambda: self._progress.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def relative_path(path: str | Path, root: Path) -> str:
    """Path relative to the data root for reports (absolute when it lies elsewhere)."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _csv_text(header: Sequence[str], rows: Iterator[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_bad_files(job_dir: JobDir, bad: Sequence[BadFile], root: Path) -> Path:
    """data/bad_files.csv: split, path (relative to the data root), reason; header only when none."""
    rows = ((b.split, relative_path(b.path, root), b.reason) for b in bad)
    atomic_write_text(job_dir.bad_files, _csv_text(("split", "path", "reason"), rows))
    return job_dir.bad_files


def write_split_manifest(job_dir: JobDir, splits: dict[str, list[tuple[str, int]]], classes: Sequence[str],
                         root: Path) -> Path:
    """data/split.csv: split, path, label (class name) of every sample used, so the split is on record."""
    rows = ((split, relative_path(path, root), classes[label])
            for split in ("train", "valid", "test") if split in splits for path, label in splits[split])
    atomic_write_text(job_dir.split_manifest, _csv_text(("split", "path", "label"), rows))
    return job_dir.split_manifest


def write_report(job_dir: JobDir, report: dict[str, Any]) -> Path:
    """data/report.json, written atomically."""
    atomic_write_json(job_dir.data_report, report)
    return job_dir.data_report
