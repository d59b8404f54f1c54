"""A kept backbone is taken only where a build would give the same model and generator states."""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from vizsla.models import create_classifier, registry, templates
from vizsla.spec import ModelSpec

TINY = "test_resnet"  # as in conftest: timm's tiny test model

LABELS = ["ant", "bee", "wasp"]


@pytest.fixture(autouse=True)
def _no_templates() -> Iterator[None]:
    templates.forget_backbones()
    yield
    templates.forget_backbones()


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _build(seed: int, **spec: object) -> tuple[torch.nn.Module, tuple[float, float, float]]:
    """A classifier built after seeding, and a draw of each generator right after (their states)."""
    _seed(seed)
    options = {"image_size": 32, **spec}
    model = create_classifier(ModelSpec(name=TINY, weights="none", head=[8], **options), LABELS)
    return model, (random.random(), float(np.random.random()), float(torch.rand(1)))


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_the_template_is_the_model_and_states_a_build_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh, fresh_draws = _build(3)
    _seed(3)
    templates.keep_backbone(TINY, "none", image_size=32)
    builds = []
    real = registry.build_backbone
    monkeypatch.setattr(registry, "build_backbone", lambda *a: builds.append(a) or real(*a))
    taken, taken_draws = _build(3)
    assert not builds and _same(taken, fresh) and taken_draws == fresh_draws
    assert taken.preprocessing == fresh.preprocessing and taken.weights == fresh.weights
    next(taken.backbone.parameters()).data.zero_()  # it is this process's model now: the next one is built
    again, again_draws = _build(3)
    assert len(builds) == 1 and _same(again, fresh) and again_draws == fresh_draws


def test_other_seeds_and_settings_build(monkeypatch: pytest.MonkeyPatch) -> None:
    _seed(3)
    templates.keep_backbone(TINY, "none", image_size=32)
    builds = []
    real = registry.build_backbone
    monkeypatch.setattr(registry, "build_backbone", lambda *a: builds.append(a) or real(*a))
    other, _ = _build(4)
    assert len(builds) == 1
    _build(3, image_size=48)
    assert len(builds) == 2
    monkeypatch.setattr(registry, "build_backbone", real)
    templates.forget_backbones()
    assert _same(other, _build(4)[0])
