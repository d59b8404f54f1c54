"""Learning-rate schedules stepped per optimizer step: cosine or constant with linear warmup, one-cycle."""

from __future__ import annotations

import math

import torch

from vizsla.spec import TrainSpec


def create_scheduler(
    optimizer: torch.optim.Optimizer, spec: TrainSpec, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step scheduler for the whole run; its state is checkpointed, so resume continues the curve."""
    total = max(1, spec.epochs * steps_per_epoch)
    if spec.schedule == "onecycle":
        max_lrs = [group["lr"] for group in optimizer.param_groups]
        # warmup_epochs sets the rising phase when given; else the usual quarter of the run
        pct_start = min(0.9, spec.warmup_epochs / spec.epochs) if spec.warmup_epochs > 0 else 0.25
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=max_lrs, total_steps=total, pct_start=pct_start, anneal_strategy="cos"
        )
    warmup = min(total - 1, int(round(spec.warmup_epochs * steps_per_epoch)))

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / (warmup + 1)
        if spec.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
