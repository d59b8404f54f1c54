"""VanishingGradient: a gradient whose mean absolute value falls below a threshold.

SageMaker: fires when mean(abs(gradient)) < threshold; `threshold=1e-7`; default collection gradients
(DG:debugger-built-in-rules.md @dcfe1c6; RC ruleConfigs.json). Our gradients are saved every `save_interval`
(100) TRAIN steps plus step 0, so the rule sees step 0 (where a dead init shows) and every 100th step.

Ours watches weight gradients by default (`tensor_regex="^gradient/.*weight$"`): a bias followed by a
BatchNorm in training mode gets gradients that cancel exactly (the BatchNorm subtracts any constant shift),
e.g. ~1e-8 on EfficientNet's projection-block biases in a healthy run, which says nothing about vanishing
gradients. Set `tensor_regex="^gradient/"` to include biases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vizsla.debugger.rules.base import BaseRule, Finding, at_step, fmt, mean_abs, more, worst
from vizsla.debugger.rules.registry import register_rule


@register_rule
@dataclass
class VanishingGradient(BaseRule):
    """Fires when any gradient's mean |g| < threshold (the smallest one is reported)."""

    name = "VanishingGradient"
    collections_needed = ("gradients",)

    threshold: float = 1e-7
    tensor_regex: str = r"^gradient/.*weight$"

    def evaluate(self, trial: Any, step: int, mode: str) -> Finding | None:
        names = at_step(trial, trial.tensor_names(mode=mode, regex=self.tensor_regex), step, mode)
        found = []
        for name in names:
            value = mean_abs(trial, name, step, mode)
            if value is not None and value < self.threshold:
                found.append((value, name))
        if not found:
            return None
        value, tensor, others = worst(found, largest=False)
        return self.finding(
            step,
            mode,
            tensor,
            value,
            self.threshold,
            f"{tensor} mean abs {fmt(value)} < threshold {fmt(self.threshold)} "
            f"at {mode} step {step}{more(others)}",
        )
