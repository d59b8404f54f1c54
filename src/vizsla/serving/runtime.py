"""The served model: ONNX Runtime (the default) or torch eager.

A head-only job's model runs as the backbone export its feature extraction already made and checked, plus
the head in numpy (serving/composed.py): no torch import, no export, no check at start. Any other model runs
as the whole classifier exported once per weights digest; at startup its probabilities are compared with
torch's on a few inputs and it is refused (torch is used, with a logged reason) when top-1 differs or the
scores drift beyond ONNX_TOLERANCE.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vizsla.infra.onnx import CpuSession, compare_outputs, export_onnx

log = logging.getLogger("vizsla.serving")

ONNX_TOLERANCE = 1e-3  # max |p_onnx - p_torch| over the check inputs' class probabilities
ONNX_DIR = "onnx"
INT8_FILE = "model.int8.onnx"  # `vizsla export --quantize int8` writes it beside the model, with its report
INT8_REPORT = "model.int8.json"
INT8_MEASURES = ("method", "split", "fp32_accuracy", "int8_accuracy", "change")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, stable for large logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted, dtype=np.float32)
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass
class ServedModel:
    """Labels, preprocessing and a `predict` from preprocessed images (N,3,H,W) to probabilities (N,C)."""

    labels: list[str]
    preprocessing: dict[str, Any]
    runtime: str
    model_dir: Path
    runner: Any
    check: dict[str, Any] = field(default_factory=dict)

    @property
    def input_hw(self) -> tuple[int, int]:
        size = self.preprocessing["input_size"]
        return int(size[1]), int(size[2])

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities for a float32 batch; raises ValueError on a wrong shape."""
        height, width = self.input_hw
        if images.ndim != 4 or images.shape[1:] != (3, height, width):
            raise ValueError(
                f"expected a float32 array of shape [N, 3, {height}, {width}], got {list(images.shape)}"
            )
        if images.shape[0] == 0:
            return np.zeros((0, len(self.labels)), np.float32)
        return softmax(self.runner(np.ascontiguousarray(images, dtype=np.float32)))


class TorchRunner:
    """Eager PyTorch under inference_mode: logits as float32 numpy."""

    def __init__(self, model: Any, threads: int = 0) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.model = model.eval()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(images)).float().numpy()


class OrtRunner(CpuSession):
    """An ONNX Runtime CPU session (vizsla.infra.onnx); no spinning threads, so decoding threads keep their
    cores. Takes the model as bytes or a path, and THREADS (0: every core this job may use)."""


def export_classifier_onnx(model: Any, input_hw: tuple[int, int]) -> bytes:
    """ONNX bytes of the whole classifier (images -> logits) with a dynamic batch axis: dynamo first."""
    return export_onnx(model, input_hw, output_name="logits", exporters=("dynamo", "torchscript"), logger=log)


def model_digest(model: Any) -> str:
    """Content digest of every weight: names the ONNX export, so new weights get a new export."""
    from vizsla.data.extract import backbone_digest

    return backbone_digest(model, model.arch)


def onnx_cache_path(model_dir: Path, digest: str, input_hw: tuple[int, int]) -> Path:
    """<model_dir>/onnx/classifier-<digest16>-<H>x<W>.onnx (the vizsla cache when the folder is read-only)."""
    return model_dir / ONNX_DIR / f"classifier-{digest[:16]}-{input_hw[0]}x{input_hw[1]}.onnx"


def _fallback_cache_path(digest: str, input_hw: tuple[int, int]) -> Path:
    from vizsla.cache import cache_dir

    return cache_dir("onnx") / f"classifier-{digest[:16]}-{input_hw[0]}x{input_hw[1]}.onnx"


def cached_onnx_bytes(model: Any, model_dir: Path, input_hw: tuple[int, int]) -> tuple[bytes, Path]:
    """The cached export for these weights, or a fresh export written next to the model (or to the cache)."""
    from vizsla.infra.io import atomic_write_bytes

    digest = model_digest(model)
    candidates = [onnx_cache_path(model_dir, digest, input_hw), _fallback_cache_path(digest, input_hw)]
    for path in candidates:
        if path.is_file():
            return path.read_bytes(), path
    log.info("exporting the classifier to ONNX (the first start with these weights; this takes a while)")
    data = export_classifier_onnx(model, input_hw)
    for path in candidates:
        try:
            atomic_write_bytes(path, data)
            log.info("exported the classifier to %s (%.1f MB)", path, len(data) / 1e6)
            return data, path
        except OSError as exc:
            log.info("cannot write %s (%s)", path, exc)
    return data, candidates[0]


def compare_runners(
    reference: Any, candidate: Any, input_hw: tuple[int, int], count: int, samples: np.ndarray | None = None
) -> dict[str, Any]:
    """Top-1 agreement and max probability difference of two runners on random (or given) inputs."""
    images = (
        samples
        if samples is not None
        else np.random.default_rng(0).standard_normal((count, 3, *input_hw)).astype(np.float32)
    )
    expected, got = softmax(reference(images)), softmax(candidate(images))
    diff = compare_outputs(expected, got)
    if not diff.same_shape:
        return {"agree": False, "reason": f"output shape {got.shape} != {expected.shape}"}
    max_diff, top1_same = diff.max_abs_diff, diff.top1_identical
    agree = top1_same and max_diff <= ONNX_TOLERANCE
    return {"agree": agree, "inputs": int(len(images)), "top1_identical": top1_same, "max_abs_diff": max_diff}


def load_served_model(
    path: str | Path, *, runtime: str = "onnx", threads: int = 0, check_inputs: int = 4
) -> ServedModel:
    """Load a job's or model folder's classifier on RUNTIME; ONNX falls back to torch when it disagrees."""
    from vizsla.serving.composed import find_model_dir, head_only_job

    found = find_model_dir(path)
    if runtime in ("auto", "onnx", "onnx-int8") and found is not None:
        served = _composed_served_model(found, threads, runtime)
        if served is not None:
            return served
    runtime = "onnx" if runtime == "auto" else runtime
    from vizsla.models.io import load_model, resolve_model_dir

    model_dir = resolve_model_dir(path)
    model = load_model(model_dir)
    preprocessing = dict(model.preprocessing)
    input_hw = (int(preprocessing["input_size"][1]), int(preprocessing["input_size"][2]))
    torch_runner = TorchRunner(model, threads)
    if runtime == "torch":
        return ServedModel(list(model.labels), preprocessing, "torch", model_dir, torch_runner)
    if runtime == "onnx-int8":
        return _int8_served_model(model, model_dir, path, torch_runner, threads, check_inputs)
    if head_only_job(model_dir) is not None:
        served = _exported_backbone_served_model(model, model_dir, torch_runner, threads, check_inputs)
        if served is not None:
            return served
    try:
        data, onnx_path = cached_onnx_bytes(model, model_dir, input_hw)
        ort_runner = OrtRunner(data, threads)
        log.info("checking ONNX Runtime against torch on %d inputs", check_inputs)
        check = compare_runners(torch_runner, ort_runner, input_hw, check_inputs)
    except Exception as exc:  # exporters and ORT raise anything; torch always works
        log.warning(
            "ONNX Runtime unavailable for this model (%s: %s); serving with torch", type(exc).__name__, exc
        )
        return ServedModel(
            list(model.labels),
            preprocessing,
            "torch",
            model_dir,
            torch_runner,
            {"agree": False, "reason": f"{type(exc).__name__}: {exc}"},
        )
    if not check["agree"]:
        log.warning("ONNX Runtime disagrees with torch (%s); serving with torch", check)
        return ServedModel(list(model.labels), preprocessing, "torch", model_dir, torch_runner, check)
    check["onnx_path"] = str(onnx_path)
    return ServedModel(list(model.labels), preprocessing, "onnx", model_dir, ort_runner, check)


def _composed_served_model(model_dir: Path, threads: int, runtime: str = "onnx") -> ServedModel | None:
    """A head-only model on its job's cached backbone export + numpy head, or None (then torch loads it).

    RUNTIME auto and onnx-int8 take the int8 backbone the job's feature extraction ran when there is one
    (the model its metrics measured); auto falls back to the fp32 export, onnx-int8 to `vizsla export
    --quantize int8`'s model (None here)."""
    from vizsla.serving.composed import (
        CONFIG_FILE,
        NumpyHead,
        composed_runner,
        feature_int8_export,
        find_backbone_export,
        read_json,
    )

    config = read_json(model_dir / CONFIG_FILE)
    try:
        export = find_backbone_export(model_dir, config) if isinstance(config, dict) else None
        if export is None:
            return None
        int8 = feature_int8_export(model_dir, config, export) if runtime in ("auto", "onnx-int8") else None
        if int8 is None and runtime == "onnx-int8":
            return None
        runner = composed_runner(int8 or export.path, NumpyHead.from_model_dir(model_dir, config), threads)
    except Exception as exc:  # a garbled record, config or export: the torch path reports it properly
        log.warning(
            "cannot serve from the backbone export (%s: %s); loading with torch", type(exc).__name__, exc
        )
        return None
    used = int8 or export.path
    log.info(
        "reusing the %sbackbone export %s (checked when the job extracted its features; digest from the %s): "
        "no export, no torch at start",
        "int8 " if int8 else "",
        used,
        "job's feature cache" if export.source == "job" else "model's backbone.json",
    )
    check = {
        "agree": True,
        "reused_backbone": str(used),
        "backbone_digest": export.digest,
        "digest_source": export.source,
        "checked": "at feature extraction",
    }
    if int8 is not None:
        check["precision"] = "int8: the backbone the job's features (so its metrics) came from"
    return ServedModel(
        list(config["labels"]), dict(config["preprocessing"]), "onnx-int8" if int8 else "onnx", model_dir,
        runner, check,
    )


def _exported_backbone_served_model(
    model: Any, model_dir: Path, reference: Any, threads: int, check_inputs: int
) -> ServedModel | None:
    """A head-only model whose backbone export is not cached yet: export the backbone (checked, into the
    job's cache, where training and the next start find it), compose it with the head, compare with torch."""
    from vizsla.data.extract import backbone_digest, create_extractor, onnx_model_path
    from vizsla.serving.composed import NumpyHead, cache_bases, composed_runner, head_only_job, write_record

    preprocessing = dict(model.preprocessing)
    input_hw = (int(preprocessing["input_size"][1]), int(preprocessing["input_size"][2]))
    base = cache_bases(head_only_job(model_dir))[0]
    try:
        digest = backbone_digest(model.backbone, model.arch)
        extractor = create_extractor(
            model.backbone, input_hw=input_hw, model_key=digest, backend="onnx", cache_dir=base
        )
        path = onnx_model_path(digest, input_hw, base)
        if extractor.backend != "onnx" or not path.is_file():
            return None
        runner = composed_runner(path, NumpyHead.from_model_dir(model_dir, model.config), threads)
        check = compare_runners(reference, runner, input_hw, check_inputs)
    except Exception as exc:  # exporters and ORT raise anything; the classifier export is tried next
        log.warning("cannot serve from a backbone export (%s: %s)", type(exc).__name__, exc)
        return None
    if not check["agree"]:
        log.warning("the backbone export + head disagree with torch (%s)", check)
        return None
    write_record(model_dir, digest, model.arch, path)
    log.info("exported the backbone to %s; the next start reuses it without torch", path)
    check.update(reused_backbone=str(path), backbone_digest=digest, digest_source="torch")
    return ServedModel(list(model.labels), preprocessing, "onnx", model_dir, runner, check)


def int8_files(model_dir: Path, path: str | Path) -> tuple[Path, Path]:
    """The int8 model of MODEL_DIR and its export report, or a UserError saying how to make them."""
    from vizsla.errors import UserError

    model_file, report_file = model_dir / INT8_FILE, model_dir / INT8_REPORT
    if not model_file.is_file() or not report_file.is_file():
        raise UserError(
            f"{model_dir} has no int8 model ({INT8_FILE} with its {INT8_REPORT})",
            hint=f"Quantise it first (it measures the accuracy change): vizsla export {path} --quantize int8",
        )
    return model_file, report_file


def has_feature_int8(path: str | Path) -> bool:
    """Whether PATH is a head-only job's model whose feature extraction ran an int8 backbone that is still
    cached (runtime onnx-int8 / auto then serve it without `vizsla export --quantize int8`)."""
    from vizsla.serving.composed import (
        CONFIG_FILE,
        feature_int8_export,
        find_backbone_export,
        find_model_dir,
        read_json,
    )

    found = find_model_dir(path)
    config = read_json(found / CONFIG_FILE) if found is not None else None
    export = find_backbone_export(found, config) if found is not None and isinstance(config, dict) else None
    return export is not None and feature_int8_export(found, config, export) is not None


def _int8_served_model(
    model: Any, model_dir: Path, path: str | Path, reference: Any, threads: int, check_inputs: int
) -> ServedModel:
    """The int8 export on ONNX Runtime, refused when it was quantised from other weights than these."""
    import json

    from vizsla.errors import UserError

    model_file, report_file = int8_files(model_dir, path)
    try:
        report = json.loads(report_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {report_file}: {exc}") from None
    if report.get("model_digest") != model_digest(model):
        raise UserError(
            f"{model_file} was quantised from other weights than {model_dir}'s (trained again since?)",
            hint=f"Quantise these weights: vizsla export {path} --quantize int8",
        )
    runner = OrtRunner(str(model_file), threads)
    input_hw = (int(model.preprocessing["input_size"][1]), int(model.preprocessing["input_size"][2]))
    check = compare_runners(reference, runner, input_hw, check_inputs)  # int8 differs by design: recorded
    check.update(
        agree=True,
        int8_path=str(model_file),
        **{k: report[k] for k in INT8_MEASURES if k in report},
    )
    return ServedModel(list(model.labels), dict(model.preprocessing), "onnx-int8", model_dir, runner, check)
