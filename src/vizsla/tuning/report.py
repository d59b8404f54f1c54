"""The tuning job's report: one self-contained HTML page of Optuna's plotly figures, plus a static PNG.

plotly.js is embedded inline once and every figure refers to it, so the page opens offline (no CDN). A
figure that Optuna cannot draw for this study (too few trials, no varying parameter) becomes a one-line
note: the report must never fail a tuning job. The PNG is drawn with matplotlib because plotly's image
export needs kaleido, which we do not ship.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vizsla.infra.figures import new_figure, save_png
from vizsla.infra.formatting import format_duration, format_number, format_time
from vizsla.infra.io import atomic_write_text
from vizsla.infra.rendering import render_template
from vizsla.tuning.analytics import (
    BEST_ELIGIBLE,
    SOURCE_PARENT,
    analytics_columns,
    best_trial,
    count_bucket,
    format_cell,
    summarize,
    trial_rows,
)

if TYPE_CHECKING:
    import optuna
    import plotly.graph_objects as go

log = logging.getLogger(__name__)

TEMPLATE = "tuning_report.html.j2"
HISTORY_PNG = "optimization_history.png"
# Errors Optuna and plotly raise for a study they cannot plot (too few trials, dynamic search spaces);
# anything else is a bug in our code and keeps its traceback.
PLOT_ERRORS = (ValueError, RuntimeError)
STATUS_COLOURS = {
    "Completed": "#1a7f37",
    "Pruned": "#9a6700",
    "Stopped": "#8250df",
    "WarmStart": "#8c959f",
}


def _completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    import optuna

    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def _varying_params(trials: Sequence[optuna.trial.FrozenTrial]) -> list[str]:
    """Parameters that took more than one value across `trials` (importances need at least one)."""
    values: dict[str, set[str]] = {}
    for trial in trials:
        for name, value in trial.params.items():
            values.setdefault(name, set()).add(repr(value))
    return sorted(name for name, seen in values.items() if len(seen) > 1)


def _skip_reason(key: str, study: optuna.Study) -> str | None:
    """Why figure `key` cannot be drawn for this study, or None when it can."""
    completed = _completed(study)
    if key == "intermediate":
        if not any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
            return "No trial reported per-epoch values."
        return None
    if not completed:
        return "No trial has completed yet."
    if key in ("parallel", "slice") and not any(t.params for t in completed):
        return "The completed trials have no tuned hyperparameters."
    if key == "importances":
        if len(completed) < 2:
            return f"Parameter importances need at least 2 completed trials ({len(completed)} so far)."
        if not _varying_params(completed):
            return "No hyperparameter took more than one value across the completed trials."
    return None


def _figure_builders(target: str) -> list[tuple[str, str, Callable[[optuna.Study], go.Figure]]]:
    """(key, title, builder) of each figure, in page order."""
    import optuna.visualization as vis
    from optuna.importance import PedAnovaImportanceEvaluator

    return [
        ("history", "Optimisation history", lambda s: vis.plot_optimization_history(s, target_name=target)),
        ("intermediate", "Intermediate values (per epoch)", vis.plot_intermediate_values),
        ("parallel", "Parallel coordinates", lambda s: vis.plot_parallel_coordinate(s, target_name=target)),
        (
            "importances",
            "Hyperparameter importances",
            lambda s: vis.plot_param_importances(
                s, evaluator=PedAnovaImportanceEvaluator(), target_name=target
            ),
        ),
        ("slice", "Slice plot", lambda s: vis.plot_slice(s, target_name=target)),
    ]


def build_figures(study: optuna.Study, objective_name: str) -> list[dict[str, Any]]:
    """Each figure as {key, title, html} or {key, title, note} when it cannot be drawn."""
    from markupsafe import Markup

    figures = []
    for key, title, builder in _figure_builders(objective_name):
        reason = _skip_reason(key, study)
        if reason is None:
            try:
                figure = builder(study)
                figure.update_layout(title=None, margin={"t": 30})
                html = figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"figure-{key}")
                figures.append({"key": key, "title": title, "html": Markup(html), "note": None})
                continue
            except PLOT_ERRORS as exc:
                log.warning("tuning report: %s not drawn: %s: %s", title, type(exc).__name__, exc)
                reason = f"Not drawn: {type(exc).__name__}: {exc}"
        figures.append({"key": key, "title": title, "html": None, "note": reason})
    return figures


def _format_cell(column: str, value: Any) -> str:
    if value is None or value == "":
        return ""
    if column == "duration_s":
        return format_duration(float(value))
    if column in ("started", "finished"):
        return format_time(value)
    return format_number(value)


def _table(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The analytics table as header + rows of display strings (with the status for row colouring)."""
    columns = analytics_columns(rows)
    if not any(row.get("source") == SOURCE_PARENT for row in rows):
        columns.remove("source")  # one value everywhere says nothing
    table = [
        {"status": row.get("status"), "cells": [_format_cell(c, row.get(c)) for c in columns]} for row in rows
    ]
    return columns, table


def _summary_rows(summary: Mapping[str, Any], objective_name: str) -> list[tuple[str, str]]:
    counts = summary["counts"]
    shown = ", ".join(f"{name} {count}" for name, count in counts.items() if count)
    best = summary.get("best")
    rows = [
        ("Objective", f"{objective_name} ({summary['direction']})"),
        ("Trials", f"{summary['trials']} ({summary['counted_trials']} counted toward the budget)"),
        ("Status counts", shown or "no trials yet"),
    ]
    if best:
        source = " (from the warm-start parent)" if best["source"] == SOURCE_PARENT else ""
        rows += [
            ("Best trial", f"{best['number']}{source}"),
            (f"Best {objective_name}", format_number(best["value"])),
            ("Test accuracy", format_number(best["test_accuracy"])),
            ("Job directory", best["job_dir"] or "—"),
            ("Model", best["model_path"] or "—"),
        ]
    else:
        rows.append(("Best trial", "none yet (no trial completed)"))
    return rows


def build_report_context(
    study: optuna.Study, title: str, objective_name: str, tune_dir: Path | None = None
) -> dict[str, Any]:
    """Everything the template shows, as display strings (the template does no formatting)."""
    from plotly.offline import get_plotlyjs

    summary = summarize(study, tune_dir)
    best = summary.get("best") or {}
    header, table = _table(trial_rows(study, tune_dir))
    return {
        "title": title,
        "summary": _summary_rows(summary, objective_name),
        "best_hyperparameters": sorted(
            # exact values (the table rounds): these are what a user copies into the next training job
            (name, format_cell(value))
            for name, value in (best.get("hyperparameters") or {}).items()
        ),
        "figures": build_figures(study, objective_name),
        "table_header": header,
        "table_rows": table,
        "plotly_js": get_plotlyjs(),
        "generated": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def render_tuning_report(context: Mapping[str, Any]) -> str:
    """Render the packaged template with autoescaping on (hyperparameter values and paths are user text)."""
    return render_template("vizsla.tuning", TEMPLATE, context)


def write_tuning_report(
    study: optuna.Study, out_html: Path, title: str, objective_name: str, tune_dir: Path | None = None
) -> Path:
    """Write the self-contained HTML report of a tuning job (plotly.js inline, nothing fetched); TUNE_DIR
    (the tuning job folder) places its trials' folders."""
    html = render_tuning_report(build_report_context(study, title, objective_name, tune_dir))
    atomic_write_text(Path(out_html), html)
    return Path(out_html)


def _history_points(study: optuna.Study) -> dict[str, list[tuple[int, float]]]:
    """(trial, objective) points per count bucket, for trials with a finite objective that may be best
    (retried and over-budget trials are left out, as they are from the best trial)."""
    points: dict[str, list[tuple[int, float]]] = {}
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        eligible = trial.user_attrs.get("not_counted") in BEST_ELIGIBLE
        if eligible and trial.value is not None and math.isfinite(trial.value):
            points.setdefault(count_bucket(trial), []).append((trial.number, trial.value))
    return points


def _best_so_far(study: optuna.Study) -> list[tuple[int, float]]:
    """The running best over trials eligible as best (counted or warm-start parents), in trial order."""
    best = best_trial(study)
    if best is None:
        return []
    maximize = study.direction.name == "MAXIMIZE"
    eligible = [t for t in _completed(study) if t.user_attrs.get("not_counted") in BEST_ELIGIBLE]
    line: list[tuple[int, float]] = []
    for trial in sorted(eligible, key=lambda t: t.number):
        if trial.value is None or not math.isfinite(trial.value):
            continue
        if not line or (trial.value > line[-1][1] if maximize else trial.value < line[-1][1]):
            line.append((trial.number, trial.value))
        else:
            line.append((trial.number, line[-1][1]))
    return line


def write_history_png(study: optuna.Study, path: Path, objective: str) -> Path:
    """A static optimisation-history PNG: objective per trial coloured by status, best-so-far line."""
    figure = new_figure(8, 4.5)
    axes = figure.add_subplot()
    points = _history_points(study)
    for bucket, xy in points.items():
        xs, ys = zip(*xy, strict=True)
        label = "warm start (parent)" if bucket == "WarmStart" else bucket
        axes.scatter(xs, ys, s=22, color=STATUS_COLOURS.get(bucket, "#cf222e"), label=label, zorder=3)
    line = _best_so_far(study)
    if line:
        xs, ys = zip(*line, strict=True)
        axes.step(xs, ys, where="post", color="#0969da", linewidth=1.5, label="best so far", zorder=2)
    if not points:
        axes.text(
            0.5,
            0.5,
            "no trial has an objective value yet",
            ha="center",
            va="center",
            transform=axes.transAxes,
            color="#59636e",
        )
    axes.set_xlabel("trial")
    axes.set_ylabel(objective)
    axes.set_title(f"Optimisation history ({study.direction.name.lower()} {objective})")
    axes.grid(True, alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best", fontsize=8)
    return save_png(figure, Path(path), dpi=100)


def write_reports(
    study: optuna.Study, reports_dir: Path, title: str, objective_name: str
) -> tuple[Path, Path]:
    """Both reports into DIR/reports: tuning.html and optimization_history.png."""
    html = write_tuning_report(study, Path(reports_dir) / "tuning.html", title, objective_name)
    png = write_history_png(study, Path(reports_dir) / HISTORY_PNG, objective_name)
    return html, png
