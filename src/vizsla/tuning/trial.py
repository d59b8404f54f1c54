"""What runs inside one trial's own process: the trial's training job, reporting each epoch to Optuna.

(A script tuning job's trial runs the user's script instead: tuning/script_trial.py.)

The worker samples the hyperparameters (its sampler holds the study's seed) and starts this process; here
they are read back from the trial, the JobSpec is built, the training job runs (resuming from its last
checkpoint when this is the retry of a trial whose process died) and the outcome is told to the study.
Running each trial in a process of its own keeps one trial's crash or memory from taking down the others.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna

from vizsla.callbacks import Callback, TrainState
from vizsla.jobdir import JobDir

log = logging.getLogger("vizsla.tuning")


@dataclass(frozen=True)
class TrialRequest:
    """Everything a trial process needs; plain data so it crosses the process boundary."""

    storage_url: str
    study_name: str
    trial_id: int
    tune_spec: dict[str, Any]
    job_dir: str
    log_path: str
    coordinator_pid: int
    threads: int
    parent_run_id: str | None
    tracking_uri: str | None
    gpus: list[str] | None = None  # this trial's GPUs (CUDA_VISIBLE_DEVICES), None: as the worker sees them


class TrialReporter(Callback):
    """Report the objective after each epoch and stop the job when the pruner says so."""

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial = trial
        self.metric = metric
        self.pruned_at: int | None = None

    def fit_start(self, state: TrainState) -> None:
        for record in state.history:  # a resumed job: the pruner needs the epochs done before the crash
            self._report(record)

    def epoch_end(self, state: TrainState) -> None:
        if not state.history:
            return
        self._report(state.history[-1])
        if self.trial.should_prune():
            self.pruned_at = int(state.history[-1]["epoch"])
            # Seen by the trial process when this reporter runs in rank 0 of a distributed trial.
            self.trial.set_user_attr("pruned_at", self.pruned_at)
            state.request_stop(f"pruned by the tuning job's early stopping after epoch {self.pruned_at + 1}")

    def _report(self, record: dict[str, Any]) -> None:
        value = record.get(self.metric)
        if isinstance(value, int | float) and math.isfinite(value):
            self.trial.report(float(value), step=int(record["epoch"]))


def objective_value(
    result: dict[str, Any], history: list[dict[str, Any]], metric: str, maximize: bool
) -> float | None:
    """The trial's final objective: the best model's metric in result.json, else the best epoch's value."""
    value = (result.get("metrics") or {}).get(metric)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    values = [
        r[metric] for r in history if isinstance(r.get(metric), int | float) and math.isfinite(r[metric])
    ]
    if not values:
        return None
    return float(max(values) if maximize else min(values))


def run_trial(request: TrialRequest) -> None:
    """Entry point of the trial process (started by the worker)."""
    _redirect_output(request.log_path)
    _watch_coordinator(request.coordinator_pid)
    if request.gpus:  # before anything touches CUDA; torchrun's processes of a distributed trial inherit it
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(request.gpus)
    import torch

    torch.set_num_threads(max(1, request.threads))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if request.gpus:
        log.info("trial GPUs: CUDA_VISIBLE_DEVICES=%s", os.environ["CUDA_VISIBLE_DEVICES"])
    from vizsla.tuning.study import create_pruner, create_storage, training_epochs
    from vizsla.tuning.tune_spec import TuneSpec

    spec = TuneSpec.model_validate(request.tune_spec)
    study = optuna.load_study(
        study_name=request.study_name,
        storage=create_storage(request.storage_url),
        pruner=create_pruner(spec, training_epochs(spec)),
    )
    trial = optuna.Trial(study, request.trial_id)
    outcome = _train(trial, spec, request)
    _tell(study, trial, outcome)


@dataclass
class Outcome:
    status: str  # Completed | Pruned | Stopped | Failed
    value: float | None
    error: str | None
    result: dict[str, Any]


def _train(trial: optuna.Trial, spec: Any, request: TrialRequest) -> Outcome:
    if spec.is_script:  # the user's own script (script mode): tuning/script_trial.py
        from vizsla.tuning.script_trial import run_script_trial

        return run_script_trial(trial, spec, request, request.threads)
    from vizsla.jobs import run_job
    from vizsla.spec import build_spec
    from vizsla.tuning.space import trial_spec_dict, values_from_params

    job_dir = JobDir(request.job_dir)
    values = values_from_params(trial.params, spec.ranges)
    mapping = trial_spec_dict(spec.training, values, output=str(job_dir.root))
    # plots and report are drawn for the best trial when the tuning job ends (tuning/job.py), not per trial
    mapping.setdefault("outputs", "deferred")
    tracking = mapping.setdefault("tracking", {})
    if tracking.get("enabled", True):
        tracking.setdefault("uri", request.tracking_uri)
        tracking["parent_run_id"] = request.parent_run_id
    reporter = TrialReporter(trial, spec.objective.metric)
    maximize = spec.objective.type == "Maximize"
    previous = job_dir.read_result() or {}
    if previous.get("status") == "Completed":  # the process died after the job finished, before telling
        history = _read_history(job_dir)
        for record in history:
            reporter._report(record)
        return _outcome("Completed", previous, history, spec.objective.metric, maximize)
    try:
        job_spec = build_spec(mapping, source=f"trial {trial.number}")
        resume = job_dir.last_checkpoint.is_file()
        if not resume and job_dir.root.exists():  # a retry that died before its first checkpoint
            _clear(job_dir.root)
        if spec.trial_nproc > 1:  # the job runs in processes of its own; rank 0 holds the reporter
            from vizsla.tuning.distributed_trial import run_distributed_trial, was_pruned

            result = run_distributed_trial(trial, spec, request, job_spec, resume=resume)
            pruned = was_pruned(trial)
        else:
            result = run_job(job_spec, callbacks=[reporter], resume=resume, progress=False)
            pruned = reporter.pruned_at is not None
    except Exception as exc:  # noqa: BLE001 - any failure is the trial's result, recorded with its error
        log.exception("trial %d failed", trial.number)
        result = job_dir.read_result() or {}
        return Outcome("Failed", None, f"{type(exc).__name__}: {exc}", result)
    history = _read_history(job_dir)
    if pruned:
        return _outcome("Pruned", result, history, spec.objective.metric, maximize)
    return _outcome(result.get("status", "Failed"), result, history, spec.objective.metric, maximize)


def _outcome(
    status: str, result: dict[str, Any], history: list[dict[str, Any]], metric: str, maximize: bool
) -> Outcome:
    value = objective_value(result, history, metric, maximize)
    error = result.get("failure_reason") or (result.get("stop_reason") if status == "Stopped" else None)
    if status == "Completed" and value is None:
        known = sorted({k for r in history for k in r} | set(result.get("metrics") or {}))
        return Outcome(
            "Failed", None, f"objective metric {metric!r} was not recorded; known: {known}", result
        )
    return Outcome(status, value, error, result)


def _tell(study: optuna.Study, trial: optuna.Trial, outcome: Outcome) -> None:
    finished = datetime.now(UTC)
    started = trial.user_attrs.get("started")
    started_unix = trial.user_attrs.get("started_unix")  # to the microsecond; "started" is to the second
    attrs: dict[str, Any] = {"status": outcome.status, "finished": finished.isoformat(timespec="seconds")}
    if isinstance(started_unix, int | float):
        attrs["duration_s"] = round(finished.timestamp() - started_unix, 3)
    elif started:
        attrs["duration_s"] = round((finished - datetime.fromisoformat(started)).total_seconds(), 3)
    if outcome.error:
        attrs["error"] = str(outcome.error)[:2000]
    test = (outcome.result.get("metrics") or {}).get("test_accuracy")
    if isinstance(test, int | float):
        attrs["test_accuracy"] = float(test)
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    if outcome.status == "Stopped":
        return  # left RUNNING: the worker (or the resumed tuning job) queues it again to resume
    if outcome.status == "Completed":
        study.tell(trial, outcome.value)
    elif outcome.status == "Pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def _read_history(job_dir: JobDir) -> list[dict[str, Any]]:
    return [record for record in job_dir.read_metrics() if record.get("kind") == "epoch"]


def _clear(root: Path) -> None:
    import shutil

    shutil.rmtree(root)


def _redirect_output(path: str) -> None:
    """The trial's stdout/stderr go to its log file, so parallel trials don't interleave on the terminal."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _watch_coordinator(pid: int) -> None:
    """Stop this trial gracefully (checkpoint written, status Stopped) when its worker dies, e.g. on
    SIGKILL, so no orphan keeps training; the re-run tuning job then resumes it from the checkpoint."""

    def watch() -> None:
        while True:
            time.sleep(0.25)
            if not _alive(pid):
                log.warning("the tuning worker (pid %d) is gone: stopping this trial", pid)
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(120)  # the job should have stopped by now
                os._exit(3)

    threading.Thread(target=watch, name="coordinator-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
