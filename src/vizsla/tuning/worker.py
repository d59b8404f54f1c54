"""The tuning worker: ask trials, run each in its own process, hold the trial cap, retry dead trials.

`vizsla tune` runs one worker with --max-parallel trial processes; `vizsla tune worker` runs another on any
machine that reaches the same storage. Workers coordinate only through the storage:
- the cap: a trial counts unless marked `not_counted`; a newly asked trial runs only when fewer than
  max_jobs counted trials have smaller numbers (numbers are handed out by the storage in order), so
  workers racing for the last slot cannot overshoot;
- liveness: each worker stamps a heartbeat on its running trials; a RUNNING trial whose worker and trial
  process are gone (same host) or whose heartbeat is stale is failed and re-queued with the same
  hyperparameters (retry_of), and the retry resumes the trial's job from its last checkpoint.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from vizsla.tuning.server import process_context as _process_context
from vizsla.tuning.study import worker_name

if TYPE_CHECKING:
    from vizsla.tuning.tune_spec import TuneSpec

log = logging.getLogger("vizsla.tuning")

POLL_S = 0.2
STALE_SCAN_EVERY_S = 2.0
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass
class Running:
    trial_id: int
    number: int
    process: Any  # multiprocessing.Process
    job_dir: Path
    slot: int = 0  # which of the max_parallel places it runs in (its GPUs follow from it)


def visible_gpus() -> list[str]:
    """The GPUs this worker may hand out: CUDA_VISIBLE_DEVICES as given, else every GPU nvidia-smi lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    from vizsla.scriptmode.environment import count_gpus

    return [str(i) for i in range(count_gpus())]


def gpus_for_slot(slot: int, per_trial: int, gpus: list[str]) -> list[str]:
    """The GPUs of the trial in SLOT: consecutive blocks of PER_TRIAL (one per process), so parallel trials
    do not pile onto the first GPU; with fewer GPUs than slots x per_trial the blocks wrap around (shared)."""
    if not gpus:
        return []
    count = min(per_trial, len(gpus))
    start = (slot * count) % len(gpus)
    return [gpus[(start + i) % len(gpus)] for i in range(count)]


@dataclass
class WorkerOptions:
    """How this worker runs trials; the study's own settings come from the TuneSpec saved in it."""

    trials_dir: Path
    logs_dir: Path
    max_parallel: int
    storage_url: str
    study_name: str
    parent_run_id: str | None = None
    tracking_uri: str | None = None
    on_event: Any = None  # callable(str) for progress lines
    home: Path | None = None  # the tuning job folder when the study lives in it: trials recorded relative


@dataclass
class StopSignal:
    requested: bool = False
    reason: str | None = None
    forced: bool = False
    signals: list[int] = field(default_factory=list)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def counts_toward_budget(trial: optuna.trial.FrozenTrial) -> bool:
    return "not_counted" not in trial.user_attrs


class Worker:
    """One worker process's loop; `run()` returns the reason it stopped."""

    def __init__(self, study: optuna.Study, spec: TuneSpec, options: WorkerOptions) -> None:
        self.study = study
        self.spec = spec
        self.options = options
        self.name = worker_name()
        self.running: dict[int, Running] = {}
        self.stop = StopSignal()
        self.started = time.monotonic()
        self._context = _process_context()
        self._last_scan = 0.0
        self._heartbeat_stop = threading.Event()
        self.threads_per_trial = max(1, (os.cpu_count() or 1) // max(1, options.max_parallel))
        self.gpus = visible_gpus()
        self._waited_for: set[int] = set()  # orphaned trials already announced as stopping

    # the loop -----------------------------------------------------------------------------------------
    def run(self) -> str:
        heartbeat = threading.Thread(target=self._heartbeat_loop, name="tuning-heartbeat", daemon=True)
        heartbeat.start()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        reason = "budget"
        try:
            while True:
                self._reap()
                if time.monotonic() - self._last_scan >= STALE_SCAN_EVERY_S:
                    self.recover_stale()
                    self._last_scan = time.monotonic()
                done = self.stop.reason or self.completion_reason()
                if done:
                    if self.stop.reason is None and done.startswith("max runtime"):
                        self.stop.reason = done
                        self._stop_running(signal.SIGTERM)
                    if not self.running:
                        reason = done
                        break
                else:
                    while len(self.running) < self.options.max_parallel and self._start_next():
                        pass
                    if not self.running and not self._can_start():
                        self.recover_stale()  # a trial left by a killed run may have ended since the scan
                        self._last_scan = time.monotonic()
                        if not self._can_start() and not self._orphans_stopping():
                            break  # the budget is used up (other workers may still finish theirs)
                time.sleep(POLL_S)
        finally:
            self._heartbeat_stop.set()
            for sig, old in previous.items():
                signal.signal(sig, old)
        return reason

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.stop.requested:  # second Ctrl-C: stop now
            self.stop.forced = True
            self._stop_running(signal.SIGKILL)
            raise KeyboardInterrupt
        self.stop.requested = True
        self.stop.reason = f"stopped by {signal.Signals(signum).name}"
        self._emit(f"{self.stop.reason}: stopping {len(self.running)} running trial(s) at their next step")
        self._stop_running(signal.SIGTERM)

    def _stop_running(self, sig: int) -> None:
        for item in self.running.values():
            if item.process.pid and item.process.is_alive():
                try:
                    os.kill(item.process.pid, sig)
                except ProcessLookupError:
                    pass

    # budget and completion ------------------------------------------------------------------------------
    def trials(self) -> list[optuna.trial.FrozenTrial]:
        return self.study.get_trials(deepcopy=False)

    def _can_start(self) -> bool:
        counted = [t for t in self.trials() if counts_toward_budget(t)]
        return any(t.state == TrialState.WAITING for t in counted) or len(counted) < self.max_jobs()

    def max_jobs(self) -> int:
        from vizsla.tuning.space import grid_size

        if self.spec.max_jobs is not None:
            return self.spec.max_jobs
        return grid_size(self.spec.ranges) if self.spec.strategy == "Grid" else 10

    def completion_reason(self) -> str | None:
        """Why no new trial should start: SageMaker's completion criteria, or the budget being used up."""
        trials = [t for t in self.trials() if counts_toward_budget(t)]
        finished = [t for t in trials if t.state in FINISHED]
        criteria = self.spec.completion
        maximize = self.spec.objective.type == "Maximize"
        values = [t for t in finished if t.state == TrialState.COMPLETE and t.value is not None]
        if criteria.target_value is not None and values:
            best = max(v.value for v in values) if maximize else min(v.value for v in values)
            if (best >= criteria.target_value) if maximize else (best <= criteria.target_value):
                return f"target objective value {criteria.target_value} reached ({best:.6g})"
        if criteria.max_jobs_not_improving is not None:
            streak = not_improving_streak(values, maximize)
            if streak >= criteria.max_jobs_not_improving:
                return f"{streak} trials in a row did not improve the best objective by 1% or more"
        if criteria.max_runtime_s is not None and time.monotonic() - self.started >= criteria.max_runtime_s:
            return f"max runtime of {criteria.max_runtime_s:g} s reached"
        return None

    # starting trials -------------------------------------------------------------------------------------
    def _start_next(self) -> bool:
        """Ask for a trial and start it; False when the cap leaves no room now."""
        from vizsla.tuning.space import suggest

        if not self._can_start():
            return False
        trial = self.study.ask()
        retry_of = trial.user_attrs.get("retry_of")
        if retry_of is None and not self._within_cap(trial.number):
            trial.set_user_attr("not_counted", "over_budget")
            trial.set_user_attr("status", "Failed")
            self.study.tell(trial, state=TrialState.FAIL)
            return False
        values = suggest(trial, self.spec.ranges)
        job_dir = self._trial_dir(trial)
        attrs = {
            "hyperparameters": _jsonable(values),
            "job_dir": self._recorded_dir(job_dir),
            "started": now_iso(),
            "started_unix": time.time(),  # the trial's duration_s counts from here (process start included)
            "worker": self.name,
            "heartbeat": time.time(),
        }
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        slot = min(set(range(self.options.max_parallel)) - {r.slot for r in self.running.values()})
        gpus = gpus_for_slot(slot, self.spec.trial_nproc, self.gpus)
        if gpus:
            trial.set_user_attr("gpus", gpus)
        process = self._spawn(trial, job_dir, gpus)
        trial.set_user_attr("trial_pid", process.pid)
        self.running[trial._trial_id] = Running(trial._trial_id, trial.number, process, job_dir, slot)
        shown = ", ".join(f"{k}={_short(v)}" for k, v in values.items())
        retry = f" (retry of trial {retry_of})" if retry_of is not None else ""
        self._emit(f"trial {trial.number} started{retry}: {shown}")
        return True

    def _trial_dir(self, trial: optuna.Trial) -> Path:
        """The trial's job folder: the one recorded for it (a retry resumes there), else a new one."""
        from vizsla.tuning.analytics import TrialPlaces

        recorded = TrialPlaces(self.options.home).job_dir(trial)
        return Path(recorded) if recorded else self.options.trials_dir / f"trial-{trial.number:04d}"

    def _recorded_dir(self, job_dir: Path) -> str:
        """How the study records a trial's folder: relative to the tuning job folder when the study lives
        in it (the folder can move with its trials), else absolute (other workers read the record)."""
        from vizsla.relocation import relative_to_job

        if self.options.home is not None:
            return relative_to_job(job_dir, self.options.home)
        return str(job_dir.resolve())

    def _within_cap(self, number: int) -> bool:
        earlier = [t for t in self.trials() if t.number < number and counts_toward_budget(t)]
        return len(earlier) < self.max_jobs()

    def _spawn(self, trial: optuna.Trial, job_dir: Path, gpus: list[str]) -> Any:
        from vizsla.tuning.trial import TrialRequest, run_trial

        request = TrialRequest(
            storage_url=self.options.storage_url,
            study_name=self.options.study_name,
            trial_id=trial._trial_id,
            tune_spec=self.spec.model_dump(mode="json"),
            job_dir=str(job_dir.resolve()),
            log_path=str((self.options.logs_dir / f"trial-{trial.number:04d}.log").resolve()),
            coordinator_pid=os.getpid(),
            threads=self.threads_per_trial,
            parent_run_id=self.options.parent_run_id,
            tracking_uri=self.options.tracking_uri,
            gpus=gpus or None,
        )
        process = self._context.Process(target=run_trial, args=(request,), name=f"trial-{trial.number}")
        process.start()
        return process

    # finished trials -------------------------------------------------------------------------------------
    def _reap(self) -> None:
        for trial_id, item in list(self.running.items()):
            if item.process.is_alive():
                continue
            item.process.join()
            del self.running[trial_id]
            frozen = self.study._storage.get_trial(trial_id)
            if frozen.state != TrialState.RUNNING:
                self._emit(_finished_line(frozen, self.spec.objective.metric))
                continue
            stopped = frozen.user_attrs.get("status") == "Stopped"
            if self.stop.requested:  # our own shutdown: the resumed job queues it again
                if not stopped:
                    self._set_attrs(frozen, status="Stopped", error=_exit_text(item.process.exitcode))
                self._emit(f"trial {frozen.number} stopped; it resumes when the tuning job is run again")
            elif stopped:
                self._retry(frozen, "the trial was stopped by a signal", consume=False)
            else:  # the process died before telling the study
                self._retry(frozen, f"trial process died ({_exit_text(item.process.exitcode)})", consume=True)

    def _set_attrs(self, frozen: optuna.trial.FrozenTrial, **attrs: Any) -> bool:
        try:
            for key, value in attrs.items():
                self.study._storage.set_trial_user_attr(frozen._trial_id, key, value)
        except RuntimeError:  # UpdateFinishedTrialError: finished meanwhile by its owner or another worker
            return False
        return True

    def _retry(self, frozen: optuna.trial.FrozenTrial, why: str, *, consume: bool) -> None:
        """Fail the RUNNING trial and queue it again with the same hyperparameters, within max_retries.

        The FAIL transition decides which worker retries when several notice the same dead trial."""
        attempt = int(frozen.user_attrs.get("attempt", 0)) + (1 if consume else 0)
        if consume and attempt > self.spec.max_retries:
            reason = f"{why}; no retries left (max_retries={self.spec.max_retries})"
            if self._set_attrs(frozen, status="Failed", error=reason, finished=now_iso()):
                self._finish_failed(frozen)
            self._emit(f"trial {frozen.number} Failed: {reason}")
            return
        done = now_iso()
        marked = self._set_attrs(frozen, not_counted="retried", status="Retried", error=why, finished=done)
        if not marked:
            return
        if not self._finish_failed(frozen):
            return  # another worker retried it first
        self.study.enqueue_trial(
            dict(frozen.params),
            user_attrs={
                "retry_of": frozen.number,
                "job_dir": frozen.user_attrs.get("job_dir"),
                "attempt": attempt,
            },
        )
        self._emit(f"trial {frozen.number}: {why}; queued again with the same hyperparameters")

    def _finish_failed(self, frozen: optuna.trial.FrozenTrial) -> bool:
        try:
            return bool(self.study._storage.set_trial_state_values(frozen._trial_id, state=TrialState.FAIL))
        except RuntimeError:
            return False

    def _left_running(self) -> list[optuna.trial.FrozenTrial]:
        """Counted RUNNING trials that no process of this worker runs."""
        mine = {item.trial_id for item in self.running.values()}
        return [
            t
            for t in self.trials()
            if t._trial_id not in mine and t.state == TrialState.RUNNING and counts_toward_budget(t)
        ]

    def _orphans_stopping(self) -> bool:
        """Whether a trial of a dead worker on this host is still stopping (its process writes the checkpoint
        after the worker's SIGKILL): this worker waits for it and then resumes it, rather than ending with it
        left RUNNING."""
        host = self.name.split(":")[0]
        for trial in self._left_running():
            owner_host, _, owner_pid = str(trial.user_attrs.get("worker", "")).partition(":")
            trial_pid = trial.user_attrs.get("trial_pid")
            if owner_host == host and owner_pid.isdigit() and not _alive(int(owner_pid)):
                if isinstance(trial_pid, int) and _alive(trial_pid):
                    if trial.number not in self._waited_for:
                        self._waited_for.add(trial.number)
                        self._emit(
                            f"trial {trial.number}: its tuning process is gone and the trial is stopping "
                            f"(pid {trial_pid}); waiting for it, then it resumes"
                        )
                    return True
        return False

    def recover_stale(self) -> None:
        """Retry trials whose worker died: RUNNING ones, and ones Stopped by a shutdown that never resumed."""
        host = self.name.split(":")[0]
        now = time.time()
        for trial in self._left_running():
            owner = str(trial.user_attrs.get("worker", ""))
            owner_host, _, owner_pid = owner.partition(":")
            if owner == self.name:
                dead = True  # ours but no longer running: a trial left by our own earlier shutdown
            elif owner_host == host and owner_pid.isdigit():
                trial_pid = trial.user_attrs.get("trial_pid")
                dead = not _alive(int(owner_pid)) and not (isinstance(trial_pid, int) and _alive(trial_pid))
            else:
                beat = trial.user_attrs.get("heartbeat")
                started = trial.datetime_start.timestamp() if trial.datetime_start else now
                last_seen = float(beat if isinstance(beat, int | float) else started)
                dead = now - last_seen > self.spec.stale_after_s
            if not dead:
                continue
            if trial.user_attrs.get("status") == "Stopped":
                self._retry(trial, "the trial was stopped before the tuning job ended", consume=False)
            else:
                self._retry(trial, f"its worker {owner or '?'} is gone", consume=True)

    def _heartbeat_loop(self) -> None:
        while not self._heartbeat_stop.wait(self.spec.heartbeat_interval_s):
            for item in list(self.running.values()):
                try:
                    self.study._storage.set_trial_user_attr(item.trial_id, "heartbeat", time.time())
                except Exception:  # noqa: BLE001 - finished meanwhile, or a storage hiccup: next beat
                    continue

    def _emit(self, line: str) -> None:
        log.info(line)
        if self.options.on_event is not None:
            self.options.on_event(line)


def not_improving_streak(completed: list[optuna.trial.FrozenTrial], maximize: bool) -> int:
    """Trials in a row (by completion time) not improving the best value by >= 1% (SageMaker's rule)."""
    ordered = sorted(completed, key=lambda t: t.datetime_complete or datetime.min.replace(tzinfo=UTC))
    best: float | None = None
    streak = 0
    for trial in ordered:
        value = float(trial.value)  # type: ignore[arg-type]
        if best is None:
            best, streak = value, 0
            continue
        margin = 0.01 * abs(best) if best != 0 else 0.0
        improved = value > best + margin if maximize else value < best - margin
        if improved:
            best, streak = value, 0
        else:
            streak += 1
            best = max(best, value) if maximize else min(best, value)
    return streak


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is dead for our purposes
        import psutil

        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except Exception:  # noqa: BLE001
        return True


def _exit_text(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}


def _short(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.4g}"
    return str(value)


def _finished_line(trial: optuna.trial.FrozenTrial, metric: str) -> str:
    status = trial.user_attrs.get("status", trial.state.name.title())
    value = f" {metric}={trial.value:.4f}" if trial.value is not None else ""
    duration = trial.user_attrs.get("duration_s")
    took = f" in {duration:.1f} s" if isinstance(duration, int | float) else ""
    error = (
        f": {trial.user_attrs['error']}" if trial.user_attrs.get("error") and status != "Completed" else ""
    )
    return f"trial {trial.number} {status}{value}{took}{error}"
