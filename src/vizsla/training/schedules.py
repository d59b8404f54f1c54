"""Learning-rate schedules stepped once per optimizer step: timm's schedulers, and torch's one-cycle.

cosine, constant, step, multistep, poly and tanh come from timm's `create_scheduler_v2`, laid over the run's
optimizer updates:

- Units. timm counts "epochs" and multiplies them by `updates_per_epoch`, so a fractional warmup (0.5 epoch
  of 7 steps) would become a warmup of 3.5 updates. Every length is passed already in updates
  (`updates_per_epoch=1`), the warmup rounded once to whole updates (at most all updates but one).
- Warmup: linear from 1e-3 x the peak up to the peak over the warmup updates (timm's `warmup_lr`), then
  the schedule's shape over the remaining updates (`warmup_prefix=True`): the first update after warmup
  runs at the peak, and every shape ends with the run whatever the warmup.
- Shapes (after warmup, n updates): cosine from the peak to 0 (min_lr 0: the last update runs at
  peak x (1 - cos(pi/n)) / 2, the value after it is 0); constant stays at the peak; step multiplies by 0.1
  after each third of the n updates (decay every ceil(n/3) updates: two decays, ending at 1 % of the
  peak); multistep multiplies by 0.1 after 50 % and again after 75 % of them; poly is power 1 (linear to
  0); tanh is timm's (bounds -7 and 3) down to 0.
- Param groups: each group's lr when the schedule is created is its peak (layer-wise LR decay is already
  in it; timm's 'lr_scale' key is not read). timm computes the curve for a unit lr on a one-parameter
  optimizer of its own and `TimmSchedule` multiplies every group's peak by it, so the groups keep their
  ratios along the whole run; timm on the real optimizer would write 'initial_lr' into the groups and
  start every group's warmup at one shared lr.
- Resume: the state holds the update count, the peaks and timm's state; loading it sets the groups' lrs to
  those of the next update, so a resumed job continues the exact curve.

onecycle stays torch's OneCycleLR (each group's lr its max_lr; warmup_epochs the rising phase, else a
quarter of the run).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch

from vizsla.spec import TrainSpec

WARMUP_START = 1e-3  # the first warmup update's lr, as a fraction of each group's peak
DECAY_RATE = 0.1  # step and multistep: the factor of each decay
POLY_POWER = 1.0
MULTISTEP_AT = (0.5, 0.75)  # fractions of the updates after warmup


class LRSchedule(Protocol):
    """What the trainer and its checkpoints use of a schedule (torch's LRScheduler methods)."""

    def step(self) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...

    def get_last_lr(self) -> list[float]: ...


class TimmSchedule:
    """A timm scheduler's curve applied per optimizer update to every group's own peak lr."""

    def __init__(self, optimizer: torch.optim.Optimizer, curve: Any) -> None:
        self.optimizer = optimizer
        self.curve = curve  # a timm Scheduler over a unit-lr optimizer of its own
        self.peaks = [float(group["lr"]) for group in optimizer.param_groups]
        self.num_updates = 0
        self._apply()

    def step(self) -> None:
        """After an optimizer update: set the lrs of the next one."""
        self.num_updates += 1
        self.curve.step_update(self.num_updates)
        self._apply()

    @property
    def base_lrs(self) -> list[float]:
        """Each group's peak lr, under torch LRScheduler's name (callbacks written for torch's schedulers
        read and set it); the same list as `peaks`."""
        return self.peaks

    def get_last_lr(self) -> list[float]:
        """The lrs the next optimizer update uses, one per param group."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Update count, peaks and timm's state: all a resumed job needs to continue the curve."""
        return {"num_updates": self.num_updates, "peaks": list(self.peaks), "timm": self.curve.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from a checkpoint's state; the groups get the lrs of the next update."""
        if "num_updates" not in state_dict:  # a LambdaLR's state, checkpointed before timm's schedules
            state_dict = {"num_updates": int(state_dict.get("last_epoch", 0))}
        self.num_updates = int(state_dict["num_updates"])
        self.peaks = [float(peak) for peak in state_dict.get("peaks", self.peaks)]
        if "timm" in state_dict:
            self.curve.load_state_dict(state_dict["timm"])
        self.curve.step_update(self.num_updates)
        self._apply()

    def _apply(self) -> None:
        factor = self.curve.optimizer.param_groups[0]["lr"]
        for group, peak in zip(self.optimizer.param_groups, self.peaks, strict=True):
            group["lr"] = peak * factor


def create_scheduler(optimizer: torch.optim.Optimizer, spec: TrainSpec, steps_per_epoch: int) -> LRSchedule:
    """A per-step schedule for the whole run; its state is checkpointed, so resume continues the curve."""
    total = max(1, spec.epochs * steps_per_epoch)
    if spec.schedule == "onecycle":
        return _one_cycle(optimizer, spec, total)
    warmup = min(total - 1, round((spec.warmup_epochs or 0.0) * steps_per_epoch))  # None: not resolved, none
    return TimmSchedule(optimizer, _timm_curve(spec.schedule, updates=total - warmup, warmup=warmup))


def _timm_curve(name: str, *, updates: int, warmup: int) -> Any:
    """timm's scheduler NAME for a unit lr: WARMUP updates, then its shape over UPDATES updates."""
    from timm.scheduler import create_scheduler_v2

    unit = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    # timm's multistep decays from index m - 1 for a milestone m; +1 decays after m updates
    milestones = [max(1, round(updates * at)) + 1 for at in MULTISTEP_AT]
    curve, _ = create_scheduler_v2(
        unit,
        sched=name,
        num_epochs=updates,
        warmup_epochs=warmup,
        warmup_lr=WARMUP_START,
        warmup_prefix=True,
        min_lr=0.0,
        decay_rate=POLY_POWER if name == "poly" else DECAY_RATE,  # timm's poly takes its power here
        decay_epochs=math.ceil(updates / 3),
        decay_milestones=milestones,
        step_on_epochs=False,
        updates_per_epoch=1,  # lengths are in updates already
    )
    return curve


def _one_cycle(optimizer: torch.optim.Optimizer, spec: TrainSpec, total: int) -> LRSchedule:
    """torch's OneCycleLR up to each group's lr; warmup_epochs sets the rising phase when given."""
    max_lrs = [group["lr"] for group in optimizer.param_groups]
    warmup_epochs = spec.warmup_epochs or 0.0
    pct_start = min(0.9, warmup_epochs / spec.epochs) if warmup_epochs > 0 else 0.25
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lrs, total_steps=total, pct_start=pct_start, anneal_strategy="cos"
    )
