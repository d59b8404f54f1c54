"""Dataloader: does the training loop wait for data, and is the worker count sized to the cores?

SageMaker's Dataloader rule counts data loader processes per second and flags a median below
`min_threshold` (70) or above `max_threshold` (200) percent of the cores; it needs AWS's patched loader.
We time the wait directly: the median over steps of data wait / step time. Triggered when that share is
above `wait_threshold` (0.10, ours; torch-tb-profiler's advice fires at 0.05), or when there are more
workers than `max_threshold` % of the cores. Too few workers (< `min_threshold` % of cores) only matters,
and is only reported as the fix, when the loop does wait for data. `min_steps` (5) steps are needed.
"""

from __future__ import annotations

import statistics

from vizsla.profiler.data import ProfileData
from vizsla.profiler.rules import register_rule
from vizsla.profiler.rules.base import NO_ISSUES, TRIGGERED, BaseRule, Finding, suggested_workers


@register_rule
class Dataloader(BaseRule):
    name = "Dataloader"
    description = "Checks the share of step time spent waiting for data and the loader workers per core."
    defaults = {"wait_threshold": 0.10, "min_threshold": 70, "max_threshold": 200, "min_steps": 5}

    def evaluate(self, data: ProfileData) -> Finding:
        fractions = data.data_wait_fractions()
        if len(fractions) < self.params["min_steps"]:
            return self.too_few("train steps", len(fractions), int(self.params["min_steps"]))
        share = statistics.median(fractions)
        workers, cores = data.num_workers, data.cores
        workers_pct = 100.0 * (workers or 0) / cores
        numbers = {
            "data_wait_share_median": share,
            "data_wait_share_overall": sum(r["data_s"] for r in data.steps) / sum(data.step_totals()),
            "data_wait_median_s": statistics.median(r["data_s"] for r in data.steps),
            "step_median_s": statistics.median(data.step_totals()),
            "num_workers": workers,
            "cores": cores,
            "workers_percent_of_cores": workers_pct,
        }
        waits = share > self.params["wait_threshold"]
        too_many = workers_pct > self.params["max_threshold"]
        if not waits and not too_many:
            return self.finding(
                NO_ISSUES,
                f"the loop waits for data {share:.0%} of a step (median); {workers} workers on {cores} cores",
                numbers=numbers,
                datapoints=len(fractions),
            )
        return self.finding(
            TRIGGERED,
            f"the loop waits for data {share:.0%} of a step (median, threshold "
            f"{self.params['wait_threshold']:.0%}); {workers} workers on {cores} cores",
            recommendation=self._advice(data, share, workers, cores, workers_pct),
            numbers=numbers,
            datapoints=len(fractions),
        )

    def _advice(self, data: ProfileData, share: float, workers: int | None, cores: int, pct: float) -> str:
        target = suggested_workers(cores)
        if pct > self.params["max_threshold"]:
            return (
                f"lower data.num_workers from {workers} to {target}: more workers than "
                f"{self.params['max_threshold']:.0f}% of the {cores} cores compete with training for CPU"
            )
        if data.cached_features:
            return (
                "the head trains on cached features, so the wait is batch assembly: "
                f"increase train.batch_size from {data.context.get('batch_size')} to "
                f"{2 * (data.context.get('batch_size') or 16)}"
            )
        if not workers or (workers < target and pct < self.params["min_threshold"]):
            return (
                f"raise data.num_workers from {workers or 0} to {target} so decoding overlaps the "
                f"forward/backward pass (data wait is {share:.0%} of each step)"
            )
        size = data.context.get("image_size") or 224
        return (
            f"with {workers} workers on {cores} cores decoding is still slower than training: store the "
            f"images near the model's input size (e.g. shorter side {2 * size} px), keep them on a local "
            "disk, "
            "or train the head on cached features (train.finetune=head, train.feature_cache=auto)"
        )
