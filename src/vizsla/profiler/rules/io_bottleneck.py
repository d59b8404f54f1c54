"""IOBottleneck: does training wait on the disk?

SageMaker (defaults): a snapshot is a bottleneck when some core's I/O wait is above `io_threshold` (50 %)
while a GPU is below `gpu_threshold` (10 % in the rule code; 70 % in the docs); triggers when bottleneck
snapshots exceed `threshold` (50) % after `patience` (1000). We need `min_samples` (10) snapshots during
training; without a GPU the I/O-wait condition alone counts.
"""

from __future__ import annotations

import statistics

from vizsla.profiler.data import ProfileData
from vizsla.profiler.rules import register_rule
from vizsla.profiler.rules.base import NO_ISSUES, TRIGGERED, BaseRule, Finding, suggested_workers


@register_rule
class IOBottleneck(BaseRule):
    name = "IOBottleneck"
    description = "Checks whether cores wait on I/O (reading images) while training should be running."
    defaults = {"threshold": 50, "gpu_threshold": 10, "io_threshold": 50, "min_samples": 10}

    def evaluate(self, data: ProfileData) -> Finding:
        samples = [s for s in data.train_system() if s.get("iowait")]
        if len(samples) < self.params["min_samples"]:
            return self.too_few(
                "system samples during training", len(samples), int(self.params["min_samples"])
            )
        hot = [max(s["iowait"]) > self.params["io_threshold"] for s in samples]
        if data.has_gpu:
            hot = [
                h and min(g["util"] for g in s.get("gpus") or [{"util": 100}]) < self.params["gpu_threshold"]
                for h, s in zip(hot, samples, strict=True)
            ]
        fraction = 100.0 * sum(hot) / len(samples)
        numbers = {
            "bottleneck_percent": fraction,
            "iowait_max_core_p50": statistics.median(data.iowait_max_core(samples)),
            "iowait_max_core_p95": sorted(data.iowait_max_core(samples))[int(0.95 * (len(samples) - 1))],
            "disk_read_mb_s_p50": statistics.median(data.series("disk_read_bps", samples) or [0.0]) / 2**20,
        }
        message = (
            f"{fraction:.0f}% of samples had a core waiting on I/O more than "
            f"{self.params['io_threshold']:.0f}% of the time (threshold {self.params['threshold']:.0f}%)"
        )
        if fraction <= self.params["threshold"]:
            return self.finding(NO_ISSUES, message, numbers=numbers, datapoints=len(samples))
        workers = data.num_workers or 0
        return self.finding(
            TRIGGERED,
            message,
            recommendation=(
                "copy the images to a local SSD (or let vizsla cache a remote data set in cache_dir), "
                f"raise data.num_workers from {workers} to {max(workers, suggested_workers(data.cores)) * 2} "
                "to keep more reads in flight, and store images near the model's input size"
            ),
            numbers=numbers,
            datapoints=len(samples),
        )
