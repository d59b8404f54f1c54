"""The composition root: which tools a job gets (profiler, debugger, tracking), in what order, and the
entry points that run jobs with them. The CLI, tuning trials (in-process and distributed), the processes
that torchrun starts (they run `vizsla train`) and script mode all come through here; the trainer only
sees a `CallbackFactory` and the callbacks it makes.

A job's callbacks, in firing order within each event (`job_callbacks`):
  1. profiler (every rank: its step times; rank 0 also the system sampler, job phases, torch.profiler
     window and, at fit_end, its report), first so that its report exists when tracking uploads artifacts;
  2. debugger (rank 0): the hook records the step, then the rule runner sees it; its outputs add the
     per-step loss plot and the report's Debugger section from the store in the spec's `debug.out_dir`;
  3. tracking (rank 0): TensorBoard's epoch curves when asked, then the MLflow mirror, last of the tools,
     so at fit_end it uploads what they wrote (and logs the model, unless the job defers its outputs);
  4. the caller's own (a tuning trial's pruning reporter, a test's probe).
Progress is the trainer's own display (`progress=`); the training report is drawn by the trainer's
bookkeeping, with the sections the callbacks contribute (`Callback.report_sections`). Only rank 0 of a
distributed job writes the job directory, so the debugger and tracking live there alone.

Tools are imported when a job asks for them, so importing this module stays cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vizsla.callbacks import Callback, ReportSection, TrainState
from vizsla.jobdir import JobDir

if TYPE_CHECKING:
    from vizsla.scriptmode.spec import ScriptJobSpec
    from vizsla.spec import JobSpec

log = logging.getLogger(__name__)


def job_callbacks(state: TrainState) -> list[Callback]:
    """The callbacks a job's spec asks for, for process `state.rank` of `state.world_size` (see above)."""
    spec = state.spec
    callbacks: list[Callback] = []
    if spec.profile.enabled:
        from vizsla.profiler import create_profile_callbacks

        callbacks += create_profile_callbacks(
            spec.profile, state.job_dir, rank=state.rank, world_size=state.world_size
        )
    if state.rank != 0:  # the debugger, tracking and reports belong to rank 0 (its gradients are the
        return callbacks  # all-reduced ones every rank applies)
    if spec.debug.enabled:
        from vizsla.debugger import create_debug_callbacks

        callbacks += create_debug_callbacks(spec.debug, state.job_dir)
    tracking = spec.tracking
    if tracking.tensorboard:
        from vizsla.tracking.tensorboard import TensorBoardCurves

        job_dir = state.job_dir if isinstance(state.job_dir, JobDir) else JobDir(state.job_dir)
        callbacks.append(TensorBoardCurves(job_dir.tensorboard))
    if tracking.enabled:
        from vizsla.tracking import MlflowTracker

        now = spec.outputs == "now"  # a tuning trial defers its model as its plots: the best one's is logged
        tracker = MlflowTracker(
            tracking.uri,
            tracking.experiment,
            parent_run_id=tracking.parent_run_id,
            log_model=now and tracking.log_model,
            register=tracking.registered_model_name if now else None,
        )
        callbacks.append(tracker)
    return callbacks


def run_job(
    spec: JobSpec,
    *,
    callbacks: Iterable[Callback] = (),
    resume: bool = False,
    progress: bool = True,
    started: float | None = None,
) -> dict:
    """Run a training job with the tools its spec asks for, then CALLBACKS; returns its result.

    See `vizsla.training.trainer.run_job` for RESUME, PROGRESS and STARTED."""
    from vizsla.training.trainer import run_job as run_trainer

    return run_trainer(
        spec,
        callbacks=callbacks,
        resume=resume,
        progress=progress,
        started=started,
        job_callbacks=job_callbacks,
    )


def report_sections(job_dir: JobDir | str | Path) -> list[ReportSection]:
    """The tools' report sections of a finished job, from its folder alone (`vizsla jobs report`, a tuning
    job drawing its best trial's report): the debugger's, where its store is (the saved spec's out_dir)."""
    from vizsla.debugger.report import DebugOutputs

    job_dir = job_dir if isinstance(job_dir, JobDir) else JobDir(job_dir)
    store = job_dir.saved_debug_store()
    return DebugOutputs(str(store)).report_sections(job_dir)  # (root / an absolute path is that path)


def write_training_report(job_dir: JobDir | str | Path) -> Path:
    """(Re)draw reports/training.html of a job from its folder, with its tools' sections."""
    from vizsla.training.report import write_training_report as write_report

    job_dir = job_dir if isinstance(job_dir, JobDir) else JobDir(job_dir)
    return write_report(job_dir, sections=report_sections(job_dir))


def script_attachments(spec: ScriptJobSpec, job: JobDir) -> tuple[Any, Any, Any]:
    """What script mode attaches around a user's script process, as its spec asks: the MLflow run, the
    profiler's sampling and the debugger's session (each None when off or not available)."""
    tracker = profiler = debugger = None
    if spec.tracking.enabled:
        from vizsla.scriptmode.attach import ScriptTracker

        tracker = ScriptTracker(spec, job)
    if spec.profile.enabled:
        from vizsla.scriptmode.attach import ScriptProfiler

        profiler = ScriptProfiler(spec, job)
    if spec.debug.enabled:
        debugger = _debug_session(spec, job)
    return tracker, profiler, debugger


def _debug_session(spec: ScriptJobSpec, job: JobDir) -> Any:
    """Script mode's DebugSession, or None with a warning when it is not available."""
    try:
        from vizsla.scriptmode.debugging import DebugSession
    except ImportError as exc:
        log.warning("script-mode debugging is not available (%s); running without it", exc)
        return None
    try:
        return DebugSession(spec.debug, job.root)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not create the debug session: %r; running without it", exc)
        return None
