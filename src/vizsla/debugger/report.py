"""What the debugger adds to a job's outputs: the loss plot from recorded tensors and the report's section."""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from vizsla.callbacks import Callback, ReportSection, TrainState
from vizsla.debugger.reader import Trial, open_trial
from vizsla.jobdir import JobDir

STATUS_COLOURS = {
    "NoIssuesFound": "#1a7f37",
    "IssuesFound": "#cf222e",
    "Error": "#9a6700",
    "InProgress": "#57606a",
    "NoData": "#8250df",  # not evaluated: none of the rule's tensors was saved
}


def eval_loss_points(trial: Trial) -> dict[str, list[tuple[int, float]]]:
    """Mean EVAL loss of each evaluation pass, per split, placed at the train step it was run after."""
    passes: dict[tuple[str, int], list[float]] = defaultdict(list)
    loss = trial.tensor("loss")
    for step, value in loss.values("EVAL").items():
        info = trial.step_info(step, "EVAL") or {}
        passes[(str(info.get("split") or "valid"), int(info.get("global_step", 0)))].append(float(value))
    points: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for (split, global_step), values in sorted(passes.items(), key=lambda item: item[0][1]):
        points[split].append((global_step, sum(values) / len(values)))
    return dict(points)


def plot_losses_from_trial(trial: Trial, path: str | Path) -> Path:
    """Loss_plot.png from recorded tensors: train loss per step, eval loss per evaluation, vs train step."""
    from vizsla.infra.figures import new_figure, save_png

    train = sorted((step, float(v)) for step, v in trial.tensor("loss").values("TRAIN").items())
    evaluations = eval_loss_points(trial)
    if not train and not evaluations:
        raise ValueError(f"no loss recorded in {trial.root}")
    figure = new_figure(8, 4.5)
    axes = figure.subplots()
    if train:
        xs, ys = zip(*train, strict=True)
        axes.plot(xs, ys, linewidth=0.8, alpha=0.5, label="train (per step)")
        if len(ys) >= 10:
            window = max(5, len(ys) // 20)
            smooth = [
                sum(ys[max(0, i - window + 1) : i + 1]) / len(ys[max(0, i - window + 1) : i + 1])
                for i in range(len(ys))
            ]
            axes.plot(xs, smooth, linewidth=1.6, label=f"train ({window}-step mean)")
    for split, points in evaluations.items():
        xs, ys = zip(*points, strict=True)
        axes.plot(xs, ys, marker="o", markersize=4, label=f"{split} (per evaluation)")
    axes.set_xlabel("train step")
    axes.set_ylabel("cross-entropy loss")
    axes.set_title("Loss from the debugger's recorded tensors")
    axes.grid(True, alpha=0.3)
    axes.legend()
    return save_png(figure, Path(path), dpi=110)


def read_rules(job_dir: str | Path) -> dict[str, Any] | None:
    """debug/rules.json of a job (or debug) directory, None when there is none."""
    trial = open_trial(job_dir)
    path = trial.root / "rules.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def gradient_norms(trial: Trial) -> list[tuple[int, float]]:
    """Global gradient L2 norm per saved TRAIN step: sqrt of the sum of the squared per-tensor norms."""
    totals: dict[int, float] = defaultdict(float)
    for name in trial.tensor_names(collection="gradients", mode="TRAIN"):
        for step, value in trial.tensor(name).reductions("l2").items():
            totals[step] += value * value
    return [(step, math.sqrt(total)) for step, total in sorted(totals.items())]


def sparkline_svg(points: list[tuple[int, float]], width: int = 240, height: int = 48) -> str:
    """A small inline SVG line (log scale when the values span more than 100x)."""
    values = [v for _, v in points if math.isfinite(v)]
    if len(values) < 2:
        return ""
    logscale = min(values) > 0 and max(values) / min(values) > 100
    ys = [math.log10(v) if logscale else v for _, v in points if math.isfinite(v)]
    xs = [s for s, v in points if math.isfinite(v)]
    low, high = min(ys), max(ys)
    span_y, span_x = (high - low) or 1.0, (xs[-1] - xs[0]) or 1
    coords = " ".join(
        f"{2 + (x - xs[0]) / span_x * (width - 4):.1f},{height - 2 - (y - low) / span_y * (height - 4):.1f}"
        for x, y in zip(xs, ys, strict=True)
    )
    title = f"gradient L2 norm, steps {xs[0]}-{xs[-1]}: {values[0]:.3g} -> {values[-1]:.3g}"
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{html.escape(title)}"><title>{html.escape(title)}</title>'
        f'<polyline fill="none" stroke="#0969da" stroke-width="1.5" points="{coords}"/></svg>'
    )


def debugger_section(job_dir: str | Path) -> str:
    """HTML fragment for the training report: rule table with findings + gradient-norm sparkline."""
    trial = open_trial(job_dir)
    if not trial.root.is_dir():
        return ""
    rules = (read_rules(job_dir) or {}).get("rules", [])
    rows = []
    for rule in rules:
        status = str(rule.get("status", "?"))
        findings = rule.get("findings") or []
        shown = "".join(f"<li>{html.escape(str(f.get('message', f)))}</li>" for f in findings[:5])
        more = f"<li>... {len(findings) - 5} more</li>" if len(findings) > 5 else ""
        error = f"<div>{html.escape(str(rule['error']))}</div>" if rule.get("error") else ""
        if not error and rule.get("note") and status in ("NoData", "Skipped"):
            error = f"<div>{html.escape(str(rule['note']))}</div>"
        colour = STATUS_COLOURS.get(status, "#57606a")
        rows.append(
            f"<tr><td>{html.escape(str(rule.get('name', '?')))}</td>"
            f'<td style="color:{colour};font-weight:600">{html.escape(status)}</td>'
            f"<td>{len(findings)}</td><td><ul>{shown}{more}</ul>{error}</td></tr>"
        )
    table = (
        "<table><thead><tr><th>Rule</th><th>Status</th><th>Findings</th><th>First findings</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else "<p>No rule results (debug/rules.json is missing: rules were off or did not run).</p>"
    )
    norms = gradient_norms(trial)
    spark = sparkline_svg(norms)
    steps = trial.steps("TRAIN")
    summary = (
        f"<p>{len(steps)} TRAIN steps and {len(trial.steps('EVAL'))} EVAL steps recorded in "
        f"<code>{html.escape(trial.root.name)}/</code>; {len(trial.tensor_names())} tensors.</p>"
    )
    gradient = f"<p>Gradient L2 norm over training: {spark}</p>" if spark else ""
    return f'<section class="debugger"><h2>Debugger</h2>{summary}{table}{gradient}</section>'


class DebugOutputs(Callback):
    """The debugger's part of a job's outputs, read from its store in OUT_DIR (the spec's `debug.out_dir`,
    relative to the job directory): the classic loss plot and the training report's Debugger section."""

    def __init__(self, out_dir: str | None = None) -> None:
        self.out_dir = out_dir

    def on_finish(self, state: TrainState) -> None:
        """Loss_plot.png from the recorded tensors: train and eval loss per step (over the per-epoch one)."""
        job_dir = _as_job_dir(state.job_dir)
        plot_losses_from_trial(open_trial(job_dir.debug_store(self.out_dir)), job_dir.loss_plot)

    def report_sections(self, job_dir: JobDir) -> list[ReportSection]:
        job_dir = _as_job_dir(job_dir)
        if not job_dir.debug_store(self.out_dir).is_dir():
            return []
        return [ReportSection("debugger", debugger_section(job_dir.root))]


def _as_job_dir(job_dir: JobDir | str | Path) -> JobDir:
    return job_dir if isinstance(job_dir, JobDir) else JobDir(job_dir)
