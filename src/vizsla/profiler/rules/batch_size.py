"""BatchSize: is the batch too small to use the hardware?

SageMaker (defaults): after `patience` (1000) samples, over the last `window` (500): node CPU p95 below
`cpu_threshold_p95` (70 %) AND a GPU's utilisation p95 below `gpu_threshold_p95` (70 %) AND its memory p95
below `gpu_memory_threshold_p95` (70 %) -> a larger batch would fit and use the GPU better. We test the
samples taken during training from `min_samples` (10) on.

Without a GPU the cores do the compute: CPU p95 below `cpu_threshold_p95` while the loop is not waiting for
data (median data-wait share below `data_wait_threshold`, 0.10) means the operators are too small to keep
the cores busy, and a larger batch gives them more work per call.
"""

from __future__ import annotations

import statistics

from vizsla.profiler.data import ProfileData, percentile
from vizsla.profiler.rules import register_rule
from vizsla.profiler.rules.base import NO_ISSUES, TRIGGERED, BaseRule, Finding


@register_rule
class BatchSize(BaseRule):
    name = "BatchSize"
    description = "Checks whether CPU/GPU compute and GPU memory are under-used, so a larger batch would fit."
    defaults = {
        "cpu_threshold_p95": 70,
        "gpu_threshold_p95": 70,
        "gpu_memory_threshold_p95": 70,
        "data_wait_threshold": 0.10,
        "min_samples": 10,
    }

    def evaluate(self, data: ProfileData) -> Finding:
        samples = data.train_system()
        if len(samples) < self.params["min_samples"]:
            return self.too_few(
                "system samples during training", len(samples), int(self.params["min_samples"])
            )
        cpu_p95 = percentile(data.cpu_total(samples), 95) or 0.0
        batch = data.context.get("batch_size") or 32
        numbers: dict[str, float] = {"cpu_p95": cpu_p95, "batch_size": batch}
        if data.has_gpu:
            small = []
            for index in range(data.gpu_count):
                util = percentile(data.gpu_series(index, "util", samples), 95) or 0.0
                memory = percentile(data.gpu_series(index, "memory_percent", samples), 95) or 0.0
                numbers[f"gpu{index}_util_p95"], numbers[f"gpu{index}_memory_p95"] = util, memory
                if (
                    cpu_p95 < self.params["cpu_threshold_p95"]
                    and util < self.params["gpu_threshold_p95"]
                    and memory < self.params["gpu_memory_threshold_p95"]
                ):
                    small.append((index, memory))
            if not small:
                return self.finding(
                    NO_ISSUES,
                    "the batch keeps CPU or GPU busy, or fills GPU memory",
                    numbers=numbers,
                    datapoints=len(samples),
                )
            memory = max(m for _, m in small)
            factor = 2 if memory < 40 else 1.5  # memory grows ~linearly with the batch; stay below ~80 %
            return self.finding(
                TRIGGERED,
                f"GPU {', '.join(str(i) for i, _ in small)}: utilisation and memory p95 below thresholds",
                recommendation=f"increase train.batch_size from {batch} to {int(batch * factor)} "
                f"(GPU memory p95 is {memory:.0f}%) and scale train.lr with it",
                numbers=numbers,
                datapoints=len(samples),
            )
        fractions = data.data_wait_fractions()
        share = statistics.median(fractions) if fractions else 0.0
        numbers["data_wait_share_median"] = share
        if cpu_p95 >= self.params["cpu_threshold_p95"] or share > self.params["data_wait_threshold"]:
            return self.finding(
                NO_ISSUES,
                f"CPU p95 {cpu_p95:.0f}% (threshold {self.params['cpu_threshold_p95']:.0f}%)"
                + (
                    f"; the loop is input-bound ({share:.0%} data wait), not batch-bound"
                    if share > 0.1
                    else ""
                ),
                numbers=numbers,
                datapoints=len(samples),
            )
        return self.finding(
            TRIGGERED,
            f"CPU p95 {cpu_p95:.0f}% while training, below {self.params['cpu_threshold_p95']:.0f}%, "
            "and the loop is not waiting for data",
            recommendation=f"increase train.batch_size from {batch} to {2 * batch} so each operator has "
            "enough work for all cores (scale train.lr with it)",
            numbers=numbers,
            datapoints=len(samples),
        )
