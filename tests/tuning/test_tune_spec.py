import json

import pytest

from vizsla.errors import SpecError
from vizsla.tuning.tune_spec import (
    CategoricalRange,
    ContinuousRange,
    IntegerRange,
    TuneSpec,
    build_tune_spec,
    load_tune_spec,
)

TRAINING = {"data": {"root": "/data/flowers"}, "model": {"name": "resnet18"}, "train": {"epochs": 3}}

OWN = {
    "output": "runs/tune-a",
    "objective": {"metric": "valid_accuracy", "type": "Maximize"},
    "strategy": "Random",
    "max_jobs": 8,
    "training": TRAINING,
    "ranges": {
        "learning_rate": {"type": "Continuous", "min": 1e-5, "max": 1e-1, "scaling": "Logarithmic"},
        "batch_size": {"type": "Integer", "min": 16, "max": 64},
        "optimizer": {"type": "Categorical", "values": ["adamw", "sgd"]},
    },
}

BARE = {
    "learning_rate": {"type": "continuous", "min": 1e-5, "max": 1e-1, "scaling": "logarithmic"},
    "batch_size": {"type": "Integer", "min": 16, "max": 64},
    "optimizer": {"type": "Categorical", "values": ["adamw", "sgd"]},
}

SAGEMAKER = {
    "ParameterRanges": {
        "ContinuousParameterRanges": [
            {"Name": "learning_rate", "MinValue": "0.00001", "MaxValue": "0.1", "ScalingType": "Logarithmic"}
        ],
        "IntegerParameterRanges": [{"Name": "batch_size", "MinValue": "16", "MaxValue": "64"}],
        "CategoricalParameterRanges": [{"Name": "optimizer", "Values": ["adamw", "sgd"]}],
    },
    "StaticHyperParameters": {"epochs": "3", "model": "resnet18", "sagemaker_program": "train.py"},
}

REST = {"output": "runs/tune-a", "strategy": "Random", "max_jobs": 8}


def test_three_file_shapes_give_the_same_spec(tmp_path):
    own = build_tune_spec(OWN)
    bare = build_tune_spec(BARE, {**REST, "training": TRAINING})
    path = tmp_path / "space.json"
    path.write_text(json.dumps(SAGEMAKER))
    sagemaker = build_tune_spec(
        load_tune_spec(path), {**REST, "training": {"data": {"root": "/data/flowers"}}}
    )
    assert own == bare == sagemaker
    assert isinstance(own.ranges["learning_rate"], ContinuousRange)
    assert isinstance(own.ranges["batch_size"], IntegerRange)
    assert own.ranges["learning_rate"].min == pytest.approx(1e-5)
    assert own.training["train"]["epochs"] == 3
    # SageMaker's API shape wrapped in the job config and the SDK's name-keyed ranges read the same
    api = {
        "HyperParameterTuningJobConfig": {
            "ParameterRanges": SAGEMAKER["ParameterRanges"],
            "Strategy": "Random",
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 8, "MaxParallelTrainingJobs": 1},
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "valid_accuracy"},
        },
        "TrainingJobDefinition": {"StaticHyperParameters": SAGEMAKER["StaticHyperParameters"]},
    }
    assert (
        build_tune_spec(api, {"output": "runs/tune-a", "training": {"data": {"root": "/data/flowers"}}})
        == own
    )
    sdk = {
        "HyperparameterRanges": {
            "learning_rate": {"min_value": "1e-5", "max_value": "0.1", "scaling_type": "Logarithmic"},
            "batch_size": {"min_value": 16, "max_value": 64},
            "optimizer": {"values": ["adamw", "sgd"]},
        }
    }
    assert build_tune_spec(sdk, {**REST, "training": TRAINING}) == own


def test_sagemaker_strings_become_numbers_and_static_head_parses():
    config = {
        "CategoricalParameterRanges": [{"Name": "batch-size", "Values": ["32", "64"]}],
        "StaticHyperParameters": {"head": "256,128", "lr": "0.01"},
    }
    spec = build_tune_spec(config, {"output": "o", "training": {"data": {"root": "d"}}})
    assert spec.ranges["batch-size"].values == [32, 64]
    assert spec.training["model"]["head"] == [256, 128]
    assert spec.training["train"]["lr"] == 0.01


def test_defaults_and_round_trip():
    spec = build_tune_spec(
        {"lr": {"type": "Continuous", "min": 0.001, "max": 0.01}}, {**REST, "training": TRAINING}
    )
    again = TuneSpec.model_validate(spec.model_dump(mode="json"))
    assert again == spec
    plain = build_tune_spec({"ranges": {"lr": [0.1, 0.01]}, "output": "x/tune", "training": TRAINING})
    assert plain.max_jobs == 10 and plain.strategy == "Bayesian" and plain.job_name == "tune"
    assert isinstance(plain.ranges["lr"], CategoricalRange)


def test_loss_objective_is_minimised_unless_stated():
    base = {"output": "o", "training": TRAINING, "ranges": {"lr": [0.1, 0.01]}}
    assert build_tune_spec({**base, "objective": "valid_loss"}).objective.type == "Minimize"
    assert build_tune_spec({**base, "objective": {"metric": "valid_accuracy"}}).objective.type == "Maximize"
    spec = build_tune_spec({**base, "objective": {"metric": "valid_loss", "type": "Maximize"}})
    assert spec.objective.type == "Maximize"


@pytest.mark.parametrize(
    ("rng", "message"),
    [
        ({"type": "Continuous", "min": 0.1, "max": 0.01}, "min"),
        ({"type": "Continuous", "min": 0.0, "max": 0.1, "scaling": "Logarithmic"}, "Logarithmic"),
        (
            {"type": "Continuous", "min": 0.5, "max": 1.0, "scaling": "ReverseLogarithmic"},
            "ReverseLogarithmic",
        ),
        ({"type": "Integer", "min": 8, "max": 4}, "min"),
        ({"type": "Integer", "min": 1, "max": 4, "scaling": "ReverseLogarithmic"}, "Continuous ranges only"),
        ({"type": "Categorical", "values": []}, "at least 1"),
        ({"type": "Categorical", "values": list(range(31))}, "at most 30"),
        ({"type": "Categorical", "values": ["sgd", "sgd"]}, "repeat"),
        ({"type": "Uniform", "min": 0, "max": 1}, "type"),
    ],
)
def test_bad_ranges_name_the_hyperparameter(rng, message):
    with pytest.raises(SpecError, match="momentum") as info:
        build_tune_spec({"output": "o", "training": TRAINING, "ranges": {"momentum": rng}})
    assert message in str(info.value)


def test_values_the_job_spec_refuses_are_reported_before_tuning():
    cases = [
        ({"optimizer": ["adamw", "adamm"]}, "'adamm' is not an optimizer of timm"),
        ({"epochs": {"type": "Continuous", "min": 1, "max": 5}}, "use type: Integer"),
        (
            {"head_dropout": {"type": "Continuous", "min": 0.0, "max": 1.0}},
            "1.0 is not valid for model.head_dropout",
        ),
        ({"bach_size": [16]}, "did you mean batch_size"),
        ({"lr": [0.1], "learning_rate": [0.2]}, "keep one"),
        ({"data.root": ["a", "b"]}, "cannot be tuned"),
    ]
    for ranges, message in cases:
        with pytest.raises(SpecError, match="ranges.") as info:
            build_tune_spec({"output": "o", "training": TRAINING, "ranges": ranges})
        assert message in str(info.value), ranges


def test_spec_level_rules():
    base = {"output": "o", "training": TRAINING}
    grid = {**base, "strategy": "Grid", "ranges": {"lr": [0.1, 0.01], "optimizer": ["adamw", "sgd"]}}
    assert build_tune_spec(grid).max_jobs == 4
    assert build_tune_spec({**grid, "max_jobs": 4}).max_jobs == 4
    with pytest.raises(SpecError, match="4 combinations"):
        build_tune_spec({**grid, "max_jobs": 5})
    with pytest.raises(SpecError, match="ranges.lr: Grid"):
        build_tune_spec(
            {**base, "strategy": "Grid", "ranges": {"lr": {"type": "Continuous", "min": 0.1, "max": 1}}}
        )
    with pytest.raises(SpecError, match="early_stopping must be Off"):
        build_tune_spec({**base, "strategy": "Hyperband", "early_stopping": "Auto", "ranges": {"lr": [0.1]}})
    with pytest.raises(SpecError, match="training.output"):
        build_tune_spec({"output": "o", "training": {**TRAINING, "output": "x"}, "ranges": {"lr": [0.1]}})
    with pytest.raises(SpecError, match="at least one"):
        build_tune_spec({**base, "ranges": {}})
    with pytest.raises(SpecError, match="completion.max_jobs_not_improving"):
        build_tune_spec({**base, "ranges": {"lr": [0.1]}, "completion": {"max_jobs_not_improving": 2}})
    with pytest.raises(SpecError, match="warm_start.parents"):
        build_tune_spec(
            {**base, "ranges": {"lr": [0.1]}, "warm_start": {"parents": [f"p{i}" for i in range(6)]}}
        )
    with pytest.raises(SpecError, match="invalid tuning spec"):
        build_tune_spec({**base, "ranges": {"lr": [0.1]}, "strateg": "Random"})
    with pytest.raises(SpecError, match="no data given"):
        build_tune_spec({"output": "o", "ranges": {"lr": [0.1]}})
    with pytest.raises(SpecError, match="(?s)training.*train.epochs"):
        build_tune_spec({**base, "training": {**TRAINING, "train": {"epochs": 0}}, "ranges": {"lr": [0.1]}})


def test_overrides_win():
    spec = build_tune_spec(OWN, {"max_jobs": 3, "ranges": {"batch_size": {"max": 32}}})
    assert spec.max_jobs == 3 and spec.ranges["batch_size"].max == 32 and spec.ranges["batch_size"].min == 16


def test_trial_nproc_defaults_to_one_process_and_script_trials_refuse_more(tmp_path):
    ranges = {"lr": {"type": "Continuous", "min": 1e-3, "max": 1e-1}}
    training = {"data": {"root": str(tmp_path)}}
    base = {"output": str(tmp_path), "ranges": ranges, "training": training}
    assert build_tune_spec(base).trial_nproc == 1
    assert build_tune_spec({**base, "trial_nproc": 2}).trial_nproc == 2
    script = {"entry_point": "hpo.py", "metric_definitions": [{"Name": "acc", "Regex": "a=(.*)"}]}
    with pytest.raises(SpecError, match="trial_nproc: a script trial runs the script itself"):
        build_tune_spec(
            {"output": str(tmp_path), "ranges": ranges, "trial_nproc": 2, "script": script,
             "objective": {"metric": "acc"}}
        )  # fmt: skip
    with pytest.raises(SpecError, match="trial_nproc"):
        build_tune_spec({**base, "trial_nproc": 0})
