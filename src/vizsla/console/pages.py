"""What each console page shows, read from the runs folder and the endpoint registry (no database).

Training and tuning jobs are found and summarised exactly as `vizsla jobs list` does (vizsla.cli.jobs);
a tuning job's objective history comes from its analytics.csv; endpoints from their records and the
router's /metrics. Report links point at /files/<path under the runs folder>.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from vizsla.infra.formatting import format_duration, format_number, format_time
from vizsla.jobdir import JobDir

TRAINING_REPORT = ("reports", "training.html")
PROFILER_REPORT = ("reports", "profiler-report.html")  # vizsla.profiler.REPORT_NAME
TUNING_REPORT = ("reports", "tuning.html")


def _relative(path: Path, runs: Path) -> str:
    return path.resolve().relative_to(runs.resolve()).as_posix()


def report_links(job: Path, runs: Path, *, tuning: bool = False) -> list[dict[str, str]]:
    """Links to the job's reports that exist: training, profiler, tuning."""
    wanted = (
        [("tuning", TUNING_REPORT)]
        if tuning
        else [("training", TRAINING_REPORT), ("profiler", PROFILER_REPORT)]
    )
    links = []
    for label, parts in wanted:
        path = job.joinpath(*parts)
        if path.is_file():
            links.append({"label": label, "href": "/files/" + _relative(path, runs)})
    return links


def _accuracy(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def jobs_page(runs: Path) -> dict[str, Any]:
    """Training jobs and tuning jobs under RUNS, newest first, with their report links."""
    from vizsla.cli.jobs import SortKey, find_job_dirs, sort_jobs, summarize_job

    summaries = (
        sort_jobs([summarize_job(p) for p in find_job_dirs(runs)], SortKey.start) if runs.is_dir() else []
    )
    training, tuning = [], []
    for job in summaries:
        row = {
            "name": job.name,
            "path": _relative(job.path, runs),
            "status": job.status,
            "shown_status": job.shown_status,
            "model": job.model or "—",
            "epochs": job.epochs,
            "start": job.start.strftime("%Y-%m-%d %H:%M:%S") if job.start else "—",
            "duration": format_duration(job.duration_s),
            "valid": _accuracy(job.valid_accuracy),
            "test": _accuracy(job.test_accuracy),
        }
        if (job.path / "tune.yaml").is_file() and not JobDir(job.path).exists():
            tuning.append({**row, "reports": report_links(job.path, runs, tuning=True)})
        else:
            training.append({**row, "reports": report_links(job.path, runs)})
    return {"runs": str(runs), "training": training, "tuning": tuning}


def read_history(tune_dir: Path) -> list[dict[str, Any]]:
    """The tuning job's trials from analytics.csv: number, objective (None when it has none), status."""
    try:
        with open(tune_dir / "analytics.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError:
        return []
    trials = []
    for row in rows:
        try:
            value: float | None = float(row.get("objective") or "nan")
        except ValueError:
            value = None
        trials.append(
            {
                "trial": int(row.get("trial") or 0),
                "status": row.get("status") or "",
                "objective": None if value is None or math.isnan(value) else value,
                "duration": format_duration(_float(row.get("duration_s"))),
                "row": row,
            }
        )
    return sorted(trials, key=lambda t: t["trial"])


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def tuning_page(tune_dir: Path, runs: Path) -> dict[str, Any]:
    """One tuning job: its status and counts, best trial, objective history chart and trials table."""
    import yaml

    from vizsla.console.charts import history_svg

    try:
        result = json.loads((tune_dir / JobDir.RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        result = {}
    try:
        spec = yaml.safe_load((tune_dir / "tune.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        spec = {}
    objective = (spec.get("objective") or {}).get("metric") or "objective"
    best = result.get("best") or {}
    history = read_history(tune_dir)
    best_dir = Path(best["job_dir"]) if best.get("job_dir") else None
    if best_dir is not None and not best_dir.is_absolute():
        best_dir = tune_dir / best_dir
    return {
        "name": result.get("job_name") or tune_dir.name,
        "path": _relative(tune_dir, runs),
        "status": result.get("status") or "InProgress",
        "counts": result.get("counts") or {},
        "objective": objective,
        "direction": result.get("direction") or "maximize",
        "best": {
            "number": best.get("number"),
            "value": format_number(best.get("value")),
            "test": _accuracy(best.get("test_accuracy")),
            "hyperparameters": {k: format_number(v) for k, v in (best.get("hyperparameters") or {}).items()},
            "reports": report_links(best_dir, runs) if best_dir and best_dir.is_dir() else [],
        }
        if best
        else None,
        "chart": history_svg(
            history,
            objective,
            best.get("number"),
            maximize=(result.get("direction") or "maximize") == "maximize",
        ),
        "trials": [{**t, "objective": format_number(t["objective"])} for t in history],
        "reports": report_links(tune_dir, runs, tuning=True),
        "wall_time": format_duration(result.get("wall_time_s")),
    }


def endpoints_page() -> dict[str, Any]:
    """Every registered endpoint: status, URL, traffic per variant, invocations, errors, p99."""
    from vizsla.endpoints import iter_records
    from vizsla.endpoints.stats import read_stats

    rows = []
    for record in iter_records():
        config = record.get("config") or {}
        variants = config.get("variants") or []
        total = sum(v["weight"] for v in variants) or 1.0
        stats = read_stats(record, timeout_s=1.0) if record.get("status") != "Failed" else None
        rows.append(
            {
                "name": record["name"],
                "status": record.get("status"),
                "url": record.get("url"),
                "reason": record.get("failure_reason"),
                "created": format_time(record.get("created")),
                "invocations": stats.total.invocations if stats and stats.reachable else "—",
                "errors": stats.total.errors if stats and stats.reachable else "—",
                "p99": "—" if not stats or stats.total.p99_ms is None else f"{stats.total.p99_ms:.1f} ms",
                "capture": f"{config['capture']['percent']:g}%"
                if (config.get("capture") or {}).get("percent")
                else "off",
                "variants": [
                    {
                        "name": v["name"],
                        "model": Path(v["model"]).name,
                        "share": f"{100 * v['weight'] / total:.0f}%",
                        "invocations": stats.variants[v["name"]].invocations
                        if stats and v["name"] in stats.variants
                        else 0,
                    }
                    for v in variants
                ],
            }
        )
    return {"endpoints": rows}
