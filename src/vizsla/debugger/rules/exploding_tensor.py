"""ExplodingTensor: NaN (or infinite) values in any recorded tensor.

SageMaker: fires on NaN/Inf; `collection_names=None`, `tensor_regex=None`, `only_nan=False`; no default
collection (DG:debugger-built-in-rules.md @dcfe1c6). With neither given we check every collection the hook
records (losses, weights, biases, gradients, relu outputs, inputs), in TRAIN and EVAL steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vizsla.debugger.rules.base import BaseRule, Finding, at_step, more, select_tensors
from vizsla.debugger.rules.registry import register_rule

ALL_COLLECTIONS = ("losses", "weights", "biases", "gradients", "relu_output", "outputs", "inputs")


@register_rule
@dataclass
class ExplodingTensor(BaseRule):
    """Fires when a tensor holds NaN (or +-Inf unless only_nan)."""

    name = "ExplodingTensor"
    collections_needed = ALL_COLLECTIONS
    modes = ("TRAIN", "EVAL")

    collection_names: tuple[str, ...] | None = None
    tensor_regex: str | None = None
    only_nan: bool = False

    def evaluate(self, trial: Any, step: int, mode: str) -> Finding | None:
        names = select_tensors(
            trial,
            mode,
            collection_names=self.collection_names,
            tensor_regex=self.tensor_regex,
            default_collections=ALL_COLLECTIONS,
        )
        found = []
        for name in at_step(trial, names, step, mode):
            tensor = trial.tensor(name)
            nans = tensor.reduction(step, "nan_count", mode) or 0.0
            infs = 0.0 if self.only_nan else (tensor.reduction(step, "inf_count", mode) or 0.0)
            if nans or infs:
                found.append((nans, infs, name))
        if not found:
            return None
        nans, infs, tensor = max(found, key=lambda item: item[0] + item[1])
        what = f"{int(nans)} NaN" + ("" if self.only_nan else f" and {int(infs)} Inf")
        return self.finding(
            step,
            mode,
            tensor,
            nans + infs,
            0.0,
            f"{tensor} has {what} values at {mode} step {step}{more(len(found) - 1)}",
        )
