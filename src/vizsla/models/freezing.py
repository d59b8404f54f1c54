"""Freezing policies and optimizer parameter groups for head-only, full and staged fine-tuning."""

from __future__ import annotations

from typing import Any

from torch import nn

from vizsla.models.classifier import Classifier


def set_backbone_trainable(model: Classifier, trainable: bool) -> None:
    """Freeze or unfreeze the backbone; the head always trains. A frozen backbone runs in eval mode."""
    for param in model.backbone.parameters():
        param.requires_grad_(trainable)
    for param in model.head.parameters():
        param.requires_grad_(True)
    model.train(model.training)


def backbone_is_frozen(model: Classifier) -> bool:
    """True when no backbone parameter takes gradients."""
    return not any(p.requires_grad for p in model.backbone.parameters())


def param_groups(model: Classifier, *, lr: float, backbone_lr_scale: float,
                 weight_decay: float) -> list[dict[str, Any]]:
    """Up to four named groups: backbone (lr*scale) and head (lr), each split into decay / no-decay.

    Biases, norm weights (1-D) and the backbone's own no-weight-decay set (ViT position embeddings) get no
    decay. Frozen parameters are included so a staged run can unfreeze without rebuilding the optimizer;
    optimizers skip parameters whose grad is None.
    """
    groups = []
    for part, module, part_lr in (("backbone", model.backbone, lr * backbone_lr_scale),
                                  ("head", model.head, lr)):
        decay, no_decay = _split_decay(module)
        for suffix, params, wd in (("", decay, weight_decay), ("_no_decay", no_decay, 0.0)):
            if params:
                groups.append({"name": part + suffix, "params": params, "lr": part_lr, "weight_decay": wd})
    return groups


def _split_decay(module: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    skip_fn = getattr(module, "no_weight_decay", None)
    skip = set(skip_fn()) if callable(skip_fn) else set()
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if param.ndim <= 1 or name in skip or name.split(".", 1)[0] in skip:
            no_decay.append(param)
        else:
            decay.append(param)
    return decay, no_decay
