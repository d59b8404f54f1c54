"""ProfileData: what the profiler recorded for one job, read back from profile/, plus small statistics."""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vizsla.infra.io import read_jsonl

SYSTEM_FILE = "system.jsonl"
STEPS_FILE = "steps.jsonl"
JOB_FILE = "job.json"
OPERATORS_FILE = "operators.json"
SUMMARY_FILE = "summary.json"
RULES_DIR = "rules"
TRACE_DIR = "trace"
RANK_STEPS_GLOB = "steps-rank*.jsonl"  # rank r > 0 of a distributed job; rank 0 writes STEPS_FILE
_RANK_STEPS = re.compile(r"steps-rank(\d+)\.jsonl")


def rank_steps_file(rank: int) -> str:
    """The step file of one process: steps.jsonl for rank 0 (what every rule reads), else by rank."""
    return STEPS_FILE if rank == 0 else f"steps-rank{rank}.jsonl"


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation, as numpy's default; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def describe(values: Sequence[float]) -> dict[str, float | None]:
    """min / p50 / p95 / p99 / max / mean of a series (the system usage table's columns)."""
    return {
        "min": min(values) if values else None,
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
        "mean": statistics.fmean(values) if values else None,
        "n": len(values),
    }


@dataclass
class ProfileData:
    """The raw records of one profiled job and the series the rules look at."""

    system: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    job: dict[str, Any] = field(default_factory=dict)
    operators: dict[str, Any] | None = None
    # Step records per process of a distributed job, rank 0's being `steps` (added when not given).
    rank_steps: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.steps and 0 not in self.rank_steps:
            self.rank_steps = {0: self.steps, **self.rank_steps}
        self.rank_steps = dict(sorted(self.rank_steps.items()))

    @classmethod
    def load(cls, profile_dir: Path) -> ProfileData:
        profile_dir = Path(profile_dir)
        job_file, ops_file = profile_dir / JOB_FILE, profile_dir / OPERATORS_FILE
        others: dict[int, list[dict[str, Any]]] = {}
        for path in profile_dir.glob(RANK_STEPS_GLOB) if profile_dir.is_dir() else ():
            match = _RANK_STEPS.fullmatch(path.name)
            if match and int(match.group(1)) > 0:
                others[int(match.group(1))] = _by_step(read_jsonl(path))
        return cls(
            system=read_jsonl(profile_dir / SYSTEM_FILE),
            steps=_by_step(read_jsonl(profile_dir / STEPS_FILE)),
            job=json.loads(job_file.read_text()) if job_file.is_file() else {},
            operators=json.loads(ops_file.read_text()) if ops_file.is_file() else None,
            rank_steps={r: records for r, records in others.items() if records},
        )

    # job context
    @property
    def context(self) -> dict[str, Any]:
        return self.job.get("context", {})

    @property
    def timeline(self) -> list[dict[str, Any]]:
        return self.job.get("timeline", [])

    @property
    def cores(self) -> int:
        return int(self.context.get("cores") or (len(self.system[0]["cpu"]) if self.system else 1))

    @property
    def num_workers(self) -> int | None:
        return self.context.get("num_workers")

    @property
    def world_size(self) -> int:
        """Processes of the job: as rank 0 recorded it, else as many as the step files say (1 when none)."""
        recorded = self.context.get("world_size")
        return int(recorded) if recorded else max(self.rank_steps, default=0) + 1

    @property
    def ranks(self) -> list[int]:
        """The ranks whose steps were recorded."""
        return [r for r, records in self.rank_steps.items() if records]

    def comparable_steps(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A process's steps without its first one (warm-up, lazy initialisation) and without the
        torch.profiler window (slowed by the profiler, on rank 0 and, waiting for it, on every rank)."""
        if not records:
            return []
        first = min(r.get("step", 0) for r in records)
        skip = range(0)
        if self.operators and self.operators.get("affected_steps"):
            low, high = self.operators["affected_steps"]
            skip = range(low, high + 1)
        return [r for r in records if r.get("step", 0) != first and r.get("step") not in skip]

    @property
    def cached_features(self) -> bool:
        """The head trained on cached backbone features: no image decoding in the loop."""
        return self.context.get("finetune") == "head" and self.context.get("feature_cache") == "auto"

    def train_windows(self) -> list[tuple[float, float]]:
        """Wall-clock spans of the train loops (epoch_start -> last train step of that epoch)."""
        windows, start = [], None
        for mark in self.timeline:
            if mark["event"] == "epoch_start":
                start = mark["time"]
            elif mark["event"] == "train_end" and start is not None:
                windows.append((start, mark["time"]))
                start = None
        if start is not None and self.steps:  # a job that ended inside an epoch
            windows.append((start, max(r["time"] + r["total_s"] for r in self.steps)))
        return windows

    def train_system(self) -> list[dict[str, Any]]:
        """System samples taken while training steps ran (setup, evaluation and reports left out)."""
        windows = self.train_windows()
        if not windows:
            return self.system
        return [s for s in self.system if any(a <= s["time"] <= b for a, b in windows)]

    # system series
    @property
    def gpu_count(self) -> int:
        return max((len(s.get("gpus") or ()) for s in self.system), default=0)

    @property
    def has_gpu(self) -> bool:
        return self.gpu_count > 0

    def cpu_total(self, samples: list[dict[str, Any]] | None = None) -> list[float]:
        """Mean CPU utilisation over cores per sample, in %."""
        return [statistics.fmean(s["cpu"]) for s in _or(samples, self.system) if s.get("cpu")]

    def cpu_max_core(self, samples: list[dict[str, Any]] | None = None) -> list[float]:
        return [max(s["cpu"]) for s in _or(samples, self.system) if s.get("cpu")]

    def iowait_max_core(self, samples: list[dict[str, Any]] | None = None) -> list[float]:
        return [max(s["iowait"]) for s in _or(samples, self.system) if s.get("iowait")]

    def series(self, key: str, samples: list[dict[str, Any]] | None = None) -> list[float]:
        return [float(s[key]) for s in _or(samples, self.system) if s.get(key) is not None]

    def gpu_series(self, index: int, key: str, samples: list[dict[str, Any]] | None = None) -> list[float]:
        out = []
        for sample in _or(samples, self.system):
            gpus = sample.get("gpus") or ()
            if index < len(gpus) and gpus[index].get(key) is not None:
                out.append(float(gpus[index][key]))
        return out

    # step series
    def step_totals(self) -> list[float]:
        return [r["total_s"] for r in self.steps]

    def phase_seconds(self) -> dict[str, float]:
        """Total host seconds per step phase over all recorded steps."""
        from vizsla.profiler.collectors.step_phases import PHASES

        return {phase: sum(r.get(phase, 0.0) for r in self.steps) for phase in PHASES}

    def data_wait_fractions(self) -> list[float]:
        """Per step: data wait / step time."""
        return [r["data_s"] / r["total_s"] for r in self.steps if r.get("total_s")]


def _by_step(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: r.get("step", 0))


def _or(samples: list[dict[str, Any]] | None, default: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return default if samples is None else samples
