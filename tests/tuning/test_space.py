import math
import statistics

import optuna
import pytest
from pydantic import TypeAdapter

from vizsla.errors import SpecError
from vizsla.spec import build_spec
from vizsla.tuning.space import (
    coerce_value,
    grid_size,
    grid_space,
    param_name,
    parse_head,
    resolve_path,
    suggest,
    to_distribution,
    to_distributions,
    trial_spec_dict,
    values_from_params,
)
from vizsla.tuning.tune_spec import ParameterRange

optuna.logging.set_verbosity(optuna.logging.WARNING)
RANGE = TypeAdapter(ParameterRange)


def ranges(**items):
    return {name: RANGE.validate_python(value) for name, value in items.items()}


def sample(space, n=500, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    values = []
    for _ in range(n):
        trial = study.ask()
        values.append(suggest(trial, space))
        study.tell(trial, 0.0)
    return study, values


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("lr", "train.lr"),
        ("learning_rate", "train.lr"),
        ("learning-rate", "train.lr"),
        ("batch-size", "train.batch_size"),
        ("batch_size", "train.batch_size"),
        ("head_dropout", "model.head_dropout"),
        ("augment", "data.augment"),
        ("model", "model.name"),
        ("model_name", "model.name"),
        ("arch", "model.name"),
        ("epochs", "train.epochs"),
        ("freeze", "train.finetune"),
        ("freezing", "train.finetune"),
        ("dropout", "model.head_dropout"),
        ("grad_clip", "train.grad_clip_norm"),
        ("early_stopping", "train.early_stopping_patience"),
        ("train.lr", "train.lr"),
        ("model.head", "model.head"),
        ("Weight-Decay", "train.weight_decay"),
        ("layer-decay", "train.layer_decay"),
        ("lr_layer_decay", "train.layer_decay"),
        ("mixup_alpha", "train.mixup"),
        ("cutmix-alpha", "train.cutmix"),
        ("model-ema-decay", "train.ema_decay"),
        ("grad_accum_steps", "train.accumulate_steps"),
        ("gradient_accumulation_steps", "train.accumulate_steps"),
        ("bn_policy", "train.bn_policy"),
        ("head_epochs", "train.staged_head_epochs"),
        ("aa", "data.auto_augment"),
        ("reprob", "data.random_erasing"),
        ("opt", "train.optimizer"),
        ("sched", "train.schedule"),
    ],
)
def test_resolve_path_names_and_aliases(name, path):
    assert resolve_path(name) == path


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("learnig_rate", "did you mean learning_rate"),
        ("train.lrr", "did you mean train.lr"),
        ("colour", "vizsla train --help"),
        ("output", "cannot be tuned"),
        ("data.root", "cannot be tuned"),
        ("tracking.experiment", "cannot be tuned"),
        ("tracking.uri", "cannot be tuned"),
        ("optim.lr", "not a field"),
    ],
)
def test_resolve_path_errors(name, message):
    with pytest.raises(SpecError, match=message):
        resolve_path(name)


def test_auto_scaling_rule():
    def scaling(**rng):
        return RANGE.validate_python(rng).effective_scaling()

    assert scaling(type="Continuous", min=1e-5, max=1e-1) == "Logarithmic"
    assert scaling(type="Continuous", min=0.01, max=1.0) == "Logarithmic"  # ratio exactly 100
    assert scaling(type="Continuous", min=0.02, max=1.0) == "Linear"
    assert scaling(type="Continuous", min=0.0, max=1.0) == "Linear"
    assert scaling(type="Continuous", min=-1.0, max=1000.0) == "Linear"
    assert scaling(type="Integer", min=1, max=512) == "Logarithmic"
    assert scaling(type="Integer", min=16, max=256) == "Linear"
    assert scaling(type="Continuous", min=1e-5, max=1e-1, scaling="Linear") == "Linear"
    assert to_distribution(RANGE.validate_python({"type": "Continuous", "min": 1e-5, "max": 1e-1})).log


def test_reverse_logarithmic_stays_in_range_and_clusters_near_one():
    space = ranges(momentum={"type": "Continuous", "min": 0.5, "max": 0.999, "scaling": "ReverseLogarithmic"})
    study, values = sample(space)
    xs = [v["momentum"] for v in values]
    assert all(0.5 <= x < 0.999 + 1e-12 for x in xs)
    assert statistics.median(xs) > (0.5 + 0.999) / 2 + 0.1  # linear midpoint 0.75; log over 1-x gives ~0.98
    # the internal parameter samples 1 - x; values_from_params maps back to what the job used
    assert param_name("momentum", space["momentum"]) == "momentum__1m"
    trial = study.trials[0]
    assert set(trial.params) == {"momentum__1m"}
    assert values_from_params(trial.params, space) == values[0]
    assert trial.params["momentum__1m"] == pytest.approx(1 - values[0]["momentum"])


def test_logarithmic_median_near_geometric_mean():
    space = ranges(lr={"type": "Continuous", "min": 1e-5, "max": 1e-1})
    _, values = sample(space)
    lrs = [v["lr"] for v in values]
    assert all(1e-5 <= x <= 1e-1 for x in lrs)
    geometric_mean = math.sqrt(1e-5 * 1e-1)  # 1e-3; a linear scale would put the median near 0.05
    assert abs(math.log10(statistics.median(lrs)) - math.log10(geometric_mean)) < 0.4


def test_integer_log_gives_ints_spread_over_decades():
    space = ranges(batch_size={"type": "Integer", "min": 1, "max": 1024, "scaling": "Logarithmic"})
    _, values = sample(space, n=300)
    sizes = [v["batch_size"] for v in values]
    assert all(isinstance(s, int) and 1 <= s <= 1024 for s in sizes)
    assert 8 <= statistics.median(sizes) <= 128  # geometric mean 32; linear would give ~512
    assert sum(s < 10 for s in sizes) > 50


def test_categorical_lists_round_trip_through_optuna():
    space = ranges(
        head={"type": "Categorical", "values": [[256, 128], [], "512", 64]},
        optimizer={"type": "Categorical", "values": ["adamw", "sgd"]},
    )
    study, values = sample(space, n=60)
    heads = [v["head"] for v in values]
    assert {repr(h) for h in heads} == {repr([256, 128]), repr([]), repr("512"), repr(64)}
    for trial, value in zip(study.trials, values, strict=True):
        assert values_from_params(trial.params, space) == value
    assert coerce_value("model.head", "512") == [512]
    assert coerce_value("model.head", 64) == [64]
    assert coerce_value("model.head", "linear") == []
    assert coerce_value("model.head", ["256", 128]) == [256, 128]
    assert coerce_value("train.epochs", 4.0) == 4 and isinstance(coerce_value("train.epochs", 4.0), int)
    assert coerce_value("train.finetune", True) == "head"
    assert coerce_value("train.lr", 0.5) == 0.5
    with pytest.raises(SpecError, match="model.head"):
        coerce_value("model.head", "wide")


def test_parse_head_is_shared_with_the_train_cli():
    from vizsla.cli import train

    assert parse_head("256,128") == [256, 128] and parse_head(None) is None
    with pytest.raises(SpecError, match="--head"):
        parse_head("-1")
    assert "parse_head" in train.train.__code__.co_names


def test_grid_space_and_size():
    space = ranges(
        optimizer={"type": "Categorical", "values": ["adamw", "sgd"]},
        head={"type": "Categorical", "values": [[256], []]},
        epochs={"type": "Categorical", "values": [1, 2, 3]},
    )
    grid = grid_space(space)
    assert grid == {"optimizer": ["adamw", "sgd"], "head": ["[256]", "[]"], "epochs": [1, 2, 3]}
    assert grid_size(space) == 12
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(grid, seed=0))
    seen = []
    study.optimize(lambda trial: seen.append(repr(suggest(trial, space))) or 0.0, n_trials=20)
    assert len(seen) == 12 and len(set(seen)) == 12  # every combination once, lists decoded
    with pytest.raises(SpecError, match="ranges.lr"):
        grid_space({**space, **ranges(lr={"type": "Continuous", "min": 0.1, "max": 1.0})})


def test_to_distributions_uses_internal_names():
    space = ranges(
        lr={"type": "Continuous", "min": 1e-4, "max": 1e-1},
        momentum={"type": "Continuous", "min": 0.0, "max": 0.99, "scaling": "ReverseLogarithmic"},
        epochs={"type": "Integer", "min": 1, "max": 4},
    )
    dists = to_distributions(space)
    assert set(dists) == {"lr", "momentum__1m", "epochs"}
    assert dists["momentum__1m"].low == pytest.approx(0.01) and dists["momentum__1m"].high == pytest.approx(
        1.0
    )
    assert isinstance(dists["epochs"], optuna.distributions.IntDistribution)


def test_trial_spec_dict_validates_as_a_job_spec():
    training = {"data": {"root": "/data/flowers"}, "model": {"name": "resnet18"}, "train": {"epochs": 5}}
    values = {
        "lr": 0.003,
        "batch-size": "64",
        "head": "256,128",
        "freeze": "staged",
        "epochs": 2,
        "optimizer": "sgd",
        "weight_decay": 1e-5,
    }
    mapping = trial_spec_dict(training, values, output="runs/tune/trials/trial-0001")
    spec = build_spec(mapping, source="trial")
    assert spec.train.lr == 0.003 and spec.train.batch_size == 64 and spec.model.head == [256, 128]
    assert spec.train.finetune == "staged" and spec.train.epochs == 2 and spec.train.optimizer == "sgd"
    assert spec.train.weight_decay == 1e-5 and spec.model.name == "resnet18"
    assert spec.output == "runs/tune/trials/trial-0001"
    assert training["train"] == {"epochs": 5}  # the static part is not changed in place


def test_none_written_as_text_unsets_an_optional_field():
    assert coerce_value("train.layer_decay", "none") is None
    assert coerce_value("data.auto_augment", "None") is None
    assert coerce_value("train.ema_decay", "null") is None
    assert coerce_value("train.schedule", "none") == "none"  # not optional: the spec reports the value
    training = {"data": {"root": "/data/flowers"}, "train": {"layer_decay": 0.7, "ema_decay": 0.999}}
    spec = build_spec(trial_spec_dict(training, {"layer_decay": "none", "aa": "none"}, "out"), source="trial")
    assert spec.train.layer_decay is None and spec.data.auto_augment is None and spec.train.ema_decay == 0.999
