"""Classifier assembly, its config record, freezing and optimizer parameter groups."""

from __future__ import annotations

import pytest
import torch

from vizsla.errors import ModelError
from vizsla.models import (
    Classifier,
    backbone_is_frozen,
    create_classifier,
    param_groups,
    set_backbone_trainable,
)
from vizsla.spec import ModelSpec


def test_forward_features_and_config(tiny_classifier: Classifier) -> None:
    model = tiny_classifier.eval()
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 3)
    assert model.features(x).shape == (2, model.backbone.num_features)
    assert torch.equal(model.head(model.features(x)), model(x))
    config = model.config
    assert config["arch"] == "test_resnet" and config["num_classes"] == 3
    assert config["labels"] == ["ant", "bee", "wasp"] == model.labels
    assert config["head"] == {"hidden": [16], "dropout": 0.1, "activation": "relu"}
    assert config["preprocessing"]["input_size"] == [3, 32, 32]
    assert config["weights"]["source"] == "none" and config["weights"]["requested"] == "none"


def test_same_seed_gives_same_head() -> None:
    spec = ModelSpec(name="test_resnet", weights="none", head=[8])
    torch.manual_seed(3)
    first = create_classifier(spec, ["a", "b"])
    torch.manual_seed(3)
    second = create_classifier(spec, ["a", "b"])
    assert all(torch.equal(p, q) for p, q in zip(first.parameters(), second.parameters(), strict=True))


@pytest.mark.parametrize(("labels", "needle"), [([], "at least one label"), (["a", "b", "a"], "repeated: a")])
def test_bad_labels_are_model_errors(labels: list[str], needle: str) -> None:
    with pytest.raises(ModelError, match=needle):
        create_classifier(ModelSpec(name="test_resnet", weights="none"), labels)


def test_unknown_model_is_reported_before_any_weight_lookup() -> None:
    with pytest.raises(ModelError, match="unknown model 'resnet343'; did you mean: resnet34"):
        create_classifier(ModelSpec(name="resnet343"), ["a", "b"])


def test_freezing_keeps_head_trainable_and_backbone_in_eval(tiny_classifier: Classifier) -> None:
    model = tiny_classifier
    set_backbone_trainable(model, False)
    assert backbone_is_frozen(model)
    assert all(p.requires_grad for p in model.head.parameters())
    model.train()
    assert model.training and model.head.training and not model.backbone.training
    stats_before = [b.clone() for b in model.backbone.buffers()]
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    assert all(torch.equal(a, b) for a, b in zip(stats_before, model.backbone.buffers(), strict=True))
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.head.parameters())

    set_backbone_trainable(model, True)
    assert not backbone_is_frozen(model) and model.backbone.training
    model(torch.randn(4, 3, 32, 32))
    assert any(not torch.equal(a, b) for a, b in zip(stats_before, model.backbone.buffers(), strict=True))


def test_param_groups_lrs_and_no_decay_split(tiny_classifier: Classifier) -> None:
    model = tiny_classifier
    groups = param_groups(model, lr=1e-3, backbone_lr_scale=0.1, weight_decay=0.05)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
    assert by_name["backbone"]["lr"] == pytest.approx(1e-4) == by_name["backbone_no_decay"]["lr"]
    assert by_name["head"]["lr"] == 1e-3 == by_name["head_no_decay"]["lr"]
    assert by_name["backbone"]["weight_decay"] == 0.05 == by_name["head"]["weight_decay"]
    assert by_name["backbone_no_decay"]["weight_decay"] == 0.0 == by_name["head_no_decay"]["weight_decay"]
    assert all(p.ndim > 1 for name in ("backbone", "head") for p in by_name[name]["params"])
    no_decay = by_name["backbone_no_decay"]["params"] + by_name["head_no_decay"]["params"]
    assert all(p.ndim <= 1 for p in no_decay)
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())
    head_ids = {id(p) for p in model.head.parameters()}
    assert {id(p) for p in by_name["head"]["params"] + by_name["head_no_decay"]["params"]} == head_ids
    torch.optim.AdamW(groups)  # the groups are valid optimizer input as they are


def test_vit_position_embeddings_get_no_decay() -> None:
    model = create_classifier(ModelSpec(name="test_vit", weights="none", image_size=32), ["a", "b"])
    groups = {g["name"]: g for g in param_groups(model, lr=1.0, backbone_lr_scale=1.0, weight_decay=0.1)}
    no_decay = {id(p) for p in groups["backbone_no_decay"]["params"]}
    assert id(model.backbone.pos_embed) in no_decay and model.backbone.pos_embed.ndim == 3


def test_frozen_params_stay_put_in_the_optimizer(tiny_classifier: Classifier) -> None:
    model = tiny_classifier
    set_backbone_trainable(model, False)
    opt = torch.optim.AdamW(param_groups(model, lr=0.1, backbone_lr_scale=0.1, weight_decay=0.1))
    backbone_before = [p.detach().clone() for p in model.backbone.parameters()]
    model.train()
    model(torch.randn(4, 3, 32, 32)).logsumexp(1).sum().backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(backbone_before, model.backbone.parameters(), strict=True))
