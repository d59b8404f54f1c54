"""Models: timm backbones with resolved pretrained weights, MLP heads, freezing, save and load.

Names are exported lazily so `import vizsla.models` stays fast; torch and timm load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vizsla.models.classifier import Classifier, create_classifier
    from vizsla.models.freezing import backbone_is_frozen, param_groups, set_backbone_trainable
    from vizsla.models.heads import MLPHead
    from vizsla.models.io import load_model, save_model
    from vizsla.models.registry import create_backbone, list_models
    from vizsla.models.weights import WeightsSource, register_weight_package, resolve_weights

_EXPORTS = {
    "Classifier": "classifier",
    "create_classifier": "classifier",
    "backbone_is_frozen": "freezing",
    "param_groups": "freezing",
    "set_backbone_trainable": "freezing",
    "MLPHead": "heads",
    "load_model": "io",
    "save_model": "io",
    "create_backbone": "registry",
    "list_models": "registry",
    "WeightsSource": "weights",
    "register_weight_package": "weights",
    "resolve_weights": "weights",
}

__all__ = [
    "Classifier",
    "MLPHead",
    "WeightsSource",
    "backbone_is_frozen",
    "create_backbone",
    "create_classifier",
    "list_models",
    "load_model",
    "param_groups",
    "register_weight_package",
    "resolve_weights",
    "save_model",
    "set_backbone_trainable",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vizsla.models' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"vizsla.models.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
