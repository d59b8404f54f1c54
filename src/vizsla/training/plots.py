"""The job's two pictures: loss/accuracy curves per epoch and the confusion matrix, as PNG files.

Figures are built with `matplotlib.figure.Figure` and the Agg canvas directly, never pyplot, so plotting
touches no global state and works in threads, servers and headless machines.

A large confusion matrix (hundreds of tick labels: ~1 s of text drawing) is drawn once per label set as a
frame, everything but the cells, kept under the cache folder (`plots/`); each matrix then only paints its
cells into the frame's pixels. Tuning trials, which share their labels, draw their matrix in ~0.2 s.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vizsla.infra.figures import new_figure, save_png
from vizsla.infra.io import atomic_write_bytes
from vizsla.jobdir import JobDir
from vizsla.names import printable

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger("vizsla.train")

MAX_ANNOTATED_CLASSES = 30  # above this, cells carry no numbers and tick labels get tiny
MAX_LABEL_CHARS = 24  # long class names are shortened on the axes of large matrices
# Inches around a large matrix (laid out by _large_matrix_axes): beside the tick labels the ticks, the axis
# label and a pad; above, the title; right of the matrix a gap, the colorbar, its ticks and label.
LABEL_PAD_IN = 0.5
TITLE_ROOM_IN = 0.5
COLORBAR_GAP_IN, COLORBAR_WIDTH_IN, COLORBAR_ROOM_IN = 0.3, 0.3, 0.8
LARGE_MATRIX_DPI = 150
FRAME_FORMAT = 1  # of the cached frames (plots/<key>.png); part of their key
LOSS_FIGURE_IN = (10.0, 4.0)
LOSS_MARGINS_IN = (0.75, 0.15, 0.5, 0.7, 0.75)  # left, right, bottom, top (titles), between the panels
Series = tuple[tuple[str, str], ...]  # (record key, legend label) pairs
LOSS_SERIES: Series = (("train_loss", "train"), ("valid_loss", "valid"))
ACCURACY_SERIES: Series = (
    ("train_accuracy", "train"),
    ("valid_accuracy", "valid"),
    ("valid_top5_accuracy", "valid top-5"),
)


def _large_matrix_axes(figure: Figure, labels: Sequence[str], font: float) -> tuple[Axes, Axes]:
    """The square axes of a large matrix and its colorbar's, placed from the widest tick label.

    Constrained layout would draw the whole figure an extra time to measure every tick label: ~1 s of
    the ~1.5 s a 100-class matrix takes. The labels are the only thing of variable size here, and
    measuring their text alone takes milliseconds."""
    from matplotlib.font_manager import FontProperties

    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    prop = FontProperties(size=font)
    widest_px = max(renderer.get_text_width_height_descent(label, prop, ismath=False)[0] for label in labels)
    width, height = (float(v) for v in figure.get_size_inches())
    margin = min(widest_px / figure.dpi + LABEL_PAD_IN, 0.45 * height)  # tick labels + axis label
    right = COLORBAR_GAP_IN + COLORBAR_WIDTH_IN + COLORBAR_ROOM_IN
    side = max(1.0, min(height - margin - TITLE_ROOM_IN, width - margin - right))
    axes = figure.add_axes((margin / width, margin / height, side / width, side / height))
    bar_height = side / 2  # as colorbar(shrink=0.5): centred beside the matrix
    bar = (
        (margin + side + COLORBAR_GAP_IN) / width,
        (margin + (side - bar_height) / 2) / height,
        COLORBAR_WIDTH_IN / width,
        bar_height / height,
    )
    return axes, figure.add_axes(bar)


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
    figure = new_figure(*LOSS_FIGURE_IN, layout=None)
    width, height = LOSS_FIGURE_IN
    left, right, bottom, top, gap = LOSS_MARGINS_IN
    # Fixed margins (their tick labels are short numbers): constrained layout would draw it twice (~0.1 s).
    figure.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=gap / ((width - left - right - gap) / 2),
    )
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
    return save_png(figure, path, dpi=110)


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
    labels = [printable(str(label)) for label in labels]  # class folders may have undecodable names
    n = len(labels)
    if n == 0 or len(matrix) != n or any(len(row) != n for row in matrix):
        raise ValueError(f"confusion matrix must be {n}x{n} for {n} labels")
    values = _normalized(matrix) if normalize else [[float(v) for v in row] for row in matrix]
    if n > MAX_ANNOTATED_CLASSES:
        return _plot_large_matrix(values, labels, path, normalize=normalize)
    side = max(5.0, 0.4 * n + 3)
    figure = new_figure(side, side * 0.9)
    axes = figure.subplots()
    image = axes.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else None, interpolation="nearest")
    figure.colorbar(image, ax=axes, shrink=0.8, label=_scale_label(normalize))
    _label_matrix_axes(axes, list(labels), 9.0, normalize, rotation=45, align="right")
    _annotate(axes, values, normalize)
    return save_png(figure, path, dpi=110)


def _scale_label(normalize: bool) -> str:
    return "fraction of true class" if normalize else "images"


def _label_matrix_axes(
    axes: Axes, labels: list[str], font: float, normalize: bool, *, rotation: int, align: str
) -> None:
    n = len(labels)
    axes.set_xticks(range(n), labels, rotation=rotation, ha=align, fontsize=font)
    axes.set_yticks(range(n), labels, fontsize=font)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title("Confusion matrix" + (" (rows normalized)" if normalize else ""))


def _plot_large_matrix(
    values: list[list[float]], labels: Sequence[str], path: Path, *, normalize: bool
) -> Path:
    """A matrix without cell numbers: its cells painted into the frame of its labels (cached, see above)."""
    import numpy as np
    from matplotlib import colormaps
    from PIL import Image

    n = len(labels)
    cells = np.asarray(values, dtype=np.float64)
    vmax = 1.0 if normalize else float(cells.max()) or 1.0
    side = min(max(6.0, 0.12 * n + 3), 22.0)
    cell_points = side * 0.75 * 72 / n  # rough height of one row in points: the axes get ~3/4 of the figure
    font = max(2.0, min(7.0, 0.6 * cell_points))
    spec = {
        "format": FRAME_FORMAT,
        "labels": [_short(label) for label in labels],
        "side": side,
        "font": font,
        "normalize": normalize,
        "vmax": vmax,
        "dpi": LARGE_MATRIX_DPI,
    }
    pixels, box = _matrix_frame(spec)
    colors = colormaps["Blues"](np.clip(cells / vmax, 0.0, 1.0), bytes=True)  # (n, n, 4) uint8
    top, bottom, left, right = box["pixels"]
    y0, y1, x0, x1 = box["extent"]  # the axes' edges in array coordinates (row 0 at the top)
    rows = np.floor((np.arange(top, bottom) + 0.5 - y0) / (y1 - y0) * n).clip(0, n - 1).astype(np.intp)
    cols = np.floor((np.arange(left, right) + 0.5 - x0) / (x1 - x0) * n).clip(0, n - 1).astype(np.intp)
    pixels[top:bottom, left:right] = colors[rows[:, None], cols[None, :]]
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., :3]).save(buffer, format="png")  # opaque: RGB encodes ~1/4 faster
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _matrix_frame(spec: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """The frame of a large matrix (RGBA pixels) and where its cells go, from the cache or drawn now."""
    import numpy as np
    from PIL import Image

    from vizsla.cache import cache_dir

    key = hashlib.sha256(json.dumps([spec, _code_version()], sort_keys=True).encode("utf-8")).hexdigest()
    path = cache_dir("plots") / f"{key[:32]}.png"
    try:
        with Image.open(path) as image:
            box = json.loads(image.text["vizsla-frame"])  # type: ignore[attr-defined]
            pixels = np.array(image.convert("RGBA"))
        if box["spec"] == spec:
            return pixels, box
    except (OSError, ValueError, KeyError, TypeError):
        pass
    pixels, box = _draw_matrix_frame(spec)
    try:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("vizsla-frame", json.dumps(box))
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="png", pnginfo=info)
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as exc:  # a read-only cache only costs the next plot its drawing
        log.debug("cannot keep the confusion matrix frame in %s: %s", path, exc)
    return pixels, box


def _draw_matrix_frame(spec: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """Draw everything of a large matrix but its cells; return the pixels and the cells' box in them."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    labels, side, font, normalize = spec["labels"], spec["side"], spec["font"], spec["normalize"]
    n = len(labels)
    figure = new_figure(side, side * 0.9, layout=None)
    figure.set_dpi(spec["dpi"])
    axes, bar = _large_matrix_axes(figure, labels, font)
    axes.set_xlim(-0.5, n - 0.5)
    axes.set_ylim(n - 0.5, -0.5)  # row 0 at the top, as imshow draws it
    axes.set_aspect("equal")
    axes.set_facecolor("none")
    for spine in axes.spines.values():  # just outside the cells, which are painted over the axes' inside
        spine.set_position(("outward", spine.get_linewidth() / 2))
    mappable = ScalarMappable(Normalize(0.0, spec["vmax"]), colormaps["Blues"])
    figure.colorbar(mappable, cax=bar, label=_scale_label(normalize))
    _label_matrix_axes(axes, labels, font, normalize, rotation=90, align="center")
    figure.canvas.draw()
    pixels = np.array(figure.canvas.buffer_rgba())  # type: ignore[attr-defined]
    height = pixels.shape[0]
    x0, y0, x1, y1 = (float(v) for v in axes.bbox.extents)  # display pixels, origin at the bottom
    extent = [height - y1, height - y0, x0, x1]  # rows from the top, then columns
    box = {
        "spec": spec,
        "extent": extent,
        "pixels": [round(extent[0]), round(extent[1]), round(extent[2]), round(extent[3])],
    }
    return pixels, box


@functools.cache
def _code_version() -> str:
    """This module's code and matplotlib's version: a frame drawn by other code is drawn again."""
    import matplotlib

    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16] + "/" + matplotlib.__version__


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
