"""BaseRule and Finding: a rule reads ProfileData and returns one verdict with its numbers and a fix.

Verdicts: Triggered (the problem is there), NoIssues (looked and found nothing), InsufficientData (too few
samples or not applicable, e.g. no GPU). Parameters carry SageMaker's names where a SageMaker rule has the
same knob; defaults are documented in each rule's docstring next to SageMaker's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from vizsla.profiler.data import ProfileData

TRIGGERED = "Triggered"
NO_ISSUES = "NoIssues"
INSUFFICIENT = "InsufficientData"


@dataclass(frozen=True)
class Finding:
    """One rule's verdict on one job."""

    rule: str
    verdict: str
    message: str
    description: str
    recommendation: str | None = None
    numbers: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    datapoints: int = 0
    details: list[dict[str, Any]] = field(default_factory=list)

    @property
    def triggered(self) -> bool:
        return self.verdict == TRIGGERED

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "verdict": self.verdict,
            "triggered": self.triggered,
            "message": self.message,
            "description": self.description,
            "recommendation": self.recommendation,
            "numbers": self.numbers,
            "parameters": self.parameters,
            "datapoints": self.datapoints,
            "details": self.details,
        }


class BaseRule:
    """A profiler rule: `defaults` are its parameters; `evaluate` returns a Finding."""

    name: ClassVar[str] = "Base"
    description: ClassVar[str] = ""
    defaults: ClassVar[dict[str, float]] = {}

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            known = ", ".join(self.defaults) or "none"
            raise ValueError(f"{self.name} has no parameter(s) {', '.join(unknown)}; it takes: {known}")
        for key, value in params.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{self.name}.{key} must be a number, got {value!r}")
        self.params: dict[str, float] = {**self.defaults, **params}

    def evaluate(self, data: ProfileData) -> Finding:
        raise NotImplementedError

    def finding(
        self,
        verdict: str,
        message: str,
        *,
        recommendation: str | None = None,
        numbers: dict[str, Any] | None = None,
        datapoints: int = 0,
        details: list[dict[str, Any]] | None = None,
    ) -> Finding:
        return Finding(
            rule=self.name,
            verdict=verdict,
            message=message,
            description=self.description,
            recommendation=recommendation if verdict == TRIGGERED else None,
            numbers={k: _round(v) for k, v in (numbers or {}).items()},
            parameters=dict(self.params),
            datapoints=datapoints,
            details=details or [],
        )

    def too_few(self, what: str, have: int, need: int) -> Finding:
        return self.finding(
            INSUFFICIENT,
            f"only {have} {what} (needs {need}); profile a longer job or lower min_samples",
            datapoints=have,
        )


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def suggested_workers(cores: int) -> int:
    """Loader workers to suggest: one per core, capped at 8 (more rarely helps one GPU or CPU job)."""
    return max(1, min(cores, 8))
