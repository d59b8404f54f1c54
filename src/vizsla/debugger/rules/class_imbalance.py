"""ClassImbalance: very uneven class counts, or a class the model keeps getting wrong.

SageMaker (DG:debugger-built-in-rules.md @dcfe1c6): after `samples` labels, fires when the most frequent
class is more than `threshold_imbalance` times the least frequent, or a class is mispredicted more than
`threshold_misprediction` of the time; `threshold_imbalance=10`, `threshold_misprediction=0.7`,
`samples=500`, `argmax=False`, `labels_regex=".*labels"`, `predictions_regex=".*predictions"`.

Ours looks at the last `samples` TRAIN labels and predictions (a sliding window, so the untrained first
steps do not count forever), and only at classes that occur among those labels.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vizsla.debugger.rules.base import BaseRule, Finding, fmt
from vizsla.debugger.rules.registry import register_rule


@register_rule
@dataclass
class ClassImbalance(BaseRule):
    """Fires on a class-count ratio > threshold_imbalance or a class misprediction rate > threshold."""

    name = "ClassImbalance"
    collections_needed = ("labels", "predictions")

    threshold_imbalance: float = 10.0
    threshold_misprediction: float = 0.7
    samples: int = 500
    argmax: bool = False
    labels_regex: str = r"labels$"
    predictions_regex: str = r"predictions$"
    _labels: deque = field(default_factory=deque, init=False, repr=False)
    _predictions: deque = field(default_factory=deque, init=False, repr=False)

    def _values(self, trial: Any, regex: str, step: int, mode: str) -> np.ndarray | None:
        names = trial.tensor_names(mode=mode, regex=regex)
        for name in names:
            raw = trial.tensor(name).value(step, mode)
            if raw is not None:
                return np.asarray(raw)
        return None

    def evaluate(self, trial: Any, step: int, mode: str) -> Finding | None:
        labels = self._values(trial, self.labels_regex, step, mode)
        predictions = self._values(trial, self.predictions_regex, step, mode)
        if labels is None or predictions is None:
            return None
        if self.argmax:
            predictions = predictions.argmax(axis=-1)
        labels, predictions = labels.reshape(-1).astype(np.int64), predictions.reshape(-1).astype(np.int64)
        if labels.shape != predictions.shape:
            return None
        self._labels.extend(labels.tolist())
        self._predictions.extend(predictions.tolist())
        while len(self._labels) > self.samples:
            self._labels.popleft()
            self._predictions.popleft()
        if len(self._labels) < self.samples:
            return None
        window_labels, window_predictions = np.asarray(self._labels), np.asarray(self._predictions)
        classes, counts = np.unique(window_labels, return_counts=True)
        ratio = counts.max() / counts.min()
        if ratio > self.threshold_imbalance:
            return self.finding(
                step,
                mode,
                "labels",
                ratio,
                self.threshold_imbalance,
                f"class {classes[counts.argmax()]} occurs {fmt(ratio)}x as often as class "
                f"{classes[counts.argmin()]} in the last {self.samples} {mode} labels (> threshold_imbalance "
                f"{fmt(self.threshold_imbalance)}) at {mode} step {step}",
            )
        wrong = [(float(np.mean(window_predictions[window_labels == c] != c)), int(c)) for c in classes]
        rate, cls = max(wrong)
        if rate > self.threshold_misprediction:
            return self.finding(
                step,
                mode,
                "predictions",
                rate,
                self.threshold_misprediction,
                f"class {cls} is mispredicted {100 * rate:.0f}% of the time in the last {self.samples} "
                f"{mode} samples (> threshold_misprediction {fmt(self.threshold_misprediction)}) "
                f"at {mode} step {step}",
            )
        return None
