"""Model names: list timm architectures and create a pooled-feature backbone with its preprocessing record."""

from __future__ import annotations

import copy
import difflib
from typing import TYPE_CHECKING, Any

from vizsla.errors import ModelError
from vizsla.models.weights import WeightsSource, resolve_weights

if TYPE_CHECKING:
    from torch import nn

_DEFAULT_CROP_PCT = 0.875


def list_models(pattern: str | None = None, pretrained_only: bool = False) -> list[str]:
    """timm architecture names; a pattern without wildcards matches as a substring ('resnet' ~ '*resnet*')."""
    import timm

    if pattern and not any(ch in pattern for ch in "*?["):
        pattern = f"*{pattern}*"
    return list(timm.list_models(pattern or "", pretrained=pretrained_only, include_tags=False))


def check_model_name(name: str) -> None:
    """Raise ModelError with close matches when timm does not know `name` (an optional .tag is allowed)."""
    import timm

    arch, _, tag = name.partition(".")
    if not timm.is_model(arch):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        suggestion = f"; did you mean: {', '.join(close)}?" if close else ";"
        raise ModelError(f"unknown model '{name}'{suggestion} `vizsla models list` shows all")
    if tag:
        try:
            timm.models.get_pretrained_cfg(name, allow_unregistered=False)
        except RuntimeError:
            known = timm.list_pretrained(f"{arch}.*")
            tags = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "") or "none"
            raise ModelError(f"unknown pretrained tag '{tag}' for model '{arch}'; known: {tags}") from None


def preprocessing_from_cfg(cfg: dict[str, Any]) -> dict[str, Any]:
    """The preprocessing record (input size, mean/std, interpolation, crop) of a timm pretrained cfg."""
    return {
        "input_size": [int(v) for v in cfg.get("input_size") or (3, 224, 224)],
        "mean": [float(v) for v in cfg.get("mean") or (0.485, 0.456, 0.406)],
        "std": [float(v) for v in cfg.get("std") or (0.229, 0.224, 0.225)],
        "interpolation": str(cfg.get("interpolation") or "bilinear"),
        "crop_pct": float(cfg.get("crop_pct") or _DEFAULT_CROP_PCT),
    }


def create_backbone(
    name: str, weights: str | WeightsSource = "none", *, image_size: int | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """A timm model with num_classes=0 (returns pooled features) and its preprocessing record.

    The record comes from timm's pretrained cfg, overridden where the weight source knows better (the lite0
    package) and by `image_size`. Fixed-input models (ViT) are built for `image_size`.
    """
    from vizsla.models import templates

    source, kwargs = resolve_build(name, weights, image_size)
    built = templates.take(templates.template_key(name, source, image_size, kwargs))
    if built is not None:  # the process this one was forked from built it (see models/templates.py)
        return built
    return build_backbone(name, source, image_size, kwargs)


def resolve_build(
    name: str, weights: str | WeightsSource, image_size: int | None
) -> tuple[WeightsSource, dict[str, Any]]:
    """The weight source and timm's extra arguments of a backbone (checks the name)."""
    check_model_name(name)
    source = weights if isinstance(weights, WeightsSource) else resolve_weights(name, weights)
    kwargs = {"img_size": image_size} if image_size and _fixed_input_size(name) else {}
    return source, kwargs


def build_backbone(
    name: str, source: WeightsSource, image_size: int | None, kwargs: dict[str, Any]
) -> tuple[nn.Module, dict[str, Any]]:
    model = source.build(name, num_classes=0, **kwargs)
    preprocessing = preprocessing_from_cfg(dict(getattr(model, "pretrained_cfg", None) or {}))
    preprocessing.update(copy.deepcopy(source.preprocessing or {}))
    if image_size:
        preprocessing["input_size"] = [3, int(image_size), int(image_size)]
    return model, preprocessing


def _fixed_input_size(name: str) -> bool:
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    return bool(cfg is not None and cfg.fixed_input_size)
