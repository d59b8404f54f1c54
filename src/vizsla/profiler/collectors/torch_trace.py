"""A torch.profiler window over a few train steps: Chrome/Perfetto trace JSON plus top operators by self time.

Off by default (ProfileSpec.torch_trace). The schedule is torch's: skip `wait` steps, run `warmup` steps
profiled-but-discarded, record `active` steps, once. The profiler starts at the first train batch_start (so
evaluation and setup are not in the trace) and stops when its window is done or at fit_end.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vizsla.callbacks import TrainState
from vizsla.infra.io import atomic_write_json
from vizsla.profiler.collectors.base import BaseCollector
from vizsla.profiler.spec import TorchTraceSpec

log = logging.getLogger("vizsla.profiler")


class TorchTraceCollector(BaseCollector):
    """Runs torch.profiler for one scheduled window and saves trace + operator table."""

    name = "torch_trace"

    def __init__(self, trace_dir: Path, operators_path: Path, spec: TorchTraceSpec) -> None:
        self.trace_dir = Path(trace_dir)
        self.operators_path = Path(operators_path)
        self.spec = spec
        self._profiler: Any = None
        self._steps = 0
        self._done = False
        self._operators: list[dict[str, Any]] = []

    @property
    def window(self) -> int:
        return self.spec.wait + self.spec.warmup + self.spec.active

    def sample(self) -> dict[str, Any] | None:
        return {"operators": self._operators, "steps_seen": self._steps} if self._operators else None

    def batch_start(self, state: TrainState) -> None:
        if self._profiler is None and not self._done:
            self._start(state)

    def batch_end(self, state: TrainState) -> None:
        if self._profiler is None:
            return
        self._steps += 1
        self._profiler.step()
        if self._steps >= self.window:
            self._stop()

    def fit_end(self, state: TrainState) -> None:
        self._stop()

    def _start(self, state: TrainState) -> None:
        import torch
        from torch.profiler import ProfilerActivity, profile, schedule

        activities = [ProfilerActivity.CPU]
        if getattr(state.device, "type", None) == "cuda" and torch.cuda.is_available():
            activities.append(ProfilerActivity.CUDA)
        self._profiler = profile(
            activities=activities,
            schedule=schedule(
                wait=self.spec.wait, warmup=self.spec.warmup, active=self.spec.active, repeat=1
            ),
            on_trace_ready=self._save,
            record_shapes=self.spec.record_shapes,
            profile_memory=self.spec.profile_memory,
            with_stack=self.spec.with_stack,
        )
        self._profiler.start()
        self._first_step = state.global_step

    def _stop(self) -> None:
        if self._profiler is None:
            return
        profiler, self._profiler = self._profiler, None
        self._done = True
        profiler.stop()

    def _save(self, profiler: Any) -> None:
        """on_trace_ready: write the Chrome trace and the operator table of the recorded window."""
        self.trace_dir.mkdir(parents=True, exist_ok=True)
        first = self._first_step + self.spec.wait + self.spec.warmup
        trace = self.trace_dir / f"trace_steps_{first}-{first + self.spec.active - 1}.json"
        profiler.export_chrome_trace(str(trace))
        self._operators = top_operators(profiler.key_averages(), self.spec.top_operators)
        atomic_write_json(
            self.operators_path,
            {
                "trace": trace.name,
                "steps": [first, first + self.spec.active - 1],
                "active_steps": self.spec.active,
                # steps the profiler slows down: from its start to the step after the window (trace export)
                "affected_steps": [self._first_step, first + self.spec.active],
                "operators": self._operators,
            },
        )
        log.info(
            "torch.profiler trace of steps %d-%d written to %s", first, first + self.spec.active - 1, trace
        )


def top_operators(averages: Any, limit: int) -> list[dict[str, Any]]:
    """The `limit` operators with the most self CPU time (and their self device time), in microseconds."""
    rows = []
    for event in averages:
        self_device = getattr(event, "self_device_time_total", None)
        if self_device is None:
            self_device = getattr(event, "self_cuda_time_total", 0.0)
        rows.append(
            {
                "name": event.key,
                "calls": int(event.count),
                "self_cpu_us": float(event.self_cpu_time_total),
                "cpu_total_us": float(event.cpu_time_total),
                "self_device_us": float(self_device or 0.0),
            }
        )
    total_cpu = sum(r["self_cpu_us"] for r in rows) or 1.0
    total_device = sum(r["self_device_us"] for r in rows) or 1.0
    for row in rows:
        row["self_cpu_percent"] = 100.0 * row["self_cpu_us"] / total_cpu
        row["self_device_percent"] = 100.0 * row["self_device_us"] / total_device
    by_cpu = sorted(rows, key=lambda r: r["self_cpu_us"], reverse=True)[:limit]
    by_device = sorted((r for r in rows if r["self_device_us"] > 0), key=lambda r: -r["self_device_us"])
    chosen = {r["name"]: r for r in [*by_cpu, *by_device[:limit]]}
    return sorted(chosen.values(), key=lambda r: (r["self_device_us"], r["self_cpu_us"]), reverse=True)
