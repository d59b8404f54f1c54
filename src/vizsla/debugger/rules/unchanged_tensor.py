"""UnchangedTensor: a tensor that stays the same over its last `num_steps` saved steps.

SageMaker (DG:debugger-built-in-rules.md @dcfe1c6): `numpy.allclose` over the last `num_steps` steps;
`collection_names`, `tensor_regex`, `num_steps=3`, `rtol=1e-05`, `atol=1e-08`, `equal_nan=False`.

Ours: the default (no collection_names / tensor_regex) is every weight or bias that receives a gradient,
compared only over steps where its gradient was recorded: "a parameter the optimizer should move but does
not" (frozen parameters, such as a backbone under `finetune: head`, have no gradient and are skipped). With
raw values the comparison is numpy.allclose; with reductions only (the default store) the six reductions
(mean, std, min, max, l1, l2) must be exactly equal: they average element changes away, so allclose on them
would call a slowly moving tensor (the end of a cosine schedule) unchanged, while a tensor the optimizer does
not touch reproduces them bit for bit. At our save interval (100) three saved steps span 200 TRAIN steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vizsla.debugger.rules.base import SHAPE_REDUCTIONS, BaseRule, Finding, more, select_tensors
from vizsla.debugger.rules.registry import register_rule


@register_rule
@dataclass
class UnchangedTensor(BaseRule):
    """Fires when a tensor is allclose across its last num_steps saved steps."""

    name = "UnchangedTensor"
    collections_needed = ("weights", "biases", "gradients")

    collection_names: tuple[str, ...] | None = None
    tensor_regex: str | None = None
    num_steps: int = 3
    rtol: float = 1e-05
    atol: float = 1e-08
    equal_nan: bool = False

    def __post_init__(self) -> None:
        if self.num_steps < 2:
            raise ValueError("num_steps must be >= 2")

    def _candidates(self, trial: Any, mode: str) -> dict[str, set[int] | None]:
        """name -> steps it may be compared at (None: all of its steps)."""
        if self.collection_names or self.tensor_regex:
            names = select_tensors(
                trial, mode, collection_names=self.collection_names, tensor_regex=self.tensor_regex
            )
            return dict.fromkeys(names)
        grads = set(trial.tensor_names(collection="gradients", mode=mode))
        params = select_tensors(trial, mode, collection_names=("weights", "biases"))
        return {p: set(trial.tensor(f"gradient/{p}").steps(mode)) for p in params if f"gradient/{p}" in grads}

    def _same(self, trial: Any, name: str, steps: list[int], mode: str) -> bool | None:
        tensor = trial.tensor(name)
        raws = [tensor.value(s, mode) for s in steps]
        if all(r is not None for r in raws):
            first = np.asarray(raws[0])
            return all(
                np.asarray(r).shape == first.shape
                and np.allclose(r, first, rtol=self.rtol, atol=self.atol, equal_nan=self.equal_nan)
                for r in raws[1:]
            )
        rows = [[tensor.reduction(s, r, mode) for r in SHAPE_REDUCTIONS] for s in steps]
        if any(v is None for row in rows for v in row):
            return None
        table = np.asarray(rows, dtype=np.float64)
        return bool(np.array_equal(table, np.broadcast_to(table[0], table.shape), equal_nan=self.equal_nan))

    def evaluate(self, trial: Any, step: int, mode: str) -> Finding | None:
        found = []
        for name, allowed in self._candidates(trial, mode).items():
            steps = [
                s for s in trial.tensor(name).steps(mode) if s <= step and (allowed is None or s in allowed)
            ]
            if step not in steps or len(steps) < self.num_steps:
                continue
            window = steps[-self.num_steps :]
            if self._same(trial, name, window, mode):
                found.append((name, window))
        if not found:
            return None
        tensor, window = found[0]
        return self.finding(
            step,
            mode,
            tensor,
            float(len(window)),
            float(self.num_steps),
            f"{tensor} did not change over {mode} steps {window} (allclose rtol={self.rtol}, "
            f"atol={self.atol}) although it gets gradients{more(len(found) - 1)}"
            if not (self.collection_names or self.tensor_regex)
            else f"{tensor} did not change over {mode} steps {window} (allclose rtol={self.rtol}, "
            f"atol={self.atol}){more(len(found) - 1)}",
        )
