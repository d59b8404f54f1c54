"""MaxInitializationTime: did the job take too long to reach its first training step?

SageMaker (default): triggers when no step has started `threshold` (20) minutes into the job. Our job
starts when spec.yaml is written (see collectors/job_phases.py); initialisation runs to fit_start and
includes data validation, model creation and, for head-only jobs, building the feature cache.
"""

from __future__ import annotations

from vizsla.profiler.data import ProfileData
from vizsla.profiler.rules import register_rule
from vizsla.profiler.rules.base import INSUFFICIENT, NO_ISSUES, TRIGGERED, BaseRule, Finding


def initialization_seconds(data: ProfileData) -> float | None:
    start = data.context.get("job_start")
    fit = next((m["time"] for m in data.timeline if m["event"] == "fit_start"), None)
    return None if start is None or fit is None else max(0.0, fit - start)


@register_rule
class MaxInitializationTime(BaseRule):
    name = "MaxInitializationTime"
    description = "Checks the time from job start to the training loop (data checks, model, feature cache)."
    defaults = {"threshold": 20}  # minutes

    def evaluate(self, data: ProfileData) -> Finding:
        seconds = initialization_seconds(data)
        if seconds is None:
            return self.finding(INSUFFICIENT, "job start or fit_start not recorded")
        first_step = next((m["time"] for m in data.timeline if m["event"] == "first_step_end"), None)
        numbers = {"initialization_s": seconds, "threshold_min": self.params["threshold"]}
        limit = 60.0 * self.params["threshold"]
        if seconds <= limit:
            note = "" if first_step is not None else "; no train step ran"
            return self.finding(
                NO_ISSUES, f"initialisation took {seconds:.1f} s{note}", numbers=numbers, datapoints=1
            )
        return self.finding(
            TRIGGERED,
            f"initialisation took {seconds / 60:.1f} min (threshold {self.params['threshold']:.0f} min)",
            recommendation="keep cache_dir on a persistent local disk so data validation and backbone "
            "features "
            "are reused by the next job, and copy remote data sets locally once",
            numbers=numbers,
            datapoints=1,
        )
