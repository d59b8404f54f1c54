"""Step boundaries of a script's TRAIN steps for Vizsla's profiler: `$VIZSLA_PROFILE_DIR/steps.jsonl`.

The lines have the shape the built-in StepPhaseCollector writes (vizsla/profiler/collectors/step_phases.py),
so the profiler's summary, rules and report read them unchanged. A step is one forward of the registered
module in TRAIN mode; the marks come from the hook:

    data_s       end of the previous step -> forward start (the loader and everything between steps)
    forward_s    forward start -> the registered loss's output (or the module's output without a loss)
    backward_s   -> the last parameter gradient (0 when no gradient arrived, e.g. frozen or no backward)
    optimizer_s  -> the optimizer's step (any torch optimizer, by a global step hook; 0 when none ran)
    total_s      end of the previous step -> end of this one (the step time the report and rules use)

`epoch` and `batch_index` are unknown to the hook and written as null. Records are buffered and appended
every FLUSH_EVERY steps and at exit.

With `$VIZSLA_TORCH_TRACE` (a TorchTraceSpec as JSON; SageMaker's FrameworkProfile(start_step, num_steps)
becomes one) the same step boundaries drive a torch.profiler window in the script's rank-0 process: the
Chrome trace and the operator table land where the built-in profiler writes them, so the report shows them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from vizsla.profiler.collectors.base import JsonlWriter
from vizsla.profiler.data import STEPS_FILE

PROFILE_ENV = "VIZSLA_PROFILE_DIR"
TRACE_ENV = "VIZSLA_TORCH_TRACE"
FLUSH_EVERY = 50


class StepTimer:
    """Collects the phase marks of TRAIN steps and writes one steps.jsonl line per step."""

    def __init__(self, profile_dir: str | Path, file_name: str = STEPS_FILE) -> None:
        self.writer = JsonlWriter(Path(profile_dir) / file_name, flush_every=FLUSH_EVERY)
        self._clock = time.perf_counter
        self._offset = time.time() - time.perf_counter()
        self._step: int | None = None
        self._marks: dict[str, float] = {}
        self._batch_size: int | None = None
        self._last_end: float | None = None
        self._count = 0

    @classmethod
    def from_env(cls) -> StepTimer | None:
        """A timer when $VIZSLA_PROFILE_DIR is set (rank r > 0 of a torchrun job: steps-rank{r}.jsonl)."""
        directory = os.environ.get(PROFILE_ENV)
        if not directory:
            return None
        rank = int(os.environ.get("RANK", "0") or 0)
        return cls(directory, STEPS_FILE if rank == 0 else f"steps-rank{rank}.jsonl")

    def start(self, step: int, batch_size: int | None) -> None:
        """A TRAIN forward of the registered module began: close the previous step, open this one."""
        now = self._clock()
        self.close_step()
        self._step, self._batch_size = step, batch_size
        self._marks = {"begin": self._last_end if self._last_end is not None else now, "forward": now}

    def mark(self, name: str) -> None:
        """forward_end, loss, backward (repeated: the last gradient wins) or optimizer."""
        if self._step is not None:
            if name == "backward" or name not in self._marks:
                self._marks[name] = self._clock()

    def close_step(self) -> None:
        """Write the open step's record (at the next step, a mode change, or exit)."""
        if self._step is None:
            return
        marks, step = self._marks, self._step
        self._step = None
        forward_end = marks.get("loss", marks.get("forward_end", marks["forward"]))
        backward = marks.get("backward")
        optimizer = (
            marks.get("optimizer") if backward is None or marks.get("optimizer", 0) >= backward else None
        )
        end = optimizer or backward or forward_end
        record: dict[str, Any] = {
            "step": step,
            "epoch": None,
            "batch_index": None,
            "batch_size": self._batch_size,
            "time": marks["forward"] + self._offset,
            "data_s": marks["forward"] - marks["begin"],
            "forward_s": forward_end - marks["forward"],
            "backward_s": (backward - forward_end) if backward is not None else 0.0,
            "optimizer_s": (optimizer - (backward or forward_end)) if optimizer is not None else 0.0,
            "total_s": end - marks["begin"],
        }
        self._last_end = end
        self._count += 1
        self.writer.append(record)

    def close(self) -> None:
        self.close_step()
        self.writer.close()


class TraceWindow:
    """The built-in TorchTraceCollector, driven by the hook's TRAIN step boundaries instead of callbacks."""

    def __init__(self, collector: Any) -> None:
        self.collector = collector
        self.started = False

    @classmethod
    def from_env(cls) -> TraceWindow | None:
        """A window when both $VIZSLA_PROFILE_DIR and $VIZSLA_TORCH_TRACE are set (rank 0 only)."""
        import json

        directory, config = os.environ.get(PROFILE_ENV), os.environ.get(TRACE_ENV)
        if not directory or not config or int(os.environ.get("RANK", "0") or 0) != 0:
            return None
        from vizsla.profiler.collectors.torch_trace import TorchTraceCollector
        from vizsla.profiler.data import OPERATORS_FILE, TRACE_DIR
        from vizsla.profiler.spec import TorchTraceSpec

        spec = TorchTraceSpec.model_validate(json.loads(config))
        out = Path(directory)
        return cls(TorchTraceCollector(out / TRACE_DIR, out / OPERATORS_FILE, spec))

    def step_started(self, step: int) -> None:
        """A TRAIN step begins: the first one starts the profiler, each later one closes the previous step."""
        from types import SimpleNamespace

        import torch

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        state = SimpleNamespace(device=device, global_step=step)
        if not self.started:
            self.started = True
            self.collector.batch_start(state)
        else:
            self.collector.batch_end(state)

    def close(self) -> None:
        self.collector.fit_end(None)
