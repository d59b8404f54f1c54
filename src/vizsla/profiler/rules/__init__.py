"""Profiler rules, one file each, registered by SageMaker's rule names."""

from __future__ import annotations

from typing import Any

from vizsla.profiler.rules.base import INSUFFICIENT, NO_ISSUES, TRIGGERED, BaseRule, Finding

_RULES: dict[str, type[BaseRule]] = {}
# Report order: the informational summaries first, then the checks (as SageMaker's report lists them).
ORDER = (
    "OverallSystemUsage",
    "OverallFrameworkMetrics",
    "MaxInitializationTime",
    "StepOutlier",
    "Dataloader",
    "CPUBottleneck",
    "IOBottleneck",
    "BatchSize",
    "LowGPUUtilization",
    "GPUMemoryIncrease",
    "LoadBalancing",
)


def register_rule(cls: type[BaseRule]) -> type[BaseRule]:
    """Class decorator: make a rule available by its `name`."""
    _RULES[cls.name] = cls
    return cls


def _load_builtins() -> None:
    from vizsla.profiler.rules import (  # noqa: F401 - importing registers them
        batch_size,
        cpu_bottleneck,
        dataloader,
        gpu_memory_increase,
        io_bottleneck,
        load_balancing,
        low_gpu_utilization,
        max_initialization_time,
        overall_framework_metrics,
        overall_system_usage,
        step_outlier,
    )


def list_rules() -> list[str]:
    """Names of all rules, in report order."""
    _load_builtins()
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(_RULES, key=lambda name: rank.get(name, len(ORDER)))


def create_rule(name: str, params: dict[str, Any] | None = None) -> BaseRule:
    _load_builtins()
    if name not in _RULES:
        raise ValueError(f"unknown profiler rule {name!r}; choose from {', '.join(_RULES)}")
    return _RULES[name](**(params or {}))


def check_rule_parameters(name: str, params: dict[str, Any]) -> None:
    """Raise ValueError naming the rule or parameter when `params` would not build the rule."""
    create_rule(name, params)


def create_rules(overrides: dict[str, dict[str, Any]] | None = None) -> list[BaseRule]:
    overrides = overrides or {}
    return [create_rule(name, overrides.get(name)) for name in list_rules()]


__all__ = [
    "INSUFFICIENT",
    "NO_ISSUES",
    "TRIGGERED",
    "BaseRule",
    "Finding",
    "check_rule_parameters",
    "create_rule",
    "create_rules",
    "list_rules",
    "register_rule",
]
