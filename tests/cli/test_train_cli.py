"""The real `vizsla` entry point: user errors exit with code 2 and one clear message, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def vizsla(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vizsla", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def _assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


def test_help_explains_every_option():
    proc = vizsla("train", "--help")
    assert proc.returncode == 0
    for option in (
        "--data",
        "--output",
        "--model",
        "--epochs",
        "--lr",
        "--batch-size",
        "--config",
        "--resume",
        "--head",
        "--finetune",
        "--weights",
        "--tracking-uri",
    ):
        assert option in proc.stdout


def test_missing_folder(tmp_path):
    _assert_user_error(
        vizsla("train", "--data", str(tmp_path / "nope"), "--output", str(tmp_path / "o")), "nope"
    )


def test_one_class_folder(tmp_path):
    from vizsla.testing.images import make_image_folder

    root = make_image_folder(tmp_path / "one", classes=("only",), per_class=4)
    _assert_user_error(
        vizsla("train", "--data", str(root), "--output", str(tmp_path / "o"), "--no-tracking"), "class"
    )


def test_unknown_model(tiny_folder, tmp_path):
    _assert_user_error(
        vizsla(
            "train",
            "--data",
            str(tiny_folder),
            "--output",
            str(tmp_path / "o"),
            "--model",
            "resnet343",
            "--no-tracking",
        ),
        "resnet343",
    )


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--epochs", "0"], "train.epochs"),
        (["--finetune", "most"], "train.finetune"),
        (["--head", "256,abc"], "--head"),
        (["--lr", "fast"], "--lr"),
    ],
)
def test_bad_option_values(tiny_folder, tmp_path, args, needle):
    _assert_user_error(
        vizsla("train", "--data", str(tiny_folder), "--output", str(tmp_path / "o"), *args), needle
    )


def test_cli_job_from_yaml_and_flags(tiny_folder, tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text(
        "model: {name: test_efficientnet, weights: none, image_size: 32}\n"
        "train: {epochs: 1, batch_size: 8, precision: fp32, finetune: full}\n"
        "data: {num_workers: 0}\n"
    )
    out = tmp_path / "runs" / "cli-job"
    proc = vizsla(
        "train",
        "--config",
        str(config),
        "--data",
        str(tiny_folder),
        "--output",
        str(out),
        "--lr",
        "0.005",
        "--head",
        "16",
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    assert "Completed" in proc.stderr
    spec = (out / "spec.yaml").read_text()
    assert "lr: 0.005" in spec and "- 16" in spec
    assert (tmp_path / "runs" / "mlflow.db").is_file(), "default MLflow store lives in the runs folder"
    again = vizsla("train", "--config", str(config), "--data", str(tiny_folder), "--output", str(out))
    _assert_user_error(again, "already holds a job")


def test_profile_and_debug_flags_write_their_outputs(tiny_folder, tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text(
        "model: {name: test_efficientnet, weights: none, image_size: 32}\n"
        "train: {epochs: 2, batch_size: 8, precision: fp32, finetune: full}\n"
        "data: {num_workers: 0}\n"
    )
    out = tmp_path / "runs" / "flags-job"
    args = ("--config", str(config), "--data", str(tiny_folder), "--output", str(out))
    proc = vizsla("train", *args, "--profile", "--debug", "--no-tracking", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert (out / "profile" / "summary.json").is_file()
    assert (out / "reports" / "profiler-report.html").is_file()
    assert (out / "debug" / "rules.json").is_file()
    assert 'id="debugger"' in (out / "reports" / "training.html").read_text()
    shown = vizsla("debug", str(out))
    assert shown.returncode == 0, shown.stderr
    assert "LossNotDecreasing" in shown.stdout + shown.stderr
    rebuilt = vizsla("profile", str(out))
    assert rebuilt.returncode == 0, rebuilt.stderr
