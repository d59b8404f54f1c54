"""Loss and confusion-matrix PNGs, and the self-contained HTML training report built from a job directory."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from vizsla.infra.formatting import format_duration, format_number
from vizsla.infra.io import atomic_write_json
from vizsla.jobdir import JobDir
from vizsla.spec import DataSpec, JobSpec
from vizsla.training.plots import plot_confusion_matrix, plot_loss, write_job_plots
from vizsla.training.report import write_training_report

EVIL = "<script>alert('x')</script>"


def epoch_history(epochs: int) -> list[dict]:
    records: list[dict] = [{"kind": "step", "epoch": 0, "step": 10, "train_loss": 9.0, "time": 1.0}]
    for e in range(epochs):
        records.append({"kind": "epoch", "epoch": e, "train_loss": 1.2 / (e + 1),
                        "train_accuracy": 0.5 + 0.1 * e, "valid_loss": 1.4 / (e + 1),
                        "valid_accuracy": 0.45 + 0.1 * e, "valid_top5_accuracy": 0.9, "lr": 1e-4,
                        "epoch_time_s": 3.5, "time": 2.0 + e})
    return records


def assert_real_png(path: Path, min_colors: int = 20) -> Image.Image:
    """The file is a PNG with drawn content (many colours), not an empty canvas."""
    assert path.is_file() and path.stat().st_size > 5_000
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        colors = image.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colors is not None and len(colors) >= min_colors
        return image


def test_plot_loss_writes_two_panel_png(tmp_path: Path) -> None:
    image = assert_real_png(plot_loss(epoch_history(4), tmp_path / "Loss_plot.png"))
    assert image.width > image.height > 300


def test_plot_loss_handles_one_epoch_and_missing_series(tmp_path: Path) -> None:
    only_train = [{"epoch": 0, "train_loss": 0.7}]
    assert_real_png(plot_loss(only_train, tmp_path / "one.png"))


def test_plot_loss_refuses_a_history_without_epochs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no epoch records"):
        plot_loss(epoch_history(0), tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_confusion_matrix_for_two_classes(tmp_path: Path) -> None:
    image = assert_real_png(plot_confusion_matrix([[8, 2], [0, 0]], ["ants", "bees"], tmp_path / "cm.png"))
    assert image.width >= 500


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix_for_133_classes(tmp_path: Path, normalize: bool) -> None:
    n = 133
    labels = [f"n02{i:06d}-Very_Long_Dog_Breed_Name_{i}" for i in range(n)]
    matrix = [[10 if i == j else (1 if j == (i + 1) % n else 0) for j in range(n)] for i in range(n)]
    path = tmp_path / "cm133.png"
    image = assert_real_png(plot_confusion_matrix(matrix, labels, path, normalize=normalize))
    small = assert_real_png(plot_confusion_matrix([[1, 0], [0, 1]], ["a", "b"], tmp_path / "cm2.png"))
    assert image.width > 2 * small.width


def test_confusion_matrix_rejects_mismatched_labels(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="3x3"):
        plot_confusion_matrix([[1, 0], [0, 1]], ["a", "b", "c"], tmp_path / "cm.png")


def write_job(root: Path, *, with_result: bool = True) -> JobDir:
    """A job directory as the trainer leaves it, with hostile class names and file names."""
    spec = JobSpec(output=str(root), data=DataSpec(root="/data/insects"))
    job = JobDir(root)
    root.mkdir(parents=True)
    job.spec.write_text(spec.to_yaml())
    job.metrics.write_text("".join(json.dumps(r) + "\n" for r in epoch_history(3)) + '{"kind": "ep')
    labels = ["ants", EVIL]
    if with_result:
        atomic_write_json(job.result, {
            "job_name": "insects-1", "job_dir": str(root), "status": "Completed", "failure_reason": None,
            "stop_reason": None, "start_time": "2024-11-25T10:00:00+00:00",
            "end_time": "2024-11-25T10:05:03+00:00",
            "duration_s": 303.0, "hyperparameters": {"model.name": "efficientnet_lite0", "train.lr": 0.001},
            "metrics": {"valid_accuracy": 0.9123, "test_accuracy": 0.875, "test_loss": 0.31},
            "test_source": "test", "epochs_completed": 3, "best_epoch": 2,
            "best_metric": {"name": "valid_accuracy", "value": 0.9123},
            "best_model_path": str(root / "model"),
            "per_class": {"split": "test", "labels": labels, "precision": [0.9, 0.85], "recall": [0.8, 0.95],
                          "f1": [0.847, 0.897], "support": [40, 40]},
            "confusion_matrix": {"split": "test", "labels": labels, "matrix": [[32, 8], [2, 38]]},
            "data": {"classes": 2, "images": {"train": 240, "valid": 80, "test": 80}, "bad_files": 2},
            "weights": {"source": "package"},
            "mlflow": {"tracking_uri": "sqlite:///x/mlflow.db", "experiment": "vizsla", "run_id": "abc123"},
        })
    warning = "class <bees> has 3x more images than ants"
    atomic_write_json(job.data_report, {"warnings": [warning], "classes": 2})
    job.bad_files.write_text(
        f"path,reason\ntrain/ants/broken.jpg,truncated JPEG\ntrain/bees/{EVIL}.png,not an image\n"
    )
    return job


def test_write_job_plots_uses_metrics_and_result(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job")
    written = write_job_plots(job)
    assert written == [job.loss_plot, job.confusion_matrix_plot]
    for path in written:
        assert_real_png(path)


def test_report_has_sections_embeds_plots_and_escapes(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job")
    write_job_plots(job)
    html = write_training_report(job).read_text()
    assert job.training_report.is_file()
    sections = ("summary", "hyperparameters", "metrics", "curves", "per-class", "confusion-matrix", "data")
    for section in sections:
        assert f'<section id="{section}">' in html
    assert "insects-1" in html and "Completed" in html and "5m 03s" in html
    assert "<th>model.name</th><td><code>efficientnet_lite0</code></td>" in html
    assert "0.8750" in html and "test_accuracy" in html and "abc123" in html
    assert "truncated JPEG" in html and "has 3x more images" in html and "&lt;bees&gt;" in html
    assert EVIL not in html and "&lt;script&gt;alert(" in html
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 2
    for encoded in images:
        Image.open(io.BytesIO(base64.b64decode(encoded))).verify()
    assert "http://" not in html and "https://" not in html  # opens offline: nothing fetched


def test_report_of_a_job_without_result_or_plots(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job", with_result=False)
    html = write_training_report(job).read_text()
    assert "Unknown" in html and "No loss plot" in html and "No final metrics" in html
    assert "<img" not in html
    assert "data:image" not in html


def test_report_prefers_the_in_memory_result(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job")
    html = write_training_report(job, result={"job_name": "override", "status": "Stopped",
                                              "stop_reason": "SIGTERM"}).read_text()
    assert "override" in html and "SIGTERM" in html and "status-Stopped" in html


def test_formatting_helpers() -> None:
    assert [format_duration(s) for s in (None, 4.25, 63, 7509)] == ["—", "4.2s", "1m 03s", "2h 05m 09s"]
    assert [format_number(v) for v in (None, 3, 0.5, 0.00012, "x")] == ["—", "3", "0.5000", "1.20e-04", "x"]
