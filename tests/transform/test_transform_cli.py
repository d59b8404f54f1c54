"""`vizsla transform` on the command line: a run with a progress-free summary line, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _vizsla(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "vizsla", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def _error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def test_cli_errors_are_one_clear_line(head_job, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = str(tmp_path / "out")
    assert f"model not found: {tmp_path / 'nope'}" in _error_line(
        _vizsla("transform", str(tmp_path / "nope"), "--data", str(empty), "--output", out)
    )
    assert f"no input files found in {empty}" in _error_line(
        _vizsla("transform", str(head_job), "--data", str(empty), "--output", out)
    )
    assert f"input not found: {tmp_path / 'gone'}" in _error_line(
        _vizsla("transform", str(head_job), "--data", str(tmp_path / "gone"), "--output", out)
    )
    assert "0 <= K < N" in _error_line(
        _vizsla("transform", str(head_job), "--data", str(empty), "--output", out, "--shard", "3/3")
    )


def test_cli_run_writes_the_outputs_and_one_summary_line(head_job, photos, tmp_path):
    out = tmp_path / "out"
    done = _vizsla("transform", str(head_job), "--data", str(photos), "--output", str(out), "--format", "csv",
                   "--top-k", "1", "--runtime", "onnx", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "transformed 24 files: 24 predicted, 0 rejected" in done.stderr
    assert len((out / "predictions.csv").read_text().splitlines()) == 25
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runtime"] == "onnx" and summary["predicted"] == 24
    assert len(list(Path(out).rglob("*.out"))) == 24


def test_every_transform_option_is_a_spec_field_with_its_description():
    import typer

    from vizsla.cli.app import app
    from vizsla.cli.options import field_info
    from vizsla.cli.transform import TRANSFORM_FLAGS
    from vizsla.transform.spec import TransformSpec

    command = typer.main.get_command(app).commands["transform"]  # type: ignore[attr-defined]
    params = {param.name: param for param in command.params}
    names = [decl for flag in TRANSFORM_FLAGS for decl in flag.decls]
    assert len(names) == len(set(names))
    for flag in TRANSFORM_FLAGS:
        if flag.path:
            assert params[flag.name].help == field_info(TransformSpec, flag.path).description
        else:
            assert params[flag.name].help
