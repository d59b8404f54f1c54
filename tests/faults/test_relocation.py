"""Issue 18, item 1: a job folder names no absolute path to itself. Moved, copied or renamed, a training
job resumes, describes and serves from where it is now, a tuning job continues its study with its trials
there, and folders written with absolute paths (before this) are moved along."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from vizsla.callbacks import Callback
from vizsla.jobdir import JobDir
from vizsla.testing.cli import invoke_cli
from vizsla.testing.images import make_image_folder
from vizsla.testing.jobs import tiny_spec_dict

WIDE = {"COLUMNS": "300", "NO_COLOR": "1"}


class StopAfterFirstEpoch(Callback):
    """Stop the job at the end of its first epoch, as SIGTERM would: Stopped, resumable."""

    def epoch_end(self, state: Any) -> None:
        state.request_stop("test: stopped after the first epoch")


vizsla = invoke_cli  # `vizsla ARGS` run in this process


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("relocation-data") / "images"
    return make_image_folder(root, classes=("cat", "dog", "fox"), per_class=8, seed=0)


@pytest.fixture(scope="module")
def stopped_job(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A job stopped after 1 of 3 epochs: its checkpoint, model, spec and result are written."""
    from vizsla.jobs import run_job
    from vizsla.spec import build_spec

    out = tmp_path_factory.mktemp("relocation-job") / "job"
    spec = build_spec(tiny_spec_dict(data, out, epochs=3))
    result = run_job(spec, callbacks=[StopAfterFirstEpoch()], progress=False)
    assert result["status"] == "Stopped", result
    return out


def _names_no_absolute_path_to_itself(folder: Path) -> None:
    for name in ("spec.yaml", "result.json"):
        text = (folder / name).read_text()
        assert str(folder.resolve()) not in text, f"{name} names its own folder: {text}"


def _as_written_before(job: Path) -> None:
    """Rewrite JOB's spec.yaml and result.json with absolute paths, as Vizsla wrote them before."""
    spec = yaml.safe_load((job / "spec.yaml").read_text())
    spec["output"] = str(job.resolve())
    (job / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = json.loads((job / "result.json").read_text())
    result.update(job_dir=str(job.resolve()), best_model_path=str(job.resolve() / "model"))
    (job / "result.json").write_text(json.dumps(result))


def test_a_moved_job_resumes_in_its_new_folder(stopped_job: Path, tmp_path: Path) -> None:
    first, moved = tmp_path / "first", tmp_path / "elsewhere" / "moved"
    shutil.copytree(stopped_job, first)
    _names_no_absolute_path_to_itself(first)
    moved.parent.mkdir()
    shutil.move(first, moved)

    code, output = vizsla("train", "--resume", str(moved), "--quiet")
    assert code == 0, output
    assert not first.exists(), "resuming the moved job recreated its first folder"
    result = JobDir(moved).read_result()
    assert result is not None and result["status"] == "Completed" and result["epochs_completed"] == 3
    assert result["job_dir"] == str(moved.resolve())
    assert result["best_model_path"] == str(moved.resolve() / "model")
    raw = json.loads((moved / "result.json").read_text())
    assert raw["job_dir"] == "." and raw["best_model_path"] == "model"
    assert yaml.safe_load((moved / "spec.yaml").read_text())["output"] == "."


def test_a_copied_job_describes_and_serves_its_own_model(stopped_job: Path, tmp_path: Path) -> None:
    from vizsla.cli import jobs
    from vizsla.serving.server import resolve_target

    copy = tmp_path / "copy"
    shutil.copytree(stopped_job, copy)
    assert JobDir(copy).read_result()["best_model_path"] == str(copy.resolve() / "model")

    app = typer.Typer()
    app.add_typer(jobs.app, name="jobs")
    described = CliRunner().invoke(app, ["jobs", "describe", str(copy)], env=WIDE)
    assert described.exit_code == 0, described.output
    assert str(copy.resolve() / "model") in described.output
    assert str(stopped_job.resolve()) not in described.output, "describe points into the original folder"
    assert resolve_target(copy, best=False) == copy


def test_a_job_written_with_absolute_paths_moves_along(stopped_job: Path, tmp_path: Path) -> None:
    first, moved = tmp_path / "first", tmp_path / "moved"
    shutil.copytree(stopped_job, first)
    _as_written_before(first)
    shutil.move(first, moved)

    assert JobDir(moved).read_result()["best_model_path"] == str(moved.resolve() / "model")
    code, output = vizsla("train", "--resume", str(moved), "--quiet")
    assert code == 0, output
    assert not first.exists()
    assert JobDir(moved).read_result()["status"] == "Completed"
    _names_no_absolute_path_to_itself(moved)
    from vizsla.spec import load_job_spec

    assert load_job_spec(moved).output == str(moved.resolve())


def test_a_store_inside_the_job_folder_moves_with_it(tmp_path: Path) -> None:
    from vizsla.relocation import resolved_record
    from vizsla.spec import DataSpec, JobSpec, TrackingSpec, load_job_spec

    first, moved = tmp_path / "first", tmp_path / "moved"
    first.mkdir()
    spec = JobSpec(
        output=str(first),
        data=DataSpec(root=str(tmp_path / "images")),
        tracking=TrackingSpec(uri=f"sqlite:///{first}/mlflow.db"),
    )
    (first / "spec.yaml").write_text(spec.to_job_yaml())
    assert str(first) not in (first / "spec.yaml").read_text()
    shutil.move(first, moved)
    assert load_job_spec(moved).tracking.uri == f"sqlite:///{moved.resolve()}/mlflow.db"
    assert load_job_spec(moved).data.root == str(tmp_path / "images"), "the data folder is not the job's"
    # result.json written before: absolute paths and store under the first folder move along
    record = {
        "job_dir": str(first),
        "mlflow": {"tracking_uri": f"sqlite:///{first}/mlflow.db"},
        "reports": [str(first / "reports" / "training.html")],
    }
    resolved = resolved_record(record, moved, first)
    assert resolved["mlflow"]["tracking_uri"] == f"sqlite:///{moved.resolve()}/mlflow.db"
    assert resolved["reports"] == [str(moved.resolve() / "reports" / "training.html")]


def test_trials_recorded_absolute_or_relative_are_found_where_the_tuning_job_is(tmp_path: Path) -> None:
    from vizsla.tuning.analytics import TrialPlaces

    here = tmp_path / "tune-renamed"
    (here / "trials" / "trial-0003").mkdir(parents=True)
    (here / "result.json").write_text(json.dumps({"tune_dir": "/old/place/tune"}))  # written before

    def trial(**attrs: Any) -> Any:
        return SimpleNamespace(user_attrs=attrs)

    places = TrialPlaces(here)
    expected = str(here.resolve() / "trials" / "trial-0003")
    assert places.job_dir(trial(job_dir="trials/trial-0003")) == expected
    assert places.job_dir(trial(job_dir="/old/place/tune/trials/trial-0003")) == expected
    assert places.job_dir(trial(job_dir="/elsewhere/job")) == "/elsewhere/job"
    parent = trial(job_dir="trials/trial-0001", not_counted="warm_start", parent=str(tmp_path / "parent"))
    assert places.job_dir(parent) == str(tmp_path / "parent" / "trials" / "trial-0001")


def test_a_renamed_tuning_job_continues_its_study_in_its_new_folder(data: Path, tmp_path: Path) -> None:
    from vizsla.serving.server import resolve_target
    from vizsla.tuning.job import run_tuning
    from vizsla.tuning.tune_spec import build_tune_spec

    training = tiny_spec_dict(data, Path("unused"), epochs=1)
    training.pop("output")
    config = {"ranges": {"lr": {"type": "Continuous", "min": 1e-3, "max": 1e-1}}, "training": training}
    first, renamed = tmp_path / "tune-001", tmp_path / "tune-renamed"
    spec = build_tune_spec(
        config, {"output": str(first), "max_jobs": 1, "max_parallel": 1, "strategy": "Random"}, source="test"
    )
    assert run_tuning(spec, progress=False)["counts"]["Completed"] == 1
    for name in ("tune.yaml", "result.json"):
        assert str(first.resolve()) not in (first / name).read_text(), name
    first.rename(renamed)

    code, output = vizsla("tune", "best", str(renamed), "--json")
    assert code == 0, output
    trial_dir = renamed.resolve() / "trials" / "trial-0000"
    assert json.loads(output)["job_dir"] == str(trial_dir)
    assert resolve_target(renamed, best=True) == trial_dir

    from vizsla.tuning.job import read_saved_mapping

    mapping = read_saved_mapping(renamed)
    assert mapping["study_name"] == "tune-001", "the renamed folder keeps its study"
    summary = run_tuning(build_tune_spec({**mapping, "max_jobs": 2}, {}, source="test"), progress=False)
    assert summary["counts"]["Completed"] == 2, "the study went on: one trial before, one now"
    assert not first.exists(), "continuing the renamed tuning job recreated its first folder"
    assert sorted(p.name for p in (renamed / "trials").iterdir()) == ["trial-0000", "trial-0001"]
    assert summary["best"]["job_dir"].startswith(str(renamed.resolve()))
