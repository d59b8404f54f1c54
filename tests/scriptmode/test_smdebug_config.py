"""smdebug's save configs and debughookconfig.json as the shim reads them; SageMaker-shaped rule configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vizsla.debugger.smdebug_compat import ModeKeys
from vizsla.scriptmode.debugging import DebugSession
from vizsla.scriptmode.smdebug_shim.config import SaveConfig, read_json_config, str2bool
from vizsla.spec import DebugSpec, RuleSpec


def test_sagemaker_hook_config_with_per_mode_intervals(tmp_path: Path) -> None:
    path = tmp_path / "debughookconfig.json"
    path.write_text(
        json.dumps(
            {
                "LocalPath": "/opt/ml/output/tensors",
                "HookParameters": {"eval.save_interval": "10", "train.save_interval": "100"},
                "CollectionConfigurations": [
                    {
                        "CollectionName": "relu_input",
                        "CollectionParameters": {"include_regex": ".*relu_input"},
                    },
                    {"CollectionName": "gradients", "CollectionParameters": {"save_interval": "500"}},
                    {"CollectionName": "losses", "CollectionParameters": {"save_steps": "3,7"}},
                ],
            }
        )
    )
    config = read_json_config(str(path))
    assert config.out_dir == "/opt/ml/output/tensors"
    assert config.hook_kwargs["include_collections"] == ["relu_input", "gradients", "losses"]
    default: SaveConfig = config.hook_kwargs["save_config"]
    assert default.should_save_step(ModeKeys.TRAIN, 200) and not default.should_save_step(ModeKeys.TRAIN, 10)
    assert default.should_save_step(ModeKeys.EVAL, 10)
    relu, gradients, losses = config.collections
    assert relu.matches("layer1.relu_input_0") and relu.save_config is None  # inherits the hook's
    assert gradients.save_config.should_save_step(ModeKeys.EVAL, 500)
    assert not gradients.save_config.should_save_step(ModeKeys.TRAIN, 100)
    assert [s for s in range(12) if losses.save_config.should_save_step(ModeKeys.TRAIN, s)] == [3, 7]
    assert "reduction_config" not in config.hook_kwargs and gradients.reduction_config is None  # full tensors


def test_reductions_parameter_means_reductions_only_as_in_smdebug(tmp_path: Path) -> None:
    path = tmp_path / "debughookconfig.json"
    hook = {"reductions": "mean,abs_max,l2_norm,abs_l1_norm", "save_raw_tensor": "True"}
    collection = {"CollectionName": "weights", "CollectionParameters": {"reductions": "std"}}
    path.write_text(json.dumps({"HookParameters": hook, "CollectionConfigurations": [collection]}))
    config = read_json_config(str(path))
    reduction = config.hook_kwargs["reduction_config"]
    assert (reduction.reductions, reduction.abs_reductions) == (["mean"], ["max"])
    assert (reduction.norms, reduction.abs_norms, reduction.save_raw_tensor) == (["l2"], ["l1"], True)
    weights = config.collections[0].reduction_config
    assert weights.reductions == ["std"] and weights.save_raw_tensor is False


def test_missing_config_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_json_config(str(tmp_path / "none.json"))


def test_str2bool() -> None:
    assert str2bool("True") and str2bool("1") and not str2bool("False") and not str2bool("no")
    with pytest.raises(ValueError):
        str2bool("maybe")


def test_session_writes_sagemaker_shaped_config(tmp_path: Path) -> None:
    spec = DebugSpec(enabled=True, save_interval=50, collections={"relu_output": {"save_interval": 10}})
    env: dict[str, str] = {}
    DebugSession(spec, tmp_path).prepare(env)
    config_file = tmp_path / "input" / "config" / "debughookconfig.json"
    assert env["SMDEBUG_CONFIG_FILE_PATH"] == str(config_file)
    assert env["VIZSLA_DEBUG_DIR"] == str(tmp_path / "debug")
    config = read_json_config(str(config_file))
    by_name = {c.name: c for c in config.collections}
    assert set(by_name) == {"losses", "weights", "biases", "gradients", "relu_output"}
    assert by_name["losses"].save_config.should_save_step(ModeKeys.EVAL, 3)
    assert by_name["gradients"].save_config.should_save_step(ModeKeys.TRAIN, 50)
    assert not by_name["gradients"].save_config.should_save_step(ModeKeys.EVAL, 50)  # TRAIN only
    assert by_name["relu_output"].matches("relu_output_0")
    assert by_name["gradients"].save_config.should_save_step(ModeKeys.GLOBAL, 50)  # a script without set_mode
    assert by_name["gradients"].reduction_config is not None  # Vizsla's collections keep reductions
    assert by_name["losses"].reduction_config is None  # losses in full


def test_spec_wide_per_mode_intervals_reach_the_collections_on_the_spec_interval(tmp_path: Path) -> None:
    spec = DebugSpec(
        enabled=True, save_interval=50, mode_save_intervals={"TRAIN": 20},
        collections={"relu_output": {"save_interval": 10}},
    )  # fmt: skip
    env: dict[str, str] = {}
    DebugSession(spec, tmp_path).prepare(env)
    config = read_json_config(env["SMDEBUG_CONFIG_FILE_PATH"])
    by_name = {c.name: c for c in config.collections}
    assert by_name["gradients"].save_config.should_save_step(ModeKeys.TRAIN, 20)  # spec-wide TRAIN: 20
    assert not by_name["gradients"].save_config.should_save_step(ModeKeys.TRAIN, 50)
    assert by_name["relu_output"].save_config.should_save_step(ModeKeys.TRAIN, 10)  # its own interval wins
    assert by_name["losses"].save_config.should_save_step(ModeKeys.TRAIN, 3)  # every step, as before


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ({"name": "vanishing_gradient"}, "VanishingGradient"),
        ({"name": "poor_weight_initialization"}, "PoorWeightInitialization"),
        (
            {"RuleConfigurationName": "my-check", "RuleParameters": {"rule_to_invoke": "Overtraining"}},
            "Overtraining",
        ),
        ({"name": "StalledTrainingRule"}, "StalledTrainingRule"),
    ],
)
def test_sagemaker_rule_configs(given: dict, name: str) -> None:
    from vizsla.debugger.runner import build_entries

    spec = RuleSpec.model_validate(given)
    assert spec.name == name and "rule_to_invoke" not in spec.parameters
    assert build_entries([spec], default_rules=False)[0].rule is not None


def test_sagemaker_rule_parameters_are_converted() -> None:
    from vizsla.debugger.runner import build_entries

    spec = RuleSpec.model_validate(
        {
            "RuleConfigurationName": "LossNotDecreasing",
            "RuleParameters": {"num_steps": "20", "diff_percent": "0.5"},
        }
    )
    rule = build_entries([spec], default_rules=False)[0].rule
    assert rule.num_steps == 20 and rule.diff_percent == 0.5
