"""Per-step phase times from trainer events, without synchronising the device on every step.

Host timestamps (perf_counter) are taken at batch_start, after_forward, after_backward and batch_end:

    data_s       previous batch_end (or epoch_start) -> batch_start: waiting for the loader, the batch's
                 host-to-device copy (the trainer moves the batch before batch_start fires) and the
                 bookkeeping between steps (progress bar, metrics line, callbacks after ours)
    forward_s    batch_start -> after_forward
    backward_s   after_forward -> after_backward (on CUDA also the wait for the forward kernels: the
                 trainer reads loss.item() there)
    optimizer_s  after_backward -> batch_end: optimizer and scheduler step, metric update, callbacks before us

On CUDA, events are also recorded on the current stream at the same points and read a few steps later
(`lag` steps, when they have long completed), giving the device time of forward, backward and optimizer
(gpu_*_s) without a synchronize per step. Records are buffered and written to profile/steps.jsonl per epoch
(steps-rank{r}.jsonl on rank r > 0 of a distributed job).
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

from vizsla.callbacks import TrainState
from vizsla.profiler.collectors.base import BaseCollector, JsonlWriter

PHASES = ("data_s", "forward_s", "backward_s", "optimizer_s")
GPU_PHASES = ("gpu_forward_s", "gpu_backward_s", "gpu_optimizer_s")


class StepPhaseCollector(BaseCollector):
    """Times the phases of every train step; `sample()` is the latest completed step's record."""

    name = "step_phases"

    def __init__(self, path: Path, lag: int = 3, *, rank: int | None = None) -> None:
        self.rank = rank  # set in a distributed job: every record names the process that timed it
        self.writer = JsonlWriter(Path(path), flush_every=1_000_000)  # written at epoch ends only
        self.lag = lag
        self._clock = time.perf_counter
        self._offset = time.time() - time.perf_counter()  # perf_counter -> wall clock
        self._last_end: float | None = None
        self._marks: list[float] = []
        self._cuda = False
        self._events: list[Any] = []
        self._pending: deque[tuple[dict[str, Any], list[Any]]] = deque()
        self._last: dict[str, Any] | None = None
        self.count = 0

    def sample(self) -> dict[str, Any] | None:
        return self._last

    def fit_start(self, state: TrainState) -> None:
        device = getattr(state, "device", None)
        self._cuda = getattr(device, "type", None) == "cuda"

    def epoch_start(self, state: TrainState) -> None:
        self._last_end = self._clock()

    def batch_start(self, state: TrainState) -> None:
        now = self._clock()
        self._marks = [self._last_end if self._last_end is not None else now, now]
        if self._cuda:
            self._events = [self._record_event()]

    def after_forward(self, state: TrainState) -> None:
        self._marks.append(self._clock())
        if self._cuda:
            self._events.append(self._record_event())

    def after_backward(self, state: TrainState) -> None:
        self._marks.append(self._clock())
        if self._cuda:
            self._events.append(self._record_event())

    def batch_end(self, state: TrainState) -> None:
        end = self._clock()
        marks = self._marks
        if len(marks) != 4:  # a step whose earlier events we did not see (callback added mid-step)
            self._last_end = end
            return
        marks.append(end)
        record = {
            "step": state.global_step - 1,  # 0-based index of the step that just ended
            "epoch": state.epoch,
            "batch_index": state.batch_index,
            "batch_size": state.batch_size,
            "time": marks[1] + self._offset,
        }
        if self.rank is not None:
            record["rank"] = self.rank
        for name, start, stop in zip(PHASES, marks, marks[1:], strict=False):
            record[name] = stop - start
        record["total_s"] = end - marks[0]
        self._last_end = end
        self.count += 1
        if self._cuda:
            self._events.append(self._record_event())
            self._pending.append((record, self._events))
            self._resolve(keep=self.lag)
        else:
            self._emit(record)

    def epoch_end(self, state: TrainState) -> None:
        self._resolve(keep=0)
        self.writer.flush()

    def fit_end(self, state: TrainState) -> None:
        self._resolve(keep=0)
        self.writer.close()

    def _emit(self, record: dict[str, Any]) -> None:
        self._last = record
        self.writer.append(record)

    @staticmethod
    def _record_event() -> Any:
        import torch

        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def _resolve(self, keep: int) -> None:
        """Read the CUDA events of all but the `keep` newest steps (they have finished by then)."""
        while len(self._pending) > keep:
            record, events = self._pending.popleft()
            events[-1].synchronize()  # a no-op wait for steps `lag` behind the one just launched
            for name, start, stop in zip(GPU_PHASES, events, events[1:], strict=False):
                record[name] = start.elapsed_time(stop) / 1000.0  # ms -> s
            self._emit(record)
