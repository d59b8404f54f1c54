"""The optional training techniques of a job, attached once before its loop starts: mixup/cutmix of the
train batches (mixing.py), the weight average (ema.py) and the K best checkpoints (keep_best.py).

Each is a no-op object when off, so the loop calls them unconditionally. Gradient accumulation needs no
state across epochs: the loop makes its `GradientAccumulation` per epoch (accumulation.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from vizsla.training.ema import create_weight_average
from vizsla.training.keep_best import create_best_checkpoints
from vizsla.training.mixing import create_mixing

if TYPE_CHECKING:
    from vizsla.training.setup import Job

log = logging.getLogger("vizsla.train")


def attach_components(job: Job) -> None:
    """Set job.mixing, job.ema and job.keep_best from the spec, continuing a resumed job's EMA and kept
    checkpoints. Called by `setup.restore_state` before the callbacks' fit_start (see ema.py for why)."""
    spec = job.spec.train
    on_features = job.features is not None  # a head on cached features: the head alone trains
    job.mixing = create_mixing(spec, len(job.data.classes), on_features=on_features)
    job.ema = create_weight_average(job.model.head if on_features else job.model, spec.ema_decay)
    checkpoint = job.checkpoint
    if checkpoint is not None and job.ema.active:
        job.ema.load_state_dict(checkpoint.get("ema"))
    job.keep_best = create_best_checkpoints(job, resumed_at=checkpoint["next_epoch"] if checkpoint else 0)
    if spec.accumulate_steps > 1:
        log.info("gradient accumulation: an optimizer step every %d batches (%d images a step)",
                 spec.accumulate_steps, spec.accumulate_steps * spec.batch_size)
    if spec.keep_best_checkpoints > 0:
        log.info("keeping the weights of the %d best epochs by %s in %s", spec.keep_best_checkpoints,
                 spec.early_stopping_metric, job.job_dir.checkpoints)
