"""AllZero: a tensor whose values are (almost) all exactly zero.

SageMaker (DG:debugger-built-in-rules.md @dcfe1c6): fires when >= `threshold` % of a tensor's values are
zero; `collection_names=None`, `tensor_regex=None` (one must be given), `threshold=100`.

Our default when neither is given is the `inputs` collection (a pipeline feeding blank tensors): weights and
gradients have their own rules (PoorWeightInitialization, VanishingGradient), and healthy models start some
weights at zero on purpose (timm's zero-init of the last BatchNorm of residual blocks), so watching them by
default would fire on healthy runs. Name collections or a regex to watch anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vizsla.debugger.rules.base import BaseRule, Finding, at_step, fmt, more, select_tensors
from vizsla.debugger.rules.registry import register_rule


@register_rule
@dataclass
class AllZero(BaseRule):
    """Fires when >= threshold % of a tensor's values are exactly zero."""

    name = "AllZero"
    collections_needed = ("inputs",)
    modes = ("TRAIN", "EVAL")

    collection_names: tuple[str, ...] | None = None
    tensor_regex: str | None = None
    threshold: float = 100.0

    def evaluate(self, trial: Any, step: int, mode: str) -> Finding | None:
        names = select_tensors(
            trial,
            mode,
            collection_names=self.collection_names,
            tensor_regex=self.tensor_regex,
            default_collections=("inputs",),
        )
        found = []
        for name in at_step(trial, names, step, mode):
            zeros = trial.tensor(name).reduction(step, "zero_fraction", mode)
            if zeros is not None and 100 * zeros >= self.threshold:
                found.append((100 * zeros, name))
        if not found:
            return None
        value, tensor = max(found)
        return self.finding(
            step,
            mode,
            tensor,
            value,
            self.threshold,
            f"{tensor}: {value:.1f}% of the values are zero (>= threshold {fmt(self.threshold)}%) "
            f"at {mode} step {step}{more(len(found) - 1)}",
        )
