"""Issue 18, item 6: a job whose model/ was deleted or whose result.json is truncated does not look
healthy: `jobs list` and `jobs describe` say what is wrong and what to do, and `vizsla serve` refuses it
with one line naming the missing file (exit code 2, no traceback)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from vizsla.cli import jobs
from vizsla.jobdir import JobDir
from vizsla.testing.images import make_image_folder
from vizsla.testing.jobs import tiny_spec_dict

WIDE = {"COLUMNS": "1000", "NO_COLOR": "1"}


def jobs_cli(*args: str) -> Result:
    app = typer.Typer()
    app.add_typer(jobs.app, name="jobs")
    return CliRunner().invoke(app, ["jobs", *args], env=WIDE)


def vizsla(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vizsla", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **WIDE},
    )


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vizsla.jobs import run_job
    from vizsla.spec import build_spec

    root = tmp_path_factory.mktemp("health")
    data = make_image_folder(root / "images", classes=("cat", "dog", "fox"), per_class=6, seed=0)
    result = run_job(build_spec(tiny_spec_dict(data, root / "job", epochs=1)), progress=False)
    assert result["status"] == "Completed", result
    return root / "job"


@pytest.fixture
def runs(finished_job: Path, tmp_path: Path) -> Path:
    """A runs folder with a sound job, one without model/, one without its weights, one truncated."""
    runs = tmp_path / "runs"
    for name in ("sound", "no-model", "no-weights", "truncated"):
        shutil.copytree(finished_job, runs / name)
    shutil.rmtree(runs / "no-model" / "model")
    (runs / "no-weights" / "model" / "model.safetensors").unlink()
    text = (runs / "truncated" / "result.json").read_text()
    (runs / "truncated" / "result.json").write_text(text[: len(text) // 3])
    return runs


def test_list_marks_the_jobs_that_cannot_be_used(runs: Path) -> None:
    listed = jobs_cli("list", str(runs))
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[0]: line for line in listed.output.splitlines() if line.strip()}
    assert "Completed" in rows["sound"] and "Completed (" not in rows["sound"]
    assert "Completed (model missing)" in rows["no-model"]
    assert "Completed (model missing)" in rows["no-weights"]
    assert "Unknown (result.json corrupt)" in rows["truncated"]
    assert "jobs describe" in listed.output, "the list says where to read more"
    completed = jobs_cli("list", str(runs), "--status", "Completed")
    assert "no-model" in completed.output, "a broken Completed job still filters as Completed"


def test_describe_names_the_missing_model_and_what_to_do(runs: Path) -> None:
    described = jobs_cli("describe", str(runs / "no-model"))
    assert described.exit_code == 0, described.output
    assert "Completed (model missing)" in described.output
    assert f"{(runs / 'no-model' / 'model').resolve()} is missing" in described.output
    assert "--overwrite" in described.output
    weights = jobs_cli("describe", str(runs / "no-weights"))
    assert "lacks model.safetensors" in weights.output
    from vizsla.jobhealth import job_problems

    assert job_problems(JobDir(runs / "sound")) == []


def test_serving_a_job_without_its_model_is_one_line_naming_it(runs: Path) -> None:
    for name, missing in (("no-model", "model"), ("no-weights", "model.safetensors")):
        proc = vizsla("serve", str(runs / name), "--port", "0")
        assert proc.returncode == 2, (proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr + proc.stdout
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, proc.stderr
        assert missing in lines[0] and ("missing" in lines[0] or "lacks" in lines[0]), lines[0]
        assert "http://" not in proc.stderr, "nothing was served"


def test_a_truncated_result_is_named_and_resume_rewrites_it(runs: Path) -> None:
    job = runs / "truncated"
    described = jobs_cli("describe", str(job))
    assert described.exit_code == 0, described.output
    assert "Unknown (result.json corrupt)" in described.output
    assert f"{job / 'result.json'} is truncated or corrupt" in described.output
    assert f"vizsla train --resume {job}" in described.output
    from vizsla.cli.app import app

    resumed = CliRunner().invoke(app, ["train", "--resume", str(job), "--quiet"])
    assert resumed.exit_code == 0, (resumed.output, resumed.exception)
    assert json.loads((job / "result.json").read_text())["status"] == "Completed"
    from vizsla.jobhealth import job_problems

    assert job_problems(JobDir(job)) == []


def test_a_stopped_job_without_its_checkpoint_says_resume_would_start_over(
    finished_job: Path, tmp_path: Path
) -> None:
    from vizsla.jobhealth import job_problems

    job = JobDir(tmp_path / "stopped")
    shutil.copytree(finished_job, job.root)
    result = json.loads(job.result.read_text())
    job.result.write_text(json.dumps({**result, "status": "Stopped"}))
    job.last_checkpoint.unlink()
    assert [p.label for p in job_problems(job)] == ["checkpoint missing"]
