"""LossNotDecreasing: the loss has not dropped by diff_percent since training started.

SageMaker compares the loss at a step with the loss at least `num_steps` earlier, every `num_steps` steps;
`collection_names`, `tensor_regex`, `use_losses_collection=True`, `num_steps=10`, `diff_percent=0.1` (%),
`increase_threshold_percent=5` (%), `mode` (default: EVAL, else TRAIN, else GLOBAL)
(DG:debugger-built-in-rules.md @dcfe1c6; RC ruleConfigs.json: losses, every 500 steps).

How ours differs, and why: SageMaker saw one loss every 500 steps; we record the loss of every batch, so we
compare means of `num_steps`-step windows (a single minibatch loss is too noisy), and the reference is the
first window of the job rather than the previous one: a converged run's loss stops falling on a plateau,
and comparing neighbouring windows fires on every such healthy plateau. The rule fires at the first
evaluation whose window mean is not `diff_percent` below the first window's; the message says "rose" when it
went up by more than `increase_threshold_percent`. The default mode is TRAIN: our EVAL steps are the batches
of successive evaluation passes, not a time series of one loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vizsla.debugger.rules.base import BaseRule, Finding, fmt, scalar_series, select_tensors
from vizsla.debugger.rules.registry import register_rule


@register_rule
@dataclass
class LossNotDecreasing(BaseRule):
    """Fires when a loss's latest num_steps-window mean is not diff_percent below its first window mean."""

    name = "LossNotDecreasing"
    collections_needed = ("losses",)

    collection_names: tuple[str, ...] | None = None
    tensor_regex: str | None = None
    use_losses_collection: bool = True
    num_steps: int = 10
    diff_percent: float = 0.1
    increase_threshold_percent: float = 5.0
    mode: str | None = None
    _last: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError("num_steps must be >= 1")
        self.modes = ((self.mode or "TRAIN").upper(),)

    def _names(self, trial: Any, mode: str) -> list[str]:
        collections = list(self.collection_names or [])
        if self.use_losses_collection:
            collections.append("losses")
        return select_tensors(trial, mode, collection_names=collections, tensor_regex=self.tensor_regex)

    def evaluate(self, trial: Any, step: int, mode: str) -> Finding | None:
        for name in self._names(trial, mode):
            series = scalar_series(trial, name, mode, upto=step)
            if step not in series or len(series) < 2 * self.num_steps:
                continue
            if step - self._last.get(name, -(10**12)) < self.num_steps:
                continue  # evaluated every num_steps steps
            self._last[name] = step
            values = [series[s] for s in sorted(series)]
            first = float(np.mean(values[: self.num_steps]))
            latest = float(np.mean(values[-self.num_steps :]))
            if not np.isfinite(latest) or latest > first * (1 - self.diff_percent / 100):
                change = 100.0 * (latest - first) / abs(first) if first else float("inf")
                verb = "rose" if change > self.increase_threshold_percent else "changed"
                return self.finding(
                    step,
                    mode,
                    name,
                    latest,
                    first * (1 - self.diff_percent / 100),
                    f"{name}: mean of the last {self.num_steps} {mode} steps {fmt(latest)} {verb} "
                    f"{change:+.1f}% against the first {self.num_steps} steps ({fmt(first)}); it must drop "
                    f"by at least {fmt(self.diff_percent)}% (at {mode} step {step})",
                )
        return None
