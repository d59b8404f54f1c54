"""A job's epoch curves as TensorBoard event files: `tensorboard --logdir <job>/tensorboard`.

What users open TensorBoard for: train and valid loss and accuracy per epoch (one chart each, both splits
on it), the learning rate, training throughput and epoch time. Steps are the epoch indices of metrics.jsonl
and MLflow (0-based). The debugger's tensors go to its own store's tensorboard/ folder (`vizsla debug JOB
--tensorboard`). torch.utils.tensorboard (the `tensorboard` package) is imported when a job starts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from vizsla.callbacks import Callback, TrainState
from vizsla.errors import UserError

# epoch record key -> TensorBoard tag ("loss/train" and "loss/valid" share the chart "loss")
SCALARS = {
    "train_loss": "loss/train",
    "valid_loss": "loss/valid",
    "train_accuracy": "accuracy/train",
    "valid_accuracy": "accuracy/valid",
    "lr": "lr",
    "epoch_time_s": "time/epoch_s",
}
THROUGHPUT_TAG = "throughput/train_images_per_s"


class TensorBoardCurves(Callback):
    """Write each epoch's scalars to LOG_DIR; a resumed job rewrites from its first new epoch on."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self._writer: Any = None
        self._images = 0  # training images seen in this epoch
        self._started = 0.0  # perf_counter() at the epoch's start
        self._train_end = 0.0  # perf_counter() at its last training batch

    def fit_start(self, state: TrainState) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise UserError(
                "tracking.tensorboard needs the tensorboard package: "
                f"pip install 'vizsla[tensorboard]' ({exc})"
            ) from None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # A resumed job: TensorBoard drops the events of earlier attempts from this step on.
        self._writer = SummaryWriter(str(self.log_dir), purge_step=len(state.history) or None)

    def epoch_start(self, state: TrainState) -> None:
        self._images, self._started, self._train_end = 0, time.perf_counter(), 0.0

    def batch_end(self, state: TrainState) -> None:
        if state.mode == "train":
            self._images += int(state.batch_size)
            self._train_end = time.perf_counter()

    def epoch_end(self, state: TrainState) -> None:
        if self._writer is None or not state.history:
            return
        record = state.history[-1]
        step = int(record.get("epoch", state.epoch))
        for key, tag in SCALARS.items():
            value = record.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                self._writer.add_scalar(tag, float(value), step, walltime=record.get("time"))
        seconds = self._train_end - self._started
        if self._images and seconds > 0:
            self._writer.add_scalar(THROUGHPUT_TAG, self._images / seconds, step, walltime=record.get("time"))
        self._writer.flush()  # readable while the job runs

    def fit_end(self, state: TrainState) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
