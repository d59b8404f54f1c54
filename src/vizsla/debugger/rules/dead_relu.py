"""DeadRelu: a layer where most ReLU units never fire.

SageMaker (DG:debugger-built-in-rules.md @dcfe1c6; RC: relu_output every 500 steps): a unit is dead when it
is active less than `threshold_inactivity` % of the time; the layer fires when more than `threshold_layer` %
of its units are dead. `tensor_regex=".*relu_output"`, `threshold_inactivity=1.0`, `threshold_layer=50.0`.

Ours: with raw ReLU outputs (collection relu_output with save_raw; axis 1 = units, activity over batch and
space) the check is SageMaker's, per unit. The default store keeps only reductions, which cannot tell which
units are dead (a healthy ReLU layer is ~50% zeros anyway), so then the rule fires only when the whole layer
is inactive: zero_fraction >= 1 - threshold_inactivity / 100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vizsla.debugger.rules.base import BaseRule, Finding, at_step, fmt, more, worst
from vizsla.debugger.rules.registry import register_rule


@register_rule
@dataclass
class DeadRelu(BaseRule):
    """Fires when > threshold_layer % of a ReLU layer's units are almost never active."""

    name = "DeadRelu"
    collections_needed = ("relu_output",)

    tensor_regex: str = r"relu_output_\d+$"
    threshold_inactivity: float = 1.0
    threshold_layer: float = 50.0

    def dead_share(self, trial: Any, name: str, step: int, mode: str) -> float | None:
        """Fraction of dead units (raw), or 1.0 / 0.0 for a wholly inactive layer from zero_fraction."""
        tensor = trial.tensor(name)
        raw = tensor.value(step, mode)
        if raw is not None:
            values = np.asarray(raw)
            if values.size == 0:
                return None
            units = (
                values.reshape(values.shape[0], values.shape[1], -1) if values.ndim >= 2 else values[:, None]
            )
            active = (units > 0).mean(axis=(0, 2) if units.ndim == 3 else 0)
            return float(np.mean(active * 100.0 < self.threshold_inactivity))
        zeros = tensor.reduction(step, "zero_fraction", mode)
        if zeros is None:
            return None
        return 1.0 if zeros >= 1 - self.threshold_inactivity / 100 else 0.0

    def evaluate(self, trial: Any, step: int, mode: str) -> Finding | None:
        names = at_step(trial, trial.tensor_names(mode=mode, regex=self.tensor_regex), step, mode)
        found = []
        for name in names:
            share = self.dead_share(trial, name, step, mode)
            if share is not None and 100 * share > self.threshold_layer:
                found.append((share, name))
        if not found:
            return None
        share, tensor, others = worst(found, largest=True)
        return self.finding(
            step,
            mode,
            tensor,
            100 * share,
            self.threshold_layer,
            f"{tensor}: {100 * share:.0f}% of the ReLU units are dead (active < "
            f"{fmt(self.threshold_inactivity)}% of the time; threshold_layer "
            f"{fmt(self.threshold_layer)}%) at {mode} step {step}{more(others)}",
        )
