"""The transform's progress bar: files done of all, images/s over this run, time left."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class TransformProgress:
    """A rich bar on stderr (nothing when disabled); images/s counts this run's files only, so a resumed
    run's rate and ETA are not inflated by the files an earlier run did."""

    def __init__(
        self, total: int, done: int, *, enabled: bool = True, console: Console | None = None
    ) -> None:
        self.total, self.done, self.enabled = total, done, enabled
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: Any = None
        self._began = 0.0
        self._now = 0

    def __enter__(self) -> TransformProgress:
        self._began = time.perf_counter()
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]transform"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._progress.start()
            self._task = self._progress.add_task("transform", total=self.total, completed=self.done,
                                                 rate="")
        return self

    def advance(self, count: int) -> None:
        """COUNT more files done."""
        self.done += count
        self._now += count
        if self._progress is None:
            return
        elapsed = time.perf_counter() - self._began
        rate = f"{self._now / elapsed:.1f} images/s" if elapsed > 0 else ""
        self._progress.update(self._task, completed=self.done, rate=rate)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
