"""PoorWeightInitialization: at the start of training, activations or gradients look badly scaled.

SageMaker (DG:debugger-built-in-rules.md @dcfe1c6; RC: relu_input every 500 steps): in the first `steps`
steps, (a) the ratio of the largest to the smallest variance of the activation inputs across layers exceeds
`threshold`, (b) the gradients' 5th-95th percentile spread is below `distribution_range`, (c) the loss does
not decrease within `patience` steps. `activation_inputs_regex=".*relu_input"`, `threshold=10.0`,
`distribution_range=0.001`, `patience=5`, `steps=10`.

Ours: (a) uses the ReLU *outputs* the hook records (an in-place ReLU makes its input unobservable; see the
debugger note), default regex `_relu_output_\\d+$`; (b) fires when every gradient tensor of the step has a
spread below `distribution_range` (no layer gets a usable signal), spreads read from the stored histograms;
(c) is left to LossNotDecreasing so that one broken training trips one rule; `patience` is accepted for
SageMaker compatibility and unused. With our save interval (100) the only early step saved is step 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vizsla.debugger.rules.base import (
    BaseRule,
    Finding,
    at_step,
    fmt,
    percentile,
    select_tensors,
    variance,
)
from vizsla.debugger.rules.registry import register_rule


@register_rule
@dataclass
class PoorWeightInitialization(BaseRule):
    """Fires in the first `steps` steps on an activation variance ratio > threshold or collapsed gradients."""

    name = "PoorWeightInitialization"
    collections_needed = ("relu_output", "gradients")

    activation_inputs_regex: str = r"_relu_output_\d+$"
    threshold: float = 10.0
    distribution_range: float = 0.001
    patience: int = 5
    steps: int = 10

    def evaluate(self, trial: Any, step: int, mode: str) -> Finding | None:
        if step >= self.steps:
            return None
        return self._activations(trial, step, mode) or self._gradients(trial, step, mode)

    def _activations(self, trial: Any, step: int, mode: str) -> Finding | None:
        names = at_step(trial, trial.tensor_names(mode=mode, regex=self.activation_inputs_regex), step, mode)
        variances = [(v, n) for n in names if (v := variance(trial, n, step, mode)) is not None]
        if len(variances) < 2:
            return None
        (low, low_name), (high, high_name) = min(variances), max(variances)
        ratio = high / low if low > 0 else float("inf")
        if ratio <= self.threshold:
            return None
        return self.finding(
            step,
            mode,
            high_name,
            ratio,
            self.threshold,
            f"activation variance ratio {fmt(ratio)} > threshold {fmt(self.threshold)} "
            f"at {mode} step {step}: {high_name} variance {fmt(high)} vs {low_name} {fmt(low)}",
        )

    def _gradients(self, trial: Any, step: int, mode: str) -> Finding | None:
        names = at_step(trial, select_tensors(trial, mode, default_collections=("gradients",)), step, mode)
        spreads = []
        for name in names:
            low, high = percentile(trial, name, step, mode, 5), percentile(trial, name, step, mode, 95)
            if low is not None and high is not None:
                spreads.append((high - low, name))
        if not spreads or max(spreads)[0] >= self.distribution_range:
            return None
        widest, name = max(spreads)
        return self.finding(
            step,
            mode,
            name,
            widest,
            self.distribution_range,
            f"gradients have no spread at {mode} step {step}: the widest 5-95th percentile range "
            f"({name}) is {fmt(widest)} < distribution_range {fmt(self.distribution_range)} "
            f"across {len(spreads)} tensors",
        )
