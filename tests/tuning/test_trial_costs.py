"""What keeps a trial's fixed cost low: the fork server's preload, the trials' backbone built once, the
confusion matrix frame drawn once per label set, and a precise trial duration."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vizsla.infra.figures import new_figure
from vizsla.training import plots
from vizsla.tuning.server import BACKBONE_VARIABLE, trial_backbone
from vizsla.tuning.tune_spec import build_tune_spec

RANGES = {"lr": {"type": "Continuous", "min": 1e-4, "max": 1e-1, "scaling": "Logarithmic"}}
TRAINING = {"data": {"root": "/data/flowers"}, "model": {"name": "resnet18", "weights": "none"}}


def _spec(ranges: dict | None = None, **train: object) -> object:
    training = {**TRAINING, "train": {"epochs": 2, **train}}
    return build_tune_spec(
        {"output": "runs/tune", "ranges": ranges or RANGES, "training": training}, {}, source="test"
    )


PRELOAD_CHECK = """
import json, os, sys, threading, time
import vizsla.tuning.preload
from vizsla.models import templates
native = len(os.listdir("/proc/self/task"))
pid = os.fork()
if pid == 0:  # a trial: its first parallel op must not wait for threads the fork did not copy
    import torch
    torch.set_num_threads(2)
    x = torch.randn(600, 600)
    (x @ x).sum().item()
    os._exit(0)
deadline = time.time() + 60
while time.time() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.1)
else:
    os.kill(pid, 9)
    status = -1
print(json.dumps({"python_threads": threading.active_count(), "native": native, "child": status,
                  "templates": len(templates._TEMPLATES), "modules": sorted(sys.modules)}))
"""


def test_the_preload_imports_what_a_trial_runs_and_a_trial_forks_from_it(tmp_path: Path) -> None:
    backbone = {"name": "test_resnet", "weights": "none", "image_size": 32, "seed": 0}
    env = {
        "PATH": "/usr/bin:/bin",
        "VIZSLA_CACHE_DIR": str(tmp_path),
        "HOME": str(tmp_path),
        "OMP_NUM_THREADS": "2",
        BACKBONE_VARIABLE: json.dumps(backbone),
    }
    done = subprocess.run(
        [sys.executable, "-c", PRELOAD_CHECK], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["child"] == 0  # exited, not killed after waiting
    assert report["python_threads"] == 1 and report["templates"] == 1
    # torch's own thread and pyarrow's jemalloc one (both fork-safe); none of OpenMP's workers
    assert report["native"] <= 3
    modules = set(report["modules"])
    expected = {"torch", "timm", "mlflow", "mlflow.store.tracking.sqlalchemy_store", "matplotlib.figure"}
    expected |= {"vizsla.training.trainer", "vizsla.data.features", "vizsla.tracking.mlflow_tracker"}
    assert expected <= modules


def test_the_trials_backbone_is_named_only_when_no_range_changes_it() -> None:
    assert trial_backbone(_spec(seed=7)) == {
        "name": "resnet18",
        "weights": "none",
        "image_size": None,
        "seed": 7,
    }
    for name in ("model", "model.name", "weights", "image_size", "seed", "train.seed"):
        values = [1, 2] if name in ("image_size", "seed", "train.seed") else ["a", "b"]
        ranges = {**RANGES, name: {"type": "Categorical", "values": values}}
        assert trial_backbone(_spec(ranges)) is None, name
    assert BACKBONE_VARIABLE.startswith("VIZSLA_")


def _cells(n: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return (np.eye(n, dtype=int) * 9 + rng.integers(0, 3, (n, n))).tolist()


def test_a_large_confusion_matrix_draws_its_frame_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIZSLA_CACHE_DIR", str(tmp_path / "cache"))
    labels = [f"class_{i:03d}" for i in range(40)]
    first = plots.plot_confusion_matrix(_cells(40, 0), labels, tmp_path / "a.png")
    frames = list((tmp_path / "cache" / "plots").glob("*.png"))
    assert len(frames) == 1

    def no_drawing(spec: dict) -> None:
        raise AssertionError("the frame should come from the cache")

    monkeypatch.setattr(plots, "_draw_matrix_frame", no_drawing)
    again = plots.plot_confusion_matrix(_cells(40, 0), labels, tmp_path / "b.png")
    other = plots.plot_confusion_matrix(_cells(40, 1), labels, tmp_path / "c.png")
    pixels = [np.asarray(Image.open(p).convert("RGB")) for p in (first, again, other)]
    assert np.array_equal(pixels[0], pixels[1]) and not np.array_equal(pixels[0], pixels[2])
    assert pixels[0].shape == pixels[2].shape and pixels[0].shape[1] > 1000

    monkeypatch.undo()
    monkeypatch.setenv("VIZSLA_CACHE_DIR", str(tmp_path / "cache"))
    frames[0].write_bytes(b"not a png")  # a broken frame is drawn again
    redrawn = plots.plot_confusion_matrix(_cells(40, 0), labels, tmp_path / "d.png")
    assert np.array_equal(np.asarray(Image.open(redrawn).convert("RGB")), pixels[0])


def test_the_cells_sit_where_matplotlib_draws_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The painted cells match imshow(nearest) of the same colours on the same axes, pixel for pixel
    except on cell borders where the two round a half pixel differently."""
    from matplotlib import colormaps

    monkeypatch.setenv("VIZSLA_CACHE_DIR", str(tmp_path))
    n = 57
    labels = [f"c{i}" for i in range(n)]
    values = plots._normalized(_cells(n, 2))
    path = plots.plot_confusion_matrix(_cells(n, 2), labels, tmp_path / "cm.png")
    ours = np.asarray(Image.open(path).convert("RGB")).astype(int)
    side = min(max(6.0, 0.12 * n + 3), 22.0)
    font = max(2.0, min(7.0, 0.6 * side * 0.75 * 72 / n))
    figure = new_figure(side, side * 0.9, layout=None)
    figure.set_dpi(plots.LARGE_MATRIX_DPI)
    axes, _ = plots._large_matrix_axes(figure, labels, font)
    axes.imshow(colormaps["Blues"](np.asarray(values), bytes=True), interpolation="nearest")
    figure.canvas.draw()
    theirs = np.asarray(figure.canvas.buffer_rgba())[..., :3].astype(int)
    x0, y0, x1, y1 = axes.bbox.extents
    top, bottom = round(theirs.shape[0] - y1) + 2, round(theirs.shape[0] - y0) - 2
    left, right = round(x0) + 2, round(x1) - 2
    differ = np.abs(ours[top:bottom, left:right] - theirs[top:bottom, left:right]).sum(-1) > 0
    assert differ.mean() < 0.001
