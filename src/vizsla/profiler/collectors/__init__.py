"""Profiler collectors: each is a trainer callback whose `sample()` returns its latest measurement."""

from __future__ import annotations

from vizsla.profiler.collectors.base import BaseCollector, JsonlWriter
from vizsla.profiler.collectors.job_phases import JobPhaseCollector
from vizsla.profiler.collectors.step_phases import StepPhaseCollector
from vizsla.profiler.collectors.system import SystemCollector

__all__ = [
    "BaseCollector",
    "JobPhaseCollector",
    "JsonlWriter",
    "StepPhaseCollector",
    "SystemCollector",
    "list_collectors",
]


def list_collectors() -> list[str]:
    """Names of the built-in collectors (torch_trace is imported only when a window is configured)."""
    return ["system", "step_phases", "job_phases", "torch_trace"]
