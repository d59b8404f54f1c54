"""save_model / load_model: a self-describing folder that loads back to identical logits, offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vizsla.errors import ModelError
from vizsla.jobdir import JobDir
from vizsla.models import Classifier, load_model, save_model


def _logits(model: Classifier, seed: int = 1) -> torch.Tensor:
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.eval()(x)


def test_round_trip_gives_identical_logits_and_records(tiny_classifier: Classifier, tmp_path: Path) -> None:
    out = save_model(tiny_classifier, tmp_path / "model")
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "labels.json", "model.safetensors", "preprocessing.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temp folders left behind
    loaded = load_model(out)
    assert not loaded.training
    assert torch.equal(_logits(loaded), _logits(tiny_classifier))
    assert loaded.labels == ["ant", "bee", "wasp"]
    assert loaded.preprocessing == tiny_classifier.preprocessing
    assert loaded.config == tiny_classifier.config
    assert json.loads((out / "labels.json").read_text()) == ["ant", "bee", "wasp"]
    assert json.loads((out / "preprocessing.json").read_text())["input_size"] == [3, 32, 32]
    config = json.loads((out / "config.json").read_text())
    assert set(config["versions"]) == {"vizsla", "torch", "timm"} and config["format_version"] == 1


def test_load_from_job_dir(tiny_classifier: Classifier, tmp_path: Path) -> None:
    job = JobDir(tmp_path / "job")
    save_model(tiny_classifier, job.model_dir)
    assert torch.equal(_logits(load_model(job.root)), _logits(tiny_classifier))
    assert torch.equal(_logits(load_model(str(job.root))), _logits(tiny_classifier))


def test_save_replaces_an_existing_model(tiny_classifier: Classifier, tmp_path: Path) -> None:
    save_model(tiny_classifier, tmp_path / "model")
    with torch.no_grad():
        tiny_classifier.head[-1].bias.add_(1.0)
    save_model(tiny_classifier, tmp_path / "model")
    assert torch.equal(_logits(load_model(tmp_path / "model")), _logits(tiny_classifier))
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_load_fixed_size_model_at_its_saved_size(tmp_path: Path) -> None:
    from vizsla.models import create_classifier
    from vizsla.spec import ModelSpec

    model = create_classifier(ModelSpec(name="test_vit", weights="none", image_size=32), ["a", "b"])
    loaded = load_model(save_model(model, tmp_path / "vit"))
    assert torch.equal(_logits(loaded), _logits(model))


def test_missing_path_names_it(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=f"model path not found: {tmp_path / 'nope'}"):
        load_model(tmp_path / "nope")
    with pytest.raises(ModelError, match="is not a saved model"):
        load_model(tmp_path)


def test_garbled_config_and_weights_are_model_errors(tiny_classifier: Classifier, tmp_path: Path) -> None:
    out = save_model(tiny_classifier, tmp_path / "model")
    (out / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read model config"):
        load_model(out)
    out = save_model(tiny_classifier, tmp_path / "model")
    (out / "config.json").write_text(json.dumps({"arch": "test_resnet"}))
    with pytest.raises(ModelError, match="lacks num_classes, head, labels, preprocessing"):
        load_model(out)
    out = save_model(tiny_classifier, tmp_path / "model")
    (out / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="do not fit its config"):
        load_model(out)


def test_weights_of_another_head_do_not_load(tiny_classifier: Classifier, tmp_path: Path) -> None:
    out = save_model(tiny_classifier, tmp_path / "model")
    config = json.loads((out / "config.json").read_text())
    config["head"]["hidden"] = [32]
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="do not fit its config"):
        load_model(out)
