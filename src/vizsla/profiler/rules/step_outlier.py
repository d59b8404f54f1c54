"""StepOutlier: steps that took far longer than the others, and in which phase the time went.

SageMaker (defaults): once 100 steps are seen, a step is an outlier when its duration exceeds
mean + `stddev` (3; docs say 5) x standard deviation; triggers when there are more than `n_outliers` (10).
In a short job a few slow steps inflate the mean and the standard deviation enough to hide themselves, so
we use the robust form of the same test: median + `stddev` x 1.4826 x MAD (the MAD-based estimate of the
standard deviation), and a step must also exceed `min_ratio` (1.5, ours) x the median so that jitter of
very regular steps is not flagged. Triggers when outliers number more than `n_outliers` or more than
`max_fraction` (0.05, ours) of the steps. The job's first step (lazy initialisation, warm-up) is left out:
it is reported as a job phase, and so are the steps of a torch.profiler window (the profiler slows them
and exports its trace at the window's end). Needs `min_steps` (10).
"""

from __future__ import annotations

import statistics

from vizsla.profiler.collectors.step_phases import PHASES
from vizsla.profiler.data import ProfileData
from vizsla.profiler.rules import register_rule
from vizsla.profiler.rules.base import NO_ISSUES, TRIGGERED, BaseRule, Finding

PHASE_ADVICE = {
    "data_s": "they wait for data: the first batch of an epoch starts the loader workers; elsewhere a slow "
    "read or a huge image (raise data.num_workers, check the storage)",
    "forward_s": "the forward pass slowed: other processes competing for the cores (see system usage), or a "
    "callback at batch_start",
    "backward_s": "the backward pass slowed: other processes competing for the cores, or memory pressure",
    "optimizer_s": "time after backward: a callback at batch_end (debugger saves, checkpoints) or the "
    "optimizer",
}


@register_rule
class StepOutlier(BaseRule):
    name = "StepOutlier"
    description = "Finds train steps much slower than the median step, and the phase that made them slow."
    defaults = {"stddev": 3, "n_outliers": 10, "max_fraction": 0.05, "min_ratio": 1.5, "min_steps": 10}

    def evaluate(self, data: ProfileData) -> Finding:
        skip = range(0)
        if data.operators and data.operators.get("affected_steps"):
            first, last = data.operators["affected_steps"]
            skip = range(first, last + 1)
        steps = [r for r in data.steps if r.get("step", 0) > 0 and r.get("step") not in skip]
        if len(steps) < self.params["min_steps"]:
            return self.too_few("train steps", len(steps), int(self.params["min_steps"]))
        totals = [r["total_s"] for r in steps]
        median = statistics.median(totals)
        mad = statistics.median(abs(t - median) for t in totals)
        limit = max(median + self.params["stddev"] * 1.4826 * mad, self.params["min_ratio"] * median)
        outliers = [r for r in steps if r["total_s"] > limit]
        typical = {p: statistics.median(r.get(p, 0.0) for r in steps) for p in PHASES}
        details = [
            {
                "step": r["step"],
                "epoch": r["epoch"],
                "total_s": round(r["total_s"], 4),
                "times_median": round(r["total_s"] / median, 2),
                "phase": max(PHASES, key=lambda p, r=r: r.get(p, 0.0) - typical[p]),
            }
            for r in outliers
        ]
        numbers = {
            "steps": len(steps),
            "median_s": median,
            "mean_s": statistics.fmean(totals),
            "max_s": max(totals),
            "limit_s": limit,
            "outliers": len(outliers),
            "skipped_profiler_steps": len(skip),
        }
        message = f"{len(outliers)} of {len(steps)} steps above {limit:.3f} s (median {median:.3f} s)"
        if details:
            message += ": steps " + ", ".join(str(d["step"]) for d in details[:20])
        allowed = min(self.params["n_outliers"], self.params["max_fraction"] * len(steps))
        if len(outliers) <= allowed:
            return self.finding(NO_ISSUES, message, numbers=numbers, datapoints=len(steps), details=details)
        phase = statistics.mode(d["phase"] for d in details)
        return self.finding(
            TRIGGERED,
            message,
            recommendation=(
                f"most outliers lose their time in {phase.removesuffix('_s')}: {PHASE_ADVICE[phase]}"
            ),
            numbers=numbers,
            datapoints=len(steps),
            details=details,
        )
