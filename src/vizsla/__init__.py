"""Vizsla: fine-tune, tune, debug, profile and serve image classifiers on your own machine."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Predictor", "__version__", "load_model"]

if TYPE_CHECKING:
    from pathlib import Path

    from vizsla.models.classifier import Classifier
    from vizsla.serving.client import Predictor


def load_model(path: str | Path, device: str = "cpu") -> Classifier:
    """Load a trained classifier (weights, label names, preprocessing) from a job or model directory."""
    from vizsla.models import load_model as _load_model

    return _load_model(path, device=device)


def __getattr__(name: str) -> object:
    """`vizsla.Predictor` without importing the serving stack at `import vizsla`."""
    if name == "Predictor":
        from vizsla.serving.client import Predictor

        return Predictor
    raise AttributeError(f"module 'vizsla' has no attribute {name!r}")
