"""Analytics rows, analytics.csv, the best trial and the summary, on a real in-memory Optuna study."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from vizsla.tuning.analytics import (
    best_trial,
    summarize,
    trial_rows,
    write_analytics_csv,
)

DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "head": CategoricalDistribution(["linear", "mlp"]),
}


def add(
    study: optuna.Study,
    state: TrialState,
    value: float | None = None,
    *,
    lr: float = 0.01,
    head: str = "linear",
    job_dir: Path | None = None,
    **attrs: Any,
) -> None:
    """A trial with the user attrs the worker sets (hyperparameters include a fixed one, epochs)."""
    params = {"lr": lr, "head": head}
    user_attrs = {
        "hyperparameters": {**params, "epochs": 3},
        "started": "2026-01-01T10:00:00+00:00",
        "finished": "2026-01-01T10:01:30+00:00",
        "duration_s": 90.0,
        "worker": "host:1",
        **attrs,
    }
    if job_dir is not None:
        user_attrs["job_dir"] = str(job_dir)
    study.add_trial(
        create_trial(
            state=state,
            value=value,
            params=params,
            distributions=DISTRIBUTIONS,
            intermediate_values={0: 0.3, 1: 0.5}
            if state in (TrialState.PRUNED, TrialState.COMPLETE)
            else None,
            user_attrs=user_attrs,
        )
    )


def write_job(path: Path, test_accuracy: float) -> Path:
    path.mkdir(parents=True)
    (path / "result.json").write_text(
        json.dumps({"status": "Completed", "metrics": {"test_accuracy": test_accuracy}})
    )
    return path


def build_study(tmp_path: Path, direction: str = "maximize") -> optuna.Study:
    """Trials: 0 warm-start parent, 1 completed, 2 failed, 3 pruned, 4 died (retried), 5 its retry,
    6 over budget (COMPLETE with the highest value, to show it is never best), 7 running."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction)
    add(
        study,
        TrialState.COMPLETE,
        0.80,
        lr=0.05,
        not_counted="warm_start",
        status="Completed",
        job_dir=write_job(tmp_path / "parent" / "trial-0007", 0.77),
    )
    add(
        study,
        TrialState.COMPLETE,
        0.85,
        lr=0.001,
        status="Completed",
        job_dir=write_job(tmp_path / "t1", 0.83),
    )
    add(study, TrialState.FAIL, lr=0.09, status="Failed", error="CUDA out of memory", job_dir=tmp_path / "t2")
    add(study, TrialState.PRUNED, 0.5, lr=0.0002, head="mlp", status="Pruned")
    add(
        study,
        TrialState.FAIL,
        lr=0.003,
        head="mlp",
        status="Retried",
        error="worker died",
        not_counted="retried",
    )
    add(
        study,
        TrialState.COMPLETE,
        0.90,
        lr=0.003,
        head="mlp",
        retry_of=4,
        status="Completed",
        job_dir=write_job(tmp_path / "t5", 0.88),
    )
    add(study, TrialState.COMPLETE, 0.99, lr=0.02, not_counted="over_budget")
    study.add_trial(
        create_trial(
            state=TrialState.RUNNING,
            params={"lr": 0.004},
            distributions={"lr": DISTRIBUTIONS["lr"]},
            user_attrs={"worker": "host:2"},
        )
    )
    return study


def test_rows_follow_trials_with_statuses_and_sources(tmp_path: Path) -> None:
    rows = trial_rows(build_study(tmp_path))
    assert [r["trial"] for r in rows] == list(range(8))
    assert [r["status"] for r in rows] == [
        "Completed",
        "Completed",
        "Failed",
        "Pruned",
        "Retried",
        "Completed",
        "Completed",
        "InProgress",
    ]
    assert [r["source"] for r in rows] == ["parent"] + ["this job"] * 7
    assert rows[0]["not_counted"] == "warm_start"
    assert rows[1]["objective"] == 0.85 and rows[2]["objective"] is None
    assert rows[1]["epochs"] == 3  # from the "hyperparameters" attr, not only Optuna's params
    assert rows[2]["error"] == "CUDA out of memory"
    assert rows[5]["retry_of"] == 4
    assert rows[7]["lr"] == 0.004 and "epochs" not in rows[7]  # no attr yet: falls back to trial.params
    assert rows[7]["started"] is not None and rows[7]["finished"] is None  # Optuna's own start time


def test_csv_has_stable_columns_and_one_line_per_trial(tmp_path: Path) -> None:
    path = write_analytics_csv(trial_rows(build_study(tmp_path)), tmp_path / "out" / "analytics.csv")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames
        rows = list(reader)
    assert header == [
        "trial",
        "epochs",
        "head",
        "lr",
        "objective",
        "status",
        "started",
        "finished",
        "duration_s",
        "job_dir",
        "error",
        "retry_of",
        "not_counted",
        "worker",
        "source",
    ]
    assert len(rows) == 8
    assert rows[1]["objective"] == "0.85" and rows[1]["lr"] == "0.001" and rows[1]["duration_s"] == "90.0"
    assert rows[2]["objective"] == "" and rows[2]["status"] == "Failed"
    assert rows[7]["epochs"] == "" and rows[7]["status"] == "InProgress"
    assert not list(path.parent.glob(".*.tmp"))  # atomic write leaves no temp file


def test_csv_of_no_trials_is_a_header(tmp_path: Path) -> None:
    path = write_analytics_csv([], tmp_path / "analytics.csv")
    assert path.read_text().splitlines() == [
        "trial,objective,status,started,finished,duration_s,job_dir,error,retry_of,not_counted,worker,source"
    ]


def test_best_trial_skips_over_budget_and_includes_parents(tmp_path: Path) -> None:
    study = build_study(tmp_path)
    assert best_trial(study, "Maximize").number == 5  # not 6 (0.99, over budget)
    assert best_trial(study).number == 5  # the study's own direction
    assert (
        best_trial(study, "Minimize").number == 0
    )  # the warm-start parent counts, as OverallBestTrainingJob
    assert best_trial(study, "Minimize", include_parents=False).number == 1


def test_best_trial_respects_a_minimize_study(tmp_path: Path) -> None:
    study = build_study(tmp_path, direction="minimize")
    assert best_trial(study).number == 0
    assert best_trial(study, optuna.study.StudyDirection.MAXIMIZE).number == 5


def test_best_trial_is_none_without_completed_trials() -> None:
    study = optuna.create_study()
    assert best_trial(study, "Maximize") is None
    add(study, TrialState.FAIL, status="Failed")
    assert best_trial(study, "Maximize") is None


def test_summarize_counts_and_best(tmp_path: Path) -> None:
    summary = summarize(build_study(tmp_path))
    assert summary["trials"] == 8
    assert summary["counted_trials"] == 5  # 1, 2, 3, 5, 7
    assert summary["counts"] == {
        "Completed": 2,
        "Pruned": 1,
        "Failed": 1,
        "Stopped": 0,
        "InProgress": 1,
        "Pending": 0,
        "Retried": 1,
        "OverBudget": 1,
        "WarmStart": 1,
    }
    best = summary["best"]
    assert best["number"] == 5 and best["value"] == 0.90
    assert best["hyperparameters"] == {"lr": 0.003, "head": "mlp", "epochs": 3}
    assert best["job_dir"] == str(tmp_path / "t5")
    assert best["model_path"] == f"{tmp_path / 't5'}/model"
    assert best["test_accuracy"] == pytest.approx(0.88)
    assert best["source"] == "this job"
    assert summary["best_this_job"] == 5
    json.dumps(summary)  # goes into result.json as it is


def test_summarize_of_an_empty_study() -> None:
    summary = summarize(optuna.create_study(direction="minimize"))
    assert summary["trials"] == 0 and summary["best"] is None and summary["direction"] == "minimize"
    assert set(summary["counts"].values()) == {0}


def test_best_without_result_json_has_no_test_accuracy(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize")
    add(study, TrialState.COMPLETE, 0.7, status="Completed", job_dir=tmp_path / "missing")
    best = summarize(study)["best"]
    assert best["test_accuracy"] is None and best["model_path"] == f"{tmp_path / 'missing'}/model"


def test_best_that_saved_no_model_carries_its_warnings(tmp_path: Path) -> None:
    """A script trial that saved into its working directory instead of SM_MODEL_DIR: `vizsla tune best`
    must not point at an empty model folder without saying so."""
    job = write_job(tmp_path / "t0", 0.8)
    result = json.loads((job / "result.json").read_text())
    result["warnings"] = ["the script saved no model into SM_MODEL_DIR (model/)"]
    (job / "result.json").write_text(json.dumps(result))
    (job / "model").mkdir()
    saved = write_job(tmp_path / "t1", 0.7)
    (saved / "model").mkdir()
    (saved / "model" / "model.pth").write_bytes(b"weights")
    study = optuna.create_study(direction="maximize")
    add(study, TrialState.COMPLETE, 0.9, status="Completed", job_dir=job)
    add(study, TrialState.COMPLETE, 0.5, status="Completed", job_dir=saved)
    warnings = summarize(study)["best"]["warnings"]
    assert warnings[0].startswith("the script saved no model into SM_MODEL_DIR")
    assert f"{job / 'model'} is missing or empty" in warnings[1]
    study = optuna.create_study(direction="maximize")
    add(study, TrialState.COMPLETE, 0.5, status="Completed", job_dir=saved)
    assert summarize(study)["best"]["warnings"] == []
