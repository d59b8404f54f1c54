"""Overtraining: training or validation loss stopped improving.

SageMaker: fires when the training loss does not improve by more than `delta` for `patience_train` steps, or
the validation loss for `patience_validation` steps; `patience_train=5`, `patience_validation=10`,
`delta=0.01` (older DG: 0.1) (DG:debugger-built-in-rules.md @dcfe1c6).

Ours counts in windows, not single steps: TRAIN losses are averaged over `window` (10) steps, and EVAL
losses over one evaluation pass (see overfit.py), because one minibatch loss is noise. Improvement is
absolute (best - current > delta), as in SageMaker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vizsla.debugger.rules.base import BaseRule, Finding, fmt, scalar_series, select_tensors
from vizsla.debugger.rules.overfit import eval_pass, train_position
from vizsla.debugger.rules.registry import register_rule


@register_rule
@dataclass
class Overtraining(BaseRule):
    """Fires when the windowed train loss or the per-pass eval loss stops improving by > delta."""

    name = "Overtraining"
    collections_needed = ("losses",)
    modes = ("TRAIN", "EVAL")

    patience_train: int = 5
    patience_validation: int = 10
    delta: float = 0.01
    window: int = 10
    _best: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _stale: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _seen_pass: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def _update(self, key: str, value: float) -> int:
        best = self._best.get(key)
        if best is None or best - value > self.delta:
            self._best[key], self._stale[key] = value if best is None else min(best, value), 0
        else:
            self._stale[key] = self._stale.get(key, 0) + 1
        return self._stale[key]

    def evaluate(self, trial: Any, step: int, mode: str) -> Finding | None:
        for name in select_tensors(trial, mode, default_collections=("losses",)):
            series = scalar_series(trial, name, mode, upto=step)
            if step not in series:
                continue
            if mode == "TRAIN":
                if (len(series)) % self.window:
                    continue  # one comparison per full window
                steps = sorted(series)[-self.window :]
                value, patience, unit = (
                    float(np.mean([series[s] for s in steps])),
                    self.patience_train,
                    "window",
                )
            else:
                position = train_position(trial, mode, step)
                key = (name, position if position is not None else len(series) // self.window)
                previous = self._seen_pass.get(name)
                self._seen_pass[name] = key
                if previous is None or previous == key:
                    continue  # compare a pass once it is complete, i.e. when the next one starts
                value = float(np.mean(eval_pass(trial, series, step - 1, self.window)))
                patience, unit = self.patience_validation, "evaluation pass"
            stale = self._update(f"{mode}:{name}", value)
            if stale >= patience:
                return self.finding(
                    step,
                    mode,
                    name,
                    stale,
                    patience,
                    f"{mode} {name} has not improved by more than {fmt(self.delta)} for {stale} "
                    f"{unit}s (best {fmt(self._best[f'{mode}:{name}'])}, now {fmt(value)}) "
                    f"at {mode} step {step}",
                )
        return None
