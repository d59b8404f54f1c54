"""WeightUpdateRatio: weight updates far too large or too small relative to the weights.

SageMaker (DG:debugger-built-in-rules.md @dcfe1c6; RC: weights every 500 steps): ratio of the update to the
weight, between the current step and `num_steps` earlier (None: the previous saved step), fires above
`large_threshold` or below `small_threshold`; `num_steps=None`, `large_threshold=10.0`,
`small_threshold=1e-8`, `epsilon=1e-9`; TRAIN steps.

Ours: with raw weights, ratio = ||w_s - w_p|| / (||w_p|| + epsilon). With reductions only (the default) the
update norm is unknown; |l2_s - l2_p| / (l2_p + epsilon) is a lower bound of it (triangle inequality), so the
large check stays sound, and the small check fires only if none of mean/std/min/max/l1/l2 moved by more
than small_threshold relative to their size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vizsla.debugger.rules.base import SHAPE_REDUCTIONS, BaseRule, Finding, at_step, fmt, more, select_tensors
from vizsla.debugger.rules.registry import register_rule


@register_rule
@dataclass
class WeightUpdateRatio(BaseRule):
    """Fires when ||update|| / ||weight|| between saved steps is > large_threshold or < small_threshold."""

    name = "WeightUpdateRatio"
    collections_needed = ("weights",)

    num_steps: int | None = None
    large_threshold: float = 10.0
    small_threshold: float = 1e-8
    epsilon: float = 1e-9

    def _previous(self, steps: list[int], step: int) -> int | None:
        earlier = [s for s in steps if s < step and (self.num_steps is None or step - s >= self.num_steps)]
        return max(earlier) if earlier else None

    def ratio(self, trial: Any, name: str, step: int, prev: int, mode: str) -> tuple[float, float]:
        """(lower-or-exact ratio, largest relative change of any reduction) between prev and step."""
        tensor = trial.tensor(name)
        now, before = tensor.value(step, mode), tensor.value(prev, mode)
        if now is not None and before is not None:
            now, before = np.asarray(now, np.float64), np.asarray(before, np.float64)
            exact = float(np.linalg.norm(now - before) / (np.linalg.norm(before) + self.epsilon))
            return exact, exact
        l2_now, l2_before = tensor.reduction(step, "l2", mode), tensor.reduction(prev, "l2", mode)
        if l2_now is None or l2_before is None:
            return float("nan"), float("nan")
        lower = abs(l2_now - l2_before) / (l2_before + self.epsilon)
        moved = 0.0
        for reduction in SHAPE_REDUCTIONS:
            a, b = tensor.reduction(step, reduction, mode), tensor.reduction(prev, reduction, mode)
            if a is not None and b is not None:
                moved = max(moved, abs(a - b) / (abs(b) + self.epsilon))
        return lower, moved

    def evaluate(self, trial: Any, step: int, mode: str) -> Finding | None:
        names = at_step(trial, select_tensors(trial, mode, default_collections=("weights",)), step, mode)
        large, small = [], []
        for name in names:
            prev = self._previous(trial.tensor(name).steps(mode), step)
            if prev is None:
                continue
            lower, moved = self.ratio(trial, name, step, prev, mode)
            if lower > self.large_threshold:
                large.append((lower, name))
            elif moved < self.small_threshold:
                small.append((moved, name))
        if large:
            value, tensor, others = max(large)[0], max(large)[1], len(large) - 1
            return self.finding(
                step,
                mode,
                tensor,
                value,
                self.large_threshold,
                f"{tensor}: update/weight ratio {fmt(value)} > large_threshold "
                f"{fmt(self.large_threshold)} at {mode} step {step}{more(others)}",
            )
        if small:
            value, tensor = min(small)
            return self.finding(
                step,
                mode,
                tensor,
                value,
                self.small_threshold,
                f"{tensor}: update/weight ratio {fmt(value)} < small_threshold "
                f"{fmt(self.small_threshold)} at {mode} step {step}{more(len(small) - 1)}",
            )
        return None
