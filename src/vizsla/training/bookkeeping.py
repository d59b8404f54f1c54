"""What a job writes as it goes: metrics lines, best model, epoch checkpoints and the final result."""

from __future__ import annotations

import json
import logging
from typing import Any

from vizsla.callbacks import CallbackRunner, TrainState
from vizsla.disk import is_disk_full, writing
from vizsla.errors import DiskFullError, UserError
from vizsla.infra.io import append_jsonl
from vizsla.jobdir import JobDir
from vizsla.training import stages
from vizsla.training.checkpoint import rng_state, save_checkpoint
from vizsla.training.metrics import ClassificationMeter
from vizsla.training.setup import Job

log = logging.getLogger("vizsla.train")


def append_metrics(job_dir: JobDir, record: dict[str, Any]) -> None:
    """Append one JSON line, written at once so `tail -f` and other processes see it; a write that fails
    (a full disk) leaves no torn line for the next record, a resumed job's, to be glued to."""
    needed = len(json.dumps(record)) + 1  # bytes: json.dumps escapes to ASCII
    with writing(job_dir.metrics, needed=needed, what="the metrics"):
        append_jsonl(job_dir.metrics, record)


def _better(metric: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if "loss" in metric else value > best


def head_only(job: Job) -> bool:
    """A head on cached features: the backbone never changes (frozen, eval mode, rebuilt identically from
    the spec's weights), so checkpoints and the best copy hold the head alone: ~5-12 ms an epoch instead
    of 85-160 ms for efficientnet_lite0's 14 MB, and model/ is written once at the end."""
    return job.features is not None


def trained_state(job: Job) -> dict[str, Any]:
    """The weights a checkpoint must hold: the head's (named as in the whole model) or everything."""
    if head_only(job):
        return {f"head.{key}": value for key, value in job.model.head.state_dict().items()}
    return job.model.state_dict()


def load_trained_state(job: Job, weights: dict[str, Any]) -> None:
    """Load TRAINED_STATE weights into the model: all of them, or the head's over the frozen backbone."""
    if weights and all(key.startswith("head.") for key in weights):
        job.model.head.load_state_dict({key[len("head."):]: value for key, value in weights.items()})
    else:
        job.model.load_state_dict(weights)


def save_best_model(job: Job) -> None:
    """Write model/ from the best weights kept in memory (head-only jobs), once; the model keeps them."""
    if not job.best_unsaved or job.best_state is None:
        return
    load_trained_state(job, job.best_state)
    if job.dist.is_main:
        export_model(job)
    job.best_unsaved = False


def export_model(job: Job) -> None:
    """Write model/ from the model's weights now (atomically: a failed write keeps the previous model/)."""
    from vizsla.models import save_model

    size = sum(t.numel() * t.element_size() for t in job.model.state_dict().values())
    with writing(job.job_dir.model_dir, needed=size, what="the best model"):
        save_model(job.model, job.job_dir.model_dir)


def track_best(job: Job, state: TrainState, record: dict[str, Any]) -> bool:
    """Note the best epoch when the watched valid metric improves (exporting the model to model/, or for a
    head-only job keeping its weights for one export at the end); returns whether it improved."""
    metric = job.spec.train.early_stopping_metric
    if metric not in record:
        raise KeyError(
            f"early_stopping_metric '{metric}' is not recorded; choose one of "
            f"{sorted(k for k in record if k.startswith(('valid_', 'train_')))}"
        )
    value = float(record[metric])
    if not _better(metric, value, job.best.get("value")):
        job.epochs_without_improvement += 1
        return False
    previous, job.best = job.best, {"name": metric, "value": value, "epoch": record["epoch"]}
    stages.note_improvement(job, previous)
    job.epochs_without_improvement = 0
    if head_only(job):
        job.best_state = {k: v.detach().to("cpu", copy=True) for k, v in trained_state(job).items()}
        job.best_unsaved = True
        return True
    if job.dist.is_main:
        export_model(job)
    if job.dist.enabled:  # every rank evaluates the best weights at the end without reading rank 0's disk
        job.best_state = {k: v.detach().to("cpu", copy=True) for k, v in job.model.state_dict().items()}
    return True


def early_stopping_triggered(job: Job, state: TrainState) -> bool:
    patience = job.spec.train.early_stopping_patience
    return patience is not None and job.epochs_without_improvement >= patience


def save_epoch_checkpoint(
    job: Job, state: TrainState, *, next_epoch: int, position: dict[str, Any] | None = None
) -> None:
    """Write checkpoints/last.pt atomically: a job killed later resumes at `next_epoch`.

    POSITION (a job stopped mid-epoch, see `epoch_position`): the train batches of `next_epoch` already
    done and their running metrics, so that `--resume` continues with the next batch of that epoch."""
    payload = {
        "model": trained_state(job),
        "best_state": job.best_state if head_only(job) else None,
        "optimizer": job.optimizer.state_dict(),
        "scheduler": job.scheduler.state_dict(),
        "scaler": job.scaler.state_dict(),
        "ema": job.ema.state_dict() if job.ema is not None else None,  # the weight average (ema.py)
        "next_epoch": next_epoch,
        "epoch_position": position,
        "global_step": state.global_step,
        "history": state.history,
        "best": job.best,
        "epochs_without_improvement": job.epochs_without_improvement,
        "rng": rng_state(),
        "spec": job.spec.model_dump(mode="json"),
        "started_at": job.started_at,
        # how long this attempt had run: a later `--resume` counts it in total_duration_s
        "timing": {
            "attempt": job.attempt,
            "attempt_started": job.timer.started,
            "earlier_s": job.earlier_attempts_s,
            "elapsed_s": job.timer.elapsed(),
        },
    }
    save_checkpoint(job.job_dir.last_checkpoint, payload)


def error_text(exc: BaseException) -> str:
    """An error as result.json and train.log name it: a user error's message, else its type and text."""
    if isinstance(exc, UserError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def log_setup_failure(spec: Any, ctx: Any, exc: BaseException) -> None:
    """train.log of a job that failed before training: the error (a bug's traceback) and its end."""
    from vizsla.training.setup import logging_to

    if not ctx.is_main or not logging_to(JobDir(spec.output)):
        return
    if isinstance(exc, UserError) or is_disk_full(exc):
        log.error("%s", exc)
    else:
        log.exception("the job failed before training")
    log.info("Failed %s: %s", spec.job_name, error_text(exc))


def record_stopped_setup(spec: Any, ctx: Any, timer: Any, reason: str) -> dict[str, Any]:
    """result.json of a job a signal stopped before its training started (validation, extraction, model
    creation), when its folder is this job's (a resumed job keeps its earlier record's other fields).
    Returns the result; nothing is written by the other processes of a distributed job or before the
    folder was checked to be this job's."""
    from vizsla.training.setup import logging_to

    job_dir = JobDir(spec.output)
    timer.stop()
    result: dict[str, Any] = {
        "job_name": spec.job_name, "epochs_completed": 0, "start_time": timer.start_time
    }
    if not (ctx.is_main and logging_to(job_dir)):
        return {**result, "job_dir": str(job_dir.root), "status": "Stopped", "stop_reason": reason}
    try:
        previous = job_dir.read_result() or {}
    except (OSError, ValueError):
        previous = {}
    result = {
        **result,
        **previous,
        "job_dir": str(job_dir.root.resolve()),
        "status": "Stopped",
        "failure_reason": None,
        "stop_reason": reason,
        "end_time": timer.end_time,
        "duration_s": round(timer.elapsed(), 3),
        "attempt_start_time": timer.start_time,
        "phases": timer.phases(),
    }
    try:
        write_result(job_dir, result)
    except DiskFullError as exc:
        log.error("could not record the stop in %s: %s", job_dir.result, exc.message)
    log.info("Stopped %s before training: %s", spec.job_name, reason)
    return result


def flat_hyperparameters(job: Job) -> dict[str, Any]:
    """Dotted keys of the resolved spec that define the training (model.*, train.*, data.*)."""
    dumped = job.spec.model_dump(mode="json")
    flat: dict[str, Any] = {}
    for section in ("model", "train", "data"):
        for key, value in dumped[section].items():
            if section == "data" and key == "storage_options":
                continue  # may hold credentials
            flat[f"{section}.{key}"] = value
    return flat


def build_result(
    job: Job, state: TrainState, *, status: str, failure: str | None, final: dict[str, ClassificationMeter]
) -> dict[str, Any]:
    """The result.json record (see README): status, times, hyperparameters, final metrics, per-class.

    The times are those of now; `record_times` updates them once the job's finalize phase has ended."""
    metrics: dict[str, float] = {}
    best_epoch = job.best.get("epoch")
    from_head_stage = stages.head_result(job) if stages.head_won(job) else {}
    if from_head_stage:  # model/ is the head stage's model: its figures, as a head-only job reports them
        metrics.update(from_head_stage.get("metrics") or {})
        final = {}
    elif state.history:
        best_record = next((r for r in state.history if r["epoch"] == best_epoch), state.history[-1])
        metrics.update({k: best_record[k] for k in ("train_loss", "train_accuracy") if k in best_record})
    for split, meter in final.items():
        metrics.update(meter.summary(split))
    result: dict[str, Any] = {
        "job_name": job.spec.job_name,
        "job_dir": str(job.job_dir.root.resolve()),
        "status": status,
        "failure_reason": failure,
        "stop_reason": state.stop_reason,
        "start_time": job.started_at,
        "end_time": None,
        "duration_s": None,
        "hyperparameters": flat_hyperparameters(job),
        "metrics": {k: round(float(v), 6) for k, v in metrics.items()},
        "test_source": job.data.test_source,
        "epochs_completed": len(state.history),
        "best_epoch": best_epoch,
        "best_metric": {"name": job.best["name"], "value": job.best["value"]} if job.best else None,
        "best_model_path": str(job.job_dir.model_dir.resolve()) if job.job_dir.model_dir.is_dir() else None,
        "data": {
            "classes": len(job.data.classes),
            "images": {split: len(samples) for split, samples in job.data.splits.items()},
            "bad_files": len(job.data.bad_files),
        },
        "weights": job.model.config.get("weights"),
        "feature_cache": _feature_cache_summary(job),
        "runtime": {
            "device": str(job.runtime.device),
            "precision": job.runtime.precision,
            "channels_last": job.runtime.channels_last,
            "num_workers": job.runtime.num_workers,
        },
    }
    staged = stages.summary(job)
    if staged is not None:
        result["stages"] = staged
    for key in ("per_class", "confusion_matrix"):
        if key in from_head_stage:
            result[key] = from_head_stage[key]
    if "test" in final:
        matrix = final["test"].confusion
        result["per_class"] = {"split": "test", **final["test"].per_class(job.data.classes)}
        result["confusion_matrix"] = {
            "split": "test",
            "labels": list(job.data.classes),
            "matrix": matrix.tolist(),
        }
    record_times(job, result)
    return result


def record_times(job: Job, result: dict[str, Any]) -> None:
    """Set result's times from the job's timer (in place): end, duration and phases of this attempt.

    `start_time` is the job's first start (kept across `--resume`), `attempt_start_time` this attempt's:
    the command's start, not the training loop's. `phases` (seconds: startup, validate, extract, train,
    evaluate, finalize) add up to `duration_s`. `total_duration_s` adds the earlier attempts (None when
    a checkpoint from before this record was resumed)."""
    timer = job.timer
    duration = round(timer.elapsed(), 3)
    earlier = job.earlier_attempts_s
    result.update(
        {
            "end_time": timer.end_time,
            "duration_s": duration,
            "attempt_start_time": timer.start_time,
            "attempts": job.attempt,
            "total_duration_s": None if earlier is None else round(earlier + duration, 3),
            "phases": timer.phases(),
        }
    )


def _feature_cache_summary(job: Job) -> dict[str, Any] | None:
    features = job.features
    if features is None:
        return None
    return {
        "key": features.key,
        "path": str(features.path),
        "hit": features.hit,
        "build_s": features.seconds,
        "views": features.views,
        "augmented": features.augmented,
        "backend": features.backend,
        "precision": features.precision,
        "images_extracted": features.extracted,
        "extract_s": round(features.extract_seconds, 3),
        "images_per_s": round(features.extracted / features.extract_seconds, 1)
        if features.extract_seconds > 0
        else None,
    }


def write_outputs(job: Job, state: TrainState, runner: CallbackRunner) -> None:
    """result.json, plots and the HTML report; a failure of the last two is logged, never turns a finished
    job into a failed one. result.json goes first: on a full disk it is what must fit.

    The callbacks add their outputs after the per-epoch loss plot (the debugger's per-step plot replaces
    it) and their sections to the report."""
    from vizsla.training.plots import plot_confusion_matrix, plot_loss
    from vizsla.training.report import write_training_report

    result = state.result or {}
    write_result(job.job_dir, result)
    if job.spec.outputs == "deferred":  # a tuning trial: ~0.6 s of drawing per trial, for plots few open
        return
    try:
        if state.history:
            plot_loss(state.history, job.job_dir.loss_plot)
        runner.finish(state)
        if "confusion_matrix" in result:
            cm = result["confusion_matrix"]
            plot_confusion_matrix(cm["matrix"], cm["labels"], job.job_dir.confusion_matrix_plot)
        write_training_report(job.job_dir, sections=runner.report_sections(job.job_dir))
    except Exception as exc:  # noqa: BLE001 - outputs are a convenience on top of result.json
        if not is_disk_full(exc):
            log.exception("could not write plots or the training report")
        else:  # the disk is the problem, not the code: no traceback
            log.warning("could not write plots or the training report in %s: %s", job.job_dir.root, exc)


def write_report(job: Job, runner: CallbackRunner) -> None:
    """Rewrite reports/training.html from the job directory (e.g. after callbacks added their outputs)."""
    from vizsla.training.report import write_training_report

    if job.spec.outputs == "deferred":
        return

    try:
        write_training_report(job.job_dir, sections=runner.report_sections(job.job_dir))
    except Exception as exc:  # noqa: BLE001 - the report is a convenience on top of result.json
        if not is_disk_full(exc):
            log.exception("could not write the training report")
        else:
            log.warning("could not write the training report %s: %s", job.job_dir.training_report, exc)


def write_result(job_dir: JobDir, result: dict[str, Any] | None) -> None:
    """result.json, its paths into the job folder relative (the in-memory result keeps them absolute)."""
    if result is not None:
        with writing(job_dir.result, what=job_dir.result.name):
            job_dir.write_result(result)
