"""Decode every file once before training, so bad files are listed up front instead of failing an epoch.

Decoding runs in a thread pool sized to the cores: Pillow releases the GIL while it decodes, and JPEGs are
decoded at a reduced DCT scale (draft), which still reads and checks all of their compressed data. Every good
file also gets a content digest (the feature cache keys on it), and the verdicts are kept in a small JSON file
per data root, so the next preparation of the same folder (every tuning trial runs one) decodes only new or
changed files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vizsla.data.decode import BadImageError, decode_image
from vizsla.data.layout import Entry
from vizsla.infra.hardware import available_cores
from vizsla.infra.io import atomic_write_bytes, atomic_write_json
from vizsla.jobdir import JobDir

log = logging.getLogger("vizsla.data")

_CHUNK = 512  # files submitted to the pool at a time: bounds memory for million-file folders
_VERDICTS_FORMAT = 1
# A verdict is trusted only when the file's mtime is older than the moment it was checked by more than the
# timestamp granularity; otherwise a same-size rewrite within one clock tick would keep its old mtime.
# Linux stamps files with a coarse clock (a few ms); whole-second mtimes mean a 1-2 s filesystem (FAT, HFS+).
_FINE_MARGIN_NS = 100_000_000
_COARSE_MARGIN_NS = 2_500_000_000


@dataclass(frozen=True)
class BadFile:
    """A file left out of training, with the split it was in and why."""

    split: str
    path: str
    reason: str


@dataclass(frozen=True)
class ValidationResult:
    """Readable files per split (same order as given), the bad ones, and the content digest of each good one.

    `reused` counts the files whose verdict came from the verdict cache instead of a decode.
    """

    good: dict[str, list[Entry]]
    bad: list[BadFile]
    seconds: float
    digests: dict[str, str]
    reused: int = 0


@dataclass(frozen=True)
class _Verdict:
    """One file's check: a digest when it is readable, a reason when not; `stat` keys the verdict cache."""

    digest: str | None
    reason: str | None
    stat: tuple[int, int] | None  # (size, mtime_ns) when the verdict may be cached
    reused: bool = False


def content_digest(data: bytes) -> str:
    """128-bit BLAKE2b of a file's bytes, hex: names its content in the feature cache key."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def trusted_mtime(mtime_ns: int, now_ns: int) -> bool:
    """Whether a file stamped MTIME_NS, seen at NOW_NS, would get a newer mtime from any later rewrite."""
    coarse = mtime_ns % 1_000_000 == 0
    margin = _COARSE_MARGIN_NS if coarse else _FINE_MARGIN_NS
    return mtime_ns < now_ns - margin


def _trusted_stat(path: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) of PATH, or None when its mtime is too recent to tell a later rewrite apart."""
    now = time.time_ns()
    stat = os.stat(path)
    return (stat.st_size, stat.st_mtime_ns) if trusted_mtime(stat.st_mtime_ns, now) else None


def _check(path: Path, max_pixels: int, draft_size: int | None) -> _Verdict:
    """Read and decode PATH once; the stat is taken first, so a file changed meanwhile is checked again."""
    try:
        stat = _trusted_stat(path)
        data = Path(path).read_bytes()
    except OSError as exc:
        return _Verdict(None, f"cannot read file: {exc.strerror or exc}", None)
    try:
        decode_image(data, max_pixels=max_pixels, draft_size=draft_size)
    except BadImageError as exc:
        return _Verdict(None, exc.reason, stat)
    return _Verdict(content_digest(data), None, stat)


class VerdictCache:
    """Verdicts of earlier checks keyed by (absolute path, size, mtime_ns, pixel limit), in one JSON file.

    A missing, corrupt or outdated file is an empty cache (rebuilt on save); saving is atomic, and a failed
    save only costs the next run its decodes.
    """

    def __init__(self, path: Path | None, max_pixels: int) -> None:
        self.path, self.max_pixels = path, max_pixels
        self.entries: dict[str, list[Any]] = self._load() if path is not None else {}
        self.seen: dict[str, list[Any]] = {}

    def _load(self) -> dict[str, list[Any]]:
        from PIL import __version__ as pillow

        try:
            content = json.loads(self.path.read_text(encoding="utf-8"))  # type: ignore[union-attr]
            if content["format"] == _VERDICTS_FORMAT and content["pillow"] == pillow:
                return dict(content["entries"])
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.info("ignoring unreadable validation cache %s (%s); it will be rebuilt", self.path, exc)
        return {}

    def lookup(self, path: Path) -> _Verdict | None:
        """The cached verdict of PATH when its size and mtime still match, else None."""
        entry = self.entries.get(os.path.abspath(path))
        if entry is None or len(entry) != 5:
            return None
        try:
            stat = _trusted_stat(path)
        except OSError:
            return None
        if stat is None or [*stat, self.max_pixels] != entry[:3]:
            return None
        return _Verdict(entry[3], entry[4], stat, reused=True)

    def record(self, path: Path, verdict: _Verdict) -> None:
        """Keep VERDICT for the next run when its file's stat can be trusted."""
        if verdict.stat is not None:
            entry = [*verdict.stat, self.max_pixels, verdict.digest, verdict.reason]
            self.seen[os.path.abspath(path)] = entry

    def save(self) -> None:
        """Write this run's verdicts plus earlier ones of files that still exist (other split choices);
        nothing when every verdict was reused and no other file is on record (the usual repeated job)."""
        if self.path is None or self.seen == self.entries:
            return
        from PIL import __version__ as pillow

        kept = {p: e for p, e in self.entries.items() if p not in self.seen and os.path.exists(p)}
        content = {"format": _VERDICTS_FORMAT, "pillow": pillow, "entries": kept | self.seen}
        try:
            atomic_write_json(self.path, content)
        except OSError as exc:
            log.warning("cannot write the validation cache %s: %s", self.path, exc)


def _verdicts(paths: Sequence[Path], check: Callable[[Path], _Verdict], workers: int,
              advance: Callable[[], None]) -> Iterator[_Verdict]:
    """Check PATHS in a thread pool and yield their verdicts in order.

    Left early (a stop signal, an error), the checks not started yet are cancelled: only those running
    finish, not the rest of the chunk (up to _CHUNK decodes, tens of seconds of large photos)."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vizsla-validate")
    try:
        for start in range(0, len(paths), _CHUNK):
            for verdict in pool.map(check, paths[start : start + _CHUNK]):
                advance()
                yield verdict
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def validate_files(files: dict[str, list[Entry]], *, max_pixels: int, draft_size: int | None = None,
                   progress: bool = False, workers: int | None = None,
                   cache_file: Path | None = None) -> ValidationResult:
    """Decode every file of every split once (or reuse its cached verdict); return good and bad files.

    `cache_file`: the JSON verdict cache of this data root (None: no cache, every file is decoded).
    """
    started = time.perf_counter()
    cache = VerdictCache(cache_file, max_pixels)
    order = [(split, entry) for split, entries in files.items() for entry in entries]

    def check(path: Path) -> _Verdict:
        return cache.lookup(path) or _check(path, max_pixels, draft_size)

    good: dict[str, list[Entry]] = {split: [] for split in files}
    bad: list[BadFile] = []
    digests: dict[str, str] = {}
    reused = 0
    with ProgressBar(len(order), progress) as advance:
        verdicts = _verdicts([entry[0] for _, entry in order], check, workers or available_cores(), advance)
        for (split, entry), verdict in zip(order, verdicts, strict=True):
            cache.record(entry[0], verdict)
            reused += verdict.reused
            if verdict.digest is not None:
                good[split].append(entry)
                digests[str(entry[0])] = verdict.digest
            else:
                bad.append(BadFile(split, str(entry[0]), verdict.reason or "unreadable"))
    cache.save()
    return ValidationResult(good, bad, time.perf_counter() - started, digests, reused)


class ProgressBar:
    """A rich progress bar on stderr when enabled; a no-op otherwise. Entering gives `advance(n=1)`."""

    def __init__(self, total: int, enabled: bool, description: str = "checking images") -> None:
        self.total, self.enabled, self.description, self._progress = total, enabled, description, None

    def __enter__(self) -> Callable[..., None]:
        if not self.enabled:
            return lambda n=1: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._progress = Progress(self.description, BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                  console=Console(stderr=True), transient=False)
        self._progress.start()
        task = self._progress.add_task("work", total=self.total)
        return lambda n=1: self._progress.advance(task, n)

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


# File names are bytes on POSIX: one that is not valid UTF-8 (a Latin-1 "caf\xe9.jpg" from an old archive)
# reaches Python as a str with surrogate escapes (os.fsdecode). The CSV files of a job hold such a name as
# the bytes the file system has (UTF-8 for every other name), so that reading them back with
# errors="surrogateescape" (`read_csv_text`, or pandas' encoding_errors="surrogateescape") and
# os.fsencode give the same file again.
CSV_ERRORS = "surrogateescape"


def write_csv_text(path: Path, text: str) -> None:
    """Write CSV TEXT atomically as UTF-8, undecodable file-name bytes as they were (see CSV_ERRORS)."""
    atomic_write_bytes(path, text.encode("utf-8", CSV_ERRORS))


def read_csv_text(path: Path) -> str:
    """A CSV written by `write_csv_text`, with its file names as the str os.fsdecode gives for them."""
    return path.read_bytes().decode("utf-8", CSV_ERRORS)


def write_bad_files(job_dir: JobDir, bad: Sequence[BadFile], root: Path) -> Path:
    """data/bad_files.csv: split, path (relative to the data root), reason; header only when none."""
    rows = ((b.split, relative_path(b.path, root), b.reason) for b in bad)
    write_csv_text(job_dir.bad_files, _csv_text(("split", "path", "reason"), rows))
    return job_dir.bad_files


def write_split_manifest(job_dir: JobDir, splits: dict[str, list[tuple[str, int]]], classes: Sequence[str],
                         root: Path) -> Path:
    """data/split.csv: split, path, label (class name) of every sample used, so the split is on record."""
    rows = ((split, relative_path(path, root), classes[label])
            for split in ("train", "valid", "test") if split in splits for path, label in splits[split])
    write_csv_text(job_dir.split_manifest, _csv_text(("split", "path", "label"), rows))
    return job_dir.split_manifest


def write_report(job_dir: JobDir, report: dict[str, Any]) -> Path:
    """data/report.json, written atomically."""
    atomic_write_json(job_dir.data_report, report)
    return job_dir.data_report
