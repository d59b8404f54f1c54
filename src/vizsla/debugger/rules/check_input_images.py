"""CheckInputImages: input images that are not normalised (mean far from zero).

SageMaker (DG:debugger-built-in-rules.md @dcfe1c6; RC: input_image every 500 steps): after
`threshold_samples` images, fires when abs(mean of the input images) > `threshold_mean`; `threshold_mean=0.2`,
`threshold_samples=500`, `regex=".*hybridsequential0_input_0"` (an MXNet name), `channel=1`.

Ours reads the `inputs` tensor (regex `^inputs$`). The image count comes from the per-step `labels`; the
mean is the batch-size-weighted mean of the saved steps' input means. With raw inputs the check is per
channel (axis `channel`); with reductions it is over all channels. When the head trains on cached backbone
features the inputs are not images and the runner skips this rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vizsla.debugger.rules.base import BaseRule, Finding, fmt
from vizsla.debugger.rules.registry import register_rule


@register_rule
@dataclass
class CheckInputImages(BaseRule):
    """Fires when the mean of the input images seen so far is farther than threshold_mean from 0."""

    name = "CheckInputImages"
    collections_needed = ("inputs", "labels")
    needs_images = True

    threshold_mean: float = 0.2
    threshold_samples: int = 500
    regex: str = r"^inputs$"
    channel: int = 1
    _judged: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def _batch(self, trial: Any, step: int, mode: str) -> int:
        raw = trial.tensor("labels").value(step, mode)
        return int(np.asarray(raw).size) if raw is not None else 1

    def evaluate(self, trial: Any, step: int, mode: str) -> Finding | None:
        images = sum(self._batch(trial, s, mode) for s in trial.tensor("labels").steps(mode) if s <= step)
        if images < self.threshold_samples:
            return None
        for name in trial.tensor_names(mode=mode, regex=self.regex):
            tensor = trial.tensor(name)
            steps = [s for s in tensor.steps(mode) if s <= step]
            if not steps or steps[-1] <= self._judged.get(name, -1):
                continue  # nothing new since the last verdict
            self._judged[name] = steps[-1]
            means, weights = [], []
            for s in steps:
                raw = tensor.value(s, mode)
                if raw is not None and np.asarray(raw).ndim > self.channel:
                    values = np.moveaxis(np.asarray(raw, dtype=np.float64), self.channel, 0)
                    means.append(values.reshape(values.shape[0], -1).mean(axis=1))
                else:
                    mean = tensor.reduction(s, "mean", mode)
                    if mean is None:
                        continue
                    means.append(np.asarray([mean]))
                weights.append(self._batch(trial, s, mode))
            if not means or len({m.shape for m in means}) != 1:
                continue
            overall = np.average(np.stack(means), axis=0, weights=weights)
            worst_channel = int(np.abs(overall).argmax())
            value = float(overall[worst_channel])
            if abs(value) > self.threshold_mean:
                where = f" channel {worst_channel}" if overall.size > 1 else ""
                return self.finding(
                    step,
                    mode,
                    name,
                    value,
                    self.threshold_mean,
                    f"{name}{where} mean {fmt(value)} over {images} images: |mean| > threshold_mean "
                    f"{fmt(self.threshold_mean)}; are the images normalised? (at {mode} step {step})",
                )
        return None
