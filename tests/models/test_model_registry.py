"""Model names, backbone creation and the preprocessing record."""

from __future__ import annotations

import pytest
import torch

from vizsla.errors import ModelError
from vizsla.models import create_backbone, list_models

TINY = "test_resnet"


def test_list_models_substring_and_wildcards() -> None:
    names = list_models("resnet1")
    assert "resnet18" in names and "resnet10t" in names
    assert all("resnet1" in n for n in names)
    assert set(list_models("resnet1*")) == {n for n in names if n.startswith("resnet1")}
    assert "efficientnet_lite0" in list_models(pretrained_only=True)
    assert len(list_models()) > 1000


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(ModelError) as info:
        create_backbone("resnet343", "none")
    message = str(info.value)
    assert message.startswith("unknown model 'resnet343'; did you mean: resnet34")
    assert "`vizsla models list` shows all" in message


def test_unknown_pretrained_tag_lists_known_tags() -> None:
    with pytest.raises(ModelError, match=r"unknown pretrained tag 'bogus' for model 'resnet18'.*resnet18\.a"):
        create_backbone("resnet18.bogus", "none")


def test_backbone_returns_pooled_features_and_preprocessing() -> None:
    backbone, prep = create_backbone(TINY, "none")
    assert backbone(torch.randn(2, 3, 32, 32)).shape == (2, backbone.num_features)
    assert prep == {"input_size": [3, 160, 160], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                    "interpolation": "bilinear", "crop_pct": 0.95}


def test_image_size_sets_input_size_and_builds_fixed_size_models() -> None:
    _, prep = create_backbone(TINY, "none", image_size=48)
    assert prep["input_size"] == [3, 48, 48]
    vit, vit_prep = create_backbone("test_vit", "none", image_size=64)
    assert vit_prep["input_size"] == [3, 64, 64]
    assert vit(torch.randn(1, 3, 64, 64)).shape == (1, vit.num_features)
