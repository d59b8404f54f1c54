"""MLP classification heads that sit on a backbone's pooled features."""

from __future__ import annotations

from typing import Any

from torch import nn

from vizsla.errors import ModelError

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class MLPHead(nn.Sequential):
    """Dropout -> Linear (-> act -> Dropout -> Linear)*; hidden [256, 128] is the '3 FC layers' head."""

    def __init__(self, in_features: int, num_classes: int, hidden: list[int] | tuple[int, ...] = (),
                 dropout: float = 0.0, activation: str = "relu") -> None:
        _check_head(in_features, num_classes, hidden, dropout, activation)
        layers: list[nn.Module] = []
        sizes = [in_features, *hidden]
        for index, (fan_in, fan_out) in enumerate(zip(sizes, [*hidden, num_classes], strict=True)):
            if index > 0:
                layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            layers.append(nn.Linear(fan_in, fan_out))
        super().__init__(*layers)
        self.in_features = in_features
        self.num_classes = num_classes
        self.hidden = [int(h) for h in hidden]
        self.dropout = float(dropout)
        self.activation = activation

    def config(self) -> dict[str, Any]:
        """The arguments that rebuild this head (minus in_features/num_classes, which the model records)."""
        return {"hidden": list(self.hidden), "dropout": self.dropout, "activation": self.activation}


def _check_head(in_features: int, num_classes: int, hidden: list[int] | tuple[int, ...], dropout: float,
                activation: str) -> None:
    """Reject head settings that would build a broken or surprising network, naming the value."""
    if in_features < 1 or num_classes < 1:
        raise ModelError(f"head needs in_features and num_classes >= 1 (got {in_features}, {num_classes})")
    if any(int(h) < 1 for h in hidden):
        raise ModelError(f"head hidden sizes must be >= 1 (got {list(hidden)})")
    if not 0.0 <= dropout < 1.0:
        raise ModelError(f"head dropout must be in [0, 1) (got {dropout})")
    if activation not in ACTIVATIONS:
        raise ModelError(f"unknown head activation '{activation}'; choose one of {', '.join(ACTIVATIONS)}")
