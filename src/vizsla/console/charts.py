"""The tuning job's objective history as inline SVG: no image file, no script, readable offline."""

from __future__ import annotations

from html import escape
from typing import Any

WIDTH, HEIGHT, PAD = 640, 260, 44


def history_svg(trials: list[dict[str, Any]], objective: str, best: int | None, maximize: bool = True) -> str:
    """Each trial's objective as a dot, the best-so-far as a line, the best trial ringed; "" when empty."""
    points = [(t["trial"], t["objective"]) for t in trials if t["objective"] is not None]
    if not points:
        return ""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(ys), max(ys)
    margin = max(0.1 * (y1 - y0), 0.05 * max(abs(y0), abs(y1)), 1e-3)  # dots clear of the frame
    y0, y1 = y0 - margin, y1 + margin

    def at(x: float, y: float) -> tuple[float, float]:
        return (
            PAD + (x - x0) / (x1 - x0) * (WIDTH - 2 * PAD),
            HEIGHT - PAD - (y - y0) / (y1 - y0) * (HEIGHT - 2 * PAD),
        )

    running, best_so_far = [], None
    for x, y in points:
        best_so_far = y if best_so_far is None else (max if maximize else min)(best_so_far, y)
        running.append(at(x, best_so_far))
    line = " ".join(f"{px:.1f},{py:.1f}" for px, py in running)
    dots = "".join(
        f'<circle cx="{at(x, y)[0]:.1f}" cy="{at(x, y)[1]:.1f}" r="{6 if x == best else 4}" '
        f'class="{"best" if x == best else "trial"}"><title>trial {x}: {y:.4f}</title></circle>'
        for x, y in points
    )
    axes = (
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" class="axis"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" class="axis"/>'
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 6}" text-anchor="middle">trial</text>'
        + "".join(
            f'<text x="{at(x, y0)[0]:.1f}" y="{HEIGHT - PAD + 14}" text-anchor="middle">{x}</text>'
            for x in sorted(set(xs))[:: max(1, len(set(xs)) // 20)]  # at most ~20 labels
        )
        + f'<text x="12" y="{PAD - 14}">{escape(objective)}</text>'
        f'<text x="{PAD - 6}" y="{PAD + 4}" text-anchor="end">{y1:.3f}</text>'
        f'<text x="{PAD - 6}" y="{HEIGHT - PAD}" text-anchor="end">{y0:.3f}</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" role="img" aria-label="objective history" id="history">{axes}'
        f'<polyline points="{line}" class="best-line"/>{dots}</svg>'
    )
