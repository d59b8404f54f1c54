"""profile/summary.json: job phases, system usage, step breakdown, operators and rule findings in one record.

Everything the report shows comes from here, and everything here comes from the files in profile/, so
`vizsla profile DIR` rebuilds both after the job (with other rule thresholds, if wanted).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from vizsla.infra.io import atomic_write_json
from vizsla.profiler.collectors.step_phases import GPU_PHASES, PHASES
from vizsla.profiler.data import RULES_DIR, SUMMARY_FILE, ProfileData, describe
from vizsla.profiler.rules import create_rules
from vizsla.profiler.rules.load_balancing import rank_stats
from vizsla.profiler.rules.max_initialization_time import initialization_seconds
from vizsla.profiler.rules.overall_framework_metrics import loop_breakdown
from vizsla.profiler.rules.overall_system_usage import usage_table

MAX_POINTS = 2000  # per plotted series; longer jobs are averaged into this many buckets


def job_phases(data: ProfileData) -> dict[str, Any]:
    """Initialisation, first step, train loops, each evaluation, checkpointing, finalisation (seconds)."""
    marks = data.timeline
    times = {m["event"]: m["time"] for m in reversed(marks)}  # first occurrence of each event
    end = next((m["time"] for m in reversed(marks) if m["event"] == "fit_end"), None)
    phases: dict[str, Any] = {
        "job_start": data.context.get("job_start"),
        "fit_start": times.get("fit_start"),
        "fit_end": end,
        "initialization_s": initialization_seconds(data),
        "first_step_s": _span(times.get("epoch_start"), times.get("first_step_end")),
        "train_loop_s": sum(b - a for a, b in data.train_windows()),
        "evaluations": [],
        "checkpointing": [],
    }
    previous: dict[str, Any] | None = None
    for mark in marks:
        event = mark["event"]
        if event == "eval_end" and previous is not None:
            final = previous["event"] in ("eval_end", "epoch_end") and mark["epoch"] == previous["epoch"]
            phases["evaluations"].append(
                {
                    "split": mark.get("split"),
                    "epoch": mark["epoch"],
                    "seconds": mark["time"] - previous["time"],
                    "after_training": final and previous["event"] != "train_end",
                }
            )
        if event == "epoch_start" and previous is not None and previous["event"] == "epoch_end":
            phases["checkpointing"].append(
                {"epoch": previous["epoch"], "seconds": mark["time"] - previous["time"]}
            )
        if event in ("fit_start", "epoch_start", "train_end", "eval_end", "epoch_end"):
            previous = mark
    if previous is not None and end is not None:
        phases["finalization_s"] = end - previous["time"]
    if phases["job_start"] is not None and end is not None:
        phases["total_s"] = end - phases["job_start"]
    elif phases["fit_start"] is not None and end is not None:
        phases["total_s"] = end - phases["fit_start"]
    return phases


def _span(start: float | None, stop: float | None) -> float | None:
    return None if start is None or stop is None else stop - start


def _downsample(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Average consecutive rows into at most MAX_POINTS buckets (keeps short jobs exact)."""
    if len(rows) <= MAX_POINTS:
        return rows
    size = -(-len(rows) // MAX_POINTS)
    out = []
    for i in range(0, len(rows), size):
        bucket = rows[i : i + size]
        merged = {
            k: statistics.fmean(r[k] for r in bucket if r.get(k) is not None)
            for k in keys
            if any(r.get(k) is not None for r in bucket)
        }
        out.append({**bucket[0], **merged})
    return out


def system_series(data: ProfileData) -> dict[str, Any]:
    """Plot-ready system series, time in seconds since fit_start."""
    if not data.system:
        return {}
    origin = next((m["time"] for m in data.timeline if m["event"] == "fit_start"), data.system[0]["time"])
    rows = []
    for s in data.system:
        row = {
            "t": s["time"] - origin,
            "cpu_total": statistics.fmean(s["cpu"]),
            "memory": s.get("memory_percent"),
            "rss_mb": s.get("rss_mb"),
        }
        for i, core in enumerate(s["cpu"]):
            row[f"cpu{i}"] = core
        for i, gpu in enumerate(s.get("gpus") or ()):
            row[f"gpu{i}_util"], row[f"gpu{i}_memory"] = gpu["util"], gpu["memory_percent"]
        rows.append(row)
    keys = tuple(k for k in rows[0] if k != "t")
    rows = _downsample(rows, ("t", *keys))
    return {k: [r.get(k) for r in rows] for k in ("t", *keys)}


def step_series(data: ProfileData) -> dict[str, Any]:
    keys = ("step", *PHASES, "total_s", *GPU_PHASES)
    rows = _downsample(data.steps, keys)
    return {k: [r.get(k) for r in rows] for k in keys if any(r.get(k) is not None for r in rows)}


def ranks_summary(data: ProfileData) -> dict[str, Any]:
    """Per-process step statistics and plot-ready step-time series (one rank in a single-process job)."""
    series = []
    for rank in data.ranks:
        rows = _downsample(data.rank_steps[rank], ("step", "total_s", "data_s"))
        series.append({"rank": rank, **{k: [r.get(k) for r in rows] for k in ("step", "total_s", "data_s")}})
    return {"world_size": data.world_size, "stats": rank_stats(data), "series": series}


def build_summary(
    profile_dir: Path, rule_overrides: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Read profile/, run the rules, write summary.json and rules/<Rule>.json; return the summary."""
    profile_dir = Path(profile_dir)
    data = ProfileData.load(profile_dir)
    findings = []
    for rule in create_rules(rule_overrides):
        findings.append(rule.evaluate(data).to_dict())
    phase_totals = data.phase_seconds()
    step_total = sum(phase_totals.values()) or 1.0
    summary = {
        "job": {**data.context, "phases": job_phases(data), "loop": loop_breakdown(data)},
        "system": {
            "usage": usage_table(data),
            "series": system_series(data),
            "samples": len(data.system),
            "gpus": data.gpu_count,
        },
        "steps": {
            "count": len(data.steps),
            "stats": {
                p: describe([r[p] for r in data.steps if r.get(p) is not None])
                for p in (*PHASES, "total_s", *GPU_PHASES)
                if any(r.get(p) is not None for r in data.steps)
            },
            "phase_seconds": phase_totals,
            "phase_share": {p: v / step_total for p, v in phase_totals.items()},
            "series": step_series(data),
        },
        "ranks": ranks_summary(data),
        "operators": data.operators,
        "rules": findings,
        "triggered": [f["rule"] for f in findings if f["triggered"]],
    }
    atomic_write_json(profile_dir / SUMMARY_FILE, summary)
    for finding in findings:
        atomic_write_json(profile_dir / RULES_DIR / f"{finding['rule']}.json", finding)
    return summary
