"""DebugHook on real tiny trainings: what it saves, when, and that it leaves the model as it found it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import _get_current_function_mode

from vizsla.callbacks import Callback, TrainState
from vizsla.debugger import DebugHook, open_trial
from vizsla.debugger.collections import REDUCTIONS, reduce_array
from vizsla.jobs import run_job
from vizsla.spec import DebugSpec, build_spec
from vizsla.testing.jobs import tiny_spec_dict

WATCHED = "head.1.weight"  # Dropout, Linear(...), ReLU, Dropout, Linear: the first Linear of an MLP head


class Spy(Callback):
    """Copies what the hook should have recorded at one step, and checks the store while it is written."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.weight = self.grad = self.targets = None
        self.model = None
        self.live_steps: list[int] | None = None
        self.live_complete: bool | None = None

    def after_backward(self, state: TrainState) -> None:
        if state.global_step == self.step:
            param = dict(state.model.named_parameters())[WATCHED]
            self.weight = param.detach().clone().numpy()
            self.grad = param.grad.detach().clone().numpy()
            self.targets = state.targets.clone().numpy()

    def epoch_end(self, state: TrainState) -> None:
        if state.epoch == 0:  # the hook has flushed epoch 0 (it fires before us)
            trial = open_trial(state.job_dir.root)
            self.live_steps = trial.steps("TRAIN")
            self.live_complete = trial.is_complete()

    def fit_end(self, state: TrainState) -> None:
        self.model = state.model


def _job(tiny_folder, tmp_path, debug: dict, **train):
    spec = tiny_spec_dict(tiny_folder, tmp_path / "job", **train)
    spec["model"]["head"] = [16]
    spec["debug"] = {"enabled": True, **debug}
    return build_spec(spec)


def test_store_matches_the_training_state(tiny_folder, tmp_path):
    debug = {
        "save_interval": 3,
        "collections": {"gradients": {"save_steps": [1]}, "biases": {"save_interval": 2}},
    }
    spy = Spy(step=3)
    result = run_job(_job(tiny_folder, tmp_path, debug), callbacks=[spy], progress=False)
    assert result["status"] == "Completed"
    trial = open_trial(tmp_path / "job")
    assert trial.is_complete()
    steps = trial.steps("TRAIN")
    assert steps == list(range(len(steps))) and len(steps) == 8  # 30 images / batch 8 = 4 steps x 2 epochs
    # save_interval, save_steps and a per-collection override
    assert trial.tensor(WATCHED).steps() == [0, 3, 6]
    assert trial.tensor(f"gradient/{WATCHED}").steps() == [0, 1, 3, 6]
    assert trial.tensor("head.1.bias").steps() == [0, 2, 4, 6]
    assert trial.tensor("loss").steps() == steps
    assert trial.tensor("head.2_relu_output_0").steps() == [0, 3, 6]  # nn.ReLU in the head
    # the reductions of the stored step equal those of the parameter the optimizer saw at that step
    for name, array in ((WATCHED, spy.weight), (f"gradient/{WATCHED}", spy.grad)):
        expected = reduce_array(array)
        for reduction in REDUCTIONS:
            got = trial.tensor(name).reduction(3, reduction)
            assert got == pytest.approx(expected[reduction], rel=1e-5, abs=1e-7), (name, reduction)
        assert trial.tensor(name).histogram(3)[1].sum() == array.size
    np.testing.assert_array_equal(trial.tensor("labels").value(3), spy.targets)
    assert trial.tensor("predictions").value(3).shape == spy.targets.shape
    # EVAL: one step per eval batch, with loss, labels and predictions
    assert trial.steps("EVAL") and trial.tensor("loss").steps("EVAL") == trial.steps("EVAL")
    assert {trial.step_info(s, "EVAL")["split"] for s in trial.steps("EVAL")} >= {"valid", "test"}
    # readable while the job ran
    assert spy.live_steps == [0, 1, 2, 3] and spy.live_complete is False
    # nothing left behind on the model
    for module in spy.model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert _get_current_function_mode() is None


def test_head_on_cached_features_records_what_runs(tiny_folder, tmp_path):
    spec = _job(tiny_folder, tmp_path, {"save_interval": 2}, finetune="head")
    assert run_job(spec, progress=False)["status"] == "Completed"
    trial = open_trial(tmp_path / "job")
    gradients = trial.tensor_names(collection="gradients")
    assert gradients and all(name.startswith("gradient/head.") for name in gradients)
    assert trial.tensor_names(collection="relu_output") == ["head.2_relu_output_0"]
    assert trial.tensor("loss").steps("EVAL") == trial.steps("EVAL") != []
    assert trial.tensor("inputs").reduction(0, "mean") is not None  # the cached feature vectors


class Functional(nn.Module):
    """ReLUs every way a model may call them."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.act = nn.ReLU(inplace=True)
        self.out = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc(x))  # functional
        h = self.act(h - 0.1)  # module, in place
        h = torch.relu(h - 0.2)
        return self.out((h - 0.3).relu_())  # in-place tensor method


def test_functional_and_inplace_relu_and_eval_steps(tmp_path):
    torch.manual_seed(0)
    model = Functional()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    hook = DebugHook(DebugSpec(enabled=True, save_interval=2), tmp_path)
    state = TrainState(spec=None, job_dir=tmp_path, model=model, optimizer=optimizer)
    hook.fit_start(state)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    for step in range(3):
        state.global_step, state.inputs, state.targets = step, x, y
        if step == 0:
            with torch.no_grad():
                first_relu = F.relu(model.fc(x))  # what the model's first ReLU will produce
        hook.batch_start(state)
        logits = model(x)
        state.outputs, state.loss = logits, F.cross_entropy(logits, y)
        hook.after_forward(state)
        optimizer.zero_grad()
        state.loss.backward()
        hook.after_backward(state)
        optimizer.step()
        hook.batch_end(state)
    state.mode, state.split = "eval", "valid"
    with torch.inference_mode():
        for _ in range(2):
            F.cross_entropy(model(x), y, reduction="sum")
    hook.eval_end(state)
    hook.fit_end(state)

    trial = open_trial(tmp_path / "debug")
    relus = trial.tensor_names(collection="relu_output")
    names = ["Functional_relu_output_0", "Functional_relu_output_1", "Functional_relu_output_2"]
    assert relus == [*names, "act_relu_output_0"]
    assert trial.tensor("Functional_relu_output_0").steps() == [0, 2]
    expected = reduce_array(first_relu.numpy())
    assert trial.tensor("Functional_relu_output_0").reduction(0, "mean") == pytest.approx(expected["mean"])
    assert trial.tensor("Functional_relu_output_0").reduction(0, "zero_fraction") == pytest.approx(
        expected["zero_fraction"]
    )
    assert trial.steps("EVAL") == [0, 1]
    with torch.no_grad():
        eval_loss = F.cross_entropy(model(x), y).item()
    assert float(trial.tensor("loss").value(1, "EVAL")) == pytest.approx(eval_loss, rel=1e-6)
    np.testing.assert_array_equal(trial.tensor("labels").value(0, "EVAL"), y.numpy())
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert _get_current_function_mode() is None


def test_a_failing_hook_removes_itself(tmp_path, monkeypatch):
    model = Functional()
    hook = DebugHook(DebugSpec(enabled=True, save_interval=1), tmp_path)
    state = TrainState(spec=None, job_dir=tmp_path, model=model, inputs=torch.randn(2, 4))
    hook.fit_start(state)
    monkeypatch.setattr("vizsla.debugger.hook.stats_row", lambda tensor: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        hook.batch_start(state)  # the callback runner would now disable the hook
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert _get_current_function_mode() is None
    assert (tmp_path / "debug" / "END").exists()
