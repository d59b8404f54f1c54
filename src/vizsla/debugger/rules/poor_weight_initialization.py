"""PoorWeightInitialization: at the start of training, activations or gradients look badly scaled.

SageMaker (DG:debugger-built-in-rules.md @dcfe1c6; RC: relu_input every 500 steps): in the first `steps`
steps, (a) the ratio of the largest to the smallest variance of the activation inputs across layers exceeds
`threshold`, (b) the gradients' 5th-95th percentile spread is below `distribution_range`, (c) the loss does
not decrease within `patience` steps. `activation_inputs_regex=".*relu_input"`, `threshold=10.0`,
`distribution_range=0.001`, `patience=5`, `steps=10`.

Ours: (a) uses the ReLU *outputs* the hook records (an in-place ReLU makes its input unobservable; see the
debugger note), default regex `relu_output_\\d+$` (Vizsla's `<module>_relu_output_<i>` and an smdebug hook's
`<Model>_<path.to>.relu_output_<i>` alike); (b) fires when every gradient tensor of the step has a
spread below `distribution_range` (no layer gets a usable signal), spreads read from the stored histograms;
(c) is left to LossNotDecreasing so that one broken training trips one rule; `patience` is accepted for
SageMaker compatibility and unused. With our save interval (100) the only early step saved is step 0.
Pretrained weights are not an initialisation: their layers' activation variances legitimately differ by
more than 10x (efficientnet_lite0 on real photos: 17.8x at step 0), so when the job's spec.yaml says the
backbone came pretrained, (a) looks at the freshly initialised head only (`layers="auto"`; "all" or a
regex overrides it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

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
from vizsla.jobdir import JobDir


@register_rule
@dataclass
class PoorWeightInitialization(BaseRule):
    """Fires in the first `steps` steps on an activation variance ratio > threshold or collapsed gradients."""

    name = "PoorWeightInitialization"
    collections_needed = ("relu_output", "gradients")

    activation_inputs_regex: str = r"relu_output_\d+$"
    threshold: float = 10.0
    distribution_range: float = 0.001
    patience: int = 5
    steps: int = 10
    layers: str = "auto"

    def evaluate(self, trial: Any, step: int, mode: str) -> Finding | None:
        if step >= self.steps:
            return None
        return self._activations(trial, step, mode) or self._gradients(trial, step, mode)

    def _activations(self, trial: Any, step: int, mode: str) -> Finding | None:
        names = at_step(trial, trial.tensor_names(mode=mode, regex=self.activation_inputs_regex), step, mode)
        layers = self._layers_regex(trial)
        if layers is not None:
            names = [n for n in names if re.search(layers, n)]
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

    def _layers_regex(self, trial: Any) -> str | None:
        """None for every layer; the head's tensors when the backbone started from pretrained weights."""
        if self.layers == "all":
            return None
        if self.layers != "auto":
            return self.layers
        return r"^head\." if _pretrained(trial) else None

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


def _pretrained(trial: Any) -> bool:
    """Whether the job (the debug store's parent folder) loaded pretrained backbone weights."""
    root = getattr(trial, "root", None)
    if root is None:
        return False
    try:
        spec = yaml.safe_load(JobDir(Path(root).parent).spec.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return False
    weights = str((spec.get("model") or {}).get("weights", "auto"))
    return weights.lower() != "none"
