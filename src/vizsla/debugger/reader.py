"""Read a tensor store back, also while the job is still writing it: `open_trial(job_or_debug_dir)`.

The trial follows `index.jsonl` incrementally (it remembers how far it read and only parses complete lines),
so every query sees the steps written since the last one until the hook's END marker appears. Missing data
returns None or an empty container, never raises, so rules can run against a store that is still growing.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from vizsla.debugger.collections import (
    HISTOGRAM,
    HISTOGRAM_BINS,
    REDUCTIONS,
    histogram_array,
    reduce_array,
)
from vizsla.debugger.store import COLLECTIONS_FILE, END_FILE, INDEX_FILE
from vizsla.jobdir import JobDir

_CACHED_STEP_FILES = 16  # step files kept open in memory (a rule reads a few steps again and again)


def open_trial(path: str | Path) -> Trial:
    """A Trial on a job directory (its `debug/`, or the folder named in its spec) or on a debug directory."""
    path = Path(path)
    if (path / INDEX_FILE).is_file() or (path / COLLECTIONS_FILE).is_file():
        return Trial(path)
    return Trial(JobDir(path).saved_debug_store())


class Trial:
    """The steps and tensors recorded in one debug directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._lock = threading.RLock()
        self._offset = 0
        self._complete = False
        # mode -> step -> index entry; tensor name -> mode -> sorted-insertion list of steps
        self._steps: dict[str, dict[int, dict[str, Any]]] = {}
        self._tensors: dict[str, dict[str, set[int]]] = {}
        self._collections: dict[str, dict[str, Any]] = {}
        self._collections_mtime: float | None = None
        self._files: OrderedDict[str, tuple[dict[str, Any], Any]] = OrderedDict()

    # trial-level queries ------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Read index lines appended since the last call (a no-op once the store is complete and read)."""
        with self._lock:
            if self._complete:
                return
            complete = (self.root / END_FILE).exists()  # check before reading: no line can follow END
            index = self.root / INDEX_FILE
            try:
                grown = index.stat().st_size > self._offset  # one stat per query; read only new bytes
            except OSError:
                grown = False
            if grown:
                with open(index, "rb") as handle:
                    handle.seek(self._offset)
                    chunk = handle.read()
                end = chunk.rfind(b"\n") + 1  # a line without its newline is still being written
                for line in chunk[:end].splitlines():
                    self._add_entry(line)
                self._offset += end
            self._complete = complete

    def _add_entry(self, line: bytes) -> None:
        try:
            entry = json.loads(line)
            mode, step = str(entry["mode"]), int(entry["step"])
        except (ValueError, KeyError, TypeError):
            return
        previous = self._steps.setdefault(mode, {}).get(step)
        if previous is not None:  # a resumed job rewrote the step: forget the old file's tensors
            self._files.pop(previous["file"], None)
            for name in previous.get("tensors", []):
                self._tensors.get(name, {}).get(mode, set()).discard(step)
        self._steps[mode][step] = entry
        for name in entry.get("tensors", []):
            self._tensors.setdefault(name, {}).setdefault(mode, set()).add(step)

    def is_complete(self) -> bool:
        """True once the hook has closed the store (END marker)."""
        self.refresh()
        return self._complete

    def modes(self) -> list[str]:
        self.refresh()
        return sorted(mode for mode, steps in self._steps.items() if steps)

    def steps(self, mode: str = "TRAIN") -> list[int]:
        self.refresh()
        return sorted(self._steps.get(mode, {}))

    def step_info(self, step: int, mode: str = "TRAIN") -> dict[str, Any] | None:
        """The index entry of a step: global_step (train steps done then), split, wall time, tensors."""
        self.refresh()
        return self._steps.get(mode, {}).get(step)

    def last_write_time(self) -> float | None:
        """Wall time of the newest step written (for stalled-training checks), None before any step."""
        self.refresh()
        times = [e.get("time", 0.0) for steps in self._steps.values() for e in steps.values()]
        return max(times) if times else None

    def tensor_names(
        self, collection: str | None = None, mode: str | None = None, regex: str | None = None
    ) -> list[str]:
        self.refresh()
        names = [n for n, modes in self._tensors.items() if any(modes.values())]
        if mode is not None:
            names = [n for n in names if self._tensors[n].get(mode)]
        if collection is not None:
            pattern = self._collection_regex(collection)
            names = [n for n in names if pattern is not None and pattern.search(n)]
        if regex is not None:
            compiled = re.compile(regex)
            names = [n for n in names if compiled.search(n)]
        return sorted(names)

    def collections(self) -> dict[str, list[str]]:
        """Collection name -> the recorded tensor names it selects."""
        self.refresh()
        self._load_collections()
        return {name: self.tensor_names(collection=name) for name in self._collections}

    def collection_config(self, name: str) -> dict[str, Any] | None:
        """The resolved configuration a collection was recorded with (save_interval, reductions, ...)."""
        self._load_collections()
        return self._collections.get(name)

    def has_tensor(self, name: str) -> bool:
        self.refresh()
        return name in self._tensors

    def tensor(self, name: str) -> Tensor:
        return Tensor(self, name)

    # internals used by Tensor -------------------------------------------------------------------------
    def _tensor_steps(self, name: str, mode: str) -> list[int]:
        self.refresh()
        return sorted(self._tensors.get(name, {}).get(mode, ()))

    def _step_file(self, mode: str, step: int) -> tuple[dict[str, Any], Any] | None:
        self.refresh()
        with self._lock:
            entry = self._steps.get(mode, {}).get(step)
            if entry is None:
                return None
            key = entry["file"]
            if key in self._files:
                self._files.move_to_end(key)
                return self._files[key]
            try:
                with np.load(self.root / key, allow_pickle=False) as data:
                    meta = json.loads(str(data["__meta__"]))
                    arrays = {k: data[k] for k in data.files if k != "__meta__"}
            except (OSError, ValueError, KeyError):
                return None
            self._files[key] = (meta, arrays)
            while len(self._files) > _CACHED_STEP_FILES:
                self._files.popitem(last=False)
            return meta, arrays

    def _load_collections(self) -> None:
        path = self.root / COLLECTIONS_FILE
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return
        if mtime != self._collections_mtime:
            try:
                self._collections = json.loads(path.read_text()).get("collections", {})
                self._collections_mtime = mtime
            except (OSError, ValueError):
                return

    def _collection_regex(self, name: str) -> re.Pattern[str] | None:
        self._load_collections()
        config = self._collections.get(name)
        return re.compile(config["include_regex"]) if config and config.get("include_regex") else None


class Tensor:
    """One tensor name across modes and steps."""

    def __init__(self, trial: Trial, name: str) -> None:
        self.trial = trial
        self.name = name

    def __repr__(self) -> str:
        return f"Tensor({self.name!r})"

    def steps(self, mode: str = "TRAIN") -> list[int]:
        return self.trial._tensor_steps(self.name, mode)

    def shape(self, step: int, mode: str = "TRAIN") -> tuple[int, ...] | None:
        loaded = self.trial._step_file(mode, step)
        shape = loaded[0].get("shapes", {}).get(self.name) if loaded else None
        return tuple(shape) if shape is not None else None

    def value(self, step: int, mode: str = "TRAIN") -> np.ndarray | None:
        """The full tensor at a step, when it was stored raw."""
        loaded = self.trial._step_file(mode, step)
        if loaded is None:
            return None
        meta, arrays = loaded
        key = meta.get("raw", {}).get(self.name)
        return arrays.get(key) if key else None

    def values(self, mode: str = "TRAIN") -> dict[int, np.ndarray]:
        found = {step: self.value(step, mode) for step in self.steps(mode)}
        return {step: value for step, value in found.items() if value is not None}

    def reduction(self, step: int, name: str, mode: str = "TRAIN") -> float | None:
        """A stored reduction, or one computed from the raw tensor; None when neither is there."""
        if name not in REDUCTIONS:
            return None
        row = self._row(step, mode)
        if row is not None:
            values, allowed = row
            return float(values[REDUCTIONS.index(name)]) if name in allowed else None
        raw = self.value(step, mode)
        if raw is None or raw.size == 0:
            return None
        return reduce_array(raw)[name]

    def reductions(self, name: str, mode: str = "TRAIN") -> dict[int, float]:
        found = {step: self.reduction(step, name, mode) for step in self.steps(mode)}
        return {step: value for step, value in found.items() if value is not None}

    def histogram(self, step: int, mode: str = "TRAIN") -> tuple[np.ndarray, np.ndarray] | None:
        """(bin_edges [65], counts [64]) of the finite values, stored or computed from the raw tensor."""
        row = self._row(step, mode)
        if row is not None:
            values, allowed = row
            if HISTOGRAM not in allowed:
                return None
            low, high = values[len(REDUCTIONS)], values[len(REDUCTIONS) + 1]
            counts = values[len(REDUCTIONS) + 2 :]
            return np.linspace(low, high, HISTOGRAM_BINS + 1), counts.copy()
        raw = self.value(step, mode)
        if raw is None or raw.size == 0:
            return None
        return histogram_array(raw)

    def _row(self, step: int, mode: str) -> tuple[np.ndarray, list[str]] | None:
        loaded = self.trial._step_file(mode, step)
        if loaded is None:
            return None
        meta, arrays = loaded
        where = meta.get("reduced", {}).get(self.name)
        if where is None or "stats" not in arrays:
            return None
        row, reduction_set = where
        return arrays["stats"][row], meta["reduction_sets"][reduction_set]
