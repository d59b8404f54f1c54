"""An in-memory trial with exactly the reader API, so rules can be tested without a hook or a store.

`MemoryTrial` keeps tensors as dicts: per mode, per step, per name either a raw array (reductions and the
histogram are then computed from it, as the reader does) or given reductions / histogram only (what the hook
stores by default). It never raises on missing data: like the reader it returns None or an empty container.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

REDUCTIONS = ("mean", "std", "min", "max", "l1", "l2", "zero_fraction", "nan_count", "inf_count")
HISTOGRAM_BINS = 64

# The default collections of the shared design: name -> regex over tensor names.
DEFAULT_COLLECTIONS: dict[str, str] = {
    "losses": r"^loss$",
    "weights": r"^(?!gradient).*weight$",
    "biases": r"^(?!gradient).*bias$",
    "gradients": r"^gradient/",
    "relu_output": r"_relu_output_\d+$",
    "outputs": r"_output_\d+$",
    "inputs": r"^inputs$",
    "labels": r"^labels$",
    "predictions": r"^predictions$",
}


def compute_reductions(array: np.ndarray) -> dict[str, float]:
    """The reductions the hook stores, computed from a raw tensor (NaN/Inf excluded from the statistics)."""
    values = np.asarray(array, dtype=np.float64).ravel()
    finite = values[np.isfinite(values)]
    out = {
        "zero_fraction": float(np.mean(values == 0)) if values.size else 0.0,
        "nan_count": float(np.isnan(values).sum()),
        "inf_count": float(np.isinf(values).sum()),
    }
    if finite.size:
        out.update(
            mean=float(finite.mean()),
            std=float(finite.std()),
            min=float(finite.min()),
            max=float(finite.max()),
            l1=float(np.abs(finite).sum()),
            l2=float(np.sqrt(np.square(finite).sum())),
        )
    return out


def compute_histogram(array: np.ndarray, bins: int = HISTOGRAM_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(bin_edges, counts) of the finite values, 64 bins like the hook's histograms."""
    values = np.asarray(array, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.zeros(bins + 1), np.zeros(bins, dtype=np.int64)
    counts, edges = np.histogram(values, bins=bins)
    return edges, counts


class _Record:
    """One tensor at one step: raw value and/or reductions and histogram."""

    __slots__ = ("value", "reductions", "histogram")

    def __init__(
        self,
        value: np.ndarray | None,
        reductions: Mapping[str, float] | None,
        histogram: tuple[np.ndarray, np.ndarray] | None,
    ) -> None:
        self.value = None if value is None else np.asarray(value)
        computed = compute_reductions(self.value) if self.value is not None else {}
        self.reductions = {**computed, **{k: float(v) for k, v in (reductions or {}).items()}}
        if histogram is None and self.value is not None and self.value.size > 1:
            histogram = compute_histogram(self.value)
        self.histogram = histogram


class MemoryTensor:
    """The reader's tensor view over one name of a MemoryTrial."""

    def __init__(self, trial: MemoryTrial, name: str) -> None:
        self._trial = trial
        self.name = name

    def _record(self, step: int, mode: str) -> _Record | None:
        return self._trial._data.get(mode, {}).get(step, {}).get(self.name)

    def steps(self, mode: str = "TRAIN") -> list[int]:
        return sorted(s for s, names in self._trial._data.get(mode, {}).items() if self.name in names)

    def value(self, step: int, mode: str = "TRAIN") -> np.ndarray | None:
        record = self._record(step, mode)
        return None if record is None else record.value

    def values(self, mode: str = "TRAIN") -> dict[int, np.ndarray]:
        out = {}
        for step in self.steps(mode):
            value = self.value(step, mode)
            if value is not None:
                out[step] = value
        return out

    def reduction(self, step: int, name: str, mode: str = "TRAIN") -> float | None:
        record = self._record(step, mode)
        return None if record is None else record.reductions.get(name)

    def reductions(self, name: str, mode: str = "TRAIN") -> dict[int, float]:
        out = {}
        for step in self.steps(mode):
            value = self.reduction(step, name, mode)
            if value is not None:
                out[step] = value
        return out

    def histogram(self, step: int, mode: str = "TRAIN") -> tuple[np.ndarray, np.ndarray] | None:
        record = self._record(step, mode)
        return None if record is None else record.histogram


class MemoryTrial:
    """A trial held in dicts: `add(name, step, value=..., mode=...)`, then query it like `open_trial(...)`."""

    def __init__(self, collections: Mapping[str, str] | None = None, *, complete: bool = False) -> None:
        self._regexes = dict(DEFAULT_COLLECTIONS if collections is None else collections)
        self._data: dict[str, dict[int, dict[str, _Record]]] = {}
        self._info: dict[tuple[str, int], dict[str, Any]] = {}
        self._complete = complete

    def add(
        self,
        name: str,
        step: int,
        value: Any = None,
        *,
        mode: str = "TRAIN",
        reductions: Mapping[str, float] | None = None,
        histogram: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> MemoryTrial:
        """Record one tensor at one step: a raw value, or reductions (and a histogram) only."""
        if value is None and reductions is None and histogram is None:
            raise ValueError(f"add({name!r}): give a value, reductions or a histogram")
        raw = None if value is None else np.asarray(value)
        self._data.setdefault(mode, {}).setdefault(int(step), {})[name] = _Record(raw, reductions, histogram)
        return self

    def add_reduced(self, name: str, step: int, value: Any, *, mode: str = "TRAIN") -> MemoryTrial:
        """Record only the reductions and histogram of `value`, as the hook does by default."""
        raw = np.asarray(value)
        histogram = compute_histogram(raw) if raw.size > 1 else None
        return self.add(name, step, mode=mode, reductions=compute_reductions(raw), histogram=histogram)

    def set_step_info(self, step: int, mode: str = "TRAIN", **info: Any) -> MemoryTrial:
        """Index metadata of a step, as the store's index.jsonl has it (global_step, split, time)."""
        self._info.setdefault((mode, int(step)), {}).update(info)
        return self

    def mark_complete(self) -> None:
        self._complete = True

    # --- the reader API -------------------------------------------------------------------------
    def is_complete(self) -> bool:
        return self._complete

    def steps(self, mode: str = "TRAIN") -> list[int]:
        return sorted(self._data.get(mode, {}))

    def step_info(self, step: int, mode: str = "TRAIN") -> dict[str, Any] | None:
        if step not in self._data.get(mode, {}):
            return None
        return {"mode": mode, "step": step, **self._info.get((mode, step), {})}

    def _all_names(self, mode: str | None) -> set[str]:
        modes = [mode] if mode is not None else list(self._data)
        return {name for m in modes for names in self._data.get(m, {}).values() for name in names}

    def collections(self) -> dict[str, list[str]]:
        names = self._all_names(None)
        return {c: sorted(n for n in names if re.search(rx, n)) for c, rx in self._regexes.items()}

    def tensor_names(
        self, collection: str | None = None, mode: str | None = None, regex: str | None = None
    ) -> list[str]:
        names = self._all_names(mode)
        if collection is not None:
            pattern = self._regexes.get(collection)
            if pattern is None:
                return []
            names = {n for n in names if re.search(pattern, n)}
        if regex is not None:
            names = {n for n in names if re.search(regex, n)}
        return sorted(names)

    def tensor(self, name: str) -> MemoryTensor:
        return MemoryTensor(self, name)
