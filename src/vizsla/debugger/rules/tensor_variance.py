"""TensorVariance: a tensor's variance outside [min_threshold, max_threshold].

SageMaker (DG:debugger-built-in-rules.md @dcfe1c6): `collection_names=None`, `tensor_regex=None`,
`max_threshold=None`, `min_threshold=None`; no default collection. Ours needs at least one threshold; with
neither collection_names nor tensor_regex it watches weights, gradients and relu outputs (variance = std**2
of the stored reductions, or of the raw tensor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vizsla.debugger.rules.base import BaseRule, Finding, at_step, fmt, more, select_tensors, variance
from vizsla.debugger.rules.registry import register_rule

DEFAULT = ("weights", "gradients", "relu_output")


@register_rule
@dataclass
class TensorVariance(BaseRule):
    """Fires when a tensor's variance is below min_threshold or above max_threshold."""

    name = "TensorVariance"
    collections_needed = DEFAULT

    collection_names: tuple[str, ...] | None = None
    tensor_regex: str | None = None
    max_threshold: float | None = None
    min_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.max_threshold is None and self.min_threshold is None:
            raise ValueError("give max_threshold and/or min_threshold")

    def evaluate(self, trial: Any, step: int, mode: str) -> Finding | None:
        names = select_tensors(
            trial,
            mode,
            collection_names=self.collection_names,
            tensor_regex=self.tensor_regex,
            default_collections=DEFAULT,
        )
        high, low = [], []
        for name in at_step(trial, names, step, mode):
            value = variance(trial, name, step, mode)
            if value is None:
                continue
            if self.max_threshold is not None and value > self.max_threshold:
                high.append((value, name))
            elif self.min_threshold is not None and value < self.min_threshold:
                low.append((value, name))
        if high:
            value, tensor = max(high)
            return self.finding(
                step,
                mode,
                tensor,
                value,
                self.max_threshold,
                f"{tensor} variance {fmt(value)} > max_threshold {fmt(self.max_threshold)} "
                f"at {mode} step {step}{more(len(high) - 1)}",
            )
        if low:
            value, tensor = min(low)
            return self.finding(
                step,
                mode,
                tensor,
                value,
                self.min_threshold,
                f"{tensor} variance {fmt(value)} < min_threshold {fmt(self.min_threshold)} "
                f"at {mode} step {step}{more(len(low) - 1)}",
            )
        return None
