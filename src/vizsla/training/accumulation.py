"""Gradient accumulation: one optimizer step every `accumulate_steps` train batches (effective batch x N).

Batches are grouped from the start of each epoch: batches 0..N-1 make the first step, N..2N-1 the next,
and the last group of an epoch steps too, however short. Each batch's loss is divided by the size of its
group, so a step follows the mean loss of its batches: with equal batches, accumulating N batches of B
images steps exactly as one batch of N x B would (BatchNorm aside, which sees B images at a time).

The scheduler, the gradient scaler, clipping and the weight average act at the optimizer step; the
scheduler's length is counted in optimizer steps (`optimizer_steps_per_epoch`). `state.global_step` keeps
counting batches, as the debugger and profiler number their steps by it.

A stop asked for inside a group waits for the group's end: the checkpoint of a stopped job then never
holds half-accumulated gradients, and `--resume` starts with a whole group. In a distributed job the
batches that do not step run under DDP's `no_sync()`: gradients are all-reduced once per step.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any


def optimizer_steps_per_epoch(batches: int, accumulate_steps: int) -> int:
    """Optimizer steps of an epoch of BATCHES train batches (the last, partial group steps too)."""
    return max(1, math.ceil(batches / max(1, accumulate_steps)))


class GradientAccumulation:
    """Which batches of an epoch end an optimizer step, and the loss scale of each batch."""

    def __init__(self, steps: int, first: int, batches: int) -> None:
        """STEPS batches a step; the epoch's batches run from index FIRST (a resumed epoch skips those
        done, always whole groups) to FIRST + BATCHES - 1."""
        self.steps = max(1, steps)
        self.end = first + batches  # one past the index of the epoch's last batch

    def steps_after(self, batch_index: int) -> bool:
        """Whether the optimizer steps after the batch BATCH_INDEX (the last of its group)."""
        return (batch_index + 1) % self.steps == 0 or batch_index + 1 >= self.end

    def loss_scale(self, batch_index: int) -> float:
        """1 / the size of BATCH_INDEX's group: the step follows the mean loss of the group's batches."""
        start = batch_index - batch_index % self.steps
        return 1.0 / max(1, min(self.steps, self.end - start))

    def sync(self, trained: Any, stepping: bool) -> contextlib.AbstractContextManager[Any]:
        """DDP's no_sync() around the forward pass of a batch that does not step (gradients stay local
        until the group's last batch); nothing for one process or a stepping batch."""
        if stepping or not hasattr(trained, "no_sync"):
            return contextlib.nullcontext()
        return trained.no_sync()
