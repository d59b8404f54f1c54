"""`vizsla export`: the classifier as ONNX (checked against torch), optionally int8 with its accuracy change.

int8 uses ONNX Runtime's static QDQ quantisation calibrated on up to CALIBRATION_IMAGES training images of the
job (dynamic weight-only quantisation when the job's images cannot be found), then both models are scored on
the job's test split (valid when there is none) from data/split.csv.
"""

from __future__ import annotations

import csv
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vizsla.errors import ModelError, UserError
from vizsla.jobdir import JobDir

log = logging.getLogger("vizsla.serving")

CALIBRATION_IMAGES = 64
EVAL_BATCH = 32


def job_split_files(model_dir: Path) -> tuple[Path | None, dict[str, list[tuple[Path, str]]]]:
    """(data root, {split: [(image path, label)]}) of the job that owns MODEL_DIR; empty when unknown."""
    import yaml

    job = JobDir(model_dir.parent)
    manifest, spec_file = job.split_manifest, job.spec
    if not manifest.is_file() or not spec_file.is_file():
        return None, {}
    try:
        spec = yaml.safe_load(spec_file.read_text(encoding="utf-8")) or {}
        root = Path(str(spec["data"]["root"])).expanduser()
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None, {}
    if "://" in str(spec["data"]["root"]) or not root.is_dir():
        return None, {}
    splits: dict[str, list[tuple[Path, str]]] = {}
    with open(manifest, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            splits.setdefault(row["split"], []).append((root / row["path"], row["label"]))
    return root, splits


def _batches(
    items: list[tuple[Path, str]], preprocessing: dict[str, Any], size: int
) -> Iterator[tuple[np.ndarray, list[str]]]:
    from vizsla.data.decode import BadImageError, read_and_decode
    from vizsla.data.transforms import create_transform, draft_size_for

    transform = create_transform(preprocessing, train=False, augment=False, hflip=False)
    draft = draft_size_for(preprocessing)
    arrays: list[np.ndarray] = []
    labels: list[str] = []
    for path, label in items:
        try:
            image = read_and_decode(path, max_pixels=89_478_485, draft_size=draft)
        except BadImageError:
            continue
        arrays.append(transform(image).numpy())
        labels.append(label)
        if len(arrays) == size:
            yield np.stack(arrays), labels
            arrays, labels = [], []
    if arrays:
        yield np.stack(arrays), labels


def accuracy(
    run: Callable[[np.ndarray], np.ndarray],
    items: list[tuple[Path, str]],
    labels: list[str],
    preprocessing: dict[str, Any],
) -> tuple[float, int]:
    """Top-1 accuracy of RUN (images -> logits) on ITEMS, and how many images were scored."""
    index = {name: i for i, name in enumerate(labels)}
    correct = total = 0
    for images, names in _batches(items, preprocessing, EVAL_BATCH):
        predicted = run(images).argmax(1)
        correct += int(sum(int(p) == index.get(n, -1) for p, n in zip(predicted, names, strict=True)))
        total += len(names)
    return (correct / total if total else float("nan")), total


def quantize_int8(fp32_path: Path, int8_path: Path, calibration: list[np.ndarray] | None) -> str:
    """Write the int8 model; static QDQ with CALIBRATION batches (the same quantiser feature extraction
    uses), else dynamic. Returns the method used."""
    if calibration:
        from vizsla.data.quantize import quantize_static_int8

        quantize_static_int8(fp32_path, int8_path, calibration)
        return "static"
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QUInt8)
    return "dynamic"


def _check_export_request(path: str | Path, fmt: str, quantize: str | None) -> None:
    """Refuse an unknown format or quantisation, and a folder whose model is a script's own object."""
    from vizsla.serving.toolkit import is_vizsla_model

    if fmt != "onnx":
        raise UserError(f"unknown export format {fmt!r}; only onnx is supported")
    if quantize not in (None, "int8"):
        raise UserError(f"unknown quantisation {quantize!r}; use int8")
    if Path(path).is_dir() and not is_vizsla_model(Path(path)):
        raise UserError(
            f"{path} holds no vizsla model: a script job's own model files (e.g. model.pth) are plain "
            "Python objects its inference script loads, so they cannot be exported to ONNX",
            hint="Serve them in-process: vizsla serve PATH --entry-point inference.py",
        )


def _quantize_export(data: bytes, target: Path, calibration: list[Any]) -> str:
    """Quantise the fp32 export DATA to int8 at TARGET (ORT's pre-processing first where it works);
    returns the method used."""
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = Path(tmp) / "model.onnx"
        fp32_path.write_bytes(data)
        prepared = Path(tmp) / "model.prep.onnx"
        try:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        except Exception as exc:  # pre-processing is an optimisation; quantise the plain export without it
            log.info("quantisation pre-processing skipped: %s: %s", type(exc).__name__, exc)
            prepared = fp32_path
        return quantize_int8(prepared, target, calibration)


def export_model(
    path: str | Path,
    *,
    fmt: str = "onnx",
    quantize: str | None = None,
    output: Path | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Export the model of job/model folder PATH; returns what was written and measured."""
    from vizsla.infra.io import atomic_write_json
    from vizsla.models.io import load_model, resolve_model_dir
    from vizsla.serving.runtime import (
        INT8_FILE,
        OrtRunner,
        TorchRunner,
        cached_onnx_bytes,
        compare_runners,
        model_digest,
    )

    _check_export_request(path, fmt, quantize)
    model_dir = resolve_model_dir(path)
    model = load_model(model_dir)
    preprocessing = dict(model.preprocessing)
    input_hw = (int(preprocessing["input_size"][1]), int(preprocessing["input_size"][2]))
    started = time.perf_counter()
    data, _ = cached_onnx_bytes(model, model_dir, input_hw)
    fp32 = OrtRunner(data)
    torch_runner = TorchRunner(model)
    check = compare_runners(torch_runner, fp32, input_hw, 4)
    if not check["agree"]:
        raise ModelError(f"the ONNX export of {model_dir} disagrees with torch: {check}")
    target = Path(output) if output else model_dir / (INT8_FILE if quantize else "model.onnx")
    target.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"output": str(target), "check": check}
    if not quantize:
        target.write_bytes(data)
        echo(
            f"wrote {target} ({len(data) / 1e6:.2f} MB) in {time.perf_counter() - started:.1f} s; "
            f"matches torch (max |dp| {check['max_abs_diff']:.1e})"
        )
        return report
    _, splits = job_split_files(model_dir)
    calibration = [b for b, _ in _batches(splits.get("train", [])[:CALIBRATION_IMAGES], preprocessing, 16)]
    method = _quantize_export(data, target, calibration)
    int8 = OrtRunner(str(target))
    report.update(method=method, fp32_bytes=len(data), int8_bytes=target.stat().st_size)
    echo(
        f"wrote {target} (int8 {method}, {report['int8_bytes'] / 1e6:.2f} MB "
        f"vs fp32 {len(data) / 1e6:.2f} MB)"
    )
    split = "test" if splits.get("test") else "valid" if splits.get("valid") else None
    if split is None:
        echo("accuracy change: not measured (the job's split files or images were not found)")
    else:
        acc32, count = accuracy(fp32, splits[split], model.labels, preprocessing)
        acc8, _ = accuracy(int8, splits[split], model.labels, preprocessing)
        report.update(split=split, images=count, fp32_accuracy=acc32, int8_accuracy=acc8, change=acc8 - acc32)
        echo(
            f"{split} accuracy on {count} images: fp32 {acc32:.4f}, int8 {acc8:.4f} "
            f"(change {100 * (acc8 - acc32):+.2f} points)"
        )
    # beside the int8 model: which weights it was quantised from (serving refuses a stale one) and how it did
    atomic_write_json(target.with_suffix(".json"), {**report, "model_digest": model_digest(model)})
    if target.parent.resolve() == model_dir.resolve() and target.name == INT8_FILE:
        echo(f"serve it with: vizsla serve {path} --runtime onnx-int8")
    return report
