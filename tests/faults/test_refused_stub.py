"""Issue 18, item 7: a command refused by validation leaves no folder that blocks the corrected re-run.

`vizsla train` checks the model name before it writes the job folder; a job refused by its data checks
records itself as Failed (so it lists as such, with the reason), and a folder that holds only such a job
(nothing trained: no checkpoint, model or metrics) is taken by the next run without --overwrite. A folder
with training output in it stays protected. `vizsla tune` checks the model and the data before it writes
anything (else every trial fails in turn and spends the budget), and script mode checks its inputs first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vizsla.jobdir import JobDir
from vizsla.testing.cli import invoke_cli
from vizsla.testing.images import make_image_folder

TINY = [
    "--model",
    "test_efficientnet",
    "--weights",
    "none",
    "--image-size",
    "32",
    "--epochs",
    "1",
    "--batch-size",
    "8",
    "--finetune",
    "full",
    "--precision",
    "fp32",
    "--workers",
    "0",
    "--no-tracking",
    "--quiet",
]


def vizsla(*args: str) -> subprocess.CompletedProcess:
    """The real command line (a user error: exit code 2, one message, no traceback)."""
    return subprocess.run([sys.executable, "-m", "vizsla", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COLUMNS": "1000"})


run = invoke_cli  # `vizsla ARGS` in this process (faster)


def _refused(proc: subprocess.CompletedProcess | tuple[int, str], needle: str) -> None:
    code, output = (proc.returncode, proc.stderr + proc.stdout) if not isinstance(proc, tuple) else proc
    assert code == 2, (code, output)
    assert "Traceback" not in output
    assert needle in output, output


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(three-class image folder, one-class image folder that fails the data checks)."""
    root = tmp_path_factory.mktemp("refused")
    good = make_image_folder(root / "good", classes=("cat", "dog", "fox"), per_class=6, seed=0)
    one = make_image_folder(root / "one", classes=("only",), per_class=6, seed=0)
    return good, one


def test_train_refused_for_an_unknown_model_writes_nothing(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    good, _ = folders
    out = tmp_path / "job"
    args = [a if a != "test_efficientnet" else "test_efficientnetz" for a in TINY]
    _refused(vizsla("train", "--data", str(good), "--output", str(out), *args), "test_efficientnetz")
    assert not out.exists()
    code, output = run("train", "--data", str(good), "--output", str(out), *TINY)
    assert code == 0, output


def test_train_refused_by_the_data_checks_can_be_rerun_into_the_same_folder(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    good, one = folders
    out = tmp_path / "job"
    _refused(run("train", "--data", str(one), "--output", str(out), *TINY), "class")
    result = JobDir(out).read_result()
    assert result is not None and result["status"] == "Failed", "the refused job lists as Failed"
    assert "class" in result["failure_reason"]
    code, output = run("train", "--data", str(good), "--output", str(out), *TINY)
    assert code == 0, output
    assert JobDir(out).read_result()["status"] == "Completed"
    again = run("train", "--data", str(good), "--output", str(out), *TINY)
    _refused(again, "already holds a job")  # a job that trained is never replaced without --overwrite


def test_only_a_job_that_trained_nothing_gives_its_folder_up(tmp_path: Path) -> None:
    def failed_job(name: str, *extra: str) -> JobDir:
        job = JobDir(tmp_path / name)
        (job.root / "data").mkdir(parents=True)
        job.spec.write_text("output: .\n")
        job.result.write_text(json.dumps({"status": "Failed", "job_dir": "."}))
        job.log.write_text("")
        job.data_report.write_text("{}")
        for path in extra:
            (job.root / path).parent.mkdir(parents=True, exist_ok=True)
            (job.root / path).write_text("x")
        return job

    assert failed_job("setup").failed_before_training()
    assert not failed_job("trained", "checkpoints/last.pt").failed_before_training()
    assert not failed_job("exported", "model/config.json").failed_before_training()
    assert not failed_job("measured", "metrics.jsonl").failed_before_training()
    assert not failed_job("user-file", "notes.txt").failed_before_training()
    running = failed_job("running")
    running.result.unlink()  # no result yet: a job still validating its data
    assert not running.failed_before_training()
    setup = JobDir(tmp_path / "setup")
    setup.clear_failed_setup()
    assert setup.root.is_dir() and not any(setup.root.iterdir())


def test_tune_refused_by_the_model_or_the_data_writes_nothing(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    good, one = folders
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "ranges": {"lr": {"type": "Continuous", "min": 1e-3, "max": 1e-1}},
                "training": {
                    "model": {"name": "test_efficientnet", "weights": "none", "image_size": 32},
                    "train": {"epochs": 1, "batch_size": 8, "finetune": "full", "precision": "fp32"},
                    "data": {"num_workers": 0},
                    "tracking": {"enabled": False},
                },
            }
        )
    )
    out = tmp_path / "tune"
    common = ["--space", str(space), "--output", str(out), "--max-jobs", "1", "--max-parallel", "1", "-q"]
    _refused(run("tune", "--data", str(one), *common), "class")
    assert not out.exists(), "a tuning job whose every trial would fail writes nothing"
    _refused(run("tune", "--data", str(good), "--model", "test_efficientnetz", *common), "test_efficientnetz")
    assert not out.exists()


def test_script_mode_checks_its_inputs_before_writing_the_job(tmp_path: Path) -> None:
    out = tmp_path / "job"
    _refused(run("train", "--entry-point", str(tmp_path / "missing.py"), "--output", str(out)), "missing.py")
    assert not out.exists()
    script = tmp_path / "train.py"
    script.write_text("print('ok')\n")
    proc = vizsla(
        "train",
        "--entry-point",
        str(script),
        "--channel",
        f"training={tmp_path / 'nope'}",
        "--output",
        str(out),
        "--no-tracking",
    )
    _refused(proc, "nope")
    assert not out.exists()
    proc = vizsla("train", "--entry-point", str(script), "--output", str(out), "--no-tracking", "--quiet")
    assert proc.returncode == 0, proc.stderr
