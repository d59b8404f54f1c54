"""Batched backbone feature extraction on the fastest backend this machine has.

Backends: "torch" (eval mode with BatchNorm folded into the convolutions, inference_mode, channels_last,
bf16 autocast on CPUs with native bf16, fp16 or bf16 autocast on CUDA) and "onnx" (the backbone exported
once per weights and input size, then run by ONNX Runtime's CPU provider on every core with all graph
optimisations).

The "auto" rule comes from measurements on a 2-core AVX-512-bf16 CPU shared with other jobs (images/s at
224 px, batch 32 and 64, weights="none", best of 3 after a warm-up, three runs at load 3-8): ONNX Runtime
fp32 beat torch at its fastest (bf16 autocast + channels_last) by 1.7-6x on efficientnet_lite0 (e.g. 121 vs
30 img/s) and by 1.0-2x on resnet18; on resnet34 they tied within the noise (0.9-1.8x); torch fp32 was
1.7-10x slower than ORT everywhere. So auto is "onnx" on CPU and "torch" on CUDA (onnxruntime-gpu is not a
dependency). When the export, the session or the output check fails, extraction falls back to torch and
logs why; the failure is remembered next to the ONNX cache so later runs go straight to torch.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from vizsla.cache import cache_dir as kind_dir
from vizsla.data.fold import fold_batchnorm
from vizsla.infra.hardware import cpu_supports_bf16, cuda_autocast_precision
from vizsla.infra.io import atomic_write_bytes, atomic_write_text
from vizsla.infra.onnx import CpuSession, compare_outputs, export_onnx

log = logging.getLogger("vizsla.data")

BACKENDS = ("auto", "torch", "onnx")
PRECISIONS = ("auto", "fp32", "int8")  # of ONNX extraction; auto = int8 (see vizsla.data.quantize)
ONNX_TOLERANCE = 1e-3  # max |onnx - torch fp32| relative to max |torch fp32| accepted for an export
_CHECK_BATCH = 3  # differs from the export batch (2), so the check also proves the batch axis is dynamic


def backbone_digest(backbone: nn.Module, arch: str) -> str:
    """SHA-256 of the architecture name and every state_dict tensor (name, dtype, shape, bytes).

    Names the weights by content: fine-tuned or re-downloaded weights get a new digest. Hashing runs at
    memory speed (~0.1 s for resnet34's 87 MB).
    """
    hasher = hashlib.sha256(arch.encode("utf-8"))
    for name, tensor in backbone.state_dict().items():
        value = tensor.detach().to("cpu").contiguous()
        hasher.update(f"|{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        hasher.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return hasher.hexdigest()


def device_of(module: nn.Module) -> torch.device:
    """The device of MODULE's parameters (CPU for a module without any)."""
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def onnx_model_path(model_key: str, input_hw: tuple[int, int], cache_base: Path | None = None) -> Path:
    """Where the export of backbone MODEL_KEY at INPUT_HW is cached: <cache>/onnx/<key>-<H>x<W>.onnx."""
    return kind_dir("onnx", cache_base) / f"{model_key}-{input_hw[0]}x{input_hw[1]}.onnx"


def _failure_marker(onnx_path: Path) -> Path:
    return onnx_path.with_suffix(".failed")


def int8_model_path(onnx_path: Path, calibration_key: str) -> Path:
    """Where the int8 model quantised from the export at ONNX_PATH with one calibration set is cached."""
    return onnx_path.with_name(f"{onnx_path.stem}.int8-{calibration_key[:16]}.onnx")


class Int8DriftError(ValueError):
    """The int8 model's features drifted from fp32's on this calibration set (a property of the images as
    much as of the backbone: another data set may quantise well)."""


def _int8_failure_marker(onnx_path: Path, calibration_key: str | None = None) -> Path:
    """Remembers that int8 failed, so later runs use fp32 at once: for this backbone and every data set
    when quantising itself failed, for this calibration set only when its features drifted."""
    if calibration_key is None:
        return onnx_path.with_name(f"{onnx_path.stem}.int8.failed")
    return onnx_path.with_name(f"{onnx_path.stem}.int8-{calibration_key[:16]}.failed")


def int8_failed(onnx_path: Path, calibration_key: str) -> bool:
    """Whether int8 failed before for this backbone export and calibration set (or for every set)."""
    return _int8_failure_marker(onnx_path, calibration_key).is_file() or _int8_failed_everywhere(onnx_path)


def _int8_failed_everywhere(onnx_path: Path) -> bool:
    """The backbone-wide marker, except one that earlier versions wrote for a drift (they kept drift per
    backbone: one odd data set then turned int8 off for every other)."""
    marker = _int8_failure_marker(onnx_path)
    try:
        reason = marker.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return not reason.startswith("ValueError: int8 features")


class Calibration(Protocol):
    """Images that set the int8 scales: `key` names their content, `images()` decodes them (N, C, H, W)."""

    key: str

    def images(self) -> np.ndarray: ...


def torch_precision(device: torch.device) -> str:
    """Autocast precision of torch extraction: bf16 on CPUs with native bf16 (~2x fp32 here), else fp32."""
    if device.type == "cuda":
        return cuda_autocast_precision()
    return "bf16" if cpu_supports_bf16() else "fp32"


def resolve_backend(
    backend: str, device: torch.device, onnx_path: Path | None = None, precision: str = "fp32"
) -> tuple[str, str]:
    """(backend, precision) that extraction will use, without exporting anything (see the module rule).

    PRECISION applies to ONNX extraction: auto/int8 give int8 unless int8 failed before for this backbone.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown extraction backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown extraction precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    wants_onnx = backend == "onnx" or (backend == "auto" and device.type == "cpu")
    if wants_onnx and device.type == "cpu" and _onnxruntime_available():
        if onnx_path is None or not _failure_marker(onnx_path).is_file():
            int8_failed = onnx_path is not None and _int8_failed_everywhere(onnx_path)
            return "onnx", "int8" if precision in ("auto", "int8") and not int8_failed else "fp32"
    if backend == "onnx":
        log.warning("ONNX extraction is unavailable here (%s); using torch", _onnx_unavailable_reason(
            device, onnx_path))
    return "torch", torch_precision(device)


def _onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _onnx_unavailable_reason(device: torch.device, onnx_path: Path | None) -> str:
    if device.type != "cpu":
        return f"the backbone is on {device}; onnxruntime runs on CPU here"
    if not _onnxruntime_available():
        return "onnxruntime is not installed"
    marker = _failure_marker(onnx_path) if onnx_path else None
    return marker.read_text().strip() if marker and marker.is_file() else "unknown reason"


class Extractor:
    """Maps a batch of normalized images (B, 3, H, W) to pooled features, float32 numpy (B, D)."""

    backend = "torch"
    precision = "fp32"

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        raise NotImplementedError


class TorchExtractor(Extractor):
    """A private eval-mode copy of the backbone run under inference_mode, channels_last and autocast.

    With `fold` (the default) the copy's eval-mode BatchNorm layers are folded into their convolutions
    (vizsla.data.fold; the copy is kept as is where that is impossible); the backbone itself is untouched.
    """

    def __init__(self, backbone: nn.Module, precision: str, *, fold: bool = True) -> None:
        self.device = device_of(backbone)
        self.precision = precision
        model = copy.deepcopy(backbone).eval()
        if fold:
            model = fold_batchnorm(model)
        self.model = model.to(memory_format=torch.channels_last)
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        images = images.to(self.device, non_blocking=True, memory_format=torch.channels_last)
        autocast = (torch.autocast(self.device.type, dtype=self.dtype) if self.dtype is not None
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            features = self.model(images)
        return features.float().cpu().numpy()


class OnnxExtractor(Extractor):
    """An ONNX Runtime CPU session over the exported backbone, on every core (vizsla.infra.onnx)."""

    backend = "onnx"

    def __init__(self, model_bytes: bytes, precision: str = "fp32", *, spinning: bool = False) -> None:
        self.precision = precision
        self.runner = CpuSession(model_bytes, spinning=spinning)
        self.session = self.runner.session

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        return self.runner(images.detach().to("cpu", torch.float32).contiguous().numpy())


def _export_onnx(backbone: nn.Module, input_hw: tuple[int, int]) -> bytes:
    """ONNX bytes of an fp32 CPU copy with a dynamic batch axis: the TorchScript exporter, else dynamo.

    The TorchScript exporter goes first: on efficientnet_lite0 it exports in 0.3 s vs 9.3 s for the dynamo
    exporter, and ONNX Runtime runs its graph as fast (measured here: 231 vs 183 images/s, fp32, 2
    threads). Models it cannot trace go to the dynamo exporter.
    """
    return export_onnx(backbone, input_hw, output_name="features", exporters=("torchscript", "dynamo"),
                       logger=log)


def _check_export(backbone: nn.Module, extractor: OnnxExtractor, input_hw: tuple[int, int]) -> None:
    """Raise when the exported model's features differ from torch fp32 by more than ONNX_TOLERANCE."""
    model = copy.deepcopy(backbone).to("cpu", torch.float32).eval()
    images = torch.randn(_CHECK_BATCH, 3, *input_hw, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(images).numpy()
    got = extractor(images)
    diff = compare_outputs(expected, got)
    if not diff.same_shape:
        raise ValueError(f"ONNX features have shape {got.shape}, torch {expected.shape}")
    if not diff.relative <= ONNX_TOLERANCE:
        raise ValueError(
            f"ONNX features differ from torch by {diff.relative:.2e} (relative) > {ONNX_TOLERANCE}"
        )


def _onnx_extractor(backbone: nn.Module, path: Path, input_hw: tuple[int, int]) -> OnnxExtractor:
    """Load the cached export, or export, check and cache it (atomically: parallel exporters are safe)."""
    if path.is_file():
        return OnnxExtractor(path.read_bytes())
    model_bytes = _export_onnx(backbone, input_hw)
    extractor = OnnxExtractor(model_bytes)
    _check_export(backbone, extractor, input_hw)
    atomic_write_bytes(path, model_bytes)
    log.info("exported the backbone to %s (%.1f MB)", path, len(model_bytes) / 1e6)
    return extractor


def _int8_extractor(fp32: OnnxExtractor, fp32_bytes: bytes, onnx_path: Path,
                    calibration: Calibration) -> OnnxExtractor:
    """The cached int8 model of this calibration set, or quantise, check against FP32 and cache it."""
    from vizsla.data.quantize import INT8_MIN_COSINE, calibration_batches, feature_cosine, quantize_bytes

    path = int8_model_path(onnx_path, calibration.key)
    if path.is_file():
        return OnnxExtractor(path.read_bytes(), "int8")
    started = time.perf_counter()
    images = np.ascontiguousarray(calibration.images(), dtype=np.float32)
    model_bytes = quantize_bytes(fp32_bytes, calibration_batches(images))
    int8 = OnnxExtractor(model_bytes, "int8")
    cosine = feature_cosine(fp32(torch.from_numpy(images)), int8(torch.from_numpy(images)))
    if not cosine >= INT8_MIN_COSINE:
        raise Int8DriftError(f"int8 features differ from fp32: mean cosine {cosine:.4f} < {INT8_MIN_COSINE}")
    atomic_write_bytes(path, model_bytes)
    log.info("quantised the backbone to int8 on %d calibration images in %.1f s (feature cosine %.4f "
             "vs fp32): %s", len(images), time.perf_counter() - started, cosine, path)
    return int8


def create_extractor(backbone: nn.Module, *, input_hw: tuple[int, int], model_key: str,
                     backend: str = "auto", cache_dir: Path | None = None, precision: str = "fp32",
                     calibration: Calibration | None = None) -> Extractor:
    """An extractor on BACKEND ("auto" = the module's rule); ONNX failures fall back to torch, logged.

    `model_key` names the backbone's weights (backbone_digest); `cache_dir` is the base cache folder whose
    `onnx/` keeps exports. With PRECISION auto/int8 and CALIBRATION images, ONNX extraction runs a static
    int8 model (quantised once per backbone and calibration set); when quantisation or its check fails it
    runs fp32 and remembers why.
    """
    device = device_of(backbone)
    path = onnx_model_path(model_key, input_hw, cache_dir)
    name, resolved = resolve_backend(backend, device, path, precision if calibration else "fp32")
    if name == "onnx":
        try:
            fp32 = _onnx_extractor(backbone, path, input_hw)
        except Exception as exc:  # exporters and ORT raise anything; torch always works
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("ONNX extraction unavailable for this backbone (%s); using torch", reason)
            with contextlib.suppress(OSError):
                atomic_write_text(_failure_marker(path), reason[:2000] + "\n")
        else:
            if resolved != "int8" or calibration is None:
                return fp32
            try:
                return _int8_extractor(fp32, path.read_bytes(), path, calibration)
            except Exception as exc:  # the quantiser raises anything; fp32 always works
                reason = f"{type(exc).__name__}: {exc}"
                drift = isinstance(exc, Int8DriftError)
                log.warning("int8 extraction unavailable for this %s (%s); using fp32",
                            "data set" if drift else "backbone", reason)
                with contextlib.suppress(OSError):
                    marker = _int8_failure_marker(path, calibration.key if drift else None)
                    atomic_write_text(marker, reason[:2000] + "\n")
                return fp32
    return TorchExtractor(backbone, torch_precision(device))


def extract_batches(extractor: Callable[[torch.Tensor], np.ndarray], batches: Iterable[Any], *,
                    advance: Callable[[int], None] | None = None) -> np.ndarray:
    """Features of every batch (a tensor or an (images, labels) pair), concatenated in order: (N, D)."""
    parts = []
    for batch in batches:
        images = batch[0] if isinstance(batch, tuple | list) else batch
        parts.append(extractor(images))
        if advance is not None:
            advance(len(images))
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
