"""A head-only model served as the backbone export its job already made and checked, plus its head in numpy.

A head-only job (train.finetune=head) never changes its backbone's weights, so the ONNX export that feature
extraction wrote (`<cache>/onnx/<backbone digest>-<H>x<W>.onnx`, checked against torch before it was cached:
vizsla.data.extract) is this model's backbone. Serving runs that file on ONNX Runtime and the small MLP head
in numpy: no torch or timm import, no export and no re-check at start (these cost 5-30 s), and per request
the same ONNX Runtime forward pass plus a few small matrix products.

Where the backbone digest comes from, without torch (which hashing the weights in state_dict order needs):
1. `<model dir>/onnx/backbone.json`, written when serving once computed the digest with torch: used while
   the SHA-256 of model.safetensors is the one it recorded;
2. the job's own records: a completed head-only job whose result.json names this model folder and was
   written after its weights (same run), and whose feature cache's meta.json holds the backbone digest.
Anything else (a full fine-tune, a folder without records, no export in the cache) takes the torch path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vizsla.infra import blas

log = logging.getLogger("vizsla.serving")

CONFIG_FILE = "config.json"  # vizsla.models.io's names; that module imports torch, so they are repeated
WEIGHTS_FILE = "model.safetensors"
RECORD_FILE = "backbone.json"  # in <model dir>/onnx/
_CHUNK = 1 << 22


@dataclass(frozen=True)
class BackboneExport:
    """The checked ONNX export of a model's backbone and how its digest was found."""

    path: Path
    digest: str
    source: str  # "record" (backbone.json) or "job" (the job's feature cache)


def find_model_dir(path: str | Path) -> Path | None:
    """The model folder PATH or PATH/model (config.json + model.safetensors), else None; torch-free."""
    path = Path(path).expanduser()
    from vizsla.jobdir import JobDir

    for candidate in (path, JobDir(path).model_dir):
        if (candidate / CONFIG_FILE).is_file() and (candidate / WEIGHTS_FILE).is_file():
            return candidate
    return None


def read_json(path: Path) -> Any:
    """PATH's JSON, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _job_spec(model_dir: Path) -> dict[str, Any] | None:
    """The spec.yaml of the job that owns MODEL_DIR (its model/ folder), else None."""
    import yaml

    from vizsla.jobdir import JobDir

    spec_file = JobDir(model_dir.parent).spec
    if model_dir.name != "model" or not spec_file.is_file():
        return None
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        spec = yaml.load(spec_file.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - a safe loader
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return spec if isinstance(spec, dict) else None


def head_only_job(model_dir: Path) -> dict[str, Any] | None:
    """The job spec when MODEL_DIR is a head-only job's model (frozen backbone), else None."""
    spec = _job_spec(model_dir)
    train = spec.get("train") if spec else None
    return spec if isinstance(train, dict) and train.get("finetune") == "head" else None


def cache_bases(spec: dict[str, Any] | None) -> list[Path | None]:
    """The cache folders a job's exports may be in: its spec's cache_dir, then the default (None)."""
    bases: list[Path | None] = []
    if spec and spec.get("cache_dir"):
        bases.append(Path(str(spec["cache_dir"])).expanduser())
    bases.append(None)
    return bases


def export_path(digest: str, input_hw: tuple[int, int], base: Path | None) -> Path:
    """vizsla.data.extract.onnx_model_path without its torch import: <cache>/onnx/<digest>-<H>x<W>.onnx."""
    from vizsla.cache import cache_dir

    return cache_dir("onnx", base) / f"{digest}-{input_hw[0]}x{input_hw[1]}.onnx"


def weights_sha256(model_dir: Path) -> str:
    """SHA-256 of model.safetensors (~0.5 GB/s)."""
    hasher = hashlib.sha256()
    with open(model_dir / WEIGHTS_FILE, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _digest_from_record(model_dir: Path, arch: str) -> str | None:
    record = read_json(model_dir / "onnx" / RECORD_FILE)
    if not isinstance(record, dict) or record.get("arch") != arch or not record.get("digest"):
        return None
    if record.get("weights_sha256") != weights_sha256(model_dir):
        log.info("%s is stale (the weights changed since); not used", model_dir / "onnx" / RECORD_FILE)
        return None
    return str(record["digest"])


def _digest_from_job(model_dir: Path, arch: str) -> str | None:
    """The backbone digest in the feature cache of the completed head-only job that wrote MODEL_DIR."""
    inputs = _job_cache_inputs(model_dir, arch)
    return str(inputs["backbone"]) if inputs else None


def feature_int8_export(model_dir: Path, config: dict[str, Any], export: BackboneExport) -> Path | None:
    """The int8 backbone the job's feature extraction ran (static int8 on its calibration images, checked
    against fp32 then), when it ran one and the file is still cached: the model whose features trained
    the head and gave the job's metrics. None otherwise (fp32 extraction, another job's folder)."""
    inputs = _job_cache_inputs(model_dir, str(config.get("arch")))
    if not inputs or inputs.get("precision") != "int8" or str(inputs.get("backbone")) != export.digest:
        return None
    calibration = str(inputs.get("calibration") or "")
    # vizsla.data.extract.int8_model_path without its torch import
    path = export.path.with_name(f"{export.path.stem}.int8-{calibration[:16]}.onnx")
    return path if calibration and path.is_file() else None


def _job_cache_inputs(model_dir: Path, arch: str) -> dict[str, Any] | None:
    """The `inputs` of the feature cache of the completed head-only job that wrote MODEL_DIR (backbone
    digest, precision, calibration key), else None."""
    from vizsla.jobdir import JobDir

    job = JobDir(model_dir.parent)
    result_file = job.result
    try:  # its paths resolved where the folder is now: a moved or copied job still finds its own model
        result = job.read_result()
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict) or result.get("status") != "Completed":
        return None
    named = result.get("best_model_path")
    if not named or Path(named).resolve() != model_dir.resolve():
        return None
    try:  # the run that wrote result.json wrote the weights before it: a newer weights file is another run's
        if (model_dir / WEIGHTS_FILE).stat().st_mtime > result_file.stat().st_mtime:
            return None
    except OSError:
        return None
    cache = result.get("feature_cache")
    if not isinstance(cache, dict) or not cache.get("path"):
        return None
    meta = read_json(Path(str(cache["path"])) / "meta.json")
    inputs = meta.get("inputs") if isinstance(meta, dict) else None
    if not isinstance(inputs, dict) or inputs.get("arch") != arch or not inputs.get("backbone"):
        return None
    return inputs


def find_backbone_export(model_dir: Path, config: dict[str, Any]) -> BackboneExport | None:
    """The cached, checked backbone export of this head-only model, or None (then torch is needed)."""
    spec = head_only_job(model_dir)
    arch = str(config.get("arch"))
    size = config["preprocessing"]["input_size"]
    input_hw = (int(size[1]), int(size[2]))
    for source, find in (("record", _digest_from_record), ("job", _digest_from_job)):
        if source == "job" and spec is None:
            continue
        digest = find(model_dir, arch)
        if not digest:
            continue
        for base in cache_bases(spec):
            path = export_path(digest, input_hw, base)
            if path.is_file():
                return BackboneExport(path, digest, source)
        log.info("no backbone export for digest %s… in the cache; exporting with torch", digest[:12])
        return None
    return None


def write_record(model_dir: Path, digest: str, arch: str, export: Path) -> None:
    """Remember this model's backbone digest (computed with torch) for the next start; best effort."""
    from vizsla.infra.io import atomic_write_json

    record = {
        "arch": arch,
        "digest": digest,
        "weights_sha256": weights_sha256(model_dir),
        "export": str(export),
    }
    try:
        atomic_write_json(model_dir / "onnx" / RECORD_FILE, record)
    except OSError as exc:
        log.info("cannot write %s (%s)", model_dir / "onnx" / RECORD_FILE, exc)


# ---------------------------------------------------------------- the head in numpy


def _erf(values: np.ndarray) -> np.ndarray:
    try:
        from scipy.special import erf

        return np.asarray(erf(values), dtype=np.float32)
    except ImportError:  # scipy comes with scikit-learn; this is the slow exact fallback
        return np.vectorize(math.erf, otypes=[np.float32])(values)


def _activation(name: str, values: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(values, 0, out=values)
    if name == "gelu":  # torch.nn.GELU(): the exact erf form
        return values * np.float32(0.5) * (np.float32(1.0) + _erf(values * np.float32(1 / math.sqrt(2))))
    if name == "silu":
        with np.errstate(over="ignore"):  # exp(-x) overflows to inf for x << 0: x / inf = -0, as torch
            return values / (np.float32(1.0) + np.exp(-values))
    if name == "tanh":
        return np.tanh(values)
    raise ValueError(f"unknown head activation {name!r}")


class NumpyHead:
    """vizsla.models.heads.MLPHead in eval mode (dropout off): Linear (-> activation -> Linear)*."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]], activation: str) -> None:
        self.layers = [(np.ascontiguousarray(w.T, np.float32), b.astype(np.float32)) for w, b in layers]
        self.activation = activation
        _activation(activation, np.zeros(1, np.float32))  # an unknown name fails now, not per request

    @property
    def in_features(self) -> int:
        return int(self.layers[0][0].shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.layers[-1][0].shape[1])

    @classmethod
    def from_model_dir(cls, model_dir: Path, config: dict[str, Any]) -> NumpyHead:
        """The head's Linear layers from model.safetensors (keys head.<index>.weight/.bias)."""
        from safetensors import safe_open

        with safe_open(str(model_dir / WEIGHTS_FILE), framework="numpy") as weights:
            indices = sorted({int(k.split(".")[1]) for k in weights.keys() if k.startswith("head.")})
            layers = [
                (weights.get_tensor(f"head.{i}.weight"), weights.get_tensor(f"head.{i}.bias"))
                for i in indices
            ]
        head_cfg = config["head"]
        sizes = [
            int(config["num_features"]),
            *[int(h) for h in head_cfg["hidden"]],
            int(config["num_classes"]),
        ]
        shapes = [tuple(w.shape) for w, _ in layers]
        if shapes != [(out, inp) for inp, out in zip(sizes, sizes[1:], strict=False)]:
            raise ValueError(f"head weights {shapes} do not fit the config's sizes {sizes}")
        return cls(layers, str(head_cfg["activation"]))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Logits for a batch of features, on one BLAS thread (vizsla.infra.blas: OpenBLAS's spinning
        threads would take the cores the backbone and the decoders run on)."""
        values = np.asarray(features, dtype=np.float32)
        with blas.one_blas_thread():
            for index, (weight_t, bias) in enumerate(self.layers):
                if index:
                    values = _activation(self.activation, values)
                values = values @ weight_t + bias
        return values


class ComposedRunner:
    """Images -> logits: the backbone's ONNX Runtime session, then the numpy head."""

    def __init__(self, backbone: Any, head: NumpyHead) -> None:
        self.backbone = backbone
        self.head = head

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.head(self.backbone(images))


def composed_runner(export: Path, head: NumpyHead, threads: int = 0) -> ComposedRunner:
    """The runner over EXPORT; a backbone whose output is not the head's input width is refused."""
    from vizsla.serving.runtime import OrtRunner

    backbone = OrtRunner(str(export), threads)
    width = backbone.session.get_outputs()[0].shape[-1]
    if isinstance(width, int) and width != head.in_features:
        raise ValueError(f"{export} gives {width} features; the head takes {head.in_features}")
    return ComposedRunner(backbone, head)
