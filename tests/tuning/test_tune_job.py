"""Tuning jobs end to end on tiny data: parallel trial processes, results, failures, kill + resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from typer.testing import CliRunner

from vizsla.cli.app import app
from vizsla.testing.images import make_image_folder
from vizsla.testing.jobs import tiny_spec_dict
from vizsla.tuning.job import run_tuning
from vizsla.tuning.study import create_storage
from vizsla.tuning.tune_spec import build_tune_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tune-data") / "images"
    return make_image_folder(root, classes=("cat", "dog", "fox"), per_class=8, seed=0)


def _training(data: Path, **train: Any) -> dict[str, Any]:
    spec = tiny_spec_dict(data, Path("unused"), **train)
    spec.pop("output")
    return spec


def _space_file(path: Path, data: Path, **fields: Any) -> Path:
    config = {
        "ranges": {
            "lr": {"type": "Continuous", "min": 1e-3, "max": 1e-1, "scaling": "Logarithmic"},
            "batch_size": {"type": "Categorical", "values": [4, 8]},
        },
        "training": _training(data, epochs=2),
        **fields,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _study(tune_dir: Path) -> optuna.Study:
    return optuna.load_study(
        study_name=tune_dir.name, storage=create_storage(str(tune_dir / "study.journal"))
    )


def _counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials() if "not_counted" not in t.user_attrs]


def test_parallel_trials_complete_with_analytics_report_and_best(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two GPUs as the worker sees them (none exist here: the trials still train on the CPU): each of the
    # two parallel places gets its own, instead of every trial starting on the first GPU.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    out = tmp_path / "tune-001"
    config = yaml.safe_load(_space_file(tmp_path / "space.yaml", data).read_text())
    spec = build_tune_spec(
        config, {"output": str(out), "max_jobs": 4, "max_parallel": 2, "strategy": "Random"}, source="test"
    )
    summary = run_tuning(spec, progress=False)

    assert summary["status"] == "Completed"
    assert summary["counts"]["Completed"] == 4
    trials = _counted(_study(out))
    assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["trial_pid"] for t in trials}) == 4  # one process per trial
    for trial in trials:
        result = json.loads((out / trial.user_attrs["job_dir"] / "result.json").read_text())
        assert result["status"] == "Completed"
        assert (
            result["hyperparameters"]["train.batch_size"] == trial.user_attrs["hyperparameters"]["batch_size"]
        )
        assert trial.value == pytest.approx(result["metrics"]["valid_accuracy"])
        assert sorted(trial.intermediate_values) == [0, 1]
        log = (out / "logs" / f"trial-{trial.number:04d}.log").read_text()
        assert f"CUDA_VISIBLE_DEVICES={trial.user_attrs['gpus'][0]}" in log
    first, second = sorted(trials, key=lambda t: t.number)[:2]  # started together, in places 0 and 1
    assert (first.user_attrs["gpus"], second.user_attrs["gpus"]) == (["0"], ["1"])
    rows = (out / "analytics.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("trial,batch_size,lr,objective,status")
    assert (out / "reports" / "tuning.html").stat().st_size > 10_000
    assert (out / "reports" / "optimization_history.png").is_file()

    best = CliRunner().invoke(app, ["tune", "best", str(out), "--json"])
    assert best.exit_code == 0, best.output
    record = json.loads(best.output)
    assert record["value"] == max(t.value for t in trials)
    assert Path(record["model_path"]).is_dir()
    # trials defer their plots and report (outputs: deferred); the tuning job draws the best trial's
    reports = {t.number: out / t.user_attrs["job_dir"] / "reports" / "training.html" for t in trials}
    drawn = {number: report.is_file() for number, report in reports.items()}
    assert drawn == {t.number: t.number == record["number"] for t in trials}
    assert (Path(record["job_dir"]) / "confusion_matrix.png").is_file()

    listing = CliRunner().invoke(app, ["jobs", "list", str(tmp_path)], env={"COLUMNS": "200"})
    assert listing.exit_code == 0, listing.output
    assert "4/4 trials" in listing.output and "trial-0003" in listing.output


def test_a_failing_trial_is_recorded_and_the_others_run(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "tune-grid"
    config = {
        "ranges": {
            "model": {"type": "Categorical", "values": ["test_efficientnet", "no_such_model_xyz"]},
            "batch_size": {"type": "Categorical", "values": [8]},
        },
        "training": _training(data, epochs=1),
        "strategy": "Grid",
        "max_parallel": 2,
    }
    summary = run_tuning(build_tune_spec(config, {"output": str(out)}, source="test"), progress=False)

    assert summary["counts"]["Completed"] == 1 and summary["counts"]["Failed"] == 1
    failed = next(t for t in _counted(_study(out)) if t.state == optuna.trial.TrialState.FAIL)
    assert failed.user_attrs["hyperparameters"]["model"] == "no_such_model_xyz"
    assert "no_such_model_xyz" in failed.user_attrs["error"]


def _tune_command(space: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "vizsla",
        "tune",
        "--space",
        str(space),
        "--output",
        str(out),
        "--max-jobs",
        "4",
        "--max-parallel",
        "1",
        "--quiet",
        *extra,
    ]


def _epochs_done(job_dir: Path) -> list[int]:
    path = job_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["epoch"] for r in records if r.get("kind") == "epoch"]


def test_sigkill_then_rerun_completes_the_budget_without_repeats_or_losses(
    data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tune-kill"
    slow = _training(data, epochs=4)  # 96 px: epochs slow enough that the kill lands inside a trial
    slow["model"]["image_size"] = 96
    space = _space_file(tmp_path / "space.yaml", data, training=slow)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(
        _tune_command(space, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 240
    killed_trial = None
    while time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.3)
        if not (out / "study.journal").is_file():
            continue
        try:
            trials = _study(out).get_trials()
        except KeyError:
            continue
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        running = [
            t for t in trials if t.state == optuna.trial.TrialState.RUNNING and "job_dir" in t.user_attrs
        ]
        # 1 or 2 of its 4 epochs done: enough left that the trial cannot finish before it notices the kill
        done = _epochs_done(out / running[0].user_attrs["job_dir"]) if running else []
        if len(complete) >= 2 and 1 <= len(done) <= 2:
            killed_trial = running[0]
            os.kill(first.pid, signal.SIGKILL)
            break
    first.wait(timeout=30)
    assert killed_trial is not None, (
        f"never caught a running trial: {first.stderr.read() if first.stderr else ''}"
    )
    before = {
        t.number: (
            t.user_attrs["job_dir"],
            (out / t.user_attrs["job_dir"] / "result.json").stat().st_mtime_ns,
        )
        for t in _study(out).get_trials()
        if t.state == optuna.trial.TrialState.COMPLETE
    }

    second = subprocess.run(_tune_command(space, out), env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr

    study = _study(out)
    counted = _counted(study)
    assert len(counted) == 4
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in counted), [
        (t.number, t.state, t.user_attrs.get("error"), t.user_attrs.get("retry_of")) for t in counted
    ] + [second.stderr[-3000:]]
    for number, (job_dir, mtime) in before.items():  # finished trials were not run again
        trial = study.trials[number]
        assert trial.user_attrs["job_dir"] == job_dir
        assert (out / job_dir / "result.json").stat().st_mtime_ns == mtime
    killed = study.trials[killed_trial.number]
    assert killed.user_attrs.get("not_counted") == "retried", (killed.state, killed.user_attrs, second.stderr)
    retry = next(t for t in counted if t.user_attrs.get("retry_of") == killed_trial.number)
    assert retry.params == killed.params
    assert retry.user_attrs["job_dir"] == killed.user_attrs["job_dir"]  # resumed in place
    for trial in counted:  # every counted trial trained each epoch exactly once
        assert _epochs_done(out / trial.user_attrs["job_dir"]) == [0, 1, 2, 3]
    assert len({t.user_attrs["job_dir"] for t in counted}) == 4


def test_target_value_completes_the_job_early(data: Path, tmp_path: Path) -> None:
    config = yaml.safe_load(_space_file(tmp_path / "space.yaml", data).read_text())
    spec = build_tune_spec(
        config,
        {"output": str(tmp_path / "tune-target"), "max_jobs": 6, "completion": {"target_value": 0.0}},
        source="test",
    )
    summary = run_tuning(spec, progress=False)
    assert summary["stop_reason"].startswith("target objective value 0.0 reached")
    assert summary["counts"]["Completed"] == 1


def test_warm_start_copies_parent_trials_without_counting_them(data: Path, tmp_path: Path) -> None:
    config = yaml.safe_load(_space_file(tmp_path / "space.yaml", data).read_text())
    parent = tmp_path / "tune-parent"
    run_tuning(build_tune_spec(config, {"output": str(parent), "max_jobs": 2}, source="test"), progress=False)
    child = tmp_path / "tune-child"
    overrides = {"output": str(child), "max_jobs": 2, "warm_start": {"parents": [str(parent)]}}
    summary = run_tuning(build_tune_spec(config, overrides, source="test"), progress=False)

    trials = _study(child).get_trials()
    copied = [t for t in trials if t.user_attrs.get("not_counted") == "warm_start"]
    assert len(copied) == 2 and {t.params["lr"] for t in copied} == {
        t.params["lr"] for t in _study(parent).trials
    }
    assert len(_counted(_study(child))) == 2  # the budget is this job's own trials
    assert summary["counts"]["Completed"] == 2

    resumed = CliRunner().invoke(app, ["tune", "--resume", str(child), "--quiet"])
    assert resumed.exit_code == 0, resumed.output  # nothing left to run; nothing copied twice
    assert (
        len([t for t in _study(child).get_trials() if t.user_attrs.get("not_counted") == "warm_start"]) == 2
    )


def test_a_changed_objective_is_refused_on_the_same_output(data: Path, tmp_path: Path) -> None:
    space = _space_file(tmp_path / "space.yaml", data)
    out = tmp_path / "tune-changed"
    first = CliRunner().invoke(
        app, ["tune", "--space", str(space), "--output", str(out), "--max-jobs", "1", "-q"]
    )
    assert first.exit_code == 0, first.output
    changed = CliRunner().invoke(
        app,
        ["tune", "--space", str(space), "--output", str(out), "--objective-metric", "valid_loss", "-q"],
    )
    assert changed.exit_code != 0
    assert "different objective" in str(changed.exception) + changed.output
