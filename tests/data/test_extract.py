"""Extraction backends: the ONNX export matches torch, is cached, and falls back to torch on failure."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from vizsla.data import extract
from vizsla.data.extract import (
    OnnxExtractor,
    TorchExtractor,
    backbone_digest,
    create_extractor,
    extract_batches,
    onnx_model_path,
    resolve_backend,
)
from vizsla.infra.hardware import cpu_supports_bf16
from vizsla.models.registry import create_backbone

HW = (32, 32)


def _backbone(name: str = "test_efficientnet", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    backbone, _ = create_backbone(name, "none", image_size=HW[0])
    return backbone.eval()


def _images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, *HW, generator=torch.Generator().manual_seed(seed))


def _reference(backbone: torch.nn.Module, images: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return backbone(images).numpy()


def _relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(got - expected).max() / np.abs(expected).max())


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path, Path]:
    """test_efficientnet exported once for the module: (backbone, base cache folder, .onnx path)."""
    base = tmp_path_factory.mktemp("extract-cache")
    backbone = _backbone()
    key = backbone_digest(backbone, "test_efficientnet")
    create_extractor(backbone, input_hw=HW, model_key=key, backend="onnx", cache_dir=base)
    return backbone, base, onnx_model_path(key, HW, base)


def test_backbone_digest_names_the_weights():
    first, same, other = _backbone(seed=0), _backbone(seed=0), _backbone(seed=1)
    digest = backbone_digest(first, "test_efficientnet")
    assert digest == backbone_digest(same, "test_efficientnet") != backbone_digest(other, "test_efficientnet")
    assert digest != backbone_digest(first, "another_arch")
    with torch.no_grad():
        next(iter(same.parameters())).view(-1)[0] += 1e-3
    assert backbone_digest(same, "test_efficientnet") != digest
    bn = next(m for m in first.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_mean += 1.0  # buffers shape the features too
    assert backbone_digest(first, "test_efficientnet") != digest


def test_auto_is_onnx_on_cpu_and_unknown_backends_are_refused(tmp_path):
    cpu = torch.device("cpu")
    assert resolve_backend("auto", cpu) == ("onnx", "fp32")
    assert resolve_backend("torch", cpu) == ("torch", "bf16" if cpu_supports_bf16() else "fp32")
    with pytest.raises(ValueError, match="unknown extraction backend"):
        resolve_backend("tensorrt", cpu)


def test_onnx_export_matches_torch_and_is_cached(exported, monkeypatch):
    backbone, base, path = exported
    assert path.is_file() and path.parent == base / "onnx"

    def no_export(*_args: object) -> bytes:
        raise AssertionError("exported again although the export is cached")

    monkeypatch.setattr(extract, "_export_onnx", no_export)
    extractor = create_extractor(backbone, input_hw=HW, model_key=path.name.split("-")[0], backend="auto",
                                 cache_dir=base)
    assert isinstance(extractor, OnnxExtractor)
    assert (extractor.backend, extractor.precision) == ("onnx", "fp32")
    for n in (1, 5, 17):  # the batch axis is dynamic
        images = _images(n)
        got = extractor(images)
        assert got.dtype == np.float32 and got.shape == (n, backbone.num_features)
        assert _relative_error(got, _reference(backbone, images)) < extract.ONNX_TOLERANCE


def test_torch_extractor_leaves_the_model_alone_and_matches_fp32():
    backbone = _backbone().train()
    extractor = create_extractor(backbone, input_hw=HW, model_key="k", backend="torch")
    assert isinstance(extractor, TorchExtractor) and extractor.backend == "torch"
    images = _images(6)
    got = extractor(images)
    assert backbone.training and next(iter(backbone.parameters())).is_contiguous()
    expected = _reference(backbone.eval(), images)
    assert got.dtype == np.float32 and got.shape == expected.shape
    tolerance = 0.05 if extractor.precision == "bf16" else 1e-4  # bf16 keeps 8 bits of mantissa
    assert _relative_error(got, expected) < tolerance


def test_failed_export_falls_back_to_torch_and_is_remembered(tmp_path, monkeypatch, caplog):
    backbone = _backbone(seed=3)

    def broken_export(*_args: object) -> bytes:
        raise RuntimeError("unsupported operator aten::weird")

    monkeypatch.setattr(extract, "_export_onnx", broken_export)
    with caplog.at_level(logging.WARNING, logger="vizsla.data"):
        extractor = create_extractor(backbone, input_hw=HW, model_key="k3", backend="auto",
                                     cache_dir=tmp_path)
    assert isinstance(extractor, TorchExtractor)
    assert any("aten::weird" in r.message and "using torch" in r.message for r in caplog.records)
    path = onnx_model_path("k3", HW, tmp_path)
    assert not path.exists() and "aten::weird" in path.with_suffix(".failed").read_text()
    assert resolve_backend("auto", torch.device("cpu"), path)[0] == "torch"
    assert resolve_backend("auto", torch.device("cpu"), onnx_model_path("k4", HW, tmp_path))[0] == "onnx"


def test_an_export_that_computes_something_else_is_rejected(exported, tmp_path, monkeypatch, caplog):
    _, _, path = exported
    backbone = _backbone(seed=5)  # the export holds the seed-0 weights: it runs, but computes other features
    monkeypatch.setattr(extract, "_export_onnx", lambda *_args: path.read_bytes())
    with caplog.at_level(logging.WARNING, logger="vizsla.data"):
        extractor = create_extractor(backbone, input_hw=HW, model_key="k5", backend="onnx",
                                     cache_dir=tmp_path)
    assert isinstance(extractor, TorchExtractor)
    assert any("differ from torch" in r.message for r in caplog.records)
    assert not onnx_model_path("k5", HW, tmp_path).exists()


def test_extract_batches_keeps_order_and_counts():
    backbone = _backbone()
    extractor = create_extractor(backbone, input_hw=HW, model_key="k", backend="torch")
    images = _images(10)
    seen: list[int] = []
    batches = [(images[:4], torch.zeros(4)), (images[4:8], torch.zeros(4)), images[8:]]
    got = extract_batches(extractor, batches, advance=seen.append)
    assert seen == [4, 4, 2] and got.shape == (10, backbone.num_features)
    np.testing.assert_allclose(got[8:], extractor(images[8:]), rtol=0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["test_resnet", "test_vit", "test_convnext"])
def test_both_backends_work_for_other_architectures(name, tmp_path):
    backbone = _backbone(name)
    key = backbone_digest(backbone, name)
    images = _images(4)
    expected = _reference(backbone, images)
    onnx = create_extractor(backbone, input_hw=HW, model_key=key, backend="onnx", cache_dir=tmp_path)
    assert isinstance(onnx, OnnxExtractor)
    assert _relative_error(onnx(images), expected) < extract.ONNX_TOLERANCE
    torch_extractor = create_extractor(backbone, input_hw=HW, model_key=key, backend="torch")
    assert _relative_error(torch_extractor(images), expected) < 0.05
