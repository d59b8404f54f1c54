"""`vizsla train --entry-point ...` end to end through the real entry point; `vizsla jobs` on script jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).parent / "scripts"
LOSS = "test_loss=Test set: Average loss: ([0-9\\.]+)"


def vizsla(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vizsla", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "250"},  # messages on one line each
    )


def assert_user_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert needle in proc.stderr, proc.stderr


def test_hyperparameters_as_written_in_the_issue(tmp_path):
    train = tmp_path / "data" / "train"
    train.mkdir(parents=True)
    proc = vizsla(
        "train", "--entry-point", "dump_env.py", "--source-dir", str(SCRIPTS),
        "--channel", f"training={train}",
        "--hyperparameters", "epochs=5", "batch-size=64", "learning_rate=1e-3",
        "-H", "use-cuda=True", "--hyperparameter", "model=resnet50",
        "--metric-definition", "accuracy=validation:accuracy=([0-9\\.]+);",
        "--output", str(tmp_path / "runs" / "job-001"), "--no-tracking", "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    job = tmp_path / "runs" / "job-001"
    seen = json.loads((job / "output" / "data" / "seen.json").read_text())
    assert seen["argv"][1:] == [
        "--batch-size", "64", "--epochs", "5", "--learning_rate", "0.001", "--model", "resnet50",
        "--use-cuda", "True",
    ]  # fmt: skip
    result = json.loads((job / "result.json").read_text())
    assert result["hyperparameters"] == {
        "epochs": 5, "batch-size": 64, "learning_rate": 0.001, "use-cuda": True, "model": "resnet50",
    }  # fmt: skip
    assert result["metrics"] == {"accuracy": 0.5}
    assert "Completed job-001" in proc.stderr and "accuracy 0.5" in proc.stderr


def test_training_script_job_then_jobs_list_and_describe(tmp_path):
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    for split, rows in (("train", slice(0, 1200)), ("valid", slice(1200, None))):
        (tmp_path / "data" / split).mkdir(parents=True)
        name = "train.npz" if split == "train" else "test.npz"
        np.savez(tmp_path / "data" / split / name, x=digits.data[rows], y=digits.target[rows])
    runs = tmp_path / "runs"
    proc = vizsla(
        "train", "--entry-point", str(SCRIPTS / "train_model.py"),
        "--channel", "training=data/train", "--channel", "test=data/valid",
        "--hyperparameters", "epochs=1", "batch-size=128",
        "--metric-definition", LOSS, "--output", "runs/job-001", "--no-tracking",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Test set: Average loss:" in proc.stdout  # the script's output streamed live
    assert (runs / "job-001" / "model" / "model.pth").is_file()
    listing = vizsla("jobs", "list", str(runs))
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if "job-001" in line)
    loss = json.loads((runs / "job-001" / "result.json").read_text())["metrics"]["test_loss"]
    assert "Completed" in row and "train_model.py" in row and f"{loss:.4f}" in row
    described = vizsla("jobs", "describe", str(runs / "job-001"))
    assert described.returncode == 0, described.stderr
    assert "Entry point" in described.stdout and "batch-size" in described.stdout
    assert "test_loss" in described.stdout


def test_failed_script_exits_1_with_the_failure_reason(tmp_path):
    proc = vizsla(
        "train", "--entry-point", str(SCRIPTS / "fail_raise.py"), "--output", str(tmp_path / "job"),
        "--no-tracking", "--quiet",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Failed job" in proc.stderr
    assert "ExitCode 1" in proc.stderr and "ValueError: no images under /data/train" in proc.stderr
    assert proc.stderr.count("Traceback") == 0  # the script's traceback went to train.log, not ours
    listing = vizsla("jobs", "list", str(tmp_path), "--status", "Failed")
    assert "fail_raise.py" in listing.stdout


def test_user_errors_exit_2_with_one_message(tmp_path):
    entry = str(SCRIPTS / "dump_env.py")
    out = str(tmp_path / "job")
    assert_user_error(
        vizsla(
            "train", "--entry-point", entry, "--channel", f"training={tmp_path / 'nope'}", "--output", out
        ),
        f"channel 'training': {tmp_path / 'nope'} does not exist",
    )
    assert_user_error(
        vizsla("train", "--entry-point", entry, "--data", str(tmp_path), "--output", out),
        "--data and --entry-point do not go together",
    )
    assert_user_error(
        vizsla("train", "--entry-point", entry, "--channel", "training", "--output", out), "NAME=PATH"
    )
    assert_user_error(
        vizsla("train", "--entry-point", entry, "--metric-definition", "loss=([", "--output", out),
        "invalid regex",
    )
    assert_user_error(
        vizsla("train", "--entry-point", entry, "stray", "--output", out), "unexpected argument"
    )
    assert_user_error(
        vizsla("train", "--data", str(tmp_path), "--channel", "a=b", "--output", out), "--channel"
    )
    assert not (tmp_path / "job").exists()


def test_config_file_and_resume_of_a_script_job(tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text(
        f"entry_point: print_metrics.py\nsource_dir: {SCRIPTS}\nhyperparameters: {{epochs: 3}}\n"
        "metric_definitions:\n  - Name: test_loss\n    Regex: 'Test set: Average loss: ([0-9\\.]+)'\n"
        "sagemaker: {role: arn:aws:iam::123:role/x, instance_type: ml.g4dn.xlarge}\n"
    )
    job = tmp_path / "job"
    proc = vizsla(
        "train", "--config", str(config), "-H", "epochs=4", "--output", str(job), "--no-tracking", "-q"
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((job / "result.json").read_text())
    assert result["hyperparameters"] == {"epochs": 4}
    assert result["sagemaker"] == {"role": "arn:aws:iam::123:role/x", "instance_type": "ml.g4dn.xlarge"}
    assert_user_error(vizsla("train", "--resume", str(job)), "already Completed")
    result["status"] = "Stopped"
    (job / "result.json").write_text(json.dumps(result))
    again = vizsla("train", "--resume", str(job), "-q")
    assert again.returncode == 0, again.stderr
    assert json.loads((job / "result.json").read_text())["status"] == "Completed"


def test_script_under_torchrun_with_nproc_per_node(tmp_path):
    """SageMaker's torch_distributed launcher: torchrun starts the script twice, ranks set in the env."""
    job = tmp_path / "ddp"
    proc = vizsla(
        "train", "--entry-point", "ddp_script.py", "--source-dir", str(SCRIPTS), "--nproc-per-node", "2",
        "--hyperparameters", "epochs=1", "--metric-definition", "world=world_size=([0-9]+);",
        "--output", str(job), "--no-tracking", "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((job / "result.json").read_text())
    assert result["status"] == "Completed"
    assert result["metrics"] == {"world": 2.0}
    assert result["command"][1:4] == ["-m", "torch.distributed.run", "--nproc-per-node=2"]
    log = (job / "train.log").read_text()
    assert "rank 0/2 local_rank 0 sum 3.0" in log and "rank 1/2 local_rank 1 sum 3.0" in log
    assert '"sagemaker_torch_distributed_enabled": true' in log
    assert (job / "model" / "model.pth").is_file()
    spec = (job / "spec.yaml").read_text()
    assert "nproc_per_node: 2" in spec


def test_distributed_script_must_be_python_and_other_launchers_are_refused(tmp_path):
    shell = tmp_path / "train.sh"
    shell.write_text("#!/bin/sh\necho hi\n")
    shell.chmod(0o755)
    proc = vizsla(
        "train", "--entry-point", str(shell), "--nproc-per-node", "2", "--output", str(tmp_path / "j1"),
        "--no-tracking", "--quiet",
    )  # fmt: skip
    assert_user_error(proc, "a distributed script job runs a .py file under torchrun")
    from vizsla.errors import SpecError
    from vizsla.scriptmode.spec import build_script_spec

    base = {"entry_point": "train.py", "output": str(tmp_path / "j2")}
    try:
        build_script_spec({**base, "distribution": {"pytorchddp": {"enabled": True}}})
    except SpecError as exc:
        assert "only {'torch_distributed': {'enabled': True}} (torchrun) is supported" in str(exc)
    else:
        raise AssertionError("pytorchddp was accepted")
    spec = build_script_spec({**base, "distribution": {"torch_distributed": {"enabled": True}}})
    assert spec.distribution is not None and spec.distribution.nproc_per_node >= 1
