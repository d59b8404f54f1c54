"""The tuning report: self-contained HTML with Optuna's plotly figures, and the static history PNG."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial
from plotly.offline import get_plotlyjs

from vizsla.tuning.report import write_history_png, write_reports, write_tuning_report

DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "batch_size": IntDistribution(8, 64, log=True),
    "head": CategoricalDistribution(["linear", "mlp"]),
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def add(
    study: optuna.Study, number: int, state: TrialState, value: float | None = None, **attrs: object
) -> None:
    params = {
        "lr": 10 ** -(1 + number % 3),
        "batch_size": 8 * (1 + number % 4),
        "head": ["linear", "mlp"][number % 2],
    }
    curve = {} if state == TrialState.FAIL or value is None else {e: value * (e + 1) / 3 for e in range(3)}
    study.add_trial(
        create_trial(
            state=state,
            value=value,
            params=params,
            distributions=DISTRIBUTIONS,
            intermediate_values=curve,
            user_attrs={"hyperparameters": params, "status": attrs.pop("status", None), **attrs},
        )
    )


def full_study() -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    add(study, 0, TrialState.COMPLETE, 0.70, not_counted="warm_start", status="Completed")
    for n, value in enumerate((0.72, 0.81, 0.78, 0.86), start=1):
        add(study, n, TrialState.COMPLETE, value, status="Completed", job_dir=f"/jobs/t{n}")
    add(study, 5, TrialState.PRUNED, 0.4, status="Pruned")
    add(study, 6, TrialState.FAIL, status="Failed", error="CUDA <out> of memory")
    add(study, 7, TrialState.FAIL, status="Retried", not_counted="retried", error="worker died")
    add(study, 8, TrialState.COMPLETE, 0.99, not_counted="over_budget")
    return study


def assert_self_contained(html: str) -> None:
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts and not any("src=" in tag for tag in scripts)
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']https?://", html)
    assert html.count(get_plotlyjs()[:2000]) == 1  # plotly.js itself is inline, once


def test_report_of_a_full_study_has_every_figure(tmp_path: Path) -> None:
    path = write_tuning_report(
        full_study(), tmp_path / "reports" / "tuning.html", "tune-resnet", "valid_accuracy"
    )
    html = path.read_text()
    assert_self_contained(html)
    for key in ("history", "intermediate", "parallel", "importances", "slice"):
        assert f'id="figure-{key}"' in html, key
        assert re.search(rf'Plotly\.newPlot\(\s*"figure-{key}"', html), key
    assert "tune-resnet" in html and "valid_accuracy" in html
    # the best trial is 4 (0.86): 8 (0.99) was over budget
    assert re.search(r"<th>Best trial</th><td>4</td>", html)
    assert "CUDA &lt;out&gt; of memory" in html  # user text is escaped
    assert html.count('<tr class="status-') == 9
    assert "parent" in html  # the warm-start trial is marked in the table


def test_report_of_an_empty_study_explains_instead_of_failing(tmp_path: Path) -> None:
    html = write_tuning_report(optuna.create_study(), tmp_path / "t.html", "empty", "valid_loss").read_text()
    assert_self_contained(html)
    assert "figure-history" not in html
    assert "No trial has completed yet." in html
    assert "No trial reported per-epoch values." in html
    assert "none yet (no trial completed)" in html
    assert "No trials yet." in html


def test_report_of_one_completed_trial_skips_importances(tmp_path: Path) -> None:
    study = optuna.create_study(direction="minimize")
    add(study, 0, TrialState.COMPLETE, 0.3, status="Completed")
    add(study, 1, TrialState.FAIL, status="Failed")
    html = write_tuning_report(study, tmp_path / "t.html", "one", "valid_loss").read_text()
    assert 'id="figure-history"' in html and 'id="figure-slice"' in html
    assert "figure-importances" not in html
    assert "need at least 2 completed trials (1 so far)" in html


def test_importances_need_a_varying_parameter(tmp_path: Path) -> None:
    study = optuna.create_study()
    for value in (0.3, 0.4):
        add(study, 0, TrialState.COMPLETE, value)  # same params twice
    html = write_tuning_report(study, tmp_path / "t.html", "flat", "valid_loss").read_text()
    assert "figure-importances" not in html
    assert "No hyperparameter took more than one value" in html


def test_history_png_for_full_and_empty_studies(tmp_path: Path) -> None:
    full = write_history_png(
        full_study(), tmp_path / "reports" / "optimization_history.png", "valid_accuracy"
    )
    empty = write_history_png(optuna.create_study(), tmp_path / "empty.png", "valid_accuracy")
    assert full.read_bytes().startswith(PNG_MAGIC) and empty.read_bytes().startswith(PNG_MAGIC)
    assert full.stat().st_size > 10_000


def test_write_reports_writes_both_into_the_reports_folder(tmp_path: Path) -> None:
    html, png = write_reports(full_study(), tmp_path / "reports", "job", "valid_accuracy")
    assert html == tmp_path / "reports" / "tuning.html" and html.is_file()
    assert png == tmp_path / "reports" / "optimization_history.png" and png.is_file()
