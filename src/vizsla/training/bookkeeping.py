"""What a job writes as it goes: metrics lines, best model, epoch checkpoints and the final result."""

from __future__ import annotations

import json
import logging
from typing import Any

from vizsla.callbacks import TrainState
from vizsla.jobdir import JobDir, atomic_write_json
from vizsla.training.checkpoint import rng_state, save_checkpoint
from vizsla.training.metrics import ClassificationMeter
from vizsla.training.setup import Job

log = logging.getLogger("vizsla.train")


def append_metrics(job_dir: JobDir, record: dict[str, Any]) -> None:
    """Append one JSON line; flushed at once so `tail -f` and other processes see it."""
    with job_dir.metrics.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


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
    from vizsla.models import save_model

    if not job.best_unsaved or job.best_state is None:
        return
    load_trained_state(job, job.best_state)
    if job.dist.is_main:
        save_model(job.model, job.job_dir.model_dir)
    job.best_unsaved = False


def track_best(job: Job, state: TrainState, record: dict[str, Any]) -> bool:
    """Note the best epoch when the watched valid metric improves (exporting the model to model/, or for a
    head-only job keeping its weights for one export at the end); returns whether it improved."""
    from vizsla.models import save_model

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
    job.best = {"name": metric, "value": value, "epoch": record["epoch"]}
    job.epochs_without_improvement = 0
    if head_only(job):
        job.best_state = {k: v.detach().to("cpu", copy=True) for k, v in trained_state(job).items()}
        job.best_unsaved = True
        return True
    if job.dist.is_main:
        save_model(job.model, job.job_dir.model_dir)
    if job.dist.enabled:  # every rank evaluates the best weights at the end without reading rank 0's disk
        job.best_state = {k: v.detach().to("cpu", copy=True) for k, v in job.model.state_dict().items()}
    return True


def early_stopping_triggered(job: Job, state: TrainState) -> bool:
    patience = job.spec.train.early_stopping_patience
    return patience is not None and job.epochs_without_improvement >= patience


def save_epoch_checkpoint(job: Job, state: TrainState, *, next_epoch: int) -> None:
    """Write checkpoints/last.pt atomically: a job killed later resumes at `next_epoch`."""
    payload = {
        "model": trained_state(job),
        "best_state": job.best_state if head_only(job) else None,
        "optimizer": job.optimizer.state_dict(),
        "scheduler": job.scheduler.state_dict(),
        "scaler": job.scaler.state_dict(),
        "next_epoch": next_epoch,
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
    if state.history:
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


def write_outputs(job: Job, state: TrainState) -> None:
    """Plots and the HTML report; a failure here is logged, never turns a finished job into a failed one."""
    from vizsla.training.plots import plot_confusion_matrix, plot_loss
    from vizsla.training.report import write_training_report

    result = state.result or {}
    try:
        if state.history:
            plot_loss(state.history, job.job_dir.loss_plot)
        if job.spec.debug.enabled:  # the classic plot: train and eval loss per step, from recorded tensors
            from vizsla.debugger import open_trial
            from vizsla.debugger.report import plot_losses_from_trial

            trial = open_trial(job.job_dir.root / job.spec.debug.out_dir)
            plot_losses_from_trial(trial, job.job_dir.loss_plot)
        if "confusion_matrix" in result:
            cm = result["confusion_matrix"]
            plot_confusion_matrix(cm["matrix"], cm["labels"], job.job_dir.confusion_matrix_plot)
        write_result(job.job_dir, result)
        write_training_report(job.job_dir)
    except Exception:  # noqa: BLE001 - outputs are a convenience on top of result.json
        log.exception("could not write plots or the training report")


def write_report(job: Job) -> None:
    """Rewrite reports/training.html from the job directory (e.g. after callbacks added their outputs)."""
    from vizsla.training.report import write_training_report

    try:
        write_training_report(job.job_dir)
    except Exception:  # noqa: BLE001 - the report is a convenience on top of result.json
        log.exception("could not write the training report")


def write_result(job_dir: JobDir, result: dict[str, Any] | None) -> None:
    if result is not None:
        atomic_write_json(job_dir.result, result)
