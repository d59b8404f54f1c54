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


def test_summary_prints_the_total_and_its_phases():
    from rich.console import Console

    from vizsla.cli.train import _print_summary

    console = Console(record=True, width=300)
    phases = dict(startup=6.7, validate=9.0, extract=75.0, train=5.0, evaluate=0.3, finalize=2.0)
    _print_summary(console, {"status": "Completed", "job_name": "j1", "duration_s": 98.0, "phases": phases,
                             "attempts": 1, "total_duration_s": 98.0, "metrics": {}, "job_dir": "/x"})
    assert (
        "Completed j1 in 98 s (startup 6.7 s, validate 9.0 s, extract 75 s, train 5.0 s, evaluate 0.3 s, "
        "finalize 2.0 s)" in console.export_text()
    )
    console = Console(record=True, width=300)
    _print_summary(console, {"status": "Completed", "job_name": "j2", "duration_s": 30.0, "attempts": 2,
                             "total_duration_s": 564.0, "metrics": {}})
    assert "Completed j2 in 30 s; 9m 24s over 2 attempts" in console.export_text()


def test_command_start_in_process_is_now():
    import time

    from vizsla.cli.train import command_started

    assert abs(command_started() - time.time()) < 1.0  # not the test runner's own start


@pytest.mark.slow
def test_train_counts_from_the_process_start_and_logs_setup(tiny_folder, tmp_path):
    import json
    import time
    from datetime import datetime

    config = tmp_path / "job.yaml"
    config.write_text(
        "model: {name: test_efficientnet, weights: none, image_size: 32}\n"
        "train: {epochs: 1, batch_size: 8, precision: fp32, finetune: head}\n"
        "data: {num_workers: 0}\n"
        f"cache_dir: {tmp_path / 'cache'}\n"
    )
    out = tmp_path / "runs" / "timed"
    before = time.time()
    proc = vizsla("train", "--config", str(config), "--data", str(tiny_folder), "--output", str(out),
                  "--no-tracking", "--quiet")
    wall = time.time() - before
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    started = datetime.fromisoformat(result["start_time"]).timestamp()
    assert before - 1.5 <= started <= before + 1.5, "counted from the process start, not the training loop"
    assert result["duration_s"] <= wall + 0.5
    phases = result["phases"]
    assert sum(phases.values()) == pytest.approx(result["duration_s"], abs=0.5)
    assert phases["startup"] > 0.2 and phases["extract"] > 0  # startup: the interpreter and its imports
    summary = " ".join(proc.stderr.split())  # rich wraps the line at the pipe's 80 columns
    assert "Completed timed in " in summary and "extract " in summary, proc.stderr
    log = (out / "train.log").read_text()
    assert "feature cache" in log and "data: 3 classes" in log, log
