"""Vizsla: fine-tune, tune, debug, profile and serve image classifiers on your own machine."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["__version__", "load_model"]

if TYPE_CHECKING:
    from pathlib import Path

    from vizsla.models.classifier import Classifier


def load_model(path: str | Path, device: str = "cpu") -> Classifier:
    """Load a trained classifier (weights, label names, preprocessing) from a job or model directory."""
    from vizsla.models import load_model as _load_model

    return _load_model(path, device=device)
