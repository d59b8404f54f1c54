"""The feature cache: head-on-cache equals the full model, content keys, hits, views, locking, batches."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from vizsla.data import ImageFolderDataset, PreparedData, create_transform, extract, prepare_data
from vizsla.data import features as feature_cache
from vizsla.data.extract import backbone_digest, create_extractor, onnx_model_path
from vizsla.data.features import FeatureSet, build_features, feature_batches, feature_key
from vizsla.data.transforms import draft_size_for
from vizsla.jobdir import JobDir
from vizsla.models import Classifier, create_classifier
from vizsla.spec import DataSpec, ModelSpec
from vizsla.testing.images import make_image_folder

ARCH = "test_efficientnet"
CLASSES = ["cat", "dog"]


def _model(image_size: int = 32, seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    spec = ModelSpec(name=ARCH, weights="none", image_size=image_size, head=[16], head_dropout=0.2)
    return create_classifier(spec, CLASSES).eval()


def _data(root: Path, job: Path, cache: Path) -> PreparedData:
    return prepare_data(DataSpec(root=str(root)), JobDir(job), progress=False, cache_dir=cache)


def _build(model: Classifier, data: PreparedData, cache: Path, **options: object) -> FeatureSet:
    settings = {"views": 1, "augment": False, "backend": "onnx", "num_workers": 0, "batch_size": 8,
                "cache_dir": cache, **options}
    return build_features(model, data, **settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ONNX export of _model()'s backbone, made once for the module (exports take seconds)."""
    base = tmp_path_factory.mktemp("onnx-export")
    backbone = _model().backbone
    key = backbone_digest(backbone, ARCH)
    create_extractor(backbone, input_hw=(32, 32), model_key=key, backend="onnx", cache_dir=base)
    return onnx_model_path(key, (32, 32), base)


@pytest.fixture
def cache(tmp_path: Path, onnx_export: Path) -> Path:
    """A private base cache folder that already holds the module's ONNX export."""
    base = tmp_path / "cache"
    (base / "onnx").mkdir(parents=True)
    shutil.copy(onnx_export, base / "onnx" / onnx_export.name)
    return base


@pytest.fixture
def data(image_root: Path, tmp_path: Path, cache: Path) -> PreparedData:
    return _data(image_root, tmp_path / "job", cache)


def _images(model: Classifier, samples: list[tuple[str, int]]) -> torch.Tensor:
    transform = create_transform(model.preprocessing, train=False, augment=False, hflip=False)
    dataset = ImageFolderDataset(samples, transform, max_pixels=10**8,
                                 draft_size=draft_size_for(model.preprocessing))
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def _relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize(("backend", "tolerance"), [("onnx", 0.01), ("torch", 0.05)])
def test_head_on_cached_features_equals_the_full_model(data, cache, backend, tolerance):
    model = _model()
    features = _build(model, data, cache, backend=backend, progress=True, batch_size=12,  # one shape: quick
                      precision="fp32")
    assert (features.backend, features.hit, features.views) == (backend, False, 1)
    assert features.dim == model.head.in_features and features.seconds > 0
    with torch.inference_mode():
        for split, cached in (("train", features.train[0]), ("valid", features.eval["valid"]),
                              ("test", features.eval["test"])):
            expected = model(_images(model, data.splits[split]))
            got = model.head(torch.from_numpy(np.asarray(cached, np.float32)))
            assert _relative_error(got, expected) < tolerance, split  # fp16 storage, bf16 autocast
            assert features.labels[split].tolist() == [label for _, label in data.splits[split]]


def test_second_build_is_a_fast_hit_on_memory_maps(data, cache):
    model = _model()
    built = _build(model, data, cache)
    started = time.perf_counter()
    loaded = _build(model, data, cache)
    seconds = time.perf_counter() - started
    assert loaded.hit and not built.hit and loaded.seconds == 0.0 and seconds < 1.0
    assert loaded.key == built.key and loaded.path == cache / "features" / built.key
    assert isinstance(loaded.train, np.memmap) and not loaded.train.flags.writeable
    assert loaded.train.dtype == np.float16 and loaded.train.shape == (1, 12, model.head.in_features)
    np.testing.assert_array_equal(loaded.eval["valid"], built.eval["valid"])
    meta = json.loads((loaded.path / "meta.json").read_text())
    assert meta["key"] == built.key and meta["images"] == {"train": 12, "valid": 12, "test": 12}
    assert meta["inputs"]["backbone"] == backbone_digest(model.backbone, ARCH)
    assert meta["inputs"]["splits"]["train"]["images"] == 12 and meta["build_seconds"] > 0
    assert sorted(p.name for p in loaded.path.iterdir()) == [
        "labels_test.npy", "labels_train.npy", "labels_valid.npy", "meta.json", "test.npy", "train.npy",
        "valid.npy"]


def test_key_follows_content_and_settings(data, cache, image_root, tmp_path):
    model = _model()
    key = feature_key(model, data, augment=False, backend="onnx", cache_dir=cache)
    assert key == _build(model, data, cache).key
    copy = shutil.copytree(image_root, tmp_path / "elsewhere")  # same bytes under other names: same key
    assert feature_key(model, _data(copy, tmp_path / "j1", cache), augment=False, backend="onnx",
                       cache_dir=cache) == key

    image = image_root / "valid" / "dog" / "dog_002.jpg"
    original = image.read_bytes()
    image.write_bytes((image_root / "valid" / "dog" / "dog_004.jpg").read_bytes())
    changed = _data(image_root, tmp_path / "j2", cache)
    assert feature_key(model, changed, augment=False, backend="onnx", cache_dir=cache) != key
    image.write_bytes(original)
    assert feature_key(model, _data(image_root, tmp_path / "j3", cache), augment=False, backend="onnx",
                       cache_dir=cache) == key

    def key_of(other: Classifier = model, **settings: object) -> str:
        options = {"augment": False, "backend": "onnx", "cache_dir": cache, **settings}
        return feature_key(other, data, **options)  # type: ignore[arg-type]

    assert key_of(hflip=False) == key_of(seed=5) == key  # neither matters without augmentation
    assert len({key, key_of(_model(image_size=48)), key_of(_model(seed=1)),
                key_of(augment=True), key_of(augment=True, views=2), key_of(augment=True, seed=1),
                key_of(augment=True, hflip=False), key_of(backend="torch")}) == 8


def test_augmented_views_are_seeded_per_view_and_image(data, cache, tmp_path):
    model = _model()
    plain = _build(model, data, cache)
    augmented = _build(model, data, cache, views=3, augment=True, seed=1)
    assert augmented.train.shape == (3, 12, model.head.in_features) and augmented.views == 3
    views = np.asarray(augmented.train, np.float32)
    assert not np.allclose(views[0], views[1]) and not np.allclose(views[1], views[2])
    np.testing.assert_array_equal(augmented.eval["valid"], plain.eval["valid"])  # eval: never augmented

    other = tmp_path / "other-cache"
    shutil.copytree(cache / "onnx", other / "onnx")
    again = _build(model, data, other, views=3, augment=True, seed=1, num_workers=2)
    assert not again.hit and again.key == augmented.key
    np.testing.assert_array_equal(again.train, augmented.train)  # whatever the number of workers
    reseeded = _build(model, data, other, views=3, augment=True, seed=2)
    assert not np.allclose(np.asarray(reseeded.train, np.float32), views)


def test_valid_doubles_as_test_without_extracting_it_twice(tmp_path, cache):
    root = make_image_folder(tmp_path / "images", splits=("train", "val"))
    features = _build(_model(), _data(root, tmp_path / "job", cache), cache)
    assert features.eval["test"] is features.eval["valid"]
    assert features.labels["test"] is features.labels["valid"]
    assert not (features.path / "test.npy").exists()
    assert _build(_model(), _data(root, tmp_path / "job2", cache), cache).eval["test"].shape == (12, 256)


def test_unreadable_cache_and_leftovers_are_rebuilt(data, cache):
    model = _model()
    built = _build(model, data, cache)
    leftover = built.path.parent / f".{built.key}.tmp-1-dead"
    leftover.mkdir()
    (built.path / "train.npy").write_bytes(b"\x93NUMPY garbage")
    rebuilt = _build(model, data, cache)
    assert not rebuilt.hit and rebuilt.key == built.key and not leftover.exists()
    np.testing.assert_array_equal(rebuilt.eval["valid"], built.eval["valid"])
    assert _build(model, data, cache).hit


def test_a_builder_that_loses_the_rename_race_keeps_the_winner(data, cache, tmp_path):
    built = _build(_model(), data, cache)
    loser = tmp_path / "loser"
    shutil.copytree(built.path, loser)
    (loser / "meta.json").write_text("{}")
    feature_cache._publish(loser, built.path)  # where no file lock exists, the rename is the only guard
    assert not loser.exists() and json.loads((built.path / "meta.json").read_text())["key"] == built.key
    with pytest.raises(OSError):
        feature_cache._publish(tmp_path / "missing", tmp_path / "nowhere" / "key")


def test_onnx_failure_builds_torch_features_under_their_own_key(data, tmp_path, monkeypatch):
    def broken_export(*_args: object) -> bytes:
        raise RuntimeError("exporter cannot handle this model")

    monkeypatch.setattr(extract, "_export_onnx", broken_export)
    base = tmp_path / "fresh-cache"  # no export cached yet
    model = _model()
    features = _build(model, data, base, backend="auto", batch_size=12)
    assert features.backend == "torch" and not features.hit
    assert features.key == feature_key(model, data, augment=False, backend="torch", cache_dir=base)
    assert _build(model, data, base, backend="auto", batch_size=12).hit  # failure remembered: no new try


_CONCURRENT_BUILDER = """
import json, sys, time
from pathlib import Path
import torch
from vizsla.data import prepare_data
from vizsla.data.features import build_features
from vizsla.jobdir import JobDir
from vizsla.models import create_classifier
from vizsla.spec import DataSpec, ModelSpec

root, job, cache, go = (Path(p) for p in sys.argv[1:5])
torch.manual_seed(0)
model = create_classifier(ModelSpec(name="test_efficientnet", weights="none", image_size=32, head=[16],
                                    head_dropout=0.2), ["cat", "dog"])
data = prepare_data(DataSpec(root=str(root)), JobDir(job), progress=False, cache_dir=cache)
while not go.exists():
    time.sleep(0.01)
features = build_features(model, data, views=4, augment=True, backend="onnx", num_workers=0, batch_size=4,
                          cache_dir=cache)
print(json.dumps({"key": features.key, "hit": features.hit, "sum": float(features.train.sum())}))
"""


@pytest.mark.slow
def test_concurrent_builders_of_one_key_leave_one_valid_cache(image_root, cache, tmp_path):
    go = tmp_path / "go"
    workers = [subprocess.Popen([sys.executable, "-c", _CONCURRENT_BUILDER, str(image_root),
                                 str(tmp_path / f"job{i}"), str(cache), str(go)], stdout=subprocess.PIPE,
                                text=True) for i in range(2)]
    time.sleep(0.5)
    go.touch()
    results = [json.loads(w.communicate(timeout=300)[0].strip().splitlines()[-1]) for w in workers]
    assert all(w.returncode == 0 for w in workers)
    assert results[0]["key"] == results[1]["key"] and results[0]["sum"] == results[1]["sum"]
    assert sorted(r["hit"] for r in results) == [False, True]  # one built it, the other waited and loaded
    entries = sorted(p.name for p in (cache / "features").iterdir())
    assert entries == [results[0]["key"], f"{results[0]['key']}.lock"]
    data = _data(image_root, tmp_path / "job", cache)
    loaded = _build(_model(), data, cache, views=4, augment=True, batch_size=4)
    assert loaded.hit and loaded.key == results[0]["key"] and np.isfinite(loaded.train).all()


def test_feature_batches_pick_one_seeded_view_per_image_and_epoch():
    views, n, dim = 3, 10, 4
    features = np.zeros((views, n, dim), np.float16)
    for v in range(views):
        features[v] = (100 * v + np.arange(n))[:, None]  # row value = 100 * view + index
    labels = np.arange(n) % 2

    def epoch_rows(epoch: int) -> list[float]:
        loader = feature_batches(features, labels, batch_size=4, shuffle=True, seed=7, epoch=epoch)
        batches = list(loader)
        assert len(loader) == len(batches) == 3 and batches[0][0].dtype == torch.float32
        rows = torch.cat([b[0][:, 0] for b in batches]).tolist()
        targets = torch.cat([b[1] for b in batches])
        assert targets.dtype == torch.int64 and targets.tolist() == [labels[int(r) % 100] for r in rows]
        return rows

    first = epoch_rows(0)
    assert sorted(int(r) % 100 for r in first) == list(range(n))  # every image once per epoch
    assert first == epoch_rows(0)  # a resumed epoch replays the same batches
    epochs = [epoch_rows(e) for e in range(1, 6)]
    assert all(rows != first for rows in epochs)
    assert {int(r) // 100 for rows in epochs for r in rows} == {0, 1, 2}  # all views get used

    ordered = feature_batches(features[0], labels, batch_size=4, shuffle=False)
    assert torch.cat([b[0][:, 0] for b in ordered]).tolist() == list(range(n))
    assert len(feature_batches(features, labels, batch_size=4, shuffle=True, drop_last=True)) == 2
    with pytest.raises(ValueError, match="do not match"):
        feature_batches(features, labels[:5], batch_size=4, shuffle=False)


@pytest.mark.slow
@pytest.mark.integration
def test_hymenoptera_features_match_the_pretrained_model(hymenoptera, tmp_path):
    data = prepare_data(DataSpec(root=str(hymenoptera)), JobDir(tmp_path / "job"), progress=False,
                        preprocessing={"input_size": [3, 224, 224]}, cache_dir=tmp_path / "cache")
    torch.manual_seed(0)
    model = create_classifier(ModelSpec(name="efficientnet_lite0"), data.classes).eval()
    options = {"views": 1, "augment": False, "precision": "fp32", "cache_dir": tmp_path / "cache"}
    features = build_features(model, data, **options)
    assert features.eval["valid"].shape == (153, model.head.in_features)
    assert features.train.shape == (1, 245, model.head.in_features)
    samples = data.splits["valid"][::20]
    with torch.inference_mode():
        expected = model(_images(model, samples))
        got = model.head(torch.from_numpy(np.asarray(features.eval["valid"][::20], np.float32)))
    # fp32 (ONNX) features match the model to float rounding; bf16 (torch autocast) ones to bf16 rounding.
    assert _relative_error(got, expected) < (0.02 if features.precision == "fp32" else 0.06)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    started = time.perf_counter()
    assert build_features(model, data, **options).hit
    assert time.perf_counter() - started < 2.0


def test_int8_extraction_is_quantised_once_checked_and_keyed_apart(data, cache, caplog):
    model = _model()
    fp32 = _build(model, data, cache, precision="fp32", batch_size=12)
    with caplog.at_level("INFO", logger="vizsla.data"):
        int8 = _build(model, data, cache, precision="int8", batch_size=12)
    assert (int8.backend, int8.precision, fp32.precision) == ("onnx", "int8", "fp32")
    assert int8.key != fp32.key and "quantised the backbone to int8" in caplog.text
    assert len(list((cache / "onnx").glob("*.int8-*.onnx"))) == 1
    for split in ("valid", "test"):
        reference = np.asarray(fp32.eval[split], np.float32)
        candidate = np.asarray(int8.eval[split], np.float32)
        cosine = (reference * candidate).sum(1) / np.linalg.norm(reference, axis=1) / np.linalg.norm(
            candidate, axis=1)
        assert cosine.mean() > 0.97, split
    assert _build(model, data, cache, precision="int8", batch_size=12).hit


def test_int8_that_drifts_falls_back_to_fp32_and_is_remembered(data, cache, monkeypatch):
    from vizsla.data import quantize

    monkeypatch.setattr(quantize, "INT8_MIN_COSINE", 1.01)  # no quantised model can pass: a drifting one
    model = _model()
    features = _build(model, data, cache, precision="auto", batch_size=12)
    assert (features.backend, features.precision) == ("onnx", "fp32")
    assert features.key == feature_key(model, data, augment=False, backend="onnx", precision="fp32",
                                       cache_dir=cache)
    assert list((cache / "onnx").glob("*.int8-*.failed")) and not list((cache / "onnx").glob("*.int8.failed"))
    monkeypatch.setattr(quantize, "INT8_MIN_COSINE", 0.0)
    assert _build(model, data, cache, precision="auto", batch_size=12).hit  # not retried: fp32 at once


def test_int8_drift_on_one_data_set_does_not_turn_int8_off_for_another(data, cache, tmp_path, monkeypatch):
    """Drift is a property of the images too (tiny digits drift, photos do not): only the calibration set
    that drifted falls back to fp32; a quantiser that fails on the backbone itself turns int8 off for all."""
    from vizsla.data import quantize
    from vizsla.testing.images import make_image_folder

    model = _model()
    monkeypatch.setattr(quantize, "INT8_MIN_COSINE", 1.01)
    assert _build(model, data, cache, precision="auto", batch_size=12).precision == "fp32"
    monkeypatch.setattr(quantize, "INT8_MIN_COSINE", 0.0)
    other = make_image_folder(tmp_path / "other", classes=CLASSES, per_class=5, seed=11)
    features = _build(model, _data(other, tmp_path / "job2", cache), cache, precision="auto", batch_size=12)
    assert (features.backend, features.precision) == ("onnx", "int8")

    def broken(*args: object, **kwargs: object) -> bytes:
        raise RuntimeError("this backbone cannot be quantised")

    monkeypatch.setattr(quantize, "quantize_bytes", broken)
    third = make_image_folder(tmp_path / "third", classes=CLASSES, per_class=5, seed=12)
    assert _build(model, _data(third, tmp_path / "job3", cache), cache, precision="auto",
                  batch_size=12).precision == "fp32"
    assert list((cache / "onnx").glob("*.int8.failed"))  # now every data set skips int8 at once


class _StopAfter:
    """An extractor that is killed (KeyboardInterrupt) after a number of batches."""

    def __init__(self, inner: object, batches: int) -> None:
        self.inner, self.left = inner, batches
        self.backend, self.precision = inner.backend, inner.precision  # type: ignore[attr-defined]

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        if self.left == 0:
            raise KeyboardInterrupt
        self.left -= 1
        return self.inner(images)  # type: ignore[operator]


def test_a_killed_extraction_continues_where_it_stopped(data, cache, tmp_path, monkeypatch, caplog):
    model = _model()
    options = {"views": 2, "augment": True, "precision": "fp32", "batch_size": 4}
    shutil.copytree(cache / "onnx", tmp_path / "reference" / "onnx")
    expected = _build(model, data, tmp_path / "reference", **options)  # uninterrupted, own cache folder
    monkeypatch.setattr(feature_cache, "PROGRESS_EVERY_S", 0.0)
    real = feature_cache.create_extractor
    monkeypatch.setattr(feature_cache, "create_extractor", lambda *a, **k: _StopAfter(real(*a, **k), 5))
    with pytest.raises(KeyboardInterrupt):
        _build(model, data, cache, **options)
    partial = cache / "features" / f".{expected.key}.partial"
    progress = json.loads((partial / "progress.json").read_text())
    assert progress["rows"] == {"train/0": 12, "train/1": 8}  # 5 batches of 4 rows
    counted: list[int] = []
    monkeypatch.setattr(feature_cache, "create_extractor", lambda *a, **k: _Counting(real(*a, **k), counted))
    with caplog.at_level("INFO", logger="vizsla.data"):
        resumed = _build(model, data, cache, **options)
    assert "20 of 48 rows done" in caplog.text and not partial.exists()
    assert sum(counted) == 48 - 20  # only the rows not recorded are extracted again
    for got, want in ((resumed.train, expected.train), (resumed.eval["valid"], expected.eval["valid"])):
        np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32), atol=1e-3)


class _Counting:
    def __init__(self, inner: object, counted: list[int]) -> None:
        self.inner, self.counted = inner, counted
        self.backend, self.precision = inner.backend, inner.precision  # type: ignore[attr-defined]

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        self.counted.append(len(images))
        return self.inner(images)  # type: ignore[operator]


def test_feature_views_auto_is_one_unaugmented_view_and_numbers_are_kept():
    from vizsla.data.features import resolve_views

    assert resolve_views("auto", True, 6549)[:2] == (1, False)
    assert resolve_views("auto", True, 40)[:2] == (1, False)
    assert resolve_views("auto", False, 40)[:2] == (1, False)
    assert resolve_views(4, True, 40)[:2] == (4, True)
    assert resolve_views(4, False, 40)[:2] == (1, False)  # augmentation off: one view whatever was asked
    assert "at most ~1 point" in resolve_views("auto", True, 40)[2]
