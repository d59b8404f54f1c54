"""The training toolkit's contract as a script sees it: SM_* variables, argv, config files, job layout."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from vizsla.errors import UserError
from vizsla.scriptmode.environment import env_value, hyperparameter_args
from vizsla.scriptmode.runner import run_script_job
from vizsla.scriptmode.spec import (
    MetricDefinition,
    ScriptJobSpec,
    build_script_spec,
    parse_hyperparameters,
    parse_metric_definition,
)

SCRIPTS = Path(__file__).parent / "scripts"
HYPERPARAMETERS = {
    "batch-size": 64,
    "learning_rate": 1e-05,
    "use-cuda": True,
    "optimizer": "adam",
    "note": "two words",
    "layers": [64, 32],
}


def test_env_value_encodes_like_the_toolkit():
    assert env_value("adam") == "adam"
    assert env_value(None) == ""
    assert env_value(True) == "true"
    assert env_value(64) == "64"
    assert env_value(1e-05) == "1e-05"
    assert env_value({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'


def test_hyperparameter_args_sorted_spelling_kept_python_str():
    assert hyperparameter_args(HYPERPARAMETERS) == [
        "--batch-size", "64",
        "--layers", "[64, 32]",
        "--learning_rate", "1e-05",
        "--note", "two words",
        "--optimizer", "adam",
        "--use-cuda", "True",
    ]  # fmt: skip
    assert hyperparameter_args({"flag": False}) == ["--flag", "False"]


def test_parse_hyperparameters_types_values():
    parsed = parse_hyperparameters(
        ["epochs=5", "lr=1e-3", "momentum=0.9", "use-cuda=True", "pretrained=false", "name=resnet50", "x=a=b"]
    )
    assert parsed == {
        "epochs": 5,
        "lr": 0.001,
        "momentum": 0.9,
        "use-cuda": True,
        "pretrained": False,
        "name": "resnet50",
        "x": "a=b",
    }
    assert type(parsed["epochs"]) is int and type(parsed["lr"]) is float
    assert parse_hyperparameters(["code=010", "mode=off"]) == {
        "code": 10,
        "mode": "off",
    }  # no YAML 1.1 surprises
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_hyperparameters(["epochs"])


def test_metric_definitions_parse_and_validate():
    definition = parse_metric_definition("average test loss=Test set: Average loss: ([0-9\\.]+)")
    assert definition.name == "average test loss"
    assert definition.regex == "Test set: Average loss: ([0-9\\.]+)"
    assert parse_metric_definition("acc=acc=(\\d+)").regex == "acc=(\\d+)"  # split at the first '='
    assert MetricDefinition.model_validate({"Name": "loss", "Regex": "loss=(.*?);"}).name == "loss"
    with pytest.raises(UserError, match=r"invalid regex 'loss \(\['"):
        parse_metric_definition("loss=loss ([")
    with pytest.raises(UserError, match="NAME=REGEX"):
        parse_metric_definition("no regex here")
    with pytest.raises(UserError, match="500"):
        parse_metric_definition("long=" + "a" * 501)
    many = [{"name": f"m{i}", "regex": "x"} for i in range(41)]
    with pytest.raises(UserError, match="40"):
        build_script_spec({"output": "o", "entry_point": "t.py", "metric_definitions": many})
    with pytest.raises(UserError, match="channel name"):
        build_script_spec({"output": "o", "entry_point": "t.py", "channels": {"bad name": "/x"}})


@pytest.fixture
def seen(tmp_path, monkeypatch) -> tuple[dict, Path, Path]:
    """Run dump_env.py as a script job; return what it saw, the job dir and the training channel."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # SM_NUM_GPUS is 0 whatever this machine has
    train, test = tmp_path / "data" / "train", tmp_path / "data" / "test"
    train.mkdir(parents=True)
    test.mkdir()
    spec = ScriptJobSpec(
        output=str(tmp_path / "runs" / "env-job"),
        entry_point="dump_env.py",
        source_dir=str(SCRIPTS),
        channels={"training": str(train), "test": str(test)},
        hyperparameters=HYPERPARAMETERS,
        environment={"MY_SETTING": "42"},
        tracking={"enabled": False},
    )
    result = run_script_job(spec, progress=False)
    assert result["status"] == "Completed", result
    job = Path(result["job_dir"])
    return json.loads((job / "output" / "data" / "seen.json").read_text()), job, train


def test_argv_and_cwd_as_the_toolkit_runs_a_script(seen):
    info, job, _ = seen
    assert info["argv"] == [
        "dump_env.py",
        "--batch-size", "64",
        "--layers", "[64, 32]",
        "--learning_rate", "1e-05",
        "--note", "two words",  # one argument: we pass a list, not a shell line
        "--optimizer", "adam",
        "--use-cuda", "True",
    ]  # fmt: skip
    assert info["executable"] == sys.executable
    # SageMaker unpacks source_dir into /opt/ml/code for every job: here the job's own copy
    assert Path(info["cwd"]) == job / "code"
    assert (job / "code" / "dump_env.py").read_bytes() == (SCRIPTS / "dump_env.py").read_bytes()


def test_sm_variables_point_into_the_job_directory(seen):
    info, job, train = seen
    env = info["environ"]
    expected = {
        "SM_MODEL_DIR": job / "model",
        "SM_OUTPUT_DIR": job / "output",
        "SM_OUTPUT_DATA_DIR": job / "output" / "data",
        "SM_OUTPUT_INTERMEDIATE_DIR": job / "output" / "intermediate",
        "SM_INPUT_DIR": job / "input",
        "SM_INPUT_CONFIG_DIR": job / "input" / "config",
        "SM_CHANNEL_TRAINING": job / "input" / "data" / "training",
        "SM_CHANNEL_TEST": job / "input" / "data" / "test",
        "SM_MODULE_DIR": job / "code",
    }
    for name, path in expected.items():
        assert env[name] == str(path), name
    assert Path(env["SM_CHANNEL_TRAINING"]).resolve() == train.resolve()  # a symlink to the user's folder
    assert env["SM_CHANNELS"] == '["test","training"]'
    assert env["SM_HPS"] == json.dumps(HYPERPARAMETERS, sort_keys=True, separators=(",", ":"))
    assert env["SM_HP_BATCH-SIZE"] == "64"
    assert env["SM_HP_LEARNING_RATE"] == "1e-05"
    assert env["SM_HP_USE-CUDA"] == "true"
    assert env["SM_HP_OPTIMIZER"] == "adam"
    assert env["SM_HP_LAYERS"] == "[64,32]"
    assert json.loads(env["SM_USER_ARGS"]) == info["argv"][1:]
    assert env["SM_USER_ENTRY_POINT"] == "dump_env.py"
    assert env["SM_MODULE_NAME"] == "dump_env"
    assert env["SM_HOSTS"] == '["algo-1"]'
    assert env["SM_CURRENT_HOST"] == env["CURRENT_HOST"] == "algo-1"
    assert env["SM_NUM_CPUS"] == str(os.cpu_count())
    assert env["SM_NUM_GPUS"] == "0"
    assert env["SM_LOG_LEVEL"] == "20"
    assert env["SM_FRAMEWORK_PARAMS"] == "{}"
    assert env["SM_NETWORK_INTERFACE_NAME"] == "eth0"
    assert env["TRAINING_JOB_NAME"] == env["SAGEMAKER_JOB_NAME"] == "env-job"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONIOENCODING"] == "UTF-8"
    assert env["MY_SETTING"] == "42"
    assert str(job / "code") in env["PYTHONPATH"].split(os.pathsep)
    assert json.loads(env["SM_RESOURCE_CONFIG"])["current_host"] == "algo-1"
    assert json.loads(env["SM_INPUT_DATA_CONFIG"])["training"]["TrainingInputMode"] == "File"
    training = json.loads(env["SM_TRAINING_ENV"])
    assert training["hyperparameters"] == HYPERPARAMETERS
    assert training["channel_input_dirs"]["training"] == env["SM_CHANNEL_TRAINING"]
    assert training["model_dir"] == env["SM_MODEL_DIR"]
    assert training["job_name"] == "env-job"
    assert training["is_master"] is True


def test_config_files_as_sagemaker_writes_them(seen):
    _, job, _ = seen
    config = job / "input" / "config"
    hps = json.loads((config / "hyperparameters.json").read_text())
    assert hps == {key: json.dumps(value) for key, value in HYPERPARAMETERS.items()}
    assert hps["optimizer"] == '"adam"' and hps["use-cuda"] == "true"
    resources = json.loads((config / "resourceconfig.json").read_text())
    assert resources == {
        "current_host": "algo-1",
        "current_instance_type": "local",
        "current_group_name": "homogeneousCluster",
        "hosts": ["algo-1"],
        "instance_groups": [
            {"instance_group_name": "homogeneousCluster", "instance_type": "local", "hosts": ["algo-1"]}
        ],
        "network_interface_name": "eth0",
    }
    channels = json.loads((config / "inputdataconfig.json").read_text())
    assert sorted(channels) == ["test", "training"]
    assert channels["training"] == {
        "TrainingInputMode": "File",
        "S3DistributionType": "FullyReplicated",
        "RecordWrapperType": "None",
    }


def test_shim_on_pythonpath_before_the_source_dir(seen):
    shim = pytest.importorskip("vizsla.scriptmode.smdebug_shim")
    from vizsla.scriptmode.sagemaker_shim import sagemaker_shim_path

    info, job, _ = seen
    paths = info["environ"]["PYTHONPATH"].split(os.pathsep)
    assert paths[:3] == [shim.shim_path(), sagemaker_shim_path(), str(job / "code")]


def test_the_interpreters_bin_leads_the_scripts_path(seen):
    """SageMaker's containers put their Python's bin first: a script's `pip install` or `python` subprocess
    reaches the interpreter that runs the script."""
    info, _, _ = seen
    assert info["environ"]["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
