"""One trial of a script tuning job: the user's own script run as a script job, its regex metric reported.

SageMaker's contract: the objective is "the latest objective metric emitted by a training job"; a job that
fails or never prints it has no objective and is recorded as failed, while the tuning job goes on. Each
match of the objective's regex is an intermediate value (step = match index), so Hyperband and median
early stopping prune scripts as they prune Vizsla's own jobs. Scripts have no checkpoint contract, so a
trial whose process died runs its script again from the start.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import threading
from typing import Any

import optuna

from vizsla.jobdir import JobDir

log = logging.getLogger("vizsla.tuning")


class ScriptReporter:
    """on_metric / should_stop callbacks for run_script_job: report the objective, stop when pruned."""

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial = trial
        self.metric = metric
        self.last: float | None = None
        self.pruned_at: int | None = None
        self._lock = threading.Lock()

    def on_metric(self, name: str, value: float, index: int) -> None:
        if name != self.metric or not isinstance(value, int | float) or not math.isfinite(value):
            return
        with self._lock:
            self.last = float(value)
            if self.pruned_at is not None:
                return
            self.trial.report(float(value), step=int(index))
            if self.trial.should_prune():
                self.pruned_at = int(index)
                log.info("trial %d pruned after objective value %d", self.trial.number, index + 1)

    def should_stop(self) -> bool:
        return self.pruned_at is not None


def run_script_trial(trial: optuna.Trial, spec: Any, request: Any, threads: int) -> Any:
    """Run the trial's script job in this process's child and return the trial's Outcome."""
    from vizsla.tuning.space import script_trial_mapping, values_from_params
    from vizsla.tuning.trial import Outcome

    job_dir = JobDir(request.job_dir)
    values = values_from_params(trial.params, spec.ranges)
    mapping = script_trial_mapping(spec.script, values, str(job_dir.root))
    tracking = mapping.setdefault("tracking", {})
    if tracking.get("enabled", True):
        tracking.setdefault("uri", request.tracking_uri)
        tracking["parent_run_id"] = request.parent_run_id
    if mapping.get("debug_hook") is None:
        # SageMaker's tuning jobs start their training jobs without a DebugHookConfig (the API's
        # HyperParameterTrainingJobDefinition has no such field), so a trial gets no default hook config
        # (scriptmode/runner.py `_default_hook_config`); `debug_hook: true` in the script section asks
        # for one.
        mapping["debug_hook"] = False
    environment = mapping.setdefault("environment", {})
    if "OMP_NUM_THREADS" not in environment and "OMP_NUM_THREADS" not in os.environ:
        environment["OMP_NUM_THREADS"] = str(max(1, threads))  # parallel trials share the cores
    metric = spec.objective.metric
    previous = job_dir.read_result() or {}
    if previous.get("status") == "Completed":  # the process died after the script finished, before telling
        return _outcome(Outcome, "Completed", previous, metric, _last(previous, metric))
    if job_dir.root.exists():  # a retry: no checkpoint contract, the script starts over
        shutil.rmtree(job_dir.root)
    reporter = ScriptReporter(trial, metric)
    try:
        from vizsla.scriptmode.runner import run_script_job
        from vizsla.scriptmode.spec import build_script_spec

        job_spec = build_script_spec(mapping, source=f"trial {trial.number}")
        result = run_script_job(
            job_spec, progress=False, on_metric=reporter.on_metric, should_stop=reporter.should_stop
        )
    except Exception as exc:  # noqa: BLE001 - any failure is the trial's result, recorded with its error
        log.exception("trial %d failed", trial.number)
        message = getattr(exc, "message", None) or str(exc)
        return Outcome("Failed", None, f"{type(exc).__name__}: {message}", job_dir.read_result() or {})
    status = str(result.get("status", "Failed"))
    if reporter.pruned_at is not None and status in ("Stopped", "Completed"):
        return Outcome("Pruned", reporter.last, None, result)
    return _outcome(Outcome, status, result, metric, reporter.last)


def _last(result: dict[str, Any], metric: str) -> float | None:
    value = (result.get("metrics") or {}).get(metric)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _outcome(outcome: Any, status: str, result: dict[str, Any], metric: str, seen: float | None) -> Any:
    """Completed with the last objective value; Failed with the script's reason; Stopped re-runs."""
    value = _last(result, metric)
    value = value if value is not None else seen
    if status == "Completed":
        if value is None:
            return outcome("Failed", None, _never_printed(result, metric), result)
        return outcome("Completed", value, None, result)
    if status == "Stopped":
        return outcome("Stopped", None, result.get("stop_reason") or "the script was stopped", result)
    return outcome("Failed", None, _failure_text(result), result)


def _never_printed(result: dict[str, Any], metric: str) -> str:
    tail = _tail(result)
    return (
        f"the script finished but never printed the objective metric {metric!r} (its regex matched no "
        "output line)" + (f"; stderr tail: {tail}" if tail else "")
    )


def _failure_text(result: dict[str, Any]) -> str:
    reason = str(result.get("failure_reason") or "").strip()
    tail = _tail(result)
    if tail and tail not in reason:
        reason = f"{reason}\nstderr tail: {tail}" if reason else f"stderr tail: {tail}"
    return reason or f"the script failed (exit code {result.get('exit_code')})"


def _tail(result: dict[str, Any], limit: int = 1500) -> str:
    tail = result.get("stderr_tail") or ""
    if isinstance(tail, list):
        tail = "\n".join(str(line) for line in tail)
    return str(tail)[-limit:].strip()
