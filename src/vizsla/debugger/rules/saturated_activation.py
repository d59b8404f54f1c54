"""SaturatedActivation: tanh / sigmoid units stuck at their flat ends.

SageMaker (DG:debugger-built-in-rules.md @dcfe1c6): a node is saturated when it is inside the active range
less than `threshold_inactivity` % of the time; a layer fires when more than `threshold_layer` % of its nodes
are saturated. `tensor_regex=".*tanh_input|.*sigmoid_input"`, `threshold_tanh_min=-9.4999`,
`threshold_tanh_max=9.4999`, `threshold_sigmoid_min=-23`, `threshold_sigmoid_max=16.99999`,
`threshold_inactivity=1.0`, `threshold_layer=50.0`.

Ours accepts inputs or outputs (`..._tanh_output_0`: thresholds are mapped through the function). With raw
tensors (axis 1 = nodes) the check is SageMaker's per node; with only a histogram the saturated fraction of
all values stands for the fraction of saturated nodes (a layer whose nodes are each saturated >= 99% of the
time has at least that share of saturated values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vizsla.debugger.rules.base import BaseRule, Finding, at_step, fmt, more, worst
from vizsla.debugger.rules.registry import register_rule


def fraction_outside(hist: tuple[np.ndarray, np.ndarray], low: float, high: float) -> float | None:
    """Share of a histogram's mass at or below `low` or at or above `high` (linear inside a bin)."""
    edges, counts = (np.asarray(a, dtype=np.float64) for a in hist)
    total = counts.sum()
    if total <= 0:
        return None
    left, right = edges[:-1], edges[1:]
    width = np.where(right > left, right - left, 1.0)
    below = np.clip((low - left) / width, 0.0, 1.0)
    above = np.clip((right - high) / width, 0.0, 1.0)
    return float(np.minimum(below + above, 1.0) @ counts / total)


@register_rule
@dataclass
class SaturatedActivation(BaseRule):
    """Fires when > threshold_layer % of a tanh/sigmoid layer's nodes are saturated."""

    name = "SaturatedActivation"
    collections_needed = ("outputs",)

    tensor_regex: str = r"(tanh|sigmoid)_(input|output)_\d+$"
    threshold_tanh_min: float = -9.4999
    threshold_tanh_max: float = 9.4999
    threshold_sigmoid_min: float = -23.0
    threshold_sigmoid_max: float = 16.99999
    threshold_inactivity: float = 1.0
    threshold_layer: float = 50.0

    def _bounds(self, name: str) -> tuple[float, float] | None:
        lowered = name.lower()
        if "tanh" in lowered:
            low, high, fn = self.threshold_tanh_min, self.threshold_tanh_max, math.tanh
        elif "sigmoid" in lowered:
            low, high = self.threshold_sigmoid_min, self.threshold_sigmoid_max
            fn = lambda x: 1.0 / (1.0 + math.exp(-x))  # noqa: E731
        else:
            return None
        return (fn(low), fn(high)) if "output" in lowered else (low, high)

    def saturated_share(self, trial: Any, name: str, step: int, mode: str) -> float | None:
        """Fraction of nodes (raw) or values (histogram) outside the active range."""
        bounds = self._bounds(name)
        if bounds is None:
            return None
        low, high = bounds
        tensor = trial.tensor(name)
        raw = tensor.value(step, mode)
        if raw is not None:
            values = np.asarray(raw, dtype=np.float64)
            nodes = (
                values.reshape(values.shape[0], values.shape[1], -1) if values.ndim >= 2 else values[:, None]
            )
            active = ((nodes > low) & (nodes < high)).mean(axis=tuple(a for a in range(nodes.ndim) if a != 1))
            return float(np.mean(active * 100.0 < self.threshold_inactivity))
        hist = tensor.histogram(step, mode)
        if hist is not None:
            share = fraction_outside(hist, low, high)
            return None if share is None else share / (1 - self.threshold_inactivity / 100)
        lo, hi = tensor.reduction(step, "min", mode), tensor.reduction(step, "max", mode)
        if lo is not None and hi is not None and (hi <= low or lo >= high):
            return 1.0
        return None

    def evaluate(self, trial: Any, step: int, mode: str) -> Finding | None:
        names = at_step(trial, trial.tensor_names(mode=mode, regex=self.tensor_regex), step, mode)
        found = []
        for name in names:
            share = self.saturated_share(trial, name, step, mode)
            if share is not None and 100 * share > self.threshold_layer:
                found.append((min(share, 1.0), name))
        if not found:
            return None
        share, tensor, others = worst(found, largest=True)
        return self.finding(
            step,
            mode,
            tensor,
            100 * share,
            self.threshold_layer,
            f"{tensor}: {100 * share:.0f}% of the layer is saturated (> threshold_layer "
            f"{fmt(self.threshold_layer)}%) at {mode} step {step}{more(others)}",
        )
