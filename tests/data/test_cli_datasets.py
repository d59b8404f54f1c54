"""`vizsla datasets` mounted in a small Typer app that handles UserError like the main app (exit 2)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from vizsla.cli.datasets import BUILTIN_DATASETS, app, list_datasets
from vizsla.errors import UserError


def _invoke(*args: str) -> tuple[int, str]:
    """Run `<root> datasets ARGS`; a UserError becomes exit code 2 with its message, as in vizsla.cli.app."""
    root = typer.Typer()

    @root.callback()
    def _main() -> None:
        """Test root."""

    root.add_typer(app, name="datasets")
    try:
        result = CliRunner().invoke(root, ["datasets", *args], catch_exceptions=False)
    except UserError as exc:
        return exc.exit_code, str(exc)
    return result.exit_code, result.output


def test_create_digits_writes_the_folder_and_a_summary(tmp_path):
    out = tmp_path / "digits"
    code, output = _invoke("create", "digits", str(out), "--size", "16", "--seed", "3")
    assert code == 0, output
    for split in ("train", "valid", "test"):
        assert split in output
        assert len(list((out / split).iterdir())) == 10
    assert "1797" in output
    params = json.loads((out / "dataset.json").read_text())["parameters"]
    assert (params["size"], params["seed"]) == (16, 3)

    code, again = _invoke("create", "digits", str(out), "--size", "16", "--seed", "3")
    assert code == 0 and "1797" in again


def test_existing_other_content_exits_2_and_overwrite_replaces(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "train").mkdir()
    code, message = _invoke("create", "digits", str(out), "--size", "8")
    assert code == 2 and "--overwrite" in message
    code, output = _invoke("create", "digits", str(out), "--size", "8", "--overwrite")
    assert code == 0, output
    assert (out / "dataset.json").is_file()


def test_unknown_name_exits_2_with_the_known_names(tmp_path):
    code, message = _invoke("create", "mnist", str(tmp_path / "x"))
    assert code == 2
    assert "unknown dataset 'mnist'" in message and "known datasets: digits" in message
    assert not (tmp_path / "x").exists()


def test_size_out_of_range_is_a_usage_error(tmp_path):
    code, output = _invoke("create", "digits", str(tmp_path / "x"), "--size", "4")
    assert code == 2 and "--size" in output


def test_list_names_each_builtin_dataset():
    code, output = _invoke("list")
    assert code == 0
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == len(list_datasets())
    for name in list_datasets():
        assert any(line.startswith(name) for line in lines)


@pytest.mark.parametrize("name", list_datasets())
def test_builtin_registry_is_consistent(name):
    assert BUILTIN_DATASETS[name].name == name and BUILTIN_DATASETS[name].description
