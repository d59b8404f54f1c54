"""LoadBalancing: do the GPUs of a multi-GPU job carry the same load?

SageMaker: per GPU a histogram of utilisation in 2 %-wide bins; a pair of GPUs whose histograms are
further apart than `threshold` in Jensen-Shannon distance is a violation (threshold 0.5 in the SDK and the
docs, 0.2 in the rule code; we keep 0.5). `patience` (1000) becomes `min_samples` (10). Needs 2+ GPUs.
"""

from __future__ import annotations

import math

from vizsla.profiler.data import ProfileData
from vizsla.profiler.rules import register_rule
from vizsla.profiler.rules.base import INSUFFICIENT, NO_ISSUES, TRIGGERED, BaseRule, Finding

BINS = 50  # 2 %-wide bins over 0-100 %


def histogram(values: list[float]) -> list[float]:
    counts = [0.0] * BINS
    for value in values:
        counts[min(BINS - 1, max(0, int(value // 2)))] += 1
    total = sum(counts) or 1.0
    return [c / total for c in counts]


def js_distance(p: list[float], q: list[float]) -> float:
    """Jensen-Shannon distance (base 2, so in [0, 1]) between two discrete distributions."""
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]

    def kl(a: list[float]) -> float:
        return sum(x * math.log2(x / y) for x, y in zip(a, m, strict=True) if x > 0)

    return math.sqrt(max(0.0, (kl(p) + kl(q)) / 2))


@register_rule
class LoadBalancing(BaseRule):
    name = "LoadBalancing"
    description = "Compares the utilisation distributions of the GPUs of a multi-GPU job."
    defaults = {"threshold": 0.5, "min_samples": 10}

    def evaluate(self, data: ProfileData) -> Finding:
        if data.gpu_count < 2:
            return self.finding(INSUFFICIENT, f"{data.gpu_count} GPU(s): load balancing needs two or more")
        samples = data.train_system()
        series = [data.gpu_series(i, "util", samples) for i in range(data.gpu_count)]
        if min(len(s) for s in series) < self.params["min_samples"]:
            return self.too_few("GPU samples", min(len(s) for s in series), int(self.params["min_samples"]))
        hists = [histogram(s) for s in series]
        details = [
            {"gpus": [i, j], "distance": round(js_distance(hists[i], hists[j]), 3)}
            for i in range(len(hists))
            for j in range(i + 1, len(hists))
        ]
        worst = max(details, key=lambda d: d["distance"])
        numbers = {"max_distance": worst["distance"], "gpus": data.gpu_count}
        if worst["distance"] <= self.params["threshold"]:
            return self.finding(
                NO_ISSUES,
                f"largest distance {worst['distance']:.2f}",
                numbers=numbers,
                datapoints=len(samples),
                details=details,
            )
        return self.finding(
            TRIGGERED,
            f"GPUs {worst['gpus']} differ by {worst['distance']:.2f} (threshold {self.params['threshold']})",
            recommendation="give every GPU the same share: use DistributedDataParallel with one process per "
            "GPU "
            "and equal per-GPU batches (train.batch_size divisible by the GPU count)",
            numbers=numbers,
            datapoints=len(samples),
            details=details,
        )
