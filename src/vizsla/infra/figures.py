"""Matplotlib figures for PNG outputs, without pyplot: no global state, safe in threads and servers.

Figures are built with `matplotlib.figure.Figure` on the Agg canvas directly and written atomically, so a
report being regenerated never shows a half-written image. matplotlib is imported when a figure is made.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from vizsla.infra.io import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(width: float, height: float, *, layout: str | None = "constrained") -> Figure:
    """A WIDTH x HEIGHT inch figure on its own Agg canvas (LAYOUT: matplotlib's layout engine or None)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path: Path, dpi: int) -> Path:
    """Write FIGURE to PATH as a PNG at DPI, atomically; returns PATH."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())
    return path
