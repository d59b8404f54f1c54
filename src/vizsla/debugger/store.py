"""The tensor store: one file per saved (mode, step), an append-only index, written by a background thread.

On-disk format (inside the job directory, default `debug/`):

    debug/collections.json              resolved collections (regex, save_interval, save_steps, reductions,
                                        save_raw, modes, enabled) + "tensor_names" seen so far per collection
    debug/steps/<MODE>/<step:012d>.npz  one NumPy .npz per saved mode step (see below)
    debug/index.jsonl                   one JSON line per step file, appended after the file is in place:
                                        {"mode", "step", "global_step", "split", "time", "file", "tensors"}
    debug/END                           end marker: the hook closed the store (job ended, any status)
    debug/tensorboard/<MODE>/           TensorBoard event files, when exported

A step file holds:
    "__meta__"   0-d unicode array with JSON {"mode", "step", "global_step", "split", "time",
                 "raw": {tensor: array key}, "reduced": {tensor: [row, set]}, "reduction_sets": [[names]],
                 "shapes": {tensor: shape}}
    "raw_<i>"    full tensors (losses, labels, predictions, and collections with save_raw)
    "stats"      float64 [rows, 9 + 2 + 64]: mean, std, min, max, l1, l2, zero_fraction, nan_count, inf_count
                 (std is the population std; min/max over finite values), the histogram range (low, high),
                 then 64 histogram counts of the finite values on linspace(low, high, 65).
                 Row r holds tensor t where meta["reduced"][t] == [r, s]; reduction_sets[s] lists which of the
                 reductions the tensor's collections asked for (only those are reported by the reader).

Files are written under a temporary name and renamed, and the index line is appended only after the rename,
so a reader that follows index.jsonl never sees a partial step (readable while the job is still writing).
"""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vizsla.debugger.collections import HISTOGRAM_BINS, REDUCTIONS, Collection
from vizsla.debugger.threads import lower_thread_priority
from vizsla.infra.io import append_jsonl, atomic_write_json, read_jsonl

log = logging.getLogger(__name__)

STATS_COLUMNS = len(REDUCTIONS) + 2 + HISTOGRAM_BINS
INDEX_FILE = "index.jsonl"
COLLECTIONS_FILE = "collections.json"
END_FILE = "END"
_STOP = object()


def step_file(mode: str, step: int) -> str:
    """Path of a step file relative to the debug directory."""
    return f"steps/{mode}/{step:012d}.npz"


@dataclass
class StepRecord:
    """What the hook saved for one mode step, handed to the writer thread (arrays already on the CPU)."""

    mode: str
    step: int
    global_step: int
    split: str | None = None
    time: float = field(default_factory=time.time)
    raw: dict[str, Any] = field(default_factory=dict)  # tensor name -> CPU torch tensor or ndarray
    reduced: list[tuple[str, tuple[str, ...], tuple[int, ...]]] = field(default_factory=list)
    stats: Any = None  # [len(reduced), STATS_COLUMNS] CPU tensor/ndarray, row i belongs to reduced[i]

    @property
    def tensor_names(self) -> list[str]:
        return sorted({*self.raw, *(name for name, _, _ in self.reduced)})


class TensorStore:
    """Writes step records on a background thread so training steps never wait on the disk."""

    def __init__(self, root: Path, collections: dict[str, Collection], *, max_pending: int = 64) -> None:
        self.root = Path(root)
        self.collections = collections
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = None
        self._names: set[str] = set()
        self.errors = 0

    def open(self) -> None:
        """Create the folder, drop an old END marker (resume), write collections.json, start the writer."""
        (self.root / "steps").mkdir(parents=True, exist_ok=True)
        (self.root / END_FILE).unlink(missing_ok=True)
        self._names |= self._recorded_names()
        self._write_collections()
        self._thread = threading.Thread(target=self._run, name="vizsla-debug-writer", daemon=True)
        self._thread.start()

    def submit(self, record: StepRecord) -> None:
        """Queue a record; blocks only when the writer is `max_pending` records behind."""
        if self._thread is None:
            raise RuntimeError("TensorStore.submit before open()")
        self._queue.put(record)

    def flush(self) -> None:
        """Wait until every queued record is on disk."""
        if self._thread is not None:
            self._queue.join()

    def close(self) -> None:
        """Flush, stop the writer and write the END marker."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._queue.join()
            self._thread.join(timeout=60)
            self._thread = None
        (self.root / END_FILE).write_text(f"{time.time()}\n")

    def _run(self) -> None:
        lower_thread_priority()
        while True:
            record = self._queue.get()
            try:
                if record is _STOP:
                    return
                self._write(record)
            except Exception:  # noqa: BLE001 - a disk problem must not kill training; log and go on
                self.errors += 1
                log.exception("debugger could not write %s step %s", record.mode, record.step)
            finally:
                self._queue.task_done()

    def _write(self, record: StepRecord) -> None:
        meta: dict[str, Any] = {
            "mode": record.mode,
            "step": record.step,
            "global_step": record.global_step,
            "split": record.split,
            "time": record.time,
            "raw": {},
            "reduced": {},
            "reduction_sets": [],
            "shapes": {},
        }
        arrays: dict[str, np.ndarray] = {}
        for index, (name, value) in enumerate(sorted(record.raw.items())):
            array = _to_numpy(value)
            arrays[f"raw_{index}"] = array
            meta["raw"][name] = f"raw_{index}"
            meta["shapes"][name] = list(array.shape)
        if record.reduced:
            sets: list[list[str]] = meta["reduction_sets"]
            for row, (name, reductions, shape) in enumerate(record.reduced):
                if list(reductions) not in sets:
                    sets.append(list(reductions))
                meta["reduced"][name] = [row, sets.index(list(reductions))]
                meta["shapes"].setdefault(name, list(shape))
            arrays["stats"] = _to_numpy(record.stats).astype(np.float64, copy=False)
        arrays["__meta__"] = np.array(json.dumps(meta))
        relative = step_file(record.mode, record.step)
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, path)
        names = record.tensor_names
        line = {k: meta[k] for k in ("mode", "step", "global_step", "split", "time")}
        line |= {"file": relative, "tensors": names}
        append_jsonl(self.root / INDEX_FILE, line)
        if not self._names.issuperset(names):
            self._names.update(names)
            self._write_collections()

    def _write_collections(self) -> None:
        collections = {}
        for name, collection in self.collections.items():
            entry = collection.to_json()
            entry["tensor_names"] = sorted(n for n in self._names if collection.matches(n))
            collections[name] = entry
        atomic_write_json(self.root / COLLECTIONS_FILE, {"collections": collections})

    def _recorded_names(self) -> set[str]:
        """Tensor names of an earlier run into the same store (a resumed job keeps appending)."""
        names: set[str] = set()
        for entry in read_jsonl(self.root / INDEX_FILE):
            names.update(entry.get("tensors", []))
        return names


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):
        import torch

        tensor = value.detach().cpu()
        if tensor.dtype in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2):
            tensor = tensor.float()  # no NumPy dtype for these
        return tensor.numpy()
    return np.asarray(value)
