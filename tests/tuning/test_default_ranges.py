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
