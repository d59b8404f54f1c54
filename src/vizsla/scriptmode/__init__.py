"""Script mode: run users' own SageMaker training scripts unchanged, as Vizsla jobs.

The curated API is imported lazily (attribute access imports its module), so `import vizsla.scriptmode`
stays cheap and importing the smdebug shim's helpers never pulls in the runner.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MetricDefinition": "vizsla.scriptmode.spec",
    "ScriptJobSpec": "vizsla.scriptmode.spec",
    "build_script_spec": "vizsla.scriptmode.spec",
    "load_script_spec": "vizsla.scriptmode.spec",
    "parse_hyperparameters": "vizsla.scriptmode.spec",
    "parse_metric_definition": "vizsla.scriptmode.spec",
    "MetricMatcher": "vizsla.scriptmode.metrics",
    "check_requirements": "vizsla.scriptmode.requirements",
    "run_script_job": "vizsla.scriptmode.runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vizsla.scriptmode' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
