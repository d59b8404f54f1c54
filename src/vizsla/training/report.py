"""The job's training report: one self-contained HTML file built from its directory alone.

It reads result.json, metrics.jsonl, spec.yaml and the data validation outputs, embeds the PNG plots as
base64 and links nothing external, so it opens offline and can be mailed or archived as one file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from vizsla.callbacks import ReportSection
from vizsla.infra.formatting import format_duration, format_number, format_time
from vizsla.infra.io import atomic_write_text
from vizsla.infra.rendering import png_data_uri, render_template
from vizsla.jobdir import JobDir
from vizsla.names import printable
from vizsla.training.timing import phases_text

TEMPLATE = "training_report.html.j2"
MAX_BAD_FILE_ROWS = 500  # the rest stays in data/bad_files.csv, which the report names
EPOCH_COLUMNS = (
    "train_loss",
    "train_accuracy",
    "valid_loss",
    "valid_accuracy",
    "valid_top5_accuracy",
    "lr",
    "epoch_time_s",
)
SHOWN_DATA_KEYS = ("warnings", "classes", "images", "bad_files")  # shown from result.json's "data" already
METRIC_ORDER = (
    "train_loss",
    "train_accuracy",
    "valid_loss",
    "valid_accuracy",
    "valid_top5_accuracy",
    "test_loss",
    "test_accuracy",
    "test_top5_accuracy",
)


def total_duration(result: Mapping[str, Any]) -> str | None:
    """A resumed job's time over all its attempts ('2m 05s over 2 attempts'); None for a first attempt."""
    attempts, total = result.get("attempts"), result.get("total_duration_s")
    if not isinstance(attempts, int) or attempts < 2:
        return None
    if total is None:
        return f"unknown (attempt {attempts}; an earlier attempt did not record its time)"
    return f"{format_duration(total)} over {attempts} attempts"


def _ordered_metrics(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    keys = [k for k in METRIC_ORDER if k in metrics] + sorted(k for k in metrics if k not in METRIC_ORDER)
    return [(key, format_number(metrics[key])) for key in keys]


def _per_class_rows(per_class: Mapping[str, Any]) -> list[dict[str, str]]:
    labels = per_class.get("labels") or []
    columns = {c: list(per_class.get(c) or []) for c in ("precision", "recall", "f1", "support")}
    return [
        {"label": str(label), **{c: format_number(v[i] if i < len(v) else None) for c, v in columns.items()}}
        for i, label in enumerate(labels)
    ]


def _bad_files(path: Path) -> tuple[list[str], list[list[str]], int]:
    """Header, first rows and total row count of data/bad_files.csv (empty when absent)."""
    if not path.is_file():
        return [], [], 0
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return [], [], 0
    return rows[0], rows[1 : MAX_BAD_FILE_ROWS + 1], len(rows) - 1


def _data_report(path: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Warnings and the other scalar facts (source, counts, timings) of data/report.json."""
    if not path.is_file():
        return [], []
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return [f"data/report.json could not be read: {path}"], []
    if not isinstance(report, dict):
        return [], []
    warnings = report.get("warnings") or []
    texts = [w if isinstance(w, str) else json.dumps(w) for w in warnings]
    # scalars only: nested entries (per-file listings, per-class counts) can be thousands of lines long
    facts = [
        (k, str(v))
        for k, v in report.items()
        if k not in SHOWN_DATA_KEYS and isinstance(v, str | int | float | bool)
    ]
    return texts, facts


def _epoch_rows(metrics: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    records = [r for r in metrics if r.get("kind") == "epoch"]
    columns = [c for c in EPOCH_COLUMNS if any(c in r for r in records)]
    rows = [[str(r.get("epoch", 0) + 1)] + [format_number(r.get(c)) for c in columns] for r in records]
    return ["epoch", *columns], rows


def _summary(result: Mapping[str, Any], spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    best = result.get("best_metric") or {}
    planned = (spec.get("train") or {}).get("epochs", "?")
    mlflow = result.get("mlflow") or {}
    rows = [
        ("Status", result.get("status") or "Unknown"),
        ("Failure reason", result.get("failure_reason")),
        ("Stop reason", result.get("stop_reason")),
        ("Start", format_time(result.get("start_time"))),
        ("End", format_time(result.get("end_time"))),
        ("Duration", format_duration(result.get("duration_s"))),
        ("Time per phase", phases_text(result.get("phases") or {}, format_duration) or None),
        ("Total duration", total_duration(result)),
        ("Epochs", f"{result.get('epochs_completed', 0)} of {planned}"),
        ("Best epoch", None if result.get("best_epoch") is None else str(result["best_epoch"] + 1)),
        ("Best metric", f"{best.get('name')} = {format_number(best.get('value'))}" if best else None),
        ("Test metrics from", result.get("test_source")),
        ("Model", (spec.get("model") or {}).get("name")),
        ("Weights", (result.get("weights") or {}).get("source")),
        ("Model folder", result.get("best_model_path")),
        (
            "MLflow run",
            f"{mlflow.get('run_id')} ({mlflow.get('experiment')}, {mlflow.get('tracking_uri')})"
            if mlflow.get("run_id")
            else None,
        ),
    ]
    return [(label, str(value)) for label, value in rows if value not in (None, "")]


def _read_spec(job_dir: JobDir) -> tuple[str, dict[str, Any]]:
    import yaml

    text = job_dir.spec.read_text() if job_dir.spec.is_file() else ""
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        loaded = {}
    return text, loaded if isinstance(loaded, dict) else {}


def build_report_context(
    job_dir: JobDir, result: Mapping[str, Any] | None = None, sections: Sequence[ReportSection] = ()
) -> dict[str, Any]:
    """Everything the template shows, as plain strings and lists (the template does no formatting).

    SECTIONS are the tools' parts (the debugger's), each an HTML fragment its tool escaped itself."""
    result = result if result is not None else job_dir.read_result() or {}
    spec_text, spec = _read_spec(job_dir)
    data = result.get("data") or {}
    bad_header, bad_rows, bad_total = _bad_files(job_dir.bad_files)
    warnings, facts = _data_report(job_dir.data_report)
    epoch_header, epoch_rows = _epoch_rows(job_dir.read_metrics())
    return {
        "name": result.get("job_name") or spec.get("name") or job_dir.root.name,
        "status": result.get("status") or "Unknown",
        "summary": _summary(result, spec),
        "hyperparameters": sorted((k, str(v)) for k, v in (result.get("hyperparameters") or {}).items()),
        "metrics": _ordered_metrics(result.get("metrics") or {}),
        "epoch_header": epoch_header,
        "epoch_rows": epoch_rows,
        "per_class_split": (result.get("per_class") or {}).get("split", "test"),
        "per_class": _per_class_rows(result.get("per_class") or {}),
        "data": {
            "classes": data.get("classes"),
            "images": data.get("images") or {},
            "bad_files": data.get("bad_files", bad_total),
        },
        "bad_header": bad_header,
        "bad_rows": bad_rows,
        "bad_total": bad_total,
        "bad_files_path": str(job_dir.bad_files.resolve()) if bad_total else None,
        "data_warnings": warnings,
        "data_facts": facts,
        "loss_plot": png_data_uri(job_dir.loss_plot),
        "confusion_plot": png_data_uri(job_dir.confusion_matrix_plot),
        "sections": [{"name": section.name, "html": section.html} for section in sections if section.html],
        "spec_yaml": spec_text,
        "job_dir": str(job_dir.root.resolve()),
        "generated": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def render_training_report(context: Mapping[str, Any]) -> str:
    """Render the packaged Jinja template with autoescaping on (class names and paths are user text)."""
    return render_template("vizsla.training", TEMPLATE, context)


def write_training_report(
    job_dir: JobDir, *, result: Mapping[str, Any] | None = None, sections: Sequence[ReportSection] = ()
) -> Path:
    """Write reports/training.html for a job; `result` overrides result.json (the trainer's in-memory one);
    SECTIONS are what the job's tools add (`vizsla.jobs.report_sections` gives them from the folder alone)."""
    html = render_training_report(build_report_context(job_dir, result, sections))
    atomic_write_text(job_dir.training_report, printable(html))  # undecodable file names as \xNN
    return job_dir.training_report
