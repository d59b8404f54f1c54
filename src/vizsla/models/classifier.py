"""Classifier: a timm backbone plus an MLP head that carries its label names and preprocessing record."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from vizsla.errors import ModelError
from vizsla.models.heads import MLPHead

if TYPE_CHECKING:
    from vizsla.spec import ModelSpec


class Classifier(nn.Module):
    """Backbone -> pooled features -> head -> logits; `config` rebuilds it without any download."""

    def __init__(self, arch: str, backbone: nn.Module, head: MLPHead, labels: list[str],
                 preprocessing: dict[str, Any], weights: dict[str, Any] | None = None) -> None:
        super().__init__()
        _check_labels(labels, head.num_classes)
        self.arch = arch
        self.backbone = backbone
        self.head = head
        self.labels = list(labels)
        self.preprocessing = copy.deepcopy(preprocessing)
        self.weights = dict(weights or {"source": "none"})

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def config(self) -> dict[str, Any]:
        """Architecture, head, labels, preprocessing and weight provenance, as JSON-ready values."""
        return {
            "arch": self.arch,
            "num_features": self.head.in_features,
            "num_classes": self.num_classes,
            "head": self.head.config(),
            "labels": list(self.labels),
            "preprocessing": copy.deepcopy(self.preprocessing),
            "weights": dict(self.weights),
        }

    def features(self, x: Tensor) -> Tensor:
        """Pooled backbone features (batch, num_features): what the head and the feature cache consume."""
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

    def train(self, mode: bool = True) -> Classifier:
        """Train mode, but a frozen backbone stays in eval mode so its BatchNorm statistics stay fixed."""
        super().train(mode)
        if mode and not any(p.requires_grad for p in self.backbone.parameters()):
            self.backbone.eval()
        return self


def _check_labels(labels: list[str], num_classes: int) -> None:
    if len(labels) != num_classes:
        raise ModelError(f"{len(labels)} label names for a head with {num_classes} classes")
    if len(set(labels)) != len(labels):
        dupes = sorted({label for label in labels if labels.count(label) > 1})
        raise ModelError(f"label names must be unique; repeated: {', '.join(dupes)}")


def create_classifier(spec: ModelSpec, labels: list[str]) -> Classifier:
    """Backbone with resolved pretrained weights + a fresh head for `labels` (seed torch first to repeat)."""
    from vizsla.models.registry import create_backbone
    from vizsla.models.weights import resolve_weights

    if not labels:
        raise ModelError("a classifier needs at least one label")
    source = resolve_weights(spec.name, spec.weights)
    backbone, preprocessing = create_backbone(spec.name, source, image_size=spec.image_size)
    head = MLPHead(_num_features(backbone), len(labels), spec.head, spec.head_dropout, spec.head_activation)
    return Classifier(spec.name, backbone, head, labels, preprocessing, source.provenance())


def _num_features(backbone: nn.Module) -> int:
    num = getattr(backbone, "num_features", None)
    if not isinstance(num, int) or num < 1:
        raise ModelError(f"backbone {type(backbone).__name__} does not report num_features")
    return num
