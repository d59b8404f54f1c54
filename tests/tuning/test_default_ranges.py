"""`vizsla tune --space lr,batch_size`: named hyperparameters get the seed project's default ranges."""

from __future__ import annotations

import pytest

from vizsla.errors import SpecError
from vizsla.tuning.default_ranges import describe, is_name_list, ranges_from_names
from vizsla.tuning.tune_spec import build_tune_spec


def test_names_give_the_seed_projects_ranges_under_the_users_names(tmp_path):
    ranges = ranges_from_names("lr, batch_size")
    assert ranges == {
        "lr": {"type": "Continuous", "min": 0.001, "max": 0.1, "scaling": "Logarithmic"},
        "batch_size": {"type": "Categorical", "values": [32, 64, 128, 256, 512]},
    }
    assert describe(ranges) == (
        "lr: continuous 0.001 to 0.1 (log scale); batch_size: one of [32, 64, 128, 256, 512]"
    )
    overrides = {"output": str(tmp_path / "t"), "training": {"data": {"root": "d"}}}
    spec = build_tune_spec({"ranges": ranges}, overrides)
    assert set(spec.ranges) == {"lr", "batch_size"}


def test_a_name_list_is_told_from_a_file(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("ranges: {}\n")
    assert is_name_list("lr,batch_size") and is_name_list("learning_rate")
    assert not is_name_list(space) and not is_name_list("missing.yaml")


def test_unknown_or_rangeless_names_are_refused_with_what_to_do():
    with pytest.raises(SpecError, match="not a known hyperparameter"):
        ranges_from_names("lr,bogus_name")
    with pytest.raises(SpecError, match="no default range for 'seed'") as info:
        ranges_from_names("seed")
    assert "space.yaml" in (info.value.hint or "")


NEW_OPTIONS = (
    "layer_decay,mixup,cutmix,mixup_prob,ema_decay,accumulate_steps,bn_policy,staged_head_epochs,"
    "auto_augment,random_erasing,optimizer,schedule"
)


def _training() -> dict:
    return {"data": {"root": "d"}, "model": {"name": "test_efficientnet"}, "train": {"finetune": "staged"}}


def test_the_new_training_options_have_default_ranges_that_validate(tmp_path):
    ranges = ranges_from_names("layer_decay,mixup")
    assert ranges == {
        "layer_decay": {"type": "Continuous", "min": 0.6, "max": 1.0},
        "mixup": {"type": "Continuous", "min": 0.0, "max": 0.8},
    }
    # build_tune_spec probes each range's ends and values against the JobSpec, as `vizsla tune` does
    spec = build_tune_spec(
        {"ranges": ranges_from_names(NEW_OPTIONS)}, {"output": str(tmp_path / "t"), "training": _training()}
    )
    assert len(spec.ranges) == 12
    assert spec.ranges["ema_decay"].effective_scaling() == "ReverseLogarithmic"
    assert spec.ranges["optimizer"].values == ["adamw", "sgd", "lamb", "lion"]
    assert set(spec.ranges["schedule"].values) == {
        "cosine",
        "onecycle",
        "constant",
        "step",
        "multistep",
        "poly",
        "tanh",
    }


def test_every_sampled_value_of_the_default_ranges_validates_as_a_job_spec(tmp_path):
    import optuna

    from vizsla.spec import build_spec
    from vizsla.tuning.default_ranges import DEFAULT_RANGES
    from vizsla.tuning.space import suggest, trial_spec_dict

    names = ",".join(DEFAULT_RANGES)
    spec = build_tune_spec(
        {"ranges": ranges_from_names(names)}, {"output": str(tmp_path / "t"), "training": _training()}
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen_off = False
    for number in range(40):
        trial = study.ask()
        values = suggest(trial, spec.ranges)
        job = build_spec(trial_spec_dict(spec.training, values, str(tmp_path / f"trial-{number}")))
        assert 0.99 <= job.train.ema_decay <= 0.9999 and 0.6 <= job.train.layer_decay <= 1.0
        assert 1 <= job.train.accumulate_steps <= 4 and job.train.bn_policy in ("train", "frozen")
        assert job.train.optimizer == values["train.optimizer"]
        seen_off |= values["data.auto_augment"] == "none" and job.data.auto_augment is None
        study.tell(trial, 0.0)
    assert seen_off, "'none' in the auto_augment range turns the policy off"


def test_describe_says_how_a_range_near_one_is_sampled():
    assert describe(ranges_from_names("ema")) == "ema: continuous 0.99 to 0.9999 (log scale of 1 - x)"
