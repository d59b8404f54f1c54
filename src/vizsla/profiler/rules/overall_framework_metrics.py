"""OverallFrameworkMetrics: where the training loop's time went (step phases, evaluation, others).

SageMaker's version aggregates framework events into TRAIN / EVAL / "others" (time between steps) and
warns when "others" exceed 25 %; it never triggers. Ours sums our step phases and job phases the same way
(`others_threshold` 25 %) and never triggers either.
"""

from __future__ import annotations

from vizsla.profiler.data import ProfileData
from vizsla.profiler.rules import register_rule
from vizsla.profiler.rules.base import NO_ISSUES, BaseRule, Finding


def loop_breakdown(data: ProfileData) -> dict[str, float]:
    """Seconds of the training loop in train steps, evaluation and the rest (checkpoints, bookkeeping)."""
    marks = data.timeline
    fit = next((m["time"] for m in marks if m["event"] == "fit_start"), None)
    end = next((m["time"] for m in marks if m["event"] == "fit_end"), None)
    train = sum(r["total_s"] for r in data.steps)
    evaluation, previous = 0.0, None
    for mark in marks:
        if mark["event"] == "eval_end" and previous is not None:
            evaluation += mark["time"] - previous
        if mark["event"] in ("train_end", "eval_end", "epoch_end", "epoch_start", "fit_start"):
            previous = mark["time"]
    loop = (end - fit) if fit is not None and end is not None else train + evaluation
    return {
        "loop_s": loop,
        "train_steps_s": train,
        "evaluation_s": evaluation,
        "others_s": max(0.0, loop - train - evaluation),
    }


@register_rule
class OverallFrameworkMetrics(BaseRule):
    name = "OverallFrameworkMetrics"
    description = "Breaks the training loop into step phases, evaluation and other time (informational)."
    defaults = {"others_threshold": 25}

    def evaluate(self, data: ProfileData) -> Finding:
        if not data.steps:
            return self.too_few("train steps", 0, 1)
        phases = data.phase_seconds()
        total = sum(phases.values()) or 1.0
        loop = loop_breakdown(data)
        others_pct = 100.0 * loop["others_s"] / (loop["loop_s"] or 1.0)
        numbers = {f"{p.removesuffix('_s')}_percent": 100.0 * v / total for p, v in phases.items()}
        numbers.update({k: v for k, v in loop.items()}, others_percent=others_pct)
        shares = ", ".join(f"{p.removesuffix('_s')} {100.0 * v / total:.0f}%" for p, v in phases.items())
        message = f"step time: {shares}"
        if others_pct > self.params["others_threshold"]:
            message += (
                f"; {others_pct:.0f}% of the loop is outside train steps and evaluation "
                "(checkpoints, model export, reports)"
            )
        return self.finding(NO_ISSUES, message, numbers=numbers, datapoints=len(data.steps))
