"""StalledTraining: no new step recorded for `threshold` seconds (the runner's wall clock).

SageMaker's StalledTrainingRule (DG:debugger-built-in-rules.md @dcfe1c6): fires when no new tensor was
written for `threshold` seconds; `threshold=1800`, `stop_training_on_fire=False`,
`training_job_name_prefix` (used by SageMaker to find the job to stop; accepted here and unused: the runner
stops its own job). `stop_training_on_fire=True` adds the "stop" action. It needs a live job, so it cannot be
re-run on stored tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vizsla.debugger.rules.base import BaseRule, Finding, fmt
from vizsla.debugger.rules.registry import register_rule

WATCHED_MODES = ("TRAIN", "EVAL", "PREDICT", "GLOBAL")


@register_rule
@dataclass
class StalledTraining(BaseRule):
    """Fires once per stall when no mode has gained a step for `threshold` seconds."""

    name = "StalledTraining"
    modes = ()
    live_only = True

    threshold: float = 1800.0
    stop_training_on_fire: bool = False
    training_job_name_prefix: str | None = None
    _last_seen: Any = field(default=None, init=False, repr=False)
    _since: float | None = field(default=None, init=False, repr=False)
    _fired: bool = field(default=False, init=False, repr=False)

    def evaluate(self, trial: Any, step: int, mode: str) -> Finding | None:
        return None

    def poll(self, trial: Any, now: float) -> Finding | None:
        latest = tuple(max(trial.steps(m), default=-1) for m in WATCHED_MODES)
        if latest != self._last_seen or self._since is None:
            self._last_seen, self._since, self._fired = latest, now, False
            return None
        idle = now - self._since
        if idle <= self.threshold or self._fired:
            return None
        self._fired = True
        return self.finding(
            max(latest[0], 0),
            "TRAIN",
            None,
            idle,
            self.threshold,
            f"no new step for {idle:.0f} s (threshold {fmt(self.threshold)} s); last TRAIN step "
            f"{latest[0]}, last EVAL step {latest[1]}",
        )
