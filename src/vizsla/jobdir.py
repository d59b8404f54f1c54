"""JobDir: the one place that names every output path of a job."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vizsla.relocation import recorded_origin, relative_record, resolved_record


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder + rename, so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_umask() -> int:
    """The process umask, read once at import (os.umask can only be read by setting it: racy later)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@dataclass(frozen=True)
class JobDir:
    """Paths of everything a job writes. Creating a JobDir creates nothing on disk."""

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    # inputs and bookkeeping
    @property
    def spec(self) -> Path:
        return self.root / "spec.yaml"

    @property
    def result(self) -> Path:
        return self.root / "result.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def tracking(self) -> Path:
        return self.root / "tracking.json"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    # data validation
    @property
    def data_report(self) -> Path:
        return self.root / "data" / "report.json"

    @property
    def bad_files(self) -> Path:
        return self.root / "data" / "bad_files.csv"

    @property
    def split_manifest(self) -> Path:
        return self.root / "data" / "split.csv"

    # training state
    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    # outputs
    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def loss_plot(self) -> Path:
        return self.root / "Loss_plot.png"

    @property
    def confusion_matrix_plot(self) -> Path:
        return self.root / "confusion_matrix.png"

    @property
    def training_report(self) -> Path:
        return self.reports / "training.html"

    # later subpackages
    @property
    def debug(self) -> Path:
        return self.root / "debug"

    @property
    def profile(self) -> Path:
        return self.root / "profile"

    def exists(self) -> bool:
        return self.spec.is_file()

    # what a job that failed in its setup (data validation, model creation) leaves: nothing trained
    SETUP_ENTRIES = ("spec.yaml", "result.json", "train.log", "data")
    SETUP_DATA_FILES = ("report.json", "bad_files.csv", "split.csv")

    def failed_before_training(self) -> bool:
        """Whether the folder holds only a job that Failed before it trained anything (its spec, result,
        log and data report): a new job may take the folder without --overwrite, as nothing is lost."""
        try:
            result = self.read_result()
            entries = {entry.name for entry in self.root.iterdir()}
            data = {entry.name for entry in self.data_report.parent.iterdir()} if "data" in entries else set()
        except (OSError, ValueError):
            return False
        return (
            bool(result)
            and result.get("status") == "Failed"
            and entries <= set(self.SETUP_ENTRIES)
            and data <= set(self.SETUP_DATA_FILES)
        )

    def clear_failed_setup(self) -> None:
        """Delete what `failed_before_training` allows (those files only; the folder stays)."""
        for name in self.SETUP_DATA_FILES:
            (self.data_report.parent / name).unlink(missing_ok=True)
        if self.data_report.parent.is_dir():
            self.data_report.parent.rmdir()
        for name in ("train.log", "result.json", "spec.yaml"):
            (self.root / name).unlink(missing_ok=True)

    def read_result(self) -> dict[str, Any] | None:
        """result.json with its paths absolute where the folder is now (see `resolved_record`); None when
        there is none; ValueError (json.JSONDecodeError) when it is truncated or not a JSON object."""
        if not self.result.is_file():
            return None
        record = json.loads(self.result.read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            raise ValueError(f"{self.result} holds no JSON object")
        return resolved_record(record, self.root, recorded_origin(record))

    def write_result(self, result: dict[str, Any]) -> None:
        """Write result.json atomically with its paths into the folder relative to it."""
        atomic_write_json(self.result, relative_record(result, self.root))

    def read_metrics(self) -> list[dict[str, Any]]:
        """All records of metrics.jsonl; a torn last line (killed writer) is ignored."""
        if not self.metrics.is_file():
            return []
        records = []
        for line in self.metrics.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records
