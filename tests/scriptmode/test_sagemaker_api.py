"""The notebook-facing SDK-shaped API: fit -> tuner.fit -> best_estimator -> deploy -> predict -> delete."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import yaml

from vizsla.errors import UserError
from vizsla.sagemaker import PyTorch, UnexpectedStatusException, get_execution_role
from vizsla.sagemaker.debugger import (
    CollectionConfig,
    DebuggerHookConfig,
    FrameworkProfile,
    ProfilerConfig,
    ProfilerRule,
    Rule,
    debug_section,
    profile_section,
    rule_configs,
)
from vizsla.sagemaker.pytorch import PyTorchModel
from vizsla.sagemaker.tuner import CategoricalParameter, ContinuousParameter, HyperparameterTuner

SCRIPTS = Path(__file__).parent / "scripts"
LOSS = "average test loss"
METRICS = [{"Name": LOSS, "Regex": r"Test set: Average loss: ([0-9\.]+)"}]
SDK_COLUMNS = [
    "TrainingJobName",
    "TrainingJobStatus",
    "FinalObjectiveValue",
    "TrainingStartTime",
    "TrainingEndTime",
    "TrainingElapsedTimeSeconds",
]


def _jpeg(color: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 32), color).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.mark.slow
def test_notebook_chain_fit_tune_best_deploy_predict(tmp_path):
    from vizsla.testing.images import make_image_folder

    data = make_image_folder(tmp_path / "dogs", classes=("cat", "dog"), per_class=6, seed=2)
    inputs = {"training": str(data / "train"), "test": str(data / "valid")}
    role = get_execution_role()
    assert re.fullmatch(r"local:\S+", role)
    estimator = PyTorch(
        entry_point="hpo.py",
        source_dir=str(SCRIPTS),
        role=role,
        instance_count=1,
        instance_type="ml.g4dn.xlarge",
        framework_version="1.8",
        py_version="py36",
        hyperparameters={"epochs": 2, "batch-size": 8, "lr": 0.01},
        metric_definitions=METRICS,
        output_path=str(tmp_path / "runs"),
        base_job_name="dog-hpo",
        tracking=False,
    )
    estimator.fit(inputs)
    job = estimator.latest_training_job
    assert re.fullmatch(r"dog-hpo-\d{4}(-\d\d){5}-\d{3}", job.name)
    assert (Path(estimator.model_data) / "model.pth").is_file()
    spec = yaml.safe_load((job.job_dir / "spec.yaml").read_text())
    assert spec["sagemaker"]["role"] == role and spec["sagemaker"]["instance_type"] == "ml.g4dn.xlarge"
    assert job.describe()["metrics"][LOSS] > 0

    tuner = HyperparameterTuner(
        estimator,
        LOSS,
        {"lr": ContinuousParameter(0.001, 0.1), "batch-size": CategoricalParameter([4, 8])},
        METRICS,
        max_jobs=2,
        max_parallel_jobs=2,
        objective_type="Minimize",
        strategy="Random",
    )
    tuner.fit(inputs)
    frame = tuner.analytics().dataframe()
    assert list(frame.columns) == ["lr", "batch-size", *SDK_COLUMNS]
    assert len(frame) == 2 and set(frame["TrainingJobStatus"]) == {"Completed"}
    assert frame["batch-size"].isin([4.0, 8.0]).all()  # cast to float, as the SDK does
    assert (frame["TrainingElapsedTimeSeconds"] > 0).all()
    best_row = frame.loc[frame["FinalObjectiveValue"].idxmin()]
    assert tuner.best_training_job() == best_row["TrainingJobName"]
    best = tuner.best_estimator()
    assert best.hyperparameters()["epochs"] == "2"  # JSON-encoded strings, as the SDK returns them
    assert float(best.hyperparameters()["lr"]) == pytest.approx(best_row["lr"])
    assert (Path(best.model_data) / "model.pth").is_file()

    model = PyTorchModel(
        model_data=best.model_data,
        role=role,
        entry_point="inference.py",
        source_dir=str(SCRIPTS),
        framework_version="1.8",
        py_version="py36",
    )
    predictor = model.deploy(initial_instance_count=1, instance_type="ml.m5.large")
    try:
        answer = predictor.predict(_jpeg((220, 30, 30)), initial_args={"ContentType": "image/jpeg"})
        assert answer["label"] in ("cat", "dog") and len(answer["probabilities"]) == 2
        assert sum(answer["probabilities"]) == pytest.approx(1.0, abs=1e-5)
        from vizsla.sagemaker import ModelError

        with pytest.raises(ModelError, match="unsupported ContentType"):
            predictor.predict(b"1,2", initial_args={"ContentType": "text/csv"})
    finally:
        predictor.delete_endpoint()
    with pytest.raises(UserError, match="deleted"):
        predictor.predict(_jpeg((1, 2, 3)), initial_args={"ContentType": "image/jpeg"})
    # the training script itself has no model_fn and its model.pth is a state_dict, not TorchScript: the
    # toolkit's default model_fn cannot load it, and says so
    with pytest.raises(UserError, match="is not a TorchScript file"):
        best.deploy()
    # deploy(entry_point=...) from the attached estimator works the same way
    second = best.deploy(entry_point="inference.py")
    try:
        again = second.predict(_jpeg((220, 30, 30)), initial_args={"ContentType": "image/jpeg"})
        assert again["probabilities"] == pytest.approx(answer["probabilities"])
    finally:
        second.delete_endpoint()


def test_failed_fit_raises_unexpected_status_with_the_reason(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(
        "import sys\nprint('starting')\nraise RuntimeError('CUDA out of cheese')\n"
    )
    estimator = PyTorch(
        entry_point="train.py", source_dir=str(code), output_path=str(tmp_path), tracking=False
    )
    with pytest.raises(UnexpectedStatusException) as info:
        estimator.fit(job_name="broken-job")
    assert info.value.actual_status == "Failed"
    assert "Error for Training job broken-job: Failed" in str(info.value)
    assert "RuntimeError: CUDA out of cheese" in str(info.value)
    assert estimator.latest_training_job.describe()["status"] == "Failed"


def test_debugger_and_profiler_configs_map_to_specs():
    rules = [
        Rule.sagemaker(rule_configs.vanishing_gradient()),
        Rule.sagemaker(rule_configs.loss_not_decreasing(), rule_parameters={"num_steps": 5}),
        ProfilerRule.sagemaker(rule_configs.LowGPUUtilization(threshold_p95=80)),
        ProfilerRule.sagemaker(rule_configs.ProfilerReport()),
    ]
    hook = DebuggerHookConfig(
        hook_parameters={"train.save_interval": "20", "eval.save_interval": "5"},
        collection_configs=[
            CollectionConfig("CrossEntropyLoss_output_0", parameters={"train.save_interval": "1"}),
            CollectionConfig("gradients", parameters={"save_interval": "10"}),
        ],
    )
    debug = debug_section(rules, hook)
    assert debug["enabled"] and debug["save_interval"] == 20
    assert debug["mode_save_intervals"] == {"TRAIN": 20, "EVAL": 5}
    assert [r["name"] for r in debug["rules"]] == ["VanishingGradient", "LossNotDecreasing"]
    assert debug["rules"][1]["parameters"] == {"num_steps": 5}
    assert debug["collections"]["CrossEntropyLoss_output_0"] == {
        "include_regex": "CrossEntropyLoss_output_0",
        "save_interval": 1,
        "mode_save_intervals": {"TRAIN": 1},
        "save_raw": True,
    }
    assert debug["collections"]["gradients"] == {"save_interval": 10, "save_raw": True}  # smdebug: full
    config = ProfilerConfig(
        system_monitor_interval_millis=200, framework_profile_params=FrameworkProfile(num_steps=3)
    )
    profile = profile_section(rules, config)
    assert profile == {
        "enabled": True,
        "interval_ms": 200,
        "torch_trace": {"wait": 4, "warmup": 1, "active": 3},  # SageMaker's default start: step 5
        "rules": {"LowGPUUtilization": {"threshold_p95": 80}},
    }
    assert debug_section([], None) is None and profile_section([], None) is None
    # the estimator's script job spec validates with these sections (DebugSpec / ProfileSpec)
    from vizsla.scriptmode.spec import build_script_spec

    estimator = PyTorch(
        entry_point="hpo.py",
        source_dir=str(SCRIPTS),
        rules=rules,
        debugger_hook_config=hook,
        profiler_config=ProfilerConfig(system_monitor_interval_millis=200),
        sagemaker_session=object(),
    )
    spec = build_script_spec({**estimator.script_section("/data/train"), "output": "/tmp/x"})
    assert spec.channels == {"training": "/data/train"}
    assert spec.debug.enabled and spec.debug.rules[0].name == "VanishingGradient"
    assert spec.profile.enabled and spec.profile.interval_ms == 200
    assert spec.sagemaker["sagemaker_session"] == "<object>"
    with pytest.raises(UserError, match="no training job yet"):
        _ = estimator.model_data


def test_torch_distributed_runs_the_script_under_torchrun(tmp_path):
    """The SDK's distribution flag reaches the job: the toolkit's torchrun launcher, one process per GPU."""
    from vizsla.scriptmode.spec import build_script_spec

    estimator = PyTorch(entry_point="train.py", distribution={"torch_distributed": {"enabled": True}})
    section = estimator.script_section({"training": str(tmp_path)})
    assert section["distribution"] == {"torch_distributed": {"enabled": True}}
    spec = build_script_spec({**section, "output": str(tmp_path / "job")})
    assert spec.distribution is not None and spec.distribution.nproc_per_node >= 1
