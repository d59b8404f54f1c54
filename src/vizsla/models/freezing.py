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


def batchnorm_to_eval(module: nn.Module) -> None:
    """Put every BatchNorm layer of MODULE in eval mode (timm's BatchNormAct2d included)."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()


def backbone_is_frozen(model: Classifier) -> bool:
    """True when no backbone parameter takes gradients."""
    return not any(p.requires_grad for p in model.backbone.parameters())


def param_groups(model: Classifier, *, lr: float, backbone_lr_scale: float, weight_decay: float,
                 layer_decay: float | None = None, head_lr: float | None = None,
                 freeze_below: float | None = None) -> list[dict[str, Any]]:
    """Named parameter groups, each with its own peak 'lr': the backbone's at lr*scale, the head's at HEAD_LR
    (default lr); each split into decay / no-decay (biases, norm weights and the backbone's own
    no-weight-decay set such as ViT position embeddings get no decay).

    LAYER_DECAY (timm's layer-wise LR decay, from BEiT): the backbone's layers, as its `group_matcher`
    orders them, get lr*scale x decay^(depth from the top), so the stem moves least: the pretrained features
    a small set cannot re-learn are the early ones. FREEZE_BELOW (timm's layer_decay_no_opt_scale): the
    layers whose scale falls below it are left out of the optimizer, and `freeze_unoptimized` freezes
    them, so the backward pass stops above them. Frozen parameters are otherwise included, so a job can
    unfreeze without rebuilding the optimizer; optimizers skip parameters whose grad is None.
    """
    backbone_lr = lr * backbone_lr_scale
    if layer_decay is not None and layer_decay < 1.0:
        groups = _layer_decay_groups(model.backbone, backbone_lr, weight_decay, layer_decay, freeze_below)
    else:
        groups = _part_groups("backbone", model.backbone, backbone_lr, weight_decay)
    return groups + _part_groups("head", model.head, lr if head_lr is None else head_lr, weight_decay)


def _part_groups(part: str, module: nn.Module, part_lr: float, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = _split_decay(module)
    return [
        {"name": part + suffix, "params": params, "lr": part_lr, "weight_decay": wd}
        for suffix, params, wd in (("", decay, weight_decay), ("_no_decay", no_decay, 0.0))
        if params
    ]


def _layer_decay_groups(backbone: nn.Module, backbone_lr: float, weight_decay: float,
                        layer_decay: float, freeze_below: float | None) -> list[dict[str, Any]]:
    """timm's layer-decay groups of the backbone, their 'lr_scale' turned into each group's own 'lr' (the
    schedules scale each group's initial lr; timm's would apply an 'lr_scale' key a second time)."""
    from timm.optim import param_groups_layer_decay

    skip_fn = getattr(backbone, "no_weight_decay", None)
    with _all_trainable(backbone):  # timm leaves out frozen parameters; a staged job unfreezes them later
        groups = param_groups_layer_decay(
            backbone, weight_decay=weight_decay, layer_decay=layer_decay, no_opt_scale=freeze_below,
            no_weight_decay_list=tuple(skip_fn()) if callable(skip_fn) else (),
        )
    named = []
    for index, group in enumerate(groups):
        scale = float(group.pop("lr_scale", 1.0))
        named.append({**group, "name": f"backbone_{index}", "lr": backbone_lr * scale, "layer_scale": scale})
    return named


def freeze_unoptimized(model: Classifier, optimizer: Any) -> int:
    """Freeze the backbone parameters no optimizer group holds (see FREEZE_BELOW); returns how many."""
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    frozen = 0
    for param in model.backbone.parameters():
        if id(param) not in optimized:
            param.requires_grad_(False)
            frozen += 1
    return frozen


class _all_trainable:
    """Every parameter of MODULE takes gradients inside the block; their flags are restored after."""

    def __init__(self, module: nn.Module) -> None:
        self.params = list(module.parameters())
        self.flags = [p.requires_grad for p in self.params]

    def __enter__(self) -> None:
        for param in self.params:
            param.requires_grad_(True)

    def __exit__(self, *exc: object) -> None:
        for param, flag in zip(self.params, self.flags, strict=True):
            param.requires_grad_(flag)


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
