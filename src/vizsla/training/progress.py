"""Rich progress display of a training job: a bar per epoch and one summary line per finished epoch."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class EpochProgress:
    """Shows steps of the running epoch with loss and images/s; prints nothing when disabled."""

    def __init__(self, epochs: int, *, enabled: bool = True, console: Console | None = None) -> None:
        self.epochs = epochs
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: Any = None
        self._started = 0.0
        self._steps = 0

    def __enter__(self) -> EpochProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def start_epoch(self, epoch: int, steps: int) -> None:
        self._started, self._steps = time.perf_counter(), 0
        if self._progress is None:
            return
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(
            "train", total=steps, epoch=epoch + 1, epochs=self.epochs, loss="-", rate=""
        )

    def step(self, loss: float) -> None:
        self._steps += 1
        if self._progress is None:
            return
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        self._progress.update(
            self._task, advance=1, loss=f"{loss:.4f}", rate=f"{self._steps / elapsed:.2f} it/s"
        )

    def epoch_done(self, record: dict[str, Any], improved: bool) -> None:
        if not self.enabled:
            return
        mark = " [green]best[/green]" if improved else ""
        self.console.print(epoch_text(record, self.epochs) + mark)


def epoch_text(record: dict[str, Any], epochs: int) -> str:
    """The one-line summary of an epoch record that the console and train.log show."""
    return (
        f"epoch {record['epoch'] + 1}/{epochs}  "
        f"train_loss {record.get('train_loss', float('nan')):.4f}  "
        f"train_acc {record.get('train_accuracy', float('nan')):.4f}  "
        f"valid_loss {record['valid_loss']:.4f}  valid_acc {record['valid_accuracy']:.4f}  "
        f"({record['epoch_time_s']:.1f} s)"
    )


def result_lines(result: dict[str, Any]) -> list[str]:
    """The job's end as `vizsla train` prints it (status, times, metrics, reason), for train.log."""
    from vizsla.training.timing import format_seconds, phases_text

    head = f"{result.get('status', '?')} {result.get('job_name')}"
    duration = result.get("duration_s")
    if isinstance(duration, int | float):
        head += f" in {format_seconds(duration)}"
        phases = phases_text(result.get("phases") or {})
        head += f" ({phases})" if phases else ""
    lines = [head]
    metrics = result.get("metrics") or {}
    shown = [f"{k} {v:.4f}" for k, v in metrics.items() if k.endswith(("accuracy", "loss"))]
    if shown:
        lines.append("  " + "  ".join(shown))
    for key in ("stop_reason", "failure_reason"):
        if result.get(key):
            lines.append(f"  {result[key]}")
    lines.append(f"  job directory: {result.get('job_dir')}")
    return lines


def settings_text(job: Any) -> str:
    """The settings a job resolved (what the console's options chose), for train.log."""
    spec, runtime = job.spec, job.runtime
    size = job.model.preprocessing.get("input_size", [3, 0, 0])[-1]
    weights = job.model.config.get("weights")
    if isinstance(weights, dict):  # where the pretrained weights came from
        weights = weights.get("identifier") or weights.get("path") or weights.get("source")
    train = spec.train
    cached = " on cached features" if job.features is not None else ""
    return (
        f"model {spec.model.name} (weights {weights}, {size} px), finetune {train.finetune}{cached}, "
        f"{train.epochs} epochs, batch {train.batch_size}, lr {train.lr:g} ({train.optimizer}, "
        f"{train.schedule}), device {runtime.device} {runtime.precision}, "
        f"{runtime.num_workers} loader workers"
    )
