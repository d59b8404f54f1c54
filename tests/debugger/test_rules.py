"""Every built-in rule on in-memory trials: a synthetic trial that should trip it and a healthy one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vizsla.debugger.rules import create_rule, list_rules
from vizsla.debugger.rules.base import Finding, percentile_from_histogram
from vizsla.debugger.rules.memory import MemoryTrial
from vizsla.errors import SpecError

RNG = np.random.default_rng(0)


def run(rule, trial: MemoryTrial) -> list[Finding]:
    """Feed every step of the rule's modes in order, then finish, like the runner does."""
    findings = []
    for mode in rule.modes:
        for step in trial.steps(mode):
            finding = rule.evaluate(trial, step, mode)
            if finding is not None:
                findings.append(finding)
    finding = rule.finish(trial)
    return findings + ([finding] if finding is not None else [])


def healthy_trial(steps: int = 60, interval: int = 10, raw: bool = False) -> MemoryTrial:
    """A training that goes well: falling loss, moving weights, lively gradients, normalised input."""
    trial = MemoryTrial()
    rng = np.random.default_rng(1)
    weights = {
        "backbone.conv.weight": rng.normal(0, 0.1, (8, 3, 3, 3)),
        "head.1.weight": rng.normal(0, 0.1, (3, 8)),
    }
    for step in range(steps):
        trial.add("loss", step, np.float32(1.1 * np.exp(-step / 30) + rng.normal(0, 0.02)))
        labels = rng.integers(0, 3, 8)
        predictions = np.where(rng.random(8) < 0.8, labels, rng.integers(0, 3, 8))
        trial.add("labels", step, labels).add("predictions", step, predictions)
        for name in weights:
            weights[name] = weights[name] - 0.01 * rng.normal(0, 0.1, weights[name].shape)
        if step % interval:
            continue
        add = trial.add if raw else trial.add_reduced
        for name, value in weights.items():
            add(name, step, value.copy())
            add(f"gradient/{name}", step, rng.normal(0, 1e-2, value.shape))
        add("head.0_relu_output_0", step, np.maximum(rng.normal(0, 1, (8, 16)), 0))
        add("backbone.act_relu_output_0", step, np.maximum(rng.normal(0, 1, (8, 8, 4, 4)), 0))
        add("backbone.se.gate_sigmoid_output_0", step, 1 / (1 + np.exp(-rng.normal(0, 2, (8, 8)))))
        add("inputs", step, rng.normal(0, 1, (8, 3, 8, 8)))
    for step in range(6):  # two evaluation passes of 3 batches, loss close to the train loss
        position = 20 if step < 3 else 40
        trial.add("loss", step, np.float32(1.1 * np.exp(-position / 30) * 1.05), mode="EVAL")
        trial.set_step_info(step, "EVAL", global_step=position, split="valid")
    trial.mark_complete()
    return trial


def names(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings}


# --- the healthy trial trips nothing -------------------------------------------------------------------
HEALTHY_PARAMS = {"TensorVariance": {"min_threshold": 1e-12, "max_threshold": 100.0}}


@pytest.mark.parametrize("name", [n for n in list_rules() if n != "StalledTraining"])
@pytest.mark.parametrize("raw", [False, True], ids=["reductions", "raw"])
def test_healthy_trial_trips_no_rule(name: str, raw: bool) -> None:
    params = dict(HEALTHY_PARAMS.get(name, {}))
    if name in ("ClassImbalance", "CheckInputImages"):
        params["samples" if name == "ClassImbalance" else "threshold_samples"] = 200
    rule = create_rule(name, **params)
    trial = healthy_trial(raw=raw)
    assert run(rule, trial) == []


# --- each rule trips on its own broken trial -----------------------------------------------------------
def test_vanishing_gradient_reports_the_smallest_gradient() -> None:
    trial = healthy_trial()
    trial.add_reduced("gradient/head.1.weight", 40, np.full((3, 8), 3e-9))
    findings = run(create_rule("VanishingGradient"), trial)
    assert [(f.step, f.tensor) for f in findings] == [(40, "gradient/head.1.weight")]
    assert "gradient/head.1.weight mean abs 3e-09 < threshold 1e-07 at TRAIN step 40" in findings[0].message
    assert findings[0].value == pytest.approx(3e-9)


def test_vanishing_gradient_without_histogram_uses_a_bound() -> None:
    trial = MemoryTrial().add("gradient/w.weight", 0, reductions={"l1": 1e-6, "min": -1e-9, "max": 2e-9})
    assert run(create_rule("VanishingGradient"), trial)[0].value == pytest.approx(2e-9)


def test_exploding_tensor_finds_nan_and_inf() -> None:
    trial = healthy_trial()
    grad = RNG.normal(size=(3, 8))
    grad[0, 0] = np.inf
    trial.add_reduced("gradient/head.1.weight", 20, grad)
    trial.add("loss", 3, np.float32(np.nan), mode="EVAL")
    findings = run(create_rule("ExplodingTensor"), trial)
    assert {(f.mode, f.step, f.tensor) for f in findings} == {
        ("TRAIN", 20, "gradient/head.1.weight"),
        ("EVAL", 3, "loss"),
    }
    assert run(create_rule("ExplodingTensor", only_nan=True), trial)[0].mode == "EVAL"


def test_loss_not_decreasing_on_a_flat_loss_and_not_on_a_plateau() -> None:
    flat = MemoryTrial()
    for step in range(40):
        flat.add("loss", step, 1.1 + RNG.normal(0, 0.05))
    findings = run(create_rule("LossNotDecreasing"), flat)
    assert findings and findings[0].step == 19 and findings[0].tensor == "loss"
    assert "first 10 steps" in findings[0].message
    plateau = MemoryTrial()  # learns, then flattens out with noise: a converged run is not a problem
    for step in range(80):
        plateau.add("loss", step, max(1.1 - step / 20, 0.1) + RNG.normal(0, 0.03))
    assert run(create_rule("LossNotDecreasing"), plateau) == []


def test_loss_not_decreasing_rising_loss_and_eval_mode() -> None:
    trial = MemoryTrial()
    for step in range(30):
        trial.add("loss", step, 1.0 + step / 10, mode="EVAL")
    findings = run(create_rule("LossNotDecreasing", mode="EVAL", num_steps="5"), trial)
    assert findings[0].step == 9 and "rose" in findings[0].message
    assert run(create_rule("LossNotDecreasing"), trial) == []  # TRAIN mode has no steps


def test_overfit_judges_complete_validation_passes_against_recent_training() -> None:
    trial = healthy_trial()
    for step, position in ((6, 60), (7, 60), (8, 80), (9, 80)):  # two passes with loss 2-3x the train loss
        trial.add("loss", step, np.float32(0.5), mode="EVAL").set_step_info(
            step, "EVAL", global_step=position, split="valid"
        )
    trial.add("loss", 10, np.float32(5.0), mode="EVAL").set_step_info(
        10, "EVAL", global_step=80, split="test"
    )
    findings = run(create_rule("Overfit"), trial)
    assert [f.step for f in findings] == [9]  # judged when pass 80 is complete; patience 2 passes
    assert findings[0].value > 0.1 and "for 2 evaluation passes" in findings[0].message
    assert [f.step for f in run(create_rule("Overfit", patience=1), trial)] == [7, 9]  # never the test split
    trial.add("loss", 11, np.float32(0.5), mode="EVAL").set_step_info(
        11, "EVAL", global_step=90, split="valid"
    )
    assert [f.step for f in run(create_rule("Overfit", patience=1), trial)] == [
        7,
        9,
        11,
    ]  # last pass at finish


def test_overtraining_when_the_loss_stops_improving() -> None:
    trial = MemoryTrial()
    for step in range(100):
        trial.add("loss", step, max(1.0 - step / 20, 0.5) + RNG.normal(0, 0.001))
    findings = run(create_rule("Overtraining"), trial)
    assert findings and findings[0].mode == "TRAIN" and "not improved" in findings[0].message


def test_poor_weight_initialization_on_collapsed_gradients_and_activation_variance() -> None:
    trial = MemoryTrial()
    trial.add_reduced("gradient/a.weight", 0, RNG.normal(0, 1e-5, (16, 16)))
    trial.add_reduced("gradient/b.weight", 0, np.zeros((4, 16)))
    findings = run(create_rule("PoorWeightInitialization"), trial)
    assert findings[0].step == 0 and "no spread" in findings[0].message
    ratio = MemoryTrial()
    ratio.add_reduced("a_relu_output_0", 0, np.maximum(RNG.normal(0, 10, (8, 16)), 0))
    ratio.add_reduced("b_relu_output_0", 0, np.maximum(RNG.normal(0, 0.1, (8, 16)), 0))
    ratio.add_reduced("a_relu_output_0", 20, np.maximum(RNG.normal(0, 10, (8, 16)), 0))
    ratio.add_reduced("b_relu_output_0", 20, np.maximum(RNG.normal(0, 0.1, (8, 16)), 0))
    findings = run(create_rule("PoorWeightInitialization"), ratio)
    assert [f.step for f in findings] == [0] and findings[0].tensor == "a_relu_output_0"  # only early steps
    # an smdebug hook in a script names a nested ReLU module's output <Model>_<path>.relu_output_<i>
    script = MemoryTrial()
    script.add_reduced("Net_layer1.0.relu_output_0", 0, np.maximum(RNG.normal(0, 10, (8, 16)), 0))
    script.add_reduced("Net_layer2.0.relu_output_0", 0, np.maximum(RNG.normal(0, 0.1, (8, 16)), 0))
    findings = run(create_rule("PoorWeightInitialization"), script)
    assert [f.tensor for f in findings] == ["Net_layer1.0.relu_output_0"]


@pytest.mark.parametrize("raw", [False, True], ids=["histogram", "raw"])
def test_saturated_activation(raw: bool) -> None:
    trial = MemoryTrial()
    add = trial.add if raw else trial.add_reduced
    if raw:  # raw outputs: per node; histograms resolve inputs (their bins are too coarse at 0 and 1)
        add("se.gate_sigmoid_output_0", 0, np.where(RNG.random((8, 16)) < 0.5, 1.0, 0.0).astype(np.float32))
    else:
        add("se.gate_sigmoid_input_0", 0, np.where(RNG.random((8, 16)) < 0.5, 30.0, -30.0))
    add("head.0_tanh_input_0", 0, RNG.normal(0, 1, (8, 16)))
    findings = run(create_rule("SaturatedActivation"), trial)
    assert [f.tensor for f in findings] == [f"se.gate_sigmoid_{'output' if raw else 'input'}_0"]
    assert "saturated" in findings[0].message


def test_dead_relu_per_unit_with_raw_and_whole_layer_with_reductions() -> None:
    outputs = np.maximum(RNG.normal(0, 1, (32, 16)), 0)
    outputs[:, :12] = 0  # 75% of the units never fire
    trial = MemoryTrial().add("head.0_relu_output_0", 0, outputs)
    findings = run(create_rule("DeadRelu"), trial)
    assert (
        findings[0].value == pytest.approx(75.0) and "75% of the ReLU units are dead" in findings[0].message
    )
    reduced = MemoryTrial().add_reduced("head.0_relu_output_0", 0, outputs)
    assert run(create_rule("DeadRelu"), reduced) == []  # reductions cannot tell which units are dead
    reduced.add_reduced("head.0_relu_output_0", 10, np.zeros((32, 16)))
    assert [f.step for f in run(create_rule("DeadRelu"), reduced)] == [10]


@pytest.mark.parametrize("raw", [False, True], ids=["reductions", "raw"])
def test_weight_update_ratio(raw: bool) -> None:
    trial = MemoryTrial()
    add = trial.add if raw else trial.add_reduced
    w = RNG.normal(0, 0.1, (8, 8))
    add("big.weight", 0, w)
    add("big.weight", 10, w * 50)
    add("still.weight", 0, w + 1)
    add("still.weight", 10, w + 1)
    findings = run(create_rule("WeightUpdateRatio"), trial)
    assert [f.tensor for f in findings] == ["big.weight"] and findings[0].value > 10
    small = run(create_rule("WeightUpdateRatio", large_threshold=1e9), trial)
    assert [f.tensor for f in small] == ["still.weight"]


def test_tensor_variance_bounds_and_required_threshold() -> None:
    trial = MemoryTrial().add_reduced("a.weight", 0, RNG.normal(0, 10, (8, 8)))
    findings = run(create_rule("TensorVariance", max_threshold=10), trial)
    assert findings[0].tensor == "a.weight" and findings[0].value > 10
    assert run(create_rule("TensorVariance", min_threshold=1000), trial)[0].threshold == 1000
    with pytest.raises(SpecError, match="max_threshold and/or min_threshold"):
        create_rule("TensorVariance")


def test_all_zero_on_inputs_by_default_and_chosen_collections() -> None:
    trial = healthy_trial()
    trial.add_reduced("inputs", 30, np.zeros((8, 3, 8, 8)))
    assert [(f.step, f.tensor) for f in run(create_rule("AllZero"), trial)] == [(30, "inputs")]
    trial.add_reduced("head.1.weight", 40, np.zeros((3, 8)))
    chosen = run(create_rule("AllZero", collection_names="weights"), trial)
    assert [(f.step, f.tensor) for f in chosen] == [(40, "head.1.weight")]
    assert run(create_rule("AllZero", collection_names="weights", threshold=101), trial) == []


@pytest.mark.parametrize("raw", [False, True], ids=["reductions", "raw"])
def test_unchanged_tensor_watches_parameters_that_get_gradients(raw: bool) -> None:
    trial = MemoryTrial()
    add = trial.add if raw else trial.add_reduced
    frozen, moving, intended = (RNG.normal(0, 0.1, (4, 4)) for _ in range(3))
    for i, step in enumerate((0, 10, 20, 30)):
        add("layer.weight", step, frozen)  # gets gradients but never moves: the bug
        add("gradient/layer.weight", step, RNG.normal(0, 0.1, (4, 4)))
        add("head.weight", step, moving + 0.01 * i)
        add("gradient/head.weight", step, RNG.normal(0, 0.1, (4, 4)))
        add("backbone.weight", step, intended)  # frozen on purpose: no gradient recorded
    findings = run(create_rule("UnchangedTensor"), trial)
    assert [(f.step, f.tensor) for f in findings] == [(20, "layer.weight"), (30, "layer.weight")]
    assert "did not change over TRAIN steps [0, 10, 20]" in findings[0].message
    explicit = run(create_rule("UnchangedTensor", tensor_regex="^backbone", num_steps=4), trial)
    assert [(f.step, f.tensor) for f in explicit] == [(30, "backbone.weight")]


def test_class_imbalance_counts_and_mispredictions() -> None:
    trial = MemoryTrial()
    for step in range(30):
        labels = np.array([0] * 15 + [1])
        trial.add("labels", step, labels).add("predictions", step, labels)
    findings = run(create_rule("ClassImbalance", samples=96), trial)
    assert findings[0].tensor == "labels" and findings[0].value == pytest.approx(15.0)
    wrong = MemoryTrial()
    for step in range(30):
        labels = np.array([0, 1, 2, 0, 1, 2])
        logits = np.eye(3)[np.array([0, 1, 0, 0, 1, 0])]  # class 2 is always predicted as 0
        wrong.add("labels", step, labels).add("predictions", step, logits)
    findings = run(create_rule("ClassImbalance", samples=60, argmax=True), wrong)
    assert findings[0].tensor == "predictions" and "class 2 is mispredicted 100%" in findings[0].message


@pytest.mark.parametrize("raw", [False, True], ids=["reductions", "raw"])
def test_check_input_images(raw: bool) -> None:
    trial = MemoryTrial()
    add = trial.add if raw else trial.add_reduced
    for step in range(40):
        trial.add("labels", step, np.zeros(16, dtype=np.int64))
        if step % 10 == 0:
            add("inputs", step, RNG.uniform(0, 1, (16, 3, 8, 8)))  # raw [0, 1] pixels: mean 0.5
    findings = run(create_rule("CheckInputImages"), trial)
    # 500 images are reached at step 31 (32 batches of 16); the inputs saved so far are judged then
    assert findings and findings[0].step == 31 and findings[0].value == pytest.approx(0.5, abs=0.02)
    assert len(findings) == 1  # no new input steps after that
    assert ("channel" in findings[0].message) == raw


def test_stalled_training_fires_once_per_stall_on_the_runner_clock() -> None:
    rule = create_rule("StalledTraining", threshold=60)
    trial = MemoryTrial().add("loss", 0, 1.0)
    assert rule.poll(trial, 0.0) is None
    assert rule.poll(trial, 50.0) is None
    finding = rule.poll(trial, 61.0)
    assert finding is not None and "no new step for 61 s" in finding.message
    assert rule.poll(trial, 120.0) is None  # once per stall
    trial.add("loss", 1, 0.9)
    assert rule.poll(trial, 130.0) is None and rule.poll(trial, 200.0) is not None


# --- registry ------------------------------------------------------------------------------------------
def test_parameters_are_converted_and_checked() -> None:
    rule = create_rule("LossNotDecreasing", num_steps="20", diff_percent="0.5", use_losses_collection="false")
    assert (rule.num_steps, rule.diff_percent, rule.use_losses_collection) == (20, 0.5, False)
    assert create_rule("ExplodingTensor", collection_names="weights, gradients").collection_names == (
        "weights",
        "gradients",
    )
    with pytest.raises(SpecError, match="has no parameter nope"):
        create_rule("VanishingGradient", nope=1)
    with pytest.raises(SpecError, match="num_steps='ten' is not a valid int"):
        create_rule("LossNotDecreasing", num_steps="ten")
    with pytest.raises(SpecError, match="unknown debugger rule 'Nope'"):
        create_rule("Nope")
    assert create_rule("StalledTrainingRule").name == "StalledTraining"


def test_custom_rule_from_a_file(tmp_path: Path) -> None:
    source = tmp_path / "my_rule.py"
    source.write_text(
        "from dataclasses import dataclass\n"
        "from vizsla.debugger.rules import BaseRule\n\n"
        "@dataclass\n"
        "class LossAbove(BaseRule):\n"
        "    name = 'LossAbove'\n"
        "    limit: float = 1.0\n\n"
        "    def evaluate(self, trial, step, mode):\n"
        "        value = trial.tensor('loss').reduction(step, 'mean', mode)\n"
        "        if value is not None and value > self.limit:\n"
        "            return self.finding(step, mode, 'loss', value, self.limit, 'too high')\n"
        "        return None\n"
    )
    rule = create_rule(f"{source}:LossAbove", limit="2")
    trial = MemoryTrial().add("loss", 0, 1.5).add("loss", 1, 2.5)
    assert [f.step for f in run(rule, trial)] == [1]
    assert "LossAbove" in list_rules()
    with pytest.raises(SpecError, match="has no class Missing"):
        create_rule(f"{source}:Missing")
    with pytest.raises(SpecError, match="custom rule file not found"):
        create_rule(f"{tmp_path / 'none.py'}:X")


def test_percentile_from_histogram_matches_numpy() -> None:
    values = RNG.normal(0, 1, 100_000)
    counts, edges = np.histogram(values, bins=64)
    for q in (5, 50, 95):
        assert percentile_from_histogram((edges, counts), q) == pytest.approx(
            np.percentile(values, q), abs=0.05
        )
