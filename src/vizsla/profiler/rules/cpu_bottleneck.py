"""CPUBottleneck: is the CPU what holds training back?

SageMaker (defaults): a system snapshot is a bottleneck when some GPU is below `gpu_threshold` (10 %)
utilisation while some single core is above `cpu_threshold` (90 %); the rule triggers when bottleneck
snapshots are more than `threshold` (50) % of all, after `patience` (1000) snapshots. We keep those
thresholds and need only `min_samples` (10) snapshots taken during training steps.

On a CPU-only machine the cores do the compute too, so a busy core alone says nothing. There a snapshot is
a bottleneck when some core is above `cpu_threshold`, and the rule triggers when such snapshots are more
than `threshold` % AND the median step waits for data more than `data_wait_threshold` (0.10) of its time:
the CPU work of the input pipeline (decoding, augmentation) is competing with compute for the cores and the
loop stalls on it, rather than on the disk (IOBottleneck).
"""

from __future__ import annotations

import statistics

from vizsla.profiler.data import ProfileData
from vizsla.profiler.rules import register_rule
from vizsla.profiler.rules.base import NO_ISSUES, TRIGGERED, BaseRule, Finding, suggested_workers


@register_rule
class CPUBottleneck(BaseRule):
    name = "CPUBottleneck"
    description = "Checks whether busy CPUs starve the GPU (or, without a GPU, stall the loop on input work)."
    defaults = {
        "threshold": 50,
        "gpu_threshold": 10,
        "cpu_threshold": 90,
        "data_wait_threshold": 0.10,
        "min_samples": 10,
    }

    def evaluate(self, data: ProfileData) -> Finding:
        samples = data.train_system()
        if len(samples) < self.params["min_samples"]:
            return self.too_few(
                "system samples during training", len(samples), int(self.params["min_samples"])
            )
        hot = [max(s["cpu"]) > self.params["cpu_threshold"] for s in samples]
        if data.has_gpu:
            idle = [
                min(g["util"] for g in s.get("gpus") or [{"util": 100}]) < self.params["gpu_threshold"]
                for s in samples
            ]
            hot = [h and i for h, i in zip(hot, idle, strict=True)]
        fraction = 100.0 * sum(hot) / len(samples)
        fractions = data.data_wait_fractions()
        share = statistics.median(fractions) if fractions else 0.0
        numbers = {
            "bottleneck_percent": fraction,
            "cpu_total_p50": statistics.median(data.cpu_total(samples)),
            "max_core_p50": statistics.median(data.cpu_max_core(samples)),
            "data_wait_share_median": share,
            "gpu": data.has_gpu,
        }
        triggered = fraction > self.params["threshold"]
        if not data.has_gpu:
            triggered = triggered and share > self.params["data_wait_threshold"]
        where = "with a GPU below {:.0f}% ".format(self.params["gpu_threshold"]) if data.has_gpu else ""
        message = (
            f"{fraction:.0f}% of samples had a core above {self.params['cpu_threshold']:.0f}% {where}"
            f"(threshold {self.params['threshold']:.0f}%); the loop waits for data {share:.0%} of a step"
        )
        if not triggered:
            return self.finding(NO_ISSUES, message, numbers=numbers, datapoints=len(samples))
        return self.finding(
            TRIGGERED, message, recommendation=self._advice(data), numbers=numbers, datapoints=len(samples)
        )

    @staticmethod
    def _advice(data: ProfileData) -> str:
        workers, cores = data.num_workers or 0, data.cores
        target = suggested_workers(cores)
        if workers < target and not data.cached_features:
            return (
                f"raise data.num_workers from {workers} to {target}: decoding runs in the training process "
                "and the step stalls on it; workers prepare the next batches while this one trains"
            )
        if data.has_gpu:
            return (
                "the CPU cannot feed the GPU: use a machine with more cores per GPU, lighter augmentation, "
                "or images stored near the model's input size"
            )
        return (
            f"the {cores} cores are shared by decoding and compute: store images near the model's input "
            "size, "
            "or train the head on cached features (train.finetune=head, train.feature_cache=auto)"
        )
