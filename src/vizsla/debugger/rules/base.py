"""The rule base class, the Finding it returns, and the tensor helpers every rule shares.

A rule is a dataclass whose fields are its parameters (SageMaker Debugger's names and defaults) with one
method, `evaluate(trial, step, mode)`, that the runner calls for every newly available step of the modes the
rule watches. It reads tensors only through the reader API (`vizsla.debugger.open_trial` or MemoryTrial) and
returns a Finding or None. Missing data is normal (the job is still writing): a rule then returns None.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

# Reductions that describe a tensor well enough to say "it did not change" when no raw value is stored.
SHAPE_REDUCTIONS = ("mean", "std", "min", "max", "l1", "l2")


@dataclass(frozen=True)
class Finding:
    """One violation: which rule, where (mode, step, tensor), the measured value, the threshold and why."""

    rule: str
    step: int
    mode: str
    tensor: str | None
    value: float | None
    threshold: float | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("value", "threshold"):  # JSON has no NaN/Inf
            number = out[key]
            if isinstance(number, float) and not math.isfinite(number):
                out[key] = str(number)
        return out


class BaseRule:
    """Subclass as a @dataclass: fields are parameters; implement `evaluate`, optionally `finish` / `poll`."""

    name: ClassVar[str] = ""
    collections_needed: ClassVar[tuple[str, ...]] = ()
    modes: ClassVar[tuple[str, ...]] = ("TRAIN",)  # whose steps the runner feeds to evaluate()
    live_only: ClassVar[bool] = False  # needs the runner's wall clock; cannot re-run on stored tensors
    needs_images: ClassVar[bool] = False  # meaningless when the head trains on cached features

    def evaluate(self, trial: Any, step: int, mode: str) -> Finding | None:
        """Check one newly available step; return a Finding when the rule's condition holds."""
        raise NotImplementedError

    def finish(self, trial: Any) -> Finding | None:
        """Called once after the last step of a job (or of an offline re-run)."""
        return None

    def poll(self, trial: Any, now: float) -> Finding | None:
        """Called on every runner cycle with a monotonic clock (seconds), whether or not steps arrived."""
        return None

    def parameters(self) -> dict[str, Any]:
        """The rule's parameters (init fields) as JSON-friendly values."""
        if not dataclasses.is_dataclass(self):
            return {}
        out = {}
        for f in dataclasses.fields(self):
            if f.init:
                value = getattr(self, f.name)
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def finding(
        self,
        step: int,
        mode: str,
        tensor: str | None,
        value: float | None,
        threshold: float | None,
        message: str,
    ) -> Finding:
        return Finding(self.name, int(step), mode, tensor, _num(value), _num(threshold), message)


def _num(value: float | None) -> float | None:
    return None if value is None else float(value)


def fmt(value: float | None) -> str:
    """Short human form of a number: 3e-09, 0.25, 1.2e+04, nan."""
    if value is None:
        return "n/a"
    return f"{value:.3g}"


def select_tensors(
    trial: Any,
    mode: str,
    *,
    collection_names: Iterable[str] | str | None = None,
    tensor_regex: str | None = None,
    default_collections: Iterable[str] = (),
    exclude_regex: str | None = None,
) -> list[str]:
    """Tensor names from the given collections and/or regex, else from the rule's default collections."""
    if isinstance(collection_names, str):
        collection_names = [c.strip() for c in collection_names.split(",") if c.strip()]
    names: set[str] = set()
    chosen = list(collection_names or [])
    if not chosen and tensor_regex is None:
        chosen = list(default_collections)
    for collection in chosen:
        names.update(trial.tensor_names(collection=collection, mode=mode))
    if tensor_regex:
        names.update(trial.tensor_names(mode=mode, regex=tensor_regex))
    if exclude_regex:
        names = {n for n in names if not re.search(exclude_regex, n)}
    return sorted(names)


def at_step(trial: Any, names: Iterable[str], step: int, mode: str) -> list[str]:
    """The names that have data at exactly this step."""
    return [n for n in names if step in set(trial.tensor(n).steps(mode))]


def numel(trial: Any, name: str, step: int, mode: str) -> int | None:
    """Element count of a stored tensor: from its raw value, else from its histogram's counts."""
    tensor = trial.tensor(name)
    raw = tensor.value(step, mode)
    if raw is not None:
        return int(np.asarray(raw).size)
    hist = tensor.histogram(step, mode)
    if hist is not None:
        nonfinite = sum(tensor.reduction(step, r, mode) or 0.0 for r in ("nan_count", "inf_count"))
        return int(np.asarray(hist[1]).sum() + nonfinite)
    return None


def mean_abs(trial: Any, name: str, step: int, mode: str) -> float | None:
    """mean(|x|): from the raw value, else L1 norm / element count, else an upper bound max(|min|, |max|)."""
    tensor = trial.tensor(name)
    raw = tensor.value(step, mode)
    if raw is not None:
        return float(np.mean(np.abs(np.asarray(raw, dtype=np.float64)))) if np.asarray(raw).size else None
    l1 = tensor.reduction(step, "l1", mode)
    count = numel(trial, name, step, mode)
    if l1 is not None and count:
        return l1 / count
    lo, hi = tensor.reduction(step, "min", mode), tensor.reduction(step, "max", mode)
    if lo is None or hi is None:
        return None
    return max(abs(lo), abs(hi))


def variance(trial: Any, name: str, step: int, mode: str) -> float | None:
    """Population variance from the raw value, else std**2."""
    tensor = trial.tensor(name)
    raw = tensor.value(step, mode)
    if raw is not None:
        values = np.asarray(raw, dtype=np.float64)
        return float(values.var()) if values.size else None
    std = tensor.reduction(step, "std", mode)
    return None if std is None else std * std


def percentile_from_histogram(hist: tuple[np.ndarray, np.ndarray], q: float) -> float | None:
    """The q-th percentile (0..100) of a histogram, interpolating linearly inside the bin."""
    edges, counts = (np.asarray(a, dtype=np.float64) for a in hist)
    total = counts.sum()
    if total <= 0:
        return None
    target = total * q / 100.0
    cumulative = np.cumsum(counts)
    index = int(np.searchsorted(cumulative, target, side="left"))
    index = min(index, len(counts) - 1)
    before = cumulative[index - 1] if index > 0 else 0.0
    inside = (target - before) / counts[index] if counts[index] > 0 else 0.0
    return float(edges[index] + inside * (edges[index + 1] - edges[index]))


def percentile(trial: Any, name: str, step: int, mode: str, q: float) -> float | None:
    """Percentile from the raw value, else from the stored histogram."""
    tensor = trial.tensor(name)
    raw = tensor.value(step, mode)
    if raw is not None:
        values = np.asarray(raw, dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        return float(np.percentile(values, q)) if values.size else None
    hist = tensor.histogram(step, mode)
    value = None if hist is None else percentile_from_histogram(hist, q)
    if value is None:
        return None
    # A constant tensor's histogram spans v +- 0.5: the stored min / max keep the estimate inside the data.
    lo, hi = tensor.reduction(step, "min", mode), tensor.reduction(step, "max", mode)
    return float(np.clip(value, lo if lo is not None else -np.inf, hi if hi is not None else np.inf))


def scalar_series(trial: Any, name: str, mode: str, *, upto: int | None = None) -> dict[int, float]:
    """step -> scalar (the raw value, or the mean reduction) of a scalar tensor such as `loss`."""
    tensor = trial.tensor(name)
    out: dict[int, float] = {}
    for step in tensor.steps(mode):
        if upto is not None and step > upto:
            continue
        raw = tensor.value(step, mode)
        if raw is not None and np.asarray(raw).size:
            out[step] = float(np.asarray(raw, dtype=np.float64).mean())
            continue
        mean = tensor.reduction(step, "mean", mode)
        if mean is not None:
            out[step] = mean
    return out


def worst(found: list[tuple[float, str]], *, largest: bool) -> tuple[float, str, int]:
    """The most extreme (value, tensor) of a list and how many others there are."""
    value, name = (max if largest else min)(found, key=lambda item: item[0])
    return value, name, len(found) - 1


def more(others: int) -> str:
    return f" (and {others} more tensor{'s' if others != 1 else ''})" if others else ""
