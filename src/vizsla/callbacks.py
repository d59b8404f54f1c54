"""Trainer events and the Callback base class that debugger, profiler, tracking and tuning implement.

The trainer calls `CallbackRunner.fire(event, state)` at each event; a callback that raises is logged and
disabled so that an auxiliary tool can never kill a training run. Beyond the events, a callback may add
finish-time outputs (`on_finish`) and sections of the training report (`report_sections`): that is how the
tools put their part into a job's outputs without the trainer knowing them. Which callbacks a job gets is
decided by the composition root, `vizsla.jobs`, and handed to the trainer as a `CallbackFactory`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

EVENTS = (
    "fit_start",
    "epoch_start",
    "batch_start",
    "after_forward",
    "after_backward",
    "batch_end",
    "eval_end",
    "epoch_end",
    "fit_end",
)


@dataclass
class TrainState:
    """What the trainer exposes to callbacks; callbacks may set `should_stop` / `stop_reason`.

    Fields that are not meaningful at an event are None (e.g. `loss` outside batch events).
    """

    spec: Any
    job_dir: Any
    model: Any = None
    optimizer: Any = None
    scheduler: Any = None
    device: Any = None
    epoch: int = 0  # 0-based index of the current epoch
    global_step: int = 0  # train batches done so far, across epochs (optimizer steps unless accumulating)
    batch_index: int = 0
    mode: str = "train"  # "train" | "eval" | "predict"
    split: str | None = None  # split being evaluated at eval_end ("valid", "test")
    inputs: Any = None
    targets: Any = None
    outputs: Any = None
    loss: Any = None
    batch_size: int = 0
    metrics: dict[str, float] = field(default_factory=dict)  # latest metrics, e.g. valid_accuracy
    history: list[dict[str, Any]] = field(default_factory=list)  # per-epoch records
    status: str = "InProgress"  # InProgress | Completed | Failed | Stopped
    should_stop: bool = False
    stop_reason: str | None = None
    result: dict[str, Any] | None = None  # result.json content, set before fit_end
    rank: int = 0  # this process in a distributed job (callbacks run in every process)
    world_size: int = 1

    def request_stop(self, reason: str) -> None:
        """Ask the trainer to stop after the current step; the job ends with status Stopped."""
        self.should_stop = True
        self.stop_reason = reason


@dataclass(frozen=True)
class ReportSection:
    """A part of the training report that a tool adds: an HTML fragment the tool has escaped itself."""

    name: str  # the tool's name, e.g. "debugger" (the report's section id)
    html: str


class Callback:
    """Base class with a no-op method per event; override the ones you need."""

    def fit_start(self, state: TrainState) -> None: ...
    def epoch_start(self, state: TrainState) -> None: ...
    def batch_start(self, state: TrainState) -> None: ...
    def after_forward(self, state: TrainState) -> None: ...
    def after_backward(self, state: TrainState) -> None: ...
    def batch_end(self, state: TrainState) -> None: ...
    def eval_end(self, state: TrainState) -> None: ...
    def epoch_end(self, state: TrainState) -> None: ...
    def fit_end(self, state: TrainState) -> None: ...

    def on_finish(self, state: TrainState) -> None:
        """Write finish-time outputs into the job directory before its report is drawn (rank 0 only, and
        not for a job whose outputs are deferred); e.g. the debugger's loss plot from its store."""

    def report_sections(self, job_dir: Any) -> list[ReportSection]:
        """What this callback adds to the training report of JOB_DIR (a JobDir); read when it is drawn."""
        return []


# Builds the callbacks a job gets from its state at the start (spec, job_dir, rank, world_size).
CallbackFactory = Callable[[TrainState], list[Callback]]


class CallbackRunner:
    """Dispatches events to callbacks, disabling any callback that raises."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks: list[Callback] = list(callbacks)
        self.everyone: tuple[Callback, ...] = tuple(self.callbacks)  # disabled ones still add their outputs
        self.disabled: dict[str, str] = {}  # callback class name -> error message

    def fire(self, event: str, state: TrainState) -> None:
        for callback in list(self.callbacks):
            try:
                getattr(callback, event)(state)
            except Exception as exc:  # noqa: BLE001 - a callback must never kill training
                name = type(callback).__name__
                log.error("callback %s failed at %s and is disabled: %r", name, event, exc, exc_info=True)
                self.disabled[name] = f"{event}: {exc!r}"
                self.callbacks.remove(callback)

    def finish(self, state: TrainState) -> None:
        """Every callback's `on_finish`; one that raises is logged (its outputs are a convenience)."""
        for callback in self.everyone:
            try:
                getattr(callback, "on_finish", _no_outputs)(state)
            except Exception as exc:  # noqa: BLE001 - finish-time outputs never fail a job
                log.error("callback %s could not write its outputs: %r", type(callback).__name__, exc,
                          exc_info=True)

    def report_sections(self, job_dir: Any) -> list[ReportSection]:
        """The report sections of every callback, in callback order; one that raises adds none."""
        sections: list[ReportSection] = []
        for callback in self.everyone:
            try:
                sections += getattr(callback, "report_sections", _no_sections)(job_dir)
            except Exception as exc:  # noqa: BLE001 - a missing section never fails the report
                log.error("callback %s gave no report section: %r", type(callback).__name__, exc,
                          exc_info=True)
        return sections


def _no_outputs(state: TrainState) -> None:
    """`on_finish` of a callback that does not derive from Callback."""


def _no_sections(job_dir: Any) -> list[ReportSection]:
    return []
