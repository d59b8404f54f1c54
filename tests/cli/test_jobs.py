"""`vizsla jobs list|describe|report` on job directories written by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from vizsla.cli import jobs
from vizsla.errors import UserError
from vizsla.infra.io import atomic_write_json
from vizsla.jobdir import JobDir
from vizsla.spec import DataSpec, JobSpec, ModelSpec

root_app = typer.Typer()
root_app.add_typer(jobs.app, name="jobs")
WIDE = {"COLUMNS": "220", "NO_COLOR": "1"}


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(root_app, ["jobs", *args], env=env or WIDE)


def write_job(path: Path, *, status: str | None = "Completed", start: str = "2024-11-25T10:00:00+00:00",
              duration: float | None = 300.0, model: str = "resnet18", labels: list[str] | None = None,
              valid: float = 0.9, test: float = 0.85) -> JobDir:
    """A job directory with spec.yaml, metrics.jsonl and (unless status is None) result.json."""
    spec = JobSpec(output=str(path), data=DataSpec(root="/data"), model=ModelSpec(name=model))
    job = JobDir(path)
    path.mkdir(parents=True)
    job.spec.write_text(spec.to_yaml())
    job.metrics.write_text(json.dumps({"kind": "epoch", "epoch": 0, "valid_accuracy": 0.42}) + "\n")
    if status is None:
        return job
    job.model_dir.mkdir()  # the model its result names (a job without it lists as "model missing")
    for name in ("config.json", "model.safetensors"):
        (job.model_dir / name).write_text("{}")
    labels = labels or ["ants", "bees"]
    n = len(labels)
    atomic_write_json(job.result, {
        "job_name": path.name, "job_dir": str(path), "status": status,
        "failure_reason": "CUDA out of memory" if status == "Failed" else None, "stop_reason": None,
        "start_time": start, "end_time": None, "duration_s": duration,
        "hyperparameters": {"model.name": model, "train.lr": 0.001},
        "metrics": {"valid_accuracy": valid, "test_accuracy": test, "test_loss": 0.4},
        "test_source": "test", "epochs_completed": 3, "best_epoch": 1,
        "best_metric": {"name": "valid_accuracy", "value": valid}, "best_model_path": str(path / "model"),
        "per_class": {"split": "test", "labels": labels, "precision": [0.5] * n,
                      "recall": [0.5] * n, "f1": [i / n for i in range(n)], "support": [10] * n},
        "data": {"classes": n, "images": {"train": 100, "valid": 20, "test": 20}, "bad_files": 1},
        "mlflow": {"tracking_uri": "sqlite:///runs/mlflow.db", "experiment": "vizsla", "run_id": "run-abc"},
    })
    return job


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    write_job(runs / "alpha", start="2024-11-25T10:00:00+00:00", duration=100.0)
    write_job(runs / "beta", status="Failed", start="2024-11-26T10:00:00+00:00", duration=5.0)
    write_job(runs / "tune-001" / "trials" / "gamma", start="2024-11-24T10:00:00+00:00", duration=900.0,
              model="efficientnet_lite0")
    write_job(runs / "delta", status=None)
    copy = runs / "mlartifacts" / "1" / "abc"  # MLflow's copy of a spec.yaml is not a job
    copy.mkdir(parents=True)
    (copy / "spec.yaml").write_text("output: x\n")
    return runs


def rows_order(output: str, names: list[str]) -> list[str]:
    return sorted(names, key=output.index)


def test_list_shows_all_jobs_up_to_three_levels_deep(runs: Path) -> None:
    result = invoke("list", str(runs))
    assert result.exit_code == 0, result.output
    for text in ("alpha", "beta", "gamma", "tune-001/trials/gamma", "delta", "Completed", "Failed", "Unknown",
                 "efficientnet_lite0", "resnet18", "1m 40s", "0.9000", "0.8500", "3/5"):
        assert text in result.output
    assert "abc" not in result.output
    assert "0.4200" in result.output  # delta has no result.json: its latest epoch's valid accuracy


def test_list_sorts_by_start_duration_and_name(runs: Path) -> None:
    names = ["alpha", "beta", "gamma", "delta"]
    by_start = rows_order(invoke("list", str(runs)).output, ["alpha", "beta", "gamma"])
    assert by_start == ["beta", "alpha", "gamma"]  # newest first
    by_duration = rows_order(invoke("list", str(runs), "--sort", "duration").output, names)
    assert by_duration == ["gamma", "alpha", "beta", "delta"]  # longest first, unknown last
    assert rows_order(invoke("list", str(runs), "--sort", "name").output, names) == sorted(names)


def test_list_on_a_narrow_terminal_keeps_names_and_numbers(runs: Path) -> None:
    result = invoke("list", str(runs), env={"COLUMNS": "80", "NO_COLOR": "1"})
    assert "tune-001/trials/gamma" in result.output and "0.8500" in result.output
    assert "Model" not in result.output and "Start time" not in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80


def test_list_shows_a_job_name_that_differs_from_its_folder(tmp_path: Path) -> None:
    job = write_job(tmp_path / "runs" / "folder-7")
    result_json = json.loads(job.result.read_text()) | {"job_name": "my-experiment", "status": "InProgress"}
    atomic_write_json(job.result, result_json)
    result = invoke("list", str(tmp_path / "runs"))
    assert "folder-7 (my-experiment)" in result.output and "InProgress" in result.output


def test_list_filters_by_status_case_insensitively(runs: Path) -> None:
    result = invoke("list", str(runs), "--status", "failed")
    assert result.exit_code == 0
    assert "beta" in result.output and "alpha" not in result.output and "gamma" not in result.output


def test_list_colours_the_status(runs: Path) -> None:
    result = invoke("list", str(runs), env={"COLUMNS": "220", "FORCE_COLOR": "1", "TERM": "xterm-256color"})
    assert "\x1b[32mCompleted" in result.output and "\x1b[31mFailed" in result.output


def test_list_of_empty_folder_is_friendly(tmp_path: Path) -> None:
    result = invoke("list", str(tmp_path))
    assert result.exit_code == 0
    assert "No training jobs" in result.output


def test_list_of_missing_folder_is_a_user_error(tmp_path: Path) -> None:
    result = invoke("list", str(tmp_path / "nope"))
    assert isinstance(result.exception, UserError)
    assert "runs folder not found" in str(result.exception)


def test_describe_shows_summary_metrics_classes_data_and_outputs(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job", status="Failed", labels=["ants", "[red]bees[/red]"])
    job.bad_files.parent.mkdir()
    job.bad_files.write_text("path,reason\nx.jpg,truncated\n")
    job.loss_plot.write_bytes(b"png")
    result = invoke("describe", str(job.root))
    assert result.exit_code == 0, result.output
    for text in ("Failed", "CUDA out of memory", "5m 00s", "train.lr", "0.001", "test_loss", "0.4000",
                 "2 (1-based)", "valid_accuracy = 0.9000", "[red]bees[/red]", "Train images", "Bad files",
                 str(job.bad_files), str(job.model_dir), str(job.loss_plot), "run-abc", "sqlite:///runs/mlflow.db"):
        assert text in result.output, text
    assert str(job.confusion_matrix_plot) not in result.output  # not written: not listed


def test_describe_many_classes_shows_best_and_worst_five(tmp_path: Path) -> None:
    labels = [f"class_{i:02d}" for i in range(12)]
    result = invoke("describe", str(write_job(tmp_path / "job", labels=labels).root))
    assert "5 best and 5 worst of 12 by f1" in result.output
    shown = [label for label in labels if label in result.output]
    assert shown == labels[:5] + labels[-5:]  # f1 grows with the index
    assert rows_order(result.output, ["class_11", "class_07", "class_04", "class_00"]) == [
        "class_11", "class_07", "class_04", "class_00"]


def test_describe_json_prints_result_json(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job")
    result = invoke("describe", str(job.root), "--json")
    assert result.exit_code == 0
    assert json.loads(result.output) == json.loads(job.result.read_text())


def test_describe_job_without_result(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job", status=None)
    result = invoke("describe", str(job.root))
    assert result.exit_code == 0, result.output
    assert "Unknown" in result.output and "Last activity" in result.output and "model.name" in result.output
    json_result = invoke("describe", str(job.root), "--json")
    assert isinstance(json_result.exception, UserError) and "no result.json" in str(json_result.exception)


def test_describe_of_a_non_job_folder_is_a_user_error(tmp_path: Path) -> None:
    result = invoke("describe", str(tmp_path))
    assert isinstance(result.exception, UserError)
    assert str(result.exception).startswith(f"{tmp_path} is not a vizsla job directory (no spec.yaml)")


def test_report_rebuilds_plots_and_html(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job")
    result = invoke("report", str(job.root))
    assert result.exit_code == 0, result.output
    assert "training.html" in result.output
    assert job.loss_plot.is_file() and job.training_report.is_file()
    assert "data:image/png;base64," in job.training_report.read_text()
    assert isinstance(invoke("report", str(tmp_path)).exception, UserError)


def test_importing_the_jobs_cli_stays_light() -> None:
    code = ("import sys, vizsla.cli.jobs; "
            "print(sorted(m for m in ('torch', 'mlflow', 'matplotlib', 'jinja2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _add_times(job: JobDir, **times: object) -> None:
    result = json.loads(job.result.read_text())
    atomic_write_json(job.result, {**result, **times})


def test_describe_shows_the_time_of_each_phase(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job", duration=98.0)
    phases = {"startup": 6.7, "validate": 9.0, "extract": 75.0, "train": 5.0, "evaluate": 0.3,
              "finalize": 2.0}
    _add_times(job, phases=phases, attempts=1, total_duration_s=98.0,
               attempt_start_time="2024-11-25T10:00:00+00:00")
    result = invoke("describe", str(job.root))
    assert result.exit_code == 0, result.output
    assert "Time per phase" in result.output
    for name, share in (("startup", "6.8%"), ("validate", "9.2%"), ("extract", "76.5%"), ("train", "5.1%"),
                        ("evaluate", "0.3%"), ("finalize", "2.0%")):
        line = next(line for line in result.output.splitlines() if line.strip().startswith(name))
        assert share in line, line
    assert "1m 15s" in result.output  # extract
    assert "Total duration" not in result.output and "Attempt start" not in result.output


def test_resumed_job_lists_its_total_and_describes_both(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    job = write_job(runs / "resumed", duration=60.0)
    _add_times(job, attempts=2, total_duration_s=150.0, attempt_start_time="2024-11-25T12:00:00+00:00",
               phases={"startup": 5.0, "train": 55.0})
    listed = invoke("list", str(runs))
    assert listed.exit_code == 0, listed.output
    assert "2m 30s" in listed.output, "the list shows the job's time over all attempts"
    described = invoke("describe", str(job.root))
    assert "1m 00s" in described.output and "2m 30s over 2 attempts" in described.output
    assert "Attempt start" in described.output


def test_describe_of_a_job_without_phases_has_no_time_section(tmp_path: Path) -> None:
    result = invoke("describe", str(write_job(tmp_path / "old").root))  # written before phases existed
    assert result.exit_code == 0, result.output
    assert "Time per phase" not in result.output and "5m 00s" in result.output
