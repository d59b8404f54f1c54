"""ProfileSpec: what the profiler samples, how often, and the rule thresholds a user overrides."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from vizsla.base_spec import BaseSpec as _Spec


class TorchTraceSpec(_Spec):
    """A torch.profiler window over train steps: skip `wait`, warm up `warmup`, record `active` steps."""

    wait: int = Field(1, ge=0, description="Train steps to skip before the window (warm-up of the loop).")
    warmup: int = Field(1, ge=0, description="Profiled-but-discarded steps (the profiler's own warm-up).")
    active: int = Field(3, ge=1, description="Steps recorded into the Chrome trace.")
    record_shapes: bool = Field(False, description="Record operator input shapes (slower, larger trace).")
    profile_memory: bool = Field(False, description="Record tensor allocations.")
    with_stack: bool = Field(False, description="Record Python stacks of operators (much slower).")
    top_operators: int = Field(20, ge=1, description="Operators kept in the summary, by self time.")


class ProfileSpec(_Spec):
    """The profiler: system metrics, step and job phases, optional torch.profiler window, rules."""

    enabled: bool = Field(False, description="Profile the job (vizsla train --profile).")
    interval_ms: int = Field(500, ge=50, le=60_000, description="System metrics sampling interval.")
    torch_trace: TorchTraceSpec | None = Field(
        None, description="torch.profiler window {wait, warmup, active}; off when not given."
    )
    rules: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-rule parameter overrides, e.g. {StepOutlier: {stddev: 5}}; see `vizsla profile`.",
    )
    report: bool = Field(True, description="Write reports/profiler-report.html at the end of the job.")

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from vizsla.profiler.rules import check_rule_parameters

        for name, params in value.items():
            check_rule_parameters(name, params)  # raises ValueError naming the rule or parameter
        return value
