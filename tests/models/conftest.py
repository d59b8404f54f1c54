"""Tiny timm models with random weights: every model test runs offline in well under a second."""

from __future__ import annotations

import pytest

TINY = "test_resnet"  # timm's 0.37M-parameter test model; BatchNorm in the backbone, fc classifier


@pytest.fixture(autouse=True)
def _hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Model tests never reach for the hub: a hub lookup must hit the local cache or fail fast."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def tiny_classifier():
    """A seeded test_resnet classifier with a [16] head for three labels, no pretrained weights."""
    import torch

    from vizsla.models import create_classifier
    from vizsla.spec import ModelSpec

    torch.manual_seed(0)
    spec = ModelSpec(name=TINY, weights="none", head=[16], head_dropout=0.1, image_size=32)
    return create_classifier(spec, ["ant", "bee", "wasp"])
