"""The staged recipe: a head stage on cached features, then fine-tuning from that head, never ending below it.

Unfreezing a backbone under a random head wrecks its features: the head's large early gradients flow into
layers a small set cannot re-learn (measured: a 300-photo set fell from 0.82 head-only to 0.70). So a staged
job first trains the head alone where it costs seconds, as a head-only job of its own in
`stages/head/` (cached backbone features, the job's head LR, `staged_head_epochs` epochs). The job then
starts from that head: the stage's valid result is the best to beat, and model/ holds its model from the
start. Fine-tuning (every layer, LR from the top of the backbone decaying by
layer, warmup, the BatchNorm statistics kept) only replaces model/ when an epoch validates better, so the job
ends at the better of the two stages; result.json's `stages` says which won.
"""

from __future__ import annotations

import logging
import shutil
import time
from typing import TYPE_CHECKING, Any

from vizsla.callbacks import TrainState
from vizsla.infra import collectives
from vizsla.spec import JobSpec

if TYPE_CHECKING:
    from vizsla.training.setup import Job

log = logging.getLogger("vizsla.train")

HEAD_STAGE = "head"


def is_staged(job: Job) -> bool:
    return job.spec.train.finetune == "staged"


def head_stage_spec(spec: JobSpec) -> JobSpec:
    """A head-only job in the staged job's stages/head/: the same data, model and head settings, its own
    epochs; no tools (the staged job's tracking, debugger and profiler watch the fine-tuning)."""
    from vizsla.jobdir import JobDir

    train = spec.train.model_copy(
        update={
            "finetune": "head",
            "epochs": spec.train.staged_head_epochs,
            "feature_cache": "auto",
            "layer_decay": None,
            "warmup_epochs": 0.0,
            "mixup": 0.0,
            "cutmix": 0.0,
            "ema_decay": None,
            "accumulate_steps": 1,
            "keep_best_checkpoints": 0,
            "early_stopping_patience": None,
            "compile": False,
        }
    )
    return spec.model_copy(
        update={
            "name": f"{spec.job_name}-{HEAD_STAGE}",
            "output": str(JobDir(spec.output).stage(HEAD_STAGE).root),
            "train": train,
            "tracking": spec.tracking.model_copy(update={"enabled": False, "registered_model_name": None}),
            "debug": spec.debug.model_copy(update={"enabled": False}),
            "profile": spec.profile.model_copy(update={"enabled": False}),
            "distributed": type(spec.distributed)(),
        }
    )


def run_head_stage(spec: JobSpec, *, progress: bool) -> dict[str, Any]:
    """Run (or, once Completed, reuse) the head stage of SPEC's job; its result.json record.

    A stage left unfinished by an earlier attempt is run again from scratch (seconds: its features come
    from the cache)."""
    from vizsla.training import trainer
    from vizsla.training.signals import JobStopped

    stage_spec = head_stage_spec(spec)
    stage_dir = _stage_dir(stage_spec)
    done = stage_dir.read_result() if stage_dir.exists() else None
    if done and done.get("status") == "Completed":
        log.info("head stage: reusing %s (valid %s)", stage_dir.root, _valid_text(done))
        return done
    if stage_dir.root.exists():
        shutil.rmtree(stage_dir.root)
    log.info("head stage: training the head alone for %d epochs on cached features in %s",
             stage_spec.train.epochs, stage_dir.root)
    result = trainer.run_stage(stage_spec, progress=progress)
    if result.get("status") != "Completed":
        raise JobStopped(f"the head stage ended {result.get('status')}: {result.get('stop_reason') or ''}")
    return result


def start_from_head_stage(job: Job, state: TrainState, *, progress: bool) -> None:
    """Train the head stage, load its head, and make its result the best for fine-tuning to beat; model/
    holds the head stage's model until an epoch beats it.

    The head stage's figures are those of a head-only job with its settings (measured on the cached
    features, as head-only jobs measure), so a staged job whose fine-tuning never wins reports exactly
    what that head-only job reports. In a distributed job rank 0 runs the stage and sends the others its
    head and figures."""
    from vizsla.training import bookkeeping

    started = time.perf_counter()
    payload: tuple[dict[str, Any], dict[str, float]] | None = None
    if job.dist.is_main:
        result = run_head_stage(job.spec, progress=progress)
        head = _stage_head(job.job_dir.stage(HEAD_STAGE).model_dir)
        payload = (head, {k: float(v) for k, v in (result.get("metrics") or {}).items()})
        log.info("head stage: valid %s after %s epoch(s)", _valid_text(result),
                 result.get("epochs_completed"))
    head, metrics = collectives.broadcast_object(payload)
    job.model.head.load_state_dict(head)
    metric = job.spec.train.early_stopping_metric
    if metric not in metrics:
        raise KeyError(f"the head stage recorded no {metric}; choose one of {sorted(metrics)}")
    job.best = {"name": metric, "value": _bar(job, state, metric, metrics[metric]), "epoch": None,
                "stage": HEAD_STAGE, "metrics": {k: v for k, v in metrics.items() if k.startswith("valid_")}}
    if job.dist.is_main:
        bookkeeping.export_model(job)
    log.info("fine-tuning from the head stage (%s %.4f, %.1f s); model/ holds it until an epoch beats it",
             metric, job.best["value"], time.perf_counter() - started)


def _bar(job: Job, state: TrainState, metric: str, reported: float) -> float:
    """The figure a fine-tuning epoch must beat: the head stage's as it reported it (on cached features)
    and as this job's evaluation (the whole model on the images) measures the same weights, whichever is
    stricter. Against the first alone, the two evaluations' small difference (int8 features, bf16
    autocast: a photo or two) could crown an epoch that changed nothing; against the second alone, a
    fine-tuned job could report less than the head-only job it started from."""
    from vizsla.callbacks import CallbackRunner
    from vizsla.training import trainer

    if not metric.startswith("valid_"):
        return reported
    measured = trainer.evaluate(job, state, CallbackRunner([]), "valid").summary("valid")[metric]
    log.info("head stage %s: %.4f as reported, %.4f measured by this job's evaluation", metric, reported,
             measured)
    return max(reported, measured) if "loss" not in metric else min(reported, measured)


def head_result(job: Job) -> dict[str, Any]:
    """What result.json takes from the head stage when its model is the job's: its metrics (train, valid,
    test of its best epoch) and its test split's per-class figures and confusion matrix."""
    result = job.job_dir.stage(HEAD_STAGE).read_result() or {}
    return {key: result[key] for key in ("metrics", "per_class", "confusion_matrix") if key in result}


def summary(job: Job) -> dict[str, Any] | None:
    """result.json's `stages`: each stage's valid figure and which one model/ holds."""
    if not is_staged(job) or not job.best:
        return None
    stage_dir = job.job_dir.stage(HEAD_STAGE)
    head_result = stage_dir.read_result() if stage_dir.exists() else None
    return {
        "head": {
            "dir": str(stage_dir.root),
            "epochs": (head_result or {}).get("epochs_completed"),
            "duration_s": (head_result or {}).get("duration_s"),
            "valid": _head_valid(job),
        },
        "winner": HEAD_STAGE if head_won(job) else "finetune",
    }


def _head_valid(job: Job) -> dict[str, float]:
    """The head stage's valid metrics (kept in `best` while it leads, and in the checkpoint's copy of it
    afterwards)."""
    return dict(job.best.get("head_metrics") or job.best.get("metrics") or {})


def head_won(job: Job) -> bool:
    return bool(job.best) and job.best.get("stage") == HEAD_STAGE


def note_improvement(job: Job, previous: dict[str, Any]) -> None:
    """Keep the head stage's figures in `best` once an epoch of fine-tuning has beaten them."""
    if previous.get("stage") == HEAD_STAGE:
        job.best["head_metrics"] = previous.get("metrics", {})
    elif "head_metrics" in previous:
        job.best["head_metrics"] = previous["head_metrics"]


def _stage_dir(stage_spec: JobSpec) -> Any:
    from vizsla.jobdir import JobDir

    return JobDir(stage_spec.output)


def _stage_head(model_dir: Any) -> dict[str, Any]:
    from vizsla.models import load_model

    return {k: v.detach().cpu() for k, v in load_model(model_dir).head.state_dict().items()}


def _valid_text(result: dict[str, Any]) -> str:
    metrics = result.get("metrics") or {}
    return f"accuracy {metrics['valid_accuracy']:.4f}" if "valid_accuracy" in metrics else "not measured"
