"""The job's two pictures: loss/accuracy curves per epoch and the confusion matrix, as PNG files.

Figures are built with `matplotlib.figure.Figure` and the Agg canvas directly, never pyplot, so plotting
touches no global state and works in threads, servers and headless machines.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vizsla.jobdir import JobDir, atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_ANNOTATED_CLASSES = 30  # above this, cells carry no numbers and tick labels get tiny
MAX_LABEL_CHARS = 24  # long class names are shortened on the axes of large matrices
Series = tuple[tuple[str, str], ...]  # (record key, legend label) pairs
LOSS_SERIES: Series = (("train_loss", "train"), ("valid_loss", "valid"))
ACCURACY_SERIES: Series = (
    ("train_accuracy", "train"),
    ("valid_accuracy", "valid"),
    ("valid_top5_accuracy", "valid top-5"),
)


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path, dpi: int) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def epoch_records(history: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The per-epoch records of a history or metrics.jsonl (step records are left out)."""
    return [r for r in history if r.get("kind", "epoch") == "epoch" and "epoch" in r]


def _plot_series(axes: Axes, records: Sequence[Mapping[str, Any]], series: Series) -> None:
    for key, label in series:
        points = [(r["epoch"] + 1, r[key]) for r in records if isinstance(r.get(key), int | float)]
        if points:
            xs, ys = zip(*points, strict=True)
            axes.plot(xs, ys, marker="o", markersize=3, label=label)
    axes.set_xlabel("epoch")
    axes.grid(True, alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend()


def plot_loss(history: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Write train/valid loss and accuracy per epoch (two panels) to `path`; epochs are shown 1-based."""
    records = epoch_records(history)
    if not records:
        raise ValueError("no epoch records to plot")
    figure = _new_figure(10, 4)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    _plot_series(loss_axes, records, LOSS_SERIES)
    loss_axes.set_ylabel("cross-entropy loss")
    loss_axes.set_title("Loss")
    _plot_series(accuracy_axes, records, ACCURACY_SERIES)
    accuracy_axes.set_ylabel("accuracy")
    accuracy_axes.set_ylim(0, 1.02)
    accuracy_axes.set_title("Accuracy")
    for axes in (loss_axes, accuracy_axes):
        axes.xaxis.get_major_locator().set_params(integer=True)
    figure.suptitle(f"Training curves ({len(records)} epochs)")
    return _save(figure, path, dpi=110)


def _normalized(matrix: Sequence[Sequence[int]]) -> list[list[float]]:
    """Rows divided by their sums (recall per true class); empty rows stay zero."""
    return [[value / sum(row) if sum(row) else 0.0 for value in row] for row in matrix]


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"


def _annotate(axes: Axes, values: list[list[float]], normalize: bool) -> None:
    peak = max((max(row) for row in values), default=0) or 1
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            text = f"{value:.2f}" if normalize else f"{int(value)}"
            color = "white" if value > peak / 2 else "black"
            axes.text(j, i, text, ha="center", va="center", color=color, fontsize=8)


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path, *, normalize: bool = True
) -> Path:
    """Write the confusion matrix (rows: true class) to `path`, readable from 2 to hundreds of classes."""
    n = len(labels)
    if n == 0 or len(matrix) != n or any(len(row) != n for row in matrix):
        raise ValueError(f"confusion matrix must be {n}x{n} for {n} labels")
    values = _normalized(matrix) if normalize else [[float(v) for v in row] for row in matrix]
    large = n > MAX_ANNOTATED_CLASSES
    side = min(max(6.0, 0.12 * n + 3), 22.0) if large else max(5.0, 0.4 * n + 3)
    figure = _new_figure(side, side * 0.9)
    axes = figure.subplots()
    image = axes.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else None, interpolation="nearest")
    scale_label = "fraction of true class" if normalize else "images"
    figure.colorbar(image, ax=axes, shrink=0.5 if large else 0.8, label=scale_label)
    cell_points = side * 0.75 * 72 / n  # rough height of one row in points: the axes get ~3/4 of the figure
    font = max(2.0, min(7.0, 0.6 * cell_points)) if large else 9.0
    shown = [_short(label) for label in labels] if large else list(labels)
    rotation, align = (90, "center") if large else (45, "right")
    axes.set_xticks(range(n), shown, rotation=rotation, ha=align, fontsize=font)
    axes.set_yticks(range(n), shown, fontsize=font)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title("Confusion matrix" + (" (rows normalized)" if normalize else ""))
    if not large:
        _annotate(axes, values, normalize)
    return _save(figure, path, dpi=150 if large else 110)


def write_job_plots(
    job_dir: JobDir,
    *,
    result: Mapping[str, Any] | None = None,
    history: Sequence[Mapping[str, Any]] | None = None,
) -> list[Path]:
    """(Re)write Loss_plot.png and confusion_matrix.png from the job's records; skip what has no data."""
    result = result if result is not None else job_dir.read_result() or {}
    history = history if history is not None else job_dir.read_metrics()
    written = []
    if epoch_records(history):
        written.append(plot_loss(history, job_dir.loss_plot))
    confusion = result.get("confusion_matrix") or {}
    if confusion.get("matrix") and confusion.get("labels"):
        matrix, labels = confusion["matrix"], confusion["labels"]
        written.append(plot_confusion_matrix(matrix, labels, job_dir.confusion_matrix_plot))
    return written
