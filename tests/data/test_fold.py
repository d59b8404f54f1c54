"""BatchNorm folding: same features, no BatchNorm left where it can go, untraceable modules untouched."""

from __future__ import annotations

import logging

import pytest
import timm
import torch
from torch import nn

from vizsla.data.fold import fold_batchnorm


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=0)
    with torch.no_grad():  # non-trivial running stats, so folding has something to get wrong
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


def _batchnorms(module: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def _relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize(
    ("name", "folds"), [("test_efficientnet", True), ("test_resnet", True), ("test_convnext", False)]
)
def test_folded_module_computes_the_same_features(name, folds):
    model = _model(name)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    folded = fold_batchnorm(model)
    images = torch.randn(3, 3, 48, 40, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected, got = model(images), folded(images)
    assert got.shape == expected.shape
    assert _relative_error(got, expected) <= 1e-4
    if folds:
        assert folded is not model and _batchnorms(model) > 0 and _batchnorms(folded) == 0
    else:  # LayerNorm only: nothing to fold, the module comes back as is
        assert folded is model
    after = model.state_dict()  # the original is never modified
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())


def test_folding_keeps_channels_last_and_bf16_autocast_working():
    model = _model("test_efficientnet")
    folded = fold_batchnorm(model).to(memory_format=torch.channels_last)
    images = torch.randn(2, 3, 32, 32).to(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = folded(images).float()
    with torch.inference_mode():
        expected = model(images)
    assert _relative_error(got, expected) < 0.1


def test_training_mode_batchnorm_is_not_folded():
    model = _model("test_resnet").train()
    assert fold_batchnorm(model) is model


class _DataDependent(nn.Module):
    """Conv -> BN with a branch on the data: fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return x if x.sum() > 0 else -x


def test_untraceable_module_is_returned_unchanged(caplog):
    model = _DataDependent().eval()
    with caplog.at_level(logging.DEBUG, logger="vizsla.data"):
        assert fold_batchnorm(model) is model
    assert "tracing failed" in caplog.text


def test_folding_that_changes_the_output_is_rejected(caplog, monkeypatch):
    from vizsla.data import fold

    def broken(*args, **kwargs):
        weight, bias = torch.nn.utils.fusion.fuse_conv_bn_weights(*args, **kwargs)
        return nn.Parameter(weight * 2), bias

    monkeypatch.setattr(fold, "fuse_conv_bn_weights", broken)
    model = _model("test_resnet")
    with caplog.at_level(logging.DEBUG, logger="vizsla.data"):
        assert fold_batchnorm(model) is model
    assert "differs by" in caplog.text
