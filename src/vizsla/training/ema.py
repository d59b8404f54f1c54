"""An exponential moving average of the trained weights (timm's ModelEmaV3), validated and exported instead
of the raw weights.

The average is updated after every optimizer step. For validation the trainer swaps the averaged weights
into the model (`use_average`) and back after the best-model bookkeeping (`use_trained`): the epoch is
validated, ranked, exported to model/ and kept in best checkpoints with the same weights, and the final
evaluation of model/ evaluates them too. A head on cached features averages the head alone (the backbone
never changes). Checkpoints hold the average and its update count, so `--resume` continues it exactly.

The decay warms up (timm's `use_warmup`, power 3/4, the setting timm's docstring gives for short runs):
decay_t = min(ema_decay, 1 - (1 + t)^-3/4), so the average of a job of a few hundred steps is not stuck at
the initial weights (0.97 at step 100, 0.994 at step 1000, then ema_decay).

The copy is made before the callbacks start (`restore_state` runs before fit_start): a deepcopy of a
model that a debugger hooked would copy its hooks and, through them, the debugger itself.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

log = logging.getLogger("vizsla.train")

WARMUP_POWER = 3 / 4


class NoWeightAverage:
    """EMA off: the raw weights are validated and exported."""

    active = False

    def update(self) -> None:
        """Nothing to average."""

    def use_average(self) -> None:
        """The model keeps its trained weights."""

    def use_trained(self) -> None:
        """The model has its trained weights already."""

    def state_dict(self) -> dict[str, Any] | None:
        return None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Nothing to restore."""


class WeightAverage(NoWeightAverage):
    """timm's ModelEmaV3 of TARGET (the model, or the head on cached features) with warmup."""

    active = True

    def __init__(self, target: nn.Module, decay: float) -> None:
        from timm.utils import ModelEmaV3

        self.target = target
        self.average = ModelEmaV3(target, decay=decay, use_warmup=True, warmup_power=WARMUP_POWER)
        self.average.module.requires_grad_(False)
        self.updates = 0  # optimizer steps averaged so far
        self._trained: dict[str, torch.Tensor] | None = None  # the raw weights while the average is in

    def update(self) -> None:
        """Fold the weights after an optimizer step into the average (the first step copies them)."""
        self.updates += 1
        self.average.update(self.target, step=self.updates)

    def use_average(self) -> None:
        """Put the averaged weights into the model, keeping the trained ones aside (idempotent)."""
        if self._trained is not None:
            return
        with torch.no_grad():
            self._trained = {k: v.detach().clone() for k, v in self.target.state_dict().items()}
            self.target.load_state_dict(self.average.module.state_dict())

    def use_trained(self) -> None:
        """Put the trained weights back (idempotent): training and checkpoints continue from them."""
        if self._trained is None:
            return
        with torch.no_grad():
            self.target.load_state_dict(self._trained)
        self._trained = None

    def state_dict(self) -> dict[str, Any] | None:
        """The average's weights (on the CPU) and its update count, for the checkpoint."""
        weights = {k: v.detach().to("cpu", copy=True) for k, v in self.average.module.state_dict().items()}
        return {"weights": weights, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Continue the average of a checkpoint; without one it restarts from the next step's weights."""
        if not state:
            log.warning("the checkpoint holds no weight average: it restarts from the resumed weights")
            self.updates = 0
            return
        self.average.module.load_state_dict(state["weights"])
        self.updates = int(state["updates"])


def create_weight_average(target: nn.Module, decay: float | None) -> NoWeightAverage:
    """WeightAverage of TARGET with DECAY, or NoWeightAverage when DECAY is None."""
    if decay is None:
        return NoWeightAverage()
    log.info("weight average (EMA): decay %g with warmup, validated and exported instead of the raw weights",
             decay)
    return WeightAverage(target, decay)
