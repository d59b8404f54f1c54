"""Job phases: initialisation, first step, training, each evaluation, checkpointing and finalisation.

The job starts when `create_job` writes spec.yaml into the job directory (its first act, before data
validation, model creation and feature extraction), so the time from that file's mtime to fit_start is the
initialisation, for the CLI and the library alike. The trainer fires no event before an evaluation, so an
evaluation span runs from the previous event (last train step or previous evaluation) to its eval_end;
checkpointing is epoch_end -> the next epoch_start (or the first final evaluation); finalisation (plots,
reports) is the last evaluation -> fit_end.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from vizsla.callbacks import TrainState
from vizsla.infra.io import atomic_write_json
from vizsla.profiler.collectors.base import BaseCollector


class JobPhaseCollector(BaseCollector):
    """Records a timeline of trainer events (wall clock) and writes it with the job's context to job.json."""

    name = "job_phases"

    def __init__(self, path: Path, context: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.timeline: list[dict[str, Any]] = []
        self.extra = dict(context or {})  # what the trainer's state does not say, e.g. the world size
        self.context: dict[str, Any] = dict(self.extra)
        self._in_epoch = False
        self._first_step_seen = False
        self._last_batch_end: float | None = None

    def sample(self) -> dict[str, Any]:
        return {"timeline": list(self.timeline), "context": dict(self.context)}

    def _mark(self, event: str, state: TrainState, **extra: Any) -> None:
        self.timeline.append({"event": event, "time": time.time(), "epoch": state.epoch, **extra})

    def fit_start(self, state: TrainState) -> None:
        spec_file = Path(state.job_dir.spec) if state.job_dir is not None else None
        started = spec_file.stat().st_mtime if spec_file is not None and spec_file.is_file() else None
        self.context = {**job_context(state), **self.extra, "job_start": started}
        self._mark("fit_start", state, global_step=state.global_step)

    def epoch_start(self, state: TrainState) -> None:
        self._in_epoch = True
        self._mark("epoch_start", state)

    def batch_end(self, state: TrainState) -> None:
        self._last_batch_end = time.time()
        if not self._first_step_seen:
            self._first_step_seen = True
            self._mark("first_step_end", state, global_step=state.global_step)

    def eval_end(self, state: TrainState) -> None:
        if self._in_epoch and self._last_batch_end is not None:
            self.timeline.append({"event": "train_end", "time": self._last_batch_end, "epoch": state.epoch})
            self._in_epoch = False
        self._mark("eval_end", state, split=state.split)

    def epoch_end(self, state: TrainState) -> None:
        self._mark("epoch_end", state, global_step=state.global_step)

    def fit_end(self, state: TrainState) -> None:
        self._mark("fit_end", state, status=state.status)
        result = state.result or {}
        self.context["status"] = state.status
        self.context["result_start_time"] = result.get("start_time")
        self.write()

    def write(self) -> None:
        atomic_write_json(self.path, {"context": self.context, "timeline": self.timeline})


def job_context(state: TrainState) -> dict[str, Any]:
    """What the rules need to know about the job: workers, cores, batch size, device, model, precision."""
    import os

    spec = state.spec
    data, model, train = (getattr(spec, name, None) for name in ("data", "model", "train"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    device = state.device
    return {
        "job_name": getattr(spec, "job_name", None),
        "cores": cores,
        "num_workers": getattr(data, "num_workers", None),
        "batch_size": getattr(train, "batch_size", None),
        "epochs": getattr(train, "epochs", None),
        "model": getattr(model, "name", None),
        "image_size": getattr(model, "image_size", None),
        "precision": getattr(train, "precision", None),
        "channels_last": getattr(train, "channels_last", None),
        "finetune": getattr(train, "finetune", None),
        "feature_cache": getattr(train, "feature_cache", None),
        "device": str(device) if device is not None else None,
        "device_type": getattr(device, "type", None),
        "pid": os.getpid(),
    }
