"""Overfit: the validation loss is well above the training loss.

SageMaker: fires when (mean validation loss - mean training loss) / mean training loss > ratio_threshold for
`patience` steps; `tensor_regex=None`, `start_step=0`, `patience=1`, `ratio_threshold=0.1`
(DG:debugger-built-in-rules.md @dcfe1c6). No default collection (we use losses).

Ours runs at each EVAL step. The validation mean is the mean EVAL loss of the current evaluation pass (the
EVAL steps of the valid split recorded at the same TRAIN position, from the reader's `step_info`, else the
last `window` EVAL steps); the training mean is the mean TRAIN loss over the last `window` TRAIN
steps before that evaluation. A pass is judged once it is complete. `window` (10) is ours: one minibatch
loss is too noisy to compare. `patience` counts evaluation passes and defaults to 2 (SageMaker: 1 step):
on small validation sets (a few batches) one pass above the training loss is noise, as the healthy tiny
runs of tests/debugger show (a 15-20% generalisation gap while both losses still fall). For the same
reason a pass counts only when the validation loss did not improve on the best earlier pass: a gap that
shrinks the validation loss is a generalisation gap, overfitting is the validation loss turning up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vizsla.debugger.rules.base import BaseRule, Finding, fmt, scalar_series, select_tensors
from vizsla.debugger.rules.registry import register_rule


def step_meta(trial: Any, mode: str, step: int) -> dict[str, Any]:
    """The reader's index entry of a step (global_step, split), when the reader offers `step_info`."""
    lookup = getattr(trial, "step_info", None)
    if lookup is None:
        return {}
    try:
        return lookup(step, mode) or {}
    except Exception:  # noqa: BLE001 - an optional reader feature; absent or failing means "unknown"
        return {}


def train_position(trial: Any, mode: str, step: int) -> int | None:
    """How many TRAIN steps were done when this (mode, step) was recorded, if the reader knows."""
    value = step_meta(trial, mode, step).get("global_step")
    return None if value is None else int(value)


def eval_pass(trial: Any, series: dict[int, float], step: int, window: int) -> list[float]:
    """Losses of the evaluation pass (same TRAIN position and split) that EVAL `step` belongs to."""
    meta = step_meta(trial, "EVAL", step)
    earlier = [s for s in sorted(series) if s <= step]
    if meta.get("global_step") is None:
        return [series[s] for s in earlier[-window:]]
    key = (meta.get("global_step"), meta.get("split"))
    return [
        series[s]
        for s in earlier
        if (step_meta(trial, "EVAL", s).get("global_step"), step_meta(trial, "EVAL", s).get("split")) == key
    ]


def train_mean(trial: Any, name: str, position: int | None, window: int) -> float | None:
    """Mean TRAIN loss over the last `window` TRAIN steps before `position` (all available when unknown)."""
    series = scalar_series(trial, name, "TRAIN")
    steps = [s for s in sorted(series) if position is None or s < position]
    if not steps:
        return None
    return float(np.mean([series[s] for s in steps[-window:]]))


def pass_key(trial: Any, step: int, window: int) -> tuple[Any, Any]:
    """Which evaluation pass an EVAL step belongs to: (TRAIN position, split), else a block of `window`."""
    meta = step_meta(trial, "EVAL", step)
    if meta.get("global_step") is None:
        return (step // window, None)
    return (meta.get("global_step"), meta.get("split"))


@register_rule
@dataclass
class Overfit(BaseRule):
    """Fires when (eval loss - train loss) / train loss > ratio_threshold for `patience` evaluation passes."""

    name = "Overfit"
    collections_needed = ("losses",)
    modes = ("EVAL",)

    tensor_regex: str | None = None
    start_step: int = 0
    patience: int = 2
    ratio_threshold: float = 0.1
    window: int = 10
    _over: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _judged: set[tuple[str, Any]] = field(default_factory=set, init=False, repr=False)
    _best: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    def evaluate(self, trial: Any, step: int, mode: str) -> Finding | None:
        # A pass is judged once complete: when a step of the next pass arrives (or at finish).
        previous = [s for s in trial.steps(mode) if s < step]
        if previous and pass_key(trial, previous[-1], self.window) != pass_key(trial, step, self.window):
            return self._judge(trial, previous[-1], mode)
        return None

    def finish(self, trial: Any) -> Finding | None:
        steps = trial.steps("EVAL")
        return self._judge(trial, steps[-1], "EVAL") if steps else None

    def _judge(self, trial: Any, step: int, mode: str) -> Finding | None:
        if step < self.start_step or step_meta(trial, mode, step).get("split") not in (None, "valid"):
            return None  # the validation split only (the final test evaluation is not a trend)
        key = pass_key(trial, step, self.window)
        names = select_tensors(trial, mode, tensor_regex=self.tensor_regex, default_collections=("losses",))
        for name in names:
            series = scalar_series(trial, name, mode)
            if step not in series or (name, key) in self._judged:
                continue
            self._judged.add((name, key))
            losses = [series[s] for s in sorted(series) if pass_key(trial, s, self.window) == key]
            valid = float(np.mean(losses))
            train = train_mean(trial, name, train_position(trial, mode, step), self.window)
            if train is None or train <= 0:
                continue
            ratio = (valid - train) / train
            improving = valid < self._best.get(name, float("inf"))
            self._best[name] = min(valid, self._best.get(name, float("inf")))
            overfit = ratio > self.ratio_threshold and not improving
            self._over[name] = self._over.get(name, 0) + 1 if overfit else 0
            if self._over[name] >= self.patience:
                return self.finding(
                    step,
                    mode,
                    name,
                    ratio,
                    self.ratio_threshold,
                    f"{name}: validation loss {fmt(valid)} is {100 * ratio:.0f}% above the training loss "
                    f"{fmt(train)} (ratio {fmt(ratio)} > {fmt(self.ratio_threshold)}) for {self._over[name]} "
                    f"evaluation passes, at EVAL step {step}",
                )
        return None
