"""The train and tune options come from one flag table whose help is the spec fields' descriptions."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from vizsla.cli import options as o
from vizsla.cli.app import app
from vizsla.cli.options import field_info, given, nest
from vizsla.cli.serve import SERVE_FLAGS
from vizsla.cli.train import TRAIN_FLAGS
from vizsla.cli.tune import TUNE_FLAGS


def _click_params(*path: str) -> dict[str, object]:
    """The click parameters of `vizsla PATH...` by their Python name."""
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return {param.name: param for param in command.params}


@pytest.mark.parametrize(("path", "table"), [(("train",), TRAIN_FLAGS), (("tune",), TUNE_FLAGS)])
def test_every_table_entry_is_an_option_with_its_fields_description(path, table):
    params = _click_params(*path)
    assert set(params) >= {flag.name for flag in table}
    for flag in table:
        param = params[flag.name]
        if not flag.decls:  # the hidden KEY=VALUE words after --hyperparameters
            continue
        names = {name for decl in flag.decls for name in decl.split("/")}
        assert names <= {*param.opts, *param.secondary_opts}, flag.decls
        assert param.help, f"{flag.decls[0]} has no help"
        if flag.path and not flag.help:  # help written nowhere but in the spec
            assert param.help == field_info(flag.spec, flag.path).description
        if flag.path and flag.spec is not None:
            field_info(flag.spec, flag.path)  # the path names a real field


def test_train_and_tune_share_the_job_flags():
    train = {flag.name: flag for flag in TRAIN_FLAGS}
    tune = {flag.name: flag for flag in TUNE_FLAGS}
    for shared in (o.DATA, o.MODEL, o.EPOCHS, o.FINETUNE, o.NO_TRACKING, o.QUIET, o.ENTRY_POINT, o.CHANNELS):
        assert train[shared.name].decls == tune[shared.name].decls == shared.decls
        assert train[shared.name].help_text == tune[shared.name].help_text


def test_no_flag_is_declared_twice_in_a_command():
    for table in (TRAIN_FLAGS, TUNE_FLAGS, SERVE_FLAGS):
        names = [decl.split("/")[0] for flag in table for decl in flag.decls]
        assert len(names) == len(set(names))


def test_a_given_flag_sets_its_field_and_one_not_given_leaves_it():
    values = {"lr": 0.5, "batch_size": None, "head": None, "no_tracking": True, "debug": False, "output": "o"}
    fields = nest(given(TRAIN_FLAGS, values))
    assert fields == {"train": {"lr": 0.5}, "tracking": {"enabled": False}, "output": "o"}
    assert nest(given([o.DATA, o.EPOCHS], {"data": "d", "epochs": 3}, "training.")) == {
        "training": {"data": {"root": "d"}, "train": {"epochs": 3}}
    }


def test_a_flag_overrides_the_yaml_and_the_others_keep_it(tmp_path, monkeypatch):
    """YAML and flags fill one spec: the spec `vizsla train` builds, caught before anything runs."""
    from vizsla import jobs

    (tmp_path / "job.yaml").write_text("data: {root: d}\noutput: o\ntrain: {lr: 0.01, epochs: 7}\n")
    seen = {}

    def fake_run_job(spec, **kwargs):
        seen["spec"] = spec
        return {"status": "Completed", "job_name": spec.job_name, "metrics": {}}

    monkeypatch.setattr(jobs, "run_job", fake_run_job)
    monkeypatch.setattr("vizsla.models.registry.check_model_name", lambda name: None)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app, ["train", "-c", "job.yaml", "--lr", "0.5", "-b", "8", "--head", "64", "--rules", "Overfit"]
    )
    assert result.exit_code == 0, result.output
    spec = seen["spec"]
    assert (spec.train.lr, spec.train.batch_size, spec.train.epochs) == (0.5, 8, 7)
    assert spec.model.head == [64] and spec.data.root == "d"
    assert spec.debug.enabled and not spec.debug.default_rules and spec.debug.rules[0].name == "Overfit"
