"""Export a tensor store to TensorBoard event files: `tensorboard --logdir <job>/debug/tensorboard`.

One run per mode (`tensorboard/TRAIN`, `tensorboard/EVAL`, like smdebug). Scalars: every scalar tensor
(the loss) under its own name, and each stored reduction of the other tensors as `<tensor>/<reduction>`.
Histograms: the stored 64-bin histograms as `<tensor>` (TensorBoard's bucket limits are our right edges;
sum and sum of squares come from the mean and std). Raw-only tensors (labels, predictions) get reductions
and histograms computed from the raw values, exactly as the reader reports them. x axis: the mode's step.
Needs the `tensorboard` package (torch.utils.tensorboard writes the files).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from vizsla.debugger.collections import REDUCTIONS
from vizsla.debugger.reader import Trial
from vizsla.errors import UserError


def export_tensorboard(trial: Trial, out_dir: str | Path | None = None) -> Path:
    """Write (replace) the event files of every mode; returns the log directory."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise UserError(
            f"TensorBoard export needs the tensorboard package: pip install tensorboard ({exc})"
        ) from None
    out = Path(out_dir) if out_dir is not None else trial.root / "tensorboard"
    for mode in trial.modes():
        run_dir = out / mode
        if run_dir.exists():
            shutil.rmtree(run_dir)  # a re-export must not duplicate points
        writer = SummaryWriter(log_dir=str(run_dir))
        try:
            for step in trial.steps(mode):
                info = trial.step_info(step, mode) or {}
                wall = info.get("time")
                for name in info.get("tensors", []):
                    _write_tensor(writer, trial, name, step, mode, wall)
        finally:
            writer.close()
    return out


def _write_tensor(writer: Any, trial: Trial, name: str, step: int, mode: str, wall: float | None) -> None:
    tensor = trial.tensor(name)
    raw = tensor.value(step, mode)
    if raw is not None and raw.size == 1 and np.issubdtype(raw.dtype, np.floating):
        writer.add_scalar(name, float(raw.reshape(-1)[0]), step, walltime=wall)
        return
    stats = {r: tensor.reduction(step, r, mode) for r in REDUCTIONS}
    for reduction, value in stats.items():
        if value is not None:
            writer.add_scalar(f"{name}/{reduction}", value, step, walltime=wall)
    histogram = tensor.histogram(step, mode)
    if histogram is None:
        return
    edges, counts = histogram
    num = float(counts.sum())
    if num == 0 or stats["mean"] is None or stats["min"] is None:
        return
    mean, std = stats["mean"], stats["std"] or 0.0
    writer.add_histogram_raw(
        name,
        min=stats["min"],
        max=stats["max"],
        num=num,
        sum=mean * num,
        sum_squares=(std * std + mean * mean) * num,
        bucket_limits=edges[1:].tolist(),
        bucket_counts=counts.tolist(),
        global_step=step,
        walltime=wall,
    )
