"""reports/profiler-report.html: one self-contained page (plotly.js and CSS inline, nothing fetched).

The figures are plain plotly JSON built here from summary.json and drawn by the inlined plotly.js, so the
page opens offline and in headless browsers; the template does no formatting of its own.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

from vizsla.infra.formatting import format_duration
from vizsla.infra.io import atomic_write_text
from vizsla.infra.rendering import render_template
from vizsla.profiler.collectors.step_phases import PHASES

TEMPLATE = "profiler_report.html.j2"
PHASE_LABELS = {
    "data_s": "data wait",
    "forward_s": "forward",
    "backward_s": "backward",
    "optimizer_s": "optimizer + callbacks",
}
PHASE_COLOURS = {
    "data_s": "#d1242f",
    "forward_s": "#0969da",
    "backward_s": "#8250df",
    "optimizer_s": "#1a7f37",
}
VERDICT_ORDER = {"Triggered": 0, "NoIssues": 1, "InsufficientData": 2}


def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value != 0 and abs(value) < 10 ** (-digits):
        return f"{value:.2g}"  # small rates: two significant digits, not 0.0
    return f"{value:,.{digits}f}"


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title},
        "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
        "height": 380,
        "legend": {"orientation": "h"},
        **extra,
    }


def system_figure(series: dict[str, Any]) -> dict[str, Any] | None:
    if not series.get("t"):
        return None
    traces = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": "CPU total %",
            "x": series["t"],
            "y": series["cpu_total"],
            "line": {"width": 2},
        }
    ]
    cores = sorted(k for k in series if k.startswith("cpu") and k[3:].isdigit())
    traces += [
        {
            "type": "scatter",
            "mode": "lines",
            "name": f"core {k[3:]} %",
            "x": series["t"],
            "y": series[k],
            "line": {"width": 1},
            "opacity": 0.5,
            "visible": "legendonly" if len(cores) > 8 else True,
        }
        for k in cores
    ]
    traces.append(
        {"type": "scatter", "mode": "lines", "name": "memory %", "x": series["t"], "y": series["memory"]}
    )
    for key in sorted(k for k in series if k.startswith("gpu")):
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": key.replace("_", " ") + " %",
                "x": series["t"],
                "y": series[key],
            }
        )
    return {
        "data": traces,
        "layout": _layout(
            "System utilisation over time",
            xaxis={"title": {"text": "seconds since fit_start"}},
            yaxis={"title": {"text": "%"}, "range": [0, 105]},
        ),
    }


def steps_figure(series: dict[str, Any]) -> dict[str, Any] | None:
    if not series.get("step"):
        return None
    traces = [
        {
            "type": "bar",
            "name": PHASE_LABELS[p],
            "x": series["step"],
            "y": series[p],
            "marker": {"color": PHASE_COLOURS[p]},
        }
        for p in PHASES
        if p in series
    ]
    return {
        "data": traces,
        "layout": _layout(
            "Step time breakdown",
            barmode="stack",
            bargap=0,
            xaxis={"title": {"text": "train step"}},
            yaxis={"title": {"text": "seconds"}},
        ),
    }


def ranks_figure(series: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Step time over train steps, one line per process of a distributed job."""
    if len(series) < 2:
        return None
    traces = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": f"rank {s['rank']}",
            "x": s["step"],
            "y": s["total_s"],
            "line": {"width": 1.5},
        }
        for s in series
    ]
    return {
        "data": traces,
        "layout": _layout(
            "Step time per rank",
            xaxis={"title": {"text": "train step"}},
            yaxis={"title": {"text": "seconds"}, "rangemode": "tozero"},
        ),
    }


def _rank_rows(ranks: dict[str, Any]) -> list[tuple[int, int, list[str]]]:
    """Table rows (rank, steps, times in ms) when two or more processes recorded steps."""
    stats = ranks.get("stats") or []
    if len(stats) < 2:
        return []
    keys = ("median_s", "p90_s", "mean_s", "data_median_s", "to_sync_median_s")
    return [
        (r["rank"], r["steps"], [_num(1000 * r[k] if r.get(k) is not None else None) for k in keys])
        for r in stats
    ]


def phase_pie(shares: dict[str, float]) -> dict[str, Any] | None:
    if not shares or not any(shares.values()):
        return None
    return {
        "data": [
            {
                "type": "pie",
                "labels": [PHASE_LABELS[p] for p in shares],
                "values": list(shares.values()),
                "marker": {"colors": [PHASE_COLOURS[p] for p in shares]},
                "sort": False,
                "hole": 0.35,
            }
        ],
        "layout": _layout("Share of step time by phase", height=360),
    }


def job_pie(phases: dict[str, Any], loop: dict[str, Any]) -> dict[str, Any] | None:
    parts = {
        "initialisation": phases.get("initialization_s") or 0.0,
        "train steps": loop.get("train_steps_s") or 0.0,
        "evaluation": loop.get("evaluation_s") or 0.0,
        "checkpoints and other loop time": loop.get("others_s") or 0.0,
        "finalisation": phases.get("finalization_s") or 0.0,
    }
    if not any(parts.values()):
        return None
    return {
        "data": [{"type": "pie", "labels": list(parts), "values": list(parts.values()), "sort": False}],
        "layout": _layout("Where the job's time went", height=360),
    }


def histogram_figure(series: dict[str, Any]) -> dict[str, Any] | None:
    if not series.get("total_s"):
        return None
    return {
        "data": [{"type": "histogram", "x": series["total_s"], "nbinsx": 60, "name": "steps"}],
        "layout": _layout(
            "Step duration histogram",
            xaxis={"title": {"text": "seconds"}},
            yaxis={"title": {"text": "steps"}},
            height=320,
        ),
    }


def _job_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    job = summary["job"]
    phases = job["phases"]
    rows = [
        ("Job", str(job.get("job_name") or "—")),
        ("Status", str(job.get("status") or "—")),
        (
            "Model",
            f"{job.get('model')} at {job.get('image_size') or 'default'} px, finetune {job.get('finetune')}",
        ),
        ("Device", f"{job.get('device')} ({job.get('precision')}), {job.get('cores')} cores"),
        ("Batch size / loader workers", f"{job.get('batch_size')} / {job.get('num_workers')}"),
        ("Started", _when(phases.get("job_start"))),
        ("Total", format_duration(phases.get("total_s"))),
        ("Initialisation (job start to training loop)", format_duration(phases.get("initialization_s"))),
        ("First step", format_duration(phases.get("first_step_s"))),
        ("Train loops", format_duration(phases.get("train_loop_s"))),
        ("Evaluation", format_duration(job["loop"].get("evaluation_s"))),
        ("Checkpoints and other loop time", format_duration(job["loop"].get("others_s"))),
        ("Finalisation (plots, reports)", format_duration(phases.get("finalization_s"))),
        ("Train steps profiled", str(summary["steps"]["count"])),
        ("System samples", str(summary["system"]["samples"])),
    ]
    return rows


def _when(epoch: float | None) -> str:
    return "—" if epoch is None else datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def build_context(summary: dict[str, Any], title: str | None = None) -> dict[str, Any]:
    """Display strings and figure JSON for the template."""
    from plotly.offline import get_plotlyjs

    steps = summary["steps"]
    job = summary["job"]
    figures = {
        "job_pie": job_pie(job["phases"], job["loop"]),
        "system": system_figure(summary["system"]["series"]),
        "steps": steps_figure(steps["series"]),
        "phase_pie": phase_pie(steps["phase_share"]),
        "histogram": histogram_figure(steps["series"]),
        "ranks": ranks_figure((summary.get("ranks") or {}).get("series") or []),
    }
    rules = sorted(summary["rules"], key=lambda f: VERDICT_ORDER.get(f["verdict"], 3))
    usage = [
        (label, [_num(stats[c]) for c in ("min", "p50", "p95", "p99", "max")], stats["n"])
        for label, stats in summary["system"]["usage"].items()
    ]
    step_stats = [
        (
            PHASE_LABELS.get(k, "step total" if k == "total_s" else k.replace("_", " ")),
            [
                _num(1000 * v if v is not None else None)
                for v in (s["min"], s["p50"], s["p95"], s["p99"], s["max"], s["mean"])
            ],
        )
        for k, s in steps["stats"].items()
    ]
    outliers = next((f["details"] for f in summary["rules"] if f["rule"] == "StepOutlier"), [])
    operators = summary.get("operators") or {}
    return {
        "title": title or f"Profiler report: {job.get('job_name') or 'job'}",
        "generated": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
        "job_rows": _job_rows(summary),
        "evaluations": [
            (e["split"], e["epoch"] + 1, format_duration(e["seconds"])) for e in job["phases"]["evaluations"]
        ],
        "checkpoints": [
            (c["epoch"] + 1, format_duration(c["seconds"])) for c in job["phases"]["checkpointing"]
        ],
        "rules": [
            {
                **f,
                "parameters_text": ", ".join(f"{k}={v}" for k, v in f["parameters"].items()),
                "numbers_text": ", ".join(f"{k}={_num(v, 3)}" for k, v in f["numbers"].items()),
            }
            for f in rules
        ],
        "triggered": summary["triggered"],
        "usage": usage,
        "step_stats": step_stats,
        "outliers": outliers,
        "rank_rows": _rank_rows(summary.get("ranks") or {}),
        "world_size": (summary.get("ranks") or {}).get("world_size", 1),
        "operators": [
            {
                **op,
                "self_cpu_ms": _num(op["self_cpu_us"] / 1000, 2),
                "cpu_total_ms": _num(op["cpu_total_us"] / 1000, 2),
                "self_device_ms": _num(op["self_device_us"] / 1000, 2),
                "self_cpu_pct": _num(op["self_cpu_percent"]),
                "self_device_pct": _num(op["self_device_percent"]),
            }
            for op in operators.get("operators", [])
        ],
        "operator_steps": operators.get("steps"),
        "operator_trace": operators.get("trace"),
        "has_device_ops": any(op["self_device_us"] > 0 for op in operators.get("operators", [])),
        "figures": {k: v for k, v in figures.items() if v is not None},
        "plotly_js": get_plotlyjs(),
    }


def render_report(context: dict[str, Any]) -> str:
    """The profiler report's HTML (vizsla.infra.rendering: autoescaped, strict about undefined names)."""
    return render_template("vizsla.profiler", TEMPLATE, context)


def write_report(summary: dict[str, Any], out_html: Path, title: str | None = None) -> Path:
    """Write the self-contained profiler report of a job."""
    atomic_write_text(Path(out_html), render_report(build_context(summary, title)))
    return Path(out_html)
