"""MLPHead layer structure and argument checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vizsla.errors import ModelError
from vizsla.models.heads import FeatureDropout, MLPHead


def _layout(head: nn.Module) -> list[tuple[str, int | None, int | None]]:
    return [("Dropout" if isinstance(m, nn.Dropout) else type(m).__name__, getattr(m, "in_features", None),
             getattr(m, "out_features", None)) for m in head]


def test_three_fc_layers_head_structure() -> None:
    head = MLPHead(512, 120, [256, 128], dropout=0.3, activation="relu")
    assert _layout(head) == [
        ("Dropout", None, None), ("Linear", 512, 256), ("ReLU", None, None),
        ("Dropout", None, None), ("Linear", 256, 128), ("ReLU", None, None),
        ("Dropout", None, None), ("Linear", 128, 120),
    ]
    assert all(m.p == 0.3 for m in head if isinstance(m, nn.Dropout))
    assert head(torch.randn(4, 512)).shape == (4, 120)


def test_linear_head_and_no_dropout() -> None:
    assert _layout(MLPHead(64, 5, [], dropout=0.2)) == [("Dropout", None, None), ("Linear", 64, 5)]
    assert _layout(MLPHead(64, 5, [], dropout=0.0)) == [("Linear", 64, 5)]
    no_dropout = MLPHead(64, 5, [32], dropout=0.0, activation="gelu")
    assert _layout(no_dropout) == [("Linear", 64, 32), ("GELU", None, None), ("Linear", 32, 5)]


def test_head_config_round_trips() -> None:
    head = MLPHead(64, 5, [32, 16], dropout=0.1, activation="silu")
    rebuilt = MLPHead(64, 5, **head.config())
    assert _layout(rebuilt) == _layout(head)
    assert head.config() == {"hidden": [32, 16], "dropout": 0.1, "activation": "silu"}


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"activation": "swish"}, "unknown head activation 'swish'"),
    ({"hidden": [0]}, "hidden sizes"),
    ({"dropout": 1.0}, "dropout"),
    ({"num_classes": 0}, "num_classes"),
])
def test_bad_head_settings_are_model_errors(kwargs: dict, needle: str) -> None:
    args = {"in_features": 8, "num_classes": 2, "hidden": [4], "dropout": 0.0, "activation": "relu"} | kwargs
    with pytest.raises(ModelError, match=needle):
        MLPHead(**args)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_feature_dropout_keeps_one_minus_p_and_rescales(p: float) -> None:
    torch.manual_seed(0)
    dropout = FeatureDropout(p)
    out = dropout(torch.ones(512, 1280))
    kept = out != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.005  # 655,360 draws: sd ~0.0006
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / (1 - p)))
    assert abs(kept.float().mean(dim=0).std().item() - (p * (1 - p) / 512) ** 0.5) < 0.01  # lanes independent


def test_feature_dropout_is_identity_in_eval_and_passes_gradients() -> None:
    dropout = FeatureDropout(0.2)
    x = torch.randn(8, 16, requires_grad=True)
    dropout(x).sum().backward()
    assert ((x.grad == 0) | (x.grad == 1.25)).all()
    dropout.eval()
    assert torch.equal(dropout(x), x)
