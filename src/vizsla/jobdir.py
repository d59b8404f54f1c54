"""JobDir: the one place that names every output path of a job."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vizsla.infra.io import atomic_write_json, read_jsonl
from vizsla.relocation import recorded_origin, relative_record, resolved_record


@dataclass(frozen=True)
class JobDir:
    """Paths of everything a job writes. Creating a JobDir creates nothing on disk."""

    root: Path

    # File names that code without a JobDir at hand needs (e.g. to recognise a job folder); a tuning job's
    # folder uses the same names for its spec and result.
    SPEC_FILE = "spec.yaml"
    RESULT_FILE = "result.json"
    METRICS_FILE = "metrics.jsonl"
    DEBUG_DIR = "debug"  # the debugger's store unless the spec's `debug.out_dir` names another folder

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    # inputs and bookkeeping
    @property
    def spec(self) -> Path:
        return self.root / self.SPEC_FILE

    @property
    def result(self) -> Path:
        return self.root / self.RESULT_FILE

    @property
    def metrics(self) -> Path:
        return self.root / self.METRICS_FILE

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

    @property
    def best_checkpoints(self) -> Path:
        """checkpoints/best.json: the weight files of the K best epochs and their metric (--keep-best)."""
        return self.checkpoints / "best.json"

    def best_checkpoint(self, epoch: int) -> Path:
        """checkpoints/best-epochNNN.pt: the weights of EPOCH (0-based, as metrics.jsonl numbers it)."""
        return self.checkpoints / f"best-epoch{epoch:03d}.pt"

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
        """The debugger's store at its default place; `debug_store` follows the spec's `debug.out_dir`."""
        return self.root / self.DEBUG_DIR

    def debug_store(self, out_dir: str | None = None) -> Path:
        """The debugger's store: OUT_DIR (the spec's `debug.out_dir`, relative to the job) or the default."""
        return self.root / (out_dir or self.DEBUG_DIR)

    def saved_debug_store(self) -> Path:
        """The debugger's store as the saved spec.yaml names it (the default when it names none, or when
        there is no readable spec)."""
        try:
            import yaml

            content = yaml.safe_load(self.spec.read_text()) or {}
            return self.debug_store(str((content.get("debug") or {}).get("out_dir") or "") or None)
        except Exception:  # noqa: BLE001 - an unreadable spec still leaves the default location
            return self.debug

    def stage(self, name: str) -> JobDir:
        """The job folder of one stage of a staged job (stages/NAME/: a whole job of its own)."""
        return JobDir(self.root / "stages" / name)

    @property
    def profile(self) -> Path:
        return self.root / "profile"

    @property
    def tensorboard(self) -> Path:
        """The epoch curves' TensorBoard event files (tracking.tensorboard); the debugger exports its
        tensors to its store's own tensorboard/ folder."""
        return self.root / "tensorboard"

    def exists(self) -> bool:
        return self.spec.is_file()

    # what a job that failed in its setup (data validation, model creation) leaves: nothing trained
    SETUP_ENTRIES = (SPEC_FILE, RESULT_FILE, "train.log", "data")
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
        for path in (self.log, self.result, self.spec):
            path.unlink(missing_ok=True)

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
        return read_jsonl(self.metrics)
