"""GPUMemoryIncrease: does GPU memory keep growing (a leak, or tensors kept across steps)?

SageMaker (defaults): per GPU, mean memory utilisation of the last `window` (10; docs 500) samples minus
the mean of the window before exceeds `increase` (5 points; docs 10) -> one violation, checked after
`patience` (1000) samples. We slide over consecutive windows of the samples taken during training (after
the first window, which holds the allocator's warm-up) and need 3 windows of samples.
"""

from __future__ import annotations

import statistics

from vizsla.profiler.data import ProfileData
from vizsla.profiler.rules import register_rule
from vizsla.profiler.rules.base import INSUFFICIENT, NO_ISSUES, TRIGGERED, BaseRule, Finding


@register_rule
class GPUMemoryIncrease(BaseRule):
    name = "GPUMemoryIncrease"
    description = "Checks whether GPU memory use keeps rising from one window of samples to the next."
    defaults = {"increase": 5, "window": 10}

    def evaluate(self, data: ProfileData) -> Finding:
        if not data.has_gpu:
            return self.finding(
                INSUFFICIENT, "no GPU in this job (NVML found none, or pynvml is not installed)"
            )
        window = max(1, int(self.params["window"]))
        samples = data.train_system()
        details = []
        for index in range(data.gpu_count):
            memory = data.gpu_series(index, "memory_percent", samples)
            if len(memory) < 3 * window:
                return self.too_few(f"GPU{index} samples", len(memory), 3 * window)
            means = [
                statistics.fmean(memory[i : i + window])
                for i in range(window, len(memory) - window + 1, window)
            ]
            for before, after in zip(means, means[1:], strict=False):
                if after - before > self.params["increase"]:
                    details.append(
                        {"gpu": index, "from_percent": round(before, 1), "to_percent": round(after, 1)}
                    )
        numbers = {"violations": len(details), "window_samples": window}
        if not details:
            return self.finding(
                NO_ISSUES,
                f"no rise above {self.params['increase']} points between windows",
                numbers=numbers,
                datapoints=len(samples),
            )
        worst = max(details, key=lambda d: d["to_percent"] - d["from_percent"])
        return self.finding(
            TRIGGERED,
            f"GPU{worst['gpu']} memory rose from {worst['from_percent']}% to {worst['to_percent']}% "
            f"({len(details)} rises)",
            recommendation="look for tensors kept across steps (losses appended without .item(), callbacks "
            "holding outputs); if the growth is the allocator settling, lower train.batch_size to keep "
            "headroom",
            numbers=numbers,
            datapoints=len(samples),
            details=details,
        )
