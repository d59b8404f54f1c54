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
        self.console.print(
            f"epoch {record['epoch'] + 1}/{self.epochs}  "
            f"train_loss {record.get('train_loss', float('nan')):.4f}  "
            f"train_acc {record.get('train_accuracy', float('nan')):.4f}  "
            f"valid_loss {record['valid_loss']:.4f}  valid_acc {record['valid_accuracy']:.4f}  "
            f"({record['epoch_time_s']:.1f} s){mark}"
        )
