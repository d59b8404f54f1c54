import pytest

from vizsla.errors import SpecError
from vizsla.spec import build_spec, load_spec


def test_overrides_win_over_yaml_and_defaults_fill(tmp_path):
    spec = build_spec(
        {"train": {"lr": 0.1, "epochs": 3}, "data": {"root": "x"}}, {"output": "runs/a", "train": {"lr": 0.5}}
    )
    assert spec.train.lr == 0.5 and spec.train.epochs == 3
    assert spec.model.name == "efficientnet_lite0" and spec.job_name == "a"


def test_invalid_values_name_the_field():
    with pytest.raises(SpecError, match="train.epochs"):
        build_spec({"data": {"root": "x"}, "output": "o", "train": {"epochs": 0}})
    with pytest.raises(SpecError, match="train.finetune"):
        build_spec({"data": {"root": "x"}, "output": "o", "train": {"finetune": "most"}})
    with pytest.raises(SpecError, match="train.lrr"):
        build_spec({"data": {"root": "x"}, "output": "o", "train": {"lrr": 1}})


def test_yaml_round_trip(tmp_path):
    spec = build_spec({"data": {"root": "x"}, "output": "o", "model": {"head": [256, 128]}})
    path = tmp_path / "spec.yaml"
    path.write_text(spec.to_yaml())
    assert load_spec(path) == spec


def test_bad_yaml_file_is_a_user_error(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("train: [unclosed")
    with pytest.raises(SpecError, match="job.yaml"):
        load_spec(path)
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "missing.yaml")
