"""resolve_runtime's "auto" rules, explicit settings, bad values, and compile_model's fallback to eager."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from vizsla.errors import SpecError
from vizsla.spec import build_spec
from vizsla.training import runtime as rt
from vizsla.training.runtime import Runtime, backbone_traits, compile_model, resolve_runtime


def _spec(tmp_path, *, model: str = "resnet34", image_size: int | None = None, **train):
    return build_spec({
        "output": str(tmp_path / "job"),
        "data": {"root": str(tmp_path / "data")},
        "model": {"name": model, "weights": "none", "image_size": image_size},
        "train": {"device": "cpu", **train},
        "tracking": {"enabled": False},
    })


@pytest.fixture
def bf16_cpu(monkeypatch):
    monkeypatch.setattr(rt, "cpu_supports_bf16", lambda: True)


@pytest.fixture
def plain_cpu(monkeypatch):
    monkeypatch.setattr(rt, "cpu_supports_bf16", lambda: False)


def test_fp32_on_cpus_without_native_bf16(tmp_path, plain_cpu):
    for finetune in ("head", "full", "staged"):
        runtime = resolve_runtime(_spec(tmp_path, finetune=finetune))
        assert runtime.precision == "fp32" and runtime.autocast_dtype is None
        assert runtime.device == torch.device("cpu") and runtime.channels_last


def test_bf16_with_native_bf16(tmp_path, bf16_cpu):
    for finetune in ("head", "full"):
        runtime = resolve_runtime(_spec(tmp_path, finetune=finetune))
        assert runtime.precision == "bf16" and runtime.autocast_dtype == torch.bfloat16


@pytest.mark.parametrize(("finetune", "size", "expected"), [
    ("full", 96, "fp32"), ("staged", 160, "fp32"), ("full", 224, "bf16"), ("full", None, "bf16"),
    ("head", 96, "bf16"),
])
def test_depthwise_backbones_train_in_fp32_below_224(tmp_path, bf16_cpu, finetune, size, expected):
    spec = _spec(tmp_path, model="efficientnet_lite0", image_size=size, finetune=finetune)
    assert resolve_runtime(spec).precision == expected


def test_plain_cnns_train_in_bf16_at_small_sizes(tmp_path, bf16_cpu):
    assert resolve_runtime(_spec(tmp_path, image_size=96, finetune="full")).precision == "bf16"


def test_backbone_traits():
    assert backbone_traits("efficientnet_lite0", None) == (224, True)
    assert backbone_traits("mobilenetv3_large_100", 128) == (128, True)
    assert backbone_traits("resnet34", None) == (224, False)
    assert backbone_traits("no_such_model_xyz", 64) == (64, False)


def test_explicit_settings_win(tmp_path, bf16_cpu):
    spec = _spec(tmp_path, precision="fp32", channels_last=False, compile=True)
    spec.data.num_workers = 0
    runtime = resolve_runtime(spec)
    assert (runtime.precision, runtime.channels_last, runtime.num_workers, runtime.compile) == (
        "fp32", False, 0, True)
    small = _spec(tmp_path, model="efficientnet_lite0", image_size=96, finetune="full", precision="bf16")
    assert resolve_runtime(small).precision == "bf16"


def test_explicit_bf16_on_a_cpu_without_native_bf16(tmp_path, plain_cpu):
    assert resolve_runtime(_spec(tmp_path, precision="bf16")).precision == "bf16"


def test_fp16_on_cpu_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="fp16 needs a CUDA GPU"):
        resolve_runtime(_spec(tmp_path, precision="fp16"))


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "meta"])
def test_unknown_device_is_a_spec_error(tmp_path, device):
    with pytest.raises(SpecError, match="train.device"):
        resolve_runtime(_spec(tmp_path, device=device))


def test_cuda_without_a_gpu_is_a_spec_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SpecError, match="no CUDA GPU"):
        resolve_runtime(_spec(tmp_path, device="cuda"))
    assert resolve_runtime(_spec(tmp_path, device="auto")).device.type == "cpu"


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16"), (False, "fp16")])
def test_cuda_amp_precision(tmp_path, monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    runtime = resolve_runtime(_spec(tmp_path, device="cuda", finetune="full"))
    assert runtime.device.type == "cuda" and runtime.precision == expected and runtime.channels_last


def test_default_workers_come_from_the_data_rule(tmp_path, monkeypatch):
    from vizsla.data import dataset

    monkeypatch.setattr(dataset, "available_cores", lambda: 1)
    assert resolve_runtime(_spec(tmp_path)).num_workers == 0


def _runtime(compile_: bool) -> Runtime:
    return Runtime(device=torch.device("cpu"), precision="fp32", channels_last=False, num_workers=0,
                   compile=compile_)


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_compile_off_leaves_the_model_alone():
    model = _tiny()
    assert compile_model(model, _runtime(False)) is model and model._compiled_call_impl is None


def test_compile_error_falls_back_to_eager(monkeypatch, caplog):
    def broken(self, *args, **kwargs):
        raise RuntimeError("no C compiler")

    monkeypatch.setattr(nn.Module, "compile", broken)
    model = _tiny()
    x = torch.randn(5, 4)
    expected = model(x)
    with caplog.at_level(logging.WARNING, logger="vizsla"):
        assert compile_model(model, _runtime(True)) is model
    assert "no C compiler" in caplog.text and "eager" in caplog.text
    assert torch.equal(model(x), expected)


def test_failure_at_first_call_falls_back_to_eager_for_good(monkeypatch, caplog):
    def failing_backend(graph, example_inputs):
        raise RuntimeError("inductor exploded")

    calls = []
    original = nn.Module.compile

    def compile_with_failing_backend(self, *args, **kwargs):
        calls.append(1)
        original(self, backend=failing_backend)

    monkeypatch.setattr(nn.Module, "compile", compile_with_failing_backend)
    model = _tiny()
    x = torch.randn(5, 4)
    expected = model(x)
    keys = list(model.state_dict())
    compile_model(model, _runtime(True))
    with caplog.at_level(logging.WARNING, logger="vizsla"):
        out = model(x)
    assert calls and torch.allclose(out, expected)
    assert "inductor exploded" in caplog.text and model._compiled_call_impl is None
    assert list(model.state_dict()) == keys
    out.sum().backward()  # the eager output trains
    assert model[0].weight.grad is not None


def test_a_real_error_is_raised_not_hidden(monkeypatch):
    monkeypatch.setattr(nn.Module, "compile", lambda self, *a, **k: setattr(
        self, "_compiled_call_impl", lambda *args, **kwargs: self._call_impl(*args, **kwargs)))
    model = compile_model(_tiny(), _runtime(True))
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        model(torch.randn(5, 7))


@pytest.mark.slow
def test_compiled_model_matches_eager_and_keeps_state_dict_keys():
    model = _tiny()
    x = torch.randn(5, 4)
    expected = model(x)
    keys = list(model.state_dict())
    compile_model(model, _runtime(True))
    assert torch.allclose(model(x), expected, atol=1e-6)
    assert model._compiled_call_impl is not None and list(model.state_dict()) == keys
