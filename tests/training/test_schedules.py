import pytest
import torch

from vizsla.spec import TrainSpec
from vizsla.training.schedules import create_scheduler


def _lrs(spec: TrainSpec, steps_per_epoch: int) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=spec.lr)
    scheduler = create_scheduler(optimizer, spec, steps_per_epoch)
    lrs = []
    for _ in range(spec.epochs * steps_per_epoch):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_cosine_with_warmup_rises_then_decays_to_near_zero():
    lrs = _lrs(TrainSpec(lr=1.0, epochs=4, warmup_epochs=1, schedule="cosine"), steps_per_epoch=10)
    assert lrs[0] < lrs[9] <= 1.0
    assert max(lrs) == pytest.approx(1.0, rel=0.05)
    assert lrs[-1] < 0.05
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))


def test_constant_and_onecycle():
    assert set(_lrs(TrainSpec(lr=0.5, epochs=2, schedule="constant"), 5)) == {0.5}
    lrs = _lrs(TrainSpec(lr=1.0, epochs=4, schedule="onecycle"), 10)
    peak = lrs.index(max(lrs))
    assert 5 <= peak <= 15 and lrs[0] < 0.1 and lrs[-1] < 0.01


def test_onecycle_warmup_epochs_sets_the_rising_phase():
    lrs = _lrs(TrainSpec(lr=1.0, epochs=4, schedule="onecycle", warmup_epochs=2), 10)
    assert 18 <= lrs.index(max(lrs)) <= 21
