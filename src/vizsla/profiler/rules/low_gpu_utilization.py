"""LowGPUUtilization: is a GPU under-used or idling in bursts?

SageMaker (defaults): per GPU over the last `window` (500) samples after `patience` (1000): p95 utilisation
below `threshold_p95` (70 %) = under-used; p95 above it but p5 below `threshold_p5` (10 %) = fluctuating
(stalls between bursts). We apply the same test to all samples taken during training, from `min_samples`
(10) on. No GPU: InsufficientData.
"""

from __future__ import annotations

from vizsla.profiler.data import ProfileData, percentile
from vizsla.profiler.rules import register_rule
from vizsla.profiler.rules.base import INSUFFICIENT, NO_ISSUES, TRIGGERED, BaseRule, Finding


@register_rule
class LowGPUUtilization(BaseRule):
    name = "LowGPUUtilization"
    description = "Checks for GPUs that are under-used (low p95) or fluctuating (high p95, low p5)."
    defaults = {"threshold_p95": 70, "threshold_p5": 10, "min_samples": 10}

    def evaluate(self, data: ProfileData) -> Finding:
        if not data.has_gpu:
            return self.finding(
                INSUFFICIENT, "no GPU in this job (NVML found none, or pynvml is not installed)"
            )
        samples = data.train_system()
        details, low, fluctuating = [], [], []
        for index in range(data.gpu_count):
            util = data.gpu_series(index, "util", samples)
            if len(util) < self.params["min_samples"]:
                return self.too_few(f"GPU{index} samples", len(util), int(self.params["min_samples"]))
            p5, p50, p95 = (percentile(util, q) for q in (5, 50, 95))
            details.append({"gpu": index, "p5": p5, "p50": p50, "p95": p95})
            if p95 < self.params["threshold_p95"]:
                low.append(index)
            elif p5 < self.params["threshold_p5"]:
                fluctuating.append(index)
        numbers = {f"gpu{d['gpu']}_p95": d["p95"] for d in details}
        if not low and not fluctuating:
            return self.finding(
                NO_ISSUES,
                "GPUs busy (p95 above threshold, no idle dips)",
                numbers=numbers,
                datapoints=len(samples),
                details=details,
            )
        batch = data.context.get("batch_size") or 32
        parts = []
        if low:
            parts.append(
                f"GPU {', '.join(map(str, low))} under-used (p95 < {self.params['threshold_p95']:.0f}%)"
            )
        if fluctuating:
            parts.append(
                f"GPU {', '.join(map(str, fluctuating))} fluctuating "
                f"(p5 < {self.params['threshold_p5']:.0f}%)"
            )
        advice = (
            f"increase train.batch_size from {batch} to {2 * batch} (and scale train.lr), or fix the input "
            "pipeline first if Dataloader/CPUBottleneck also triggered"
            if low
            else f"the GPU idles between steps: raise data.num_workers from {data.num_workers} to "
            f"{max(2, 2 * (data.num_workers or 1))} so batches are ready when a step ends"
        )
        return self.finding(
            TRIGGERED,
            "; ".join(parts),
            recommendation=advice,
            numbers=numbers,
            datapoints=len(samples),
            details=details,
        )
