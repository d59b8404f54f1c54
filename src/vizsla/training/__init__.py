"""Training jobs: the loop, checkpoints, metrics and schedules."""

from __future__ import annotations

from typing import Any

__all__ = ["fit", "run_job"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from vizsla.training import trainer

        return getattr(trainer, name)
    raise AttributeError(name)
