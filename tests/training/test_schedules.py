"""LR schedules: timm's curves per optimizer update, per-group peaks, fractional warmup, exact resume."""

import io
import math

import pytest
import torch

from vizsla.spec import TrainSpec
from vizsla.training.schedules import TimmSchedule, create_scheduler

TIMM_SCHEDULES = ["cosine", "constant", "step", "multistep", "poly", "tanh"]


def _optimizer(peaks: tuple[float, ...] = (1.0,)) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": peak} for peak in peaks]
    return torch.optim.AdamW(groups, weight_decay=0.0)


def _run(optimizer: torch.optim.Optimizer, scheduler, steps: int) -> list[list[float]]:
    """The lrs each of STEPS updates ran at, then the lrs left after the last one."""
    lrs = []
    for _ in range(steps):
        lrs.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    lrs.append([group["lr"] for group in optimizer.param_groups])
    return lrs


def _lrs(spec: TrainSpec, steps_per_epoch: int) -> list[float]:
    optimizer = _optimizer((spec.lr,))
    scheduler = create_scheduler(optimizer, spec, steps_per_epoch)
    return [lrs[0] for lrs in _run(optimizer, scheduler, spec.epochs * steps_per_epoch)]


def test_cosine_warms_up_linearly_starts_at_the_peak_and_ends_at_zero():
    lrs = _lrs(TrainSpec(lr=1.0, epochs=4, warmup_epochs=1, schedule="cosine"), steps_per_epoch=10)
    assert lrs[0] == pytest.approx(1e-3)
    assert lrs[5] == pytest.approx(1e-3 + 5 * (1 - 1e-3) / 10)
    assert lrs[10] == pytest.approx(1.0)  # the first update after warmup runs at the peak
    assert lrs[25] == pytest.approx(0.5)  # half-way through the 30 updates after warmup
    assert 0 < lrs[39] < 0.01 and lrs[40] == 0.0
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11], strict=False))


def test_constant_stays_at_the_peak_after_its_warmup():
    assert set(_lrs(TrainSpec(lr=0.5, epochs=2, schedule="constant"), 5)) == {0.5}
    lrs = _lrs(TrainSpec(lr=0.5, epochs=2, warmup_epochs=1, schedule="constant"), 5)
    assert lrs[0] == pytest.approx(5e-4) and lrs[4] < 0.5 and set(lrs[5:]) == {0.5}


def test_step_decays_tenfold_after_each_third_of_the_run():
    lrs = _lrs(TrainSpec(lr=1.0, epochs=3, schedule="step"), steps_per_epoch=10)
    assert lrs[:10] == [1.0] * 10
    assert lrs[10:20] == pytest.approx([0.1] * 10)
    assert lrs[20:30] == pytest.approx([0.01] * 10)
    ragged = _lrs(TrainSpec(lr=1.0, epochs=4, schedule="step"), steps_per_epoch=10)
    assert sorted(set(ragged[:40]), reverse=True) == pytest.approx([1.0, 0.1, 0.01])  # two decays, not three


def test_multistep_decays_at_half_and_three_quarters():
    lrs = _lrs(TrainSpec(lr=1.0, epochs=4, schedule="multistep"), steps_per_epoch=10)
    assert lrs[:20] == [1.0] * 20
    assert lrs[20:30] == pytest.approx([0.1] * 10)
    assert lrs[30:40] == pytest.approx([0.01] * 10)


def test_multistep_milestones_count_from_the_end_of_warmup():
    lrs = _lrs(TrainSpec(lr=1.0, epochs=5, warmup_epochs=1, schedule="multistep"), steps_per_epoch=8)
    assert lrs[8] == 1.0 and lrs[8 + 15] == 1.0 and lrs[8 + 16] == pytest.approx(0.1)  # 32 updates after


def test_poly_is_linear_to_zero():
    lrs = _lrs(TrainSpec(lr=2.0, epochs=2, schedule="poly"), steps_per_epoch=10)
    assert lrs[:20] == pytest.approx([2.0 * (1 - k / 20) for k in range(20)])
    assert lrs[20] == 0.0


def test_tanh_holds_near_the_peak_then_falls_to_zero():
    lrs = _lrs(TrainSpec(lr=1.0, epochs=4, schedule="tanh"), steps_per_epoch=10)
    assert lrs[0] == pytest.approx(1.0, abs=1e-5)  # 0.5 x (1 - tanh(-7))
    assert lrs[20] == pytest.approx(0.5 * (1 - math.tanh(-2.0)))  # timm's bounds -7 and 3
    assert lrs[39] < 0.01 and lrs[40] == 0.0
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_fractional_warmup_is_rounded_to_whole_updates_once():
    # 0.5 epoch of 7 updates: 4 warmup updates (timm alone would warm up over 3.5)
    lrs = _lrs(TrainSpec(lr=1.0, epochs=2, warmup_epochs=0.5, schedule="constant"), steps_per_epoch=7)
    assert lrs[3] == pytest.approx(1e-3 + 3 * (1 - 1e-3) / 4) and lrs[4:14] == [1.0] * 10
    # a warmup longer than the run still leaves the last update for the peak
    lrs = _lrs(TrainSpec(lr=1.0, epochs=1, warmup_epochs=5, schedule="cosine"), steps_per_epoch=4)
    assert lrs[2] < 1.0 and lrs[3] == pytest.approx(1.0) and lrs[4] == 0.0


@pytest.mark.parametrize("schedule", TIMM_SCHEDULES)
def test_each_group_follows_its_own_peak(schedule):
    optimizer = _optimizer((1e-2, 1e-3))  # e.g. head and a layer-decayed backbone block
    spec = TrainSpec(lr=1e-2, epochs=3, warmup_epochs=0.5, schedule=schedule)
    lrs = _run(optimizer, create_scheduler(optimizer, spec, steps_per_epoch=6), 18)
    assert lrs[3][0] == pytest.approx(1e-2) and lrs[3][1] == pytest.approx(1e-3)  # both at peak after warmup
    assert all(head == pytest.approx(10 * backbone, rel=1e-9) for head, backbone in lrs)
    assert not any({"lr_scale", "initial_lr"} & set(group) for group in optimizer.param_groups)


def _checkpoint(optimizer: torch.optim.Optimizer, scheduler) -> bytes:
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("schedule", [*TIMM_SCHEDULES, "onecycle"])
def test_resume_mid_run_continues_the_exact_curve(schedule):
    spec = TrainSpec(lr=1e-2, epochs=4, warmup_epochs=1.5, schedule=schedule)
    optimizer = _optimizer((1e-2, 2e-3))
    straight = _run(optimizer, create_scheduler(optimizer, spec, 5), 20)

    optimizer = _optimizer((1e-2, 2e-3))
    scheduler = create_scheduler(optimizer, spec, 5)
    first = _run(optimizer, scheduler, 9)
    saved = torch.load(io.BytesIO(_checkpoint(optimizer, scheduler)), weights_only=False)
    optimizer = _optimizer((1e-2, 2e-3))  # a new process rebuilds the job from the spec, then loads
    scheduler = create_scheduler(optimizer, spec, 5)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    assert scheduler.get_last_lr() == pytest.approx(straight[9])
    resumed = first[:-1] + _run(optimizer, scheduler, 11)
    assert [lr for lrs in resumed for lr in lrs] == pytest.approx([lr for lrs in straight for lr in lrs])


def test_a_lambdalr_state_from_an_older_checkpoint_resumes_at_its_step():
    spec = TrainSpec(lr=1.0, epochs=2, schedule="poly")
    optimizer = _optimizer()
    scheduler = create_scheduler(optimizer, spec, 10)
    assert isinstance(scheduler, TimmSchedule)
    scheduler.load_state_dict({"last_epoch": 5, "base_lrs": [1.0], "_step_count": 6, "lr_lambdas": [None]})
    assert scheduler.num_updates == 5 and scheduler.get_last_lr() == pytest.approx([0.75])


def test_onecycle_peaks_at_a_quarter_or_at_the_end_of_warmup():
    lrs = _lrs(TrainSpec(lr=1.0, epochs=4, schedule="onecycle"), 10)
    assert 5 <= lrs.index(max(lrs)) <= 15 and lrs[0] < 0.1 and lrs[39] < 0.01
    lrs = _lrs(TrainSpec(lr=1.0, epochs=4, schedule="onecycle", warmup_epochs=2), 10)
    assert 18 <= lrs.index(max(lrs)) <= 21
